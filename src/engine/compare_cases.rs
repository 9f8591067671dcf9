//! What changed between two runs case by case (regressions, improvements), and the
//! several-runs table with Holm-corrected p-values against the first run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EngineError;
use super::compare::{
    BaselineScores, CompareReport, PairKey, RunSide, baseline_scores, compare_runs, load_pair,
    partial_note, scores_of, shared_metrics,
};
use crate::model::{CaseKey, CaseRecord, CaseStatus, RunId};
use crate::stats::{PairedTest, holm};
use crate::store::{CaseQuery, Store};

/// Which changed cases to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaseFilter {
    /// Some shared metric scored lower in the candidate.
    Regressed,
    /// Some shared metric scored higher in the candidate.
    Improved,
    /// Some shared metric scored differently.
    Changed,
}

impl CaseFilter {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "regressed" => Some(CaseFilter::Regressed),
            "improved" => Some(CaseFilter::Improved),
            "changed" => Some(CaseFilter::Changed),
            _ => None,
        }
    }

    fn keeps(&self, changes: &BTreeMap<String, CaseChange>) -> bool {
        changes.values().any(|c| match self {
            CaseFilter::Regressed => c.delta < 0.0,
            CaseFilter::Improved => c.delta > 0.0,
            CaseFilter::Changed => true,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CaseChange {
    pub baseline: f64,
    pub candidate: f64,
    pub delta: f64,
}

/// One side of a changed case: what the run produced and where its record is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CaseSide {
    pub case_index: u64,
    pub status: CaseStatus,
    /// The reduced (chosen) output.
    pub output: Value,
    pub parsed: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `GET` this to read the whole record.
    pub record: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChangedCase {
    /// The candidate's key (its `case_index`).
    #[serde(flatten)]
    pub key: CaseKey,
    /// Shared metrics whose score differs (both runs scored them).
    pub changes: BTreeMap<String, CaseChange>,
    pub baseline: CaseSide,
    pub candidate: CaseSide,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChangedCasesPage {
    pub baseline: RunSide,
    pub candidate: RunSide,
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub cases: Vec<ChangedCase>,
    /// The candidate `case_index` to pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

fn record_link(run_id: &RunId, case_index: u64) -> String {
    match case_index.checked_sub(1) {
        Some(before) => format!("/runs/{run_id}/results?cursor={before}&limit=1"),
        None => format!("/runs/{run_id}/results?limit=1"),
    }
}

fn case_side(record: &CaseRecord) -> CaseSide {
    CaseSide {
        case_index: record.key.case_index,
        status: record.status,
        output: record
            .reduced
            .as_ref()
            .map(|r| r.output.clone())
            .unwrap_or(Value::Null),
        parsed: record.parsed.clone().unwrap_or(Value::Null),
        error: record.error.as_ref().map(|e| e.message.clone()),
        record: record_link(&record.run_id, record.key.case_index),
    }
}

fn changes(
    metrics: &[String],
    base: &[Option<f64>],
    cand: &[Option<f64>],
) -> BTreeMap<String, CaseChange> {
    metrics
        .iter()
        .enumerate()
        .filter_map(|(i, id)| match (base[i], cand[i]) {
            (Some(b), Some(c)) if b != c => Some((
                id.clone(),
                CaseChange {
                    baseline: b,
                    candidate: c,
                    delta: c - b,
                },
            )),
            _ => None,
        })
        .collect()
}

/// Paired cases whose scores changed, in the candidate's `case_index` order, after
/// `after_index`; at most `limit`. `metric` restricts the comparison to one shared metric.
pub(crate) async fn changed_cases(
    store: &dyn Store,
    baseline: &RunId,
    candidate: &RunId,
    filter: CaseFilter,
    metric: Option<&str>,
    after_index: Option<u64>,
    limit: u32,
) -> Result<ChangedCasesPage, EngineError> {
    let (b, c) = load_pair(store, baseline, candidate).await?;
    let (mut metrics, _, _) = shared_metrics(&b, &c);
    if let Some(metric) = metric {
        if !metrics.iter().any(|m| m == metric) {
            return Err(EngineError::Unprocessable(format!(
                "metric `{metric}` is not recorded by both runs (shared: [{}])",
                metrics.join(", ")
            )));
        }
        metrics = vec![metric.to_owned()];
    }
    if metrics.is_empty() {
        return Err(EngineError::Unprocessable(format!(
            "runs {} and {} have no metric or judge in common",
            b.run_id, c.run_id
        )));
    }
    let base: BaselineScores = baseline_scores(store, baseline, &metrics).await?;
    let mut found: Vec<(CaseRecord, u64, BTreeMap<String, CaseChange>)> = Vec::new();
    let mut cursor = after_index;
    let mut more = false;
    'pages: loop {
        let query = CaseQuery {
            after_index: cursor,
            dataset_id: None,
            failed_only: false,
            limit: super::compare::PAIRING_PAGE,
        };
        let page = store.case_records(candidate, &query).await?;
        let full = page.len() == super::compare::PAIRING_PAGE as usize;
        for record in page {
            cursor = Some(record.key.case_index);
            let Some(base_case) = base.cases.get(&PairKey::of(&record)) else {
                continue;
            };
            let base_index = &base_case.case_index;
            let diff = changes(&metrics, &base_case.scores, &scores_of(&record, &metrics));
            if !filter.keeps(&diff) {
                continue;
            }
            if found.len() == limit as usize {
                more = true;
                break 'pages;
            }
            found.push((record, *base_index, diff));
        }
        if !full {
            break;
        }
    }
    let next_cursor = if more {
        found.last().map(|(r, _, _)| r.key.case_index.to_string())
    } else {
        None
    };
    let mut cases = Vec::with_capacity(found.len());
    for (record, base_index, diff) in found {
        let query = CaseQuery {
            after_index: base_index.checked_sub(1),
            dataset_id: None,
            failed_only: false,
            limit: 1,
        };
        let base_record = store
            .case_records(baseline, &query)
            .await?
            .into_iter()
            .next()
            .filter(|r| r.key.case_index == base_index)
            .ok_or_else(|| {
                crate::store::StoreError::Corrupt(format!(
                    "case {base_index} of run {baseline} disappeared"
                ))
            })?;
        cases.push(ChangedCase {
            key: record.key.clone(),
            changes: diff,
            baseline: case_side(&base_record),
            candidate: case_side(&record),
        });
    }
    let note = partial_note(&[&b, &c]);
    Ok(ChangedCasesPage {
        baseline: RunSide {
            run_id: b.run_id.clone(),
            kind: b.kind,
            status: b.status,
        },
        candidate: RunSide {
            run_id: c.run_id.clone(),
            kind: c.kind,
            status: c.status,
        },
        partial: note.is_some(),
        note,
        cases,
        next_cursor,
    })
}

/// One run's line in the several-runs table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunMean {
    pub run_id: RunId,
    pub n: u64,
    pub mean: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

/// A run against the first run, for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct VersusFirst {
    pub run_id: RunId,
    pub n_paired: u64,
    pub delta: Option<f64>,
    pub delta_ci95: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    /// Holm-adjusted over every (run, metric) p-value of the table.
    pub p_value_holm: Option<f64>,
    pub test: Option<PairedTest>,
    pub wins: u64,
    pub losses: u64,
    pub ties: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetricTable {
    pub runs: Vec<RunMean>,
    pub versus_first: Vec<VersusFirst>,
}

/// `GET /compare?runs=A,B,C`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunsTable {
    pub runs: Vec<RunSide>,
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Metrics every listed run recorded.
    pub metrics: BTreeMap<String, MetricTable>,
    pub correction: String,
}

/// Means per run and paired deltas of each later run against the first.
pub(crate) async fn compare_many(
    store: &dyn Store,
    runs: &[RunId],
) -> Result<RunsTable, EngineError> {
    let mut records = Vec::with_capacity(runs.len());
    for run_id in runs {
        records.push(
            store
                .get_run_summary(run_id)
                .await?
                .ok_or_else(|| EngineError::RunNotFound(run_id.clone()))?,
        );
    }
    let Some(first) = records.first() else {
        return Err(EngineError::Unprocessable("no runs to compare".into()));
    };
    let mut common: Vec<String> = first.aggregates.metrics.keys().cloned().collect();
    common.retain(|m| records.iter().all(|r| r.aggregates.metrics.contains_key(m)));
    if common.is_empty() {
        return Err(EngineError::Unprocessable(
            "the runs have no metric or judge in common".into(),
        ));
    }
    let mut reports: Vec<CompareReport> = Vec::with_capacity(runs.len().saturating_sub(1));
    for other in &records[1..] {
        reports.push(compare_runs(store, &first.run_id, &other.run_id).await?);
    }
    // Holm over every p-value in the table, in (metric, run) order.
    let mut p_values = Vec::new();
    for metric in &common {
        for report in &reports {
            if let Some(p) = report
                .metrics
                .get(metric)
                .and_then(|m| m.overall.stats.p_value)
            {
                p_values.push(p);
            }
        }
    }
    let adjusted = holm(&p_values);
    let mut next_adjusted = adjusted.iter().copied();
    let mut metrics = BTreeMap::new();
    for metric in &common {
        let means = records
            .iter()
            .map(|r| {
                let summary = r.aggregates.metrics.get(metric).map(|a| &a.overall);
                RunMean {
                    run_id: r.run_id.clone(),
                    n: summary.map_or(0, |s| s.n),
                    mean: summary.and_then(|s| s.mean),
                    ci95: summary.and_then(|s| s.ci95),
                }
            })
            .collect();
        let versus_first = reports
            .iter()
            .filter_map(|report| {
                let stats = &report.metrics.get(metric)?.overall.stats;
                Some(VersusFirst {
                    run_id: report.candidate.run_id.clone(),
                    n_paired: stats.n_paired,
                    delta: stats.delta,
                    delta_ci95: stats.delta_ci95,
                    p_value: stats.p_value,
                    p_value_holm: stats.p_value.and_then(|_| next_adjusted.next()),
                    test: stats.test,
                    wins: stats.wins,
                    losses: stats.losses,
                    ties: stats.ties,
                })
            })
            .collect();
        metrics.insert(
            metric.clone(),
            MetricTable {
                runs: means,
                versus_first,
            },
        );
    }
    let refs: Vec<&_> = records.iter().collect();
    let note = partial_note(&refs);
    Ok(RunsTable {
        runs: records
            .iter()
            .map(|r| RunSide {
                run_id: r.run_id.clone(),
                kind: r.kind,
                status: r.status,
            })
            .collect(),
        partial: note.is_some(),
        note,
        metrics,
        correction: format!(
            "Holm over all {} (run, metric) p-values against the first run",
            adjusted.len()
        ),
    })
}
