//! Submitting an experiment: its datasets resolved to stored revisions (inline cases
//! stored as revisions, references looked up and pinned), then the run created.
//! Nothing is written until every dataset resolved, so a rejected submission leaves
//! nothing behind.

use super::ingest::{Ingest, Ingested};
use super::inline::{SplitError, split_definition};
use crate::engine::definition::{
    Dataset, DatasetCases, Experiment, ExperimentRequest, MAX_WORK_ITEMS, parse_experiment,
};
use crate::engine::{Engine, EngineError, run_id};
use std::collections::BTreeMap;

use crate::engine::dry_run::{DryRun, Tally};
use crate::model::{Case, DatasetUse, Problems, RunKind, Timestamp};
use crate::store::{CreateOutcome, NewRun};

/// Inline datasets of a request body already taken in (by position in `datasets`).
pub(super) type Staged = Vec<(usize, Ingested)>;

/// An experiment whose datasets all are stored revisions, and the revisions to store.
struct Resolved {
    experiment: Experiment,
    to_store: Vec<(String, Ingested)>,
}

/// An inline dataset's cases (checked when parsed) into a revision.
fn ingest_cases(cases: &[Case], path: &str) -> Result<Ingested, EngineError> {
    let mut problems = Problems::default();
    let name = path.to_owned();
    let mut ingest =
        Ingest::new(move |index| format!("{name}[{index}]")).map_err(EngineError::Spool)?;
    for (index, case) in cases.iter().enumerate() {
        ingest
            .push_case(case, index as u64, &mut problems)
            .map_err(EngineError::Spool)?;
    }
    match ingest.finish(&mut problems, path) {
        Ok(Some(ingested)) => Ok(ingested),
        Ok(None) => Err(EngineError::Invalid(problems.into_details())),
        Err(e) => Err(EngineError::Spool(e)),
    }
}

impl Engine {
    /// Parses a request body (JSON) into an experiment. Inline cases are checked and
    /// taken into revisions as they are read, never held as one JSON tree.
    pub fn parse_body(&self, body: &[u8]) -> Result<(ExperimentRequest, Staged), EngineError> {
        let split = split_definition(body).map_err(|e| match e {
            SplitError::Json(e) => EngineError::MalformedJson(e.to_string()),
            SplitError::Spool(e) => EngineError::Spool(e),
        })?;
        let mut problems = split.problems;
        match parse_experiment(&split.value, self.registry()) {
            Ok(request) if problems.is_empty() => Ok((request, split.inline)),
            Ok(_) => Err(EngineError::Invalid(problems.into_details())),
            Err(errors) => {
                for error in errors {
                    problems.push(error.path, error.message);
                }
                Err(EngineError::Invalid(problems.into_details()))
            }
        }
    }

    /// Stores a queued run for the experiment, or finds the existing run of the same
    /// definition (same id). Inline datasets are stored as revisions first.
    pub async fn submit(&self, request: &ExperimentRequest) -> Result<CreateOutcome, EngineError> {
        self.submit_staged(request, Vec::new()).await
    }

    /// [`Engine::submit`] with the inline datasets [`Engine::parse_body`] took in.
    pub async fn submit_staged(
        &self,
        request: &ExperimentRequest,
        staged: Staged,
    ) -> Result<CreateOutcome, EngineError> {
        self.check_observation(&request.runtime)?;
        let resolved = self.resolve_datasets(&request.experiment, staged).await?;
        for (dataset_id, ingested) in resolved.to_store {
            self.store_revision(&dataset_id, ingested).await?;
        }
        let experiment = resolved.experiment;
        let uses = experiment
            .datasets
            .iter()
            .filter_map(|d| match &d.cases {
                DatasetCases::Stored {
                    revision: Some(revision),
                    ..
                } => Some(DatasetUse {
                    dataset_id: d.dataset_id.clone(),
                    revision: revision.clone(),
                }),
                _ => None,
            })
            .collect();
        let run = NewRun {
            run_id: run_id(&experiment),
            kind: RunKind::Experiment,
            parent_run_id: None,
            labels: request.labels.clone(),
            definition: experiment.canonical(),
            runtime: self.stored_runtime(&request.runtime),
            total_cases: experiment.work_items(),
            index_space: experiment.work_items(),
            datasets: uses,
            created_at: Timestamp::now(),
        };
        Ok(self.store().create_run(run).await?)
    }

    /// Validates `request` as [`Engine::submit_staged`] would and estimates what
    /// executing it would call and cost: nothing is stored, no model is called.
    pub async fn dry_run(
        &self,
        request: &ExperimentRequest,
        staged: Staged,
    ) -> Result<DryRun, EngineError> {
        self.check_observation(&request.runtime)?;
        let resolved = self.resolve_datasets(&request.experiment, staged).await?;
        let mut tally = Tally::new(request);
        let mut counts = BTreeMap::new();
        let mut spooled = resolved.to_store;
        for dataset in &resolved.experiment.datasets {
            let id = &dataset.dataset_id;
            let count = dataset.case_count().unwrap_or(0);
            *counts.entry(id.clone()).or_insert(0) += count;
            if let Some(at) = spooled.iter().position(|(d, _)| d == id) {
                let (_, mut ingested) = spooled.swap_remove(at);
                while tally.wants_more() {
                    let batch = ingested.cases.read_batch(64).map_err(EngineError::Spool)?;
                    if batch.is_empty() {
                        break;
                    }
                    for stored in batch {
                        if tally.wants_more() {
                            tally.add(id, &case_of(&stored.json)?).await;
                        }
                    }
                }
            } else if let DatasetCases::Stored {
                revision: Some(revision),
                ..
            } = &dataset.cases
            {
                let mut next = 0;
                while tally.wants_more() && next < count {
                    let end = (next + 64).min(count);
                    for stored in self.store().revision_cases(revision, next..end).await? {
                        if tally.wants_more() {
                            tally.add(id, &case_of(&stored.json)?).await;
                        }
                    }
                    next = end;
                }
            }
        }
        Ok(tally.finish(counts))
    }

    /// Every dataset as a stored revision with its case count.
    async fn resolve_datasets(
        &self,
        experiment: &Experiment,
        mut staged: Staged,
    ) -> Result<Resolved, EngineError> {
        let mut problems = Problems::default();
        let mut datasets = Vec::with_capacity(experiment.datasets.len());
        let mut to_store = Vec::new();
        for (i, dataset) in experiment.datasets.iter().enumerate() {
            let path = format!("datasets[{i}]");
            let taken = staged.iter().position(|(p, _)| *p == i);
            let (revision, case_count) = match (&dataset.cases, taken) {
                (DatasetCases::Inline(cases), _) => {
                    let ingested = ingest_cases(cases, &format!("{path}.cases"))?;
                    let found = (ingested.revision.clone(), ingested.case_count);
                    to_store.push((dataset.dataset_id.clone(), ingested));
                    found
                }
                (DatasetCases::Stored { .. }, Some(at)) => {
                    let (_, ingested) = staged.swap_remove(at);
                    let found = (ingested.revision.clone(), ingested.case_count);
                    to_store.push((dataset.dataset_id.clone(), ingested));
                    found
                }
                (
                    DatasetCases::Stored {
                        revision,
                        case_count,
                    },
                    None,
                ) => {
                    let stored = self
                        .store()
                        .get_revision(&dataset.dataset_id, revision.as_ref())
                        .await?;
                    let Some(stored) = stored else {
                        let (at, message) = match revision {
                            Some(r) => (
                                format!("{path}.revision"),
                                format!("dataset `{}` has no revision {r}", dataset.dataset_id),
                            ),
                            None => (
                                format!("{path}.dataset_id"),
                                format!(
                                    "no dataset `{}` is stored: upload it (PUT /datasets/{{dataset_id}}) or give its cases",
                                    dataset.dataset_id
                                ),
                            ),
                        };
                        problems.push(at, message);
                        continue;
                    };
                    if let Some(given) = case_count
                        && *given != stored.case_count
                    {
                        problems.push(
                            format!("{path}.case_count"),
                            format!(
                                "is {given}, but revision {} has {}",
                                stored.revision, stored.case_count
                            ),
                        );
                    }
                    (stored.revision, stored.case_count)
                }
            };
            datasets.push(Dataset {
                dataset_id: dataset.dataset_id.clone(),
                cases: DatasetCases::Stored {
                    revision: Some(revision),
                    case_count: Some(case_count),
                },
            });
        }
        let experiment = Experiment {
            generation: experiment.generation.clone(),
            evaluation: experiment.evaluation.clone(),
            datasets,
            seeds: experiment.seeds.clone(),
        };
        if experiment.work_items() > MAX_WORK_ITEMS {
            problems.push(
                "datasets",
                format!("cases × seeds must not exceed {MAX_WORK_ITEMS}"),
            );
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems.into_details()));
        }
        Ok(Resolved {
            experiment,
            to_store,
        })
    }
}

/// A stored case's canonical JSON, read back.
fn case_of(json: &str) -> Result<Case, EngineError> {
    serde_json::from_str(json).map_err(|e| {
        EngineError::Store(crate::store::StoreError::Corrupt(format!(
            "a stored case does not parse: {e}"
        )))
    })
}
