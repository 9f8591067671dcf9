//! Eval runs: the run's data source read into rows, translated into a Themis run
//! definition and submitted; cancel and delete act on that Themis run.

use serde_json::{Map, Value, json};

use super::rows::{Row, check_items, parse_content, parse_jsonl};
use super::{EngineError, OpenAiEvals, invalid, now_secs};
use crate::components::openai_evals::{Namespaces, content_text, render, resolve_model};
use crate::model::{EvalKind, EvalObject, RunId};

/// A run just created: its view and the Themis run to start.
#[derive(Debug)]
pub struct CreatedRun {
    pub view: Value,
    pub run_id: RunId,
}

/// The judge id of a criterion: its name when that is a plain, unique id, else
/// `criterion_N`.
pub(super) fn judge_id(name: &str, index: usize, used: &[String]) -> String {
    let plain = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.:".contains(c));
    if plain && !used.iter().any(|u| u == name) {
        name.to_owned()
    } else {
        format!("criterion_{}", index + 1)
    }
}

/// What a `completions` source asks of the model.
struct Completions {
    provider: String,
    model: String,
    roles: Vec<String>,
    /// Each row's rendered messages.
    messages: Vec<Vec<String>>,
    sampling: Map<String, Value>,
}

impl OpenAiEvals {
    async fn rows_of(&self, source: &Value, path: &str) -> Result<Vec<Row>, EngineError> {
        match source.get("type").and_then(Value::as_str) {
            Some("file_content") => parse_content(
                source.get("content").unwrap_or(&Value::Null),
                &format!("{path}.content"),
            ),
            Some("file_id") => {
                let id = source.get("id").and_then(Value::as_str).unwrap_or("");
                let content = self.file_content(id).await.map_err(|_| {
                    invalid(format!("{path}.id"), format!("no file with id `{id}`"))
                })?;
                parse_jsonl(&content, &format!("{path}.id"))
            }
            Some("stored_completions" | "responses") => Err(invalid(
                format!("{path}.type"),
                "Themis has no stored completions or responses: give the rows as \
                 `file_content` or an uploaded `file_id`",
            )),
            _ => Err(invalid(
                format!("{path}.type"),
                "must be `file_content` or `file_id`",
            )),
        }
    }

    fn completions(&self, ds: &Value, rows: &[Row]) -> Result<Completions, EngineError> {
        let model = ds
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("data_source.model", "is required for completions"))?;
        let (provider, model) = resolve_model(
            self.engine.registry(),
            model,
            self.config.default_provider.as_deref(),
        )
        .map_err(|m| invalid("data_source.model", m))?;
        let input = ds
            .get("input_messages")
            .ok_or_else(|| invalid("data_source.input_messages", "is required for completions"))?;
        let mut roles: Option<Vec<String>> = None;
        let mut messages = Vec::with_capacity(rows.len());
        match input.get("type").and_then(Value::as_str) {
            Some("template") => {
                let template = input
                    .get("template")
                    .and_then(Value::as_array)
                    .filter(|t| !t.is_empty() && t.len() <= 64)
                    .ok_or_else(|| {
                        invalid(
                            "data_source.input_messages.template",
                            "must hold 1 to 64 messages",
                        )
                    })?;
                let mut parts = Vec::new();
                for (i, m) in template.iter().enumerate() {
                    let at = format!("data_source.input_messages.template[{i}]");
                    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                    let content = content_text(m.get("content").unwrap_or(&Value::Null))
                        .map_err(|e| invalid(format!("{at}.content"), e))?;
                    parts.push((role.to_owned(), content));
                }
                for (r, row) in rows.iter().enumerate() {
                    let ns = Namespaces {
                        item: &row.item,
                        sample: None,
                    };
                    let rendered = parts
                        .iter()
                        .map(|(_, c)| render(c, &ns))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            invalid(
                                format!("data_source.source.content[{r}]"),
                                format!("input_messages: {e}"),
                            )
                        })?;
                    messages.push(rendered);
                }
                roles = Some(parts.into_iter().map(|(r, _)| r).collect());
            }
            Some("item_reference") => {
                let reference = input
                    .get("item_reference")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                for (r, row) in rows.iter().enumerate() {
                    let ns = Namespaces {
                        item: &row.item,
                        sample: None,
                    };
                    let at = format!("data_source.source.content[{r}]");
                    let list = crate::components::openai_evals::lookup(reference, &ns)
                        .and_then(Value::as_array)
                        .ok_or_else(|| {
                            invalid(
                                at.clone(),
                                format!("`{reference}` is not a list of messages"),
                            )
                        })?;
                    let mut row_roles = Vec::new();
                    let mut row_messages = Vec::new();
                    for m in list {
                        row_roles.push(
                            m.get("role")
                                .and_then(Value::as_str)
                                .unwrap_or("user")
                                .to_owned(),
                        );
                        row_messages.push(
                            content_text(m.get("content").unwrap_or(&Value::Null))
                                .map_err(|e| invalid(at.clone(), e))?,
                        );
                    }
                    match &roles {
                        Some(first) if *first != row_roles => {
                            return Err(invalid(
                                at,
                                "Themis sends item_reference messages with the same roles in \
                                 the same order for every row; this row's differ from the first",
                            ));
                        }
                        _ => roles = Some(row_roles),
                    }
                    messages.push(row_messages);
                }
            }
            _ => {
                return Err(invalid(
                    "data_source.input_messages.type",
                    "must be `template` or `item_reference`",
                ));
            }
        }
        let sampling = match ds.get("sampling_params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(invalid("data_source.sampling_params", "must be an object")),
        };
        Ok(Completions {
            provider,
            model,
            roles: roles.unwrap_or_default(),
            messages,
            sampling,
        })
    }

    pub async fn create_run(
        &self,
        eval_id: &str,
        body: &Value,
        base_url: &str,
    ) -> Result<CreatedRun, EngineError> {
        let eval = self.get(EvalKind::Eval, eval_id).await?.body;
        let Some(map) = body.as_object() else {
            return Err(invalid("", "the body must be a JSON object"));
        };
        let ds = map
            .get("data_source")
            .filter(|d| d.is_object())
            .ok_or_else(|| invalid("data_source", "is required"))?;
        let kind = ds.get("type").and_then(Value::as_str).unwrap_or("");
        if !["jsonl", "completions"].contains(&kind) {
            return Err(invalid(
                "data_source.type",
                format!(
                    "Themis runs `jsonl` (rows with or without a sample) and `completions` \
                     (a model answers each row) data sources, not `{kind}`"
                ),
            ));
        }
        let source = ds
            .get("source")
            .ok_or_else(|| invalid("data_source.source", "is required"))?;
        let rows = self.rows_of(source, "data_source.source").await?;
        if rows.is_empty() {
            return Err(invalid("data_source.source", "holds no rows"));
        }
        let schema = &eval["data_source_config"]["schema"]["properties"]["item"];
        check_items(schema, &rows, "data_source.source.content")?;
        let completions = if kind == "completions" {
            Some(self.completions(ds, &rows)?)
        } else {
            None
        };
        let name = super::evals::check_name(map.get("name"), "")?;
        let metadata = super::evals::check_metadata(map.get("metadata"), "metadata")?;
        let id = EvalKind::Run.new_id();

        // The Themis run: one case per row (named by its index) under the eval's id, one
        // judge per testing criterion.
        let criteria = eval["testing_criteria"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut judge_ids: Vec<String> = Vec::new();
        let mut judges = Vec::new();
        for (i, criterion) in criteria.iter().enumerate() {
            let name = criterion.get("name").and_then(Value::as_str).unwrap_or("");
            let judge = judge_id(name, i, &judge_ids);
            let mut params = Map::new();
            params.insert("grader".into(), criterion.clone());
            // Makes the Themis run this eval run's own: the cases are named after the
            // eval, so runs of one eval pair up in comparisons.
            params.insert("eval_run".into(), json!(id));
            if let Some(p) = &self.config.default_provider {
                params.insert("default_provider".into(), json!(p));
            }
            if let Some(s) = &self.config.sandbox {
                params.insert("sandbox".into(), json!(s));
            }
            judges.push(json!({"name": "openai_evals/grader", "id": judge, "params": params}));
            judge_ids.push(judge);
        }
        let mut seed = 0u64;
        let generator = match &completions {
            None => json!("openai_evals/sample"),
            Some(c) => {
                let messages: Vec<Value> = c
                    .roles
                    .iter()
                    .enumerate()
                    .map(|(i, role)| json!({"role": role, "content": format!("{{{{ input.messages[{i}] }}}}")}))
                    .collect();
                let mut params =
                    json!({"provider": c.provider, "model": c.model, "messages": messages});
                let mut extra = Map::new();
                for (key, value) in &c.sampling {
                    if value.is_null() {
                        continue;
                    }
                    match key.as_str() {
                        "temperature" | "top_p" => params[key] = value.clone(),
                        "max_completion_tokens" | "max_completions_tokens" => {
                            params["max_tokens"] = value.clone()
                        }
                        "seed" => {
                            seed = value.as_u64().ok_or_else(|| {
                                invalid(
                                    "data_source.sampling_params.seed",
                                    "must be a non-negative integer",
                                )
                            })?
                        }
                        "response_format" | "tools" => {
                            extra.insert(key.clone(), value.clone());
                        }
                        "reasoning_effort" => {
                            extra.insert(key.clone(), value.clone());
                        }
                        other => {
                            return Err(invalid(
                                format!("data_source.sampling_params.{other}"),
                                "is not a sampling parameter Themis sends",
                            ));
                        }
                    }
                }
                if !extra.is_empty() {
                    params["extra_body"] = Value::Object(extra);
                }
                json!({"name": "openai/chat", "params": params})
            }
        };
        let cases: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut input = Map::new();
                input.insert("item".into(), row.item.clone());
                if let Some(sample) = &row.sample {
                    input.insert("sample".into(), sample.clone());
                }
                if let Some(c) = &completions {
                    input.insert("messages".into(), json!(c.messages[i]));
                }
                json!({"case_id": i.to_string(), "input": input})
            })
            .collect();
        let mut definition = json!({
            "generation": {"generator": generator, "reducer": "builtin/first"},
            "evaluation": {"parsers": [], "metrics": [], "judges": judges},
            "datasets": [{"dataset_id": eval_id, "cases": cases}],
            "seeds": [seed],
            "tags": ["openai-evals"],
            "metadata": {"openai_eval_id": eval_id, "openai_eval_run_id": id},
        });
        if crate::engine::check_run_name(&name).is_ok() {
            definition["name"] = json!(name);
        }
        let request = self.engine.parse(&definition).map_err(|e| match e {
            EngineError::Invalid(problems) => invalid(
                "data_source",
                problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => other,
        })?;
        let outcome = self.engine.submit(&request).await?;
        let run_id = outcome.record().run_id.clone();
        let model = completions
            .as_ref()
            .map(|c| format!("{}/{}", c.provider, c.model))
            .unwrap_or_default();
        let created_at = now_secs();
        let view = json!({
            "object": "eval.run", "id": id, "eval_id": eval_id, "created_at": created_at,
            "name": name, "metadata": metadata, "model": model,
            "data_source": ds, "status": "queued",
            "report_url": format!("{base_url}/ui/#/runs/{run_id}"),
            "result_counts": {"total": 0, "passed": 0, "failed": 0, "errored": 0},
            "per_model_usage": [], "per_testing_criteria_results": [], "error": null,
            "_themis": {"run_id": run_id, "judge_ids": judge_ids, "final": false,
                        "sampling": completions.as_ref().map(|c| Value::Object(c.sampling.clone()))},
        });
        self.engine
            .store()
            .insert_eval_object(&EvalObject {
                kind: EvalKind::Run,
                id: id.clone(),
                parent_id: Some(eval_id.to_owned()),
                status: Some("queued".into()),
                created_at,
                body: view.clone(),
                content: None,
            })
            .await?;
        Ok(CreatedRun {
            view: super::views::public(view),
            run_id,
        })
    }

    /// The eval run of `eval_id` named `run_id`.
    pub(super) async fn run_object(
        &self,
        eval_id: &str,
        run_id: &str,
    ) -> Result<EvalObject, EngineError> {
        self.get(EvalKind::Eval, eval_id).await?;
        let run = self.get(EvalKind::Run, run_id).await?;
        if run.parent_id.as_deref() != Some(eval_id) {
            return Err(EngineError::NotFound(format!(
                "no eval run `{run_id}` in eval `{eval_id}`"
            )));
        }
        Ok(run)
    }

    pub async fn cancel_run(&self, eval_id: &str, run_id: &str) -> Result<Value, EngineError> {
        let run = self.run_object(eval_id, run_id).await?;
        let themis = themis_run_id(&run)?;
        self.engine.request_cancel(&themis).await?;
        self.run_view(run).await
    }

    /// Cancels (if unfinished) and deletes the Themis run behind an eval run.
    pub(super) async fn remove_themis_run(&self, run: &EvalObject) -> Result<(), EngineError> {
        let themis = themis_run_id(run)?;
        if let Some(record) = self.engine.store().get_run_summary(&themis).await?
            && !record.status.is_terminal()
        {
            self.engine.request_cancel(&themis).await?;
            // A running run stops at its executor's next check: wait for it, briefly.
            for _ in 0..100 {
                match self.engine.store().get_run_summary(&themis).await? {
                    Some(r) if !r.status.is_terminal() => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    _ => break,
                }
            }
        }
        match self.engine.delete_run(&themis, true).await? {
            crate::store::DeleteRun::Unfinished(_) => Err(EngineError::Conflict(format!(
                "eval run {} is still stopping; try again shortly",
                run.id
            ))),
            _ => Ok(()),
        }
    }

    pub async fn delete_run(&self, eval_id: &str, run_id: &str) -> Result<Value, EngineError> {
        let run = self.run_object(eval_id, run_id).await?;
        self.remove_themis_run(&run).await?;
        self.engine
            .store()
            .delete_eval_object(EvalKind::Run, run_id)
            .await?;
        Ok(json!({"object": "eval.run.deleted", "deleted": true, "run_id": run_id}))
    }
}

pub(super) fn themis_run_id(run: &EvalObject) -> Result<RunId, EngineError> {
    run.body["_themis"]["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| EngineError::Unusable(format!("eval run {} has no Themis run", run.id)))
}
