//! A definition's body read without building its cases as one JSON tree: the body is
//! split into raw slices first (`RawValue` borrows, it does not copy), and each inline
//! case is parsed on its own, checked and ingested into its dataset's revision (see
//! [`Ingest`]) before the next. The definition keeps `{"dataset_id", "revision"}` in
//! place of the cases. A request costs its body plus a slice reference per case.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::ingest::{Ingest, Ingested};
use crate::model::Problems;
use crate::model::Revision;

/// A definition body with its inline datasets taken out.
pub(super) struct SplitDefinition {
    /// The definition; each inline dataset is `{"dataset_id", "revision", ...}` now.
    pub value: Value,
    /// The inline datasets' revisions, with the position of their dataset.
    pub inline: Vec<(usize, Ingested)>,
    /// Problems of the inline cases (paths like `datasets[0].cases[3].input`).
    pub problems: Problems,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SplitError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("spooling the cases failed: {0}")]
    Spool(#[from] std::io::Error),
}

/// Reads a definition body. Only a body that is not JSON fails; any other problem is
/// left to the definition's checks (or listed in `problems`, for cases).
pub(super) fn split_definition(body: &[u8]) -> Result<SplitDefinition, SplitError> {
    let mut split = SplitDefinition {
        value: Value::Null,
        inline: Vec::new(),
        problems: Problems::default(),
    };
    let text = std::str::from_utf8(body).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format!("the body is not UTF-8: {e}"))
    })?;
    let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
        // Malformed JSON fails here without building a tree of everything before the
        // error (a broken 9 MiB body used to cost 200 MiB).
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        split.value = serde_json::from_str(text)?;
        return Ok(split);
    };
    let mut object = Map::new();
    for (key, raw) in fields {
        let value = if key == "datasets" {
            datasets(raw, &mut split)?
        } else {
            parse_value(raw, &key, &mut split.problems)?
        };
        object.insert(key, value);
    }
    split.value = Value::Object(object);
    Ok(split)
}

fn datasets(raw: &RawValue, split: &mut SplitDefinition) -> Result<Value, SplitError> {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        return Ok(serde_json::from_str(raw.get())?);
    };
    let mut datasets = Vec::with_capacity(items.len());
    for (position, item) in items.into_iter().enumerate() {
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(item.get()) else {
            datasets.push(serde_json::from_str(item.get())?);
            continue;
        };
        let mut dataset = Map::new();
        let mut cases = None;
        for (key, raw) in fields {
            if key == "cases"
                && let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(raw.get())
            {
                cases = Some(list);
                continue;
            }
            let at = format!("datasets[{position}].{key}");
            dataset.insert(key, parse_value(raw, &at, &mut split.problems)?);
        }
        if let Some(cases) = cases {
            let path = format!("datasets[{position}].cases");
            if dataset.contains_key("revision") {
                split.problems.push(
                    format!("datasets[{position}].revision"),
                    "give either `cases` or a `revision`, not both",
                );
            }
            let revision = match ingest(&cases, &path, &mut split.problems)? {
                Some(done) => {
                    let revision = done.revision.to_string();
                    split.inline.push((position, done));
                    revision
                }
                // Invalid cases are listed already; a stand-in keeps the definition's
                // checks from also calling the revision missing.
                None => Revision::from_digest(&[0; 32]).to_string(),
            };
            dataset.insert("revision".to_owned(), Value::String(revision));
        }
        datasets.push(Value::Object(dataset));
    }
    Ok(Value::Array(datasets))
}

/// A raw value as JSON. A number JSON can write but a 64-bit float cannot hold (`1e400`)
/// is a problem at its path, as in any other field; other errors are the body's.
fn parse_value(raw: &RawValue, at: &str, problems: &mut Problems) -> Result<Value, SplitError> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    match serde_path_to_error::deserialize::<_, Value>(&mut deserializer) {
        Ok(value) => Ok(value),
        Err(e) if e.inner().to_string().starts_with("number out of range") => {
            let inner = e.path().to_string();
            let path = if inner == "." {
                at.to_owned()
            } else {
                format!("{at}.{inner}")
            };
            problems.push(path, OUT_OF_RANGE);
            Ok(Value::Null)
        }
        Err(e) => Err(e.into_inner().into()),
    }
}

/// What a number no 64-bit float holds is told (here and for any JSON body).
pub(super) const OUT_OF_RANGE: &str =
    "is out of range: numbers must be finite 64-bit floats (|x| < 1.8e308)";

fn ingest(
    cases: &[&RawValue],
    path: &str,
    problems: &mut Problems,
) -> Result<Option<Ingested>, SplitError> {
    let name = path.to_owned();
    let mut ingest = Ingest::new(move |index| format!("{name}[{index}]"))?;
    for (index, raw) in cases.iter().enumerate() {
        let at = |key: &str| {
            if key.is_empty() {
                format!("{path}[{index}]")
            } else {
                format!("{path}[{index}].{key}")
            }
        };
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(case) => ingest.push(case, index as u64, problems, &at)?,
            // Valid JSON that a 64-bit float cannot hold (`1e400`).
            Err(_) => problems.report(|| (at(""), OUT_OF_RANGE.to_owned())),
        }
    }
    Ok(ingest.finish(problems, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_cases_become_a_revision_and_the_rest_stays() {
        let body = br#"{"seeds": [1], "datasets": [
            {"dataset_id": "a", "cases": [{"case_id": "1", "input": "x"}]},
            {"dataset_id": "b", "revision": "sha256:00"},
            "odd"
        ], "generation": {"x": [1, 2]}}"#;
        let split = split_definition(body).unwrap();
        assert!(split.problems.is_empty());
        assert_eq!(split.inline.len(), 1);
        let (position, done) = &split.inline[0];
        assert_eq!((*position, done.case_count), (0, 1));
        let datasets = &split.value["datasets"];
        assert_eq!(datasets[0]["revision"], done.revision.to_string());
        assert!(datasets[0].get("cases").is_none());
        assert_eq!(datasets[1]["revision"], "sha256:00");
        assert_eq!(datasets[2], "odd");
        assert_eq!(split.value["generation"]["x"][1], 2);
    }

    #[test]
    fn case_problems_carry_definition_paths() {
        let body = br#"{"datasets": [{"dataset_id": "a", "cases": [
            {"case_id": "1", "input": 1e400}, {"case_id": "1", "input": 2}, {"input": 3}
        ]}]}"#;
        let split = split_definition(body).unwrap();
        let listed: Vec<String> = split
            .problems
            .into_details()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            listed,
            ["datasets[0].cases[0]", "datasets[0].cases[2].case_id"]
        );
        assert!(split.inline.is_empty());
        assert!(split_definition(b"{").is_err());
        assert_eq!(
            split_definition(b"[1]").unwrap().value,
            serde_json::json!([1])
        );
        let split = split_definition(br#"{"failure_policy": {"max_ratio": 1e400}}"#).unwrap();
        let listed = split.problems.into_details();
        assert_eq!(listed[0].path, "failure_policy.max_ratio");
    }
}
