//! `openai/chat` and `openai/judge` against the fake OpenAI-compatible provider on a real
//! port, driven through the real engine; each module one concern of the provider call.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod agent;
mod agent_mcp;
mod agent_records;
mod budgets;
mod cache;
mod concurrency;
mod judges;
mod keys;
mod limits;
mod mcp;
mod requests;
mod retries;
mod spend;
mod verdicts;

use common::fake_provider::{FakeProvider, Reply, user_text};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use themis::components::{Outbound, ProviderSpec, Registry};
use themis::engine::{Engine, EngineConfig, RunControl, candidate_seed};
use themis::model::{
    CaseKey, CaseRecord, CaseStatus, RunEvent, RunRecord, RunStatus, Stage, Usage,
};
use themis::observe::{AttributeValue, Observers, SpanStatus};
use themis::store::{CaseQuery, MemoryStore};
use themis::telemetry::RecordingTracer;

/// Answers "a+b" questions as `{"answer": "<sum>"}`, once per asked-for choice.
fn arithmetic(body: &Value) -> Reply {
    let text = user_text(body);
    let re = regex::Regex::new(r"(\d+)\s*\+\s*(\d+)").unwrap();
    let answer = re
        .captures(&text)
        .map(|c| c[1].parse::<i64>().unwrap() + c[2].parse::<i64>().unwrap())
        .map_or_else(|| "?".to_owned(), |sum| sum.to_string());
    let n = body["n"].as_u64().unwrap_or(1) as usize;
    Reply::Answer(vec![json!({"answer": answer}).to_string(); n])
}

// ---------------------------------------------------------------------------------
// Driving the engine

fn engine() -> Engine {
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    )
}

/// An engine on which `fake` is a declared provider (named `fake`) with `key`: its key
/// is sent to it and its error messages are quoted (an undeclared host's never are).
fn engine_for(fake: &FakeProvider, key: Option<&str>) -> Engine {
    let mut provider = ProviderSpec::new("fake", &fake.base_url).unwrap();
    if let Some(key) = key {
        provider = provider.with_key(key);
    }
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin_with(Outbound {
            providers: vec![provider],
            ..Outbound::local()
        })),
        EngineConfig::default(),
    )
}

struct Outcome {
    run: RunRecord,
    records: Vec<CaseRecord>,
    events: Vec<RunEvent>,
}

impl Outcome {
    fn events_of(&self, event_type: &str) -> Vec<&RunEvent> {
        self.events
            .iter()
            .filter(|e| e.event_type() == event_type)
            .collect()
    }

    fn failed(&self) -> Vec<&CaseRecord> {
        self.records
            .iter()
            .filter(|r| r.status == CaseStatus::Failed)
            .collect()
    }

    fn error_of(&self, case_id: &str) -> String {
        let record = self
            .records
            .iter()
            .find(|r| r.key.case_id == case_id)
            .unwrap();
        record
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default()
    }
}

async fn run_with(engine: &Engine, body: &Value, observers: Observers) -> Outcome {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let run = engine
        .execute(&run_id, observers, RunControl::default())
        .await
        .unwrap();
    let query = CaseQuery {
        limit: 100_000,
        ..CaseQuery::default()
    };
    let records = engine.store().case_records(&run_id, &query).await.unwrap();
    let events = engine
        .store()
        .events_after(&run_id, 0, 1_000_000)
        .await
        .unwrap();
    Outcome {
        run,
        records,
        events,
    }
}

async fn run(engine: &Engine, body: &Value) -> Outcome {
    run_with(engine, body, Observers::default()).await
}

/// `n` arithmetic cases `c{i}` asking for `i + 1`.
fn cases(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 1")},
                   "expected_output": {"answer": (i + 1).to_string()}})
        })
        .collect()
}

/// Fast retry settings for tests.
fn fast() -> Value {
    json!({"initial_backoff_ms": 5, "max_backoff_ms": 20, "timeout_ms": 5000})
}

fn merge(mut base: Value, extra: &Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

/// An experiment with `openai/chat` on `fake`, `params` merged into the generator's.
fn experiment(fake: &FakeProvider, params: Value, cases: Vec<Value>) -> Value {
    let generator = merge(
        merge(
            json!({
                "base_url": fake.base_url,
                "model": "gen",
                "prompt": "What is {{ input.question }}? Answer as JSON {\"answer\": \"...\"}.",
                "output": "json",
            }),
            &fast(),
        ),
        &params,
    );
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": generator}},
        "evaluation": {"metrics": [{"name": "builtin/exact_match", "params": {"field": "answer"}}]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 4
    })
}

fn key(case_index: u64, case_id: &str) -> CaseKey {
    CaseKey {
        case_index,
        dataset_id: "d".into(),
        case_id: case_id.into(),
        seed: 1,
    }
}

fn judged_experiment(fake: &FakeProvider, extra_metric: bool) -> Value {
    let mut body = experiment(fake, json!({}), cases(2));
    body["evaluation"]["judges"] = json!([{
        "name": "openai/judge",
        "params": merge(json!({
            "base_url": fake.base_url, "model": "judge",
            "rubric": "Question: {{ input.question }}\nExpected: {{ expected_output.answer }}\nAnswer: {{ output.answer }}"
        }), &fast())
    }]);
    if extra_metric {
        body["evaluation"]["metrics"]
            .as_array_mut()
            .unwrap()
            .push(json!("builtin/contains"));
    }
    body
}
