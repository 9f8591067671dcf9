//! Shares and budgets every instance on one Postgres database draws from
//! ([`super::cluster`]). A share is granted in one short transaction under an advisory
//! lock on its pool (so two new holders cannot both take the same free units); a budget
//! is one statement on its bucket's row. Both count time on the database's clock.

use std::time::Duration;

use sqlx::{PgPool, Row};

use super::StoreResult;
use super::cluster::{fair_shares, next_grant};
use super::sql::to_i64;
use crate::model::{BudgetRequest, ShareGrant, ShareRequest};

pub(super) async fn lease_share(
    pool: &PgPool,
    request: &ShareRequest<'_>,
) -> StoreResult<ShareGrant> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 4242))")
        .bind(request.pool)
        .execute(&mut *tx)
        .await?;
    // Grants that ran out (their holder died or stopped asking) are gone, whatever their
    // pool: none counts once expired, so no other pool's lock is needed to drop them.
    let rows = sqlx::query(
        "WITH gone AS (DELETE FROM cluster_shares WHERE expires_at < clock_timestamp()) \
         SELECT holder, units, wanted FROM cluster_shares \
         WHERE pool = $1 AND expires_at >= clock_timestamp() ORDER BY holder",
    )
    .bind(request.pool)
    .fetch_all(&mut *tx)
    .await?;
    let mut wants = Vec::with_capacity(rows.len() + 1);
    let mut others = 0u64;
    let mut old = 0u64;
    let mut mine = None;
    for row in &rows {
        let holder: String = row.try_get("holder")?;
        let units = row.try_get::<i64, _>("units")?.max(0) as u64;
        let wanted = row.try_get::<i64, _>("wanted")?.max(0) as u64;
        if holder == request.holder {
            old = units;
            mine = Some(wants.len());
            wants.push(request.want);
        } else {
            others += units;
            wants.push(wanted);
        }
    }
    let mine = mine.unwrap_or_else(|| {
        wants.push(request.want);
        wants.len() - 1
    });
    let target = fair_shares(request.capacity, &wants)[mine];
    let grant = next_grant(request.capacity, others, target, old, request.in_use);
    sqlx::query(
        "INSERT INTO cluster_shares (pool, holder, units, wanted, expires_at) \
         VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5)) \
         ON CONFLICT (pool, holder) DO UPDATE SET units = EXCLUDED.units, \
         wanted = EXCLUDED.wanted, expires_at = EXCLUDED.expires_at",
    )
    .bind(request.pool)
    .bind(request.holder)
    .bind(to_i64(grant.held)?)
    .bind(to_i64(request.want)?)
    .bind(request.lease.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(grant)
}

pub(super) async fn release_share(pool: &PgPool, name: &str, holder: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM cluster_shares WHERE pool = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}

/// One statement: the bucket is refilled for the time since its last use, `amount` is
/// taken (the level may go below zero: reserved ahead of the refill), and the new level
/// says how long the taker waits. In `SET`, the bucket's columns are its old values.
pub(super) async fn reserve_budget(
    pool: &PgPool,
    request: &BudgetRequest<'_>,
) -> StoreResult<Duration> {
    let per_second = request.per_second.max(f64::MIN_POSITIVE);
    let level: i64 = sqlx::query_scalar(
        "INSERT INTO cluster_budgets (pool, level_milli, refilled_at) \
         VALUES ($1, (($2 - $4) * 1000)::bigint, statement_timestamp()) \
         ON CONFLICT (pool) DO UPDATE SET \
           level_milli = (least($2 * 1000, cluster_budgets.level_milli + $3 * 1000 * \
             extract(epoch FROM statement_timestamp() - cluster_budgets.refilled_at)::float8) \
             - $4 * 1000)::bigint, \
           refilled_at = statement_timestamp() \
         RETURNING level_milli",
    )
    .bind(request.pool)
    .bind(request.burst)
    .bind(per_second)
    .bind(request.amount)
    .fetch_one(pool)
    .await?;
    Ok(if level >= 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((-level) as f64 / 1000.0 / per_second)
    })
}
