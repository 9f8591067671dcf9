//! Polling a run's status: the instance executing a run answers `GET /runs/{id}` from
//! the summary its commits report (no database round trip); reads follow the run's
//! commits and a cancel made here, and `ETag`s still give `304`.

use std::time::Duration;

use serde_json::json;
use themis::components::Registry;

use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_a_running_run_follows_its_commits_and_cancel() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    let cases: Vec<_> = (0..200)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"question": "2+2"},
                        "expected_output": {"answer": "4"}})
        })
        .collect();
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator",
                                     "params": {"delay_ms": 20}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 2
    });
    let (status, created) = server.post("/runs", &body).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let url = server.url(&format!("/runs/{run_id}"));

    // Progress only moves forward, and an unchanged run answers 304 to its ETag.
    let mut done = 0;
    let mut seen_progress = false;
    for _ in 0..300 {
        let response = server.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        let run: serde_json::Value = response.json().await.unwrap();
        let now = run["progress"]["completed"].as_u64().unwrap();
        assert!(now >= done, "progress went back from {done} to {now}");
        done = now;
        let again = server
            .client
            .get(&url)
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert!(
            again.status() == 304 || again.status() == 200,
            "{}",
            again.status()
        );
        if run["status"] == "running" && done >= 10 {
            seen_progress = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_progress, "the run never showed progress while running");

    // A cancel made here shows in the next read, not at the next commit.
    let (status, cancelled) = server
        .post(&format!("/runs/{run_id}/cancel"), &json!({}))
        .await;
    assert!(status == 200 || status == 202, "{status} {cancelled}");
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert!(
        run["cancel_requested"] == true || run["status"] == "cancelled",
        "{run}"
    );
    let finished = server.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "cancelled", "{finished}");
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["status"], "cancelled");
    server.stop().await;
}

/// The instance executing a run keeps the run's encoded status between its changes: an
/// unchanged running run keeps its ETag (and answers 304 to it), while the body's
/// `duration_ms` still follows the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_running_run_keeps_its_etag_and_its_duration_follows_the_clock() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator",
                                     "params": {"delay_ms": 600_000}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "only", "input": {"question": "2+2", "duration_ms": null},
             "expected_output": "4"}]}],
        "seeds": [1],
        "concurrency": 1,
        "metadata": {"duration_ms": null}
    });
    let (status, created) = server.post("/runs", &body).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let url = server.url(&format!("/runs/{run_id}"));
    let read = || async {
        let response = server.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let tag = response.headers()["etag"].to_str().unwrap().to_owned();
        (tag, response.json::<serde_json::Value>().await.unwrap())
    };
    let mut first = read().await;
    for _ in 0..200 {
        if first.1["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = read().await;
    }
    assert_eq!(first.1["status"], "running", "{}", first.1);
    // Once the run has settled (its case started, nothing more happens for ten
    // minutes), a second read of the same state later has another clock, the same tag.
    let (tag, second) = loop {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let next = read().await;
        if next.0 == first.0 {
            break next;
        }

        assert!(
            next.1["progress"] == first.1["progress"],
            "the run moved: {}",
            next.1
        );
        first = next;
    };
    assert_eq!(tag, first.0);
    let (before, after) = (
        first.1["duration_ms"].as_u64().unwrap(),
        second["duration_ms"].as_u64().unwrap(),
    );
    assert!(after >= before + 30, "duration {before} then {after}");
    // Only the clock differs; a user's key of the same name is left alone.
    let mut same = second.clone();
    same["duration_ms"] = first.1["duration_ms"].clone();
    assert_eq!(same, first.1);
    assert!(second["metadata"]["duration_ms"].is_null(), "{second}");
    // With the definition (user keys after `duration_ms`: serialised whole), too.
    let (status, full) = server
        .get(&format!("/runs/{run_id}?include=definition"))
        .await;
    assert_eq!(status, 200, "{full}");
    assert!(full["duration_ms"].as_u64().is_some(), "{full}");
    // 304 to the current tag (the run's row may still be touched now and then: the
    // tag read just before counts).
    let mut answered = Vec::new();
    for _ in 0..20 {
        let (tag, _) = read().await;
        let again = server
            .client
            .get(&url)
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        answered.push(again.status());
        if again.status() == 304 {
            break;
        }
    }
    assert_eq!(
        answered.last(),
        Some(&reqwest::StatusCode::NOT_MODIFIED),
        "{answered:?}"
    );
    server
        .post(&format!("/runs/{run_id}/cancel"), &json!({}))
        .await;
    server.wait_finished(&run_id).await;
    server.stop().await;
}
