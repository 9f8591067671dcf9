//! Representations: the ETag covers the whole body (telemetry included), and seeds are
//! strings in JSON while requests take either form.
use crate::common;
use common::webhook::WebhookReceiver;
use common::{TestServer, events_of, wait_until};
use serde_json::{Value, json};
use std::time::Duration;
use themis::components::Registry;

const BIG_SEED: &str = "14654362444250397125";

fn demo(cases: usize, seeds: Value) -> Value {
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i} + 1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": "builtin/demo_generator", "candidate_policy": {"num_samples": 2}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": seeds
    })
}

async fn get_with_tag(server: &TestServer, path: &str, tag: Option<&str>) -> (u16, String) {
    let mut request = server.client.get(server.url(path));
    if let Some(tag) = tag {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.unwrap();
    let tag = response.headers()["etag"].to_str().unwrap().to_owned();
    (response.status().as_u16(), tag)
}

#[tokio::test]
async fn the_etag_changes_when_only_the_telemetry_changes() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    let receiver = WebhookReceiver::gated().await;
    let hook = receiver.url("/hook");
    let mut body = demo(3, json!([1]));
    body["subscribers"] = json!([{"kind": "webhook", "url": hook, "events": ["run_completed"]}]);
    let (status, created) = server.post("/runs", &body).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    // Finished, its one delivery held by the receiver: the row no longer changes.
    let run = wait_until(
        &server.client,
        &server.base,
        &run_id,
        Duration::from_secs(30),
        |run| run["status"] == "completed" && run["telemetry"]["webhooks"][0]["pending"] == 1,
    )
    .await;
    assert_eq!(run["telemetry"]["webhooks"][0]["delivered"], 0, "{run}");
    let path = format!("/runs/{run_id}");
    let (_, before) = get_with_tag(&server, &path, None).await;
    assert_eq!(get_with_tag(&server, &path, Some(&before)).await.0, 304);

    receiver.open(1);
    wait_until(
        &server.client,
        &server.base,
        &run_id,
        Duration::from_secs(30),
        |run| run["telemetry"]["webhooks"][0]["delivered"] == 1,
    )
    .await;
    let (status, after) = get_with_tag(&server, &path, Some(&before)).await;
    assert_eq!(
        status, 200,
        "the telemetry changed, so the representation did"
    );
    assert_ne!(after, before);
    assert_eq!(get_with_tag(&server, &path, Some(&after)).await.0, 304);
    // The definition view is another representation with its own tag.
    let (_, with_definition) =
        get_with_tag(&server, &format!("{path}?include=definition"), None).await;
    assert_ne!(with_definition, after);
    server.stop().await;
}

#[tokio::test]
async fn seeds_are_strings_in_json_and_requests_take_either_form() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    let (status, created) = server.post("/runs", &demo(2, json!([BIG_SEED, 7]))).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    // The same seeds as numbers name the same run.
    let as_numbers: Value = serde_json::from_str(
        &demo(2, json!([0, 7]))
            .to_string()
            .replace("\"seeds\":[0,7]", &format!("\"seeds\":[{BIG_SEED},7]")),
    )
    .unwrap();
    assert!(as_numbers["seeds"][0].is_u64(), "{as_numbers}");
    let (status, again) = server.post("/runs", &as_numbers).await;
    assert_eq!(
        (status, again["run_id"].as_str()),
        (200, Some(run_id.as_str()))
    );

    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (_, with_definition) = server
        .get(&format!("/runs/{run_id}?include=definition"))
        .await;
    assert_eq!(
        with_definition["definition"]["seeds"],
        json!([BIG_SEED, "7"])
    );

    let (_, page) = server.get(&format!("/runs/{run_id}/results")).await;
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let mut big = 0;
    for result in results {
        let seed = result["seed"].as_str().expect("seed is a string");
        big += usize::from(seed == BIG_SEED);
        for candidate in result["candidates"].as_array().unwrap() {
            let seed = candidate["seed"]
                .as_str()
                .expect("candidate seed is a string");
            assert!(seed.parse::<u64>().is_ok(), "{candidate}");
        }
    }
    assert_eq!(big, 2);

    let events = events_of(&server.client, &server.base, &run_id).await;
    let generated: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "generation_completed")
        .map(|e| &e.data)
        .collect();
    assert_eq!(generated.len(), 8);
    for data in generated {
        assert!(
            data["seed"].is_string() && data["candidate_seed"].is_string(),
            "{data}"
        );
    }
    // Everything else stays a number (and below 2^53).
    let last = &events.last().unwrap().data;
    assert!(
        last["seq"].is_u64() && last["progress"]["total"].is_u64(),
        "{last}"
    );

    let (status, invalid) = server.post("/runs", &demo(1, json!(["-1"]))).await;
    assert_eq!(status, 422, "{invalid}");
    assert_eq!(invalid["error"]["details"][0]["path"], "seeds[0]");
    server.stop().await;
}
