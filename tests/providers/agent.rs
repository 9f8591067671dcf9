//! `openai/agent` against the fake provider scripted to call tools: conversations from
//! the case (checked at submission), mock functions answering from the case, parallel
//! calls, tool errors, each limit as a typed outcome and the operator's caps;
//! `openai/chat` sending a conversation. The helpers here serve `agent_records` and
//! `agent_mcp` too.

use super::*;
use crate::common::fake_provider::{tool_messages, turn};
use themis::engine::EngineError;
use themis::model::{AgentOutcome, FieldError};

/// The field errors of a refused definition.
pub(super) fn refused(engine: &Engine, body: &Value) -> Vec<FieldError> {
    match engine.parse(body) {
        Err(EngineError::Invalid(errors)) => errors,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    }
}

/// An agent experiment on `fake` with `params` merged into the generator's; one case
/// asking for the weather, whose mock function results are given.
pub(super) fn agent_experiment(fake: &FakeProvider, params: Value) -> Value {
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
pub(super) fn weather_script(body: &Value, _: usize) -> Reply {
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
pub(super) async fn relentless(tokens: u64, calls: usize) -> FakeProvider {
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
