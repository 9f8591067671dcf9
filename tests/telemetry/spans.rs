//! OTLP/HTTP span export to a real collector (decoding the protobuf payloads): the run
//! tree and its attributes, `traceparent` propagation and sampling, a collector that is
//! down or hangs, the server's default tracing, and sealed tracing headers.

use crate::common;

use common::otlp::{Collector, Received};

use common::webhook::{closed_port, hanging_listener};

use common::{TestServer, all_results, spawn_server_with_env, wait_until};

use serde_json::{Value, json};

use std::time::{Duration, Instant};

use themis::components::Registry;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

const STATUS_OK: i32 = 1;

const STATUS_ERROR: i32 = 2;

/// Polls until the run's telemetry says its spans are flushed (`spans_dropped` is only
/// known then), returning the run.
async fn wait_flushed(client: &reqwest::Client, base: &str, run_id: &str) -> Value {
    wait_until(client, base, run_id, Duration::from_secs(60), |run| {
        run["telemetry"].get("spans_dropped").is_some()
    })
    .await
}

/// Arithmetic cases for the demo generator: every answer is right.
fn arithmetic(cases: usize, generator: Value, seed: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": generator},
        "evaluation": {"parsers": ["builtin/json_identity"], "metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [seed]
    })
}

/// Results with timings zeroed, to compare two executions.
fn normalized(mut results: Vec<Value>) -> Vec<Value> {
    fn zero(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if ["duration_ms", "started_at", "finished_at"].contains(&key.as_str()) {
                        *v = json!(0);
                    } else {
                        zero(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(zero),
            _ => {}
        }
    }
    results.iter_mut().for_each(zero);
    results
}

async fn post_run(server: &TestServer, body: &Value, traceparent: Option<&str>) -> String {
    let mut request = server.client.post(server.url("/runs")).json(body);
    if let Some(header) = traceparent {
        request = request.header("traceparent", header);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let created: Value = response.json().await.unwrap();
    assert!([200, 202].contains(&status), "{created}");
    created["run_id"].as_str().unwrap().to_owned()
}

/// A run of the demo generator whose answers are all right.
fn demo(cases: usize, seed: u64) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": "builtin/demo_generator"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [seed]
    })
}

async fn post_new_run(server: &TestServer, body: &Value, traceparent: Option<&str>) -> String {
    let mut request = server.client.post(server.url("/runs")).json(body);
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let (status, created) = common::json_of(request.send().await.unwrap()).await;
    assert_eq!(status, 202, "{created}");
    created["run_id"].as_str().unwrap().to_owned()
}

/// The run once its spans are flushed (`spans_dropped` is only known then).
async fn flushed(server: &TestServer, run_id: &str) -> Value {
    wait_until(
        &server.client,
        &server.base,
        run_id,
        Duration::from_secs(60),
        |run| run["status"] == "completed" && run["telemetry"].get("spans_dropped").is_some(),
    )
    .await
}

#[tokio::test]
async fn otlp_spans_form_the_run_tree_with_attributes_statuses_and_the_callers_trace() {
    let (endpoint, collector) = Collector::start().await;
    let server = TestServer::start("memory", Registry::builtin()).await;
    let tracing = json!({"provider": "otlp", "endpoint": endpoint, "service_name": "themis-test",
                         "headers": {"authorization": "Bearer s3cret"}});

    // Two cases through every stage, joining the caller's trace.
    let mut ok = arithmetic(2, json!("builtin/demo_generator"), 1);
    ok["tracing"] = tracing.clone();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let ok_run = post_run(&server, &ok, Some(&traceparent)).await;
    // Every generation fails.
    let mut failing = arithmetic(
        1,
        json!({"name": "builtin/demo_generator", "params": {"error_rate": 1.0}}),
        1,
    );
    failing["tracing"] = tracing;
    let failing_run = post_run(&server, &failing, None).await;

    let run = wait_flushed(&server.client, &server.base, &ok_run).await;
    assert_eq!(run["status"], "completed");
    let spans = collector.spans_of(&ok_run);
    // run + 2 × (case + generation, reduction, parsing, scoring, judging).
    assert_eq!(spans.len(), 13, "{spans:#?}");
    assert_eq!(run["telemetry"]["spans_exported"], 13, "{run}");
    assert_eq!(run["telemetry"]["export_errors"], 0);
    assert_eq!(run["telemetry"]["spans_dropped"], 0);
    assert!(spans.iter().all(|s| s.service == "themis-test"));
    let headers = collector.headers.lock().unwrap().clone();
    assert!(
        headers.iter().all(|h| h["authorization"] == "Bearer s3cret"
            && h["content-type"] == "application/x-protobuf")
    );

    let named =
        |name: &str| -> Vec<&Received> { spans.iter().filter(|s| s.span.name == name).collect() };
    let root = named("run");
    assert_eq!(root.len(), 1);
    let root = root[0];
    assert_eq!(hex::encode(&root.span.trace_id), TRACE_ID);
    assert_eq!(hex::encode(&root.span.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(root.status().0, STATUS_OK);
    assert!(
        spans
            .iter()
            .all(|s| hex::encode(&s.span.trace_id) == TRACE_ID)
    );
    let cases = named("case");
    assert_eq!(cases.len(), 2);
    for case in &cases {
        assert_eq!(case.span.parent_span_id, root.span.span_id);
        assert_eq!(case.status().0, STATUS_OK);
        for key in ["run_id", "dataset_id", "case_id", "seed"] {
            assert!(case.attr(key).is_some(), "case span without {key}");
        }
        assert_eq!(case.attr("seed"), Some(json!(1)));
    }
    let mut case_ids: Vec<Value> = cases.iter().filter_map(|c| c.attr("case_id")).collect();
    case_ids.sort_by_key(|v| v.to_string());
    assert_eq!(case_ids, [json!("c0"), json!("c1")]);
    for stage in ["generation", "reduction", "parsing", "scoring", "judging"] {
        let stage_spans = named(stage);
        assert_eq!(stage_spans.len(), 2, "{stage}");
        for span in stage_spans {
            let parent = cases
                .iter()
                .find(|c| c.span.span_id == span.span.parent_span_id)
                .unwrap_or_else(|| panic!("{stage} span is not under a case span"));
            assert_eq!(span.attr("case_id"), parent.attr("case_id"));
            assert_eq!(span.status().0, STATUS_OK, "{stage}");
            assert!(span.attr("component").is_some());
        }
    }
    assert_eq!(
        named("generation")[0].attr("component"),
        Some(json!("builtin/demo_generator"))
    );
    for scoring in named("scoring") {
        assert_eq!(scoring.attr("score.builtin/exact_match"), Some(json!(1.0)));
    }

    // The failing run: error status with the message on the generation and its case.
    let run = wait_flushed(&server.client, &server.base, &failing_run).await;
    assert_eq!(run["progress"]["failed"], 1);
    let spans = collector.spans_of(&failing_run);
    let generation = spans.iter().find(|s| s.span.name == "generation").unwrap();
    let (code, message) = generation.status();
    assert_eq!(code, STATUS_ERROR);
    assert!(!message.is_empty());
    let case = spans.iter().find(|s| s.span.name == "case").unwrap();
    assert_eq!(case.status(), (STATUS_ERROR, message));
    assert!(
        spans
            .iter()
            .all(|s| !["reduction", "parsing", "scoring"].contains(&s.span.name.as_str())),
        "stages after a failure are skipped"
    );
    let root = spans.iter().find(|s| s.span.name == "run").unwrap();
    assert!(
        root.span.parent_span_id.is_empty(),
        "no traceparent: a root"
    );
    assert_ne!(hex::encode(&root.span.trace_id), TRACE_ID);

    // Header values never come back.
    let (_, with_definition) = server
        .get(&format!("/runs/{ok_run}?include=definition"))
        .await;
    assert_eq!(
        with_definition["runtime"]["tracing"]["headers"]["authorization"],
        "<redacted>"
    );
    assert_eq!(with_definition["runtime"]["traceparent"], traceparent);
    assert!(!with_definition.to_string().contains("s3cret"));
    server.stop().await;
}

#[tokio::test]
async fn otlp_http_json_is_supported() {
    let (endpoint, collector) = Collector::start().await;
    let server = TestServer::start("memory", Registry::builtin()).await;
    let mut body = arithmetic(1, json!("builtin/demo_generator"), 5);
    body["tracing"] = json!({"endpoint": format!("{endpoint}/v1/traces"), "protocol": "http/json"});
    let run_id = post_run(&server, &body, None).await;
    let run = wait_flushed(&server.client, &server.base, &run_id).await;
    assert_eq!(run["telemetry"]["spans_exported"], 7, "{run}");
    let bodies = collector.json.lock().unwrap().clone();
    let names: Vec<String> = bodies
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    assert!(names.contains(&"run".to_owned()), "{bodies:?}");
    assert_eq!(names.len(), 7);
    server.stop().await;
}

#[tokio::test]
async fn a_collector_that_is_down_or_hangs_never_slows_or_changes_a_run() {
    let plain = TestServer::start("memory", Registry::builtin()).await;
    let generator = json!({"name": "builtin/demo_generator", "params": {"delay_ms": 2}});
    let down = format!("http://127.0.0.1:{}", closed_port().await);
    let hanging = hanging_listener().await;
    for (seed, endpoint) in [(11, down), (12, hanging)] {
        let body = arithmetic(40, generator.clone(), seed);
        let baseline = post_run(&plain, &body, None).await;
        let expected = plain.wait_finished(&baseline).await;

        let traced = TestServer::start("memory", Registry::builtin()).await;
        let mut instrumented = body.clone();
        instrumented["tracing"] = json!({"provider": "otlp", "endpoint": endpoint});
        // A webhook receiver that is down too.
        instrumented["subscribers"] = json!([{"kind": "webhook", "url": format!("http://127.0.0.1:{}/hook", closed_port().await), "events": ["run_completed"]}]);
        let started = Instant::now();
        let run_id = post_run(&traced, &instrumented, None).await;
        assert_eq!(run_id, baseline, "instrumentation is runtime-only");
        let run = traced.wait_finished(&run_id).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run took {:?}",
            started.elapsed()
        );
        assert_eq!(run["status"], "completed");
        assert_eq!(run["aggregates"], expected["aggregates"]);
        assert_eq!(
            normalized(all_results(&traced.client, &traced.base, &run_id).await),
            normalized(all_results(&plain.client, &plain.base, &baseline).await)
        );
        if seed == 11 {
            // Refused connections: every span counted as failed, errors counted, and the
            // webhook's failure visible.
            let run = wait_until(
                &traced.client,
                &traced.base,
                &run_id,
                Duration::from_secs(60),
                |run| {
                    run["telemetry"].get("spans_dropped").is_some()
                        && run["telemetry"]["webhooks"][0]["failed"] == 1
                },
            )
            .await;
            let telemetry = &run["telemetry"];
            assert_eq!(telemetry["spans_exported"], 0, "{telemetry}");
            assert!(telemetry["export_errors"].as_u64().unwrap() >= 1);
            assert_eq!(telemetry["spans_failed"], 40 * 6 + 1);
            let hook = &telemetry["webhooks"][0];
            assert_eq!(hook["delivered"], 0);
            assert_eq!(hook["pending"], 0);
            let error = hook["last_error"].as_str().unwrap();
            assert!(error.contains("after 5 attempts"), "{error}");
        }
        traced.stop().await;
    }
    plain.stop().await;
}

#[tokio::test]
async fn the_server_default_traces_runs_unless_they_opt_out_and_resumed_runs_keep_tracing() {
    let (endpoint, collector) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("resume.db").display());
    let client = reqwest::Client::new();
    let (mut first, base) = spawn_server_with_env(
        &database,
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_SERVICE_NAME", "themis-default")],
    );
    let post = |body: Value, traceparent: Option<String>| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let mut request = client.post(format!("{base}/runs")).json(&body);
            if let Some(header) = traceparent {
                request = request.header("traceparent", header);
            }
            let created: Value = request.send().await.unwrap().json().await.unwrap();
            created["run_id"].as_str().unwrap().to_owned()
        }
    };

    // Opted out: nothing exported, no telemetry.
    let mut off = arithmetic(2, json!("builtin/demo_generator"), 21);
    off["tracing"] = json!({"provider": "none"});
    let off_run = post(off, None).await;
    let run = common::wait_finished(&client, &base, &off_run).await;
    assert!(run.get("telemetry").is_none(), "{run}");

    // No tracing config: the server default.
    let plain = post(arithmetic(2, json!("builtin/demo_generator"), 22), None).await;
    let run = wait_flushed(&client, &base, &plain).await;
    assert_eq!(run["telemetry"]["spans_exported"], 13, "{run}");
    assert!(collector.spans_of(&off_run).is_empty());
    assert!(
        collector
            .spans_of(&plain)
            .iter()
            .all(|s| s.service == "themis-default")
    );

    // A slow run, killed mid-way: after the restart it resumes with its tracing (and
    // the caller's trace, which is stored with the run).
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let slow = arithmetic(
        200,
        json!({"name": "builtin/demo_generator", "params": {"delay_ms": 20}}),
        23,
    );
    let slow_run = post(slow, Some(traceparent)).await;
    wait_until(&client, &base, &slow_run, Duration::from_secs(30), |run| {
        run["progress"]["completed"].as_u64().unwrap_or(0) >= 20
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let before_restart = collector.spans_of(&slow_run).len();

    let (mut second, base) = spawn_server_with_env(
        &database,
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_SERVICE_NAME", "themis-default")],
    );
    let run = wait_until(&client, &base, &slow_run, Duration::from_secs(60), |run| {
        run["status"] == "completed" && run["telemetry"].get("spans_dropped").is_some()
    })
    .await;
    assert!(run["telemetry"]["spans_exported"].as_u64().unwrap() > 0);
    let spans = collector.spans_of(&slow_run);
    assert!(spans.len() > before_restart);
    let roots: Vec<&Received> = spans.iter().filter(|s| s.span.name == "run").collect();
    assert!(!roots.is_empty(), "the resumed execution has its run span");
    for root in roots {
        assert_eq!(hex::encode(&root.span.trace_id), TRACE_ID);
        assert_eq!(hex::encode(&root.span.parent_span_id), PARENT_SPAN_ID);
    }
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn a_runs_tracing_headers_are_sealed_at_rest_and_reopened_after_a_restart() {
    const TOKEN: &str = "Bearer sealed-s3cret-token";
    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let (endpoint, collector) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("sealed.db").display());
    let client = reqwest::Client::new();
    let env = [("THEMIS_SECRET_KEY", KEY)];
    let (mut first, base) = spawn_server_with_env(&database, &[], &env);
    let mut slow = arithmetic(
        200,
        json!({"name": "builtin/demo_generator", "params": {"delay_ms": 20}}),
        31,
    );
    slow["tracing"] =
        json!({"provider": "otlp", "endpoint": endpoint, "headers": {"authorization": TOKEN}});
    let run_id = common::post_run(&client, &base, &slow).await;
    wait_until(&client, &base, &run_id, Duration::from_secs(30), |run| {
        run["progress"]["completed"].as_u64().unwrap_or(0) >= 20
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();

    // Nothing the server wrote holds the token (database, WAL, lock file).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "{} holds the token in plaintext",
            path.display()
        );
    }
    let exports_before = collector.headers.lock().unwrap().len();

    // Restarted with the same key, the run resumes and exports with its header again.
    let (mut second, base) = spawn_server_with_env(&database, &[], &env);
    wait_until(&client, &base, &run_id, Duration::from_secs(60), |run| {
        run["status"] == "completed" && run["telemetry"].get("spans_dropped").is_some()
    })
    .await;
    let headers = collector.headers.lock().unwrap().clone();
    assert!(headers.len() > exports_before, "the resumed run exported");
    assert!(
        headers
            .iter()
            .all(|h| h.get("authorization").is_some_and(|v| v == TOKEN)),
        "every export carries the run's header"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn a_traceparent_with_the_sampled_flag_off_exports_nothing_and_one_on_overrides_the_ratio() {
    let (endpoint, traces) = Collector::start().await;
    let server = TestServer::start("memory", Registry::builtin()).await;
    let mut body = demo(2, 1);
    body["tracing"] = json!({"provider": "otlp", "endpoint": endpoint});
    let unsampled = post_new_run(
        &server,
        &body,
        Some(&format!("00-{TRACE_ID}-00f067aa0ba902b7-00")),
    )
    .await;
    let run = flushed(&server, &unsampled).await;
    assert_eq!(run["telemetry"]["spans_exported"], 0, "{run}");

    // Sampled by the caller: followed even with sample_ratio 0.
    let mut body = demo(2, 2);
    body["tracing"] = json!({"provider": "otlp", "endpoint": endpoint, "sample_ratio": 0.0});
    let sampled = post_new_run(
        &server,
        &body,
        Some(&format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
    )
    .await;
    let run = flushed(&server, &sampled).await;
    let exported = run["telemetry"]["spans_exported"].as_u64().unwrap();
    assert!(exported > 0, "{run}");
    let received = traces.trace_ids();
    assert_eq!(
        received.len() as u64,
        exported,
        "only the sampled run's spans"
    );
    assert!(received.iter().all(|t| t == TRACE_ID), "{received:?}");
    server.stop().await;
}

#[tokio::test]
async fn sample_ratio_keeps_a_share_of_whole_run_traces() {
    const RUNS: u64 = 24;
    let (endpoint, traces) = Collector::start().await;
    let server = TestServer::start("memory", Registry::builtin()).await;
    let mut sampled = 0;
    let mut exported_total = 0;
    for seed in 0..RUNS {
        let mut body = demo(1, 100 + seed);
        body["tracing"] = json!({"provider": "otlp", "endpoint": endpoint, "sample_ratio": 0.5});
        let run_id = post_new_run(&server, &body, None).await;
        let run = flushed(&server, &run_id).await;
        let exported = run["telemetry"]["spans_exported"].as_u64().unwrap();
        // A run is traced whole or not at all: the decision is made once, at its root.
        let whole = run["telemetry"]["spans_exported"] == 0 || exported >= 5;
        assert!(whole, "{run}");
        sampled += u64::from(exported > 0);
        exported_total += exported;
    }
    // P(all or none of 24 at 0.5) = 2^-23: this never fails by chance in practice.
    assert!(
        0 < sampled && sampled < RUNS,
        "{sampled} of {RUNS} runs sampled"
    );
    assert_eq!(traces.trace_ids().len() as u64, exported_total);
    server.stop().await;
}
