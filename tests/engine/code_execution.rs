//! Code execution over HTTP: `builtin/code_execution` (test programs and stdin/stdout
//! pairs, Python and C, pass@k over samples), `builtin/python_grader`, submission-time
//! refusals when a sandbox or language is not configured, remote Piston and
//! SandboxFusion services (fakes answering in their documented shapes) and
//! `themis serve --sandbox local`.

use crate::common;

use common::TestServer;
use common::code::{
    case, code_run, fake_remote_sandbox, local_metric, local_sandboxes, registry_with, sandboxes,
    score,
};
use serde_json::{Value, json};
use themis::components::Registry;
use themis::sandbox::SandboxSpec;

async fn run_and_results(server: &TestServer, body: &Value) -> Vec<Value> {
    let (status, created) = server.post("/runs", body).await;
    assert_eq!(status, 202, "{created}");
    let run_id = created["run_id"].as_str().unwrap();
    let run = server.wait_finished(run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    common::all_results(&server.client, &server.base, run_id).await
}

const ADD_TEST: &str = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_programs_decide_pass_or_fail_with_what_happened_in_the_details() {
    let server = TestServer::start("memory", registry_with(local_sandboxes(4))).await;
    let cases = vec![
        json!({"case_id": "right", "input": {"code": "def add(a, b):\n    return a + b\n"},
               "expected_output": {"test": ADD_TEST}}),
        json!({"case_id": "wrong", "input": {"code": "def add(a, b):\n    print('adding')\n    return a - b\n"},
               "expected_output": {"test": ADD_TEST}}),
        json!({"case_id": "syntax", "input": {"code": "def add(a, b)\n    return a + b\n"},
               "expected_output": {"test": ADD_TEST}}),
        json!({"case_id": "no_code", "input": {"code": null},
               "expected_output": {"test": ADD_TEST}}),
    ];
    let results = run_and_results(
        &server,
        &code_run("humaneval", cases, local_metric("python")),
    )
    .await;
    let right = score(case(&results, "right"), "builtin/code_execution");
    assert_eq!(right["score"], 1.0, "{right}");
    assert_eq!(right["details"]["exit_code"], 0);
    assert_eq!(right["details"]["passed"], true);
    assert_eq!(right["details"]["limit"], Value::Null);

    let wrong = score(case(&results, "wrong"), "builtin/code_execution");
    assert_eq!(wrong["score"], 0.0);
    assert_eq!(wrong["details"]["exit_code"], 1);
    assert_eq!(wrong["details"]["stdout"], "adding\n");
    assert!(
        wrong["details"]["stderr"]
            .as_str()
            .unwrap()
            .contains("AssertionError"),
        "{wrong}"
    );
    let syntax = score(case(&results, "syntax"), "builtin/code_execution");
    assert_eq!(syntax["score"], 0.0);
    assert!(
        syntax["details"]["stderr"]
            .as_str()
            .unwrap()
            .contains("SyntaxError")
    );
    let no_code = score(case(&results, "no_code"), "builtin/code_execution");
    assert_eq!(no_code["score"], 0.0);
    assert_eq!(no_code["details"]["reason"], "the output holds no code");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdin_stdout_pairs_in_python_and_c() {
    let server = TestServer::start("memory", registry_with(local_sandboxes(4))).await;
    let pairs = json!({"io": [
        {"stdin": "1 2\n", "stdout": "3\n"},
        {"stdin": "40 2", "stdout": "42"},
        {"stdin": "-5 5\n", "stdout": "0"}
    ]});
    let python = vec![
        json!({"case_id": "sum", "input": {"code": "a, b = map(int, input().split())\nprint(a + b, '  ')\n"},
               "expected_output": pairs}),
        json!({"case_id": "product", "input": {"code": "a, b = map(int, input().split())\nprint(a * b)\n"},
               "expected_output": pairs}),
    ];
    let results = run_and_results(&server, &code_run("py", python, local_metric("python"))).await;
    let sum = score(case(&results, "sum"), "builtin/code_execution");
    assert_eq!(sum["score"], 1.0, "trailing whitespace is ignored: {sum}");
    assert_eq!(sum["details"]["io_pairs"], 3);
    let product = score(case(&results, "product"), "builtin/code_execution");
    assert_eq!(product["score"], 0.0);
    assert_eq!(product["details"]["failed_pair"], 0, "{product}");
    assert_eq!(product["details"]["stdout"], "2\n");
    assert_eq!(product["details"]["expected_stdout"], "3\n");

    let c_sum = "#include <stdio.h>\nint main(void) { long a, b; if (scanf(\"%ld %ld\", &a, &b) != 2) return 2; printf(\"%ld\\n\", a + b); return 0; }\n";
    let c = vec![
        json!({"case_id": "c_sum", "input": {"code": c_sum}, "expected_output": pairs}),
        json!({"case_id": "c_broken", "input": {"code": "int main(void) { return undefined_name; }\n"},
               "expected_output": pairs}),
        json!({"case_id": "c_test", "input": {"code": "int add(int a, int b) { return a + b; }\n"},
               "expected_output": {"test": "int main(void) { return add(2, 3) == 5 ? 0 : 1; }"}}),
    ];
    let results = run_and_results(&server, &code_run("c", c, local_metric("c"))).await;
    assert_eq!(
        score(case(&results, "c_sum"), "builtin/code_execution")["score"],
        1.0
    );
    assert_eq!(
        score(case(&results, "c_test"), "builtin/code_execution")["score"],
        1.0
    );
    let broken = score(case(&results, "c_broken"), "builtin/code_execution");
    assert_eq!(broken["score"], 0.0);
    assert!(
        broken["details"]["compile_error"]
            .as_str()
            .unwrap()
            .contains("undefined_name"),
        "{broken}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pass_at_k_counts_the_samples_that_pass() {
    let server = TestServer::start("memory", registry_with(local_sandboxes(4))).await;
    let right = "def add(a, b):\n    return a + b\n";
    let wrong = "def add(a, b):\n    return a * b\n";
    let body = json!({
        "generation": {"generator": "test/samples", "candidate_policy": {"num_samples": 4}},
        "evaluation": {
            "metrics": [{"name": "builtin/code_execution", "id": "tests", "params": {"sandbox": "local", "timeout_s": 3}}],
            "pass_at_k": {"k": [1, 2]}
        },
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "half", "input": {"samples": [right, wrong, wrong, right]}, "expected_output": {"test": ADD_TEST}},
            {"case_id": "none", "input": {"samples": [wrong]}, "expected_output": {"test": ADD_TEST}}
        ]}],
        "seeds": [1]
    });
    let results = run_and_results(&server, &body).await;
    let half = case(&results, "half");
    assert_eq!(score(half, "pass@1")["score"], 0.5);
    // 1 - C(2, 2) / C(4, 2)
    let pass2 = score(half, "pass@2")["score"].as_f64().unwrap();
    assert!((pass2 - 5.0 / 6.0).abs() < 1e-12, "{pass2}");
    assert_eq!(score(half, "pass@2")["details"]["c"], 2);
    let none = case(&results, "none");
    assert_eq!(score(none, "pass@1")["score"], 0.0);
    assert_eq!(score(none, "pass@2")["details"]["c"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_graders_score_the_sample_against_the_item() {
    let server = TestServer::start("memory", registry_with(local_sandboxes(4))).await;
    let source = r#"
def grade(sample, item) -> float:
    output = sample["output_text"].strip().lower()
    reference = item["reference"].lower()
    if output == reference:
        return 1.0
    return 0.5 if reference in output else 0.0
"#;
    let grader = json!({"name": "builtin/python_grader", "id": "grader",
                        "params": {"sandbox": "local", "source": source, "pass_threshold": 0.6}});
    let cases = vec![
        json!({"case_id": "exact", "input": {"code": "Paris", "reference": "paris"}, "expected_output": null}),
        json!({"case_id": "partial", "input": {"code": "It is Paris.", "reference": "paris"}, "expected_output": null}),
        json!({"case_id": "broken", "input": {"code": "x"}, "expected_output": null}),
    ];
    let results = run_and_results(&server, &code_run("graded", cases, grader)).await;
    let exact = score(case(&results, "exact"), "grader");
    assert_eq!(exact["score"], 1.0, "{exact}");
    assert_eq!(exact["details"]["passed"], true);
    let partial = score(case(&results, "partial"), "grader");
    assert_eq!(partial["score"], 0.5);
    assert_eq!(partial["details"]["passed"], false);
    // No `reference` in the item: the grader raises, and the case's score is an error.
    let broken = score(case(&results, "broken"), "grader");
    assert_eq!(broken["score"], Value::Null);
    assert!(
        broken["error"].as_str().unwrap().contains("KeyError"),
        "{broken}"
    );
    server.stop().await;
}

#[tokio::test]
async fn runs_naming_an_unconfigured_sandbox_or_language_are_refused_at_submission() {
    let metric = |params: Value| {
        code_run(
            "d",
            vec![
                json!({"case_id": "a", "input": {"code": "pass"}, "expected_output": {"test": "pass"}}),
            ],
            json!({"name": "builtin/code_execution", "params": params}),
        )
    };
    let refused = |body: &Value| body["error"]["details"][0].clone();

    let bare = TestServer::start("memory", Registry::builtin()).await;
    let (status, body) = bare
        .post("/runs", &metric(json!({"sandbox": "local"})))
        .await;
    assert_eq!(status, 422, "{body}");
    let detail = refused(&body);
    assert_eq!(detail["path"], "evaluation.metrics[0].params.sandbox");
    assert!(
        detail["message"]
            .as_str()
            .unwrap()
            .contains("--sandbox local"),
        "{detail}"
    );
    let (status, body) = bare
        .post(
            "/runs",
            &metric(json!({"sandbox": "local"}))
                .as_object()
                .map(|m| {
                    let mut m = m.clone();
                    m["evaluation"] = json!({"metrics": [{"name": "builtin/python_grader",
                "params": {"sandbox": "local", "source": "def grade(s, i):\n    return 1.0\n"}}]});
                    Value::Object(m)
                })
                .unwrap(),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        refused(&body)["path"],
        "evaluation.metrics[0].params.sandbox"
    );
    bare.stop().await;

    let server = TestServer::start("memory", registry_with(local_sandboxes(2))).await;
    for (params, path, needle) in [
        (
            json!({"sandbox": "cluster"}),
            "sandbox",
            "unknown sandbox `cluster`; configured: local",
        ),
        (
            json!({"sandbox": "local", "language": "rust"}),
            "language",
            "does not run `rust`; it runs python, c",
        ),
        (
            json!({"sandbox": "local", "timeout_s": 3600}),
            "timeout_s",
            "between",
        ),
        (json!({"language": "python"}), "sandbox", "is required"),
    ] {
        let (status, body) = server.post("/runs", &metric(params.clone())).await;
        assert_eq!(status, 422, "{params}: {body}");
        let detail = refused(&body);
        assert_eq!(
            detail["path"],
            format!("evaluation.metrics[0].params.{path}"),
            "{body}"
        );
        assert!(
            detail["message"].as_str().unwrap().contains(needle),
            "{detail}"
        );
    }
    server.stop().await;
}

/// What the fakes "run": a program containing `FAIL` fails its assertion; otherwise it
/// prints its stdin upper-cased.
fn outcome(source: &str, stdin: &str) -> (String, String, i32) {
    if source.contains("FAIL") {
        (String::new(), "AssertionError\n".into(), 1)
    } else {
        (stdin.to_uppercase(), String::new(), 0)
    }
}

fn piston_answer(request: &Value) -> Value {
    let source = request["files"][0]["content"].as_str().unwrap_or_default();
    let (stdout, stderr, code) = outcome(source, request["stdin"].as_str().unwrap_or_default());
    json!({
        "language": request["language"], "version": "3.10.0",
        "run": {"stdout": stdout, "stderr": stderr, "code": code, "signal": null,
                "output": format!("{stdout}{stderr}")}
    })
}

fn fusion_answer(request: &Value) -> Value {
    let source = request["code"].as_str().unwrap_or_default();
    if source.contains("SANDBOX_DOWN") {
        return json!({"status": "SandboxError", "message": "no executor available",
                      "compile_result": null, "run_result": null, "executor_pod_name": null, "files": {}});
    }
    let (stdout, stderr, code) = outcome(source, request["stdin"].as_str().unwrap_or_default());
    json!({
        "status": if code == 0 { "Success" } else { "Failed" }, "message": "",
        "compile_result": null,
        "run_result": {"status": "Finished", "execution_time": 0.01, "return_code": code,
                       "stdout": stdout, "stderr": stderr},
        "executor_pod_name": null, "files": {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_piston_and_sandbox_fusion_services_run_the_code() {
    let piston = fake_remote_sandbox("/api/v2/execute", piston_answer).await;
    let fusion = fake_remote_sandbox("/run_code", fusion_answer).await;
    let specs = vec![
        SandboxSpec::parse(&format!(
            "name=piston,kind=piston,url={},languages=python+c",
            piston.url
        ))
        .unwrap(),
        SandboxSpec::parse(&format!(
            "name=fusion,kind=sandbox_fusion,url={}/",
            fusion.url
        ))
        .unwrap(),
    ];
    let server = TestServer::start("memory", registry_with(sandboxes(specs, 4))).await;
    let cases = |prefix: &str| {
        vec![
            json!({"case_id": format!("{prefix}_pass"), "input": {"code": "def f():\n    return 1\n"},
                   "expected_output": {"test": "assert f() == 1"}}),
            json!({"case_id": format!("{prefix}_fail"), "input": {"code": "FAIL"},
                   "expected_output": {"test": "assert f() == 1"}}),
            json!({"case_id": format!("{prefix}_io"), "input": {"code": "print(input().upper())"},
                   "expected_output": {"io": [{"stdin": "abc", "stdout": "ABC"}, {"stdin": "x", "stdout": "X"}]}}),
        ]
    };
    for (name, language) in [("piston", "c"), ("fusion", "python")] {
        let metric = json!({"name": "builtin/code_execution", "params": {"sandbox": name, "language": language}});
        let results = run_and_results(&server, &code_run(name, cases(name), metric)).await;
        let of = |id: &str| {
            score(
                case(&results, &format!("{name}_{id}")),
                "builtin/code_execution",
            )
            .clone()
        };
        assert_eq!(of("pass")["score"], 1.0, "{}", of("pass"));
        assert_eq!(of("pass")["details"]["sandbox"], name);
        assert_eq!(of("fail")["score"], 0.0);
        assert_eq!(of("fail")["details"]["exit_code"], 1);
        assert_eq!(of("fail")["details"]["stderr"], "AssertionError\n");
        assert_eq!(of("io")["score"], 1.0, "{}", of("io"));
    }

    // The requests are the services' documented shapes.
    let seen = piston.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "one per test program, one per stdin");
    let first = seen.iter().find(|r| r["stdin"] == "").unwrap();
    assert_eq!(first["language"], "c");
    assert_eq!(first["version"], "*");
    assert_eq!(first["files"][0]["name"], "main.c");
    assert_eq!(first["args"], json!([]));
    let content = first["files"][0]["content"].as_str().unwrap();
    assert!(
        content.contains("FAIL") || content.ends_with("assert f() == 1\n"),
        "{content}"
    );
    let seen = fusion.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    let io = seen.iter().find(|r| r["stdin"] == "abc").unwrap();
    assert_eq!(io["language"], "python");
    assert_eq!(io["code"], "print(input().upper())");
    assert!(io["run_timeout"].as_f64().unwrap() > 0.0);

    // A service that cannot run the code fails the case's score, never passes it.
    let metric = json!({"name": "builtin/code_execution", "params": {"sandbox": "fusion"}});
    let down = vec![
        json!({"case_id": "down", "input": {"code": "SANDBOX_DOWN"}, "expected_output": {"test": "pass"}}),
    ];
    let (status, created) = server.post("/runs", &code_run("down", down, metric)).await;
    assert_eq!(status, 202);
    let run_id = created["run_id"].as_str().unwrap();
    server.wait_finished(run_id).await;
    let results = common::all_results(&server.client, &server.base, run_id).await;
    let down = score(case(&results, "down"), "builtin/code_execution");
    assert_eq!(down["score"], Value::Null);
    assert!(
        down["error"]
            .as_str()
            .unwrap()
            .contains("no executor available"),
        "{down}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_sandbox_local_runs_code_and_refuses_bad_declarations() {
    let (mut process, base) = common::spawn_server("memory", &["--sandbox", "local"]);
    let client = reqwest::Client::new();
    let body = code_run(
        "d",
        vec![
            json!({"case_id": "a", "input": {"code": "def add(a, b):\n    return a + b\n"},
                    "expected_output": {"test": ADD_TEST}}),
        ],
        local_metric("python"),
    );
    let run_id = common::post_run(&client, &base, &body).await;
    let run = common::wait_finished(&client, &base, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let results = common::all_results(&client, &base, &run_id).await;
    assert_eq!(score(&results[0], "builtin/code_execution")["score"], 1.0);
    process.terminate(std::time::Duration::from_secs(10));

    let error = common::try_spawn_server("memory", &["--sandbox", "name=x,kind=docker"], &[])
        .err()
        .expect("a bad --sandbox must stop the server");
    assert!(
        error.contains("--sandbox name=x,kind=docker: kind `docker`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_code_example_scores_as_written() {
    let server = TestServer::start("memory", registry_with(local_sandboxes(4))).await;
    let body: Value = serde_json::from_str(include_str!("../../examples/code.json")).unwrap();
    let results = run_and_results(&server, &body).await;
    for (case_id, expected) in [
        ("has_close_elements", 1.0),
        ("truncate_number", 1.0),
        ("below_zero", 0.0),
        ("fib", 0.0),
        ("sum_two", 1.0),
        ("reverse_words", 1.0),
    ] {
        let tests = score(case(&results, case_id), "tests");
        assert_eq!(tests["score"], expected, "{case_id}: {tests}");
    }
    let fib = score(case(&results, "fib"), "tests");
    let limit = fib["details"]["limit"].as_str().unwrap_or("none");
    assert!(["cpu_time", "wall_time"].contains(&limit), "{fib}");
    server.stop().await;
}
