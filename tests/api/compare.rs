//! Comparing runs over HTTP (a real port, a real SQLite file) and with `themis compare`.

use crate::common;

use std::time::Duration;

use serde_json::{Value, json};
use themis::components::Registry;

use common::{CallCounter, TestServer, counting_experiment, registry_with_counter, wait_until};

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("themis.db").display())
}

/// Echo runs: each case answers `answers[case_id]`, expected `x`; cases c0..c9 in
/// dataset `a`, c10..c19 in `b` (plus `extra` cases in `a`).
fn echo_run(wrong: &[usize], extra: &[&str], metric: &str) -> Value {
    let case = |id: String, answer: &str| json!({"case_id": id, "input": {"answer": answer}, "expected_output": "x"});
    let answer = |i: usize| if wrong.contains(&i) { "wrong" } else { "x" };
    let mut a: Vec<Value> = (0..10).map(|i| case(format!("c{i}"), answer(i))).collect();
    a.extend(extra.iter().map(|id| case((*id).to_owned(), "x")));
    let b: Vec<Value> = (10..20).map(|i| case(format!("c{i}"), answer(i))).collect();
    json!({
        "generation": {"generator": {"name": "builtin/echo", "params": {"field": "answer"}}},
        "evaluation": {"metrics": [metric]},
        "datasets": [{"dataset_id": "a", "cases": a}, {"dataset_id": "b", "cases": b}],
        "seeds": [1]
    })
}

async fn finished_run(server: &TestServer, definition: &Value) -> String {
    let (status, created) = server.post("/runs", definition).await;
    assert!(status == 202 || status == 200, "{created}");
    let run_id = created["run_id"].as_str().unwrap().to_owned();
    let run = server.wait_finished(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    run_id
}

async fn get_text(server: &TestServer, path: &str) -> (u16, String, String) {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn paired_statistics_regressions_exports_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let baseline = finished_run(&server, &echo_run(&[], &[], "builtin/exact_match")).await;
    let candidate = finished_run(
        &server,
        &echo_run(&[0, 1, 2, 3, 4, 5], &[], "builtin/exact_match"),
    )
    .await;

    let path = format!("/runs/{candidate}/compare?baseline={baseline}");
    let (status, content_type, body) = get_text(&server, &path).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("application/json"));
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["partial"], false);
    assert_eq!(report["n_paired_cases"], 20);
    assert_eq!(report["baseline"]["run_id"], baseline.as_str());
    let overall = &report["metrics"]["builtin/exact_match"]["overall"];
    assert_eq!(overall["n_paired"], 20);
    assert_eq!(overall["baseline_mean"], 1.0);
    assert_eq!(overall["candidate_mean"], 0.7);
    assert_eq!(overall["delta"], -0.3);
    assert_eq!(
        (&overall["wins"], &overall["losses"], &overall["ties"]),
        (&json!(0), &json!(6), &json!(14))
    );
    assert_eq!(overall["test"], "mcnemar_exact");
    // 6 discordant pairs all one way: 2 * 0.5^6.
    assert_eq!(overall["p_value"], 0.03125);
    // Differences: six -1, fourteen 0: sd^2 = 4.2 / 19, se = sqrt(sd^2 / 20),
    // t(19) = 2.093024 (t table): -0.3 -/+ 0.220042.
    let ci = overall["delta_ci95"].as_array().unwrap();
    assert!((ci[0].as_f64().unwrap() + 0.520_042).abs() < 1e-5, "{ci:?}");
    assert!((ci[1].as_f64().unwrap() + 0.079_958).abs() < 1e-5, "{ci:?}");
    assert_eq!(overall["unpaired_baseline"], 0);
    let by_dataset = &report["metrics"]["builtin/exact_match"]["by_dataset"];
    assert_eq!(by_dataset["a"]["losses"], 6);
    assert_eq!(by_dataset["a"]["n_paired"], 10);
    assert_eq!(by_dataset["b"]["ties"], 10);
    assert_eq!(by_dataset["b"]["p_value"], 1.0);

    // Deterministic: byte-identical every time.
    let (_, _, again) = get_text(&server, &path).await;
    assert_eq!(body, again);

    // Markdown for a pull request.
    let (status, content_type, markdown) =
        get_text(&server, &format!("{path}&format=markdown")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/markdown"), "{content_type}");
    assert!(
        markdown.contains("| metric | dataset | n | baseline | candidate | delta |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| builtin/exact_match | all | 20 | 1.0000 | 0.7000 | -0.3000 | [-0.5200, -0.0800] | 0.0312 | mcnemar_exact | 0/6/14 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| builtin/exact_match | a | 10 |"),
        "{markdown}"
    );

    // Regressed cases, paged, with both outputs and links to both records.
    let cases_path =
        format!("/runs/{candidate}/compare/cases?baseline={baseline}&filter=regressed&limit=4");
    let (status, page) = server.get(&cases_path).await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["c0", "c1", "c2", "c3"]);
    let first = &page["cases"][0];
    assert_eq!(first["baseline"]["output"], "x");
    assert_eq!(first["candidate"]["output"], "wrong");
    assert_eq!(
        first["changes"]["builtin/exact_match"],
        json!({"baseline": 1.0, "candidate": 0.0, "delta": -1.0})
    );
    let (status, linked) = server
        .get(first["baseline"]["record"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert_eq!(linked["results"][0]["case_id"], "c0");
    assert_eq!(linked["results"][0]["run_id"], baseline.as_str());
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = server.get(&format!("{cases_path}&cursor={cursor}")).await;
    let listed: Vec<&str> = rest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["c4", "c5"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, improved) = server
        .get(&format!(
            "/runs/{candidate}/compare/cases?baseline={baseline}&filter=improved"
        ))
        .await;
    assert_eq!(improved["cases"], json!([]));
    let (status, bad) = server
        .get(&format!(
            "/runs/{candidate}/compare/cases?baseline={baseline}&filter=worse"
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["details"][0]["path"], "filter");

    // Exports: every record, one row per case, one column per metric.
    let (status, content_type, csv) =
        get_text(&server, &format!("/runs/{candidate}/results?format=csv")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/csv"));
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 21, "{csv}");
    assert_eq!(
        lines[0],
        "case_index,dataset_id,case_id,seed,status,builtin/exact_match,output,error,generation_usd,judging_usd,cost_usd"
    );
    assert_eq!(lines[1], "0,a,c0,1,completed,0,wrong,,0,0,0");
    assert_eq!(lines[20], "19,b,c19,1,completed,1,x,,0,0,0");
    let (_, _, csv_again) =
        get_text(&server, &format!("/runs/{candidate}/results?format=csv")).await;
    assert_eq!(csv, csv_again);
    let (status, content_type, jsonl) = get_text(
        &server,
        &format!("/runs/{candidate}/results?format=jsonl&dataset_id=b"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/x-ndjson"));
    let records: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 10);
    assert!(records.iter().all(|r| r["dataset_id"] == "b"));
    let (status, bad) = server
        .get(&format!("/runs/{candidate}/results?format=xml"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["details"][0]["path"], "format");
    let (status, _) = server
        .get(&format!("/runs/{candidate}/results?format=csv&limit=5"))
        .await;
    assert_eq!(status, 400);

    // Bad input.
    let unknown = format!("run_{}", "0".repeat(32));
    let (status, missing) = server
        .get(&format!("/runs/{candidate}/compare?baseline={unknown}"))
        .await;
    assert_eq!(status, 404, "{missing}");
    let (status, _) = server
        .get(&format!("/runs/{unknown}/compare?baseline={baseline}"))
        .await;
    assert_eq!(status, 404);
    let (status, missing) = server.get(&format!("/runs/{candidate}/compare")).await;
    assert_eq!(status, 400);
    assert_eq!(missing["error"]["details"][0]["path"], "baseline");
    let (status, _) = server.get(&format!("{path}&format=pdf")).await;
    assert_eq!(status, 400);
    let other_metric = finished_run(&server, &echo_run(&[], &[], "builtin/token_f1")).await;
    let (status, error) = server
        .get(&format!("/runs/{other_metric}/compare?baseline={baseline}"))
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "unprocessable");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no metric or judge in common"),
        "{error}"
    );
    let disjoint = json!({
        "generation": {"generator": {"name": "builtin/echo", "params": {"field": "answer"}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "z", "cases": [{"case_id": "q", "input": {"answer": "x"}, "expected_output": "x"}]}],
        "seeds": [1]
    });
    let disjoint = finished_run(&server, &disjoint).await;
    let (status, error) = server
        .get(&format!("/runs/{disjoint}/compare?baseline={baseline}"))
        .await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no (dataset_id, case_id, seed)"),
        "{error}"
    );

    // Unpaired cases on both sides; several runs at once with Holm.
    let third = finished_run(&server, &echo_run(&[], &["extra"], "builtin/exact_match")).await;
    let (_, partly) = server
        .get(&format!("/runs/{third}/compare?baseline={candidate}"))
        .await;
    assert_eq!(partly["n_paired_cases"], 20);
    assert_eq!(partly["unpaired_candidate"], 1);
    assert_eq!(
        partly["metrics"]["builtin/exact_match"]["by_dataset"]["a"]["unpaired_candidate"],
        1
    );
    assert_eq!(
        partly["metrics"]["builtin/exact_match"]["by_dataset"]["b"]["unpaired_candidate"],
        0
    );
    let (status, table) = server
        .get(&format!("/compare?runs={baseline},{candidate},{third}"))
        .await;
    assert_eq!(status, 200, "{table}");
    let metric = &table["metrics"]["builtin/exact_match"];
    assert_eq!(metric["runs"].as_array().unwrap().len(), 3);
    assert_eq!(metric["runs"][1]["mean"], 0.7);
    let versus = metric["versus_first"].as_array().unwrap();
    assert_eq!(versus.len(), 2);
    // p-values 0.03125 and 1 (third: no change): Holm multiplies the smaller by 2.
    assert_eq!(versus[0]["p_value"], 0.03125);
    assert_eq!(versus[0]["p_value_holm"], 0.0625);
    assert_eq!(versus[1]["p_value_holm"], 1.0);
    let (status, _, markdown) = get_text(
        &server,
        &format!("/compare?runs={baseline},{candidate}&format=markdown"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(markdown.contains("### builtin/exact_match"), "{markdown}");
    let (status, _) = server.get(&format!("/compare?runs={baseline}")).await;
    assert_eq!(status, 400);
    let (status, _) = server
        .get(&format!("/compare?runs={baseline},{baseline}"))
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .get(&format!("/compare?runs={baseline},{unknown}"))
        .await;
    assert_eq!(status, 404);

    server.stop().await;
}

#[tokio::test]
async fn a_running_run_compares_what_is_recorded_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let calls = CallCounter::default();
    let server = TestServer::start(&sqlite_url(&dir), registry_with_counter(&calls)).await;
    let baseline = finished_run(&server, &counting_experiment(40, 0)).await;
    let mut slow = counting_experiment(40, 200);
    slow["concurrency"] = json!(1);
    let (_, created) = server.post("/runs", &slow).await;
    let candidate = created["run_id"].as_str().unwrap().to_owned();
    wait_until(
        &server.client,
        &server.base,
        &candidate,
        Duration::from_secs(60),
        |run| run["progress"]["completed"].as_u64().unwrap_or(0) >= 1,
    )
    .await;
    let (status, report) = server
        .get(&format!("/runs/{candidate}/compare?baseline={baseline}"))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["partial"], true, "{report}");
    assert!(
        report["note"].as_str().unwrap().contains("recorded so far"),
        "{report}"
    );
    let paired = report["n_paired_cases"].as_u64().unwrap();
    assert!((1..40).contains(&paired), "{report}");
    assert_eq!(report["unpaired_baseline"].as_u64().unwrap(), 40 - paired);
    let (status, _) = server
        .post(&format!("/runs/{candidate}/cancel"), &json!({}))
        .await;
    assert!(status == 200 || status == 202);
    server.wait_finished(&candidate).await;
    server.stop().await;
}

#[tokio::test]
async fn cli_compare_exit_codes_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(&dir);
    let server = TestServer::start(&database, Registry::builtin()).await;
    let good = finished_run(&server, &echo_run(&[], &[], "builtin/exact_match")).await;
    let worse = finished_run(
        &server,
        &echo_run(&[0, 1, 2, 3, 4, 5], &[], "builtin/exact_match"),
    )
    .await;
    let cli = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_themis"))
            .arg("compare")
            .args(args)
            .env_remove("THEMIS_SERVER")
            .env_remove("THEMIS_API_KEY")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();

    // A significant drop fails CI.
    let out = cli(s(&[
        &good,
        &worse,
        "--server",
        &server.base,
        "--fail-on-regression",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("builtin/exact_match") && stdout.contains("-0.3000"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("regression: builtin/exact_match"));
    // The same drop within the allowed threshold, or the other direction, passes.
    let out = cli(s(&[
        &good,
        &worse,
        "--server",
        &server.base,
        "--fail-on-regression",
        "--max-drop",
        "0.5",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = cli(s(&[
        &worse,
        &good,
        "--server",
        &server.base,
        "--fail-on-regression",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Without the flag a regression is reported, not failed.
    let out = cli(s(&[&good, &worse, "--server", &server.base])).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Errors exit 2 with the server's message.
    let unknown = format!("run_{}", "0".repeat(32));
    let out = cli(s(&[&good, &unknown, "--server", &server.base])).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{out:?}"
    );
    // From the database directly: the same JSON the server sends. SQLite serves one
    // process, so the server stops first.
    let response = server
        .client
        .get(server.url(&format!("/runs/{worse}/compare?baseline={good}")))
        .send()
        .await
        .unwrap();
    let served = response.text().await.unwrap();
    server.stop().await;
    let out = cli(s(&[
        &good,
        &worse,
        "--database",
        &database,
        "--format",
        "json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), served);
    let out = cli(s(&[
        &good,
        &worse,
        "--database",
        &database,
        "--format",
        "markdown",
    ]))
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("| builtin/exact_match | all | 20 |"));
    let out = cli(s(&[&good, &worse])).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn bootstrap_intervals_on_request_are_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let run = finished_run(
        &server,
        &echo_run(&[0, 1, 2, 3, 4, 5], &[], "builtin/exact_match"),
    )
    .await;
    let (_, plain) = server.get(&format!("/runs/{run}")).await;
    assert!(
        plain["aggregates"]["builtin/exact_match"]
            .get("ci95_bootstrap")
            .is_none()
    );
    let path = format!("/runs/{run}?ci=bootstrap");
    let (status, _, body) = get_text(&server, &path).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let aggregate = &view["aggregates"]["builtin/exact_match"];
    let [lo, hi] = [0, 1].map(|i| aggregate["ci95_bootstrap"][i].as_f64().unwrap());
    // Mean 0.7 over 20 0/1 scores: a resampled mean is k/20, and the bounds sit near
    // 0.7 -/+ 1.96 * sqrt(0.21 / 20) = 0.7 -/+ 0.2.
    assert!(
        lo < 0.7 && hi > 0.7 && lo >= 0.45 && hi <= 0.95,
        "{lo} {hi}"
    );
    assert_eq!((lo * 20.0).fract(), 0.0);
    assert!(aggregate["by_dataset"]["a"]["ci95_bootstrap"].is_array());
    // Dataset b: all ten correct, so every resample mean is 1.
    assert_eq!(
        aggregate["by_dataset"]["b"]["ci95_bootstrap"],
        json!([1.0, 1.0])
    );
    let (_, _, again) = get_text(&server, &path).await;
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(aggregate, &again["aggregates"]["builtin/exact_match"]);
    let (status, error) = server.get(&format!("/runs/{run}?ci=jackknife")).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["details"][0]["path"], "ci");
    server.stop().await;
}

#[tokio::test]
async fn a_rejudge_compares_against_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let source = finished_run(&server, &echo_run(&[3], &[], "builtin/exact_match")).await;
    // Same generations re-scored with an extra metric: exact_match is shared.
    let (status, created) = server
        .post(
            &format!("/runs/{source}/rejudge"),
            &json!({"metrics": ["builtin/exact_match", "builtin/token_f1"]}),
        )
        .await;
    assert!(status == 202 || status == 200, "{created}");
    let rejudge = created["run_id"].as_str().unwrap().to_owned();
    server.wait_finished(&rejudge).await;
    let (status, report) = server
        .get(&format!("/runs/{rejudge}/compare?baseline={source}"))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["candidate"]["kind"], "rejudge");
    assert_eq!(report["only_in_candidate"], json!(["builtin/token_f1"]));
    let overall = &report["metrics"]["builtin/exact_match"]["overall"];
    assert_eq!(overall["n_paired"], 20);
    assert_eq!(overall["delta"], 0.0);
    assert_eq!(overall["ties"], 20);
    assert_eq!(overall["p_value"], 1.0);
    server.stop().await;
}

/// A CSV export opened in a spreadsheet runs nothing: text cells that would be read as
/// a formula (from the model's output, the dataset's ids) start with `'`.
#[tokio::test]
async fn csv_exports_neutralise_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&sqlite_url(&dir), Registry::builtin()).await;
    let answers = [
        ("=c0", "=HYPERLINK(\"http://evil\",\"x\")"),
        ("+c1", "+1+1"),
        ("-c2", "-2+3"),
        ("@c3", "@SUM(A1)"),
        ("c4", "\tx"),
        ("c5", "plain"),
    ];
    let cases: Vec<Value> = answers
        .iter()
        .map(|(id, answer)| json!({"case_id": id, "input": {"answer": answer}, "expected_output": "x"}))
        .collect();
    let run = finished_run(
        &server,
        &json!({
            "generation": {"generator": {"name": "builtin/echo", "params": {"field": "answer"}}},
            "evaluation": {"metrics": ["builtin/exact_match"]},
            "datasets": [{"dataset_id": "=ds", "cases": cases}],
            "seeds": [1]
        }),
    )
    .await;
    let (status, _, csv) = get_text(&server, &format!("/runs/{run}/results?format=csv")).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        &lines[1..],
        [
            "0,'=ds,'=c0,1,completed,0,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",,0,0,0",
            "1,'=ds,'+c1,1,completed,0,'+1+1,,0,0,0",
            "2,'=ds,'-c2,1,completed,0,'-2+3,,0,0,0",
            "3,'=ds,'@c3,1,completed,0,'@SUM(A1),,0,0,0",
            // exact_match trims whitespace: "\tx" matches "x".
            "4,'=ds,c4,1,completed,1,'\tx,,0,0,0",
            "5,'=ds,c5,1,completed,0,plain,,0,0,0",
        ]
    );
    // The JSON Lines export is data, not a sheet: left as it is.
    let (_, _, jsonl) = get_text(&server, &format!("/runs/{run}/results?format=jsonl")).await;
    assert!(jsonl.contains(r#""case_id":"=c0""#), "{jsonl}");
    server.stop().await;
}
