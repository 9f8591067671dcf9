//! Typed, validated component params, collecting every problem instead of stopping at
//! one (with the shared toolkit of [`crate::model::check`]). Problem paths are relative
//! to the component's `params` object.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::model::{FieldError, Problems};

/// Most problems listed for one component's params; more are counted in one last entry
/// (path `""`) so a params object with a million unknown keys costs no million messages.
pub(super) const MAX_PARAM_ERRORS: usize = 50;
/// Largest compiled regular expression a param may ask for (`regex` size limit), bytes.
pub(super) const MAX_REGEX_BYTES: usize = 1024 * 1024;
/// Largest magnitude a float param may take unless its reader says otherwise: JSON
/// carries numbers up to 1.8e308, whose arithmetic overflows to infinity.
pub(crate) const MAX_FLOAT: f64 = 1e15;

/// Reads params by key; every read key is marked known, [`Params::finish`] reports the rest.
pub struct Params<'a> {
    map: &'a Map<String, Value>,
    known: BTreeSet<&'static str>,
    problems: Problems,
}

impl<'a> Params<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Params {
            map,
            known: BTreeSet::new(),
            // The last entry counts what is not listed.
            problems: Problems::with_cap(MAX_PARAM_ERRORS + 1),
        }
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(key, message);
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The raw value of a param (`None` when absent or null), for structured params the
    /// typed readers don't cover; the caller validates it and reports through [`Params::error`].
    pub fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key)
    }

    /// A number in `min..=max`; the bounds should be finite (keep them within
    /// ±[`MAX_FLOAT`]), so nothing computed from the value overflows.
    pub fn f64_in(&mut self, key: &'static str, default: f64, min: f64, max: f64) -> f64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && (min..=max).contains(&x) => x,
                Some(_) => {
                    self.error(key, format!("must be between {min} and {max}"));
                    default
                }
                None => {
                    self.error(key, "must be a number");
                    default
                }
            },
        }
    }

    pub fn u64_in(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_u64() {
                Some(x) if (min..=max).contains(&x) => x,
                _ => {
                    self.error(key, format!("must be an integer between {min} and {max}"));
                    default
                }
            },
        }
    }

    pub fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.error(key, "must be true or false");
                default
            }
        }
    }

    pub fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(key, "must be a string");
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &'static str) -> String {
        match self.get(key) {
            None => {
                self.error(key, "is required");
                String::new()
            }
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                self.error(key, "must be a non-empty string");
                String::new()
            }
        }
    }

    pub fn string_list(&mut self, key: &'static str) -> Option<Vec<String>> {
        let value = self.get(key)?;
        let list = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        if list.is_none() {
            self.error(key, "must be a list of strings");
        }
        list
    }

    /// A regular expression param, compiled (an invalid pattern is an error).
    pub fn regex(&mut self, key: &'static str, required: bool) -> Option<regex::Regex> {
        let pattern = if required {
            Some(self.required_string(key)).filter(|s| !s.is_empty())
        } else {
            self.string(key)
        }?;
        // The size limit bounds the memory and compile time a pattern can ask for
        // (`a{1000}{1000}` would otherwise compile to gigabytes).
        match regex::RegexBuilder::new(&pattern)
            .size_limit(MAX_REGEX_BYTES)
            .dfa_size_limit(MAX_REGEX_BYTES)
            .build()
        {
            Ok(re) => Some(re),
            Err(regex::Error::CompiledTooBig(_)) => {
                self.error(
                    key,
                    format!("is too complex: it compiles to more than {MAX_REGEX_BYTES} bytes"),
                );
                None
            }
            Err(e) => {
                self.error(key, format!("is not a valid regular expression: {e}"));
                None
            }
        }
    }

    /// Ends reading: unknown keys become errors; returns all errors, or `value`.
    pub fn finish<T>(mut self, value: T) -> Result<T, Vec<FieldError>> {
        let expected = if self.known.is_empty() {
            "this component takes no params".to_owned()
        } else {
            let names: Vec<&str> = self.known.iter().copied().collect();
            format!("unknown param; expected one of: {}", names.join(", "))
        };
        for key in self.map.keys() {
            if !self.known.contains(key.as_str()) {
                self.problems.report(|| (key.clone(), expected.clone()));
            }
        }
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.problems.into_details_with(|more| {
                format!("and {more} more problems in these params not listed")
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn floats_must_be_finite_and_in_range() {
        let map = params(json!({"a": 1e300, "b": 0.5, "c": "x"}));
        let mut p = Params::new(&map);
        assert_eq!(p.f64_in("a", 1.0, 0.0, MAX_FLOAT), 1.0);
        assert_eq!(p.f64_in("b", 1.0, 0.0, 1.0), 0.5);
        p.f64_in("c", 1.0, 0.0, 1.0);
        let errors = p.finish(()).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, "a");
        assert_eq!(errors[1].path, "c");
    }

    #[test]
    fn unknown_keys_are_listed_up_to_the_cap() {
        let map: Map<String, Value> = (0..10_000).map(|i| (format!("k{i}"), json!(1))).collect();
        let mut p = Params::new(&map);
        p.bool("flag", false);
        let errors = p.finish(()).unwrap_err();
        assert_eq!(errors.len(), MAX_PARAM_ERRORS + 1);
        let last = errors.last().unwrap();
        assert_eq!(last.path, "");
        assert!(last.message.contains("9950 more"), "{}", last.message);
    }

    #[test]
    fn oversized_regexes_are_rejected() {
        let map = params(json!({"pattern": "(?:a{1000}){1000}", "ok": "^a+$"}));
        let mut p = Params::new(&map);
        assert!(p.regex("pattern", true).is_none());
        assert!(p.regex("ok", true).is_some());
        let errors = p.finish(()).unwrap_err();
        assert!(errors[0].message.contains("too complex"), "{errors:?}");
    }
}
