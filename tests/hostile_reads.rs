//! Heavy reads (bootstrap intervals, comparisons) are bounded per instance: beyond the
//! limit a request is refused at once with `429` and `Retry-After`, and the answers for
//! finished runs are kept, so asking again needs no slot.

mod common;

use serde_json::{Value, json};
use themis::server::ServerConfig;

use common::{CallCounter, TestServer, json_of, registry_with_counter};

/// A run of `n` counting cases; `delay_ms` only makes its definition (and id) its own.
fn definition(n: usize, delay_ms: u64) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"answer": (i % 3).to_string()}, "expected_output": "1"}))
        .collect();
    json!({
        "generation": {"generator": {"name": "test/counting", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 64
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_beyond_the_limit_get_429_and_finished_answers_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        database_url: format!("sqlite://{}", dir.path().join("themis.db").display()),
        ..Default::default()
    };
    config.api.max_body_bytes = 4 << 20;
    config.engine.max_heavy_reads = 1;
    let server =
        TestServer::start_config(config, registry_with_counter(&CallCounter::default())).await;
    let mut runs = Vec::new();
    for delay in 0..3 {
        let run_id = common::post_run(&server.client, &server.base, &definition(600, delay)).await;
        server.wait_finished(&run_id).await;
        runs.push(run_id);
    }
    // Every distinct heavy read of the three runs: each pair compared, each bootstrapped.
    let mut paths = Vec::new();
    for a in &runs {
        paths.push(format!("/runs/{a}?ci=bootstrap"));
        for b in &runs {
            if a != b {
                paths.push(format!("/runs/{a}/compare?baseline={b}"));
            }
        }
    }
    let burst = |paths: Vec<String>| {
        let server = &server;
        async move {
            let requests = paths.iter().map(|path| async move {
                let response = server.client.get(server.url(path)).send().await.unwrap();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let (status, body) = json_of(response).await;
                (path.clone(), status, retry_after, body)
            });
            futures::future::join_all(requests).await
        }
    };

    // All at once with one slot: some are computed, the rest refused without waiting.
    let first = burst(paths.clone()).await;
    let refused: Vec<_> = first.iter().filter(|(_, s, _, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "9 heavy reads at once, one slot");
    assert!(first.iter().any(|(_, s, _, _)| *s == 200));
    for (path, status, retry_after, body) in &first {
        assert!(*status == 200 || *status == 429, "{path}: {status} {body}");
        if *status == 429 {
            assert_eq!(retry_after.as_deref(), Some("1"), "{path}");
            assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
        }
    }

    // One after another, every read is served.
    let mut answers = Vec::new();
    for path in &paths {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body);
    }
    // Now kept: all at once again, none needs a slot, and each answer is the same.
    let again = burst(paths.clone()).await;
    for ((path, status, _, body), answer) in again.iter().zip(&answers) {
        assert_eq!(*status, 200, "{path}: {body}");
        assert_eq!(body["aggregates"], answer["aggregates"], "{path}");
        assert_eq!(body["metrics"], answer["metrics"], "{path}");
    }
    assert!(
        answers[0]["aggregates"]["builtin/exact_match"]["ci95_bootstrap"].is_array(),
        "{}",
        answers[0]
    );
}
