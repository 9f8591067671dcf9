//! Memory of the service process (issue 13): runs whose datasets were uploaded with
//! `PUT /datasets/{id}` (streamed JSONL, generated while sent) and referenced, each on a
//! fresh process and database, and the growth a `POST /runs` with inline cases costs.
//! Peaks are the kernel's `VmHWM` of the `themis serve` process alone.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::process::Service;
use super::{Row, demo_experiment, finish, post_run, throughput};

/// How big the memory scenarios are.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Cases of the two runs by reference, with their peak RSS target in MiB.
    pub runs: Vec<(usize, f64)>,
    /// Cases of the inline `POST /runs` whose growth must stay under 3× its body.
    pub inline_cases: usize,
}

impl Sizes {
    /// The targets: 1,000,000 cases < 300 MiB, 100,000 < 150 MiB.
    pub fn full() -> Self {
        Sizes {
            runs: vec![(1_000_000, 300.0), (100_000, 150.0)],
            inline_cases: 100_000,
        }
    }

    /// Seconds; the targets are kept so the rows read the same (tiny runs meet them).
    pub fn tiny() -> Self {
        Sizes {
            runs: vec![(2_000, 300.0), (500, 150.0)],
            inline_cases: 500,
        }
    }
}

/// Bytes on disk per stored case (its dataset row, record and events) a run of uploaded
/// cases may leave.
const MAX_DISK_PER_CASE: f64 = 600.0;

/// Cases sent per chunk of the upload body: the client never holds the whole dataset.
const UPLOAD_CHUNK: usize = 1_000;

/// The same cases as the other scenarios' inline datasets, one JSONL line each.
fn case_line(i: usize) -> String {
    let case = json!({"case_id": format!("c{i}"), "input": {"question": format!("{} + {}", i % 97, i % 13)},
                      "expected_output": {"answer": (i % 97 + i % 13).to_string()}});
    format!("{case}\n")
}

/// `PUT /datasets/{id}` of `n` generated cases, streamed; returns the revision.
async fn upload(
    client: &reqwest::Client,
    base: &str,
    dataset_id: &str,
    n: usize,
) -> Result<String, String> {
    let chunks = futures::stream::iter((0..n).step_by(UPLOAD_CHUNK)).map(move |start| {
        let text: String = (start..(start + UPLOAD_CHUNK).min(n))
            .map(case_line)
            .collect();
        Ok::<_, std::io::Error>(Bytes::from(text))
    });
    let request = client
        .put(format!("{base}/datasets/{dataset_id}"))
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(chunks));
    super::field_of(request, "PUT /datasets", "revision").await
}

fn by_reference(dataset_id: &str, revision: &str) -> Value {
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 0}}},
        "evaluation": {"metrics": ["builtin/exact_match", {"name": "builtin/token_f1", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": dataset_id, "revision": revision}],
        "seeds": [1],
        "concurrency": 64
    })
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Every memory row; a failed step fails only its own row.
pub async fn scenarios(
    sizes: &Sizes,
    client: &reqwest::Client,
    sqlite: &dyn Fn(&str) -> String,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &(cases, target) in &sizes.runs {
        let database = sqlite(&format!("memory-{cases}.db"));
        rows.push(
            run_by_reference(client, &database, cases, target)
                .await
                .unwrap_or_else(|e| failed(format!("run of {cases} uploaded cases"), e)),
        );
    }
    let database = sqlite("memory-inline.db");
    rows.push(
        inline_post(client, &database, sizes.inline_cases)
            .await
            .unwrap_or_else(|e| failed(format!("POST of {} inline cases", sizes.inline_cases), e)),
    );
    rows
}

fn failed(setup: String, error: String) -> Row {
    Row {
        scenario: "memory".into(),
        setup,
        result: format!("failed: {error}"),
        target: "-".into(),
        met: Some(false),
        cpu_per_case: None,
        disk_per_case: None,
    }
}

/// Upload `cases`, then run them by reference: the process's peak over both.
async fn run_by_reference(
    client: &reqwest::Client,
    database: &str,
    cases: usize,
    target_mib: f64,
) -> Result<Row, String> {
    let service = Service::start(database, "bench-memory", &[]).await?;
    let measured = async {
        let base = service.usage().ok_or("no /proc usage")?;
        let revision = upload(client, &service.base, "memory", cases).await?;
        let uploaded = service.usage().ok_or("no /proc usage")?;
        let run_id = post_run(client, &service.base, &by_reference("memory", &revision)).await?;
        let run = finish(client, &service.base, &run_id).await?;
        let after = service.usage().ok_or("no /proc usage")?;
        Ok::<_, String>((base, uploaded, run, after))
    }
    .await;
    service.stop().await;
    let (base, uploaded, run, after) = measured?;
    // The dataset's rows and the run's, as the stopped service left them.
    let disk_per_case = super::sqlite_bytes(database) as f64 / cases.max(1) as f64;
    Ok(Row {
        cpu_per_case: Some(uploaded.cpu_micros_per_case(&after, cases)),
        disk_per_case: Some(disk_per_case),
        scenario: "memory".into(),
        setup: format!(
            "run of {cases} uploaded cases (PUT /datasets, referenced), demo generator, C=64, SQLite"
        ),
        result: format!(
            "peak RSS {:.0} MiB (idle {:.0}, after the upload {:.0}, after the run {:.0}); {:.0} cases/s",
            after.peak_rss_mib,
            base.rss_mib,
            uploaded.peak_rss_mib,
            after.rss_mib,
            throughput(&run)
        ),
        target: format!("peak < {target_mib:.0} MiB, ≤ {MAX_DISK_PER_CASE:.0} B on disk per case"),
        met: Some(after.peak_rss_mib < target_mib && disk_per_case <= MAX_DISK_PER_CASE),
    })
}

/// `POST /runs` of an inline definition while the only run slot is busy, so the peak
/// is the request's own (parse, check, store the revision), not the run's.
async fn inline_post(
    client: &reqwest::Client,
    database: &str,
    cases: usize,
) -> Result<Row, String> {
    let service = Service::start(
        database,
        "bench-memory-inline",
        &["--max-running-runs", "1"],
    )
    .await?;
    let measured = async {
        // One slow case holds the slot; cancelled once measured.
        let blocker = post_run(
            client,
            &service.base,
            &demo_experiment(1, 600_000, 1, "blocker"),
        )
        .await?;
        wait_running(client, &service.base, &blocker).await?;
        let body = serde_json::to_vec(&demo_experiment(cases, 0, 64, "inline"))
            .map_err(|e| e.to_string())?;
        let body_bytes = body.len();
        let before = service.usage().ok_or("no /proc usage")?;
        service.reset_peak()?;
        let response = client
            .post(format!("{}/runs", service.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("POST /runs answered {status}: {answer}"));
        }
        let after = service.usage().ok_or("no /proc usage")?;
        let _ = client
            .post(format!("{}/runs/{blocker}/cancel", service.base))
            .send()
            .await;
        Ok::<_, String>((body_bytes, before, after))
    }
    .await;
    service.stop().await;
    let (body_bytes, before, after) = measured?;
    let growth = after.peak_rss_mib - before.rss_mib;
    let ratio = growth / mib(body_bytes);
    Ok(Row {
        cpu_per_case: None,
        disk_per_case: None,
        scenario: "memory".into(),
        setup: format!(
            "POST /runs with {cases} inline cases ({:.1} MiB body), run queued behind another",
            mib(body_bytes)
        ),
        result: format!(
            "peak RSS +{growth:.1} MiB over {:.0} MiB = {ratio:.2}× the body",
            before.rss_mib
        ),
        target: "peak growth < 3× the body".into(),
        met: Some(ratio < 3.0),
    })
}

async fn wait_running(client: &reqwest::Client, base: &str, run_id: &str) -> Result<(), String> {
    for _ in 0..400 {
        let run = super::get_run(client, base, run_id).await?;
        if run["status"] == "running" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("run {run_id} never started"))
}
