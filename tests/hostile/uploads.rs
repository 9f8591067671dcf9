//! Hostile dataset uploads: column mappings that multiply work by the header, headers of
//! long names, repeats. Each answer is a bounded 4xx naming the parameter or column, and
//! the work done is proportional to the request.

use crate::common;

use std::time::Duration;

use serde_json::Value;
use themis::components::Registry;

use common::TestServer;

/// A raw PUT: status and body text (its size is part of what is checked).
async fn put_raw(server: &TestServer, path: &str, body: String) -> (u16, String) {
    let response = server
        .client
        .put(server.url(path))
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn details(body: &Value) -> &Vec<Value> {
    body["error"]["details"].as_array().expect("details")
}

/// A header of `n` columns, each a long name, and one row.
fn wide_csv(n: usize, name_len: usize) -> String {
    let names: Vec<String> = (0..n)
        .map(|i| format!("{i:0>width$}", width = name_len))
        .collect();
    let mut csv = format!("case_id,input,{}\n", names.join(","));
    csv.push_str(&format!("1,q{}\n", ",v".repeat(n)));
    csv
}

#[tokio::test]
async fn missing_columns_of_a_wide_header_get_a_small_answer_naming_each_column() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    // 2,000 columns of 100 bytes: a 200 KB header. Every missing column's message used
    // to quote all of it (a 1 MB header and 5,000 names aborted the process).
    let csv = wide_csv(2_000, 100);
    let missing: Vec<String> = (0..900).map(|i| format!("nope{i}")).collect();
    for param in ["metadata", "input"] {
        let path = format!("/datasets/w?{param}={}", missing.join(","));
        let (status, text) = put_raw(&server, &path, csv.clone()).await;
        assert_eq!(status, 422, "{}", &text[..text.len().min(500)]);
        assert!(
            text.len() < 64 * 1024,
            "{param}: a {} byte answer",
            text.len()
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        let details = details(&body);
        assert_eq!(details.len(), 100, "capped, the last counting the rest");
        assert_eq!(details[0]["path"], param);
        let first = details[0]["message"].as_str().unwrap();
        assert!(first.contains("`nope0`"), "names the column: {first}");
        assert!(first.contains("2002 columns"), "counts the header: {first}");
    }
}

#[tokio::test]
async fn repeated_and_overlong_column_names_are_bounded() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    // 10,000 repeats of one column are that column once.
    let repeats = vec!["q"; 10_000].join(",");
    let mut csv = String::from("case_id,q,answer\n");
    for i in 0..200 {
        csv.push_str(&format!("c{i},what is {i}?,{i}\n"));
    }
    let (status, text) = put_raw(
        &server,
        &format!("/datasets/r?input={repeats}&expected_output=answer"),
        csv,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (_, page) = server.get("/datasets/r/cases?limit=1").await;
    assert_eq!(page["cases"][0]["input"], "what is 0?", "{page}");

    // More distinct names than a mapping may hold: refused before the body is read.
    let many: Vec<String> = (0..1_025).map(|i| format!("c{i}")).collect();
    let (status, text) = put_raw(
        &server,
        &format!("/datasets/m?input={}", many.join(",")),
        "case_id,input\n1,q\n".to_owned(),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(details(&body)[0]["path"], "input", "{body}");
    assert!(
        details(&body)[0]["message"]
            .as_str()
            .unwrap()
            .contains("more than 1024 columns"),
        "{body}"
    );

    // A repeated long header name is quoted in part, not whole.
    let long = "x".repeat(100_000);
    let (status, text) = put_raw(
        &server,
        "/datasets/dup",
        format!("case_id,input,{long},{long}\n1,q,a,b\n"),
    )
    .await;
    assert_eq!(status, 422);
    assert!(text.len() < 2_000, "a {} byte answer", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(details(&body)[0]["path"], "header", "{body}");
    assert!(
        details(&body)[0]["message"]
            .as_str()
            .unwrap()
            .contains("appears twice")
    );
}

/// A dataset of `rows` tiny CSV rows.
fn tiny_rows(rows: usize) -> String {
    let mut csv = String::with_capacity(rows * 12 + 16);
    csv.push_str("case_id,input\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},q\n"));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_never_holds_the_writer_from_a_concurrent_post_runs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("themis.db").display());
    let server = std::sync::Arc::new(TestServer::start(&url, Registry::builtin()).await);
    // Scaled down from a gigabyte: enough rows that storing them in one transaction
    // kept every other write waiting for seconds.
    let upload = {
        let server = server.clone();
        tokio::spawn(async move { put_raw(&server, "/datasets/big", tiny_rows(100_000)).await })
    };
    let mut slowest = std::time::Duration::ZERO;
    let mut posted = 0u64;
    while !upload.is_finished() {
        let definition = serde_json::json!({
            "generation": {"generator": "builtin/demo_generator"},
            "evaluation": {"metrics": ["builtin/exact_match"]},
            "datasets": [{"dataset_id": "d", "cases": [
                {"case_id": "a", "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}
            ]}],
            "seeds": [posted]
        });
        let started = std::time::Instant::now();
        let (status, body) = server.post("/runs", &definition).await;
        assert!((200..300).contains(&status), "{status} {body}");
        slowest = slowest.max(started.elapsed());
        posted += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, text) = upload.await.unwrap();
    assert_eq!(status, 201, "{}", &text[..text.len().min(300)]);
    assert!(posted > 3, "runs were posted during the upload");
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "a POST /runs waited {slowest:?} behind the upload"
    );
    let (_, page) = server.get("/datasets/big").await;
    assert_eq!(page["revisions"][0]["case_count"], 100_000, "{page}");
}

/// Parsing, checking and hashing an upload run beside the async workers: on a runtime
/// of one thread (this test's, which also serves), `/healthz` polled every 50 ms
/// answers within 500 ms of when each poll was due while an upload of large cases is
/// parsed. Parsed on that thread, the upload held it from start to end (24 s for eight
/// such cases in a debug build: no poll was answered meanwhile).
#[tokio::test]
async fn requests_answer_promptly_while_a_large_upload_is_parsed() {
    let server = TestServer::start("memory", Registry::builtin()).await;
    // Three cases of ~3.6 MB each (under the 4 MiB per-case limit), each an array of
    // 1.8 million numbers: costly to parse, check, canonicalise and hash.
    let numbers = "1,".repeat(1_800_000);
    let body: String = (0..3)
        .map(|i| format!("{{\"case_id\":\"c{i}\",\"input\":[{numbers}0]}}\n"))
        .collect();
    let upload = {
        let request = server
            .client
            .put(server.url("/datasets/large"))
            .header("content-type", "application/x-ndjson")
            .body(body);
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    let mut worst = Duration::ZERO;
    let mut polls = 0;
    while !upload.is_finished() {
        let due = interval.tick().await;
        let response = server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        worst = worst.max(due.elapsed());
        polls += 1;
    }
    assert_eq!(upload.await.unwrap(), 201);
    assert!(polls > 5, "the upload took {polls} polls only");
    assert!(
        worst < Duration::from_millis(500),
        "a /healthz due during the upload was answered {worst:?} late"
    );
}
