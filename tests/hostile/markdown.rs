//! Markdown comparisons are pasted into pull requests: client-chosen ids (metrics,
//! datasets) must show as written and never add rows, headings, links or HTML.

use crate::common;

use serde_json::{Value, json};

use common::{CallCounter, TestServer, registry_with_counter};

const EVIL_METRIC: &str = "m | x <img src=y> [l](u) *b* `c` # h";
const EVIL_DATASET: &str = "d|<b>";

fn definition(delay_ms: u64, metric_id: &str) -> Value {
    json!({
        "generation": {"generator": {"name": "test/counting", "params": {"delay_ms": delay_ms}}},
        "evaluation": {"metrics": [{"name": "builtin/exact_match", "id": metric_id}]},
        "datasets": [
            {"dataset_id": EVIL_DATASET, "cases": [
                {"case_id": "a", "input": {"answer": "1"}, "expected_output": "1"},
                {"case_id": "b", "input": {"answer": "2"}, "expected_output": "1"}
            ]},
            {"dataset_id": "plain", "cases": [
                {"case_id": "a", "input": {"answer": "1"}, "expected_output": "1"}
            ]}
        ],
        "seeds": [1]
    })
}

async fn markdown(server: &TestServer, path: &str) -> String {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn ids_in_markdown_tables_cannot_inject_markdown() {
    let server = TestServer::start("memory", registry_with_counter(&CallCounter::default())).await;
    // A line break in an id is refused outright.
    let (status, body) = server
        .post("/runs", &definition(0, "m\n\n# Approved"))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"][0]["path"], "evaluation.metrics[0].id",
        "{body}"
    );

    let baseline =
        common::post_run(&server.client, &server.base, &definition(0, EVIL_METRIC)).await;
    let candidate =
        common::post_run(&server.client, &server.base, &definition(1, EVIL_METRIC)).await;
    server.wait_finished(&baseline).await;
    server.wait_finished(&candidate).await;

    let pair = markdown(
        &server,
        &format!("/runs/{candidate}/compare?baseline={baseline}&format=markdown"),
    )
    .await;
    let several = markdown(
        &server,
        &format!("/compare?runs={baseline},{candidate}&format=markdown"),
    )
    .await;
    let escaped = regex::Regex::new(r"\\.").unwrap();
    for text in [&pair, &several] {
        let bare = escaped.replace_all(text, "");
        for raw in ["<", "[l]", "*b*", "`", "# h"] {
            assert!(!bare.contains(raw), "`{raw}` unescaped: {text}");
        }
    }
    // Every table row has exactly the header's cells: no `|` of an id splits one.
    let cells = |line: &str| line.replace("\\|", "").matches('|').count();
    let rows: Vec<&str> = pair.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(
        rows.len(),
        2 + 3,
        "header, rule, overall and two datasets: {pair}"
    );
    assert!(rows.iter().all(|r| cells(r) == 11), "{pair}");
    assert!(
        pair.contains("| m \\| x \\<img src=y\\> \\[l\\](u) \\*b\\* \\`c\\` \\# h | d\\|\\<b\\> |"),
        "{pair}"
    );
    assert!(
        several.contains("### m \\| x \\<img src=y\\> \\[l\\](u) \\*b\\* \\`c\\` \\# h\n"),
        "{several}"
    );
}
