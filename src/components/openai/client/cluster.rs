//! A declared provider's limits shared by every instance on one database: this
//! instance's share of `max_concurrency` (leased, renewed and rebalanced by a keeper
//! task through [`SharedLimits::lease_share`](crate::components::SharedLimits)) bounds
//! its concurrency limiter, and `requests_per_minute` / `tokens_per_minute` are reserved
//! from a bucket in the database in blocks, spent here call by call: one round trip per
//! block, never one per request.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::endpoint::Endpoint;
use crate::components::Cluster;
use crate::model::{BudgetRequest, ShareRequest};

/// How soon the keeper asks again while its grant differs from its fair share.
const REBALANCE: Duration = Duration::from_millis(200);
/// A block is this much of a second's budget: small enough that what one instance holds
/// unspent is little, large enough that most calls need no round trip.
const BLOCK_SECONDS: f64 = 0.25;
/// Budget reserved longer ago than this and still unspent is given back with the next
/// reservation rather than spent late (which would exceed the rate in some minute).
const STALE: Duration = Duration::from_secs(1);

/// The shared budgets of one endpoint.
pub(in crate::components::openai) struct ClusterBudgets {
    pub requests: Option<ClusterBudget>,
    pub tokens: Option<ClusterBudget>,
}

impl ClusterBudgets {
    /// How long a call estimated at `tokens` waits for the budgets every instance shares.
    pub(in crate::components::openai) async fn reserve(&self, tokens: f64) -> Duration {
        let requests = match &self.requests {
            Some(budget) => budget.take(1.0).await,
            None => Duration::ZERO,
        };
        let tokens = match &self.tokens {
            Some(budget) => budget.take(tokens).await,
            None => Duration::ZERO,
        };
        requests.max(tokens)
    }

    /// Tokens given back (positive) or charged (negative) once the answer tells.
    pub(in crate::components::openai) fn adjust_tokens(&self, delta: f64) {
        if let Some(budget) = &self.tokens {
            budget.prepaid().units += delta;
        }
    }
}

/// A rate budget reserved from the database in blocks and spent here.
pub(in crate::components::openai) struct ClusterBudget {
    cluster: Cluster,
    pool: String,
    per_second: f64,
    burst: f64,
    block: f64,
    prepaid: Mutex<Prepaid>,
    /// One reservation at a time: callers that find the block spent wait for it.
    fetching: tokio::sync::Mutex<()>,
}

struct Prepaid {
    units: f64,
    /// When the block was reserved, and when it may be spent.
    reserved_at: Instant,
    ready_at: Instant,
}

impl ClusterBudget {
    pub(in crate::components::openai) fn new(
        cluster: Cluster,
        pool: String,
        per_minute: f64,
    ) -> Self {
        let per_second = per_minute / 60.0;
        let now = Instant::now();
        ClusterBudget {
            cluster,
            pool,
            per_second,
            // As the local limiter: a second's worth, at least one.
            burst: per_second.max(1.0),
            block: (per_second * BLOCK_SECONDS).max(1.0),
            prepaid: Mutex::new(Prepaid {
                units: 0.0,
                reserved_at: now,
                ready_at: now,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn prepaid(&self) -> std::sync::MutexGuard<'_, Prepaid> {
        self.prepaid.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends `amount` from the block reserved here, when it holds that much and is
    /// fresh; `None` otherwise.
    fn spend(&self, amount: f64) -> Option<Duration> {
        let mut prepaid = self.prepaid();
        if prepaid.units >= amount && prepaid.reserved_at.elapsed() < STALE {
            prepaid.units -= amount;
            return Some(prepaid.ready_at.saturating_duration_since(Instant::now()));
        }
        None
    }

    /// How long to wait before spending `amount`.
    async fn take(&self, amount: f64) -> Duration {
        if let Some(wait) = self.spend(amount) {
            return wait;
        }
        let _turn = self.fetching.lock().await;
        // Another caller may have reserved a block meanwhile.
        if let Some(wait) = self.spend(amount) {
            return wait;
        }
        let (left, stale) = {
            let prepaid = self.prepaid();
            let stale = prepaid.reserved_at.elapsed() >= STALE;
            (prepaid.units, stale)
        };
        // A stale remainder goes back in the same statement; a debt (tokens an answer
        // used beyond their estimate) is paid with it.
        let kept = if stale { left.min(0.0) } else { left };
        let block = self.block.max(amount - kept);
        let reserve = if stale { block - left.max(0.0) } else { block };
        let request = BudgetRequest {
            pool: &self.pool,
            per_second: self.per_second,
            burst: self.burst,
            amount: reserve,
        };
        // Unreachable: paced by this instance's own limiter alone until it is back.
        let wait = self
            .cluster
            .limits
            .reserve_budget(&request)
            .await
            .unwrap_or_default();
        let now = Instant::now();
        let mut prepaid = self.prepaid();
        prepaid.units = kept + block - amount;
        prepaid.reserved_at = now;
        prepaid.ready_at = now + wait;
        wait
    }
}

/// Keeps this instance's share of `endpoint`'s `max_concurrency` leased from the
/// database for as long as the endpoint lives. Its limiter starts at a share of zero: no
/// request is sent before the first grant.
pub(in crate::components::openai) fn keep_concurrency_share(
    endpoint: Weak<Endpoint>,
    cluster: Cluster,
    pool: String,
    max: usize,
) {
    tokio::spawn(async move {
        let renew = cluster.lease / 3;
        let mut asked_at = Instant::now();
        loop {
            let Some(held) = endpoint.upgrade() else {
                cluster.limits.release_share(&pool, &cluster.holder).await;
                return;
            };
            let limiter = &held.concurrency;
            let (want, in_use) = limiter.share_needs(max);
            let request = ShareRequest {
                pool: &pool,
                holder: &cluster.holder,
                capacity: max as u64,
                want: want as u64,
                in_use: in_use as u64,
                lease: cluster.lease,
            };
            let sent_at = Instant::now();
            let call = cluster.limits.lease_share(&request);
            tokio::pin!(call);
            // Not renewed in time: the share may go to others, so no request starts
            // until the answer comes.
            let answer = tokio::select! {
                answer = &mut call => answer,
                () = tokio::time::sleep_until(asked_at + cluster.lease * 2 / 3) => {
                    limiter.set_share(0);
                    call.await
                }
            };
            let wait = match answer {
                Some(grant) => {
                    asked_at = sent_at;
                    limiter.set_share(grant.usable() as usize);
                    if grant.held != grant.target {
                        REBALANCE
                    } else {
                        renew
                    }
                }
                None => REBALANCE,
            };
            let asked = Instant::now();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = limiter.wants.notified() => {}
            }
            drop(held);
            tokio::time::sleep_until(asked + REBALANCE).await;
        }
    });
}
