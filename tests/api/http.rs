//! The HTTP service end to end on a real port and a real SQLite file.

use crate::common;

use std::time::Duration;

use serde_json::{Value, json};
use themis::components::Registry;

use common::{
    CallCounter, TestServer, counting_experiment, read_sse, registry_with_counter, seed_example,
    wait_until,
};

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("themis.db").display())
}

#[tokio::test]
async fn seed_example_end_to_end_and_idempotent_post() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;

    let response = server
        .client
        .post(server.url("/runs"))
        .json(&seed_example())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/runs/{run_id}"));
    assert!(["queued", "running", "completed"].contains(&created["status"].as_str().unwrap()));

    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(
        run["progress"],
        json!({"total": 1, "completed": 1, "failed": 0})
    );
    assert_eq!(run["aggregates"]["builtin/exact_match"]["mean"], 1.0);
    assert_eq!(run["aggregates"]["builtin/exact_match"]["n"], 1);
    assert!(run.get("definition").is_none(), "polling stays small");

    // Same definition (other key order, runtime-only fields): same run, not executed again.
    let mut again = seed_example();
    again["concurrency"] = json!(2);
    let (status, existing) = server.post("/runs", &again).await;
    assert_eq!(status, 200);
    assert_eq!(existing["run_id"], run_id.as_str());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, after) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(
        after["last_event_seq"], run["last_event_seq"],
        "a completed run is not executed again"
    );

    let (status, with_definition) = server
        .get(&format!("/runs/{run_id}?include=definition"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(with_definition["definition"]["seeds"], json!(["7"]));

    let (status, results) = server.get(&format!("/runs/{run_id}/results")).await;
    assert_eq!(status, 200);
    let record = &results["results"][0];
    assert_eq!(record["case_id"], "case-1");
    assert_eq!(record["reduced"]["output"], json!({"answer": "4"}));
    assert_eq!(record["scores"][0]["score"], 1.0);
    assert_eq!(results["next_cursor"], Value::Null);

    let (status, listing) = server.get("/runs?status=completed").await;
    assert_eq!(status, 200);
    assert_eq!(listing["runs"][0]["run_id"], run_id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn unchanged_run_answers_304() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let (_, created) = server.post("/runs", &seed_example()).await;
    let run_id = created["run_id"].as_str().unwrap();
    server.wait_finished(run_id).await;
    let url = server.url(&format!("/runs/{run_id}"));
    let first = server.client.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let second = server
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status().as_u16(), 304);
    let other = server
        .client
        .get(&url)
        .header("if-none-match", "W/\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test]
async fn sse_replays_history_then_resumes_exactly_after_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let mut body = counting_experiment(1, 0);
    body["generation"] =
        json!({"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 5}}});
    body["datasets"][0]["cases"] = json!((0..40).map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+1")}, "expected_output": {"answer": (i + 1).to_string()}})).collect::<Vec<_>>());
    let (_, created) = server.post("/runs", &body).await;
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let events_url = server.url(&format!("/runs/{run_id}/events"));

    // Two clients at once, live, while the run executes.
    let a = server.client.get(&events_url).send();
    let b = server.client.get(&events_url).send();
    let (a, b) = tokio::join!(a, b);
    let a = a.unwrap();
    assert_eq!(a.headers()["content-type"], "text/event-stream");
    let (a, b) = tokio::join!(read_sse(a, usize::MAX), read_sse(b.unwrap(), usize::MAX));
    assert_eq!(a, b, "two clients see the same sequence");
    let ids: Vec<u64> = a.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=a.len() as u64).collect::<Vec<_>>(),
        "gapless from 1"
    );
    assert_eq!(a.first().unwrap().event, "run_started");
    assert_eq!(
        a.last().unwrap().event,
        "run_completed",
        "the stream ends after the terminal event"
    );
    assert!(
        a.iter()
            .all(|e| e.data["seq"] == e.id && e.data["event_type"] == e.event.as_str())
    );
    assert_eq!(a.iter().filter(|e| e.event == "case_completed").count(), 40);

    // Reconnect after event 17: exactly the rest, nothing twice.
    let resumed = server
        .client
        .get(&events_url)
        .header("last-event-id", "17")
        .send()
        .await
        .unwrap();
    let rest = read_sse(resumed, usize::MAX).await;
    assert_eq!(rest, a[17..].to_vec());
    let by_query = read_sse(
        server
            .client
            .get(format!("{events_url}?after=30"))
            .send()
            .await
            .unwrap(),
        usize::MAX,
    )
    .await;
    assert_eq!(by_query, a[30..].to_vec());
    // After the end: nothing, and the stream closes.
    let last = a.last().unwrap().id.to_string();
    let none = read_sse(
        server
            .client
            .get(&events_url)
            .header("last-event-id", last)
            .send()
            .await
            .unwrap(),
        usize::MAX,
    )
    .await;
    assert!(none.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn rejudge_over_http_makes_no_generator_calls() {
    let dir = tempfile::tempdir().unwrap();
    let calls = CallCounter::default();
    let server = TestServer::start(&sqlite_url(&dir), registry_with_counter(&calls)).await;
    let (_, created) = server.post("/runs", &counting_experiment(25, 0)).await;
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let original = server.wait_finished(&run_id).await;
    assert_eq!(calls.total(), 25);

    let evaluation = json!({"metrics": ["builtin/token_f1"], "parsers": ["builtin/text"]});
    let response = server
        .client
        .post(server.url(&format!("/runs/{run_id}/rejudge")))
        .json(&evaluation)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let rejudge: Value = response.json().await.unwrap();
    let rejudge_id = rejudge["run_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/runs/{rejudge_id}"));
    assert_eq!(rejudge["kind"], "rejudge");
    assert_eq!(rejudge["parent_run_id"], run_id.as_str());
    let done = server.wait_finished(&rejudge_id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(calls.total(), 25, "zero generator calls");
    assert!(done["aggregates"]["builtin/token_f1"]["mean"].is_number());
    let (status, again) = server
        .post(&format!("/runs/{run_id}/rejudge"), &evaluation)
        .await;
    assert_eq!(
        (status, again["run_id"].as_str()),
        (200, Some(rejudge_id.as_str()))
    );

    // The original evaluation stays readable, and the rejudges are listed by parent.
    let (_, source) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(source["aggregates"], original["aggregates"]);
    let (_, listing) = server.get(&format!("/runs?parent_run_id={run_id}")).await;
    assert_eq!(listing["runs"].as_array().unwrap().len(), 1);
    assert_eq!(listing["runs"][0]["run_id"], rejudge_id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn cancel_over_http_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let calls = CallCounter::default();
    let server = TestServer::start(&sqlite_url(&dir), registry_with_counter(&calls)).await;
    let mut body = counting_experiment(500, 20);
    body["concurrency"] = json!(2);
    let (_, created) = server.post("/runs", &body).await;
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    // Executing (some cases recorded, most to go): cancel answers 202.
    wait_until(
        &server.client,
        &server.base,
        &run_id,
        Duration::from_secs(30),
        |run| run["progress"]["completed"].as_u64().unwrap_or(0) >= 2,
    )
    .await;
    let (status, requested) = server
        .post(&format!("/runs/{run_id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202, "{requested}");
    assert_eq!(requested["cancel_requested"], true);
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "cancelled");
    let finished = run["progress"]["completed"].as_u64().unwrap()
        + run["progress"]["failed"].as_u64().unwrap();
    assert!((2..500).contains(&finished), "{run}");
    let (_, page) = server
        .get(&format!("/runs/{run_id}/results?limit=1000"))
        .await;
    assert_eq!(
        page["results"].as_array().unwrap().len() as u64,
        finished,
        "the cases finished before the cancel are kept"
    );
    // Cancelling again is harmless.
    let (status, again) = server
        .post(&format!("/runs/{run_id}/cancel"), &json!({}))
        .await;
    assert_eq!((status, again["status"].as_str()), (200, Some("cancelled")));
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_4xx_with_the_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let post_raw = |body: Vec<u8>, content_type: &'static str| {
        server
            .client
            .post(server.url("/runs"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let check = |status: u16, body: &Value, expected: u16, code: &str| {
        assert_eq!(status, expected, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(body["error"]["details"].is_array());
    };

    let response = post_raw(b"{\"generation\": ".to_vec(), "application/json")
        .await
        .unwrap();
    let status = response.status().as_u16();
    check(
        status,
        &response.json().await.unwrap(),
        400,
        "malformed_json",
    );

    let response = post_raw(serde_json::to_vec(&seed_example()).unwrap(), "text/plain")
        .await
        .unwrap();
    let status = response.status().as_u16();
    check(
        status,
        &response.json().await.unwrap(),
        415,
        "unsupported_media_type",
    );

    let mut wrong_types = seed_example();
    wrong_types["seeds"] = json!("seven");
    wrong_types["generation"]["generator"] = json!("builtin/oracle");
    let (status, body) = server.post("/runs", &wrong_types).await;
    check(status, &body, 422, "invalid_definition");
    let paths: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"seeds") && paths.contains(&"generation.generator"),
        "{paths:?}"
    );

    let huge = vec![b' '; 2 * 1024 * 1024];
    let response = post_raw(huge, "application/json").await.unwrap();
    let status = response.status().as_u16();
    check(
        status,
        &response.json().await.unwrap(),
        413,
        "body_too_large",
    );

    let (status, body) = server.get("/runs/not-a-run").await;
    check(status, &body, 400, "invalid_run_id");
    let (status, body) = server
        .get("/runs/run_00000000000000000000000000000000")
        .await;
    check(status, &body, 404, "not_found");
    let (status, body) = server.get("/runs?limit=0").await;
    check(status, &body, 400, "invalid_query");
    let (status, body) = server.get("/runs?status=done").await;
    check(status, &body, 400, "invalid_query");
    let (status, body) = server.get("/nowhere").await;
    check(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            "/runs/run_00000000000000000000000000000000/rejudge",
            &json!({"metrics": []}),
        )
        .await;
    check(status, &body, 404, "not_found");
    let (status, body) = server
        .post(
            "/runs/run_00000000000000000000000000000000/rejudge",
            &json!({"metrics": ["nope"]}),
        )
        .await;
    check(status, &body, 422, "invalid_definition");

    // Nothing stored was harmed: the service still works.
    let (status, _) = server.post("/runs", &seed_example()).await;
    assert_eq!(status, 202);
    server.stop().await;
}

#[tokio::test]
async fn api_keys_guard_everything_but_health() {
    let server = TestServer::start_with("memory", Registry::builtin(), vec!["s3cret".into()]).await;
    let (status, body) = server.get("/runs").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = server
        .client
        .get(server.url("/runs"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = server
        .client
        .get(server.url("/runs"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    assert_eq!(server.get("/healthz").await.0, 200);
    assert_eq!(server.get("/readyz").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_unfinished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let calls = CallCounter::default();
    let server = TestServer::start(&url, registry_with_counter(&calls)).await;
    let mut body = counting_experiment(300, 10);
    body["concurrency"] = json!(4);
    let (_, created) = server.post("/runs", &body).await;
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    wait_until(
        &server.client,
        &server.base,
        &run_id,
        Duration::from_secs(30),
        |run| run["progress"]["completed"].as_u64().unwrap_or(0) >= 20,
    )
    .await;
    server.stop().await; // graceful: the run stays `running`

    let calls_after_first = calls.total();
    assert!(calls_after_first > 0 && calls_after_first < 300);
    let server = TestServer::start(&url, registry_with_counter(&calls)).await;
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(
        run["progress"]["completed"].as_u64().unwrap()
            + run["progress"]["failed"].as_u64().unwrap(),
        300
    );
    assert!(
        calls.total() <= 300 + 4,
        "finished cases were not redone ({} calls)",
        calls.total()
    );
    let events = read_sse(
        server
            .client
            .get(server.url(&format!("/runs/{run_id}/events")))
            .send()
            .await
            .unwrap(),
        usize::MAX,
    )
    .await;
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        events.iter().filter(|e| e.event == "case_started").count(),
        300
    );
    server.stop().await;
}
