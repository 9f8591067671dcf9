//! `openai/agent` with the tools of an operator-declared MCP server: the reference
//! server (`@modelcontextprotocol/server-everything`, Streamable HTTP) end to end, runs
//! naming undeclared servers, and `examples/agent.json`.

use super::agent::{agent_experiment, refused, relentless};
use super::*;
use crate::common::fake_provider::tool_messages;

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
