//! The one toolkit for checking client input: problems carry the JSON path they are at
//! (`evaluation.metrics[2].params.k`), every problem of a request is collected (not just
//! the first), and their number is bounded. The experiment definition, the
//! instrumentation config and component params are all checked with it.
//!
//! A 64 MiB body of empty cases has tens of millions of problems; describing each one
//! (a path and a message string) would cost far more than the request. Past the cap,
//! problems are only counted, and call sites in loops over client-sized collections
//! describe a problem lazily ([`Problems::report`]) so nothing is formatted for it.

use serde::Serialize;
use serde_json::{Map, Value};

/// One problem in a request: where (`datasets[0].cases[2].case_id`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Most entries in the `details` of one error response. With more problems, the first
/// `MAX_DETAILS - 1` are listed and the last entry (path `""`) counts the rest.
pub(crate) const MAX_DETAILS: usize = 100;

/// The problems found in one input, at most `cap` of them described.
#[derive(Debug)]
pub struct Problems {
    listed: Vec<FieldError>,
    /// Problems found after `listed` was full.
    omitted: usize,
    cap: usize,
}

impl Default for Problems {
    fn default() -> Self {
        Problems::with_cap(MAX_DETAILS)
    }
}

impl Problems {
    /// Problems whose details list at most `cap` entries (the last one counting the
    /// rest when there are more).
    pub fn with_cap(cap: usize) -> Self {
        Problems {
            listed: Vec::new(),
            omitted: 0,
            cap: cap.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Every problem recorded so far, described or only counted: comparing it before and
    /// after checking a part tells whether that part was valid.
    pub fn count(&self) -> usize {
        self.listed.len() + self.omitted
    }

    /// Records a problem whose path and message are already built.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.report(|| (path.into(), message.into()));
    }

    /// Records a problem, describing it only while the list has room.
    pub fn report(&mut self, describe: impl FnOnce() -> (String, String)) {
        if self.listed.len() < self.cap {
            let (path, message) = describe();
            self.listed.push(FieldError { path, message });
        } else {
            self.omitted += 1;
        }
    }

    /// Counts `n` more problems without describing them (found where listing them all
    /// would cost more than counting).
    pub fn omit(&mut self, n: u64) {
        self.omitted = self
            .omitted
            .saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
    }

    /// The details of an error response: at most [`MAX_DETAILS`] entries.
    pub fn into_details(self) -> Vec<FieldError> {
        let shown = self.cap - 1;
        self.into_details_with(|more| {
            format!(
                "and {more} more problem{} not listed (at most {shown} are)",
                if more == 1 { "" } else { "s" },
            )
        })
    }

    /// The listed problems; past the cap the last entry (path `""`) is `summary` of the
    /// number not listed.
    pub fn into_details_with(mut self, summary: impl FnOnce(usize) -> String) -> Vec<FieldError> {
        if self.omitted > 0 {
            let spilled = self.listed.split_off(self.cap - 1);
            self.listed.push(FieldError {
                path: String::new(),
                message: summary(self.omitted + spilled.len()),
            });
        }
        self.listed
    }

    /// The object at `path`, with unknown keys reported.
    pub fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(map) = value.as_object() else {
            self.push(path, format!("must be an object, got {}", type_name(value)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.report(|| {
                    (
                        join(path, key),
                        format!("unknown field; expected one of: {}", known.join(", ")),
                    )
                });
            }
        }
        Some(map)
    }

    /// `map[key]`, reported as required when absent or null.
    pub fn required<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let value = field(map, key);
        if value.is_none() {
            self.push(join(path, key), "is required");
        }
        value
    }

    /// A string that is not blank.
    pub fn string<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        match value.as_str() {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.push(path, "must not be empty");
                None
            }
            None => {
                self.push(path, format!("must be a string, got {}", type_name(value)));
                None
            }
        }
    }

    /// An id (dataset, case, component): not blank, at most `max_bytes` long, and free
    /// of characters that hide or reorder what a person reads ([`id_problem`]).
    pub fn id_at_most<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        max_bytes: usize,
    ) -> Option<&'v str> {
        let id = self.string_at_most(value, path, max_bytes)?;
        match id_problem(id) {
            Some(message) => {
                self.push(path, message);
                None
            }
            None => Some(id),
        }
    }

    /// A string that is not blank and at most `max_bytes` long.
    pub fn string_at_most<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        max_bytes: usize,
    ) -> Option<&'v str> {
        match value.as_str() {
            Some(s) if s.len() > max_bytes => {
                self.push(path, format!("must be at most {max_bytes} bytes"));
                None
            }
            _ => self.string(value, path),
        }
    }

    pub fn array<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Vec<Value>> {
        let items = value.as_array();
        if items.is_none() {
            self.push(path, format!("must be an array, got {}", type_name(value)));
        }
        items
    }
}

/// Why `id` cannot name anything, if it cannot: control characters (newlines, NUL) and
/// bidirectional formatting characters (U+202E and kin) make an id print differently from
/// what it is, in logs, tables, terminals and file names.
pub(crate) fn id_problem(id: &str) -> Option<&'static str> {
    id.chars().find_map(|c| {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            Some("must not contain control characters (newlines, tabs, NUL)")
        } else if matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            Some("must not contain bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)")
        } else {
            None
        }
    })
}

/// The path of `key` inside the object at `path` (the root is `""`).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A present, non-null field.
pub(crate) fn field<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// What a JSON value is, for messages (`must be a string, got a number`).
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_at_most_max_details_and_counts_the_rest() {
        let mut problems = Problems::default();
        let mut described = 0;
        for i in 0..1_000 {
            problems.report(|| {
                described += 1;
                (format!("cases[{i}]"), "is required".to_owned())
            });
        }
        assert_eq!(described, MAX_DETAILS, "nothing is built past the cap");
        assert_eq!(problems.count(), 1_000);
        let details = problems.into_details();
        assert_eq!(details.len(), MAX_DETAILS);
        assert_eq!(details[98].path, "cases[98]");
        assert_eq!(details[99].path, "");
        assert_eq!(
            details[99].message,
            "and 901 more problems not listed (at most 99 are)"
        );

        let mut few = Problems::default();
        few.push("a", "b");
        assert_eq!(few.into_details().len(), 1);
    }

    #[test]
    fn readers_report_with_the_path() {
        let mut problems = Problems::default();
        let value = json!({"a": "", "b": 3, "c": "x".repeat(10), "d": null, "e": 1});
        let map = problems
            .object(&value, "root", &["a", "b", "c", "d"])
            .unwrap();
        assert_eq!(problems.string(&map["a"], "root.a"), None);
        assert_eq!(problems.string(&map["b"], "root.b"), None);
        assert_eq!(problems.string_at_most(&map["c"], "root.c", 5), None);
        assert_eq!(problems.required(map, "root", "d"), None);
        assert!(problems.array(&map["b"], "root.b").is_none());
        assert!(problems.object(&json!([]), "", &[]).is_none());
        let details: Vec<(String, String)> = problems
            .into_details()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect();
        let expected = [
            ("root.e", "unknown field; expected one of: a, b, c, d"),
            ("root.a", "must not be empty"),
            ("root.b", "must be a string, got a number"),
            ("root.c", "must be at most 5 bytes"),
            ("root.d", "is required"),
            ("root.b", "must be an array, got a number"),
            ("", "must be an object, got an array"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(details, expected);
    }
}
