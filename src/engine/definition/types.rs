//! The experiment definition as types: the logical definition (what decides results
//! and the run id), the runtime-only options, and the resolved components.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::components::{Generator, Judge, Metric, Parser, Reducer};
use crate::engine::datasets::revision_of;
use crate::model::{Case, Revision, RunLabels};
use crate::observe::{SubscriberConfig, TracingConfig};

/// Most samples a candidate policy may ask for per case.
pub(super) const MAX_NUM_SAMPLES: u64 = 1_000;
/// Most work items (cases × seeds) in one run.
pub(crate) const MAX_WORK_ITEMS: u64 = 10_000_000;
/// Highest per-run case concurrency.
pub const MAX_CONCURRENCY: u64 = 4_096;
/// Most datasets in one run.
pub(super) const MAX_DATASETS: usize = 1_000;
/// Most seeds in one run.
pub(super) const MAX_SEEDS: usize = 10_000;
/// Most parsers, metrics or judges (each) in one evaluation.
pub(super) const MAX_COMPONENTS: usize = 64;
/// Longest `case_id`, `dataset_id` or component `name`/`id`/`version`, in bytes.
pub(super) const MAX_ID_BYTES: usize = 512;

/// A component reference, normalised: `"builtin/x"` becomes
/// `{"id": "builtin/x", "name": "builtin/x", "params": {}, "version": "1"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentRef {
    /// How results name this component (metric ids, judge ids); defaults to `name`.
    pub id: String,
    pub name: String,
    pub params: Map<String, Value>,
    /// The implementation version from the registry; part of the run id.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidatePolicy {
    pub num_samples: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationConfig {
    pub generator: ComponentRef,
    pub candidate_policy: CandidatePolicy,
    pub reducer: ComponentRef,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationConfig {
    pub parsers: Vec<ComponentRef>,
    pub metrics: Vec<ComponentRef>,
    pub judges: Vec<ComponentRef>,
    /// Absent unless asked for, so definitions without it keep their run ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_at_k: Option<PassAtKConfig>,
}

/// `evaluation.pass_at_k`: score every candidate with `metric` (an id from
/// `evaluation.metrics`, after the parser chain); a candidate is correct when its score
/// reaches `threshold`. Each case gets a `pass@{k}` score per `k` (Chen et al.'s
/// unbiased estimator over its `n` candidates, `c` correct), aggregated like any metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassAtKConfig {
    pub k: Vec<u64>,
    pub metric: String,
    pub threshold: f64,
}

/// Most k values in one `pass_at_k`.
pub(super) const MAX_PASS_AT_K: usize = 16;

/// The resolved `pass_at_k` of an evaluation.
#[derive(Clone)]
pub struct PassAtK {
    pub k: Vec<u64>,
    pub metric_id: String,
    pub metric: Arc<dyn Metric>,
    pub threshold: f64,
}

impl PassAtK {
    /// The score id of one k: `pass@{k}`.
    pub fn id(k: u64) -> String {
        format!("pass@{k}")
    }
}

/// A dataset of a definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub dataset_id: String,
    pub cases: DatasetCases,
}

/// Where a dataset's cases are.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetCases {
    /// Given inline and held in memory: a definition built in code or read from a file,
    /// or a run stored under run-id rule v1. Submitting stores them as a revision.
    Inline(Vec<Case>),
    /// A stored revision. Submitting fills in what a request may leave out: the newest
    /// revision, and its case count.
    Stored {
        revision: Option<Revision>,
        case_count: Option<u64>,
    },
}

impl Dataset {
    /// How many cases it has, once known.
    pub fn case_count(&self) -> Option<u64> {
        match &self.cases {
            DatasetCases::Inline(cases) => Some(cases.len() as u64),
            DatasetCases::Stored { case_count, .. } => *case_count,
        }
    }

    /// The dataset as the run id covers it: by content (see [`crate::engine::run_id`]).
    fn by_content(&self) -> DatasetByContent<'_> {
        let (revision, case_count) = match &self.cases {
            DatasetCases::Inline(cases) => (Some(revision_of(cases)), Some(cases.len() as u64)),
            DatasetCases::Stored {
                revision,
                case_count,
            } => (revision.clone(), *case_count),
        };
        DatasetByContent {
            dataset_id: &self.dataset_id,
            revision,
            case_count,
        }
    }
}

#[derive(Serialize)]
struct DatasetByContent<'a> {
    dataset_id: &'a str,
    revision: Option<Revision>,
    case_count: Option<u64>,
}

/// The logical run definition: everything that determines results, nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub generation: GenerationConfig,
    pub evaluation: EvaluationConfig,
    pub datasets: Vec<Dataset>,
    pub seeds: Vec<u64>,
}

#[derive(Serialize)]
struct CanonicalExperiment<'a> {
    generation: &'a GenerationConfig,
    evaluation: &'a EvaluationConfig,
    datasets: Vec<DatasetByContent<'a>>,
    seeds: &'a [u64],
}

impl Experiment {
    /// Number of work items: every case once per seed (stored datasets not resolved
    /// yet count nothing).
    pub fn work_items(&self) -> u64 {
        let cases: u64 = self.datasets.iter().filter_map(Dataset::case_count).sum();
        cases.saturating_mul(self.seeds.len() as u64)
    }

    /// The canonical JSON value stored with the run and hashed into its id: datasets by
    /// content, `{"dataset_id", "revision", "case_count"}` (an inline dataset's revision
    /// computed from its cases), so inline and stored cases give the same id.
    pub fn canonical(&self) -> Value {
        let canonical = CanonicalExperiment {
            generation: &self.generation,
            evaluation: &self.evaluation,
            datasets: self.datasets.iter().map(Dataset::by_content).collect(),
            seeds: &self.seeds,
        };
        serde_json::to_value(canonical).unwrap_or(Value::Null)
    }
}

/// Runtime-only options: they change what is observed and how fast, never results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RuntimeOptions {
    /// Cases executed at once for this run (default: the engine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
    /// Lifecycle subscribers configured over JSON (webhooks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<SubscriberConfig>,
    /// The W3C `traceparent` of the request that created the run: its `run` span joins
    /// that trace. Set by the API from the header, never from the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Where the CLI keeps the run (`{"store": "memory" | "sqlite", "path": ...}`); the
    /// service ignores it: its operator chooses the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfig>,
    /// Reuse stored provider responses for identical requests (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// Stop the run (as `failed`) when too many cases fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// Stop starting cases (and fail the run) once the next case's worst-case cost
    /// would take the run's spend past this many USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
}

/// Fails a run early once `failed / finished > max_ratio` with at least `min_cases`
/// finished: a broken provider or prompt should not burn through a whole dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct FailurePolicy {
    pub max_ratio: f64,
    pub min_cases: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StorageConfig {
    pub store: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// An experiment with its components resolved, ready to execute.
#[derive(Clone)]
pub struct Pipeline {
    pub generator: Arc<dyn Generator>,
    pub reducer: Arc<dyn Reducer>,
    pub evaluators: Evaluators,
}

/// The evaluation half of a pipeline (what a rejudge replaces).
#[derive(Clone)]
pub struct Evaluators {
    pub parsers: Vec<(String, Arc<dyn Parser>)>,
    pub metrics: Vec<(String, Arc<dyn Metric>)>,
    pub judges: Vec<(String, Arc<dyn Judge>)>,
    pub pass_at_k: Option<PassAtK>,
}

/// A parsed and validated request to run an experiment.
pub struct ExperimentRequest {
    pub experiment: Experiment,
    pub pipeline: Pipeline,
    pub runtime: RuntimeOptions,
    /// Name, tags and metadata, stored with the run (not part of its id).
    pub labels: RunLabels,
}
