//! `builtin/panel`: several judges on the same output, aggregated by mean or majority,
//! each member's verdict kept. Also the resolution of components named inside params,
//! shared with the selectors.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::registry::ResolveError;
use super::{ComponentError, Judge, JudgeRequest, Judgment, Params, Registry, Resolved};
use crate::model::Usage;

/// Most members of a panel: each case costs one call per member.
pub(super) const MAX_PANEL_JUDGES: usize = 16;

/// Resolves the component named at param `key` (`"builtin/x"` or `{"name", "params",
/// "id"}`; `index` for an entry of a list param), reporting problems under that param's
/// path. Returns the id results name it by (`id`, else `name`) and the name.
pub(super) fn nested<T: ?Sized>(
    p: &mut Params<'_>,
    value: &Value,
    at: &str,
    resolve: impl Fn(&str, &Map<String, Value>) -> Result<Resolved<T>, ResolveError>,
) -> Option<(String, String, Arc<T>)> {
    let empty = Map::new();
    let (name, params, id) = match value {
        Value::String(name) => (name.as_str(), &empty, None),
        Value::Object(map) => {
            if let Some(key) = map
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "params" | "id"))
            {
                p.error(
                    &format!("{at}.{key}"),
                    "unknown field; expected one of: id, name, params",
                );
                return None;
            }
            let Some(name) = map.get("name").and_then(Value::as_str) else {
                p.error(&format!("{at}.name"), "is required (a component name)");
                return None;
            };
            let params = match map.get("params") {
                None | Some(Value::Null) => &empty,
                Some(Value::Object(params)) => params,
                Some(_) => {
                    p.error(&format!("{at}.params"), "must be an object");
                    return None;
                }
            };
            let id = match map.get("id") {
                None => None,
                Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
                Some(_) => {
                    p.error(&format!("{at}.id"), "must be a non-empty string");
                    return None;
                }
            };
            (name, params, id)
        }
        _ => {
            p.error(at, "must be a component name or {\"name\", \"params\"}");
            return None;
        }
    };
    match resolve(name, params) {
        Ok(resolved) => Some((
            id.unwrap_or_else(|| name.to_owned()),
            name.to_owned(),
            resolved.component,
        )),
        Err(ResolveError::Unknown { kind, known }) => {
            p.error(
                at,
                format!("unknown {kind} `{name}`; available: {}", known.join(", ")),
            );
            None
        }
        Err(ResolveError::Params(errors)) => {
            for e in errors {
                let path = if e.path.is_empty() {
                    format!("{at}.params")
                } else {
                    format!("{at}.params.{}", e.path)
                };
                p.error(&path, e.message);
            }
            None
        }
    }
}

pub(super) fn register(registry: &mut Registry) {
    registry.register_composite_judge("builtin/panel", "1", |registry, p| {
        let aggregate = match p.string("aggregate").as_deref() {
            None | Some("mean") => Aggregate::Mean,
            Some("majority") => Aggregate::Majority,
            Some(_) => {
                p.error("aggregate", "must be \"mean\" or \"majority\"");
                Aggregate::Mean
            }
        };
        let pass_threshold = p.f64_in("pass_threshold", 0.5, 0.0, 1.0);
        let mut members = Vec::new();
        match p.value("judges") {
            Some(Value::Array(items)) if (2..=MAX_PANEL_JUDGES).contains(&items.len()) => {
                let mut ids = std::collections::HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let at = format!("judges[{i}]");
                    let Some((id, name, judge)) =
                        nested(p, item, &at, |n, params| registry.judge(n, params))
                    else {
                        continue;
                    };
                    // One level only: a panel of panels multiplies calls per case.
                    if name == "builtin/panel" {
                        p.error(&at, "a panel member cannot be a panel");
                    } else if !ids.insert(id.clone()) {
                        p.error(&at, format!("duplicate id `{id}`; give each an \"id\""));
                    } else {
                        members.push((id, judge));
                    }
                }
            }
            Some(_) => p.error(
                "judges",
                format!("must be a list of 2 to {MAX_PANEL_JUDGES} judges"),
            ),
            None => p.error("judges", "is required (a list of judges)"),
        }
        Arc::new(Panel {
            members,
            aggregate,
            pass_threshold,
        })
    });
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    /// Score: the members' mean score; passes at `pass_threshold`.
    Mean,
    /// Score: the share of members that passed; passes with a strict majority.
    Majority,
}

/// Runs every member on the output concurrently. A member that fails fails the panel
/// (a verdict from part of the panel would be a different panel's verdict). A member
/// without a pass/fail verdict passes when its score reaches `pass_threshold`.
struct Panel {
    members: Vec<(String, Arc<dyn Judge>)>,
    aggregate: Aggregate,
    pass_threshold: f64,
}

#[async_trait]
impl Judge for Panel {
    /// Every member's estimate: they all judge every case.
    async fn estimate(
        &self,
        request: crate::components::EstimateRequest<'_>,
    ) -> Option<crate::components::Estimate> {
        let mut total: Option<crate::components::Estimate> = None;
        for (_, judge) in &self.members {
            if let Some(estimate) = judge.estimate(request).await {
                total.get_or_insert_with(Default::default).add(&estimate);
            }
        }
        total
    }

    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgment, ComponentError> {
        let verdicts =
            futures::future::join_all(self.members.iter().map(|(_, judge)| judge.judge(request)))
                .await;
        let mut usage = Usage::default();
        let mut members = Vec::with_capacity(verdicts.len());
        let mut scores = Vec::with_capacity(verdicts.len());
        let mut passes = 0usize;
        for ((id, _), verdict) in self.members.iter().zip(verdicts) {
            let j = verdict.map_err(|e| ComponentError {
                message: format!("panel member {id}: {}", e.message),
                retryable: e.retryable,
            })?;
            usage.add(&j.usage);
            let passed = j.passed.unwrap_or(j.score >= self.pass_threshold);
            passes += usize::from(passed);
            scores.push(j.score);
            members.push(json!({
                "id": id, "score": j.score, "passed": passed,
                "rationale": j.rationale, "details": j.details,
            }));
        }
        let n = scores.len().max(1) as f64;
        let (score, passed) = match self.aggregate {
            Aggregate::Mean => {
                let mean = scores.iter().sum::<f64>() / n;
                (mean, mean >= self.pass_threshold)
            }
            Aggregate::Majority => (passes as f64 / n, passes * 2 > scores.len()),
        };
        Ok(Judgment {
            score,
            passed: Some(passed),
            rationale: Some(format!(
                "{passes} of {} judges passed the output",
                scores.len()
            )),
            details: json!({
                "aggregate": match self.aggregate {
                    Aggregate::Mean => "mean",
                    Aggregate::Majority => "majority",
                },
                "members": members,
            }),
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::CallContext;
    use crate::model::Case;

    fn resolve(params: Value) -> Result<Arc<dyn Judge>, ResolveError> {
        let registry = Registry::builtin();
        let params = params.as_object().cloned().unwrap_or_default();
        registry
            .judge("builtin/panel", &params)
            .map(|r| r.component)
    }

    #[tokio::test]
    async fn mean_and_majority_by_hand() {
        let members = json!([
            {"id": "paris", "name": "builtin/rubric_keywords", "params": {"keywords": ["Paris"]}},
            {"id": "both", "name": "builtin/rubric_keywords",
             "params": {"keywords": ["Paris", "France"]}},
            {"id": "rome", "name": "builtin/rubric_keywords", "params": {"keywords": ["Rome"]}}
        ]);
        let case = Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: Value::Null,
            metadata: Value::Null,
        };
        let parsed = json!("Paris");
        let request = JudgeRequest {
            dataset_id: "d",
            case: &case,
            parsed: &parsed,
            seed: 0,
            transcript: None,
            ctx: CallContext::detached(),
        };
        // Scores 1, 0.5, 0: mean 0.5 (passes at 0.5); passed 1 of 3: majority fails.
        let mean = resolve(json!({"judges": members})).unwrap();
        let j = mean.judge(request).await.unwrap();
        assert_eq!(j.score, 0.5);
        assert_eq!(j.passed, Some(true));
        assert_eq!(j.details["members"][1]["id"], "both");
        assert_eq!(j.details["members"][1]["score"], 0.5);
        let majority = resolve(json!({"judges": members, "aggregate": "majority"})).unwrap();
        let j = majority.judge(request).await.unwrap();
        assert!((j.score - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(j.passed, Some(false));
    }

    #[test]
    fn bad_members_are_named() {
        let Err(ResolveError::Params(errors)) = resolve(json!({"judges": [
            "builtin/nope",
            {"name": "builtin/rubric_keywords", "params": {"keywords": 3}},
            {"name": "builtin/panel", "params": {}}
        ]})) else {
            panic!("expected param errors");
        };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"judges[0]"), "{errors:?}");
        assert!(paths.contains(&"judges[1].params.keywords"), "{errors:?}");
        assert!(paths.contains(&"judges[2].params.judges"), "{errors:?}");
        assert!(resolve(json!({"judges": ["builtin/rubric_keywords"]})).is_err());
    }
}
