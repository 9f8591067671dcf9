//! Polling a run's status: the instance executing a run answers `GET /runs/{id}` from
//! the summary its commits report (no database round trip), and that summary is the
//! run as stored.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use themis::components::Registry;
use themis::model::{CaseKey, CaseRecord, CaseStatus, RunId, RunKind, RunStatus, Timestamp, Usage};
use themis::store::{CaseCommit, CommitBatch, NewRun, StatusChange, Store};

use common::TestServer;

fn case(run: &RunId, index: u64) -> CaseCommit {
    let record = CaseRecord {
        run_id: run.clone(),
        key: CaseKey {
            case_index: index,
            dataset_id: "d".into(),
            case_id: format!("c{index}"),
            seed: 1,
        },
        status: CaseStatus::Completed,
        candidates: Vec::new(),
        reduced: None,
        parsed: None,
        parse_steps: Vec::new(),
        scores: Vec::new(),
        judgments: Vec::new(),
        error: None,
        stages: Vec::new(),
        usage: Usage {
            requests: 1,
            ..Usage::default()
        },
        started_at: Timestamp::from_millis(1),
        finished_at: Timestamp::from_millis(2),
    };
    CaseCommit::new(record, Vec::new())
}

async fn a_commit_reports_the_run_as_stored(store: Arc<dyn Store>) {
    let run = RunId::from_digest(&[9; 32]);
    store
        .create_run(NewRun {
            labels: themis::model::RunLabels::default(),
            run_id: run.clone(),
            kind: RunKind::Experiment,
            parent_run_id: None,
            definition: json!({"seeds": [1]}),
            runtime: json!({"concurrency": 2}),
            total_cases: 3,
            index_space: 3,
            datasets: Vec::new(),
            created_at: Timestamp::from_millis(5),
        })
        .await
        .unwrap();
    let mut start = CommitBatch::new(run.clone());
    start.status = Some(StatusChange {
        status: RunStatus::Running,
        error: None,
        at: Timestamp::now(),
    });
    let mut cases = CommitBatch::new(run.clone());
    cases.cases = vec![case(&run, 0), case(&run, 1)];
    cases.progress_event = true;
    let mut end = CommitBatch::new(run.clone());
    end.cases = vec![case(&run, 2)];
    end.status = Some(StatusChange {
        status: RunStatus::Completed,
        error: None,
        at: Timestamp::now(),
    });
    for batch in [start, cases, end] {
        let outcome = store.commit(&batch).await.unwrap();
        let stored = store.get_run_summary(&run).await.unwrap().unwrap();
        assert_eq!(*outcome.run, stored);
    }
    let last = store.get_run_summary(&run).await.unwrap().unwrap();
    assert_eq!(
        (last.status, last.progress.completed, last.usage.requests),
        (RunStatus::Completed, 3, 3)
    );
}

contract!(a_commit_reports_the_run_as_stored);

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
