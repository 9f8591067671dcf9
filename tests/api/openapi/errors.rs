//! Every error response validates against the error schema.

use super::*;

#[tokio::test]
async fn error_responses_match_the_schemas() {
    let h = Harness::new();

    // 422: every problem of an invalid definition, with paths.
    let invalid = json!({
        "generation": {"generator": "builtin/no_such_generator"},
        "evaluation": {"metrics": ["builtin/exact_match", "builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"input": 1}]}],
        "seeds": [1, 1],
        "colour": "blue"
    });
    let reply = h.post("/runs", invalid).await;
    let body = h.check(
        Method::POST,
        "/runs",
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(body["error"]["code"], "invalid_definition");
    let paths: BTreeSet<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    for path in [
        "colour",
        "generation.generator",
        "datasets[0].cases[0].case_id",
        "seeds[1]",
    ] {
        assert!(paths.contains(path), "no detail at {path}: {body}");
    }

    // 400: malformed JSON.
    let reply = h
        .send(
            Method::POST,
            "/runs",
            Payload::Raw("application/json", b"{\"generation\": ".to_vec()),
            &[],
        )
        .await;
    let body = h.check(Method::POST, "/runs", &reply, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");

    // 415: not sent as JSON.
    let reply = h
        .send(
            Method::POST,
            "/runs",
            Payload::Raw("text/plain", b"{}".to_vec()),
            &[],
        )
        .await;
    let body = h.check(
        Method::POST,
        "/runs",
        &reply,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    // 413: over the body limit (1 MiB here).
    let big = format!("{{\"padding\": \"{}\"}}", "x".repeat(1 << 20));
    let reply = h
        .send(
            Method::POST,
            "/runs",
            Payload::Raw("application/json", big.into_bytes()),
            &[],
        )
        .await;
    let body = h.check(Method::POST, "/runs", &reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "body_too_large");

    // 404: unknown run, on every run route.
    let unknown = format!("/runs/{UNKNOWN_RUN}");
    // An existing run (results check the run exists before reading cursor and limit).
    let reply = h.post("/runs", example("observe.json")).await;
    let existing = format!("/runs/{}", reply.json()["run_id"].as_str().unwrap());
    for (method, template, payload) in [
        (Method::GET, "/runs/{run_id}", Payload::None),
        (Method::GET, "/runs/{run_id}/results", Payload::None),
        (Method::GET, "/runs/{run_id}/events", Payload::None),
        (Method::POST, "/runs/{run_id}/cancel", Payload::None),
        (
            Method::POST,
            "/runs/{run_id}/rejudge",
            Payload::Json(json!({})),
        ),
    ] {
        let uri = template.replace("/runs/{run_id}", &unknown);
        let reply = h.send(method.clone(), &uri, payload, &[]).await;
        let body = h.check(method, template, &reply, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }

    // A known path with an unsupported method: 405 with the error shape (as documented).
    let reply = h.send(Method::DELETE, "/runs", Payload::None, &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // 404 of the fallback: the same error shape.
    let reply = h.get("/no/such/endpoint").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_valid(
        &validator(&h.doc, &schema_ref("Error")),
        &reply.json(),
        "fallback 404",
    );

    // 400: malformed run ids, queries, cursors and Last-Event-ID.
    for (method, template, uri, headers, code) in [
        (
            Method::GET,
            "/runs/{run_id}",
            "/runs/not-a-run".to_owned(),
            vec![],
            "invalid_run_id",
        ),
        (
            Method::POST,
            "/runs/{run_id}/cancel",
            "/runs/RUN_X/cancel".to_owned(),
            vec![],
            "invalid_run_id",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?colour=blue".to_owned(),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?limit=0".to_owned(),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?status=done".to_owned(),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?cursor=nope".to_owned(),
            vec![],
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/runs",
            "/runs?parent_run_id=nope".to_owned(),
            vec![],
            "invalid_run_id",
        ),
        (
            Method::GET,
            "/runs/{run_id}",
            format!("{unknown}?include=everything"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/results",
            format!("{existing}/results?cursor=x"),
            vec![],
            "invalid_cursor",
        ),
        (
            Method::GET,
            "/runs/{run_id}/results",
            format!("{existing}/results?limit=1001"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/results",
            format!("{unknown}/results?failed_only=maybe"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/events",
            format!("{unknown}/events?after=-1"),
            vec![],
            "invalid_query",
        ),
        (
            Method::GET,
            "/runs/{run_id}/events",
            format!("{unknown}/events"),
            vec![("last-event-id", "abc")],
            "invalid_last_event_id",
        ),
    ] {
        let reply = h.send(method.clone(), &uri, Payload::None, &headers).await;
        let body = h.check(method, template, &reply, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], code, "{uri}: {body}");
    }

    // 422 from rejudge: an invalid evaluation config.
    let reply = h
        .post(
            &format!("{unknown}/rejudge"),
            json!({"metrics": ["builtin/no_such_metric"]}),
        )
        .await;
    let body = h.check(
        Method::POST,
        "/runs/{run_id}/rejudge",
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(body["error"]["details"][0]["path"], "metrics[0]");
}
