//! People in the loop over HTTP: reviews of cases (append-only, the latest of each
//! reviewer counts, checked against each component's scale, kept across rejudges and
//! shown in results, exports and the case view) and the agreement of metrics and judges
//! with the reviewers.

use crate::common;

use serde_json::{Value, json};

use common::{CallCounter, TestServer, counting_experiment, registry_with_counter};

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("themis.db").display())
}

const EXACT: &str = "builtin/exact_match";

/// Reviews `case` as `reviewer` (no keys: the header names them).
async fn review(
    server: &TestServer,
    run: &str,
    case: u64,
    reviewer: &str,
    body: Value,
) -> (u16, Value) {
    let response = server
        .client
        .post(server.url(&format!("/runs/{run}/cases/{case}/reviews")))
        .header("x-themis-reviewer", reviewer)
        .json(&body)
        .send()
        .await
        .unwrap();
    common::json_of(response).await
}

/// `exact_match` on `counting_experiment(8)` is 1 1 0 0 0 0 1 1; the people say
/// 1 0 0 0 1 0 1 1 (ana and bo exactly, cy differs on cases 1 and 4).
const PEOPLE: [f64; 8] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];

#[tokio::test]
async fn reviews_are_kept_checked_and_shown_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let calls = CallCounter::default();
    let server = TestServer::start(&sqlite_url(&dir), registry_with_counter(&calls)).await;
    let (_, created) = server.post("/runs", &counting_experiment(8, 0)).await;
    let run = created["run_id"].as_str().unwrap().to_owned();
    server.wait_finished(&run).await;

    // Bad input names its field.
    let (status, body) = review(&server, &run, 0, "ana", json!({"scores": {"nope": 1}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_review");
    assert_eq!(body["error"]["details"][0]["path"], "scores.nope");
    let (status, body) = review(&server, &run, 0, "ana", json!({"scores": {EXACT: 0.5}})).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"]["details"][0]["path"],
        format!("scores.{EXACT}")
    );
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("label")
    );
    let (status, body) = review(&server, &run, 0, "ana", json!({"scores": {EXACT: "yes"}})).await;
    assert_eq!(
        (status, body["error"]["details"][0]["path"].clone()),
        (422, json!(format!("scores.{EXACT}")))
    );
    let (status, body) = review(&server, &run, 0, "ana", json!({"scores": {}})).await;
    assert_eq!(
        (status, body["error"]["details"][0]["path"].clone()),
        (422, json!("scores"))
    );
    let (status, _) = review(&server, &run, 99, "ana", json!({"scores": {EXACT: 1}})).await;
    assert_eq!(status, 404, "a case without a record");
    let (status, body) = review(&server, &run, 0, "a b", json!({"scores": {EXACT: 1}})).await;
    assert_eq!(
        (status, body["error"]["details"][0]["path"].clone()),
        (400, json!("x-themis-reviewer"))
    );

    // Ana changes her mind on case 0: both reviews are history, the latest counts.
    let (status, first) = review(&server, &run, 0, "ana", json!({"scores": {EXACT: 0}})).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["reviewer"], "ana");
    for (case, label) in PEOPLE.iter().enumerate() {
        for reviewer in ["ana", "bo", "cy"] {
            let label = if reviewer == "cy" && (case == 1 || case == 4) {
                1.0 - label
            } else {
                *label
            };
            let (status, body) = review(
                &server,
                &run,
                case as u64,
                reviewer,
                json!({"scores": {EXACT: label}, "comment": format!("{reviewer} on {case}")}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
    }
    let (status, history) = server.get(&format!("/runs/{run}/cases/0/reviews")).await;
    assert_eq!(status, 200);
    let reviews = history["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 4, "append-only: {history}");
    assert_eq!(reviews[0]["scores"][EXACT], 0.0);
    let latest = history["latest"].as_array().unwrap();
    assert_eq!(latest.len(), 3);
    let ana = latest.iter().find(|r| r["reviewer"] == "ana").unwrap();
    assert_eq!(ana["scores"][EXACT], 1.0);
    assert_eq!(ana["comment"], "ana on 0");

    // Results, the case view and both exports carry the latest review of each reviewer.
    let (_, page) = server.get(&format!("/runs/{run}/results?limit=2")).await;
    assert_eq!(page["results"][0]["reviews"].as_array().unwrap().len(), 3);
    let (_, case) = server.get(&format!("/runs/{run}/cases/4")).await;
    let cy = case["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reviewer"] == "cy")
        .unwrap()
        .clone();
    assert_eq!(cy["scores"][EXACT], 0.0);
    let jsonl = server
        .client
        .get(server.url(&format!("/runs/{run}/results?format=jsonl")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(line["reviews"].as_array().unwrap().len(), 3);
    let csv = server
        .client
        .get(server.url(&format!("/runs/{run}/results?format=csv")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|h| *h == format!("human:{EXACT}"))
        .expect("a human column");
    let row4: Vec<&str> = lines.nth(4).unwrap().split(',').collect();
    // Case 4: ana and bo say 1, cy says 0.
    assert_eq!(row4[column].parse::<f64>().unwrap(), 2.0 / 3.0);
    assert_eq!(
        row4[header.iter().position(|h| *h == "reviewers").unwrap()],
        "3"
    );

    // Agreement: the people's median is PEOPLE; against 1 1 0 0 0 0 1 1 the matrix
    // (people by metric) is [[3, 1], [1, 3]]: p_o = 0.75, p_e = 0.5, kappa = 0.5.
    let (status, agreement) = server.get(&format!("/runs/{run}/agreement")).await;
    assert_eq!(status, 200, "{agreement}");
    assert_eq!(agreement["reviewed_cases"], 8);
    assert_eq!(agreement["reviewers"], json!(["ana", "bo", "cy"]));
    let exact = &agreement["components"][0];
    assert_eq!(exact["id"], EXACT);
    assert_eq!(exact["scale"]["kind"], "binary");
    assert_eq!(exact["n"], 8);
    assert_eq!(
        exact["confusion"],
        json!({"labels": [0.0, 1.0], "matrix": [[3, 1], [1, 3]]})
    );
    assert!((exact["kappa"]["value"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    let [lo, hi] = [0, 1].map(|i| exact["kappa"]["ci95"][i].as_f64().unwrap());
    assert!(lo < 0.5 && 0.5 < hi, "{lo} {hi}");
    // The seeded bootstrap gives the same interval every time (the guide shows it).
    assert!((lo + 3.0 / 13.0).abs() < 1e-12 && hi == 1.0, "{lo} {hi}");
    // Between the three: 24 values, twelve 1s; cases 1 and 4 split 2-1.
    // D_o = 2 * 2 / 24, D_e = (576 - 144 - 144) / (24 * 23): alpha = 1 - 552 / 1728.
    let alpha = exact["reviewers"]["krippendorff_alpha"]["value"]
        .as_f64()
        .unwrap();
    assert!((alpha - (1.0 - 552.0 / 1728.0)).abs() < 1e-12, "{alpha}");
    assert_eq!(exact["reviewers"]["count"], 3);

    // A rejudge evaluates the same generations: it sees these reviews, and a review
    // posted through it is stored with them.
    let response = server
        .client
        .post(server.url(&format!("/runs/{run}/rejudge")))
        .json(&json!({"metrics": [EXACT, "builtin/token_f1"]}))
        .send()
        .await
        .unwrap();
    let rejudge: Value = response.json().await.unwrap();
    let rejudge = rejudge["run_id"].as_str().unwrap().to_owned();
    server.wait_finished(&rejudge).await;
    let (_, case) = server.get(&format!("/runs/{rejudge}/cases/4")).await;
    assert_eq!(case["reviews"].as_array().unwrap().len(), 3);
    let (status, _) = review(
        &server,
        &rejudge,
        2,
        "dee",
        json!({"scores": {"builtin/token_f1": 0.25}}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, history) = server.get(&format!("/runs/{run}/cases/2/reviews")).await;
    assert_eq!(history["reviews"].as_array().unwrap().len(), 4);
    let (_, agreement) = server.get(&format!("/runs/{rejudge}/agreement")).await;
    assert_eq!(agreement["reviews_run_id"], run.as_str());
    assert!(
        (agreement["components"][0]["kappa"]["value"]
            .as_f64()
            .unwrap()
            - 0.5)
            .abs()
            < 1e-12
    );
    assert_eq!(agreement["components"][1]["scale"]["kind"], "continuous");
    assert_eq!(agreement["components"][1]["n"], 1);
    server.stop().await;
}

#[tokio::test]
async fn with_keys_the_key_names_the_reviewer() {
    let dir = tempfile::tempdir().unwrap();
    let calls = CallCounter::default();
    let server = TestServer::start_with(
        &sqlite_url(&dir),
        registry_with_counter(&calls),
        vec!["ana:ana-secret".to_owned(), "anonymous-secret".to_owned()],
    )
    .await;
    let post = |key: &'static str, path: String, body: Value| {
        let request = server
            .client
            .post(server.url(&path))
            .bearer_auth(key)
            .header("x-themis-reviewer", "mallory")
            .json(&body);
        async move { common::json_of(request.send().await.unwrap()).await }
    };
    let (_, created) = post("ana-secret", "/runs".into(), counting_experiment(2, 0)).await;
    let run = created["run_id"].as_str().unwrap().to_owned();
    for attempt in 0.. {
        let response = server
            .client
            .get(server.url(&format!("/runs/{run}")))
            .bearer_auth("ana-secret")
            .send()
            .await
            .unwrap();
        let (_, body) = common::json_of(response).await;
        if body["status"] == "completed" {
            break;
        }
        assert!(attempt < 500, "the run did not finish: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, by_ana) = post(
        "ana-secret",
        format!("/runs/{run}/cases/0/reviews"),
        json!({"scores": {EXACT: 1}}),
    )
    .await;
    assert_eq!(status, 201, "{by_ana}");
    assert_eq!(
        by_ana["reviewer"], "ana",
        "the key names the reviewer, not the header"
    );
    let (_, unnamed) = post(
        "anonymous-secret",
        format!("/runs/{run}/cases/0/reviews"),
        json!({"scores": {EXACT: 0}}),
    )
    .await;
    assert_eq!(unnamed["reviewer"], "key-2");
    let (status, _) = post(
        "ana:ana-secret",
        format!("/runs/{run}/cases/0/reviews"),
        json!({"scores": {EXACT: 0}}),
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}
