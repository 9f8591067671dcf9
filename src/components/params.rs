//! Typed, validated component params, collecting every problem instead of stopping at one.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A param problem; `path` is relative to the component's `params` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub path: String,
    pub message: String,
}

/// Reads params by key; every read key is marked known, [`Params::finish`] reports the rest.
pub struct Params<'a> {
    map: &'a Map<String, Value>,
    known: BTreeSet<&'static str>,
    errors: Vec<ParamError>,
}

impl<'a> Params<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Params {
            map,
            known: BTreeSet::new(),
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ParamError {
            path: key.to_owned(),
            message: message.into(),
        });
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

    pub fn f64_in(&mut self, key: &'static str, default: f64, min: f64, max: f64) -> f64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_f64() {
                Some(x) if (min..=max).contains(&x) => x,
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
        match regex::Regex::new(&pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                self.error(key, format!("is not a valid regular expression: {e}"));
                None
            }
        }
    }

    /// Ends reading: unknown keys become errors; returns all errors, or `value`.
    pub fn finish<T>(mut self, value: T) -> Result<T, Vec<ParamError>> {
        for key in self.map.keys() {
            if !self.known.contains(key.as_str()) {
                let expected = if self.known.is_empty() {
                    "this component takes no params".to_owned()
                } else {
                    let names: Vec<&str> = self.known.iter().copied().collect();
                    format!("unknown param; expected one of: {}", names.join(", "))
                };
                self.errors.push(ParamError {
                    path: key.clone(),
                    message: expected,
                });
            }
        }
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}
