//! Responses about runs validate against their schemas: health and auth, runs (memory
//! and SQLite), executing, richer and instrumented runs, cases and filtered results.

use super::*;

#[tokio::test]
async fn health_and_auth_responses_match_the_schemas() {
    let h = Harness::new();
    h.check(
        Method::GET,
        "/healthz",
        &h.get("/healthz").await,
        StatusCode::OK,
    );
    h.check(
        Method::GET,
        "/readyz",
        &h.get("/readyz").await,
        StatusCode::OK,
    );

    // Request ids: echoed when sent, made up otherwise.
    let reply = h
        .send(
            Method::GET,
            "/healthz",
            Payload::None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(reply.headers.get("x-request-id").unwrap(), "abc-123");
    let reply = h.get("/healthz").await;
    assert!(reply.headers.get("x-request-id").is_some());

    let secured = Harness {
        app: app_with(vec!["secret".to_owned()]),
        doc: document(),
        _dir: None,
    };
    // Health stays open (`security: []`).
    for path in ["/healthz", "/readyz"] {
        assert_eq!(secured.doc["paths"][path]["get"]["security"], json!([]));
        secured.check(Method::GET, path, &secured.get(path).await, StatusCode::OK);
    }
    let reply = secured.get("/runs").await;
    let body = secured.check(Method::GET, "/runs", &reply, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let reply = secured.get("/openapi.yaml").await;
    secured.check(
        Method::GET,
        "/openapi.yaml",
        &reply,
        StatusCode::UNAUTHORIZED,
    );
    let reply = secured
        .send(
            Method::GET,
            "/runs",
            Payload::None,
            &[("authorization", "Bearer secret")],
        )
        .await;
    secured.check(Method::GET, "/runs", &reply, StatusCode::OK);
}

#[tokio::test]
async fn run_responses_match_the_schemas() {
    run_responses(Harness::new()).await;
}

#[tokio::test]
async fn run_responses_match_the_schemas_on_sqlite() {
    run_responses(Harness::sqlite().await).await;
}

#[tokio::test]
async fn executing_run_responses_match_the_schemas() {
    let h = Harness::new();
    // One slow case: the run stays executing until it is cancelled.
    let mut slow = example("observe.json");
    slow["generation"]["generator"] =
        json!({"name": "builtin/demo_generator", "params": {"delay_ms": 600000}});
    let reply = h.post("/runs", slow).await;
    let view = h.check(Method::POST, "/runs", &reply, StatusCode::ACCEPTED);
    let run_id = view["run_id"].as_str().unwrap().to_owned();
    h.wait_running(&run_id).await;

    // 409: a rejudge needs a finished run.
    let reply = h.post(&format!("/runs/{run_id}/rejudge"), json!({})).await;
    let body = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::CONFLICT,
    );
    assert_eq!(body["error"]["code"], "conflict");

    // 202: cancelling an executing run.
    let reply = h
        .send(
            Method::POST,
            &format!("/runs/{run_id}/cancel"),
            Payload::None,
            &[],
        )
        .await;
    let view = h.check(
        Method::POST,
        "/runs/{run_id}/cancel",
        &reply,
        StatusCode::ACCEPTED,
    );
    assert_eq!(view["cancel_requested"], true);
    let finished = h.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "cancelled");
    let events = h.events(&format!("/runs/{run_id}/events"), &[]).await;
    assert_eq!(events.last().unwrap()["event_type"], "run_cancelled");

    // A rejudge of the cancelled run (nothing was recorded: no cases).
    let reply = h.post(&format!("/runs/{run_id}/rejudge"), json!({})).await;
    h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::ACCEPTED,
    );
}

#[tokio::test]
async fn richer_run_responses_match_the_schemas() {
    richer_run_responses(Harness::new()).await;
}

#[tokio::test]
async fn richer_run_responses_match_the_schemas_on_sqlite() {
    richer_run_responses(Harness::sqlite().await).await;
}

#[tokio::test]
async fn instrumented_run_responses_match_the_schemas() {
    let h = Harness::new();
    // Nothing listens on this port: span export and webhook deliveries fail, and the
    // run's telemetry says so.
    let port = common::webhook::closed_port().await;
    let mut definition = example("observe.json");
    definition["seeds"] = json!([31]);
    definition["tracing"] = json!({
        "provider": "otlp",
        "endpoint": format!("http://127.0.0.1:{port}"),
        "protocol": "http/json",
        "headers": {"authorization": "Bearer secret"},
        "service_name": "themis-openapi",
        "sample_ratio": 1.0
    });
    definition["subscribers"] = json!([{
        "kind": "webhook",
        "url": format!("http://127.0.0.1:{port}/hook"),
        "events": ["run.completed"]
    }]);
    let (run_id, _) = h.run(definition).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = h.check(
            Method::GET,
            "/runs/{run_id}",
            &h.get(&format!("/runs/{run_id}?include=definition")).await,
            StatusCode::OK,
        );
        if view["telemetry"].get("spans_dropped").is_some()
            && view["telemetry"]["webhooks"][0]["failed"] == 1
        {
            break view;
        }
        assert!(Instant::now() < deadline, "no telemetry: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        view["runtime"]["tracing"]["headers"]["authorization"],
        "<redacted>"
    );
    assert_eq!(
        view["runtime"]["subscribers"][0]["events"],
        json!(["run_completed"])
    );
    // The summary form carries the telemetry too.
    let summary = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{run_id}")).await,
        StatusCode::OK,
    );
    assert!(summary["telemetry"]["export_errors"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn case_and_filtered_results_match_the_schemas() {
    let h = Harness::new();
    let (run_id, _) = h.run(echo_definition(&[1, 3], "builtin/exact_match")).await;
    let reply = h.get(&format!("/runs/{run_id}/cases/1")).await;
    let detail = h.check(
        Method::GET,
        "/runs/{run_id}/cases/{case_index}",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(detail["record"]["case_index"], 1);
    assert_eq!(detail["case"]["case_id"], detail["record"]["case_id"]);
    // A rejudge's cases have the inputs of the run it evaluates.
    let reply = h
        .post(
            &format!("/runs/{run_id}/rejudge"),
            json!({"metrics": ["builtin/exact_match"], "parsers": ["builtin/text"]}),
        )
        .await;
    let rejudge = reply.json()["run_id"].as_str().unwrap().to_owned();
    h.wait_finished(&rejudge).await;
    let reply = h.get(&format!("/runs/{rejudge}/cases/1")).await;
    let rejudged = h.check(
        Method::GET,
        "/runs/{run_id}/cases/{case_index}",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(rejudged["case"], detail["case"]);
    for (uri, status) in [
        (format!("/runs/{run_id}/cases/99"), StatusCode::NOT_FOUND),
        (format!("/runs/{run_id}/cases/x"), StatusCode::BAD_REQUEST),
        (
            format!("/runs/{UNKNOWN_RUN}/cases/0"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let reply = h.get(&uri).await;
        h.check(
            Method::GET,
            "/runs/{run_id}/cases/{case_index}",
            &reply,
            status,
        );
    }

    let reply = h
        .get(&format!(
            "/runs/{run_id}/results?metric=builtin/exact_match&score_below=0.5"
        ))
        .await;
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &reply,
        StatusCode::OK,
    );
    let indices: Vec<&Value> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["case_index"])
        .collect();
    assert_eq!(indices, [&json!(1), &json!(3)]);
    for (query, field) in [
        ("score_below=0.5", "metric"),
        ("metric=builtin/exact_match", "score_below"),
        ("metric=x&score_below=0.5&format=csv", "score_below"),
    ] {
        let reply = h.get(&format!("/runs/{run_id}/results?{query}")).await;
        let error = h.check(
            Method::GET,
            "/runs/{run_id}/results",
            &reply,
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(error["error"]["details"][0]["path"], field, "{query}");
    }
    let reply = h.get("/runs?kind=rejudge").await;
    let page = h.check(Method::GET, "/runs", &reply, StatusCode::OK);
    let kinds: Vec<&Value> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["run_id"])
        .collect();
    assert_eq!(kinds, [&json!(rejudge)]);
    let reply = h.get("/runs?kind=bogus").await;
    h.check(Method::GET, "/runs", &reply, StatusCode::BAD_REQUEST);
}

async fn run_responses(h: Harness) {
    let (run_id, finished) = h.run(example("observe.json")).await;
    assert_eq!(finished["status"], "completed");
    assert!(finished.get("definition").is_none());
    let run_uri = format!("/runs/{run_id}");

    // The same definition again: the same run, 200.
    let reply = h.post("/runs", example("observe.json")).await;
    let view = h.check(Method::POST, "/runs", &reply, StatusCode::OK);
    assert_eq!(view["run_id"], json!(run_id));
    assert_eq!(reply.header(header::LOCATION), Some(run_uri.as_str()));

    // List.
    let page = h.check(Method::GET, "/runs", &h.get("/runs").await, StatusCode::OK);
    assert_eq!(page["runs"][0]["run_id"], json!(run_id));
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get("/runs?status=completed&limit=1").await,
        StatusCode::OK,
    );
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);

    // Status, ETag and 304.
    let reply = h.get(&run_uri).await;
    h.check(Method::GET, "/runs/{run_id}", &reply, StatusCode::OK);
    let etag = reply.header(header::ETAG).expect("ETag").to_owned();
    let reply = h
        .send(
            Method::GET,
            &run_uri,
            Payload::None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    h.response_spec(&Method::GET, "/runs/{run_id}", reply.status);
    assert_eq!(reply.header(header::ETAG), Some(etag.as_str()));

    // With the definition.
    let reply = h.get(&format!("{run_uri}?include=definition")).await;
    let view = h.check(Method::GET, "/runs/{run_id}", &reply, StatusCode::OK);
    assert!(view["definition"]["generation"].is_object(), "{view}");
    assert!(view["runtime"].is_object(), "{view}");
    assert_ne!(reply.header(header::ETAG), Some(etag.as_str()));

    // Results.
    let reply = h.get(&format!("{run_uri}/results")).await;
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), 1);

    // Events: the whole stream of the finished run.
    let events = h.events(&format!("{run_uri}/events"), &[]).await;
    assert_eq!(events.first().unwrap()["event_type"], "run_started");
    assert_eq!(events.last().unwrap()["event_type"], "run_completed");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], json!(i + 1));
    }
    assert_eq!(json!(events.len()), finished["last_event_seq"]);
    // Resuming: `after` and `Last-Event-ID` (which wins).
    let resumed = h.events(&format!("{run_uri}/events?after=2"), &[]).await;
    assert_eq!(resumed[0]["seq"], 3);
    let resumed = h
        .events(
            &format!("{run_uri}/events?after=1"),
            &[("last-event-id", "4")],
        )
        .await;
    assert_eq!(resumed[0]["seq"], 5);
    let last = events.len().to_string();
    assert!(
        h.events(&format!("{run_uri}/events"), &[("last-event-id", &last)])
            .await
            .is_empty()
    );

    // Cancelling a finished run: 200, unchanged.
    let reply = h
        .send(
            Method::POST,
            &format!("{run_uri}/cancel"),
            Payload::None,
            &[],
        )
        .await;
    let view = h.check(
        Method::POST,
        "/runs/{run_id}/cancel",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(view["status"], "completed");

    // Rejudge: its own run, 202 then 200, listed by parent_run_id.
    let evaluation =
        json!({"evaluation": {"metrics": ["builtin/exact_match", "builtin/token_f1"]}});
    let reply = h
        .post(&format!("{run_uri}/rejudge"), evaluation.clone())
        .await;
    let rejudge = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::ACCEPTED,
    );
    assert_eq!(rejudge["kind"], "rejudge");
    assert_eq!(rejudge["parent_run_id"], json!(run_id));
    let rejudge_id = rejudge["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header(header::LOCATION),
        Some(format!("/runs/{rejudge_id}").as_str())
    );
    let reply = h.post(&format!("{run_uri}/rejudge"), evaluation).await;
    let again = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::OK,
    );
    assert_eq!(again["run_id"], json!(rejudge_id));
    let finished = h.wait_finished(&rejudge_id).await;
    assert_eq!(finished["status"], "completed");
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get(&format!("/runs?parent_run_id={run_id}")).await,
        StatusCode::OK,
    );
    let listed: Vec<&Value> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["run_id"])
        .collect();
    assert_eq!(listed, vec![&json!(rejudge_id)]);
    let view = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{rejudge_id}?include=definition"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(view["definition"]["source_run_id"], json!(run_id));
    h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{rejudge_id}/results")).await,
        StatusCode::OK,
    );
    let events = h.events(&format!("/runs/{rejudge_id}/events"), &[]).await;
    assert_eq!(events.last().unwrap()["event_type"], "run_completed");
    // Rejudging the rejudge evaluates the experiment's generations: same parent.
    let reply = h
        .post(
            &format!("/runs/{rejudge_id}/rejudge"),
            json!({"metrics": ["builtin/token_f1"]}),
        )
        .await;
    let second = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::ACCEPTED,
    );
    assert_eq!(second["parent_run_id"], json!(run_id));
    // ...and it runs: the experiment's candidates, scored by the new metric.
    let second_id = second["run_id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, rejudge_id);
    let done = h.wait_finished(&second_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let candidates_of = |page: &Value| -> Vec<Value> {
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["case_index"], r["candidates"]]))
            .collect()
    };
    let original = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("{run_uri}/results")).await,
        StatusCode::OK,
    );
    let rejudged = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{second_id}/results")).await,
        StatusCode::OK,
    );
    assert!(!candidates_of(&original).is_empty());
    assert_eq!(candidates_of(&rejudged), candidates_of(&original));
    assert_eq!(
        done["aggregates"]["builtin/token_f1"]["n"],
        json!(original["results"].as_array().unwrap().len())
    );
    assert!(
        done["aggregates"].get("builtin/exact_match").is_none(),
        "{done}"
    );
}

async fn richer_run_responses(h: Harness) {
    let (run_id, finished) = h.run(example("arithmetic.json")).await;
    assert_eq!(finished["status"], "completed");
    let aggregates = finished["aggregates"].as_object().unwrap();
    assert!(aggregates.contains_key("exact"), "{finished}");
    assert!(
        aggregates.contains_key("builtin/rubric_keywords"),
        "{finished}"
    );
    assert!(
        aggregates.values().any(|a| a["ci95"].is_array()),
        "{finished}"
    );
    assert!(
        aggregates
            .values()
            .all(|a| a["by_dataset"].as_object().unwrap().len() == 2)
    );

    // All results at once.
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?limit=1000")).await,
        StatusCode::OK,
    );
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 15);
    assert!(page["next_cursor"].is_null());
    let datasets: BTreeSet<&str> = results
        .iter()
        .map(|r| r["dataset_id"].as_str().unwrap())
        .collect();
    assert_eq!(datasets.len(), 2);
    assert!(
        results
            .iter()
            .any(|r| !r["judgments"].as_array().unwrap().is_empty())
    );
    assert!(
        results
            .iter()
            .any(|r| r["candidates"].as_array().unwrap().len() == 5)
    );
    let failed = results.iter().filter(|r| r["status"] == "failed").count();
    assert_eq!(json!(failed), finished["progress"]["failed"]);

    // Filters.
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?failed_only=true"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), failed);
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/results",
        &h.get(&format!("/runs/{run_id}/results?dataset_id=harder"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(page["results"].as_array().unwrap().len(), 6);

    // Paging through with a cursor.
    let mut seen = 0;
    let mut uri = format!("/runs/{run_id}/results?limit=4");
    loop {
        let page = h.check(
            Method::GET,
            "/runs/{run_id}/results",
            &h.get(&uri).await,
            StatusCode::OK,
        );
        seen += page["results"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/runs/{run_id}/results?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, 15);

    // Every event of the run.
    let events = h.events(&format!("/runs/{run_id}/events"), &[]).await;
    let types = event_types(&events);
    for expected in [
        "run_started",
        "case_started",
        "generation_completed",
        "reduction_completed",
        "parse_completed",
        "score_completed",
        "evaluation_completed",
        "case_completed",
        "run_completed",
    ] {
        assert!(types.contains(expected), "no {expected} event in {types:?}");
    }

    // The definition as stored: normalised components.
    let view = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{run_id}?include=definition")).await,
        StatusCode::OK,
    );
    assert_eq!(view["runtime"]["concurrency"], 8);
    assert_eq!(
        view["definition"]["evaluation"]["metrics"][1]["id"],
        "exact"
    );

    // Runs paging: two runs, one per page.
    h.run(example("observe.json")).await;
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get("/runs?limit=1").await,
        StatusCode::OK,
    );
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page = h.check(
        Method::GET,
        "/runs",
        &h.get(&format!("/runs?limit=1&cursor={cursor}")).await,
        StatusCode::OK,
    );
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn dry_run_responses_match_the_schemas() {
    let h = Harness::new();
    let mut body = example("observe.json");
    body["budget_usd"] = json!(2.5);
    body["evaluation"]["judges"] = json!([{"name": "openai/judge", "params": {
        "base_url": "http://127.0.0.1:9/v1", "model": "gpt-4o-mini", "rubric": "Right?",
        "price": {"prompt_per_1k": 0.001, "completion_per_1k": 0.002}}}]);
    let reply = h.post("/runs?dry_run=true", body.clone()).await;
    let estimate = h.check(Method::POST, "/runs", &reply, StatusCode::OK);
    assert_eq!(estimate["valid"], true);
    assert!(
        estimate["judging"]["calls"].as_u64().unwrap() > 0,
        "{estimate}"
    );
    body["budget_usd"] = json!("lots");
    let reply = h.post("/runs?dry_run=true", body).await;
    h.check(
        Method::POST,
        "/runs",
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
}
