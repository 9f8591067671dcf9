//! Where an execution's cases come from: the datasets of the experiment its run (or
//! the chain it derives from) started with, read a chunk at a time. What it holds is
//! O(datasets) for stored revisions; only a run stored under run-id rule v1 carries its
//! cases inline, in memory, as it did then.

use std::ops::Range;
use std::sync::Arc;

use crate::engine::EngineError;
use crate::engine::definition::{DatasetCases, Experiment};
use crate::model::{Case, CaseKey, Revision};
use crate::store::{Store, StoreError};

pub(super) struct CaseSource {
    datasets: Vec<SourceDataset>,
    seeds: Vec<u64>,
}

struct SourceDataset {
    dataset_id: String,
    /// Position of its first case in the enumeration order (seeds aside).
    first: u64,
    count: u64,
    cases: Cases,
}

enum Cases {
    Inline(Vec<Arc<Case>>),
    Stored(Revision),
}

/// A case index whose case the store does not have.
fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

impl CaseSource {
    /// The source of an experiment's cases; its stored datasets must be resolved (as
    /// every stored definition's are).
    pub(super) fn new(experiment: Experiment) -> Result<Self, EngineError> {
        let mut datasets = Vec::with_capacity(experiment.datasets.len());
        let mut first = 0;
        for dataset in experiment.datasets {
            let (count, cases) = match dataset.cases {
                DatasetCases::Inline(cases) => (
                    cases.len() as u64,
                    Cases::Inline(cases.into_iter().map(Arc::new).collect()),
                ),
                DatasetCases::Stored {
                    revision: Some(revision),
                    case_count: Some(count),
                } => (count, Cases::Stored(revision)),
                DatasetCases::Stored { .. } => {
                    return Err(EngineError::Unusable(format!(
                        "dataset {} names no resolved revision",
                        dataset.dataset_id
                    )));
                }
            };
            datasets.push(SourceDataset {
                dataset_id: dataset.dataset_id,
                first,
                count,
                cases,
            });
            first += count;
        }
        Ok(CaseSource {
            datasets,
            seeds: experiment.seeds,
        })
    }

    /// The keys and cases of the case indices in `range`, in order (index `i` is case
    /// position `i / seeds` with seed `seeds[i % seeds]`).
    pub(super) async fn load(
        &self,
        store: &dyn Store,
        range: Range<u64>,
    ) -> Result<Vec<(CaseKey, Arc<Case>)>, StoreError> {
        let seeds = self.seeds.len() as u64;
        if range.is_empty() || seeds == 0 {
            return Ok(Vec::new());
        }
        let positions = range.start / seeds..(range.end - 1) / seeds + 1;
        let mut cases: Vec<(&str, Arc<Case>)> = Vec::with_capacity(positions.clone().count());
        for dataset in &self.datasets {
            let start = positions.start.max(dataset.first);
            let end = positions.end.min(dataset.first + dataset.count);
            if start >= end {
                continue;
            }
            let local = start - dataset.first..end - dataset.first;
            match &dataset.cases {
                Cases::Inline(all) => cases.extend(
                    all[local.start as usize..local.end as usize]
                        .iter()
                        .map(|case| (dataset.dataset_id.as_str(), case.clone())),
                ),
                Cases::Stored(revision) => {
                    let stored = store.revision_cases(revision, local.clone()).await?;
                    if stored.len() as u64 != local.end - local.start {
                        return Err(corrupt(format!(
                            "revision {revision} lacks cases {}..{}",
                            local.start, local.end
                        )));
                    }
                    for case in stored {
                        let parsed: Case = serde_json::from_str(&case.json)
                            .map_err(|e| corrupt(format!("stored case unreadable: {e}")))?;
                        cases.push((dataset.dataset_id.as_str(), Arc::new(parsed)));
                    }
                }
            }
        }
        if cases.len() as u64 != positions.end - positions.start {
            return Err(corrupt(format!(
                "case indices {}..{} are out of range",
                range.start, range.end
            )));
        }
        Ok(range
            .map(|index| {
                let (dataset_id, case) = &cases[(index / seeds - positions.start) as usize];
                let key = CaseKey {
                    case_index: index,
                    dataset_id: (*dataset_id).to_owned(),
                    case_id: case.case_id.clone(),
                    seed: self.seeds[(index % seeds) as usize],
                };
                (key, case.clone())
            })
            .collect())
    }
}
