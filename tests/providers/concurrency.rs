//! The concurrency a run gets: the instance's default outbound cap follows what it can
//! hold, and a provider-backed run asking for more than the cap says what it gets and
//! why (in `GET /runs/{id}` while it runs, and in one event), instead of being held
//! there silently.

use crate::common;

use std::time::Duration;

use serde_json::{Value, json};
use themis::components::{Outbound, Registry};

use common::fake_provider::{FakeProvider, Reply};
use common::{TestServer, events_of};

/// A provider answering `{"answer": "4"}` to every request after `delay` (the fake
/// counts the most requests it held at once).
async fn start_provider(delay: Duration) -> (FakeProvider, String) {
    let fake = FakeProvider::start_with(delay, |_, _| Reply::text("{\"answer\": \"4\"}", 3)).await;
    let base_url = fake.base_url.clone();
    (fake, base_url)
}

fn cases(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}")},
                        "expected_output": {"answer": "4"}})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_above_the_outbound_cap_shows_the_concurrency_it_gets() {
    let (fake, base_url) = start_provider(Duration::from_millis(60)).await;
    let mut config = themis::server::ServerConfig {
        database_url: "memory".into(),
        ..Default::default()
    };
    config.engine.outbound_cap = Some(2);
    let registry = Registry::builtin_with(Outbound {
        max_requests: 2,
        ..Outbound::local()
    });
    let server = TestServer::start_config(config, registry).await;
    let experiment = json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": base_url, "model": "m", "prompt": "{{ input.question }}",
            "output": "json", "timeout_ms": 5000}}},
        "evaluation": {"metrics": [{"name": "builtin/exact_match", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": "d", "cases": cases(24)}],
        "seeds": [1],
        "concurrency": 8,
        "cache": false
    });
    let (status, created) = server.post("/runs", &experiment).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();

    // While it runs (24 cases, 2 at a time, 60 ms each: ~0.7 s).
    let mut shown = None;
    for _ in 0..200 {
        let (status, run) = server.get(&format!("/runs/{run_id}")).await;
        assert_eq!(status, 200, "{run}");
        if run["status"] == "running" && run.get("concurrency").is_some() {
            shown = Some(run["concurrency"].clone());
            break;
        }
        assert_ne!(
            run["status"], "completed",
            "finished without showing its concurrency: {run}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shown = shown.expect("the running run shows its concurrency");
    assert_eq!(shown["requested"], 8, "{shown}");
    assert_eq!(shown["effective"], 2, "{shown}");
    assert!(
        shown["reason"]
            .as_str()
            .is_some_and(|r| r.contains("at most 2 model provider requests")),
        "{shown}"
    );

    let finished = server.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    assert!(
        finished.get("concurrency").is_none(),
        "shown only while it runs: {finished}"
    );
    assert!(fake.max_in_flight() <= 2);

    let events = events_of(&server.client, &server.base, &run_id).await;
    let limited: Vec<_> = events
        .iter()
        .filter(|e| e.event == "concurrency_limited")
        .collect();
    assert_eq!(limited.len(), 1, "one event says why");
    let event = &limited[0].data;
    assert_eq!(
        (&event["requested"], &event["effective"]),
        (&json!(8), &json!(2))
    );
    assert_eq!(event["reason"], shown["reason"]);

    // A run without provider components is not held by the outbound cap: no event.
    let local = json!({
        "generation": {"generator": "builtin/demo_generator"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases(24)}],
        "seeds": [1],
        "concurrency": 8
    });
    let (status, created) = server.post("/runs", &local).await;
    assert_eq!(status, 202, "{created}");
    let local_id = created["run_id"].as_str().unwrap().to_owned();
    server.wait_finished(&local_id).await;
    let events = events_of(&server.client, &server.base, &local_id).await;
    assert!(events.iter().all(|e| e.event != "concurrency_limited"));
    server.stop().await;
}

/// With no `--max-outbound-requests`, the cap follows the open-file limit `serve` raised
/// (a quarter of it, 256 to 16,384): with the usual hard limit, far above the 256 that
/// held a run asking for 1,024 at a quarter of its rate.
#[test]
fn the_default_outbound_cap_follows_the_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) into a valid struct.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let raised = limit.rlim_max.min(65_536);
    let expected = themis::server::default_max_outbound_requests(Some(raised));
    assert_eq!(expected, (raised / 4).clamp(256, 16_384) as usize);

    assert_eq!(logged_outbound_cap(&[]), json!(expected));
    assert_eq!(
        logged_outbound_cap(&["--max-outbound-requests", "300"]),
        json!(300)
    );
}

/// The outbound cap `themis serve` with `extra` flags logs at startup.
fn logged_outbound_cap(extra: &[&str]) -> Value {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["serve", "--addr", "127.0.0.1:0", "--database", "memory"])
        .args(["--log-format", "json"])
        .args(extra)
        .env_remove("THEMIS_MAX_OUTBOUND_REQUESTS")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start themis serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let found = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|log| log["fields"]["message"] == "model providers");
    let _ = child.kill();
    let _ = child.wait();
    found.expect("the providers line")["fields"]["max_outbound_requests"].clone()
}
