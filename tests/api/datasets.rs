//! Datasets as resources over HTTP: uploads (JSONL, CSV) checked line by line and stored
//! as content-addressed revisions, experiments that reference them, retries of failed
//! cases, and deleting runs and revisions.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{CallCounter, TestDatabase, TestServer, registry_with_counter};
use serde_json::{Value, json};
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{RunId, RunKind, RunStatus, Timestamp};
use themis::observe::Observers;
use themis::store::{MemoryStore, NewRun, SqliteStore, Store};

const JSONL: &str = "application/x-ndjson";

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("themis.db").display())
}

/// `n` cases for `test/counting` as JSONL lines.
fn jsonl(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"case_id": format!("c{i}"), "input": {"answer": (i % 3).to_string()}, "expected_output": (i % 2).to_string()})
                .to_string()
                + "\n"
        })
        .collect()
}

fn experiment(datasets: Value) -> Value {
    json!({
        "generation": {"generator": "test/counting"},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": datasets,
        "seeds": [1, 2]
    })
}

/// An engine on `store` with `test/counting` reporting to `calls`.
fn engine_on(store: Arc<dyn Store>, calls: &CallCounter) -> Engine {
    Engine::new(
        store,
        Arc::new(registry_with_counter(calls)),
        EngineConfig::default(),
    )
}

async fn start() -> (tempfile::TempDir, TestServer, CallCounter) {
    let dir = tempfile::tempdir().unwrap();
    let calls = CallCounter::default();
    let server = TestServer::start(&sqlite_url(&dir), registry_with_counter(&calls)).await;
    (dir, server, calls)
}

async fn start_on_postgres() -> (TestDatabase, TestServer, CallCounter) {
    let database = TestDatabase::create().await;
    let calls = CallCounter::default();
    let server = TestServer::start(&database.url, registry_with_counter(&calls)).await;
    (database, server, calls)
}

#[tokio::test]
async fn an_upload_is_a_revision_and_the_same_upload_changes_nothing() {
    let (_dir, server, _) = start().await;
    let (status, created) = server.put("/datasets/qa", JSONL, jsonl(5)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["dataset_id"], "qa");
    assert_eq!(created["case_count"], 5);
    let revision = created["revision"].as_str().unwrap().to_owned();
    assert!(revision.starts_with("sha256:") && revision.len() == 71);

    // Reordered keys, CRLF and blank lines: the same canonical cases, the same revision.
    let again: String = (0..5)
        .map(|i| {
            format!(
                "{{\"expected_output\": \"{}\", \"input\": {{\"answer\": \"{}\"}}, \"case_id\": \"c{i}\"}}\r\n\n",
                i % 2,
                i % 3
            )
        })
        .collect();
    let (status, same) = server
        .put("/datasets/qa", "application/x-ndjson; charset=utf-8", again)
        .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same, created, "nothing changed, created_at included");

    let (_, other) = server.put("/datasets/qa", JSONL, jsonl(6)).await;
    let (status, listing) = server.get("/datasets").await;
    assert_eq!(status, 200);
    assert_eq!(listing["datasets"][0]["revisions"], 2);
    assert_eq!(
        listing["datasets"][0]["latest"]["revision"],
        other["revision"]
    );
    let (_, revisions) = server.get("/datasets/qa?limit=1").await;
    assert_eq!(revisions["revisions"][0]["revision"], other["revision"]);
    let cursor = revisions["next_cursor"].as_str().unwrap().to_owned();
    let (_, older) = server.get(&format!("/datasets/qa?cursor={cursor}")).await;
    assert_eq!(older["revisions"][0]["revision"], revision.as_str());
    assert_eq!(older["next_cursor"], Value::Null);

    let (status, page) = server
        .get(&format!(
            "/datasets/qa/cases?revision={revision}&limit=2&cursor=2"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["cases"][0]["case_id"], "c2");
    assert_eq!(page["cases"][1]["input"]["answer"], "0");
    assert_eq!(page["next_cursor"], "4");
    let (status, _) = server.get("/datasets/none").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn problems_name_their_line_and_nothing_is_stored() {
    let (_dir, server, _) = start().await;
    let body = "{\"case_id\": \"a\", \"input\": 1}\nnot json\n{\"case_id\": \"a\", \"input\": 2}\n{\"input\": 3, \"extra\": true}\n";
    let (status, error) = server.put("/datasets/bad", JSONL, body).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "invalid_dataset");
    let paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    // Repeated ids are known once the whole body was read: they are listed last.
    assert_eq!(
        paths,
        ["line 2", "line 4.extra", "line 4.case_id", "line 3.case_id"]
    );
    let (status, _) = server.get("/datasets/bad").await;
    assert_eq!(status, 404, "nothing was stored");

    // At most 100 problems are listed; the last entry counts the rest.
    let many: String = (0..500).map(|_| "{}\n").collect();
    let (_, error) = server.put("/datasets/bad", JSONL, many).await;
    let details = error["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 100);
    assert_eq!(details[99]["path"], "");

    let (status, error) = server.put("/datasets/bad", "application/json", "[]").await;
    assert_eq!(status, 415, "{error}");
    let (status, _) = server.put("/datasets/bad", JSONL, "").await;
    assert_eq!(status, 422, "an upload without cases");
    let (status, error) = server.put("/datasets/bad?input=q", JSONL, jsonl(1)).await;
    assert_eq!(status, 400, "{error}");
    server.stop().await;
}

#[tokio::test]
async fn csv_maps_columns_by_header_or_by_query() {
    let (_dir, server, _) = start().await;
    let csv = "id,question,answer,source\nq1,\"What is 1+1, really?\",2,book\nq2,\"Say \"\"hi\"\"\nplease\",hi,\n";
    let (status, created) = server
        .put(
            "/datasets/csv?case_id=id&input=question&expected_output=answer",
            "text/csv",
            csv,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["case_count"], 2);
    let (_, page) = server.get("/datasets/csv/cases").await;
    assert_eq!(
        page["cases"],
        json!([
            {"case_id": "q1", "input": "What is 1+1, really?", "expected_output": "2", "metadata": {"source": "book"}},
            {"case_id": "q2", "input": "Say \"hi\"\nplease", "expected_output": "hi"}
        ])
    );
    // The header convention: case_id, input, expected_output; several input columns
    // make an object.
    let (status, _) = server
        .put(
            "/datasets/conv",
            "text/csv",
            "case_id,input,expected_output\na,x,y\n",
        )
        .await;
    assert_eq!(status, 201);
    let (_, page) = server.get("/datasets/conv/cases").await;
    assert_eq!(
        page["cases"][0],
        json!({"case_id": "a", "input": "x", "expected_output": "y"})
    );
    let (status, _) = server
        .put(
            "/datasets/multi?input=a,b",
            "text/csv",
            "case_id,a,b\n1,x,y\n",
        )
        .await;
    assert_eq!(status, 201);
    let (_, page) = server.get("/datasets/multi/cases").await;
    assert_eq!(page["cases"][0]["input"], json!({"a": "x", "b": "y"}));

    let (status, error) = server
        .put("/datasets/nope", "text/csv", "id,question\n1,x\n")
        .await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["details"][0]["path"], "case_id");
    let (status, error) = server
        .put(
            "/datasets/nope",
            "text/csv",
            "case_id,input\n1,x\n1,y\n,z\n",
        )
        .await;
    assert_eq!(status, 422);
    let paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["line 4.case_id", "line 3.case_id"], "repeats last");
    server.stop().await;
}

#[tokio::test]
async fn a_referenced_dataset_gives_the_run_of_the_same_cases_inline() {
    let (_dir, server, calls) = start().await;
    referenced_dataset(&server, &calls).await;
    server.stop().await;
}

#[tokio::test]
async fn a_referenced_dataset_gives_the_run_of_the_same_cases_inline_on_postgres() {
    let (database, server, calls) = start_on_postgres().await;
    referenced_dataset(&server, &calls).await;
    server.stop().await;
    database.drop_database().await;
}

async fn referenced_dataset(server: &TestServer, calls: &CallCounter) {
    let (_, uploaded) = server.put("/datasets/d", JSONL, jsonl(4)).await;
    let revision = uploaded["revision"].as_str().unwrap();
    let (status, by_revision) = server
        .post(
            "/runs",
            &experiment(json!([{"dataset_id": "d", "revision": revision}])),
        )
        .await;
    assert_eq!(status, 202, "{by_revision}");
    let run_id = by_revision["run_id"].as_str().unwrap().to_owned();
    let finished = server.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "completed");
    assert_eq!(finished["progress"]["completed"], 8);
    assert_eq!(calls.total(), 8);

    // The newest revision, and the same cases inline: the same run.
    let (status, latest) = server
        .post("/runs", &experiment(json!([{"dataset_id": "d"}])))
        .await;
    assert_eq!(
        (status, latest["run_id"].as_str()),
        (200, Some(run_id.as_str()))
    );
    let cases: Vec<Value> = jsonl(4)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (status, inline) = server
        .post(
            "/runs",
            &experiment(json!([{"dataset_id": "d", "cases": cases}])),
        )
        .await;
    assert_eq!(
        (status, inline["run_id"].as_str()),
        (200, Some(run_id.as_str()))
    );

    // The stored definition pins the revision.
    let (_, view) = server
        .get(&format!("/runs/{run_id}?include=definition"))
        .await;
    assert_eq!(
        view["definition"]["datasets"],
        json!([{"dataset_id": "d", "revision": revision, "case_count": 4}])
    );
    let (_, results) = server.get(&format!("/runs/{run_id}/results?limit=1")).await;
    assert_eq!(results["results"][0]["case_id"], "c0");

    // Unknown datasets and revisions are named.
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, error) = server
        .post(
            "/runs",
            &experiment(json!([{"dataset_id": "d", "revision": unknown}, {"dataset_id": "zz"}])),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    let paths: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["datasets[0].revision", "datasets[1].dataset_id"]);

    // The revision a run uses cannot go; once the run is deleted it can.
    let (status, error) = server
        .delete(&format!("/datasets/d?revision={revision}"))
        .await;
    assert_eq!(status, 409);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&run_id)
    );
    assert_eq!(
        error["error"]["details"],
        json!([{"path": "runs[0]", "message": run_id}])
    );
    let (status, deleted) = server.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], json!([run_id]));
    let (status, _) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 404);
    let (status, deleted) = server.delete("/datasets/d").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], json!([revision]));
}

#[tokio::test]
async fn a_retry_executes_the_failed_cases_and_keeps_the_rest() {
    let (_dir, server, calls) = start().await;
    retry_failed_cases(&server, &calls).await;
    server.stop().await;
}

#[tokio::test]
async fn a_retry_executes_the_failed_cases_and_keeps_the_rest_on_postgres() {
    let (database, server, calls) = start_on_postgres().await;
    retry_failed_cases(&server, &calls).await;
    server.stop().await;
    database.drop_database().await;
}

async fn retry_failed_cases(server: &TestServer, calls: &CallCounter) {
    // c1 and c3 fail on their first call (a provider outage), the others pass.
    let cases: Vec<Value> = (0..4)
        .map(|i| {
            let mut input = json!({"answer": "1"});
            if i % 2 == 1 {
                input["fail_calls"] = json!(1);
            }
            json!({"case_id": format!("c{i}"), "input": input, "expected_output": "1"})
        })
        .collect();
    let mut definition = experiment(json!([{"dataset_id": "flaky", "cases": cases}]));
    definition["seeds"] = json!([1]);
    let (_, run) = server.post("/runs", &definition).await;
    let parent = run["run_id"].as_str().unwrap().to_owned();
    let finished = server.wait_finished(&parent).await;
    assert_eq!(finished["progress"]["failed"], 2, "{finished}");

    let (status, retry) = server
        .post(&format!("/runs/{parent}/retry"), &json!(null))
        .await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["kind"], "retry");
    assert_eq!(retry["parent_run_id"], parent.as_str());
    let retry_id = retry["run_id"].as_str().unwrap().to_owned();
    let done = server.wait_finished(&retry_id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["progress"]["completed"], 4);
    assert_eq!(done["progress"]["failed"], 0);
    assert_eq!(done["aggregates"]["builtin/exact_match"]["n"], 4, "{done}");
    // Only the failed cases were called again.
    let per_case = calls.per_case();
    assert_eq!(
        (
            per_case["c0"],
            per_case["c1"],
            per_case["c2"],
            per_case["c3"]
        ),
        (1, 2, 1, 2)
    );
    let (_, results) = server.get(&format!("/runs/{retry_id}/results")).await;
    assert!(
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["run_id"] == retry_id.as_str())
    );

    // The same retry again is the same run.
    let (status, again) = server
        .post(&format!("/runs/{parent}/retry"), &json!(null))
        .await;
    assert_eq!(
        (status, again["run_id"].as_str()),
        (200, Some(retry_id.as_str()))
    );

    // The parent has a derived run: deleting it alone is refused, with cascade both go.
    let (status, error) = server.delete(&format!("/runs/{parent}")).await;
    assert_eq!(status, 409);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&retry_id)
    );
    assert_eq!(
        error["error"]["details"],
        json!([{"path": "runs[0]", "message": retry_id}])
    );
    let (status, deleted) = server.delete(&format!("/runs/{parent}?cascade=true")).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["deleted"], json!([parent, retry_id]));
}

/// A run the previous release stored (run-id rule v1): its definition holds the cases
/// inline. It keeps its id and still executes from that definition.
#[tokio::test]
async fn a_run_stored_under_rule_v1_still_executes() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("v1.db")).await.unwrap());
    let calls = CallCounter::default();
    let engine = engine_on(store.clone(), &calls);
    let body = common::counting_experiment(3, 0);
    let mut definition = engine.parse(&body).unwrap().experiment.canonical();
    definition["datasets"] = json!([{"dataset_id": "d", "cases": body["datasets"][0]["cases"]}]);
    let run_id = RunId::from_digest(&[7; 32]);
    store
        .create_run(NewRun {
            labels: themis::model::RunLabels::default(),
            run_id: run_id.clone(),
            kind: RunKind::Experiment,
            parent_run_id: None,
            definition,
            runtime: json!({}),
            total_cases: 3,
            index_space: 3,
            datasets: Vec::new(),
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    let done = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.progress.completed + done.progress.failed, 3);
    assert_eq!(calls.total(), 3);
    assert!(
        store.list_datasets(None, 10).await.unwrap().is_empty(),
        "nothing was migrated"
    );
}

/// Retention deletes finished runs that ended before the cutoff, derived runs first, and
/// leaves unfinished runs alone.
#[tokio::test]
async fn retention_deletes_old_finished_runs_leaves_first() {
    let engine = engine_on(Arc::new(MemoryStore::new()), &CallCounter::default());
    let run = |n: usize| {
        let engine = engine.clone();
        async move {
            let request = engine.parse(&common::counting_experiment(n, 0)).unwrap();
            engine.submit(&request).await.unwrap().into_record().run_id
        }
    };
    let finished = run(2).await;
    engine
        .execute(&finished, Observers::default(), RunControl::default())
        .await
        .unwrap();
    let queued = run(3).await;
    let day = Duration::from_secs(86_400);
    assert_eq!(
        engine.delete_expired(day).await.unwrap(),
        0,
        "nothing is a day old"
    );

    let retry = engine
        .submit_retry(&finished, None)
        .await
        .unwrap()
        .into_record()
        .run_id;
    engine
        .execute(&retry, Observers::default(), RunControl::default())
        .await
        .unwrap();
    // Ended strictly before the cutoff (timestamps have millisecond precision).
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(engine.delete_expired(Duration::ZERO).await.unwrap(), 2);
    let store = engine.store();
    assert!(store.get_run(&finished).await.unwrap().is_none());
    assert!(store.get_run(&retry).await.unwrap().is_none());
    assert!(
        store.get_run(&queued).await.unwrap().is_some(),
        "not finished: kept"
    );
}
