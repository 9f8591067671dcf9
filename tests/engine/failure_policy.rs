//! The failure policy: exactly `max_ratio` passes; past it, the run stops within one
//! commit batch with its final counts.

use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use themis::components::{ComponentError, GenerateRequest, Generation, Generator, Registry};
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{EventKind, RunStatus, Usage};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

/// `test/fail_flagged`: fails the cases whose input has `"fail": true`, answers the rest.
struct FailFlagged;

#[async_trait]
impl Generator for FailFlagged {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        if request.case.input["fail"] == true {
            return Err(ComponentError::new("flagged to fail"));
        }
        Ok(Generation {
            output: json!("ok"),
            raw_text: None,
            finish_reason: None,
            usage: Usage::default(),
            transcript: None,
        })
    }
}

fn engine(max_batch: usize) -> Engine {
    let mut registry = Registry::builtin();
    registry.register_generator("test/fail_flagged", "1", |_| Arc::new(FailFlagged));
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(registry),
        EngineConfig {
            max_batch,
            ..EngineConfig::default()
        },
    )
}

fn flagged(fails: impl Fn(usize) -> bool, n: usize, concurrency: usize, policy: Value) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"fail": fails(i)}, "expected_output": "ok"}))
        .collect();
    json!({
        "generation": {"generator": "test/fail_flagged"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": concurrency,
        "failure_policy": policy
    })
}

async fn execute(engine: &Engine, body: &Value) -> themis::model::RunRecord {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failure_ratio_of_exactly_max_ratio_does_not_stop_the_run() {
    let engine = engine(8);
    // One at a time, ok then failed: the ratio reaches 0.5 and never exceeds it.
    let body = flagged(
        |i| i % 2 == 1,
        40,
        1,
        json!({"max_ratio": 0.5, "min_cases": 2}),
    );
    let record = execute(&engine, &body).await;
    assert_eq!(record.status, RunStatus::Completed, "{:?}", record.error);
    assert_eq!(
        (record.progress.completed, record.progress.failed),
        (20, 20)
    );
}

#[tokio::test]
async fn the_failure_policy_stops_within_one_commit_batch_and_reports_the_final_counts() {
    const MAX_BATCH: usize = 8;
    const MIN_CASES: u64 = 10;
    let engine = engine(MAX_BATCH);
    let body = flagged(
        |_| true,
        2_000,
        4,
        json!({"max_ratio": 0.5, "min_cases": MIN_CASES}),
    );
    let record = execute(&engine, &body).await;
    assert_eq!(record.status, RunStatus::Failed);
    let progress = record.progress;
    // The commit that first has min_cases finished trips it: at most one batch more.
    assert!(
        (MIN_CASES..MIN_CASES + MAX_BATCH as u64).contains(&progress.finished()),
        "{progress:?}"
    );
    let error = record.error.clone().unwrap();
    assert_eq!(
        error,
        format!(
            "stopped: {} of {} finished cases failed, more than the failure policy's max_ratio 0.5",
            progress.failed,
            progress.finished()
        )
    );
    let stored = engine
        .store()
        .case_records(
            &record.run_id,
            &CaseQuery {
                limit: 10_000,
                ..CaseQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, progress.finished());
    let events = engine
        .store()
        .events_after(&record.run_id, 0, 100_000)
        .await
        .unwrap();
    match &events.last().unwrap().kind {
        EventKind::RunFailed {
            error_message,
            progress: reported,
        } => {
            assert_eq!(error_message, &error);
            assert_eq!(reported, &progress);
        }
        other => panic!("last event {other:?}"),
    }
}
