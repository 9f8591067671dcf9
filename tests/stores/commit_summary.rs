//! A commit reports the run as it stored it: the summary the executing instance answers
//! status reads from is the run as any reader of the store would see it.

use std::sync::Arc;

use serde_json::json;
use themis::model::{CaseKey, CaseRecord, CaseStatus, RunId, RunKind, RunStatus, Timestamp, Usage};
use themis::store::{CaseCommit, CommitBatch, NewRun, StatusChange, Store};

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
            run_id: run.clone(),
            kind: RunKind::Experiment,
            parent_run_id: None,
            labels: themis::model::RunLabels::default(),
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
