//! `openai/chat` and `openai/judge` against a fake OpenAI-compatible server on a real
//! port, driven through the real engine: request contents, retries, Retry-After,
//! timeouts, malformed answers, `n` fallback, rate limits, the breaker, the response
//! cache, usage totals, verdict parsing and API-key handling.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use themis::components::{Outbound, ProviderSpec, Registry};
use themis::engine::{Engine, EngineConfig, RunControl, candidate_seed};
use themis::model::{
    CaseKey, CaseRecord, CaseStatus, RunEvent, RunRecord, RunStatus, Stage, Usage,
};
use themis::observe::{AttributeValue, Observers, SpanStatus};
use themis::store::{CaseQuery, MemoryStore};
use themis::telemetry::RecordingTracer;

use common::fake_provider::{FakeProvider, Reply, user_text};

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

// ---------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn requests_carry_rendered_messages_seed_and_sampling_and_usage_adds_up() {
    let fake = FakeProvider::replying(|body, _| arithmetic(body)).await;
    let body = experiment(
        &fake,
        json!({
            "prompt": null,
            "messages": [
                {"role": "system", "content": "You add numbers for case {{ case_id }} of {{ dataset_id }}."},
                {"role": "user", "content": "What is {{ input.question }}?{% if metadata.hint is defined %} Hint: {{ metadata.hint }}{% endif %}"}
            ],
            "temperature": 0.25, "top_p": 0.9, "max_tokens": 64, "stop": ["\n\n"],
            "extra_body": {"response_format": {"type": "json_object"}},
            "price": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}
        }),
        {
            let mut cases = cases(3);
            cases[1]["metadata"] = json!({"hint": "carry the one"});
            cases
        },
    );
    let tracer = Arc::new(RecordingTracer::new());
    let outcome = run_with(&engine(), &body, Observers::new(Vec::new(), tracer.clone())).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    assert_eq!(
        outcome.run.aggregates.metrics["builtin/exact_match"]
            .overall
            .mean,
        Some(1.0)
    );

    let mut bodies = fake.bodies();
    bodies.sort_by_key(|b| {
        b["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    });
    assert_eq!(bodies.len(), 3);
    let request = &bodies[1];
    assert_eq!(request["model"], "gen");
    assert_eq!(
        request["messages"],
        json!([
            {"role": "system", "content": "You add numbers for case c1 of d."},
            {"role": "user", "content": "What is 1 + 1? Hint: carry the one"}
        ])
    );
    assert_eq!(request["temperature"], 0.25);
    assert_eq!(request["top_p"], 0.9);
    assert_eq!(request["max_tokens"], 64);
    assert_eq!(request["stop"], json!(["\n\n"]));
    assert_eq!(request["response_format"], json!({"type": "json_object"}));
    assert!(
        request.get("n").is_none(),
        "n is only sent for several samples"
    );
    // The candidate seed, reduced to 31 bits for servers with narrow seeds.
    assert_eq!(
        request["seed"],
        candidate_seed(&key(1, "c1"), 0) & 0x7FFF_FFFF
    );
    assert_eq!(
        bodies[0]["messages"][1]["content"], "What is 0 + 1?",
        "no hint without metadata"
    );

    // Usage: one request per case, tokens as the server reported them, priced.
    let (prompt, completion) = fake.reported();
    let usage = outcome.run.usage;
    assert_eq!(
        (usage.requests, usage.prompt_tokens, usage.completion_tokens),
        (3, prompt, completion)
    );
    let expected_cost = prompt as f64 / 1000.0 + completion as f64 / 1000.0 * 2.0;
    assert!(
        (usage.cost_usd - expected_cost).abs() < 1e-8,
        "{} vs {expected_cost}",
        usage.cost_usd
    );
    let candidate = &outcome.records[0].candidates[0];
    assert_eq!(candidate.output, json!({"answer": "1"}));
    assert_eq!(candidate.raw_text.as_deref(), Some("{\"answer\":\"1\"}"));
    assert_eq!(candidate.finish_reason.as_deref(), Some("stop"));
    assert_eq!(candidate.usage.requests, 1);

    // One provider_call span per request, under the generation stage span.
    let spans = tracer.spans();
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "provider_call").collect();
    assert_eq!(calls.len(), 3);
    for call in calls {
        let parent = spans.iter().find(|s| Some(s.id) == call.parent).unwrap();
        assert_eq!(parent.name, "generation");
        assert_eq!(call.status, Some(SpanStatus::Ok));
        let attribute = |name: &str| {
            call.attributes
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            attribute("gen_ai.system"),
            Some(AttributeValue::from("openai"))
        );
        assert_eq!(
            attribute("gen_ai.request.model"),
            Some(AttributeValue::from("gen"))
        );
        assert_eq!(
            attribute("gen_ai.request.temperature"),
            Some(AttributeValue::Float(0.25))
        );
        // Token usage is known only after the call: set on the open span.
        let added = |name: &str| {
            call.added
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert!(
            matches!(added("gen_ai.usage.input_tokens"), Some(AttributeValue::Int(n)) if n > 0)
        );
        assert!(
            matches!(added("gen_ai.usage.output_tokens"), Some(AttributeValue::Int(n)) if n > 0)
        );
    }
    let total_input: i64 = spans
        .iter()
        .filter(|s| s.name == "provider_call")
        .filter_map(|s| {
            s.added
                .iter()
                .find(|(k, _)| k == "gen_ai.usage.input_tokens")
        })
        .map(|(_, v)| match v {
            AttributeValue::Int(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(total_input as u64, prompt);
}

#[tokio::test]
async fn server_error_bursts_are_retried_until_success() {
    // Each case's first two requests fail with 500, the third succeeds.
    let attempts: Arc<Mutex<std::collections::HashMap<String, usize>>> = Default::default();
    let counter = attempts.clone();
    let fake = FakeProvider::replying(move |body, _| {
        let mut attempts = counter.lock().unwrap();
        let seen = attempts.entry(user_text(body)).or_default();
        *seen += 1;
        if *seen <= 2 {
            Reply::Status(
                500,
                "{\"error\": {\"message\": \"overloaded\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let tracer = Arc::new(RecordingTracer::new());
    let outcome = run_with(
        &engine(),
        &experiment(&fake, json!({}), cases(4)),
        Observers::new(Vec::new(), tracer.clone()),
    )
    .await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    assert_eq!(fake.hits(), 12);
    // Each HTTP request is a span; the failed ones carry the reason.
    let spans = tracer.spans();
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "provider_call").collect();
    assert_eq!(calls.len(), 12);
    let failed: Vec<_> = calls
        .iter()
        .filter(|s| s.status == Some(SpanStatus::Error))
        .collect();
    assert_eq!(failed.len(), 8);
    assert!(failed[0].error.as_deref().unwrap().contains("HTTP 500"));
    // Every HTTP request is counted, retries included.
    assert_eq!(outcome.run.usage.requests, 12);
    let retries = outcome.events_of("provider_retry");
    assert_eq!(retries.len(), 8);
    let event = serde_json::to_value(retries[0]).unwrap();
    assert!(
        event["reason"].as_str().unwrap().contains("HTTP 500"),
        "{event}"
    );
    assert_eq!(event["provider"], format!("gen @ {}", fake.base_url));
    assert!(attempts.lock().unwrap().values().all(|n| *n == 3));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeProvider::replying(|body, index| {
        if index == 0 {
            Reply::Status(429, "{\"error\": \"slow down\"}".into(), Some("1"))
        } else {
            arithmetic(body)
        }
    })
    .await;
    let outcome = run(&engine(), &experiment(&fake, json!({}), cases(1))).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 2);
    let waited = arrivals[1] - arrivals[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let retry = serde_json::to_value(outcome.events_of("provider_retry")[0]).unwrap();
    assert!(retry["delay_ms"].as_u64().unwrap() >= 1000, "{retry}");
    assert!(retry["reason"].as_str().unwrap().contains("429"), "{retry}");
}

#[tokio::test]
async fn client_errors_fail_the_case_without_retries_and_the_run_goes_on() {
    let fake = FakeProvider::replying(|body, _| {
        if user_text(body).contains("1 + 1") {
            Reply::Status(
                401,
                "{\"error\": {\"message\": \"Invalid authentication\", \"code\": \"invalid_api_key\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let outcome = run(
        &engine_for(&fake, None),
        &experiment(&fake, json!({}), cases(3)),
    )
    .await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 3, "a 401 is not retried");
    assert_eq!(outcome.failed().len(), 1);
    let failed = outcome.failed()[0];
    assert_eq!(failed.key.case_id, "c1");
    assert_eq!(failed.error.as_ref().unwrap().stage, Stage::Generation);
    let message = outcome.error_of("c1");
    assert!(
        message.contains("HTTP 401") && message.contains("Invalid authentication"),
        "{message}"
    );
    assert!(outcome.events_of("provider_retry").is_empty());
    assert_eq!(outcome.run.progress.completed, 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_fail() {
    let fake = FakeProvider::replying(|body, _| {
        Reply::After(Duration::from_secs(5), Box::new(arithmetic(body)))
    })
    .await;
    let started = Instant::now();
    let outcome = run(
        &engine(),
        &experiment(
            &fake,
            json!({"timeout_ms": 150, "max_retries": 2}),
            cases(1),
        ),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 3);
    let message = outcome.error_of("c0");
    assert!(
        message.contains("timed out after 150 ms") && message.contains("3 attempts"),
        "{message}"
    );
    assert_eq!(outcome.events_of("provider_retry").len(), 2);
}

#[tokio::test]
async fn malformed_answers_are_case_errors() {
    let fake = FakeProvider::replying(|body, _| {
        if user_text(body).contains("0 + 1") {
            Reply::Malformed
        } else {
            // Valid API JSON, but the model's text is not the JSON asked for.
            Reply::Answer(vec!["the answer is two".into()])
        }
    })
    .await;
    let outcome = run(&engine(), &experiment(&fake, json!({}), cases(2))).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 2, "malformed answers are not retried");
    let message = outcome.error_of("c0");
    // An arbitrary body is never quoted.
    assert!(
        message.contains("not JSON") && !message.contains("definitely not json"),
        "{message}"
    );
    let message = outcome.error_of("c1");
    assert!(
        message.contains("answer is not JSON") && message.contains("the answer is two"),
        "{message}"
    );
}

#[tokio::test]
async fn samples_use_n_when_supported() {
    let fake = FakeProvider::replying(|body, _| arithmetic(body)).await;
    let mut body = experiment(&fake, json!({"temperature": 0.8}), cases(2));
    body["generation"]["candidate_policy"] = json!({"num_samples": 3});
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    assert_eq!(fake.hits(), 2, "one request per case");
    for request in fake.bodies() {
        assert_eq!(request["n"], 3);
    }
    for record in &outcome.records {
        assert_eq!(record.candidates.len(), 3);
        let requests: u64 = record.candidates.iter().map(|c| c.usage.requests).sum();
        assert_eq!(requests, 1);
    }
    assert_eq!(outcome.run.usage.requests, 2);
}

#[tokio::test]
async fn rejected_n_falls_back_to_one_request_per_sample_and_is_remembered() {
    let fake = FakeProvider::replying(|body, _| {
        if body.get("n").is_some() {
            Reply::Status(
                400,
                "{\"error\": {\"message\": \"'n' is not supported\", \"param\": \"n\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let mut body = experiment(&fake, json!({}), cases(2));
    body["generation"]["candidate_policy"] = json!({"num_samples": 3});
    body["concurrency"] = json!(1);
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    for record in &outcome.records {
        assert_eq!(record.candidates.len(), 3);
        assert!(record.candidates.iter().all(|c| c.error.is_none()));
    }
    let with_n = fake
        .bodies()
        .iter()
        .filter(|b| b.get("n").is_some())
        .count();
    assert_eq!(with_n, 1, "the endpoint remembers that n is unsupported");
    assert_eq!(fake.hits(), 7);
    // Each sample used its own candidate seed.
    let seeds: std::collections::HashSet<u64> = fake
        .bodies()
        .iter()
        .filter(|b| b.get("n").is_none())
        .map(|b| b["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 6);
    // The rejected request is counted too.
    assert_eq!(outcome.run.usage.requests, 7);
}

#[tokio::test]
async fn an_unexplained_400_on_n_is_tried_without_n() {
    // Like llama.cpp's server: n is refused without being named.
    let fake = FakeProvider::replying(|body, _| {
        if body.get("n").is_some() {
            Reply::Status(
                400,
                "{\"error\": {\"message\": \"bad request\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let mut body = experiment(&fake, json!({}), cases(2));
    body["generation"]["candidate_policy"] = json!({"num_samples": 2});
    body["concurrency"] = json!(1);
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let with_n = fake
        .bodies()
        .iter()
        .filter(|b| b.get("n").is_some())
        .count();
    assert_eq!(
        with_n, 1,
        "once single requests worked, n is not tried again"
    );
    assert_eq!(fake.hits(), 5);

    // A request that is bad whatever n is fails the case, and n stays in use.
    let fake = FakeProvider::replying(|_, _| {
        Reply::Status(
            400,
            "{\"error\": {\"message\": \"context too long\"}}".into(),
            None,
        )
    })
    .await;
    let mut body = experiment(&fake, json!({}), cases(2));
    body["generation"]["candidate_policy"] = json!({"num_samples": 2});
    body["concurrency"] = json!(1);
    let outcome = run(&engine_for(&fake, None), &body).await;
    assert_eq!(outcome.failed().len(), 2);
    assert!(outcome.error_of("c0").contains("context too long"));
    let with_n = fake
        .bodies()
        .iter()
        .filter(|b| b.get("n").is_some())
        .count();
    assert_eq!(with_n, 2);
}

#[tokio::test]
async fn fewer_choices_than_n_falls_back() {
    // A server that ignores n and always answers with one choice.
    let fake = FakeProvider::replying(|body, _| {
        let mut one = body.clone();
        one.as_object_mut().unwrap().remove("n");
        arithmetic(&one)
    })
    .await;
    let mut body = experiment(&fake, json!({}), cases(1));
    body["generation"]["candidate_policy"] = json!({"num_samples": 2});
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    assert_eq!(outcome.records[0].candidates.len(), 2);
    assert_eq!(fake.hits(), 3);
    assert_eq!(outcome.run.usage.requests, 3);
}

#[tokio::test]
async fn rate_limits_pace_requests_and_are_reported() {
    let fake = FakeProvider::replying(|body, _| arithmetic(body)).await;
    let mut body = experiment(&fake, json!({"requests_per_minute": 600}), cases(20));
    body["concurrency"] = json!(20);
    let started = Instant::now();
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    // 10 per second with a burst of 10: the 20th request cannot go out before 1 s after
    // the bucket was filled (which is after `started`). Measured from `started`, not from
    // the first arrival: that one may come late on a loaded machine while the bucket
    // already refills, which made a first-to-last bound flaky.
    let arrivals = fake.arrivals();
    let last = *arrivals.iter().max().unwrap() - started;
    assert!(last >= Duration::from_millis(990), "{last:?}");
    let waits = outcome.events_of("provider_rate_limited");
    assert!(waits.len() >= 8, "{} waits reported", waits.len());
    let wait = serde_json::to_value(waits[0]).unwrap();
    assert!(wait["wait_ms"].as_u64().unwrap() > 50, "{wait}");
}

#[tokio::test]
async fn adaptive_concurrency_never_exceeds_max_concurrency() {
    let fake = FakeProvider::replying(|body, _| {
        Reply::After(Duration::from_millis(30), Box::new(arithmetic(body)))
    })
    .await;
    let mut body = experiment(
        &fake,
        json!({"adaptive_concurrency": true, "max_concurrency": 3}),
        cases(12),
    );
    body["concurrency"] = json!(12);
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let max = fake.max_in_flight();
    assert!((1..=3).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn circuit_breaker_opens_and_fails_fast() {
    let fake = FakeProvider::replying(|_, index| {
        Reply::Status(502, format!("bad gateway #{index}"), None)
    })
    .await;
    let mut body = experiment(
        &fake,
        json!({"max_retries": 0, "breaker_failures": 3, "breaker_cooldown_ms": 60000}),
        cases(6),
    );
    body["concurrency"] = json!(1);
    let outcome = run(&engine(), &body).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(outcome.failed().len(), 6);
    assert_eq!(fake.hits(), 3, "the breaker stops calls after 3 failures");
    let message = outcome.error_of("c5");
    assert!(
        message.contains("circuit breaker open") && message.contains("HTTP 502"),
        "{message}"
    );
}

#[tokio::test]
async fn identical_failures_stop_retrying_early() {
    let fake = FakeProvider::replying(|_, _| {
        Reply::Status(503, "{\"error\": \"model is loading\"}".into(), None)
    })
    .await;
    let outcome = run(
        &engine_for(&fake, None),
        &experiment(&fake, json!({"max_retries": 10}), cases(1)),
    )
    .await;
    assert_eq!(fake.hits(), 3);
    let message = outcome.error_of("c0");
    assert!(
        message.contains("HTTP 503")
            && message.contains("model is loading")
            && message.contains("same failure 3 times"),
        "{message}"
    );
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

#[tokio::test]
async fn cached_responses_make_new_runs_of_the_same_requests_free() {
    let fake = FakeProvider::replying(|body, _| {
        if body["model"] == "judge" {
            Reply::Answer(vec!["{\"score\": 5, \"rationale\": \"correct\"}".into()])
        } else {
            arithmetic(body)
        }
    })
    .await;
    let engine = engine();
    let first = run(&engine, &judged_experiment(&fake, false)).await;
    assert!(first.failed().is_empty(), "{:?}", first.records);
    assert_eq!(fake.hits(), 4);
    assert_eq!(first.run.usage.requests, 4);

    // Another run (a new metric makes a new run id) sends the same requests: all cached.
    let second = run(&engine, &judged_experiment(&fake, true)).await;
    assert_ne!(first.run.run_id, second.run.run_id);
    assert!(second.failed().is_empty(), "{:?}", second.records);
    assert_eq!(fake.hits(), 4, "no request reached the provider");
    assert_eq!(second.run.usage.requests, 0);
    assert_eq!(
        (
            second.run.usage.prompt_tokens,
            second.run.usage.completion_tokens
        ),
        (
            first.run.usage.prompt_tokens,
            first.run.usage.completion_tokens
        ),
        "cache hits report the cached token counts"
    );
    assert_eq!(
        second.records[0].judgments[0].score,
        first.records[0].judgments[0].score
    );

    // A rejudge with the same judge (and another metric) is served from the cache too.
    let evaluation = json!({
        "metrics": ["builtin/token_f1"],
        "judges": judged_experiment(&fake, false)["evaluation"]["judges"].clone()
    });
    let (evaluation, _, runtime) =
        themis::engine::parse_evaluation(&evaluation, engine.registry()).unwrap();
    let rejudge = engine
        .submit_rejudge(&first.run.run_id, &evaluation, &runtime)
        .await
        .unwrap()
        .into_record()
        .run_id;
    let rejudged = engine
        .execute(&rejudge, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(rejudged.status, RunStatus::Completed);
    assert_eq!(
        rejudged.aggregates.metrics["openai/judge"].overall.mean,
        Some(1.0)
    );
    assert_eq!(fake.hits(), 4, "the rejudge sent nothing");
    assert_eq!(rejudged.usage.requests, 0);

    // With the cache off (and another metric, for a new run id), requests are sent again.
    let mut uncached = judged_experiment(&fake, true);
    uncached["cache"] = json!(false);
    uncached["evaluation"]["metrics"]
        .as_array_mut()
        .unwrap()
        .push(json!("builtin/token_f1"));
    let third = run(&engine, &uncached).await;
    assert_eq!(third.run.usage.requests, 4);
    assert_eq!(fake.hits(), 8);
}

#[tokio::test]
async fn judge_verdicts_are_parsed_from_json_score_lines_and_pass_fail() {
    let fake = FakeProvider::replying(|body, _| {
        let text = user_text(body);
        let case = text.lines().next().unwrap_or("").to_owned();
        let answer = match (body["model"].as_str().unwrap(), case.as_str()) {
            ("scale", "case json") => "{\"score\": 4, \"rationale\": \"nearly right\"}",
            ("scale", "case line") => "The sum is right.\nScore: 5",
            ("scale", _) => "I rather like this answer.",
            ("pf", "case json") => "{\"verdict\": \"FAIL\", \"rationale\": \"wrong\"}",
            ("pf", "case line") => "Checked the arithmetic.\nPASS",
            ("pf", _) => "FAIL",
            _ => return arithmetic(body),
        };
        Reply::Answer(vec![answer.into()])
    })
    .await;
    let judge = |id: &str, extra: Value| {
        json!({"name": "openai/judge", "id": id, "params": merge(merge(json!({
            "base_url": fake.base_url, "model": id,
            "rubric": "case {{ case_id }}\nQ: {{ input.question }} A: {{ output | tojson }}"
        }), &fast()), &extra)})
    };
    let cases = vec![
        json!({"case_id": "json", "input": {"question": "1 + 1"}, "expected_output": {"answer": "2"}}),
        json!({"case_id": "line", "input": {"question": "2 + 2"}, "expected_output": {"answer": "4"}}),
        json!({"case_id": "garbage", "input": {"question": "3 + 3"}, "expected_output": {"answer": "6"}}),
    ];
    let mut body = experiment(&fake, json!({}), cases);
    body["evaluation"]["judges"] = json!([
        judge("scale", json!({"scale": {"min": 1, "max": 5}})),
        judge("pf", json!({"pass_fail": true}))
    ]);
    let outcome = run(&engine(), &body).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    let judgment = |case: &str, judge: &str| {
        let record = outcome
            .records
            .iter()
            .find(|r| r.key.case_id == case)
            .unwrap();
        record
            .judgments
            .iter()
            .find(|j| j.judge_id == judge)
            .unwrap()
            .clone()
    };

    let j = judgment("json", "scale");
    assert_eq!(j.score, Some(0.75));
    assert_eq!(j.passed, Some(true));
    assert_eq!(j.rationale.as_deref(), Some("nearly right"));
    assert_eq!(j.details["raw_score"], 4.0);
    assert_eq!(j.details["scale"], json!({"min": 1.0, "max": 5.0}));
    assert_eq!(j.usage.requests, 1);
    let j = judgment("json", "pf");
    assert_eq!((j.score, j.passed), (Some(0.0), Some(false)));
    assert_eq!(j.rationale.as_deref(), Some("wrong"));

    let j = judgment("line", "scale");
    assert_eq!((j.score, j.passed), (Some(1.0), Some(true)));
    assert_eq!(j.rationale.as_deref(), Some("The sum is right."));
    let j = judgment("line", "pf");
    assert_eq!((j.score, j.passed), (Some(1.0), Some(true)));

    let j = judgment("garbage", "scale");
    assert_eq!(j.score, None);
    let error = j.error.unwrap();
    assert!(
        error.contains("unparseable verdict") && error.contains("I rather like this answer."),
        "{error}"
    );
    // The other judge of the case still ran; the case failed at judging.
    assert_eq!(judgment("garbage", "pf").score, Some(0.0));
    let garbage = outcome
        .records
        .iter()
        .find(|r| r.key.case_id == "garbage")
        .unwrap();
    assert_eq!(garbage.status, CaseStatus::Failed);
    assert_eq!(garbage.error.as_ref().unwrap().stage, Stage::Judging);
    assert_eq!(outcome.run.aggregates.metrics["scale"].overall.failures, 1);
}

#[tokio::test]
async fn judge_samples_are_averaged_with_a_majority_verdict() {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let fake = FakeProvider::replying(move |body, _| {
        if body["model"] != "judge" {
            return arithmetic(body);
        }
        // Two of the three samples pass.
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Answer(vec!["PASS".into()])
        } else {
            Reply::Answer(vec!["FAIL".into()])
        }
    })
    .await;
    let mut body = experiment(&fake, json!({}), cases(1));
    body["evaluation"]["judges"] = json!([{"name": "openai/judge", "params": merge(json!({
        "base_url": fake.base_url, "model": "judge", "pass_fail": true, "samples": 3,
        "rubric": "Is {{ output.answer }} the sum in {{ input.question }}?"
    }), &fast())}]);
    let outcome = run(&engine(), &body).await;
    let j = &outcome.records[0].judgments[0];
    assert!(j.error.is_none(), "{j:?}");
    assert!((j.score.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(j.passed, Some(true));
    assert_eq!(j.usage.requests, 3);
    assert_eq!(j.details["samples"].as_array().unwrap().len(), 3);
    // Three distinct seeds, the first being the case seed.
    let seeds: std::collections::HashSet<u64> = fake
        .bodies()
        .iter()
        .filter(|b| b["model"] == "judge")
        .map(|b| b["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 3);
    assert!(seeds.contains(&1));
}

#[tokio::test]
async fn declared_keys_are_sent_to_their_provider_and_never_leak() {
    let fake = FakeProvider::replying(|body, _| {
        if user_text(body).contains("1 + 1") {
            Reply::Status(
                401,
                "{\"error\": {\"message\": \"Incorrect API key\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let secret = format!("sk-themis-test-{}", uuid::Uuid::new_v4().simple());
    let outcome = run(
        &engine_for(&fake, Some(&secret)),
        &experiment(&fake, json!({}), cases(2)),
    )
    .await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    let authorizations = fake.authorizations();
    assert_eq!(authorizations.len(), 2);
    assert!(
        authorizations
            .iter()
            .all(|a| a.as_deref() == Some(format!("Bearer {secret}").as_str())),
        "the key is sent as a bearer token"
    );
    assert_eq!(outcome.failed().len(), 1);
    assert!(outcome.error_of("c1").contains("HTTP 401"));

    // A provider declared without a key gets no Authorization header.
    let before = fake.hits();
    let keyless = run(
        &engine_for(&fake, None),
        &experiment(&fake, json!({"model": "other"}), cases(1)),
    )
    .await;
    assert_eq!(keyless.run.status, RunStatus::Completed);
    assert_eq!(fake.authorizations()[before..], [None]);

    // The key is nowhere in what was stored.
    for stored in [
        serde_json::to_string(&outcome.run).unwrap(),
        serde_json::to_string(&outcome.records).unwrap(),
        serde_json::to_string(&outcome.events).unwrap(),
    ] {
        assert!(!stored.contains(&secret), "secret leaked: {stored}");
    }
}

#[tokio::test]
async fn echoed_keys_are_redacted_from_errors() {
    let secret = format!("sk-echo-{}", uuid::Uuid::new_v4().simple());
    // A provider that quotes the rejected key back in its error body.
    let fake = {
        let secret = secret.clone();
        FakeProvider::replying(move |_, _| {
            Reply::Status(
                401,
                format!("{{\"error\": {{\"message\": \"Incorrect API key provided: {secret}\"}}}}"),
                None,
            )
        })
        .await
    };
    let outcome = run(
        &engine_for(&fake, Some(&secret)),
        &experiment(&fake, json!({}), cases(1)),
    )
    .await;
    let message = outcome.error_of("c0");
    assert!(
        message.contains("HTTP 401") && message.contains("[redacted]"),
        "{message}"
    );
    for stored in [
        serde_json::to_string(&outcome.records).unwrap(),
        serde_json::to_string(&outcome.events).unwrap(),
    ] {
        assert!(!stored.contains(&secret), "secret leaked: {stored}");
    }
}

#[tokio::test]
async fn the_ollama_example_runs_against_a_compatible_server() {
    let fake = FakeProvider::replying(|body, _| {
        let n = body["n"].as_u64().unwrap_or(1) as usize;
        if body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .contains("impartial evaluator")
        {
            return Reply::Answer(vec!["{\"score\": 5, \"rationale\": \"equal\"}".into(); n]);
        }
        let answer = match user_text(body).as_str() {
            "What is 2 + 2?" => json!(4),
            "What is 10 - 3?" => json!(7),
            "What is 6 * 7?" => json!(42),
            "What is 3 * (4 - 1)?" => json!(9),
            "What is -2 + 10 / 4?" => json!(0.5),
            other => json!(other),
        };
        Reply::Answer(vec![json!({"answer": answer}).to_string(); n])
    })
    .await;
    let mut body: Value = serde_json::from_str(include_str!("../examples/ollama.json")).unwrap();
    body["generation"]["generator"]["params"]["base_url"] = json!(fake.base_url);
    body["evaluation"]["judges"][0]["params"]["base_url"] = json!(fake.base_url);
    let outcome = run(&engine(), &body).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    for metric in ["builtin/exact_match", "builtin/numeric_match", "llm_judge"] {
        assert_eq!(
            outcome.run.aggregates.metrics[metric].overall.mean,
            Some(1.0),
            "{metric}"
        );
    }
    // Three samples per case in one request with n, plus one judge request.
    assert_eq!(fake.hits(), 10);
    assert!(fake.bodies().iter().all(|b| {
        b["response_format"]["type"] == "json_object"
            || b["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("impartial")
    }));
}

#[tokio::test]
async fn invalid_params_are_rejected_with_every_problem() {
    let engine = engine();
    let body = json!({
        "generation": {"generator": {"name": "openai/chat", "params": {
            "base_url": "localhost:11434", "prompt": "{{ input.question }", "temperature": 9,
            "max_retries": -1, "api_key": "sk-live-123", "mystery": true
        }}},
        "evaluation": {"judges": [{"name": "openai/judge", "params": {
            "base_url": "http://h/v1", "model": "m", "rubric": "{{ answer }}"
        }}]},
        "datasets": [{"dataset_id": "d", "cases": cases(1)}],
        "seeds": [1]
    });
    let Err(themis::engine::EngineError::Invalid(errors)) = engine.parse(&body) else {
        panic!("expected invalid");
    };
    let text = format!("{errors:?}");
    for expected in [
        "base_url",
        "model",
        "prompt",
        "temperature",
        "max_retries",
        "api_key",
        "mystery",
        "rubric",
        "answer",
    ] {
        assert!(text.contains(expected), "{expected} missing in {text}");
    }
    assert!(!text.contains("sk-live-123"), "{text}");
}

#[test]
fn usage_is_serialised_without_cost_when_zero() {
    let usage = Usage {
        requests: 1,
        ..Usage::default()
    };
    assert!(
        serde_json::to_value(usage)
            .unwrap()
            .get("cost_usd")
            .is_none()
    );
}
