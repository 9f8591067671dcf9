//! The stores: one contract suite run against every store (memory, SQLite, Postgres),
//! split by what it covers, the tests of each dialect, and the run summary commits report
//! (what `GET /runs/{id}` answers from). What a store must guarantee is written here
//! once; dialects stay inside the stores.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod budgets;
mod cluster;
mod commit_summary;
mod datasets;
mod dialects;
mod leases;
mod migrations;
mod openai_evals;
mod reviews;
mod runs;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use themis::model::{
    CaseKey, CaseRecord, CaseStatus, EventKind, NewEvent, RunId, RunKind, RunStatus, ScoreRecord,
    Timestamp, Usage,
};
use themis::store::{
    CancelOutcome, CaseCommit, CaseQuery, CommitBatch, CreateOutcome, DeleteRun, NewRun, RunCursor,
    RunQuery, StatusChange, Store, StoreError,
};

fn run_id(n: u8) -> RunId {
    RunId::from_digest(&[n; 32])
}

fn new_run(n: u8, created_at: i64, total: u64) -> NewRun {
    NewRun {
        labels: themis::model::RunLabels::default(),
        run_id: run_id(n),
        kind: RunKind::Experiment,
        parent_run_id: None,
        definition: json!({"seeds": [n]}),
        runtime: json!({"concurrency": 2}),
        total_cases: total,
        index_space: total,
        datasets: Vec::new(),
        created_at: Timestamp::from_millis(created_at),
    }
}

fn record(run: &RunId, index: u64, dataset: &str, score: Option<f64>) -> CaseRecord {
    CaseRecord {
        run_id: run.clone(),
        key: CaseKey {
            case_index: index,
            dataset_id: dataset.to_owned(),
            case_id: format!("c{index}"),
            seed: 1,
        },
        status: if score.is_some() {
            CaseStatus::Completed
        } else {
            CaseStatus::Failed
        },
        candidates: Vec::new(),
        reduced: None,
        parsed: None,
        parse_steps: Vec::new(),
        scores: vec![ScoreRecord {
            metric_id: "m".into(),
            score,
            details: Value::Null,
            error: score.is_none().then(|| "boom".to_owned()),
        }],
        judgments: Vec::new(),
        error: None,
        stages: Vec::new(),
        usage: Usage {
            requests: 1,
            prompt_tokens: 10,
            completion_tokens: 2,
            ..Usage::default()
        },
        started_at: Timestamp::from_millis(1),
        finished_at: Timestamp::from_millis(2),
    }
}

fn case_commit(run: &RunId, index: u64, dataset: &str, score: Option<f64>) -> CaseCommit {
    let record = record(run, index, dataset, score);
    let events = vec![
        NewEvent::now(EventKind::CaseStarted {
            case: record.key.clone(),
        }),
        NewEvent::now(EventKind::CaseCompleted {
            case: record.key.clone(),
            duration_ms: 1,
        }),
    ];
    let commit = CaseCommit::new(record, events);
    // Odd cases come with their JSON, as the engine sends them; even ones without, as an
    // embedder may: every store must record both alike.
    if index % 2 == 1 {
        commit.encode().unwrap()
    } else {
        commit
    }
}

fn status(status: RunStatus) -> Option<StatusChange> {
    Some(StatusChange {
        status,
        error: None,
        at: Timestamp::now(),
    })
}

/// The run's first ten case records.
async fn first_records(store: &dyn Store, run: &RunId) -> Vec<CaseRecord> {
    store
        .case_records(
            run,
            &CaseQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// After a migration, case 0 (score 1) recorded before it stays the run's, once: a
/// commit of it again (score 0) with case 1 counts one duplicate and keeps the old
/// record, and the event log ends at `last_seq`.
async fn the_migrated_case_stays_recorded_once(store: &dyn Store, run: &RunId, last_seq: u64) {
    let mut batch = CommitBatch::new(run.clone());
    batch.cases = vec![
        case_commit(run, 0, "a", Some(0.0)),
        case_commit(run, 1, "a", Some(1.0)),
    ];
    let outcome = store.commit(&batch).await.unwrap();
    assert_eq!(outcome.duplicates, 1);
    let records = first_records(store, run).await;
    assert_eq!(
        records
            .iter()
            .map(|r| (r.key.case_index, r.scores[0].score))
            .collect::<Vec<_>>(),
        [(0, Some(1.0)), (1, Some(1.0))]
    );
    let seqs: Vec<u64> = store
        .events_after(run, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
}

async fn start(store: &dyn Store, run: &RunId) {
    let mut batch = CommitBatch::new(run.clone());
    batch.status = status(RunStatus::Running);
    batch.events.push(NewEvent::now(EventKind::RunStarted {
        total_cases: 0,
        resumed: false,
    }));
    store.commit(&batch).await.unwrap();
}
