//! Engine-only runs (the demo generator, no provider): the service's own cost per case,
//! its memory, and SQLite against Postgres with one and two instances.

use super::process::{self, Service};
use super::{
    BenchConfig, Databases, Row, demo_experiment, finish, measured, measured_run, post_run,
};

/// Demo generator without delay: the engine's own cost per case, on SQLite and Postgres.
pub(crate) async fn overhead(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &mut Databases,
) -> Result<Vec<Row>, String> {
    let n = config.overhead_cases;
    let body = demo_experiment(n, 0, 64, "overhead");
    let service = Service::start(&databases.sqlite("overhead.db"), "bench-overhead", &[]).await?;
    let before = service.usage();
    let sqlite = measured_run(client, &service, &body).await;
    let after = service.usage();
    service.stop().await;
    let sqlite = sqlite?;
    let bytes_per_case = databases.sqlite_bytes("overhead.db") as f64 / n.max(1) as f64;
    let setup = |store: &str| format!("demo generator, {n} cases, exact_match + token_f1, {store}");
    let mut rows = vec![
        Row {
            scenario: "engine overhead".into(),
            setup: setup("SQLite"),
            result: format!(
                "{:.0} cases/s ({:.0}/min)",
                sqlite.per_second,
                sqlite.per_second * 60.0
            ),
            cpu_per_case: Some(sqlite.cpu_per_case),
            disk_per_case: Some(bytes_per_case),
            target: "≤ 60 µs CPU per case, ≥ 25,000 cases/s".into(),
            met: Some(sqlite.cpu_per_case <= 60.0 && sqlite.per_second >= 25_000.0),
        },
        Row {
            scenario: "memory".into(),
            setup: format!("same run, {n} cases"),
            result: format!(
                "service RSS {:.0} MiB before, {:.0} MiB after, peak {:.0} MiB",
                before.map_or(f64::NAN, |u| u.rss_mib),
                after.map_or(f64::NAN, |u| u.rss_mib),
                after.map_or(f64::NAN, |u| u.peak_rss_mib)
            ),
            cpu_per_case: None,
            disk_per_case: None,
            target: "records streamed to the store, not held".into(),
            met: None,
        },
    ];
    if let Some(url) = databases.postgres().await? {
        let service = Service::start(&url, "bench-overhead-pg", &[]).await?;
        let postgres = measured_run(client, &service, &body).await;
        service.stop().await;
        let postgres = postgres?;
        let within = postgres.cpu_per_case <= 1.5 * sqlite.cpu_per_case
            && postgres.per_second * 1.5 >= sqlite.per_second;
        rows.insert(
            1,
            Row {
                scenario: "engine overhead".into(),
                setup: setup("Postgres"),
                result: format!(
                    "{:.0} cases/s ({:.0}/min)",
                    postgres.per_second,
                    postgres.per_second * 60.0
                ),
                cpu_per_case: Some(postgres.cpu_per_case),
                disk_per_case: None,
                target: "within 1.5 × SQLite (CPU per case and cases/s)".into(),
                met: Some(within),
            },
        );
    }
    Ok(rows)
}

/// The same run on SQLite, and on Postgres shared by two instances.
pub(crate) async fn compare_stores(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &mut Databases,
) -> Result<Vec<Row>, String> {
    let n = config.multinode_cases;
    let service = Service::start(&databases.sqlite("compare.db"), "bench-compare", &[]).await?;
    let sqlite = measured_run(client, &service, &demo_experiment(n, 0, 64, "compare")).await;
    service.stop().await;
    let mut rows = vec![store_row("SQLite, 1 instance", n, &sqlite?)];
    if let Some(url) = databases.postgres().await? {
        let a = Service::start(&url, "bench-pg-a", &[]).await?;
        let b = Service::start(&url, "bench-pg-b", &[]).await?;
        let usage = |a: &Service, b: &Service| match (a.usage(), b.usage()) {
            (Some(a), Some(b)) => Some(process::Usage {
                cpu_seconds: a.cpu_seconds + b.cpu_seconds,
                ..a
            }),
            _ => None,
        };
        let before = usage(&a, &b);
        let outcome = async {
            let run_id = post_run(client, &a.base, &demo_experiment(n, 0, 64, "pg2")).await?;
            finish(client, &b.base, &run_id).await
        }
        .await;
        let after = usage(&a, &b);
        a.stop().await;
        b.stop().await;
        rows.push(store_row(
            "Postgres, 2 instances (CPU of both)",
            n,
            &measured(outcome?, before, after),
        ));
    }
    Ok(rows)
}

fn store_row(setup: &str, cases: usize, run: &super::Measured) -> Row {
    Row {
        scenario: "store comparison".into(),
        setup: format!("demo generator, {cases} cases, {setup}"),
        result: format!("{:.0} cases/s", run.per_second),
        cpu_per_case: Some(run.cpu_per_case),
        disk_per_case: None,
        target: "-".into(),
        met: None,
    }
}
