//! Comparisons, datasets, retries and deletes validate against their schemas.

use super::*;

#[tokio::test]
async fn compare_responses_match_the_schemas() {
    let h = Harness::new();
    let (a, _) = h.run(echo_definition(&[], "builtin/exact_match")).await;
    let (b, _) = h.run(echo_definition(&[1, 4], "builtin/exact_match")).await;
    let (f1, _) = h.run(echo_definition(&[2], "builtin/token_f1")).await;

    let report = h.check(
        Method::GET,
        "/runs/{run_id}/compare",
        &h.get(&format!("/runs/{b}/compare?baseline={a}")).await,
        StatusCode::OK,
    );
    assert_eq!(
        report["metrics"]["builtin/exact_match"]["overall"]["losses"],
        2
    );
    let page = h.check(
        Method::GET,
        "/runs/{run_id}/compare/cases",
        &h.get(&format!(
            "/runs/{b}/compare/cases?baseline={a}&filter=regressed&limit=1"
        ))
        .await,
        StatusCode::OK,
    );
    assert_eq!(page["cases"][0]["case_id"], "c1");
    let table = h.check(
        Method::GET,
        "/compare",
        &h.get(&format!("/compare?runs={a},{b}")).await,
        StatusCode::OK,
    );
    assert_eq!(
        table["metrics"]["builtin/exact_match"]["versus_first"][0]["run_id"],
        json!(b)
    );

    let view = h.check(
        Method::GET,
        "/runs/{run_id}",
        &h.get(&format!("/runs/{b}?ci=bootstrap")).await,
        StatusCode::OK,
    );
    assert!(view["aggregates"]["builtin/exact_match"]["ci95_bootstrap"].is_array());

    let unknown = format!("run_{}", "f".repeat(32));
    for (template, uri) in [
        (
            "/runs/{run_id}/compare",
            format!("/runs/{b}/compare?baseline={unknown}"),
        ),
        (
            "/runs/{run_id}/compare/cases",
            format!("/runs/{unknown}/compare/cases?baseline={a}"),
        ),
        ("/compare", format!("/compare?runs={a},{unknown}")),
    ] {
        h.check(
            Method::GET,
            template,
            &h.get(&uri).await,
            StatusCode::NOT_FOUND,
        );
    }
    for (template, uri) in [
        (
            "/runs/{run_id}/compare",
            format!("/runs/{f1}/compare?baseline={a}"),
        ),
        (
            "/runs/{run_id}/compare/cases",
            format!("/runs/{f1}/compare/cases?baseline={a}"),
        ),
        ("/compare", format!("/compare?runs={a},{f1}")),
    ] {
        let body = h.check(
            Method::GET,
            template,
            &h.get(&uri).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        assert_eq!(body["error"]["code"], "unprocessable");
    }
    // A name no run has (names stand for runs here).
    let body = h.check(
        Method::GET,
        "/runs/{run_id}/compare",
        &h.get(&format!("/runs/{b}/compare?baseline=nobody")).await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(body["error"]["code"], "not_found");
    for (template, uri) in [
        (
            "/runs/{run_id}/compare",
            format!("/runs/{b}/compare?baseline=run_nope"),
        ),
        (
            "/runs/{run_id}/compare/cases",
            format!("/runs/{b}/compare/cases?baseline={a}&limit=0"),
        ),
        ("/compare", "/compare?runs=".to_owned()),
        (
            "/runs/{run_id}/results",
            format!("/runs/{b}/results?format=xml"),
        ),
    ] {
        h.check(
            Method::GET,
            template,
            &h.get(&uri).await,
            StatusCode::BAD_REQUEST,
        );
    }
}

#[tokio::test]
async fn dataset_retry_and_delete_responses_match_the_schemas() {
    let h = Harness::sqlite().await;
    let jsonl = |body: &str| Payload::Raw("application/x-ndjson", body.as_bytes().to_vec());
    let cases = "{\"case_id\": \"a\", \"input\": {\"question\": \"2+2\"}, \"expected_output\": {\"answer\": \"4\"}}\n";
    let put = |payload| h.send(Method::PUT, "/datasets/qa", payload, &[]);
    let created = h.check(
        Method::PUT,
        "/datasets/{dataset_id}",
        &put(jsonl(cases)).await,
        StatusCode::CREATED,
    );
    let again = h.check(
        Method::PUT,
        "/datasets/{dataset_id}",
        &put(jsonl(cases)).await,
        StatusCode::OK,
    );
    assert_eq!(created, again);
    h.check(
        Method::PUT,
        "/datasets/{dataset_id}",
        &put(jsonl("{\"case_id\": \"\"}\n")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    h.check(
        Method::GET,
        "/datasets",
        &h.get("/datasets").await,
        StatusCode::OK,
    );
    h.check(
        Method::GET,
        "/datasets/{dataset_id}",
        &h.get("/datasets/qa").await,
        StatusCode::OK,
    );
    let page = h.check(
        Method::GET,
        "/datasets/{dataset_id}/cases",
        &h.get("/datasets/qa/cases").await,
        StatusCode::OK,
    );
    assert_eq!(page["cases"][0]["case_id"], "a");

    // A run over the stored dataset, its retry, and the deletions.
    let mut definition = example("observe.json");
    definition["datasets"] = json!([{"dataset_id": "qa"}]);
    let (run_id, _) = h.run(definition).await;
    let reply = h.post(&format!("/runs/{run_id}/retry"), json!(null)).await;
    let retry = h.check(
        Method::POST,
        "/runs/{run_id}/retry",
        &reply,
        StatusCode::ACCEPTED,
    );
    h.wait_finished(retry["run_id"].as_str().unwrap()).await;
    let definition = h.get(&format!("/runs/{run_id}?include=definition")).await;
    h.check(Method::GET, "/runs/{run_id}", &definition, StatusCode::OK);
    // Refused while used or derived from, then done: dataset, run, run with cascade, dataset.
    let run_uri = format!("/runs/{run_id}");
    let cascade = format!("{run_uri}?cascade=true");
    for (uri, template, status) in [
        (
            "/datasets/qa",
            "/datasets/{dataset_id}",
            StatusCode::CONFLICT,
        ),
        (run_uri.as_str(), "/runs/{run_id}", StatusCode::CONFLICT),
        (cascade.as_str(), "/runs/{run_id}", StatusCode::OK),
        ("/datasets/qa", "/datasets/{dataset_id}", StatusCode::OK),
    ] {
        let reply = h.send(Method::DELETE, uri, Payload::None, &[]).await;
        h.check(Method::DELETE, template, &reply, status);
    }
}
