//! Pairs two runs case by case and computes the paired statistics of every metric and
//! judge they share.
//!
//! Cases pair by `(dataset_id, case_id, seed)` (the typed key, never its JSON text).
//! Records are streamed page by page through [`Store::case_records`]; only a map from the
//! baseline's keys to its scores (one `f64` per shared metric) and the candidate's score
//! pairs are held, never whole records. A paired case counts for a metric when both runs
//! scored it (a finite score); otherwise it is `unscored` for that metric.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::EngineError;
use crate::model::{CaseRecord, RunId, RunKind, RunRecord, RunStatus};
use crate::stats::{PairedStats, paired};
use crate::store::{CaseQuery, Store};

/// Records read per store query while pairing.
pub(super) const PAIRING_PAGE: u32 = 500;

/// Where a case sits in both runs: `(dataset_id, case_id, seed)`, held as 128 bits of
/// SHA-256 over them, so a pairing's memory does not grow with the length of ids (two
/// keys collide with probability about n²/2^129).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct PairKey(u128);

impl PairKey {
    pub(super) fn of(record: &CaseRecord) -> Self {
        let mut hasher = Sha256::new();
        for part in [&record.key.dataset_id, &record.key.case_id] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.update(record.key.seed.to_le_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        PairKey(u128::from_le_bytes(bytes))
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSide {
    pub run_id: RunId,
    pub kind: RunKind,
    pub status: RunStatus,
}

/// How the numbers were computed (fixed; reported so a reader need not guess).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Methods {
    pub pairing: String,
    pub delta_ci95: String,
    pub p_value: String,
}

impl Default for Methods {
    fn default() -> Self {
        Methods {
            pairing: "cases pair by (dataset_id, case_id, seed); a metric counts a pair when \
                      both runs scored it"
                .into(),
            delta_ci95: "Student t-interval on per-case differences (candidate - baseline)".into(),
            p_value: format!(
                "two-sided; mcnemar_exact (binomial at 1/2 on discordant pairs) when all \
                 scores are 0/1, else Wilcoxon signed-rank (zero differences dropped, average \
                 ranks for ties): wilcoxon_exact up to {} non-zero differences, \
                 wilcoxon_normal (tie-corrected, no continuity correction) above",
                crate::stats::WILCOXON_EXACT_MAX
            ),
        }
    }
}

/// The paired statistics of one metric over one slice (overall or one dataset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    #[serde(flatten)]
    pub stats: PairedStats,
    /// Paired cases where either run has no score for this metric.
    pub unscored: u64,
    /// Cases recorded only in the baseline / only in the candidate.
    pub unpaired_baseline: u64,
    pub unpaired_candidate: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub overall: Comparison,
    pub by_dataset: BTreeMap<String, Comparison>,
}

/// `GET /runs/{candidate}/compare?baseline=...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub baseline: RunSide,
    pub candidate: RunSide,
    /// A run is still executing: only what is recorded so far was compared.
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub n_paired_cases: u64,
    pub unpaired_baseline: u64,
    pub unpaired_candidate: u64,
    pub metrics: BTreeMap<String, MetricComparison>,
    /// Metrics and judges only one run has (not compared).
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    /// What each run spent and the difference (candidate minus baseline), beside the
    /// score deltas: a better score may cost more.
    #[serde(default)]
    pub cost: super::compare_cost::CostComparison,
    pub methods: Methods,
}

/// Why two runs cannot be compared: answered 404 or 422.
#[derive(Debug)]
pub enum NotComparable {
    NoCommonMetric(String),
    NothingPaired(String),
}

impl From<NotComparable> for EngineError {
    fn from(reason: NotComparable) -> Self {
        match reason {
            NotComparable::NoCommonMetric(m) | NotComparable::NothingPaired(m) => {
                EngineError::Unprocessable(m)
            }
        }
    }
}

/// Runs `f` on every recorded case of `run_id` in `case_index` order, a page at a time.
pub(super) async fn for_each_record(
    store: &dyn Store,
    run_id: &RunId,
    mut f: impl FnMut(CaseRecord),
) -> Result<(), EngineError> {
    let mut after_index = None;
    loop {
        let query = CaseQuery {
            after_index,
            dataset_id: None,
            failed_only: false,
            limit: PAIRING_PAGE,
        };
        let page = store.case_records(run_id, &query).await?;
        let full = page.len() == PAIRING_PAGE as usize;
        for record in page {
            after_index = Some(record.key.case_index);
            f(record);
        }
        if !full {
            return Ok(());
        }
    }
}

/// The score of each of `metrics` in a record (`None`: not scored or not finite).
pub(crate) fn scores_of(record: &CaseRecord, metrics: &[String]) -> Vec<Option<f64>> {
    metrics
        .iter()
        .map(|id| {
            let score = record
                .scores
                .iter()
                .find(|s| &s.metric_id == id)
                .map(|s| s.score)
                .or_else(|| {
                    record
                        .judgments
                        .iter()
                        .find(|j| &j.judge_id == id)
                        .map(|j| j.score)
                });
            score.flatten().filter(|v| v.is_finite())
        })
        .collect()
}

/// Both runs, or 404.
pub(super) async fn load_pair(
    store: &dyn Store,
    baseline: &RunId,
    candidate: &RunId,
) -> Result<(RunRecord, RunRecord), EngineError> {
    let b = store
        .get_run_summary(baseline)
        .await?
        .ok_or_else(|| EngineError::RunNotFound(baseline.clone()))?;
    let c = store
        .get_run_summary(candidate)
        .await?
        .ok_or_else(|| EngineError::RunNotFound(candidate.clone()))?;
    Ok((b, c))
}

/// Metric and judge ids both runs have recorded, and those only one has.
pub(super) fn shared_metrics(
    baseline: &RunRecord,
    candidate: &RunRecord,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let b: BTreeSet<&String> = baseline.aggregates.metrics.keys().collect();
    let c: BTreeSet<&String> = candidate.aggregates.metrics.keys().collect();
    let own = |s: BTreeSet<&&String>| s.into_iter().map(|x| (*x).clone()).collect();
    (
        own(b.intersection(&c).collect()),
        own(b.difference(&c).collect()),
        own(c.difference(&b).collect()),
    )
}

/// One baseline case of a pairing: where it is and its shared-metric scores.
pub(super) struct BaselineCase {
    pub case_index: u64,
    /// Index into [`BaselineScores::datasets`].
    pub dataset: usize,
    pub scores: Vec<Option<f64>>,
}

/// The baseline side of a pairing, by key; dataset ids are held once each.
#[derive(Default)]
pub(super) struct BaselineScores {
    pub cases: HashMap<PairKey, BaselineCase>,
    pub datasets: Vec<String>,
}

pub(super) async fn baseline_scores(
    store: &dyn Store,
    run_id: &RunId,
    metrics: &[String],
) -> Result<BaselineScores, EngineError> {
    let mut base = BaselineScores::default();
    let mut dataset_index: HashMap<String, usize> = HashMap::new();
    for_each_record(store, run_id, |record| {
        let dataset = match dataset_index.get(&record.key.dataset_id) {
            Some(&i) => i,
            None => {
                let i = base.datasets.len();
                base.datasets.push(record.key.dataset_id.clone());
                dataset_index.insert(record.key.dataset_id.clone(), i);
                i
            }
        };
        let case = BaselineCase {
            case_index: record.key.case_index,
            dataset,
            scores: scores_of(&record, metrics),
        };
        base.cases.insert(PairKey::of(&record), case);
    })
    .await?;
    Ok(base)
}

fn side(record: &RunRecord) -> RunSide {
    RunSide {
        run_id: record.run_id.clone(),
        kind: record.kind,
        status: record.status,
    }
}

/// A note when either run is still executing.
pub(super) fn partial_note(runs: &[&RunRecord]) -> Option<String> {
    let executing: Vec<String> = runs
        .iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| format!("{} is {}", r.run_id, r.status.as_str()))
        .collect();
    (!executing.is_empty()).then(|| {
        format!(
            "{}: compared the cases recorded so far; results will change",
            executing.join(", ")
        )
    })
}

/// Per dataset: per shared metric, the score pairs; and the unscored counts.
#[derive(Default)]
struct DatasetPairs {
    pairs: Vec<Vec<(f64, f64)>>,
    unscored: Vec<u64>,
    unpaired_baseline: u64,
    unpaired_candidate: u64,
}

impl DatasetPairs {
    fn new(metrics: usize) -> Self {
        DatasetPairs {
            pairs: vec![Vec::new(); metrics],
            unscored: vec![0; metrics],
            ..Default::default()
        }
    }
}

/// Compares `candidate` against `baseline`.
pub async fn compare_runs(
    store: &dyn Store,
    baseline: &RunId,
    candidate: &RunId,
) -> Result<CompareReport, EngineError> {
    let (b, c) = load_pair(store, baseline, candidate).await?;
    let (metrics, only_b, only_c) = shared_metrics(&b, &c);
    if metrics.is_empty() {
        return Err(NotComparable::NoCommonMetric(format!(
            "runs {} and {} have no metric or judge in common (baseline: [{}], candidate: [{}])",
            b.run_id,
            c.run_id,
            only_b.join(", "),
            only_c.join(", ")
        ))
        .into());
    }
    let mut base = baseline_scores(store, baseline, &metrics).await?;
    let mut datasets: BTreeMap<String, DatasetPairs> = BTreeMap::new();
    let mut n_paired = 0u64;
    let m = metrics.len();
    for_each_record(store, candidate, |record| {
        let entry = datasets
            .entry(record.key.dataset_id.clone())
            .or_insert_with(|| DatasetPairs::new(m));
        let Some(base_case) = base.cases.remove(&PairKey::of(&record)) else {
            entry.unpaired_candidate += 1;
            return;
        };
        n_paired += 1;
        for (i, cand) in scores_of(&record, &metrics).into_iter().enumerate() {
            match (base_case.scores[i], cand) {
                (Some(x), Some(y)) => entry.pairs[i].push((x, y)),
                _ => entry.unscored[i] += 1,
            }
        }
    })
    .await?;
    let mut unpaired_by_dataset = vec![0u64; base.datasets.len()];
    for case in base.cases.values() {
        unpaired_by_dataset[case.dataset] += 1;
    }
    for (dataset, unpaired) in base.datasets.iter().zip(unpaired_by_dataset) {
        if unpaired > 0 {
            datasets
                .entry(dataset.clone())
                .or_insert_with(|| DatasetPairs::new(m))
                .unpaired_baseline += unpaired;
        }
    }
    if n_paired == 0 {
        return Err(NotComparable::NothingPaired(format!(
            "no (dataset_id, case_id, seed) recorded in candidate {} is recorded in baseline {}",
            c.run_id, b.run_id
        ))
        .into());
    }
    let unpaired_baseline = base.cases.len() as u64;
    let unpaired_candidate: u64 = datasets.values().map(|d| d.unpaired_candidate).sum();
    // The statistics (sorting and ranking every metric's pairs) run off the async
    // workers: a 100k-case comparison is CPU for a while.
    let report_metrics = tokio::task::spawn_blocking(move || {
        paired_metrics(&metrics, &datasets, unpaired_baseline, unpaired_candidate)
    })
    .await
    .map_err(EngineError::Task)?;
    let note = partial_note(&[&b, &c]);
    Ok(CompareReport {
        baseline: side(&b),
        candidate: side(&c),
        partial: note.is_some(),
        note,
        n_paired_cases: n_paired,
        unpaired_baseline,
        unpaired_candidate,
        metrics: report_metrics,
        only_in_baseline: only_b,
        only_in_candidate: only_c,
        cost: super::compare_cost::CostComparison::of(&b, &c),
        methods: Methods::default(),
    })
}

/// The paired statistics of every shared metric, overall and per dataset.
fn paired_metrics(
    metrics: &[String],
    datasets: &BTreeMap<String, DatasetPairs>,
    unpaired_baseline: u64,
    unpaired_candidate: u64,
) -> BTreeMap<String, MetricComparison> {
    let mut report_metrics = BTreeMap::new();
    for (i, metric) in metrics.iter().enumerate() {
        let by_dataset: BTreeMap<String, Comparison> = datasets
            .iter()
            .map(|(id, d)| {
                let comparison = Comparison {
                    stats: paired(&d.pairs[i]),
                    unscored: d.unscored[i],
                    unpaired_baseline: d.unpaired_baseline,
                    unpaired_candidate: d.unpaired_candidate,
                };
                (id.clone(), comparison)
            })
            .collect();
        // The statistics do not depend on the order of the pairs, so overall is the
        // datasets' pairs one after another (no second copy kept while streaming).
        let all: Vec<(f64, f64)> = datasets
            .values()
            .flat_map(|d| d.pairs[i].iter().copied())
            .collect();
        let overall = Comparison {
            stats: paired(&all),
            unscored: datasets.values().map(|d| d.unscored[i]).sum(),
            unpaired_baseline,
            unpaired_candidate,
        };
        report_metrics.insert(
            metric.clone(),
            MetricComparison {
                overall,
                by_dataset,
            },
        );
    }
    report_metrics
}
