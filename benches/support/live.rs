//! Readers beside a running run: pollers on `GET /runs/{id}` while a provider-backed run
//! executes at more than a thousand cases a second, then a thousand SSE clients
//! following one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::process::Service;
use super::provider::{fake_provider, provider_experiment};
use super::{
    BenchConfig, Databases, Row, demo_experiment, finish, measured, percentile, post_run,
    run_seconds,
};

pub(crate) async fn polling_and_fanout(
    config: &BenchConfig,
    client: &reqwest::Client,
    databases: &Databases,
) -> Result<Vec<Row>, String> {
    let provider = fake_provider(config.provider_latency).await?;
    let service = Service::start(&databases.sqlite("polling.db"), "bench-polling", &[]).await?;
    let result = async {
        let body = provider_experiment(
            config.polling_cases,
            provider,
            config.polling_concurrency,
            "polling",
        );
        let before = service.usage();
        let run_id = post_run(client, &service.base, &body).await?;
        let polling = poll_while_running(
            client,
            &service.base,
            &run_id,
            config.pollers,
            config.poll_pause,
        )
        .await?;
        let run = finish(client, &service.base, &run_id).await?;
        let polled = measured(run, before, service.usage());
        let before = service.usage();
        let fanout = sse_fanout(client, &service, config).await?;
        let after = service.usage();
        let fanout_cpu = match (before, after) {
            (Some(before), Some(after)) => before.cpu_micros_per_case(&after, fanout.cases),
            _ => f64::NAN,
        };
        Ok::<_, String>((polled, polling, fanout, fanout_cpu))
    }
    .await;
    service.stop().await;
    let (polled, polling, fanout, fanout_cpu) = result?;
    Ok(vec![
        Row {
            scenario: "polling".into(),
            setup: format!(
                "{} pollers on GET /runs/{{id}} ({} ms pause) during a {}-case provider-backed run (L={}ms, C={}: {:.0} cases/s meanwhile)",
                config.pollers,
                config.poll_pause.as_millis(),
                config.polling_cases,
                config.provider_latency.as_millis(),
                config.polling_concurrency,
                polled.per_second
            ),
            result: format!(
                "p50 {:.2} ms, p99 {:.2} ms, {:.0} req/s",
                polling.p50_ms, polling.p99_ms, polling.per_second
            ),
            cpu_per_case: Some(polled.cpu_per_case),
            disk_per_case: None,
            target: "p99 < 5 ms at ≥ 1,000 cases/s".into(),
            met: Some(polling.p99_ms < 5.0 && polled.per_second >= 1_000.0),
        },
        Row {
            scenario: "SSE fan-out".into(),
            setup: format!(
                "{} clients, {} events at {:.0} events/s",
                config.sse_clients, fanout.events, fanout.per_second
            ),
            result: format!(
                "all in order: {}; event → last client p50 {:.0} ms, p99 {:.0} ms",
                fanout.complete, fanout.p50_ms, fanout.p99_ms
            ),
            cpu_per_case: Some(fanout_cpu),
            disk_per_case: None,
            target: "every client gets every event, in order; p99 < 250 ms at ≥ 500 events/s"
                .into(),
            met: Some(
                fanout.complete
                    && fanout.events > 0
                    && fanout.p99_ms < 250.0
                    && fanout.per_second >= 500.0,
            ),
        },
    ])
}

struct Polling {
    p50_ms: f64,
    p99_ms: f64,
    per_second: f64,
}

/// `pollers` clients GET the run as fast as they can until it finishes.
async fn poll_while_running(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    pollers: usize,
    pause: Duration,
) -> Result<Polling, String> {
    let started = Instant::now();
    let url = format!("{base}/runs/{run_id}");
    let tasks: Vec<_> = (0..pollers)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let sent = Instant::now();
                    let Ok(response) = client.get(&url).send().await else {
                        break;
                    };
                    let Ok(run) = response.json::<Value>().await else {
                        break;
                    };
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    if matches!(
                        run["status"].as_str(),
                        Some("completed" | "failed" | "cancelled")
                    ) {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Polling {
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
        per_second: all.len() as f64 / elapsed.max(1e-9),
    })
}

struct Fanout {
    cases: usize,
    events: usize,
    /// Events the run emitted per second of its execution.
    per_second: f64,
    complete: bool,
    p50_ms: f64,
    p99_ms: f64,
}

/// (seq, received at ms, occurred at ms — parsed by reader 0 only)
type Seen = Vec<(u64, f64, Option<f64>)>;

/// Opens `sse_clients` streams on a new run and checks each gets every event in order.
async fn sse_fanout(
    client: &reqwest::Client,
    service: &Service,
    config: &BenchConfig,
) -> Result<Fanout, String> {
    let base = &service.base;
    // Two cases at a time: about 700 events a second on an idle machine.
    let body = demo_experiment(config.sse_cases, config.sse_delay_ms, 2, "fanout");
    let run_id = post_run(client, base, &body).await?;
    let url = format!("{base}/runs/{run_id}/events");
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..config.sse_clients)
        .map(|reader| {
            let client = client.clone();
            let url = url.clone();
            let connected = connected.clone();
            tokio::spawn(async move { read_events(&client, &url, reader == 0, &connected).await })
        })
        .collect();
    // Latency counts only events that happened once every client was listening.
    while connected.load(std::sync::atomic::Ordering::SeqCst) < config.sse_clients {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_connected = chrono::Utc::now().timestamp_millis() as f64;
    let mut per_client = Vec::new();
    for reader in readers {
        per_client.push(reader.await.map_err(|e| e.to_string())?);
    }
    let run = finish(client, base, &run_id).await?;
    let events = per_client.iter().map(Vec::len).max().unwrap_or(0);
    let complete = per_client.iter().all(|seen| {
        seen.len() == events
            && seen
                .iter()
                .enumerate()
                .all(|(i, (seq, ..))| *seq == i as u64 + 1)
    });
    let occurred: BTreeMap<u64, f64> = per_client
        .first()
        .map(|seen| {
            seen.iter()
                .filter_map(|(seq, _, at)| Some((*seq, (*at)?)))
                .collect()
        })
        .unwrap_or_default();
    // For each live event, the delay until the last client had it.
    let mut worst: BTreeMap<u64, f64> = BTreeMap::new();
    for seen in &per_client {
        for (seq, received, _) in seen {
            let Some(&at) = occurred.get(seq) else {
                continue;
            };
            if at < all_connected {
                continue;
            }
            let entry = worst.entry(*seq).or_insert(f64::MIN);
            *entry = entry.max(received - at);
        }
    }
    let mut delays: Vec<f64> = worst.into_values().collect();
    delays.sort_by(f64::total_cmp);
    Ok(Fanout {
        cases: config.sse_cases,
        events,
        per_second: events as f64 / run_seconds(&run),
        complete,
        p50_ms: percentile(&delays, 50.0),
        p99_ms: percentile(&delays, 99.0),
    })
}

/// One SSE client. It splits frames on bytes and reads only their `id:` line (and, for
/// the measuring client, `data:`), so the bench's own CPU stays small beside the
/// service's: frames are read where they arrived, and only one that straddles two
/// chunks is copied (copying every chunk into a growing buffer made the bench spend
/// most of its CPU faulting in fresh pages).
async fn read_events(
    client: &reqwest::Client,
    url: &str,
    measuring: bool,
    connected: &std::sync::atomic::AtomicUsize,
) -> Seen {
    let mut seen = Seen::new();
    let Ok(response) = client.get(url).send().await else {
        return seen;
    };
    connected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut stream = response.bytes_stream();
    // The start of a frame whose end has not arrived yet.
    let mut partial: Vec<u8> = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let now = chrono::Utc::now().timestamp_millis() as f64;
        let mut rest: &[u8] = &chunk;
        if !partial.is_empty() {
            if partial.ends_with(b"\n") && rest.starts_with(b"\n") {
                partial.pop();
                rest = &rest[1..];
            } else if let Some(end) = find(rest, b"\n\n") {
                partial.extend_from_slice(&rest[..end]);
                rest = &rest[end + 2..];
            } else {
                partial.extend_from_slice(rest);
                continue;
            }
            record(&mut seen, &partial, now, measuring);
            partial.clear();
        }
        while let Some(end) = find(rest, b"\n\n") {
            record(&mut seen, &rest[..end], now, measuring);
            rest = &rest[end + 2..];
        }
        partial.extend_from_slice(rest);
    }
    seen
}

/// Notes one frame (without its blank line) if it is an event.
fn record(seen: &mut Seen, frame: &[u8], now: f64, measuring: bool) {
    let Some(seq) = line(frame, b"id:").and_then(|id| id.trim().parse::<u64>().ok()) else {
        return;
    };
    let occurred = measuring
        .then(|| line(frame, b"data:"))
        .flatten()
        .and_then(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .and_then(|event| {
            let at = event["occurred_at"].as_str()?.to_owned();
            chrono::DateTime::parse_from_rfc3339(&at).ok()
        })
        .map(|t| t.timestamp_millis() as f64);
    seen.push((seq, now, occurred));
}

/// Where `needle` (two bytes) starts in `haystack`: a byte search for its first byte,
/// which is much faster than comparing every window.
fn find(haystack: &[u8], needle: &[u8; 2]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = haystack[from..].iter().position(|b| *b == needle[0]) {
        let at = from + at;
        if haystack.get(at + 1) == Some(&needle[1]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The rest of the frame's line that starts with `prefix`.
fn line<'f>(frame: &'f [u8], prefix: &[u8]) -> Option<&'f str> {
    frame
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| std::str::from_utf8(rest).ok())
}
