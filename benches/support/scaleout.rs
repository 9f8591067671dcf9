//! Scale-out on one Postgres (opt-in: `--only scaleout`): N = 1, 2, 4, 8 `themis serve`
//! processes share one run against a latency-bound fake provider, the run asking for
//! 256·N cases at once (cluster-wide). Each row gives throughput, speedup over one
//! instance, the servers' CPU per case and the Postgres backends' CPU per case (read
//! from `/proc` of the backends serving the run's database), and how many coordination
//! rows (chunk claims and renewals, concurrency shares) were written per case.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::Connection;

use super::process::Service;
use super::provider::{fake_provider, provider_experiment};
use super::{BenchConfig, Databases, Row, finish, post_run};

pub(crate) async fn scaleout(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &mut Databases,
) -> Result<Vec<Row>, String> {
    let latency = config.scaleout_latency;
    let provider = fake_provider(latency).await?;
    let mut rows = Vec::new();
    let mut single = None;
    for &n in &config.scaleout_instances {
        let Some(url) = databases.postgres().await? else {
            return Err("needs --postgres URL".into());
        };
        let mut services = Vec::new();
        for i in 0..n {
            let cap = (2 * config.scaleout_per_instance).to_string();
            let name = format!("bench-scale-{n}-{i}");
            services.push(Service::start(&url, &name, &["--max-outbound-requests", &cap]).await?);
        }
        let concurrency = config.scaleout_per_instance * n;
        let cases = config.scaleout_waves * concurrency;
        let body = provider_experiment(cases, provider, concurrency, &format!("scale-{n}"));
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .map_err(|e| e.to_string())?;
        let before_servers: f64 = services
            .iter()
            .filter_map(|s| s.usage())
            .map(|u| u.cpu_seconds)
            .sum();
        let before_pg = backend_cpu(&mut admin).await?;
        let before_writes = coordination_writes(&mut admin).await?;
        let started = Instant::now();
        let outcome = async {
            let run_id = post_run(client, &services[0].base, &body).await?;
            finish(client, &services[n - 1].base, &run_id).await
        }
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let after_servers: f64 = services
            .iter()
            .filter_map(|s| s.usage())
            .map(|u| u.cpu_seconds)
            .sum();
        let after_pg = backend_cpu(&mut admin).await?;
        let after_writes = coordination_writes(&mut admin).await?;
        let _ = admin.close().await;
        for service in services {
            service.stop().await;
        }
        outcome?;
        let per_second = cases as f64 / elapsed;
        let base = *single.get_or_insert(per_second);
        let speedup = per_second / base;
        let pg_cpu: f64 = after_pg
            .iter()
            .map(|(pid, cpu)| cpu - before_pg.get(pid).copied().unwrap_or(0.0))
            .sum();
        let writes = (after_writes - before_writes) as f64 / cases as f64;
        let bound = concurrency as f64 / latency.as_secs_f64();
        rows.push(Row {
            scenario: "scaleout".into(),
            setup: format!(
                "N={n} instances, Postgres, L={}ms, C={concurrency} ({}·N), {cases} cases",
                latency.as_millis(),
                config.scaleout_per_instance
            ),
            result: format!(
                "{per_second:.0} cases/s ({:.2} of C/L), {speedup:.2}× one instance; Postgres CPU {:.0} µs/case; coordination rows {writes:.3}/case",
                per_second / bound,
                pg_cpu * 1e6 / cases as f64
            ),
            cpu_per_case: Some((after_servers - before_servers) * 1e6 / cases as f64),
            disk_per_case: None,
            target: if n == 8 { "≥ 7.5× at N = 8".into() } else { "-".into() },
            met: (n == 8).then_some(speedup >= 7.5),
        });
    }
    Ok(rows)
}

/// CPU seconds (user + system) of each Postgres backend serving this connection's
/// database, by pid, from `/proc` (the database's own background processes are shared
/// with every database and left out).
async fn backend_cpu(admin: &mut sqlx::PgConnection) -> Result<HashMap<i32, f64>, String> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(admin)
    .await
    .map_err(|e| e.to_string())?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(pids
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
            let used =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some((pid, used / ticks))
        })
        .collect())
}

/// Rows written so far to coordinate instances: chunk claims and lease renewals
/// (`run_chunks`), concurrency shares (`cluster_shares`) and rate budgets.
async fn coordination_writes(admin: &mut sqlx::PgConnection) -> Result<i64, String> {
    // The statistics collector reports with a delay; a fresh snapshot is asked for.
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *admin)
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables \
         WHERE relname IN ('run_chunks', 'cluster_shares', 'cluster_budgets')",
    )
    .fetch_one(admin)
    .await
    .map_err(|e| e.to_string())
}
