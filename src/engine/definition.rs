//! The experiment definition: parsing JSON into types at the boundary, collecting every
//! problem with its JSON path, resolving components, and the canonical form the run id
//! is derived from.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::problems::Problems;
use crate::components::{
    Generator, Judge, Metric, Parser, Reducer, Registry, ResolveError, Resolved,
};
use crate::model::Case;

/// Most samples a candidate policy may ask for per case.
pub const MAX_NUM_SAMPLES: u64 = 1_000;
/// Most work items (cases × seeds) in one run.
pub const MAX_WORK_ITEMS: u64 = 10_000_000;
/// Highest per-run case concurrency.
pub const MAX_CONCURRENCY: u64 = 4_096;
/// Most datasets in one run.
pub const MAX_DATASETS: usize = 1_000;
/// Most seeds in one run.
pub const MAX_SEEDS: usize = 10_000;
/// Most parsers, metrics or judges (each) in one evaluation.
pub const MAX_COMPONENTS: usize = 64;
/// Longest `case_id`, `dataset_id` or component `name`/`id`/`version`, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// One problem in a definition: where (`datasets[0].cases[2].case_id`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

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
pub const MAX_PASS_AT_K: usize = 16;

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

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Dataset {
    pub dataset_id: String,
    pub cases: Vec<Case>,
}

/// The logical run definition: everything that determines results, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub generation: GenerationConfig,
    pub evaluation: EvaluationConfig,
    pub datasets: Vec<Dataset>,
    pub seeds: Vec<u64>,
}

impl Experiment {
    /// Number of work items: every case once per seed.
    pub fn work_items(&self) -> u64 {
        let cases: u64 = self.datasets.iter().map(|d| d.cases.len() as u64).sum();
        cases * self.seeds.len() as u64
    }

    /// The canonical JSON value stored with the run and hashed into its id.
    pub fn canonical(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
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
}

/// Fails a run early once `failed / finished > max_ratio` with at least `min_cases`
/// finished: a broken provider or prompt should not burn through a whole dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct FailurePolicy {
    pub max_ratio: f64,
    pub min_cases: u64,
}

pub use crate::telemetry::{SubscriberConfig, TracingConfig, TracingProviderKind};

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
}

/// The generation config with its resolved generator and reducer.
type ResolvedGeneration = (GenerationConfig, Arc<dyn Generator>, Arc<dyn Reducer>);

/// Collects problems while walking a JSON document.
struct Checker<'r> {
    registry: &'r Registry,
    errors: Problems,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'r> Checker<'r> {
    fn new(registry: &'r Registry) -> Self {
        Checker {
            registry,
            errors: Problems::default(),
        }
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(path, message);
    }

    /// The object at `path`, with unknown keys reported.
    fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(map) = value.as_object() else {
            self.error(path, format!("must be an object, got {}", type_name(value)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.errors.report(|| {
                    (
                        join(path, key),
                        format!("unknown field; expected one of: {}", known.join(", ")),
                    )
                });
            }
        }
        Some(map)
    }

    fn required<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let value = map.get(key);
        if value.is_none_or(Value::is_null) {
            self.error(join(path, key), "is required");
            return None;
        }
        value
    }

    fn non_empty_string(&mut self, value: &Value, path: &str) -> Option<String> {
        match value.as_str() {
            Some(s) if s.len() > MAX_ID_BYTES => {
                self.error(path, format!("must be at most {MAX_ID_BYTES} bytes"));
                None
            }
            Some(s) if !s.trim().is_empty() => Some(s.to_owned()),
            Some(_) => {
                self.error(path, "must not be empty");
                None
            }
            None => {
                self.error(path, format!("must be a string, got {}", type_name(value)));
                None
            }
        }
    }

    fn array<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Vec<Value>> {
        let items = value.as_array();
        if items.is_none() {
            self.error(path, format!("must be an array, got {}", type_name(value)));
        }
        items
    }

    fn component<T: ?Sized>(
        &mut self,
        value: &Value,
        path: &str,
        resolve: impl Fn(&Registry, &str, &Map<String, Value>) -> Result<Resolved<T>, ResolveError>,
    ) -> Option<(ComponentRef, Arc<T>)> {
        let empty = Map::new();
        let (name, params, id, version) = match value {
            Value::String(name) => (name.clone(), &empty, None, None),
            Value::Object(_) => {
                let map = self.object(value, path, &["name", "params", "id", "version"])?;
                let name = self
                    .required(map, path, "name")
                    .and_then(|v| self.non_empty_string(v, &join(path, "name")));
                let params = match map.get("params") {
                    None | Some(Value::Null) => Some(&empty),
                    Some(Value::Object(p)) => Some(p),
                    Some(other) => {
                        self.error(
                            join(path, "params"),
                            format!("must be an object, got {}", type_name(other)),
                        );
                        None
                    }
                };
                let id = map
                    .get("id")
                    .and_then(|v| self.non_empty_string(v, &join(path, "id")));
                let version = map
                    .get("version")
                    .and_then(|v| self.non_empty_string(v, &join(path, "version")));
                (name?, params?, id, version)
            }
            other => {
                self.error(
                    path,
                    format!(
                        "must be a component name or {{\"name\", \"params\"}}, got {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        match resolve(self.registry, &name, params) {
            Ok(resolved) => {
                if let Some(wanted) = &version
                    && wanted != resolved.version
                {
                    self.error(
                        join(path, "version"),
                        format!(
                            "{name} version {wanted} is not available (this service has {})",
                            resolved.version
                        ),
                    );
                    return None;
                }
                let reference = ComponentRef {
                    id: id.unwrap_or_else(|| name.clone()),
                    name,
                    params: params.clone(),
                    version: resolved.version.to_owned(),
                };
                Some((reference, resolved.component))
            }
            Err(ResolveError::Unknown { kind, known }) => {
                let at = if value.is_string() {
                    path.to_owned()
                } else {
                    join(path, "name")
                };
                self.error(
                    at,
                    format!("unknown {kind} `{name}`; available: {}", known.join(", ")),
                );
                None
            }
            Err(ResolveError::Params(errors)) => {
                let params_path = join(path, "params");
                for e in errors {
                    // An empty path is the params object itself (a summary of more problems).
                    let at = if e.path.is_empty() {
                        params_path.clone()
                    } else {
                        join(&params_path, &e.path)
                    };
                    self.error(at, e.message);
                }
                None
            }
        }
    }

    /// A list of components with unique ids.
    fn components<T: ?Sized>(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        resolve: impl Fn(&Registry, &str, &Map<String, Value>) -> Result<Resolved<T>, ResolveError>
        + Copy,
    ) -> Option<Vec<(ComponentRef, Arc<T>)>> {
        let list_path = join(path, key);
        let Some(value) = map.get(key).filter(|v| !v.is_null()) else {
            return Some(Vec::new());
        };
        let items = self.array(value, &list_path)?;
        if items.len() > MAX_COMPONENTS {
            self.error(
                list_path,
                format!("must have at most {MAX_COMPONENTS} entries"),
            );
            return None;
        }
        let mut resolved = Vec::new();
        let mut ok = true;
        let mut ids = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{list_path}[{i}]");
            match self.component(item, &item_path, resolve) {
                Some((reference, component)) => {
                    if !ids.insert(reference.id.clone()) {
                        self.error(
                            item_path,
                            format!(
                                "duplicate id `{}`; give each an \"id\" to tell them apart",
                                reference.id
                            ),
                        );
                        ok = false;
                    }
                    resolved.push((reference, component));
                }
                None => ok = false,
            }
        }
        ok.then_some(resolved)
    }

    fn generation(&mut self, value: &Value) -> Option<ResolvedGeneration> {
        let path = "generation";
        let map = self.object(value, path, &["generator", "candidate_policy", "reducer"])?;
        let generator = self
            .required(map, path, "generator")
            .and_then(|v| self.component(v, "generation.generator", Registry::generator));
        let num_samples = match map.get("candidate_policy").filter(|v| !v.is_null()) {
            None => Some(1),
            Some(policy) => {
                let policy_path = "generation.candidate_policy";
                self.object(policy, policy_path, &["num_samples"])
                    .and_then(
                        |policy| match policy.get("num_samples").filter(|v| !v.is_null()) {
                            None => Some(1),
                            Some(n) => match n.as_u64() {
                                Some(n) if (1..=MAX_NUM_SAMPLES).contains(&n) => Some(n as u32),
                                _ => {
                                    self.error(
                                        "generation.candidate_policy.num_samples",
                                        format!("must be an integer from 1 to {MAX_NUM_SAMPLES}"),
                                    );
                                    None
                                }
                            },
                        },
                    )
            }
        };
        let default_reducer = Value::String("builtin/majority_vote".to_owned());
        let reducer_value = map
            .get("reducer")
            .filter(|v| !v.is_null())
            .unwrap_or(&default_reducer);
        let reducer = self.component(reducer_value, "generation.reducer", Registry::reducer);
        let ((generator_ref, generator), num_samples, (reducer_ref, reducer)) =
            (generator?, num_samples?, reducer?);
        Some((
            GenerationConfig {
                generator: generator_ref,
                candidate_policy: CandidatePolicy { num_samples },
                reducer: reducer_ref,
            },
            generator,
            reducer,
        ))
    }

    fn evaluation(&mut self, value: &Value, path: &str) -> Option<(EvaluationConfig, Evaluators)> {
        let map = self.object(value, path, &["parsers", "metrics", "judges", "pass_at_k"])?;
        let parsers = self.components(map, path, "parsers", Registry::parser);
        let metrics = self.components(map, path, "metrics", Registry::metric);
        let judges = self.components(map, path, "judges", Registry::judge);
        let (parsers, metrics, judges) = (parsers?, metrics?, judges?);
        let pass_at_k = match map.get("pass_at_k") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.pass_at_k(v, &join(path, "pass_at_k"), &metrics, &judges)?),
        };
        let metric_ids: HashSet<&str> = metrics.iter().map(|(r, _)| r.id.as_str()).collect();
        for (i, (judge, _)) in judges.iter().enumerate() {
            if metric_ids.contains(judge.id.as_str()) {
                self.error(
                    format!("{path}.judges[{i}]"),
                    format!(
                        "id `{}` is already a metric's; results are keyed by id",
                        judge.id
                    ),
                );
            }
        }
        fn split<T: ?Sized>(
            items: Vec<(ComponentRef, Arc<T>)>,
        ) -> (Vec<ComponentRef>, Vec<(String, Arc<T>)>) {
            items
                .into_iter()
                .map(|(r, c)| {
                    let id = r.id.clone();
                    (r, (id, c))
                })
                .unzip()
        }
        let (parser_refs, parsers) = split(parsers);
        let (metric_refs, metrics) = split(metrics);
        let (judge_refs, judges) = split(judges);
        Some((
            EvaluationConfig {
                parsers: parser_refs,
                metrics: metric_refs,
                judges: judge_refs,
                pass_at_k: pass_at_k.as_ref().map(|p| PassAtKConfig {
                    k: p.k.clone(),
                    metric: p.metric_id.clone(),
                    threshold: p.threshold,
                }),
            },
            Evaluators {
                parsers,
                metrics,
                judges,
                pass_at_k,
            },
        ))
    }

    /// `pass_at_k`: `{"k": [1, 5], "metric": id (default: the first metric),
    /// "threshold": 1.0}`. Its `pass@{k}` ids must not clash with metric or judge ids.
    fn pass_at_k(
        &mut self,
        value: &Value,
        path: &str,
        metrics: &[(ComponentRef, Arc<dyn Metric>)],
        judges: &[(ComponentRef, Arc<dyn Judge>)],
    ) -> Option<PassAtK> {
        let map = self.object(value, path, &["k", "metric", "threshold"])?;
        let k_path = join(path, "k");
        let k: Option<Vec<u64>> = match self.required(map, path, "k")?.as_array() {
            Some(items) if (1..=MAX_PASS_AT_K).contains(&items.len()) => {
                let values: Option<Vec<u64>> = items
                    .iter()
                    .map(|v| v.as_u64().filter(|k| (1..=MAX_NUM_SAMPLES).contains(k)))
                    .collect();
                if values.is_none() {
                    self.error(
                        &k_path,
                        format!("each k must be an integer from 1 to {MAX_NUM_SAMPLES}"),
                    );
                }
                values.filter(|v| {
                    let unique: HashSet<&u64> = v.iter().collect();
                    if unique.len() != v.len() {
                        self.error(&k_path, "k values must be distinct");
                    }
                    unique.len() == v.len()
                })
            }
            _ => {
                self.error(
                    &k_path,
                    format!("must be a list of 1 to {MAX_PASS_AT_K} integers"),
                );
                None
            }
        };
        let metric_path = join(path, "metric");
        let metric = match map.get("metric").filter(|v| !v.is_null()) {
            None => metrics.first().or_else(|| {
                self.error(
                    &metric_path,
                    "is required: pass@k needs a metric from evaluation.metrics",
                );
                None
            }),
            Some(Value::String(id)) => metrics.iter().find(|(r, _)| &r.id == id).or_else(|| {
                let ids: Vec<&str> = metrics.iter().map(|(r, _)| r.id.as_str()).collect();
                self.error(
                    &metric_path,
                    format!(
                        "no metric `{id}` in evaluation.metrics; ids: {}",
                        ids.join(", ")
                    ),
                );
                None
            }),
            Some(_) => {
                self.error(&metric_path, "must be a metric id");
                None
            }
        };
        let threshold = match map.get("threshold").filter(|v| !v.is_null()) {
            None => Some(1.0),
            Some(v) => v
                .as_f64()
                .filter(|t| t.abs() <= crate::components::MAX_FLOAT)
                .or_else(|| {
                    self.error(join(path, "threshold"), "must be a number within ±1e15");
                    None
                }),
        };
        let (k, (metric_ref, metric), threshold) = (k?, metric?, threshold?);
        for kv in &k {
            let id = PassAtK::id(*kv);
            if metrics.iter().any(|(r, _)| r.id == id) || judges.iter().any(|(r, _)| r.id == id) {
                self.error(
                    &k_path,
                    format!("`{id}` is already a metric's or judge's id; results are keyed by id"),
                );
                return None;
            }
        }
        Some(PassAtK {
            k,
            metric_id: metric_ref.id.clone(),
            metric: metric.clone(),
            threshold,
        })
    }

    /// Case `index` of the list at `cases_path`. Runs once per case, so its path is only
    /// formatted for a problem that gets listed.
    fn case(&mut self, value: &Value, cases_path: &str, index: usize) -> Option<Case> {
        const FIELDS: [&str; 4] = ["case_id", "input", "expected_output", "metadata"];
        let at = |key: &str| {
            if key.is_empty() {
                format!("{cases_path}[{index}]")
            } else {
                format!("{cases_path}[{index}].{key}")
            }
        };
        let Some(map) = value.as_object() else {
            self.errors.report(|| {
                (
                    at(""),
                    format!("must be an object, got {}", type_name(value)),
                )
            });
            return None;
        };
        for key in map.keys() {
            if !FIELDS.contains(&key.as_str()) {
                self.errors.report(|| {
                    (
                        at(key),
                        format!("unknown field; expected one of: {}", FIELDS.join(", ")),
                    )
                });
            }
        }
        let case_id = match map.get("case_id") {
            None | Some(Value::Null) => {
                self.errors
                    .report(|| (at("case_id"), "is required".to_owned()));
                None
            }
            Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= MAX_ID_BYTES => {
                Some(id.clone())
            }
            Some(other) => {
                self.errors.report(|| {
                    let message = match other.as_str() {
                        Some(id) if id.len() > MAX_ID_BYTES => {
                            format!("must be at most {MAX_ID_BYTES} bytes")
                        }
                        Some(_) => "must not be empty".to_owned(),
                        None => format!("must be a string, got {}", type_name(other)),
                    };
                    (at("case_id"), message)
                });
                None
            }
        };
        let input = match map.get("input") {
            None | Some(Value::Null) => {
                self.errors
                    .report(|| (at("input"), "is required".to_owned()));
                None
            }
            Some(input) => Some(input.clone()),
        };
        Some(Case {
            case_id: case_id?,
            input: input?,
            expected_output: map.get("expected_output").cloned().unwrap_or(Value::Null),
            metadata: map.get("metadata").cloned().unwrap_or(Value::Null),
        })
    }

    fn datasets(&mut self, value: &Value) -> Option<Vec<Dataset>> {
        let items = self.array(value, "datasets")?;
        if items.is_empty() {
            self.error("datasets", "must contain at least one dataset");
            return None;
        }
        if items.len() > MAX_DATASETS {
            self.error(
                "datasets",
                format!("must contain at most {MAX_DATASETS} datasets"),
            );
            return None;
        }
        let mut datasets = Vec::with_capacity(items.len());
        let mut dataset_ids = HashSet::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("datasets[{i}]");
            let Some(map) = self.object(item, &path, &["dataset_id", "cases"]) else {
                ok = false;
                continue;
            };
            let dataset_id = self
                .required(map, &path, "dataset_id")
                .and_then(|v| self.non_empty_string(v, &join(&path, "dataset_id")));
            if let Some(id) = &dataset_id
                && !dataset_ids.insert(id.clone())
            {
                self.error(
                    join(&path, "dataset_id"),
                    format!("duplicate dataset_id `{id}`"),
                );
                ok = false;
            }
            let cases_path = join(&path, "cases");
            let cases = self
                .required(map, &path, "cases")
                .and_then(|v| self.array(v, &cases_path));
            let mut parsed_cases = Vec::new();
            if let Some(cases) = cases {
                if cases.is_empty() {
                    self.error(&cases_path, "must contain at least one case");
                    ok = false;
                }
                let mut case_ids = HashSet::with_capacity(cases.len());
                for (j, case) in cases.iter().enumerate() {
                    match self.case(case, &cases_path, j) {
                        Some(case) => {
                            if !case_ids.insert(case.case_id.clone()) {
                                self.errors.report(|| {
                                    (
                                        format!("{cases_path}[{j}].case_id"),
                                        format!("duplicate case_id `{}` in dataset", case.case_id),
                                    )
                                });
                                ok = false;
                            }
                            parsed_cases.push(case);
                        }
                        None => ok = false,
                    }
                }
            }
            match (dataset_id, cases) {
                (Some(dataset_id), Some(_)) => datasets.push(Dataset {
                    dataset_id,
                    cases: parsed_cases,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(datasets)
    }

    fn seeds(&mut self, value: &Value) -> Option<Vec<u64>> {
        let items = self.array(value, "seeds")?;
        if items.is_empty() {
            self.error("seeds", "must contain at least one seed");
            return None;
        }
        if items.len() > MAX_SEEDS {
            self.error("seeds", format!("must contain at most {MAX_SEEDS} seeds"));
            return None;
        }
        let mut seeds = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match crate::model::u64_from_json(item) {
                Some(seed) if seen.insert(seed) => seeds.push(seed),
                Some(seed) => {
                    self.errors
                        .report(|| (format!("seeds[{i}]"), format!("duplicate seed {seed}")));
                    ok = false;
                }
                None => {
                    self.errors.report(|| {
                        (
                            format!("seeds[{i}]"),
                            "must be an integer from 0 to 2^64-1 (a number or a decimal string)"
                                .to_owned(),
                        )
                    });
                    ok = false;
                }
            }
        }
        ok.then_some(seeds)
    }

    fn runtime(&mut self, map: &Map<String, Value>) -> RuntimeOptions {
        let mut runtime = RuntimeOptions::default();
        if let Some(value) = map.get("concurrency").filter(|v| !v.is_null()) {
            match value.as_u64() {
                Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => {
                    runtime.concurrency = Some(n as usize)
                }
                _ => self.error(
                    "concurrency",
                    format!("must be an integer from 1 to {MAX_CONCURRENCY}"),
                ),
            }
        }
        if let Some(value) = map.get("failure_policy").filter(|v| !v.is_null())
            && let Some(policy) = self.object(value, "failure_policy", &["max_ratio", "min_cases"])
        {
            let max_ratio = match policy.get("max_ratio").and_then(Value::as_f64) {
                Some(ratio) if (0.0..=1.0).contains(&ratio) => Some(ratio),
                _ => {
                    self.error(
                        "failure_policy.max_ratio",
                        "is required: a number from 0 to 1",
                    );
                    None
                }
            };
            let min_cases = match policy.get("min_cases").filter(|v| !v.is_null()) {
                None => Some(20),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => Some(n),
                    _ => {
                        self.error("failure_policy.min_cases", "must be a positive integer");
                        None
                    }
                },
            };
            if let (Some(max_ratio), Some(min_cases)) = (max_ratio, min_cases) {
                runtime.failure_policy = Some(FailurePolicy {
                    max_ratio,
                    min_cases,
                });
            }
        }
        if let Some(value) = map.get("cache").filter(|v| !v.is_null()) {
            match value.as_bool() {
                Some(cache) => runtime.cache = Some(cache),
                None => self.error("cache", "must be true or false"),
            }
        }
        if let Some(value) = map.get("tracing").filter(|v| !v.is_null()) {
            let mut errors = Vec::new();
            runtime.tracing = crate::telemetry::parse_tracing(value, "tracing", &mut errors);
            self.errors.extend(errors);
        }
        if let Some(value) = map.get("subscribers").filter(|v| !v.is_null()) {
            let mut errors = Vec::new();
            runtime.subscribers =
                crate::telemetry::parse_subscribers(value, "subscribers", &mut errors);
            self.errors.extend(errors);
        }
        if let Some(value) = map.get("storage").filter(|v| !v.is_null())
            && let Some(storage) = self.object(value, "storage", &["store", "path"])
        {
            let store = match storage.get("store").filter(|v| !v.is_null()) {
                None => "memory",
                Some(Value::String(store)) => store.as_str(),
                Some(_) => {
                    self.error("storage.store", "must be a string");
                    "memory"
                }
            };
            if !["memory", "sqlite"].contains(&store) {
                self.error(
                    "storage.store",
                    format!("unknown store `{store}`; expected memory or sqlite"),
                );
            }
            let path = storage
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_owned);
            runtime.storage = Some(StorageConfig {
                store: store.to_owned(),
                path,
            });
        }
        runtime
    }
}

/// Fields of the logical definition; everything else at the top level is runtime-only.
const LOGICAL_FIELDS: [&str; 4] = ["generation", "evaluation", "datasets", "seeds"];
const RUNTIME_FIELDS: [&str; 6] = [
    "storage",
    "subscribers",
    "tracing",
    "concurrency",
    "cache",
    "failure_policy",
];

/// Parses and validates an experiment request: every problem is reported at once.
pub fn parse_experiment(
    value: &Value,
    registry: &Registry,
) -> Result<ExperimentRequest, Vec<FieldError>> {
    let mut checker = Checker::new(registry);
    let known: Vec<&str> = LOGICAL_FIELDS
        .iter()
        .chain(RUNTIME_FIELDS.iter())
        .copied()
        .collect();
    let Some(map) = checker.object(value, "", &known) else {
        return Err(checker.errors.into_details());
    };
    let generation = checker
        .required(map, "", "generation")
        .and_then(|v| checker.generation(v));
    let evaluation = checker
        .required(map, "", "evaluation")
        .and_then(|v| checker.evaluation(v, "evaluation"));
    let datasets = checker
        .required(map, "", "datasets")
        .and_then(|v| checker.datasets(v));
    let seeds = checker
        .required(map, "", "seeds")
        .and_then(|v| checker.seeds(v));
    let runtime = checker.runtime(map);
    if let (Some(datasets), Some(seeds)) = (&datasets, &seeds) {
        let cases: u64 = datasets.iter().map(|d| d.cases.len() as u64).sum();
        if cases.saturating_mul(seeds.len() as u64) > MAX_WORK_ITEMS {
            checker.error(
                "datasets",
                format!("cases × seeds must not exceed {MAX_WORK_ITEMS}"),
            );
        }
    }
    if let (Some((generation, _, _)), Some((evaluation, _))) = (&generation, &evaluation)
        && let Some(pass) = &evaluation.pass_at_k
        && let Some(k) = pass
            .k
            .iter()
            .find(|k| **k > u64::from(generation.candidate_policy.num_samples))
    {
        checker.error(
            "evaluation.pass_at_k.k",
            format!(
                "k = {k} exceeds generation.candidate_policy.num_samples ({})",
                generation.candidate_policy.num_samples
            ),
        );
    }
    match (generation, evaluation, datasets, seeds) {
        (
            Some((generation, generator, reducer)),
            Some((evaluation, evaluators)),
            Some(datasets),
            Some(seeds),
        ) if checker.errors.is_empty() => Ok(ExperimentRequest {
            experiment: Experiment {
                generation,
                evaluation,
                datasets,
                seeds,
            },
            pipeline: Pipeline {
                generator,
                reducer,
                evaluators,
            },
            runtime,
        }),
        _ => Err(checker.errors.into_details()),
    }
}

/// Parses a rejudge request body: an evaluation config, alone or under `evaluation`,
/// plus runtime-only fields.
pub fn parse_evaluation(
    value: &Value,
    registry: &Registry,
) -> Result<(EvaluationConfig, Evaluators, RuntimeOptions), Vec<FieldError>> {
    let mut checker = Checker::new(registry);
    let nested = value.get("evaluation").is_some();
    let mut known: Vec<&str> = RUNTIME_FIELDS.to_vec();
    known.extend(if nested {
        &["evaluation"][..]
    } else {
        &["parsers", "metrics", "judges", "pass_at_k"][..]
    });
    let Some(map) = checker.object(value, "", &known) else {
        return Err(checker.errors.into_details());
    };
    let runtime = checker.runtime(map);
    let evaluation = if nested {
        checker
            .required(map, "", "evaluation")
            .and_then(|v| checker.evaluation(v, "evaluation"))
    } else {
        let mut only_evaluation = map.clone();
        only_evaluation.retain(|k, _| !RUNTIME_FIELDS.contains(&k.as_str()));
        checker.evaluation(&Value::Object(only_evaluation), "")
    };
    match evaluation {
        Some((config, evaluators)) if checker.errors.is_empty() => {
            Ok((config, evaluators, runtime))
        }
        _ => Err(checker.errors.into_details()),
    }
}
