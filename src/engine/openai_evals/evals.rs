//! Evals: create (data source config and testing criteria checked), get, list, update
//! (name and metadata), delete (with their runs).

use serde_json::{Map, Value, json};

use super::{EngineError, Listing, OpenAiEvals, Page, invalid, now_secs};
use crate::components::openai_evals::{parse_grader, resolve_model};
use crate::model::{EvalKind, EvalObject, FieldError};

/// OpenAI's metadata limits: 16 pairs, keys ≤ 64 and values ≤ 512 characters.
pub(super) fn check_metadata(value: Option<&Value>, path: &str) -> Result<Value, EngineError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Object(map)) => {
            if map.len() > 16 {
                return Err(invalid(path, "at most 16 key-value pairs"));
            }
            for (k, v) in map {
                let ok =
                    k.chars().count() <= 64 && v.as_str().is_some_and(|s| s.chars().count() <= 512);
                if !ok {
                    return Err(invalid(
                        format!("{path}.{k}"),
                        "keys are at most 64 characters, values strings of at most 512",
                    ));
                }
            }
            Ok(Value::Object(map.clone()))
        }
        Some(_) => Err(invalid(path, "must be an object of strings")),
    }
}

pub(super) fn check_name(value: Option<&Value>, default: &str) -> Result<String, EngineError> {
    match value {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) if s.len() <= 256 => Ok(s.clone()),
        Some(_) => Err(invalid("name", "must be a string of at most 256 bytes")),
    }
}

const MAX_CRITERIA: usize = 32;

impl OpenAiEvals {
    pub async fn create_eval(&self, body: &Value) -> Result<Value, EngineError> {
        let Some(map) = body.as_object() else {
            return Err(invalid("", "the body must be a JSON object"));
        };
        let config = map
            .get("data_source_config")
            .ok_or_else(|| invalid("data_source_config", "is required"))?;
        let data_source_config = self.data_source_config(config)?;
        let criteria = map
            .get("testing_criteria")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("testing_criteria", "must be a list of graders"))?;
        if criteria.is_empty() || criteria.len() > MAX_CRITERIA {
            return Err(invalid(
                "testing_criteria",
                format!("must hold 1 to {MAX_CRITERIA} graders"),
            ));
        }
        let mut problems = Vec::new();
        for (i, criterion) in criteria.iter().enumerate() {
            let path = format!("testing_criteria[{i}]");
            if let Some(grader) = parse_grader(criterion, &path, &mut problems) {
                self.check_grader_setup(&grader, &path, &mut problems);
            }
        }
        if !problems.is_empty() {
            return Err(EngineError::Invalid(problems));
        }
        let metadata = super::evals::check_metadata(map.get("metadata"), "metadata")?;
        let id = EvalKind::Eval.new_id();
        let created_at = now_secs();
        // Each criterion answers with an `id` of its own, as OpenAI's do.
        let testing_criteria: Vec<Value> = criteria
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if let Some(obj) = c.as_object_mut() {
                    let name = obj
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    obj.entry("id").or_insert_with(|| {
                        json!(format!("{name}-{}", uuid::Uuid::new_v4().simple()))
                    });
                }
                c
            })
            .collect();
        let body = json!({
            "object": "eval", "id": id, "created_at": created_at,
            "name": check_name(map.get("name"), "")?,
            "metadata": metadata,
            "data_source_config": data_source_config,
            "testing_criteria": testing_criteria,
        });
        self.engine
            .store()
            .insert_eval_object(&EvalObject {
                kind: EvalKind::Eval,
                id,
                parent_id: None,
                status: None,
                created_at,
                body: body.clone(),
                content: None,
            })
            .await?;
        Ok(body)
    }

    /// Model graders need a model the server can reach, python graders a sandbox: said
    /// at creation rather than when a run fails.
    fn check_grader_setup(
        &self,
        grader: &crate::components::openai_evals::Grader,
        path: &str,
        problems: &mut Vec<FieldError>,
    ) {
        for model in grader.models() {
            if let Err(message) = resolve_model(
                self.engine.registry(),
                model,
                self.config.default_provider.as_deref(),
            ) {
                problems.push(FieldError {
                    path: format!("{path}.model"),
                    message,
                });
            }
        }
        if grader.runs_python() && self.config.sandbox.is_none() {
            problems.push(FieldError {
                path: format!("{path}.type"),
                message: "python graders run in a code sandbox and this server has none that \
                          runs Python: start it with --sandbox local (or a remote sandbox)"
                    .into(),
            });
        }
    }

    fn data_source_config(&self, config: &Value) -> Result<Value, EngineError> {
        let path = "data_source_config";
        match config.get("type").and_then(Value::as_str) {
            Some("custom") => {
                let schema = config
                    .get("item_schema")
                    .filter(|s| s.is_object())
                    .ok_or_else(|| {
                        invalid(
                            format!("{path}.item_schema"),
                            "must be a JSON Schema object",
                        )
                    })?;
                if serde_json::to_vec(schema).map_or(usize::MAX, |b| b.len()) > 64 * 1024 {
                    return Err(invalid(format!("{path}.item_schema"), "at most 64 KiB"));
                }
                jsonschema::validator_for(schema).map_err(|e| {
                    invalid(
                        format!("{path}.item_schema"),
                        format!("is not a valid JSON Schema: {e}"),
                    )
                })?;
                let include_sample = match config.get("include_sample_schema") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(invalid(
                            format!("{path}.include_sample_schema"),
                            "must be a boolean",
                        ));
                    }
                };
                let mut properties = Map::new();
                properties.insert("item".into(), schema.clone());
                let mut required = vec![json!("item")];
                if include_sample {
                    properties.insert("sample".into(), sample_schema());
                    required.push(json!("sample"));
                }
                Ok(json!({
                    "type": "custom",
                    "schema": {"type": "object", "properties": properties, "required": required},
                }))
            }
            Some(other @ ("logs" | "stored_completions")) => Err(invalid(
                format!("{path}.type"),
                format!(
                    "`{other}` reads completions stored at OpenAI, which Themis does not have: \
                     use `custom` with an item_schema, and pass your data as `jsonl` \
                     (file_content or an uploaded file) or generate it with `completions`"
                ),
            )),
            _ => Err(invalid(format!("{path}.type"), "must be `custom`")),
        }
    }

    pub async fn get_eval(&self, id: &str) -> Result<Value, EngineError> {
        Ok(self.get(EvalKind::Eval, id).await?.body)
    }

    pub async fn list_evals(&self, page: &Page) -> Result<Listing, EngineError> {
        let (objects, has_more) = self.page(EvalKind::Eval, None, None, page).await?;
        Ok(Listing {
            data: objects.into_iter().map(|o| o.body).collect(),
            has_more,
        })
    }

    pub async fn update_eval(&self, id: &str, update: &Value) -> Result<Value, EngineError> {
        let object = self.get(EvalKind::Eval, id).await?;
        let Some(map) = update.as_object() else {
            return Err(invalid("", "the body must be a JSON object"));
        };
        if let Some(key) = map.keys().find(|k| *k != "name" && *k != "metadata") {
            return Err(invalid(
                key.as_str(),
                "only name and metadata can be updated",
            ));
        }
        let mut body = object.body;
        if map.contains_key("name") {
            body["name"] = json!(check_name(map.get("name"), "")?);
        }
        if map.contains_key("metadata") {
            body["metadata"] = check_metadata(map.get("metadata"), "metadata")?;
        }
        self.engine
            .store()
            .update_eval_object(EvalKind::Eval, id, None, &body)
            .await?;
        Ok(body)
    }

    /// Deletes the eval, its runs and their Themis runs (unfinished ones are cancelled).
    pub async fn delete_eval(&self, id: &str) -> Result<Value, EngineError> {
        self.get(EvalKind::Eval, id).await?;
        let mut after = None;
        loop {
            let page = Page {
                after: after.clone(),
                limit: super::MAX_PAGE,
                order: crate::model::ListOrder::Asc,
            };
            let (runs, has_more) = self.page(EvalKind::Run, Some(id), None, &page).await?;
            for run in &runs {
                self.remove_themis_run(run).await?;
            }
            after = runs.last().map(|r| r.id.clone());
            if !has_more {
                break;
            }
        }
        self.engine
            .store()
            .delete_eval_object(EvalKind::Eval, id)
            .await?;
        Ok(json!({"object": "eval.deleted", "deleted": true, "eval_id": id}))
    }
}

/// What `include_sample_schema` adds: the sample a model produced.
fn sample_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "choices": {"type": "array"},
            "output_text": {"type": "string"},
            "output_json": {"type": "object"},
        },
    })
}
