//! Checking the data of a definition: datasets (inline cases or a stored revision),
//! their cases, and seeds. Runs once per case of a request that may hold millions:
//! problems are described lazily.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::Checker;
use super::types::{Dataset, DatasetCases, MAX_DATASETS, MAX_SEEDS};
use crate::engine::datasets::check_case;
use crate::model::check::join;
use crate::model::{Case, Revision};

impl Checker<'_> {
    /// The cases of the list at `cases_path`, each checked (see [`check_case`]) and
    /// their ids unique. Runs once per case: a path is only built for a listed problem.
    fn cases(&mut self, items: &[Value], cases_path: &str) -> Option<Vec<Case>> {
        if items.is_empty() {
            self.problems
                .push(cases_path, "must contain at least one case");
            return None;
        }
        let mut cases = Vec::with_capacity(items.len());
        let mut case_ids = HashSet::with_capacity(items.len());
        let mut ok = true;
        for (j, item) in items.iter().enumerate() {
            let at = |key: &str| {
                if key.is_empty() {
                    format!("{cases_path}[{j}]")
                } else {
                    format!("{cases_path}[{j}].{key}")
                }
            };
            let Some(case) = check_case(item.clone(), &mut self.problems, &at) else {
                ok = false;
                continue;
            };
            if !case_ids.insert(case.case_id.clone()) {
                self.problems.report(|| {
                    (
                        at("case_id"),
                        format!("duplicate case_id `{}` in dataset", case.case_id),
                    )
                });
                ok = false;
            }
            cases.push(case);
        }
        ok.then_some(cases)
    }

    /// A stored dataset's `revision` and `case_count`, either may be absent.
    fn stored(&mut self, map: &Map<String, Value>, path: &str) -> Option<DatasetCases> {
        let revision = match map.get("revision").filter(|v| !v.is_null()) {
            None => Some(None),
            Some(value) => match value.as_str().map(str::parse::<Revision>) {
                Some(Ok(revision)) => Some(Some(revision)),
                _ => {
                    self.problems.push(
                        join(path, "revision"),
                        "must be `sha256:` followed by 64 lowercase hex digits",
                    );
                    None
                }
            },
        };
        let case_count = match map.get("case_count").filter(|v| !v.is_null()) {
            None => Some(None),
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 => Some(Some(n)),
                _ => {
                    self.problems
                        .push(join(path, "case_count"), "must be a positive integer");
                    None
                }
            },
        };
        Some(DatasetCases::Stored {
            revision: revision?,
            case_count: case_count?,
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
            let known = ["dataset_id", "cases", "revision", "case_count"];
            let Some(map) = self.problems.object(item, &path, &known) else {
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
            let cases = match map.get("cases").filter(|v| !v.is_null()) {
                Some(cases) => {
                    for key in ["revision", "case_count"] {
                        if map.contains_key(key) {
                            self.problems.push(
                                join(&path, key),
                                "give either `cases` or a stored `revision`, not both",
                            );
                        }
                    }
                    let cases_path = join(&path, "cases");
                    self.problems
                        .array(cases, &cases_path)
                        .and_then(|items| self.cases(items, &cases_path))
                        .map(DatasetCases::Inline)
                }
                None => self.stored(map, &path),
            };
            match (dataset_id, cases) {
                (Some(dataset_id), Some(cases)) => datasets.push(Dataset { dataset_id, cases }),
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
