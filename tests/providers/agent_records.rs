//! Agent transcripts where they are read: the results API, a case, the JSONL export,
//! trajectory metrics, judges and rejudges; the cache replaying turns; spans and
//! `/metrics`.

use super::agent::{agent_experiment, weather_script};
use super::*;
use crate::common::fake_provider::turn;

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
