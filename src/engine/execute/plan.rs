//! What an execution runs, built once from the run's stored definition (and, for a
//! rejudge or retry, the runs it derives from): how a case is evaluated, where the
//! cases come from, which records a retry reuses, and the work items of each claimed
//! chunk.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::source::CaseSource;
use crate::engine::definition::{
    Evaluators, Experiment, GenerationConfig, Pipeline, parse_evaluation, parse_experiment,
};
use crate::engine::retry::retry;
use crate::engine::{Engine, EngineError, generation_source};
use crate::model::{Case, CaseKey, CaseRecord, CaseStatus, FieldError, RunId, RunKind, RunRecord};
use crate::store::{CaseQuery, Chunk, Store, StoreError};

/// Most runs a chain of rejudges and retries may have before its experiment.
const MAX_CHAIN: usize = 1_000;

/// How a case is evaluated.
pub(super) enum Evaluate {
    /// The whole pipeline.
    Experiment {
        generation: Box<GenerationConfig>,
        pipeline: Pipeline,
    },
    /// A new evaluation of the generations recorded in `generations`.
    Rejudge {
        generations: RunId,
        evaluators: Evaluators,
    },
}

impl Evaluate {
    pub(super) fn evaluators(&self) -> &Evaluators {
        match self {
            Evaluate::Experiment { pipeline, .. } => &pipeline.evaluators,
            Evaluate::Rejudge { evaluators, .. } => evaluators,
        }
    }
}

/// What a run executes.
pub(super) struct Plan {
    pub(super) evaluate: Evaluate,
    pub(super) source: CaseSource,
    /// A retry's parent: its completed records are reused as they are.
    pub(super) reuse: Option<RunId>,
}

/// What to do with one case.
pub(super) enum Work {
    Execute(Arc<Case>),
    Rejudge { case: Arc<Case>, source: CaseRecord },
    Reuse(CaseRecord),
}

/// One case to execute, from a claimed chunk.
pub(super) struct WorkItem {
    pub(super) chunk_index: u64,
    pub(super) key: CaseKey,
    pub(super) work: Work,
    /// Cancelled when this instance loses the chunk's lease.
    pub(super) lost: CancellationToken,
}

fn unusable(message: impl Into<String>) -> EngineError {
    EngineError::Unusable(message.into())
}

fn describe(errors: Vec<FieldError>) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Engine {
    /// The plan of `record`, read as stored (the typed definition is parsed here once
    /// per execution). A rejudge or retry also reads the runs its chain derives from.
    pub(super) async fn plan(&self, record: &RunRecord) -> Result<Plan, EngineError> {
        let mut reuse = None;
        let mut current = record.clone();
        for _ in 0..MAX_CHAIN {
            match current.kind {
                RunKind::Experiment => {
                    let (experiment, pipeline) = self.experiment_of(&current)?;
                    let generation = Box::new(experiment.generation.clone());
                    return Ok(Plan {
                        evaluate: Evaluate::Experiment {
                            generation,
                            pipeline,
                        },
                        source: CaseSource::new(experiment)?,
                        reuse,
                    });
                }
                RunKind::Rejudge => {
                    let generations = generation_source(&current)
                        .ok_or_else(|| unusable("rejudge without a source run"))?;
                    let evaluation = current
                        .definition
                        .get("evaluation")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let (_, evaluators, _) = parse_evaluation(&evaluation, self.registry())
                        .map_err(|e| {
                            unusable(format!(
                                "stored evaluation no longer valid: {}",
                                describe(e)
                            ))
                        })?;
                    let experiment = self.root_experiment(&generations).await?;
                    return Ok(Plan {
                        evaluate: Evaluate::Rejudge {
                            generations,
                            evaluators,
                        },
                        source: CaseSource::new(experiment)?,
                        reuse,
                    });
                }
                RunKind::Retry => {
                    let parent = current
                        .parent_run_id
                        .clone()
                        .ok_or_else(|| unusable("retry without a parent run"))?;
                    // Only the retried run's own records are reused.
                    reuse.get_or_insert(parent.clone());
                    current = self.load_run(&parent).await?;
                }
            }
        }
        Err(unusable("the chain of retries is too long"))
    }

    fn experiment_of(&self, record: &RunRecord) -> Result<(Experiment, Pipeline), EngineError> {
        let request = parse_experiment(&record.definition, self.registry()).map_err(|e| {
            unusable(format!(
                "stored definition no longer valid: {}",
                describe(e)
            ))
        })?;
        Ok((request.experiment, request.pipeline))
    }

    async fn load_run(&self, run_id: &RunId) -> Result<RunRecord, EngineError> {
        let store = self.store();
        retry(self.config().store_patience, "loading a source run", || {
            store.get_run(run_id)
        })
        .await?
        .ok_or_else(|| unusable(format!("source run {run_id} not found")))
    }

    /// The case at `case_index` of `run_id` as the experiment its chain starts from gave
    /// it (inline, or read from the stored revision).
    pub(crate) async fn case_input(
        &self,
        run_id: &RunId,
        case_index: u64,
    ) -> Result<Option<Arc<Case>>, EngineError> {
        let source = CaseSource::new(self.root_experiment(run_id).await?)?;
        let loaded = source
            .load(self.store().as_ref(), case_index..case_index + 1)
            .await?;
        Ok(loaded.into_iter().next().map(|(_, case)| case))
    }

    /// The experiment a chain of rejudges and retries starts from.
    async fn root_experiment(&self, run_id: &RunId) -> Result<Experiment, EngineError> {
        let mut current = self.load_run(run_id).await?;
        for _ in 0..MAX_CHAIN {
            let next = match current.kind {
                RunKind::Experiment => return Ok(self.experiment_of(&current)?.0),
                RunKind::Rejudge => generation_source(&current),
                RunKind::Retry => current.parent_run_id.clone(),
            };
            let next =
                next.ok_or_else(|| unusable(format!("run {} has no source", current.run_id)))?;
            current = self.load_run(&next).await?;
        }
        Err(unusable("the chain of derived runs is too long"))
    }
}

/// The records of `run_id` within `chunk`, by case index.
async fn records_in(
    store: &dyn Store,
    run_id: &RunId,
    chunk: &Chunk,
) -> Result<HashMap<u64, CaseRecord>, StoreError> {
    let query = CaseQuery {
        after_index: chunk.start.checked_sub(1),
        limit: (chunk.end - chunk.start) as u32,
        ..CaseQuery::default()
    };
    Ok(store
        .case_records(run_id, &query)
        .await?
        .into_iter()
        .filter(|r| r.key.case_index < chunk.end)
        .map(|r| (r.key.case_index, r))
        .collect())
}

impl Plan {
    /// The cases of `chunk` not recorded yet.
    pub(super) async fn work_in(
        &self,
        store: &dyn Store,
        chunk: &Chunk,
        recorded: &HashSet<u64>,
        lost: &CancellationToken,
    ) -> Result<Vec<WorkItem>, StoreError> {
        let mut reusable = match &self.reuse {
            Some(parent) => records_in(store, parent, chunk).await?,
            None => HashMap::new(),
        };
        reusable.retain(|_, r| r.status == CaseStatus::Completed);
        let mut sources = match &self.evaluate {
            Evaluate::Rejudge { generations, .. } => records_in(store, generations, chunk).await?,
            Evaluate::Experiment { .. } => HashMap::new(),
        };
        let pending: Vec<u64> = (chunk.start..chunk.end)
            .filter(|i| !recorded.contains(i))
            .collect();
        // Cases are read only when something is evaluated.
        let needs_cases = pending.iter().any(|i| !reusable.contains_key(i));
        let mut cases: HashMap<u64, (CaseKey, Arc<Case>)> = if needs_cases {
            self.source
                .load(store, chunk.start..chunk.end)
                .await?
                .into_iter()
                .map(|(key, case)| (key.case_index, (key, case)))
                .collect()
        } else {
            HashMap::new()
        };
        let mut items = Vec::with_capacity(pending.len());
        for index in pending {
            let (key, work) = if let Some(record) = reusable.remove(&index) {
                (record.key.clone(), Work::Reuse(record))
            } else {
                let (key, case) = cases.remove(&index).ok_or_else(|| {
                    StoreError::Corrupt(format!("case index {index} is out of range"))
                })?;
                match &self.evaluate {
                    Evaluate::Experiment { .. } => (key, Work::Execute(case)),
                    // A rejudge covers the cases its source recorded.
                    Evaluate::Rejudge { .. } => match sources.remove(&index) {
                        Some(source) => (source.key.clone(), Work::Rejudge { case, source }),
                        None => continue,
                    },
                }
            };
            items.push(WorkItem {
                chunk_index: chunk.chunk_index,
                key,
                work,
                lost: lost.clone(),
            });
        }
        Ok(items)
    }
}
