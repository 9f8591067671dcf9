//! Run and output item views, read from the Themis run behind an eval run: status,
//! result counts, usage per model and per criterion; each case record as an output item.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::runs::themis_run_id;
use super::{EngineError, Listing, OpenAiEvals, Page};
use crate::model::{
    CaseRecord, CaseStatus, EvalKind, EvalObject, ListOrder, RunRecord, RunStatus, output_item_id,
    parse_output_item_id,
};

use crate::store::CaseQuery;

const BATCH: u32 = 500;

/// The view without Themis's own bookkeeping.
pub(super) fn public(mut view: Value) -> Value {
    if let Some(map) = view.as_object_mut() {
        map.remove("_themis");
    }
    view
}

fn status_of(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Queued => "queued",
        RunStatus::Running => "in_progress",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "canceled",
    }
}

/// An item's verdict: `pass` when every criterion passed, `fail` when one did not,
/// `error` when the row could not be graded.
fn item_status(record: &CaseRecord) -> &'static str {
    if record.status == CaseStatus::Failed {
        "error"
    } else if record.judgments.iter().all(|j| j.passed == Some(true)) {
        "pass"
    } else {
        "fail"
    }
}

#[derive(Default)]
struct Usage {
    invocations: u64,
    prompt: u64,
    completion: u64,
}

impl OpenAiEvals {
    /// Every case record of the run, in index order, handed to `each`.
    async fn each_record(
        &self,
        run: &crate::model::RunId,
        mut each: impl FnMut(&CaseRecord),
    ) -> Result<(), EngineError> {
        self.each_record_from(run, None, |record| {
            each(record);
            true
        })
        .await
    }

    /// The run as the API shows it, with its live fields from the Themis run; a finished
    /// run's view is stored once and served from then on.
    pub(super) async fn run_view(&self, run: EvalObject) -> Result<Value, EngineError> {
        if run.body["_themis"]["final"] == json!(true) {
            return Ok(public(run.body));
        }
        let themis = themis_run_id(&run)?;
        let mut view = run.body.clone();
        let Some(record) = self.engine.store().get_run_summary(&themis).await? else {
            view["status"] = json!("failed");
            view["error"] = json!({"code": "run_deleted", "message": "the Themis run of this eval run was deleted"});
            return Ok(public(view));
        };
        // Polling an executing run reads its records only when more cases finished
        // since the counts were last stored.
        let finished = json!(record.progress.finished());
        let fresh = view["_themis"]["counted"] != finished || record.status.is_terminal();
        if fresh {
            self.fill_stats(&mut view, &record).await?;
            view["_themis"]["counted"] = finished;
        }
        let status = status_of(record.status);
        view["status"] = json!(status);
        if let Some(error) = &record.error {
            view["error"] = json!({"code": "run_failed", "message": error});
        }
        if record.status.is_terminal() {
            view["_themis"]["final"] = json!(true);
        }
        if fresh || run.status.as_deref() != Some(status) {
            self.engine
                .store()
                .update_eval_object(EvalKind::Run, &run.id, Some(status), &view)
                .await?;
        }
        Ok(public(view))
    }

    async fn fill_stats(&self, view: &mut Value, record: &RunRecord) -> Result<(), EngineError> {
        let judge_ids: Vec<String> = view["_themis"]["judge_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let eval = self
            .get(EvalKind::Eval, view["eval_id"].as_str().unwrap_or(""))
            .await;
        let criteria = eval
            .map(|e| {
                e.body["testing_criteria"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let model = view["model"].as_str().unwrap_or("").to_owned();
        let (mut total, mut passed, mut failed, mut errored) = (0u64, 0u64, 0u64, 0u64);
        let mut per_criterion: Vec<(u64, u64)> = vec![(0, 0); judge_ids.len()];
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        self.each_record(&record.run_id, |case| {
            total += 1;
            match item_status(case) {
                "pass" => passed += 1,
                "fail" => failed += 1,
                _ => errored += 1,
            }
            for candidate in &case.candidates {
                if !model.is_empty() {
                    let u = usage.entry(model.clone()).or_default();
                    u.invocations += candidate.usage.requests;
                    u.prompt += candidate.usage.prompt_tokens;
                    u.completion += candidate.usage.completion_tokens;
                }
            }
            for judgment in &case.judgments {
                let Some(i) = judge_ids.iter().position(|id| *id == judgment.judge_id) else {
                    continue;
                };
                match judgment.passed {
                    Some(true) => per_criterion[i].0 += 1,
                    Some(false) => per_criterion[i].1 += 1,
                    None => {}
                }
                if judgment.usage.requests > 0 {
                    let name = criteria
                        .get(i)
                        .and_then(|c| c["model"].as_str())
                        .unwrap_or("grader")
                        .to_owned();
                    let u = usage.entry(name).or_default();
                    u.invocations += judgment.usage.requests;
                    u.prompt += judgment.usage.prompt_tokens;
                    u.completion += judgment.usage.completion_tokens;
                }
            }
        })
        .await?;
        view["result_counts"] =
            json!({"total": total, "passed": passed, "failed": failed, "errored": errored});
        view["per_testing_criteria_results"] = Value::Array(
            per_criterion
                .iter()
                .enumerate()
                .map(|(i, (p, f))| {
                    let name = criteria
                        .get(i)
                        .and_then(|c| c["name"].as_str())
                        .unwrap_or(&judge_ids[i]);
                    json!({"testing_criteria": name, "passed": p, "failed": f})
                })
                .collect(),
        );
        view["per_model_usage"] = Value::Array(
            usage
                .into_iter()
                .map(|(name, u)| {
                    json!({"model_name": name, "invocation_count": u.invocations,
                           "prompt_tokens": u.prompt, "completion_tokens": u.completion,
                           "total_tokens": u.prompt + u.completion, "cached_tokens": 0})
                })
                .collect(),
        );
        Ok(())
    }

    pub async fn get_run(&self, eval_id: &str, run_id: &str) -> Result<Value, EngineError> {
        let run = self.run_object(eval_id, run_id).await?;
        self.run_view(run).await
    }

    pub async fn list_runs(
        &self,
        eval_id: &str,
        page: &Page,
        status: Option<&str>,
    ) -> Result<Listing, EngineError> {
        self.get(EvalKind::Eval, eval_id).await?;
        if status.is_some() {
            // Recorded statuses of unfinished runs may be stale: bring them up to date so
            // the filter sees what a read would.
            for stale in ["queued", "in_progress"] {
                let mut after = None;
                loop {
                    let query = Page {
                        after: after.clone(),
                        limit: super::MAX_PAGE,
                        order: ListOrder::Asc,
                    };
                    let (runs, more) = self
                        .page(EvalKind::Run, Some(eval_id), Some(stale), &query)
                        .await?;
                    after = runs.last().map(|r| r.id.clone());
                    for run in runs {
                        self.run_view(run).await?;
                    }
                    if !more {
                        break;
                    }
                }
            }
        }
        let (runs, has_more) = self
            .page(EvalKind::Run, Some(eval_id), status, page)
            .await?;
        let mut data = Vec::with_capacity(runs.len());
        for run in runs {
            data.push(self.run_view(run).await?);
        }
        Ok(Listing { data, has_more })
    }

    /// The rows (case inputs) of the Themis run with index in `range`, by case index.
    async fn inputs(
        &self,
        themis: &crate::model::RunId,
        range: std::ops::Range<u64>,
    ) -> Result<BTreeMap<u64, Value>, EngineError> {
        let record =
            self.engine.store().get_run(themis).await?.ok_or_else(|| {
                EngineError::NotFound("the run of this eval run was deleted".into())
            })?;
        let Some(revision) = record.definition["datasets"][0]["revision"]
            .as_str()
            .and_then(|r| r.parse::<crate::model::Revision>().ok())
        else {
            return Ok(BTreeMap::new());
        };
        let cases = self.engine.store().revision_cases(&revision, range).await?;
        Ok(cases
            .into_iter()
            .filter_map(|c| {
                let case: Value = serde_json::from_str(&c.json).ok()?;
                Some((c.case_index, case["input"].clone()))
            })
            .collect())
    }

    fn item_view(
        &self,
        run: &EvalObject,
        input: &Value,
        record: &CaseRecord,
        criteria: &[Value],
    ) -> Value {
        let judge_ids: Vec<&str> = run.body["_themis"]["judge_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let results: Vec<Value> = record
            .judgments
            .iter()
            .map(|j| {
                let i = judge_ids.iter().position(|id| *id == j.judge_id);
                let criterion = i.and_then(|i| criteria.get(i));
                match &j.details["result"] {
                    Value::Object(result) => Value::Object(result.clone()),
                    _ => json!({
                        "name": criterion.and_then(|c| c["name"].as_str()).unwrap_or(&j.judge_id),
                        "type": criterion.and_then(|c| c["type"].as_str()),
                        "score": j.score.unwrap_or(0.0), "passed": false, "sample": null,
                        "error": j.error,
                    }),
                }
            })
            .collect();
        let candidate = record.candidates.first();
        let sampling = &run.body["_themis"]["sampling"];
        let output_text = candidate
            .and_then(|c| c.raw_text.clone())
            .or_else(|| input["sample"]["output_text"].as_str().map(str::to_owned));
        let roles: Vec<String> = run.body["data_source"]["input_messages"]["template"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|m| m["role"].as_str().unwrap_or("user").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let sample_input: Vec<Value> = input["messages"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .enumerate()
                    .map(|(i, m)| json!({"role": roles.get(i).map_or("user", String::as_str), "content": m}))
                    .collect()
            })
            .unwrap_or_default();
        let usage = candidate.map(|c| c.usage).unwrap_or_default();
        let error = record
            .error
            .as_ref()
            .map(|e| json!({"code": e.stage.as_str(), "message": e.message}));
        let mut sample = Map::new();
        sample.insert("input".into(), json!(sample_input));
        sample.insert(
            "output".into(),
            json!(
                output_text
                    .map(|t| vec![json!({"role": "assistant", "content": t})])
                    .unwrap_or_default()
            ),
        );
        sample.insert(
            "usage".into(),
            json!({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                   "total_tokens": usage.prompt_tokens + usage.completion_tokens, "cached_tokens": 0}),
        );
        sample.insert(
            "finish_reason".into(),
            json!(candidate.and_then(|c| c.finish_reason.clone())),
        );
        sample.insert("model".into(), run.body["model"].clone());
        sample.insert("seed".into(), sampling["seed"].clone());
        sample.insert("temperature".into(), sampling["temperature"].clone());
        sample.insert("top_p".into(), sampling["top_p"].clone());
        sample.insert(
            "max_completion_tokens".into(),
            sampling["max_completion_tokens"].clone(),
        );
        sample.insert("error".into(), error.unwrap_or(Value::Null));
        json!({
            "object": "eval.run.output_item",
            "id": output_item_id(&run.id, record.key.case_index),
            "created_at": record.finished_at.as_millis() / 1000,
            "eval_id": run.parent_id,
            "run_id": run.id,
            "datasource_item_id": record.key.case_index,
            "datasource_item": input["item"],
            "status": item_status(record),
            "results": results,
            "sample": sample,
        })
    }

    pub async fn list_output_items(
        &self,
        eval_id: &str,
        run_id: &str,
        page: &Page,
        status: Option<&str>,
    ) -> Result<Listing, EngineError> {
        let run = self.run_object(eval_id, run_id).await?;
        let themis = themis_run_id(&run)?;
        let criteria = self.criteria(eval_id).await?;
        let limit = page.limit.clamp(1, super::MAX_PAGE) as usize;
        let after = match &page.after {
            None => None,
            Some(id) => match parse_output_item_id(id) {
                Some((run, index)) if run == run_id => Some(index),
                _ => {
                    return Err(super::invalid(
                        "after",
                        format!("`{id}` is no output item of this run"),
                    ));
                }
            },
        };
        let matches = |r: &CaseRecord| status.is_none_or(|s| item_status(r) == s);
        let mut data = Vec::new();
        let mut has_more = false;
        match page.order {
            ListOrder::Asc => {
                self.each_record_from(&themis, after, |record| {
                    if !matches(record) {
                        return true;
                    }
                    if data.len() == limit {
                        has_more = true;
                        return false;
                    }
                    data.push(record.clone());
                    true
                })
                .await?;
            }
            ListOrder::Desc => {
                let mut all = Vec::new();
                self.each_record_from(&themis, None, |record| {
                    if after.is_none_or(|a| record.key.case_index < a) && matches(record) {
                        all.push(record.clone());
                    }
                    true
                })
                .await?;
                has_more = all.len() > limit;
                data = all.into_iter().rev().take(limit).collect();
            }
        }
        let low = data.iter().map(|r| r.key.case_index).min().unwrap_or(0);
        let high = data.iter().map(|r| r.key.case_index + 1).max().unwrap_or(0);
        let inputs = self.inputs(&themis, low..high).await?;
        let data = data
            .iter()
            .map(|record| {
                let input = inputs.get(&record.key.case_index).unwrap_or(&Value::Null);
                self.item_view(&run, input, record, &criteria)
            })
            .collect();
        Ok(Listing { data, has_more })
    }

    /// Records after `after` in index order until `each` says stop.
    async fn each_record_from(
        &self,
        run: &crate::model::RunId,
        mut after: Option<u64>,
        mut each: impl FnMut(&CaseRecord) -> bool,
    ) -> Result<(), EngineError> {
        loop {
            let batch = self
                .engine
                .store()
                .case_records(
                    run,
                    &CaseQuery {
                        after_index: after,
                        dataset_id: None,
                        failed_only: false,
                        limit: BATCH,
                    },
                )
                .await?;
            for record in &batch {
                if !each(record) {
                    return Ok(());
                }
            }
            match batch.last() {
                Some(last) if batch.len() == BATCH as usize => after = Some(last.key.case_index),
                _ => return Ok(()),
            }
        }
    }

    async fn criteria(&self, eval_id: &str) -> Result<Vec<Value>, EngineError> {
        Ok(
            self.get(EvalKind::Eval, eval_id).await?.body["testing_criteria"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    }

    pub async fn get_output_item(
        &self,
        eval_id: &str,
        run_id: &str,
        item_id: &str,
    ) -> Result<Value, EngineError> {
        let run = self.run_object(eval_id, run_id).await?;
        let not_found =
            || EngineError::NotFound(format!("no output item `{item_id}` in run `{run_id}`"));
        let (owner, index) = parse_output_item_id(item_id).ok_or_else(not_found)?;
        if owner != run_id {
            return Err(not_found());
        }
        let themis = themis_run_id(&run)?;
        let mut found = None;
        self.each_record_from(&themis, index.checked_sub(1), |record| {
            if record.key.case_index == index {
                found = Some(record.clone());
            }
            false
        })
        .await?;
        let record = found.ok_or_else(not_found)?;
        let criteria = self.criteria(eval_id).await?;
        let inputs = self.inputs(&themis, index..index + 1).await?;
        let input = inputs.get(&index).unwrap_or(&Value::Null);
        Ok(self.item_view(&run, input, &record, &criteria))
    }
}
