//! Resolving the components a definition names (generation, evaluation, pass@k)
//! through the registry, with their params checked.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::Checker;
use super::types::{
    CandidatePolicy, ComponentRef, EvaluationConfig, Evaluators, GenerationConfig, MAX_COMPONENTS,
    MAX_NUM_SAMPLES, MAX_PASS_AT_K, PassAtK, PassAtKConfig,
};
use crate::components::{Generator, Judge, Metric, Reducer, Registry, ResolveError, Resolved};
use crate::model::check::{join, type_name};

/// The generation config with its resolved generator and reducer.
pub(super) type ResolvedGeneration = (GenerationConfig, Arc<dyn Generator>, Arc<dyn Reducer>);

impl Checker<'_> {
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
                let map =
                    self.problems
                        .object(value, path, &["name", "params", "id", "version"])?;
                let name = self
                    .problems
                    .required(map, path, "name")
                    .and_then(|v| self.id(v, &join(path, "name")));
                let params = match map.get("params") {
                    None | Some(Value::Null) => Some(&empty),
                    Some(Value::Object(p)) => Some(p),
                    Some(other) => {
                        self.problems.push(
                            join(path, "params"),
                            format!("must be an object, got {}", type_name(other)),
                        );
                        None
                    }
                };
                let id = map.get("id").and_then(|v| self.id(v, &join(path, "id")));
                let version = map
                    .get("version")
                    .and_then(|v| self.id(v, &join(path, "version")));
                (name?, params?, id, version)
            }
            other => {
                self.problems.push(
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
                    self.problems.push(
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
                self.problems.push(
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
                    self.problems.push(at, e.message);
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
        let items = self.problems.array(value, &list_path)?;
        if items.len() > MAX_COMPONENTS {
            self.problems.push(
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
                        self.problems.push(
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

    pub(super) fn generation(&mut self, value: &Value) -> Option<ResolvedGeneration> {
        let path = "generation";
        let map =
            self.problems
                .object(value, path, &["generator", "candidate_policy", "reducer"])?;
        let generator = self
            .problems
            .required(map, path, "generator")
            .and_then(|v| self.component(v, "generation.generator", Registry::generator));
        let num_samples = match map.get("candidate_policy").filter(|v| !v.is_null()) {
            None => Some(1),
            Some(policy) => {
                let policy_path = "generation.candidate_policy";
                self.problems
                    .object(policy, policy_path, &["num_samples"])
                    .and_then(
                        |policy| match policy.get("num_samples").filter(|v| !v.is_null()) {
                            None => Some(1),
                            Some(n) => match n.as_u64() {
                                Some(n) if (1..=MAX_NUM_SAMPLES).contains(&n) => Some(n as u32),
                                _ => {
                                    self.problems.push(
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

    pub(super) fn evaluation(
        &mut self,
        value: &Value,
        path: &str,
    ) -> Option<(EvaluationConfig, Evaluators)> {
        let map =
            self.problems
                .object(value, path, &["parsers", "metrics", "judges", "pass_at_k"])?;
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
                self.problems.push(
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
        let map = self
            .problems
            .object(value, path, &["k", "metric", "threshold"])?;
        let k_path = join(path, "k");
        let k: Option<Vec<u64>> = match self.problems.required(map, path, "k")?.as_array() {
            Some(items) if (1..=MAX_PASS_AT_K).contains(&items.len()) => {
                let values: Option<Vec<u64>> = items
                    .iter()
                    .map(|v| v.as_u64().filter(|k| (1..=MAX_NUM_SAMPLES).contains(k)))
                    .collect();
                if values.is_none() {
                    self.problems.push(
                        &k_path,
                        format!("each k must be an integer from 1 to {MAX_NUM_SAMPLES}"),
                    );
                }
                values.filter(|v| {
                    let unique: HashSet<&u64> = v.iter().collect();
                    if unique.len() != v.len() {
                        self.problems.push(&k_path, "k values must be distinct");
                    }
                    unique.len() == v.len()
                })
            }
            _ => {
                self.problems.push(
                    &k_path,
                    format!("must be a list of 1 to {MAX_PASS_AT_K} integers"),
                );
                None
            }
        };
        let metric_path = join(path, "metric");
        let metric = match map.get("metric").filter(|v| !v.is_null()) {
            None => metrics.first().or_else(|| {
                self.problems.push(
                    &metric_path,
                    "is required: pass@k needs a metric from evaluation.metrics",
                );
                None
            }),
            Some(Value::String(id)) => metrics.iter().find(|(r, _)| &r.id == id).or_else(|| {
                let ids: Vec<&str> = metrics.iter().map(|(r, _)| r.id.as_str()).collect();
                self.problems.push(
                    &metric_path,
                    format!(
                        "no metric `{id}` in evaluation.metrics; ids: {}",
                        ids.join(", ")
                    ),
                );
                None
            }),
            Some(_) => {
                self.problems.push(&metric_path, "must be a metric id");
                None
            }
        };
        let threshold = match map.get("threshold").filter(|v| !v.is_null()) {
            None => Some(1.0),
            Some(v) => v
                .as_f64()
                .filter(|t| t.abs() <= crate::components::MAX_FLOAT)
                .or_else(|| {
                    self.problems
                        .push(join(path, "threshold"), "must be a number within ±1e15");
                    None
                }),
        };
        let (k, (metric_ref, metric), threshold) = (k?, metric?, threshold?);
        for kv in &k {
            let id = PassAtK::id(*kv);
            if metrics.iter().any(|(r, _)| r.id == id) || judges.iter().any(|(r, _)| r.id == id) {
                self.problems.push(
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
}
