//! Checking the data of a definition: datasets, their cases, and seeds. Runs once per
//! case of a request that may hold millions: problems are described lazily.

use std::collections::HashSet;

use serde_json::Value;

use super::Checker;
use super::types::{Dataset, MAX_DATASETS, MAX_ID_BYTES, MAX_SEEDS};
use crate::model::Case;
use crate::model::check::{join, type_name};

impl Checker<'_> {
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
            self.problems.report(|| {
                (
                    at(""),
                    format!("must be an object, got {}", type_name(value)),
                )
            });
            return None;
        };
        for key in map.keys() {
            if !FIELDS.contains(&key.as_str()) {
                self.problems.report(|| {
                    (
                        at(key),
                        format!("unknown field; expected one of: {}", FIELDS.join(", ")),
                    )
                });
            }
        }
        let case_id = match map.get("case_id") {
            None | Some(Value::Null) => {
                self.problems
                    .report(|| (at("case_id"), "is required".to_owned()));
                None
            }
            Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= MAX_ID_BYTES => {
                Some(id.clone())
            }
            Some(other) => {
                self.problems.report(|| {
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
                self.problems
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

    pub(super) fn datasets(&mut self, value: &Value) -> Option<Vec<Dataset>> {
        let items = self.problems.array(value, "datasets")?;
        if items.is_empty() {
            self.problems
                .push("datasets", "must contain at least one dataset");
            return None;
        }
        if items.len() > MAX_DATASETS {
            self.problems.push(
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
            let Some(map) = self.problems.object(item, &path, &["dataset_id", "cases"]) else {
                ok = false;
                continue;
            };
            let dataset_id = self
                .problems
                .required(map, &path, "dataset_id")
                .and_then(|v| self.id(v, &join(&path, "dataset_id")));
            if let Some(id) = &dataset_id
                && !dataset_ids.insert(id.clone())
            {
                self.problems.push(
                    join(&path, "dataset_id"),
                    format!("duplicate dataset_id `{id}`"),
                );
                ok = false;
            }
            let cases_path = join(&path, "cases");
            let cases = self
                .problems
                .required(map, &path, "cases")
                .and_then(|v| self.problems.array(v, &cases_path));
            let mut parsed_cases = Vec::new();
            if let Some(cases) = cases {
                if cases.is_empty() {
                    self.problems
                        .push(&cases_path, "must contain at least one case");
                    ok = false;
                }
                let mut case_ids = HashSet::with_capacity(cases.len());
                for (j, case) in cases.iter().enumerate() {
                    match self.case(case, &cases_path, j) {
                        Some(case) => {
                            if !case_ids.insert(case.case_id.clone()) {
                                self.problems.report(|| {
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

    pub(super) fn seeds(&mut self, value: &Value) -> Option<Vec<u64>> {
        let items = self.problems.array(value, "seeds")?;
        if items.is_empty() {
            self.problems
                .push("seeds", "must contain at least one seed");
            return None;
        }
        if items.len() > MAX_SEEDS {
            self.problems
                .push("seeds", format!("must contain at most {MAX_SEEDS} seeds"));
            return None;
        }
        let mut seeds = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match crate::model::u64_from_json(item) {
                Some(seed) if seen.insert(seed) => seeds.push(seed),
                Some(seed) => {
                    self.problems
                        .report(|| (format!("seeds[{i}]"), format!("duplicate seed {seed}")));
                    ok = false;
                }
                None => {
                    self.problems.report(|| {
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
}
