//! Operator-declared MCP servers against the MCP reference server
//! (`@modelcontextprotocol/server-everything`, Streamable HTTP) on a real port: tool
//! listing, calls, tool errors, timeouts, the output cap, bounded concurrency, headers
//! from the environment, the egress policy, undeclared names, reconnects and metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use themis::components::{McpError, McpServerSpec, McpServers};
use themis::egress::Egress;
use themis::telemetry::Metrics;

use crate::common::mcp::{Everything, HeaderProxy};

fn spec(name: &str, url: &str, extra: &str) -> McpServerSpec {
    McpServerSpec::parse(&format!("name={name},url={url}{extra}"), |_| None).unwrap()
}

fn servers(specs: Vec<McpServerSpec>) -> McpServers {
    McpServers::local(specs).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_the_reference_servers_tools_once_per_session() {
    let everything = Everything::start();
    let servers = servers(vec![spec("everything", &everything.url, "")]);
    let server = servers.get("everything").unwrap();
    let tools = server.list_tools().await.unwrap();
    let echo = tools
        .iter()
        .find(|t| t.name == "echo")
        .unwrap_or_else(|| panic!("no echo in {tools:?}"));
    assert_eq!(echo.description, "Echoes back the input string");
    assert_eq!(echo.input_schema["type"], "object");
    assert_eq!(echo.input_schema["properties"]["message"]["type"], "string");
    assert!(tools.iter().any(|t| t.name == "get-sum"), "{tools:?}");
    // The list is cached for the session.
    let again = server.list_tools().await.unwrap();
    assert!(Arc::ptr_eq(&tools, &again), "listed twice in one session");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_echo_and_get_sum() {
    let everything = Everything::start();
    let servers = servers(vec![spec("everything", &everything.url, "")]);
    let server = servers.get("everything").unwrap();
    let echoed = server
        .call_tool("echo", json!({"message": "hello tools"}))
        .await
        .unwrap();
    assert_eq!(echoed.text, "Echo: hello tools");
    assert!(!echoed.is_error);
    let sum = server
        .call_tool("get-sum", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert!(!sum.is_error);
    assert!(sum.text.contains("42"), "{}", sum.text);
    // Arguments must be an object.
    assert!(matches!(
        server.call_tool("echo", json!("bare")).await,
        Err(McpError::Arguments { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_errors_and_unknown_tools_come_back_as_errors_for_the_model() {
    let everything = Everything::start();
    let servers = servers(vec![spec("everything", &everything.url, "")]);
    let server = servers.get("everything").unwrap();
    // Invalid arguments and unknown tools are tool results with `isError` (as the
    // reference server answers them), so the model reads them.
    let invalid = server
        .call_tool("get-sum", json!({"a": "two", "b": 3}))
        .await
        .unwrap();
    assert!(invalid.is_error, "{invalid:?}");
    assert!(invalid.text.contains("expected number"), "{}", invalid.text);
    let unknown = server.call_tool("no-such-tool", json!({})).await.unwrap();
    assert!(unknown.is_error, "{unknown:?}");
    assert!(
        unknown.text.contains("Tool no-such-tool not found"),
        "{}",
        unknown.text
    );
    // The session survives both.
    let echoed = server.call_tool("echo", json!({"message": "ok"})).await;
    assert_eq!(echoed.unwrap().text, "Echo: ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_tool_times_out_and_the_session_goes_on() {
    let everything = Everything::start();
    let servers = servers(vec![spec("everything", &everything.url, ",timeout_ms=700")]);
    let server = servers.get("everything").unwrap();
    // Opens the session first, so the timeout below is the call's.
    server.list_tools().await.unwrap();
    let started = std::time::Instant::now();
    let slow = server
        .call_tool(
            "trigger-long-running-operation",
            json!({"duration": 20, "steps": 2}),
        )
        .await;
    assert!(
        matches!(
            slow,
            Err(McpError::Timeout {
                timeout_ms: 700,
                ..
            })
        ),
        "{slow:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not cut short");
    let echoed = server.call_tool("echo", json!({"message": "after"})).await;
    assert_eq!(echoed.unwrap().text, "Echo: after");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_capped_and_images_are_summarised() {
    let everything = Everything::start();
    let servers = servers(vec![spec(
        "everything",
        &everything.url,
        ",max_output_bytes=100",
    )]);
    let server = servers.get("everything").unwrap();
    let long = "x".repeat(5_000);
    let echoed = server
        .call_tool("echo", json!({"message": long}))
        .await
        .unwrap();
    let (kept, note) = echoed.text.split_once('\n').expect("a truncation note");
    assert_eq!(kept.len(), 100);
    assert_eq!(note, "[truncated: 4906 of 5006 bytes]");
    let image = server.call_tool("get-tiny-image", json!({})).await.unwrap();
    assert!(image.text.contains("[image: image/png"), "{}", image.text);
    assert!(image.text.len() <= 200, "base64 kept: {}", image.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_the_servers_concurrency_wait_for_a_slot() {
    let everything = Everything::start();
    // One call at a time: a second 2 s call waits for the first and then runs past the
    // 3.2 s timeout; with two slots both finish.
    for (slots, both_finish) in [(1, false), (2, true)] {
        let servers = servers(vec![spec(
            "everything",
            &everything.url,
            &format!(",max_concurrency={slots},timeout_ms=3200"),
        )]);
        let server = servers.get("everything").unwrap();
        server.list_tools().await.unwrap();
        let call = || {
            server.call_tool(
                "trigger-long-running-operation",
                json!({"duration": 2, "steps": 1}),
            )
        };
        let (a, b) = tokio::join!(call(), call());
        let finished = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(finished == 2, both_finish, "{slots} slots: {a:?} {b:?}");
        if !both_finish {
            assert_eq!(finished, 1, "{a:?} {b:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_are_read_from_the_environment_and_sent_only_to_their_server() {
    let everything = Everything::start();
    let with_header = HeaderProxy::start(&everything.url).await;
    let without = HeaderProxy::start(&everything.url).await;
    let environment: HashMap<&str, &str> =
        HashMap::from([("MCP_TOKEN", "tok-5f1e2d3c4b5a69788796a5b4")]);
    let declared = McpServerSpec::parse(
        &format!(
            "name=secured,url={},header=X-Api-Key:MCP_TOKEN",
            with_header.url
        ),
        |var| environment.get(var).map(|v| (*v).to_owned()),
    )
    .unwrap();
    assert!(!format!("{declared:?}").contains("tok-5f1e"));
    let servers = servers(vec![declared, spec("open", &without.url, "")]);
    let secured = servers.get("secured").unwrap();
    secured.list_tools().await.unwrap();
    // A server echoing the secret back never shows it.
    let echoed = secured
        .call_tool("echo", json!({"message": "tok-5f1e2d3c4b5a69788796a5b4"}))
        .await
        .unwrap();
    assert_eq!(echoed.text, "Echo: [redacted]");
    servers
        .get("open")
        .unwrap()
        .call_tool("echo", json!({"message": "hi"}))
        .await
        .unwrap();
    let sent = with_header.values("x-api-key");
    assert!(sent.len() >= 3, "initialize, list and call: {sent:?}");
    assert!(
        sent.iter()
            .all(|v| v.as_deref() == Some("tok-5f1e2d3c4b5a69788796a5b4")),
        "{sent:?}"
    );
    let elsewhere = without.values("x-api-key");
    assert!(!elsewhere.is_empty());
    assert!(elsewhere.iter().all(Option::is_none), "{elsewhere:?}");
}

#[tokio::test]
async fn the_egress_policy_refuses_forbidden_destinations() {
    let metrics = Arc::new(Metrics::new());
    let servers = McpServers::new(
        vec![spec("metadata", "http://169.254.169.254/mcp", "")],
        Arc::new(Egress::local()),
        metrics.clone(),
    )
    .unwrap();
    let server = servers.get("metadata").unwrap();
    let listed = server.list_tools().await;
    assert!(
        matches!(&listed, Err(McpError::Egress { server, .. }) if server == "metadata"),
        "{listed:?}"
    );
    let called = server.call_tool("echo", json!({"message": "x"})).await;
    let message = called.unwrap_err().to_string();
    assert!(
        message.contains("egress policy refuses 169.254.169.254"),
        "{message}"
    );
    assert!(
        metrics
            .encode()
            .contains("themis_mcp_tool_calls_total{server=\"metadata\",outcome=\"unreachable\"} 1"),
        "{}",
        metrics.encode()
    );
}

#[tokio::test]
async fn undeclared_server_names_are_refused_listing_the_declared_ones() {
    let servers = servers(vec![
        spec("everything", "http://127.0.0.1:9/mcp", ""),
        spec("search", "http://127.0.0.1:10/mcp", ""),
    ]);
    assert_eq!(servers.names(), ["everything", "search"]);
    servers.check(&["search"]).unwrap();
    let refused = servers.check(&["search", "shell"]).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "unknown MCP server `shell`; declared: everything (http://127.0.0.1:9/mcp); search (http://127.0.0.1:10/mcp)"
    );
    assert!(matches!(
        servers.get("shell"),
        Err(McpError::UnknownServer { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_lost_to_a_server_restart_is_opened_again() {
    let everything = Everything::start();
    let port = everything.port;
    let servers = servers(vec![spec(
        "everything",
        &everything.url,
        ",timeout_ms=5000",
    )]);
    let server = servers.get("everything").unwrap();
    let before = server.list_tools().await.unwrap();
    everything.stop();
    // The call that finds the server gone fails (it may have run: it is not sent again)
    // and drops the session; the next call opens a new one.
    let down = server.call_tool("echo", json!({"message": "down"})).await;
    // A broken session (a pooled connection reset), or none (connection refused) when
    // the SDK saw its event stream end first.
    assert!(
        matches!(
            down,
            Err(McpError::Transport { .. } | McpError::Connect { .. })
        ),
        "{down:?}"
    );
    let _restarted = Everything::start_on(port);
    let back = server.call_tool("echo", json!({"message": "back"})).await;
    assert_eq!(back.unwrap().text, "Echo: back");
    let after = server.list_tools().await.unwrap();
    assert!(!Arc::ptr_eq(&before, &after), "the new session lists again");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_are_counted_by_server_and_outcome() {
    let everything = Everything::start();
    let metrics = Arc::new(Metrics::new());
    let servers = McpServers::new(
        vec![spec("everything", &everything.url, ",timeout_ms=3000")],
        Arc::new(Egress::local()),
        metrics.clone(),
    )
    .unwrap();
    let server = servers.get("everything").unwrap();
    server
        .call_tool("echo", json!({"message": "a"}))
        .await
        .unwrap();
    server
        .call_tool("echo", json!({"message": "b"}))
        .await
        .unwrap();
    let _ = server
        .call_tool(
            "trigger-long-running-operation",
            json!({"duration": 20, "steps": 2}),
        )
        .await;
    let text = metrics.encode();
    for line in [
        "themis_mcp_tool_calls_total{server=\"everything\",outcome=\"success\"} 2",
        "themis_mcp_tool_calls_total{server=\"everything\",outcome=\"timeout\"} 1",
        "themis_mcp_tool_call_duration_seconds_count{server=\"everything\"} 3",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

/// What `themis serve` with `flags` and `env` wrote to stderr until it served (then it
/// is killed) or exited, and whether it served.
fn startup(flags: &[&str], env: &[(&str, &str)]) -> (bool, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_themis"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--database", "memory"])
        .args(["--log-format", "json"])
        .args(flags)
        .env_remove("THEMIS_MCP_SERVERS")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start themis serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = Vec::new();
    let mut served = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        served = line.contains("themis is serving");
        lines.push(line);
        if served {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (served, lines)
}

#[test]
fn declarations_are_checked_at_startup_naming_the_flag() {
    for (flags, env, why) in [
        (
            &["--mcp-server", "name=tools"][..],
            &[][..],
            "--mcp-server tools: `url=` is required",
        ),
        (
            &[],
            &[(
                "THEMIS_MCP_SERVERS",
                "name=a,url=http://127.0.0.1:9/mcp; name=a,url=http://127.0.0.1:10/mcp",
            )][..],
            "--mcp-server a is declared twice",
        ),
        (
            &[
                "--mcp-server",
                "name=tools,url=http://127.0.0.1:9/mcp,header=Authorization:THEMIS_TEST_UNSET_MCP",
            ][..],
            &[][..],
            "--mcp-server tools: environment variable THEMIS_TEST_UNSET_MCP (header Authorization) is not set",
        ),
        (
            &[
                "--mcp-server",
                "name=tools,url=http://127.0.0.1:9/mcp,header=Authorization:MCP_TOKEN",
            ][..],
            &[("MCP_TOKEN", "line one s3cret\nline two")][..],
            "--mcp-server tools: the value of MCP_TOKEN (header Authorization) is not a valid header value",
        ),
    ] {
        let (served, lines) = startup(flags, env);
        let stderr = lines.join("\n");
        assert!(!served, "{flags:?} {env:?} served:\n{stderr}");
        assert!(stderr.contains(why), "{flags:?} {env:?}:\n{stderr}");
        assert!(
            !stderr.contains("s3cret"),
            "a header value was shown:\n{stderr}"
        );
    }
}

#[test]
fn the_startup_log_lists_the_servers_never_their_header_values() {
    let (served, lines) = startup(
        &[],
        &[
            (
                "THEMIS_MCP_SERVERS",
                "name=search,url=http://127.0.0.1:9/mcp,header=Authorization:MCP_TOKEN;name=calc,url=http://127.0.0.1:10/mcp",
            ),
            ("MCP_TOKEN", "Bearer s3cret-0123456789abcdef"),
        ],
    );
    let stderr = lines.join("\n");
    assert!(served, "{stderr}");
    let listing = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|log| log["fields"]["message"] == "MCP servers")
        .unwrap_or_else(|| panic!("no MCP servers line:\n{stderr}"));
    assert_eq!(
        listing["fields"]["mcp_servers"],
        "calc (http://127.0.0.1:10/mcp); search (http://127.0.0.1:9/mcp, header authorization from MCP_TOKEN)"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
