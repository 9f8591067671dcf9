//! `/v1` (OpenAI's Evals API) against the document: every route in `ROUTES` is served
//! with the objects it needs, success bodies match their schemas, and errors carry
//! OpenAI's body (`{"error": {"message", "type", "param", "code"}}`) with the field at
//! fault in `param`.

use super::*;

const BOUNDARY: &str = "themis-boundary";

fn multipart(purpose: &str, body: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
         --{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"rows.jsonl\"\r\n\
         content-type: application/jsonl\r\n\r\n{body}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

fn eval_body() -> Value {
    json!({
        "name": "capitals",
        "data_source_config": {"type": "custom", "item_schema": {
            "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}},
        "testing_criteria": [{"type": "string_check", "name": "exact", "operation": "eq",
                              "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}],
    })
}

const ROWS: &str = "{\"item\": {\"answer\": \"Paris\"}, \"sample\": {\"output_text\": \"Paris\"}}\n\
                    {\"item\": {\"answer\": \"Rome\"}, \"sample\": {\"output_text\": \"Milan\"}}";

#[tokio::test]
async fn every_v1_route_is_served_as_documented() {
    let h = Harness::new();
    let served = std::cell::RefCell::new(BTreeSet::new());
    let check = |method: Method, template: &'static str, reply: &Reply| {
        served
            .borrow_mut()
            .insert((method.to_string(), template.to_owned()));
        h.check(method, template, reply, StatusCode::OK)
    };
    let eval = check(
        Method::POST,
        "/v1/evals",
        &h.post("/v1/evals", eval_body()).await,
    );
    let eval_id = eval["id"].as_str().unwrap().to_owned();
    let listed = check(
        Method::GET,
        "/v1/evals",
        &h.get("/v1/evals?limit=1&order=desc").await,
    );
    assert_eq!(listed["first_id"], json!(eval_id));
    check(
        Method::GET,
        "/v1/evals/{eval_id}",
        &h.get(&format!("/v1/evals/{eval_id}")).await,
    );
    let updated = check(
        Method::POST,
        "/v1/evals/{eval_id}",
        &h.post(&format!("/v1/evals/{eval_id}"), json!({"name": "renamed"}))
            .await,
    );
    assert_eq!(updated["name"], "renamed");

    let file = h
        .send(
            Method::POST,
            "/v1/files",
            Payload::Raw(
                "multipart/form-data; boundary=themis-boundary",
                multipart("evals", ROWS),
            ),
            &[],
        )
        .await;
    let file = check(Method::POST, "/v1/files", &file);
    let file_id = file["id"].as_str().unwrap().to_owned();
    check(Method::GET, "/v1/files", &h.get("/v1/files").await);
    check(
        Method::GET,
        "/v1/files/{file_id}",
        &h.get(&format!("/v1/files/{file_id}")).await,
    );
    let content = h.get(&format!("/v1/files/{file_id}/content")).await;
    assert_eq!(content.status, StatusCode::OK);
    assert_eq!(content.body, ROWS.as_bytes());
    served
        .borrow_mut()
        .insert(("GET".into(), "/v1/files/{file_id}/content".into()));

    let runs = format!("/v1/evals/{eval_id}/runs");
    let run = check(
        Method::POST,
        "/v1/evals/{eval_id}/runs",
        &h.post(
            &runs,
            json!({"data_source": {"type": "jsonl",
                                              "source": {"type": "file_id", "id": file_id}}}),
        )
        .await,
    );
    let run_id = run["id"].as_str().unwrap().to_owned();
    let run_uri = format!("{runs}/{run_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = check(
            Method::GET,
            "/v1/evals/{eval_id}/runs/{eval_run_id}",
            &h.get(&run_uri).await,
        );
        if view["status"] == "completed" {
            break view;
        }
        assert!(Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        view["result_counts"],
        json!({"total": 2, "passed": 1, "failed": 1, "errored": 0})
    );
    check(
        Method::GET,
        "/v1/evals/{eval_id}/runs",
        &h.get(&format!("{runs}?status=completed")).await,
    );
    let items = check(
        Method::GET,
        "/v1/evals/{eval_id}/runs/{eval_run_id}/output_items",
        &h.get(&format!("{run_uri}/output_items?status=fail")).await,
    );
    assert_eq!(items["data"].as_array().unwrap().len(), 1);
    let item_id = items["data"][0]["id"].as_str().unwrap().to_owned();
    let item = check(
        Method::GET,
        "/v1/evals/{eval_id}/runs/{eval_run_id}/output_items/{output_item_id}",
        &h.get(&format!("{run_uri}/output_items/{item_id}")).await,
    );
    assert_eq!(item["datasource_item"], json!({"answer": "Rome"}));
    assert_eq!(item["results"][0]["passed"], false);
    // Cancelling a finished run changes nothing.
    for template in [
        "/v1/evals/{eval_id}/runs/{eval_run_id}",
        "/v1/evals/{eval_id}/runs/{eval_run_id}/cancel",
    ] {
        let uri = template
            .replace("{eval_id}", &eval_id)
            .replace("{eval_run_id}", &run_id);
        let view = check(
            Method::POST,
            template,
            &h.send(Method::POST, &uri, Payload::None, &[]).await,
        );
        assert_eq!(view["status"], "completed");
    }
    let deleted = h
        .send(
            Method::DELETE,
            &format!("/v1/files/{file_id}"),
            Payload::None,
            &[],
        )
        .await;
    check(Method::DELETE, "/v1/files/{file_id}", &deleted);
    let deleted = h.send(Method::DELETE, &run_uri, Payload::None, &[]).await;
    check(
        Method::DELETE,
        "/v1/evals/{eval_id}/runs/{eval_run_id}",
        &deleted,
    );
    let deleted = h
        .send(
            Method::DELETE,
            &format!("/v1/evals/{eval_id}"),
            Payload::None,
            &[],
        )
        .await;
    assert_eq!(
        check(Method::DELETE, "/v1/evals/{eval_id}", &deleted)["deleted"],
        true
    );

    let v1: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|(_, path)| path.starts_with("/v1/"))
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(served.into_inner(), v1);
}

/// The error body OpenAI's SDKs read, with the field at fault in `param`.
fn openai_error(
    h: &Harness,
    method: Method,
    template: &str,
    reply: &Reply,
    status: StatusCode,
) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let spec = h.response_spec(&method, template, reply.status);
    let body = reply.json();
    assert_valid(
        &validator(&h.doc, &spec["content"]["application/json"]["schema"]),
        &body,
        template,
    );
    body["error"].clone()
}

#[tokio::test]
async fn errors_use_openais_body_and_name_the_field() {
    let h = &Harness::new();
    let bad = |body: Value| async move {
        let reply = h.post("/v1/evals", body).await;
        openai_error(
            h,
            Method::POST,
            "/v1/evals",
            &reply,
            StatusCode::BAD_REQUEST,
        )
    };
    let mut logs = eval_body();
    logs["data_source_config"] = json!({"type": "stored_completions"});
    let error = bad(logs).await;
    assert_eq!(error["param"], "data_source_config.type");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains("custom"),
        "{error}"
    );
    let mut cosine = eval_body();
    cosine["testing_criteria"][0] = json!({"type": "text_similarity", "name": "c",
        "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
        "evaluation_metric": "cosine", "pass_threshold": 0.5});
    assert_eq!(
        bad(cosine).await["param"],
        "testing_criteria[0].evaluation_metric"
    );
    let mut python = eval_body();
    python["testing_criteria"][0] =
        json!({"type": "python", "name": "p", "source": "def grade(s, i): return 1.0"});
    let error = bad(python).await;
    assert!(
        error["message"].as_str().unwrap().contains("sandbox"),
        "{error}"
    );
    let mut model = eval_body();
    model["testing_criteria"][0] = json!({"type": "score_model", "name": "s", "model": "gpt-4o",
        "input": [{"role": "user", "content": "{{item.answer}}"}]});
    let error = bad(model).await;
    assert_eq!(error["param"], "testing_criteria[0].model");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("--default-provider"),
        "{error}"
    );
    let mut template = eval_body();
    template["testing_criteria"][0]["input"] = json!("{{ output }}");
    assert_eq!(bad(template).await["param"], "testing_criteria[0].input");

    let eval = h.post("/v1/evals", eval_body()).await.json();
    let runs = format!("/v1/evals/{}/runs", eval["id"].as_str().unwrap());
    let reply = h
        .post(
            &runs,
            json!({"data_source": {"type": "jsonl", "source": {"type": "file_content",
            "content": [{"item": {"answer": "x"}}, {"item": {"answer": 3}}]}}}),
        )
        .await;
    let error = openai_error(
        h,
        Method::POST,
        "/v1/evals/{eval_id}/runs",
        &reply,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "data_source.source.content[1].item/answer");
    let reply = h
        .post(
            &runs,
            json!({"data_source": {"type": "logs", "source": {}}}),
        )
        .await;
    let error = openai_error(
        h,
        Method::POST,
        "/v1/evals/{eval_id}/runs",
        &reply,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "data_source.type");
    let reply = h.get(&format!("{runs}?limit=1000")).await;
    let error = openai_error(
        h,
        Method::GET,
        "/v1/evals/{eval_id}/runs",
        &reply,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error["param"], "limit");

    let reply = h
        .get("/v1/evals/eval_00000000000000000000000000000000")
        .await;
    let error = openai_error(
        h,
        Method::GET,
        "/v1/evals/{eval_id}",
        &reply,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(error["code"], "not_found");
    let reply = h
        .send(
            Method::POST,
            "/v1/files",
            Payload::Raw(
                "multipart/form-data; boundary=themis-boundary",
                multipart("fine-tune", ROWS),
            ),
            &[],
        )
        .await;
    assert_eq!(
        openai_error(
            h,
            Method::POST,
            "/v1/files",
            &reply,
            StatusCode::BAD_REQUEST
        )["param"],
        "purpose"
    );
    let reply = h
        .send(
            Method::POST,
            "/v1/files",
            Payload::Raw(
                "multipart/form-data; boundary=themis-boundary",
                multipart("evals", "not json"),
            ),
            &[],
        )
        .await;
    assert_eq!(
        openai_error(
            h,
            Method::POST,
            "/v1/files",
            &reply,
            StatusCode::BAD_REQUEST
        )["param"],
        "file:1"
    );
}

#[tokio::test]
async fn v1_needs_a_key_when_the_server_has_keys() {
    let app = app_with(vec!["sekrit".into()]);
    let call = |key: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut request = Request::builder().uri("/v1/evals");
            if let Some(key) = key {
                request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            app.oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let denied = call(Some("wrong")).await;
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    let body = axum::body::to_bytes(denied.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(call(None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call(Some("sekrit")).await.status(), StatusCode::OK);
}

/// `curl` (what OpenAI's API reference shows beside each SDK) through the same flows on
/// a real port: a file uploaded as multipart, an eval and a run from it, the run's pages
/// and OpenAI's error bodies for a missing key, an unknown id and an invalid field.
// Several threads: curl is waited for synchronously while the server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_drives_the_flows_and_reads_openai_error_bodies() {
    let server = TestApp::new().api_keys(vec!["sekrit".into()]).serve().await;
    let v1 = format!("{}/v1", server.base);
    let curl = |args: &[&str]| -> (u16, Value) {
        let output = std::process::Command::new("curl")
            .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("running curl (Debian's curl package)");
        let text = String::from_utf8(output.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    };
    let auth = "Authorization: Bearer sekrit";
    let rows = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rows.path(), ROWS).unwrap();
    let (status, file) = curl(&[
        &format!("{v1}/files"),
        "-H",
        auth,
        "-F",
        "purpose=evals",
        "-F",
        &format!("file=@{}", rows.path().display()),
    ]);
    assert_eq!(status, 200, "{file}");
    assert!(file["id"].as_str().unwrap().starts_with("file-"), "{file}");
    let (status, eval) = curl(&[
        &format!("{v1}/evals"),
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &eval_body().to_string(),
    ]);
    assert_eq!(status, 200, "{eval}");
    let eval_id = eval["id"].as_str().unwrap();
    let run_body = json!({"name": "from curl", "data_source": {"type": "jsonl",
        "source": {"type": "file_id", "id": file["id"]}}});
    let (status, run) = curl(&[
        &format!("{v1}/evals/{eval_id}/runs"),
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &run_body.to_string(),
    ]);
    assert_eq!(status, 200, "{run}");
    let run_id = run["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = curl(&[&format!("{v1}/evals/{eval_id}/runs/{run_id}"), "-H", auth]);
        if run["status"] == "completed" {
            assert_eq!(
                run["result_counts"],
                json!({"total": 2, "passed": 1, "failed": 1, "errored": 0})
            );
            break;
        }
        assert!(Instant::now() < deadline, "the run did not complete: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, page) = curl(&[
        &format!("{v1}/evals/{eval_id}/runs/{run_id}/output_items?status=fail&limit=1"),
        "-H",
        auth,
    ]);
    assert_eq!(status, 200);
    assert_eq!(page["object"], "list");
    assert_eq!(page["data"][0]["status"], "fail", "{page}");
    assert_eq!(page["has_more"], json!(false));

    let error_of = |(status, body): (u16, Value)| {
        let error = &body["error"];
        assert!(
            error["message"].is_string()
                && error.get("type").is_some()
                && error.get("param").is_some()
                && error.get("code").is_some(),
            "OpenAI's error body: {body}"
        );
        (status, error.clone())
    };
    let (status, error) = error_of(curl(&[&format!("{v1}/evals")]));
    assert_eq!(
        (status, error["code"].clone()),
        (401, json!("invalid_api_key"))
    );
    let (status, _) = error_of(curl(&[&format!("{v1}/evals/eval_missing"), "-H", auth]));
    assert_eq!(status, 404);
    let mut bad = eval_body();
    bad["testing_criteria"][0]["operation"] = json!("matches");
    let (status, error) = error_of(curl(&[
        &format!("{v1}/evals"),
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        &bad.to_string(),
    ]));
    assert_eq!(status, 400, "{error}");
    assert!(
        error["param"]
            .as_str()
            .unwrap_or("")
            .contains("testing_criteria"),
        "the param names the field: {error}"
    );
    server.stop().await;
}
