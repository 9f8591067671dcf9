//! `openai/agent` against the fake provider scripted to call tools: conversations from
//! the case, mock functions answering from the case, parallel calls, tool errors, each
//! limit as a typed outcome, transcripts in the record, the cache replaying turns, and
//! spans per tool call.

use super::*;
use crate::common::fake_provider::{tool_messages, turn};
use themis::engine::EngineError;
use themis::model::{AgentOutcome, FieldError};

/// The field errors of a refused definition.
fn refused(engine: &Engine, body: &Value) -> Vec<FieldError> {
    match engine.parse(body) {
        Err(EngineError::Invalid(errors)) => errors,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    }
}

/// An agent experiment on `fake` with `params` merged into the generator's; one case
/// asking for the weather, whose mock function results are given.
fn agent_experiment(fake: &FakeProvider, params: Value) -> Value {
    let generator = merge(
        merge(
            json!({
                "base_url": fake.base_url,
                "model": "agent",
                "messages": [{"role": "system", "content": "You answer with tools."}],
                "conversation": "input.messages",
                "functions": [
                    {"name": "get_weather", "description": "Weather in a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    {"name": "get_time"}
                ]
            }),
            &fast(),
        ),
        &params,
    );
    json!({
        "generation": {"generator": {"name": "openai/agent", "params": generator}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{
            "case_id": "paris",
            "input": {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Weather and time in Paris?"}
                ],
                "tool_results": {"get_weather": "sunny", "get_time": {"hour": 12}}
            },
            "expected_output": "sunny at 12"
        }]}],
        "seeds": [1]
    })
}

/// Calls both tools at once on the first turn, answers from their results on the next.
fn weather_script(body: &Value, _: usize) -> Reply {
    if tool_messages(body).is_empty() {
        Reply::ToolCalls(
            vec![
                ("get_weather", json!({"city": "Paris"})),
                ("get_time", json!({"city": "Paris"})),
            ],
            5,
        )
    } else {
        let results = tool_messages(body);
        let hour: Value = serde_json::from_str(&results[1].1).unwrap();
        Reply::text(format!("{} at {}", results[0].1, hour["hour"]), 5)
    }
}

#[tokio::test]
async fn an_agent_calls_mock_functions_in_parallel_and_its_transcript_is_recorded() {
    let fake = FakeProvider::replying(weather_script).await;
    let outcome = run(&engine(), &agent_experiment(&fake, json!({}))).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let record = &outcome.records[0];
    assert_eq!(record.candidates[0].output, json!("sunny at 12"));
    assert_eq!(record.scores[0].score, Some(1.0));

    // The definition's messages, then the case's conversation; the functions offered.
    let bodies = fake.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[0]["messages"],
        json!([
            {"role": "system", "content": "You answer with tools."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Weather and time in Paris?"}
        ])
    );
    assert_eq!(bodies[0]["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(bodies[0]["tools"][1]["function"]["name"], "get_time");
    // The second turn carries the assistant's calls and one tool message per call.
    let messages = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 7);
    assert_eq!(messages[4]["tool_calls"][1]["id"], "call_1_1");
    assert_eq!(
        tool_messages(&bodies[1]),
        [
            ("call_1_0".to_owned(), "sunny".to_owned()),
            ("call_1_1".to_owned(), "{\"hour\":12}".to_owned())
        ]
    );

    let transcript = record.candidates[0].transcript.as_ref().unwrap();
    assert_eq!(transcript.outcome, AgentOutcome::Answered);
    assert_eq!(transcript.turns.len(), 2);
    let first = &transcript.turns[0];
    assert_eq!(first.tool_calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(first.tool_results[0].content, "sunny");
    assert_eq!(first.tool_results[0].source.as_deref(), Some("functions"));
    assert_eq!(first.usage.requests, 1);
    assert_eq!(transcript.turns[1].content, "sunny at 12");
    // Usage adds up every turn.
    assert_eq!(record.usage.requests, 2);
    assert_eq!(record.usage.prompt_tokens, 10);
    assert_eq!(
        outcome.run.aggregates.agent_outcomes,
        [("answered".to_owned(), 1)].into()
    );
}

#[tokio::test]
async fn tool_errors_and_unknown_tools_go_back_to_the_model() {
    let fake = FakeProvider::replying(|body, _| {
        if turn(body) == 1 {
            Reply::ToolCalls(
                vec![("launch_rockets", json!({})), ("get_time", json!({}))],
                1,
            )
        } else {
            Reply::text("sorry", 1)
        }
    })
    .await;
    let mut body = agent_experiment(&fake, json!({}));
    // This case gives no result for get_time.
    body["datasets"][0]["cases"][0]["input"]["tool_results"] = json!({"get_weather": "rain"});
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let results = tool_messages(&fake.bodies()[1]);
    assert!(
        results[0]
            .1
            .starts_with("unknown tool `launch_rockets`; available tools: get_weather, get_time"),
        "{results:?}"
    );
    assert!(
        results[1].1.contains("no result for `get_time`"),
        "{results:?}"
    );
    let transcript = outcome.records[0].candidates[0]
        .transcript
        .as_ref()
        .unwrap();
    assert!(transcript.turns[0].tool_results.iter().all(|r| r.is_error));
    assert_eq!(transcript.outcome, AgentOutcome::Answered);
}

/// The fake never stops calling a tool.
async fn relentless(tokens: u64, calls: usize) -> FakeProvider {
    FakeProvider::replying(move |_, _| {
        Reply::ToolCalls(
            vec![("get_weather", json!({"city": "Oslo"})); calls],
            tokens,
        )
    })
    .await
}

#[tokio::test]
async fn each_limit_ends_the_loop_with_its_outcome_and_the_case_completes() {
    for (params, calls_per_turn, outcome_name, requests) in [
        (json!({"max_turns": 3}), 1, "max_turns", 3),
        (json!({"max_tool_calls": 3}), 2, "max_tool_calls", 2),
        (json!({"token_limit": 50}), 1, "token_limit", 3),
        (
            json!({"cost_limit_usd": 0.05, "price": {"prompt_per_1k": 1, "completion_per_1k": 1}}),
            1,
            "cost_limit",
            3,
        ),
    ] {
        let fake = relentless(10, calls_per_turn).await;
        let outcome = run(&engine(), &agent_experiment(&fake, params.clone())).await;
        assert_eq!(outcome.run.status, RunStatus::Completed, "{params}");
        assert!(
            outcome.failed().is_empty(),
            "{params}: {:?}",
            outcome.records
        );
        assert_eq!(fake.hits(), requests, "{params}");
        let transcript = outcome.records[0].candidates[0]
            .transcript
            .as_ref()
            .unwrap();
        assert_eq!(transcript.outcome.as_str(), outcome_name, "{params}");
        assert_eq!(transcript.turns.len(), requests, "{params}");
        // The last turn's calls were not run: no later turn could see them.
        assert!(transcript.turns.last().unwrap().tool_results.is_empty());
        assert_eq!(
            outcome.run.aggregates.agent_outcomes,
            [(outcome_name.to_owned(), 1)].into(),
            "{params}"
        );
        // Scored like any output (the empty last answer does not match).
        assert_eq!(outcome.records[0].scores[0].score, Some(0.0));
    }
}

#[tokio::test]
async fn the_time_limit_cuts_a_slow_model_call_short() {
    let fake = FakeProvider::replying(|_, _| {
        Reply::After(Duration::from_secs(30), Box::new(Reply::text("late", 1)))
    })
    .await;
    let started = Instant::now();
    let outcome = run(
        &engine(),
        &agent_experiment(&fake, json!({"time_limit_s": 0.3})),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let transcript = outcome.records[0].candidates[0]
        .transcript
        .as_ref()
        .unwrap();
    assert_eq!(transcript.outcome, AgentOutcome::TimeLimit);
    assert!(transcript.turns.is_empty());
}

#[tokio::test]
async fn limits_above_the_operators_caps_and_undeclared_mcp_servers_are_refused() {
    let fake = relentless(1, 1).await;
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin_with(Outbound {
            agent_caps: themis::components::AgentCaps::parse("max_turns=5").unwrap(),
            ..Outbound::local()
        })),
        EngineConfig::default(),
    );
    let body = agent_experiment(
        &fake,
        json!({"max_turns": 6, "mcp_servers": ["search"], "cost_limit_usd": 1}),
    );
    let errors = refused(&engine, &body);
    let text = format!("{errors:?}");
    assert!(
        text.contains("generation.generator.params.max_turns"),
        "{text}"
    );
    assert!(text.contains("--agent-caps max_turns"), "{text}");
    assert!(
        text.contains("unknown MCP server `search`; declared: none"),
        "{text}"
    );
    assert!(text.contains("cost_limit_usd"), "{text}");
}

#[tokio::test]
async fn malformed_conversations_are_refused_naming_the_case_and_message() {
    let fake = relentless(1, 1).await;
    let mut body = agent_experiment(&fake, json!({}));
    body["datasets"][0]["cases"][0]["input"]["messages"][2] = json!({"role": "user"});
    let errors = refused(&engine(), &body);
    let paths: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    assert_eq!(paths, ["datasets[0].cases[0].input.messages[2].content"]);
}

#[tokio::test]
async fn a_rerun_replays_every_cached_turn_at_no_cost() {
    let fake = FakeProvider::replying(weather_script).await;
    let engine = engine();
    let first = run(&engine, &agent_experiment(&fake, json!({}))).await;
    assert_eq!(first.run.usage.requests, 2);
    // Another metric: another run, the same requests.
    let mut body = agent_experiment(&fake, json!({}));
    body["evaluation"]["metrics"] = json!(["builtin/contains"]);
    let again = run(&engine, &body).await;
    assert_eq!(fake.hits(), 2, "no request the second time");
    assert_eq!(again.run.usage.requests, 0);
    // The same turns, each answered from the cache (nothing sent, nothing paid).
    let turns = |outcome: &super::Outcome| -> Vec<themis::model::Turn> {
        let transcript = outcome.records[0].candidates[0].transcript.clone().unwrap();
        transcript
            .turns
            .into_iter()
            .map(|t| themis::model::Turn {
                latency_ms: 0,
                tool_results: t
                    .tool_results
                    .into_iter()
                    .map(|r| themis::model::ToolResultRecord {
                        duration_ms: 0,
                        ..r
                    })
                    .collect(),
                ..t
            })
            .collect()
    };
    let expected: Vec<_> = turns(&first)
        .into_iter()
        .map(|t| themis::model::Turn {
            usage: Usage {
                requests: 0,
                ..t.usage
            },
            ..t
        })
        .collect();
    assert_eq!(turns(&again), expected);
}

#[tokio::test]
async fn every_tool_call_has_an_execute_tool_span_beside_the_model_calls() {
    let fake = FakeProvider::replying(weather_script).await;
    let tracer = Arc::new(RecordingTracer::new());
    let outcome = run_with(
        &engine(),
        &agent_experiment(&fake, json!({})),
        Observers::new(Vec::new(), tracer.clone()),
    )
    .await;
    assert!(outcome.failed().is_empty());
    let spans = tracer.spans();
    // One `chat` span per model call under the generation span, the HTTP request under it.
    let chats: Vec<_> = spans.iter().filter(|s| s.name == "chat").collect();
    assert_eq!(chats.len(), 2);
    for chat in &chats {
        let parent = spans.iter().find(|s| Some(s.id) == chat.parent).unwrap();
        assert_eq!(parent.name, "generation");
        let attribute = |name: &str| {
            chat.attributes
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            attribute("gen_ai.operation.name"),
            Some(AttributeValue::from("chat"))
        );
        assert_eq!(
            attribute("gen_ai.request.model"),
            Some(AttributeValue::from("agent"))
        );
        let tokens = chat
            .added
            .iter()
            .find(|(k, _)| k == "gen_ai.usage.input_tokens")
            .map(|(_, v)| v.clone());
        assert_eq!(tokens, Some(AttributeValue::from(5u64)));
    }
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "provider_call").collect();
    assert_eq!(calls.len(), 2);
    for call in calls {
        let parent = spans.iter().find(|s| Some(s.id) == call.parent).unwrap();
        assert_eq!(parent.name, "chat");
    }
    let tools: Vec<_> = spans.iter().filter(|s| s.name == "execute_tool").collect();
    assert_eq!(tools.len(), 2);
    for span in tools {
        let parent = spans.iter().find(|s| Some(s.id) == span.parent).unwrap();
        assert_eq!(parent.name, "generation");
        let attribute = |name: &str| {
            span.attributes
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            attribute("gen_ai.operation.name"),
            Some(AttributeValue::from("execute_tool"))
        );
        assert!(attribute("gen_ai.tool.call.id").is_some());
        assert!(matches!(
            attribute("gen_ai.tool.name"),
            Some(AttributeValue::String(name)) if name == "get_weather" || name == "get_time"
        ));
        assert_eq!(span.status, Some(SpanStatus::Ok));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_conversations_are_checked_on_upload_and_transcripts_come_back_everywhere() {
    let fake = FakeProvider::replying(weather_script).await;
    let server = crate::common::TestServer::start("memory", Registry::builtin()).await;
    let case = |messages: Value| {
        json!({"case_id": "paris", "input": {"messages": messages,
               "tool_results": {"get_weather": "sunny", "get_time": {"hour": 12}}},
               "expected_output": "sunny at 12"})
        .to_string()
            + "\n"
    };
    // A malformed message: 422 naming the line and the message, nothing stored.
    let bad = case(json!([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]));
    let (status, error) = server
        .put("/datasets/weather", "application/x-ndjson", bad)
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(
        error["error"]["details"][0]["path"],
        "line 1.input.messages[1].tool_call_id"
    );
    let good = case(json!([{"role": "user", "content": "Weather and time in Paris?"}]));
    let (status, created) = server
        .put("/datasets/weather", "application/x-ndjson", good)
        .await;
    assert_eq!(status, 201, "{created}");

    let mut body = agent_experiment(&fake, json!({}));
    body["datasets"] = json!([{"dataset_id": "weather"}]);
    let (status, run) = server.post("/runs", &body).await;
    assert!(status == 201 || status == 202, "{status} {run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let finished = server.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["agent_outcomes"], json!({"answered": 1}));

    let (_, results) = server.get(&format!("/runs/{run_id}/results")).await;
    let transcript = &results["results"][0]["candidates"][0]["transcript"];
    assert_eq!(transcript["outcome"], "answered", "{results}");
    assert_eq!(
        transcript["turns"][0]["tool_calls"][0]["name"],
        "get_weather"
    );
    assert_eq!(
        transcript["turns"][0]["tool_results"][1]["content"],
        "{\"hour\":12}"
    );
    let (_, case) = server.get(&format!("/runs/{run_id}/cases/0")).await;
    assert_eq!(
        &case["record"]["candidates"][0]["transcript"], transcript,
        "{case}"
    );
    let export = reqwest::get(server.url(&format!("/runs/{run_id}/results?format=jsonl")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    assert_eq!(&line["candidates"][0]["transcript"], transcript);
    server.stop().await;
}

#[tokio::test]
async fn openai_chat_sends_the_cases_conversation_after_its_own_messages() {
    let fake = FakeProvider::fixed("sunny at 12", Duration::ZERO).await;
    let mut body = agent_experiment(&fake, json!({}));
    let params = &mut body["generation"]["generator"]["params"];
    params.as_object_mut().unwrap().remove("functions");
    body["generation"]["generator"]["name"] = json!("openai/chat");
    let history = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": "And the time?"}
    ]);
    body["datasets"][0]["cases"][0]["input"]["messages"] = history.clone();
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let sent = &fake.bodies()[0];
    let mut expected = vec![json!({"role": "system", "content": "You answer with tools."})];
    for mut message in history.as_array().unwrap().clone() {
        if message["content"].is_null() {
            message["content"] = json!("");
        }
        expected.push(message);
    }
    assert_eq!(sent["messages"], Value::Array(expected));
    assert!(sent.get("tools").is_none());
    assert!(outcome.records[0].candidates[0].transcript.is_none());
}

#[tokio::test]
async fn trajectory_metrics_score_the_run_and_a_rejudge_reads_stored_transcripts() {
    let fake = FakeProvider::replying(weather_script).await;
    let engine = engine();
    let mut body = agent_experiment(&fake, json!({}));
    body["evaluation"]["metrics"] = json!([
        "builtin/exact_match",
        {"name": "builtin/tool_call_match", "params": {"mode": "unordered",
         "expected": [{"name": "get_time"}, {"name": "get_weather", "arguments": {"city": "Paris"}}]}},
        "builtin/tool_calls"
    ]);
    let first = run(&engine, &body).await;
    let metrics = &first.run.aggregates.metrics;
    assert_eq!(metrics["builtin/tool_call_match"].overall.mean, Some(1.0));
    assert_eq!(metrics["builtin/tool_calls"].overall.mean, Some(2.0));
    assert_eq!(fake.hits(), 2);

    // A rejudge: other expectations and a judge reading {{ transcript }}; the agent's
    // model and tools are not called again.
    let judge = FakeProvider::replying(|body, _| {
        let prompt = user_text(body);
        let verdict =
            if prompt.contains("tool call get_weather") && prompt.contains("tool get_time") {
                "PASS"
            } else {
                "FAIL"
            };
        Reply::text(verdict, 1)
    })
    .await;
    let evaluation = json!({
        "metrics": [{"name": "builtin/tool_call_match",
                     "params": {"mode": "strict", "expected": [{"name": "get_weather"}]}}],
        "judges": [{"name": "openai/judge", "params": merge(json!({
            "base_url": judge.base_url, "model": "judge", "pass_fail": true,
            "rubric": "Did the agent use the tools well?\n{{ transcript }}"}), &fast())}]
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
    assert_eq!(fake.hits(), 2, "no model call of the agent");
    assert_eq!(
        rejudged.aggregates.metrics["builtin/tool_call_match"]
            .overall
            .mean,
        Some(0.0),
        "two calls made, one expected: strict fails"
    );
    assert_eq!(
        rejudged.aggregates.metrics["openai/judge"].overall.mean,
        Some(1.0)
    );
    let prompt = user_text(&judge.bodies()[0]);
    assert!(prompt.contains("assistant: sunny at 12"), "{prompt}");
    // The stored transcript stays with the rejudged record.
    let query = CaseQuery {
        limit: 10,
        ..CaseQuery::default()
    };
    let records = engine.store().case_records(&rejudge, &query).await.unwrap();
    assert!(records[0].candidates[0].transcript.is_some());
}

#[tokio::test]
async fn metrics_count_loop_outcomes_and_tool_calls_by_source() {
    let fake = FakeProvider::replying(|body, _| {
        if turn(body) < 3 {
            Reply::ToolCalls(vec![("get_weather", json!({})), ("nope", json!({}))], 1)
        } else {
            Reply::text("done", 1)
        }
    })
    .await;
    let metrics = Arc::new(themis::telemetry::Metrics::new());
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin_with(Outbound {
            meter: metrics.clone(),
            ..Outbound::local()
        })),
        EngineConfig::default(),
    );
    // The conversation holds one assistant message: turns 1 and 2 call tools, and
    // max_turns 2 ends the loop there.
    let outcome = run(&engine, &agent_experiment(&fake, json!({"max_turns": 2}))).await;
    assert!(outcome.failed().is_empty());
    let text = metrics.encode();
    for line in [
        "themis_agent_loops_total{outcome=\"max_turns\"} 1",
        "themis_agent_tool_calls_total{source=\"functions\",outcome=\"ok\"} 1",
        "themis_agent_tool_calls_total{source=\"unknown\",outcome=\"error\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

/// An engine whose registry declares the reference server as `everything`.
fn engine_with_everything(everything: &crate::common::mcp::Everything) -> Engine {
    let spec = themis::components::McpServerSpec::parse(
        &format!("name=everything,url={}", everything.url),
        |_| None,
    )
    .unwrap();
    let servers = themis::components::McpServers::local(vec![spec]).unwrap();
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin().with_mcp_servers(Arc::new(servers))),
        EngineConfig::default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_calls_the_mcp_reference_servers_tools_end_to_end() {
    let everything = crate::common::mcp::Everything::start();
    let engine = engine_with_everything(&everything);
    // Turn 1: get-sum and echo at once, plus a tool the narrowed list does not offer;
    // turn 2: the answer, from what the server said.
    let fake = FakeProvider::replying(|body, _| {
        let results = tool_messages(body);
        if results.is_empty() {
            Reply::ToolCalls(
                vec![
                    ("get-sum", json!({"a": 2, "b": 40})),
                    ("echo", json!({"message": "hi"})),
                    ("get-tiny-image", json!({})),
                ],
                3,
            )
        } else {
            // "The sum of 2 and 40 is 42.": the last number.
            let text = &results[0].1;
            let sum = text
                .split(|c: char| !c.is_ascii_digit())
                .rfind(|part| !part.is_empty())
                .unwrap_or("");
            Reply::text(sum, 3)
        }
    })
    .await;
    let mut body = agent_experiment(
        &fake,
        json!({"mcp_servers": ["everything"], "tools_allow": ["get-sum", "echo"]}),
    );
    body["generation"]["generator"]["params"]
        .as_object_mut()
        .unwrap()
        .remove("functions");
    body["datasets"][0]["cases"][0]["expected_output"] = json!("42");
    body["evaluation"]["metrics"] = json!(["builtin/exact_match",
        {"name": "builtin/tool_call_match", "params": {"mode": "superset",
         "expected": [{"name": "get-sum", "arguments": {"a": 2, "b": 40}}]}}]);
    let outcome = run(&engine, &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    // Only the allowed tools were offered, with the server's schemas.
    let bodies = fake.bodies();
    let offered: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered.len(), 2, "{offered:?}");
    assert!(offered.contains(&"get-sum") && offered.contains(&"echo"));
    assert!(bodies[0]["tools"][0]["function"]["parameters"].is_object());
    let transcript = outcome.records[0].candidates[0]
        .transcript
        .as_ref()
        .unwrap();
    let results = &transcript.turns[0].tool_results;
    assert!(results[0].content.contains("42"), "{results:?}");
    assert_eq!(results[0].source.as_deref(), Some("everything"));
    assert_eq!(results[1].content, "Echo: hi");
    assert!(results[2].is_error, "not offered: {results:?}");
    assert!(
        results[2]
            .content
            .starts_with("unknown tool `get-tiny-image`")
    );
    assert_eq!(outcome.records[0].candidates[0].output, json!("42"));
    let metrics = &outcome.run.aggregates.metrics;
    assert_eq!(metrics["builtin/exact_match"].overall.mean, Some(1.0));
    assert_eq!(metrics["builtin/tool_call_match"].overall.mean, Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_names_declared_mcp_servers_only() {
    let everything = crate::common::mcp::Everything::start();
    let engine = engine_with_everything(&everything);
    let fake = relentless(1, 1).await;
    let body = agent_experiment(&fake, json!({"mcp_servers": ["everything", "search"]}));
    let errors = refused(&engine, &body);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "generation.generator.params.mcp_servers");
    assert!(
        errors[0].message.contains("unknown MCP server `search`")
            && errors[0].message.contains("everything"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn the_agent_example_is_a_valid_definition_where_everything_is_declared() {
    let spec = themis::components::McpServerSpec::parse(
        "name=everything,url=http://127.0.0.1:3001/mcp",
        |_| None,
    )
    .unwrap();
    let servers = themis::components::McpServers::local(vec![spec]).unwrap();
    let registry = Registry::builtin().with_mcp_servers(Arc::new(servers));
    let example: Value = serde_json::from_str(include_str!("../../examples/agent.json")).unwrap();
    if let Err(errors) = themis::engine::parse_experiment(&example, &registry) {
        panic!("examples/agent.json: {errors:?}");
    }
    // Without the declaration, the example is refused naming the server.
    let Err(errors) = themis::engine::parse_experiment(&example, &Registry::builtin()) else {
        panic!("accepted without the server");
    };
    assert_eq!(errors[0].path, "generation.generator.params.mcp_servers");
}
