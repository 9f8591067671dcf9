//! Bringing the history: evals, runs and output items exported from OpenAI (the JSON of
//! `GET /v1/evals`, `…/runs`, `…/output_items`, pages or single objects) recreated under
//! their own ids. Each past run becomes a Themis run that replays the recorded results
//! (`openai_evals/recorded`, no model call), so new runs of the eval compare against it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::runs::judge_id;
use super::{EngineError, OpenAiEvals};
use crate::model::{EvalKind, EvalObject, RunId};

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    pub evals: usize,
    pub runs: usize,
    /// Objects already present (an import is idempotent).
    pub skipped: usize,
    /// The Themis runs to execute (they replay the recorded results).
    pub to_execute: Vec<RunId>,
}

/// Every eval, run and output item in `value`: list pages are opened, others ignored.
pub fn collect_exported(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| collect_exported(v, out)),
        Value::Object(mut map) => match map.get("object").and_then(Value::as_str) {
            Some("list") => {
                if let Some(data) = map.remove("data") {
                    collect_exported(data, out);
                }
            }
            Some("eval" | "eval.run" | "eval.run.output_item") => out.push(Value::Object(map)),
            _ => {}
        },
        _ => {}
    }
}

fn kind_of(object: &Value) -> &str {
    object["object"].as_str().unwrap_or("")
}

impl OpenAiEvals {
    pub async fn import(&self, objects: Vec<Value>) -> Result<Imported, EngineError> {
        let mut report = Imported::default();
        let store = self.engine.store();
        let mut items: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for item in objects
            .iter()
            .filter(|o| kind_of(o) == "eval.run.output_item")
        {
            if let Some(run) = item["run_id"].as_str() {
                items.entry(run.to_owned()).or_default().push(item.clone());
            }
        }
        let mut evals = BTreeMap::new();
        for eval in objects.iter().filter(|o| kind_of(o) == "eval") {
            let Some(id) = eval["id"].as_str().filter(|id| EvalKind::Eval.is_id(id)) else {
                continue;
            };
            evals.insert(id.to_owned(), eval.clone());
            if store
                .get_eval_object(EvalKind::Eval, id, false)
                .await?
                .is_some()
            {
                report.skipped += 1;
                continue;
            }
            store
                .insert_eval_object(&EvalObject {
                    kind: EvalKind::Eval,
                    id: id.to_owned(),
                    parent_id: None,
                    status: None,
                    created_at: eval["created_at"].as_i64().unwrap_or_else(super::now_secs),
                    body: eval.clone(),
                    content: None,
                })
                .await?;
            report.evals += 1;
        }
        for run in objects.iter().filter(|o| kind_of(o) == "eval.run") {
            let (Some(id), Some(eval_id)) = (run["id"].as_str(), run["eval_id"].as_str()) else {
                continue;
            };
            if !EvalKind::Run.is_id(id) {
                continue;
            }
            let Some(eval) = evals.get(eval_id) else {
                return Err(super::invalid(
                    format!("{id}.eval_id"),
                    format!("the run's eval `{eval_id}` is not in the export"),
                ));
            };
            if store
                .get_eval_object(EvalKind::Run, id, false)
                .await?
                .is_some()
            {
                report.skipped += 1;
                continue;
            }
            let mut run_items = items.remove(id).unwrap_or_default();
            run_items.sort_by_key(|i| i["datasource_item_id"].as_u64().unwrap_or(0));
            let themis = self.replay(eval_id, eval, run, &run_items).await?;
            let mut body = run.clone();
            body["report_url"] = json!(format!("/ui/#/runs/{themis}"));
            let names = criteria_names(eval);
            let mut used = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let judge = judge_id(name, i, &used);
                used.push(judge);
            }
            body["_themis"] = json!({"run_id": themis, "judge_ids": used, "final": true,
                                     "imported": true, "sampling": run["data_source"]["sampling_params"]});
            store
                .insert_eval_object(&EvalObject {
                    kind: EvalKind::Run,
                    id: id.to_owned(),
                    parent_id: Some(eval_id.to_owned()),
                    status: run["status"].as_str().map(str::to_owned),
                    created_at: run["created_at"].as_i64().unwrap_or_else(super::now_secs),
                    body,
                    content: None,
                })
                .await?;
            report.runs += 1;
            report.to_execute.push(themis);
        }
        Ok(report)
    }

    /// The Themis run replaying a past run's output items.
    async fn replay(
        &self,
        eval_id: &str,
        eval: &Value,
        run: &Value,
        items: &[Value],
    ) -> Result<RunId, EngineError> {
        let id = run["id"].as_str().unwrap_or("");
        let names = criteria_names(eval);
        let mut used = Vec::new();
        let mut judges = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let judge = judge_id(name, i, &used);
            judges.push(json!({"name": "openai_evals/recorded", "id": judge,
                               "params": {"name": name, "eval_run": id}}));
            used.push(judge);
        }
        if judges.is_empty() || items.is_empty() {
            return Err(super::invalid(
                id,
                "an imported run needs its eval's testing_criteria and its output items",
            ));
        }
        let cases: Vec<Value> = items
            .iter()
            .map(|item| {
                let mut recorded = Map::new();
                for result in item["results"].as_array().into_iter().flatten() {
                    if let Some(name) = result["name"].as_str() {
                        recorded.insert(name.to_owned(), result.clone());
                    }
                }
                let output = item["sample"]["output"][0]["content"].clone();
                let mut input = json!({"item": item["datasource_item"], "recorded": recorded});
                if item["status"] == "error" || item["status"] == "errored" {
                    input["errored"] = json!(true);
                }
                if let Some(text) = output.as_str() {
                    input["sample"] = json!({"output_text": text});
                }
                json!({"case_id": item["datasource_item_id"].as_u64().unwrap_or(0).to_string(),
                       "input": input})
            })
            .collect();
        let seed = run["data_source"]["sampling_params"]["seed"]
            .as_u64()
            .unwrap_or(0);
        let mut definition = json!({
            "generation": {"generator": "openai_evals/sample", "reducer": "builtin/first"},
            "evaluation": {"parsers": [], "metrics": [], "judges": judges},
            "datasets": [{"dataset_id": eval_id, "cases": cases}],
            "seeds": [seed],
            "tags": ["openai-evals", "imported"],
            "metadata": {"openai_eval_id": eval_id, "openai_eval_run_id": id},
        });
        if let Some(name) = run["name"]
            .as_str()
            .filter(|n| crate::engine::check_run_name(n).is_ok())
        {
            definition["name"] = json!(name);
        }
        let request = self.engine.parse(&definition)?;
        Ok(self.engine.submit(&request).await?.record().run_id.clone())
    }
}

fn criteria_names(eval: &Value) -> Vec<String> {
    eval["testing_criteria"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or("").to_owned())
        .collect()
}
