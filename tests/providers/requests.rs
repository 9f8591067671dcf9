//! What a provider is sent and what its answers become: rendered messages, seeds, sampling
//! and usage, `n` and its fallbacks, parameter validation and the Ollama example.

use super::*;

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
    let mut body: Value = serde_json::from_str(include_str!("../../examples/ollama.json")).unwrap();
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
