//! What an execution runs, rebuilt once from the run's stored definition: the typed
//! experiment with its resolved components (or a rejudge's evaluators and the source's
//! cases), and the work items of each claimed chunk.

use std::collections::HashSet;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::engine::definition::{
    Dataset, Evaluators, Experiment, Pipeline, parse_evaluation, parse_experiment,
};
use crate::engine::retry::retry;
use crate::engine::{Engine, generation_source};
use crate::model::{Case, CaseKey, CaseRecord, FieldError, RunId, RunKind, RunRecord};
use crate::store::{CaseQuery, Chunk, Store, StoreError};

/// What a run executes, rebuilt from its stored definition.
pub(super) enum Plan {
    Experiment {
        experiment: Box<Experiment>,
        pipeline: Pipeline,
        /// (dataset, case) positions of every case in enumeration order.
        positions: Vec<(usize, usize)>,
    },
    Rejudge {
        source: RunId,
        cases: Vec<Case>,
        seeds: usize,
        evaluators: Evaluators,
    },
}

impl Engine {
    /// The plan of `record`: its stored definition parsed into types and its components
    /// resolved, once per execution. `Err` says why the run cannot execute.
    pub(super) fn plan(&self, record: &RunRecord) -> Result<Plan, String> {
        let describe = |errors: Vec<FieldError>| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match record.kind {
            RunKind::Experiment => {
                let request = parse_experiment(&record.definition, self.registry())
                    .map_err(|e| format!("stored definition no longer valid: {}", describe(e)))?;
                let positions = request
                    .experiment
                    .datasets
                    .iter()
                    .enumerate()
                    .flat_map(|(d, dataset)| (0..dataset.cases.len()).map(move |c| (d, c)))
                    .collect();
                Ok(Plan::Experiment {
                    experiment: Box::new(request.experiment),
                    pipeline: request.pipeline,
                    positions,
                })
            }
            RunKind::Rejudge => {
                let source = generation_source(record).ok_or("rejudge without a source run")?;
                let evaluation = record
                    .definition
                    .get("evaluation")
                    .cloned()
                    .unwrap_or(Value::Null);
                let (_, evaluators, _) = parse_evaluation(&evaluation, self.registry())
                    .map_err(|e| format!("stored evaluation no longer valid: {}", describe(e)))?;
                Ok(Plan::Rejudge {
                    source,
                    cases: Vec::new(),
                    seeds: 0,
                    evaluators,
                })
            }
        }
    }

    /// Loads the cases of a rejudge's source experiment, in enumeration order.
    pub(super) async fn load_source_cases(&self, plan: &mut Plan) -> Result<(), String> {
        let Plan::Rejudge {
            source,
            cases,
            seeds,
            ..
        } = plan
        else {
            return Ok(());
        };
        let store = self.store();
        let record = retry(
            self.config().store_patience,
            "loading the source run",
            || store.get_run(source),
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("source run {source} not found"))?;
        let datasets: Vec<Dataset> = record
            .definition
            .get("datasets")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("source definition unreadable: {e}"))?
            .unwrap_or_default();
        *seeds = record
            .definition
            .get("seeds")
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        *cases = datasets.into_iter().flat_map(|d| d.cases).collect();
        Ok(())
    }
}

/// One case to execute, from a claimed chunk.
pub(super) struct WorkItem {
    pub(super) chunk_index: u64,
    pub(super) key: CaseKey,
    /// Where the case sits in the plan (see [`Plan::case`]).
    pub(super) position: usize,
    /// For a rejudge: the source run's record of the case.
    pub(super) source: Option<CaseRecord>,
    /// Cancelled when this instance loses the chunk's lease.
    pub(super) lost: CancellationToken,
}

impl Plan {
    /// The case at a work item's position.
    pub(super) fn case(&self, position: usize) -> Option<&Case> {
        match self {
            Plan::Experiment {
                experiment,
                positions,
                ..
            } => {
                let &(d, c) = positions.get(position)?;
                experiment.datasets.get(d)?.cases.get(c)
            }
            Plan::Rejudge { cases, .. } => cases.get(position),
        }
    }

    /// The cases of `chunk` not recorded yet.
    pub(super) async fn work_in(
        &self,
        store: &dyn Store,
        chunk: &Chunk,
        recorded: &HashSet<u64>,
        lost: &CancellationToken,
    ) -> Result<Vec<WorkItem>, StoreError> {
        match self {
            Plan::Experiment {
                experiment,
                positions,
                ..
            } => {
                let seeds = experiment.seeds.len() as u64;
                let mut items = Vec::new();
                for index in (chunk.start..chunk.end).filter(|i| !recorded.contains(i)) {
                    let position = (index / seeds) as usize;
                    let &(d, c) = positions.get(position).ok_or_else(|| {
                        StoreError::Corrupt(format!("case index {index} is out of range"))
                    })?;
                    let dataset = &experiment.datasets[d];
                    items.push(WorkItem {
                        chunk_index: chunk.chunk_index,
                        key: CaseKey {
                            case_index: index,
                            dataset_id: dataset.dataset_id.clone(),
                            case_id: dataset.cases[c].case_id.clone(),
                            seed: experiment.seeds[(index % seeds) as usize],
                        },
                        position,
                        source: None,
                        lost: lost.clone(),
                    });
                }
                Ok(items)
            }
            Plan::Rejudge {
                source,
                cases,
                seeds,
                ..
            } => {
                let query = CaseQuery {
                    after_index: chunk.start.checked_sub(1),
                    limit: (chunk.end - chunk.start) as u32,
                    ..CaseQuery::default()
                };
                let records = store.case_records(source, &query).await?;
                let mut items = Vec::new();
                for record in records.into_iter().filter(|r| {
                    r.key.case_index < chunk.end && !recorded.contains(&r.key.case_index)
                }) {
                    let position = (record.key.case_index / (*seeds).max(1) as u64) as usize;
                    if position >= cases.len() {
                        return Err(StoreError::Corrupt(format!(
                            "source case {} is not in its definition",
                            record.key.case_index
                        )));
                    }
                    items.push(WorkItem {
                        chunk_index: chunk.chunk_index,
                        key: record.key.clone(),
                        position,
                        source: Some(record),
                        lost: lost.clone(),
                    });
                }
                Ok(items)
            }
        }
    }
}
