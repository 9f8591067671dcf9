//! The experiment definition: parsing JSON into types at the boundary, collecting every
//! problem with its JSON path (the shared toolkit of [`crate::model::check`]), resolving
//! components, and the canonical form the run id is derived from.
//!
//! [`types`] holds what a definition is; the rest checks one part of it each:
//! [`components`] what the registry resolves, [`data`] datasets, cases and seeds,
//! [`runtime`] the runtime-only options.

mod components;
mod data;
mod labels;
mod runtime;
mod types;

use serde_json::Value;

pub use labels::{check_run_name, check_tag};
pub use runtime::MAX_BUDGET_USD;
use types::MAX_ID_BYTES;
pub(super) use types::MAX_WORK_ITEMS;
pub use types::{
    CandidatePolicy, ComponentRef, Dataset, DatasetCases, EvaluationConfig, Evaluators, Experiment,
    ExperimentRequest, FailurePolicy, GenerationConfig, MAX_CONCURRENCY, PassAtK, PassAtKConfig,
    Pipeline, RuntimeOptions, StorageConfig,
};

use crate::components::Registry;
use crate::model::{FieldError, Problems};

/// Walks one request, collecting its problems; resolves components through `registry`.
struct Checker<'r> {
    registry: &'r Registry,
    problems: Problems,
}

impl<'r> Checker<'r> {
    fn new(registry: &'r Registry) -> Self {
        Checker {
            registry,
            problems: Problems::default(),
        }
    }

    /// A name, id or version: a non-blank string of at most [`MAX_ID_BYTES`] without
    /// control or bidirectional characters.
    fn id(&mut self, value: &Value, path: &str) -> Option<String> {
        self.problems
            .id_at_most(value, path, MAX_ID_BYTES)
            .map(str::to_owned)
    }
}

/// Fields of the logical definition; everything else at the top level is runtime-only.
const LOGICAL_FIELDS: [&str; 4] = ["generation", "evaluation", "datasets", "seeds"];
/// What a person calls the run; like runtime fields, not part of the id.
const LABEL_FIELDS: [&str; 3] = ["name", "tags", "metadata"];
const RUNTIME_FIELDS: [&str; 7] = [
    "storage",
    "subscribers",
    "tracing",
    "concurrency",
    "cache",
    "failure_policy",
    "budget_usd",
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
        .chain(LABEL_FIELDS.iter())
        .copied()
        .collect();
    let Some(map) = checker.problems.object(value, "", &known) else {
        return Err(checker.problems.into_details());
    };
    let generation = checker
        .problems
        .required(map, "", "generation")
        .and_then(|v| checker.generation(v));
    let evaluation = checker
        .problems
        .required(map, "", "evaluation")
        .and_then(|v| checker.evaluation(v, "evaluation"));
    let datasets = checker
        .problems
        .required(map, "", "datasets")
        .and_then(|v| checker.datasets(v));
    let seeds = checker
        .problems
        .required(map, "", "seeds")
        .and_then(|v| checker.seeds(v));
    let runtime = checker.runtime(map);
    let labels = checker.labels(map);
    // Stored datasets count once resolved, at submit.
    if let (Some(datasets), Some(seeds)) = (&datasets, &seeds) {
        let cases: u64 = datasets.iter().filter_map(Dataset::case_count).sum();
        if cases.saturating_mul(seeds.len() as u64) > MAX_WORK_ITEMS {
            checker.problems.push(
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
        checker.problems.push(
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
        ) if checker.problems.is_empty() => Ok(ExperimentRequest {
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
            labels,
        }),
        _ => Err(checker.problems.into_details()),
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
    let Some(map) = checker.problems.object(value, "", &known) else {
        return Err(checker.problems.into_details());
    };
    let runtime = checker.runtime(map);
    let evaluation = if nested {
        checker
            .problems
            .required(map, "", "evaluation")
            .and_then(|v| checker.evaluation(v, "evaluation"))
    } else {
        let mut only_evaluation = map.clone();
        only_evaluation.retain(|k, _| !RUNTIME_FIELDS.contains(&k.as_str()));
        checker.evaluation(&Value::Object(only_evaluation), "")
    };
    match evaluation {
        Some((config, evaluators)) if checker.problems.is_empty() => {
            Ok((config, evaluators, runtime))
        }
        _ => Err(checker.problems.into_details()),
    }
}
