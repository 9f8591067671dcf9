//! Bootstrap intervals for a run's aggregates, computed on request from its records.
//!
//! Percentile bootstrap of the mean ([`crate::stats::bootstrap_mean_ci95`]): 1,000
//! resamples from SplitMix64 seeded with a fixed seed, so the same scores always give
//! the same interval. Work is n × 1,000 per slice, so slices with more than
//! [`BOOTSTRAP_MAX_N`] scores get none (at that size the Student-t interval and the
//! bootstrap agree to well within the noise anyway).

use std::collections::BTreeMap;

use super::EngineError;
use super::compare::{for_each_record, scores_of};
use crate::model::RunRecord;
use crate::stats::{BOOTSTRAP_SEED, bootstrap_mean_ci95};
use crate::store::Store;

/// Largest number of scores a bootstrap interval is computed for.
pub(super) const BOOTSTRAP_MAX_N: u64 = 100_000;

/// Fills `ci95_bootstrap` in `run.aggregates` (overall and per dataset) for every
/// metric with at most [`BOOTSTRAP_MAX_N`] scores, reading the run's records once.
pub(crate) async fn add_bootstrap_intervals(
    store: &dyn Store,
    run: &mut RunRecord,
) -> Result<(), EngineError> {
    let metrics: Vec<String> = run
        .aggregates
        .metrics
        .iter()
        .filter(|(_, a)| (2..=BOOTSTRAP_MAX_N).contains(&a.overall.n))
        .map(|(id, _)| id.clone())
        .collect();
    if metrics.is_empty() {
        return Ok(());
    }
    // Per metric, per dataset: the scores in case_index order.
    let mut values: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); metrics.len()];
    for_each_record(store, &run.run_id, |record| {
        for (i, score) in scores_of(&record, &metrics).into_iter().enumerate() {
            if let Some(score) = score {
                values[i]
                    .entry(record.key.dataset_id.clone())
                    .or_default()
                    .push(score);
            }
        }
    })
    .await?;
    let intervals = tokio::task::spawn_blocking(move || {
        values
            .into_iter()
            .map(|by_dataset| {
                let all: Vec<f64> = by_dataset.values().flatten().copied().collect();
                let overall = bootstrap_mean_ci95(&all, BOOTSTRAP_SEED);
                let per_dataset: BTreeMap<String, Option<[f64; 2]>> = by_dataset
                    .iter()
                    .map(|(d, v)| (d.clone(), bootstrap_mean_ci95(v, BOOTSTRAP_SEED)))
                    .collect();
                (overall, per_dataset)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(EngineError::Task)?;
    for (metric, (overall, per_dataset)) in metrics.iter().zip(intervals) {
        if let Some(aggregate) = run.aggregates.metrics.get_mut(metric) {
            aggregate.overall.ci95_bootstrap = overall;
            for (dataset, interval) in per_dataset {
                if let Some(summary) = aggregate.by_dataset.get_mut(&dataset) {
                    summary.ci95_bootstrap = interval;
                }
            }
        }
    }
    Ok(())
}
