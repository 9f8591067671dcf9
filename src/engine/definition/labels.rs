//! Checking a run's labels: `name`, `tags` and `metadata`, what a person calls a run.
//! They are not part of the run id.

use serde_json::{Map, Value};

use super::Checker;
use crate::engine::RUN_ID_PREFIX;
use crate::model::check::id_problem;
use crate::model::{RunLabels, canonical_json};

/// Longest run name, in bytes.
pub(super) const MAX_NAME_BYTES: usize = 200;
/// Most tags on one run.
pub(super) const MAX_TAGS: usize = 32;
/// Longest tag, in bytes.
pub(super) const MAX_TAG_BYTES: usize = 64;
/// Largest `metadata`, as canonical JSON.
pub(super) const MAX_METADATA_BYTES: usize = 16 * 1024;

impl Checker<'_> {
    pub(super) fn labels(&mut self, map: &Map<String, Value>) -> RunLabels {
        let mut labels = RunLabels::default();
        if let Some(value) = map.get("name").filter(|v| !v.is_null())
            && let Some(name) = self.problems.id_at_most(value, "name", MAX_NAME_BYTES)
        {
            if name.starts_with(RUN_ID_PREFIX) {
                self.problems.push(
                    "name",
                    format!("must not start with `{RUN_ID_PREFIX}` (run ids do)"),
                );
            } else {
                labels.name = Some(name.to_owned());
            }
        }
        if let Some(value) = map.get("tags").filter(|v| !v.is_null())
            && let Some(items) = self.problems.array(value, "tags")
        {
            if items.len() > MAX_TAGS {
                self.problems
                    .push("tags", format!("at most {MAX_TAGS} tags"));
            }
            for (i, item) in items.iter().enumerate().take(MAX_TAGS) {
                let path = format!("tags[{i}]");
                let Some(tag) = self.problems.id_at_most(item, &path, MAX_TAG_BYTES) else {
                    continue;
                };
                if tag.contains(['"', '\\']) {
                    self.problems.push(path, "must not contain `\"` or `\\`");
                } else if labels.tags.iter().any(|t| t == tag) {
                    self.problems.push(path, format!("duplicate tag `{tag}`"));
                } else {
                    labels.tags.push(tag.to_owned());
                }
            }
        }
        if let Some(value) = map.get("metadata").filter(|v| !v.is_null()) {
            match value.as_object() {
                Some(_) if canonical_json(value).len() > MAX_METADATA_BYTES => {
                    self.problems.push(
                        "metadata",
                        format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
                    );
                }
                Some(object) => labels.metadata = object.clone(),
                None => self.problems.push("metadata", "must be an object"),
            }
        }
        labels
    }
}

/// A run's name as a query gives it (`?name=`): the same rules as in a definition.
pub fn check_run_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("must be at most {MAX_NAME_BYTES} bytes"));
    }
    id_problem(name).map_or(Ok(()), |m| Err(m.to_owned()))
}

/// A tag as a query gives it (`?tag=`).
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if tag.len() > MAX_TAG_BYTES {
        return Err(format!("must be at most {MAX_TAG_BYTES} bytes"));
    }
    if tag.contains(['"', '\\']) {
        return Err("must not contain `\"` or `\\`".into());
    }
    id_problem(tag).map_or(Ok(()), |m| Err(m.to_owned()))
}
