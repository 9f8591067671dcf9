//! Hostile programs in the local sandbox: each tries one escape or exhaustion, is
//! contained, is reported as its own case's outcome, and another run on the same server
//! finishes meanwhile as if nothing happened.

use crate::common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::code::{case, code_run, local_metric, local_sandboxes, registry_with, score};
use serde_json::{Value, json};

/// Trivial passing cases run beside the hostile one.
const BENIGN_CASES: usize = 12;

struct Outcome {
    /// The hostile case's `builtin/code_execution` score record.
    score: Value,
    /// How long the hostile case's run took.
    elapsed: Duration,
}

/// Runs `program` (Python) as the one case of a run whose test is `test`, with a benign
/// run submitted while it executes; checks the benign run is unharmed.
async fn contain(program: &str, test: &str) -> Outcome {
    let server = TestServer::start("memory", registry_with(local_sandboxes(4))).await;
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let program = program.replace("SERVER_PORT", &port.to_string());
    let hostile = code_run(
        "hostile",
        vec![
            json!({"case_id": "hostile", "input": {"code": program}, "expected_output": {"test": test}}),
        ],
        local_metric("python"),
    );
    let started = Instant::now();
    let (status, created) = server.post("/runs", &hostile).await;
    assert_eq!(status, 202, "{created}");
    let hostile_id = created["run_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let benign_cases: Vec<Value> = (0..BENIGN_CASES)
        .map(|i| {
            json!({
                "case_id": format!("b{i}"),
                "input": {"code": format!("def f():\n    return {i}\n")},
                "expected_output": {"test": format!("assert f() == {i}")}
            })
        })
        .collect();
    let benign_started = Instant::now();
    let (status, created) = server
        .post(
            "/runs",
            &code_run("benign", benign_cases, local_metric("python")),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let benign_id = created["run_id"].as_str().unwrap().to_owned();
    let benign = server.wait_finished(&benign_id).await;
    let benign_elapsed = benign_started.elapsed();
    assert_eq!(benign["status"], "completed", "{benign}");
    let results = common::all_results(&server.client, &server.base, &benign_id).await;
    for record in &results {
        assert_eq!(
            score(record, "builtin/code_execution")["score"],
            1.0,
            "benign case beside a hostile one: {record:#}"
        );
    }
    assert!(
        benign_elapsed < Duration::from_secs(15),
        "the benign run took {benign_elapsed:?} beside a hostile one"
    );

    let run = server.wait_finished(&hostile_id).await;
    let elapsed = started.elapsed();
    assert_eq!(run["status"], "completed", "{run}");
    let results = common::all_results(&server.client, &server.base, &hostile_id).await;
    let score = score(case(&results, "hostile"), "builtin/code_execution").clone();
    server.stop().await;
    Outcome { score, elapsed }
}

fn details(outcome: &Outcome) -> &Value {
    &outcome.score["details"]
}

/// Processes on this machine whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environment_of_the_server_and_pid_1_stay_hidden() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let program = format!(
        r#"
import os
print("ENV", dict(os.environ))
for path in ["/proc/1/environ", "/proc/self/environ", "/proc/{pid}/environ", "/proc/{pid}/cmdline"]:
    try:
        print(path, open(path, "rb").read())
    except Exception as e:
        print(path, "refused", e)
"#,
        pid = std::process::id()
    );
    let outcome = contain(&program, "").await;
    let stdout = details(&outcome)["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("ENV"),
        "{outcome_details}",
        outcome_details = details(&outcome)
    );
    assert!(
        !stdout.contains(manifest) && !stdout.contains("CARGO"),
        "the server's environment leaked: {stdout}"
    );
    assert!(
        stdout.contains(&format!("/proc/{}/environ refused", std::process::id())),
        "the server's /proc is visible: {stdout}"
    );
    assert!(stdout.contains("/proc/1/environ b''"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_port_and_postgres_are_unreachable() {
    let program = r#"
import socket
for port in [SERVER_PORT, 5432]:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        print(port, "CONNECTED")
    except OSError as e:
        print(port, "refused", e)
"#;
    // Postgres is up on these machines: a connection from outside the sandbox works.
    let postgres_up = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
    let outcome = contain(program, "").await;
    let stdout = details(&outcome)["stdout"].as_str().unwrap();
    assert!(!stdout.contains("CONNECTED"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains("refused")).count(),
        2,
        "{stdout}"
    );
    assert!(
        postgres_up,
        "Postgres should listen on 127.0.0.1:5432 for this test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_outside_the_tmpfs_fail_and_leave_nothing_on_the_host() {
    let marker = std::env::temp_dir().join(format!("themis-escape-{}", std::process::id()));
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let program = format!(
        r#"
import os
for path in ["{target}/escaped", "/usr/bin/escaped", "/src/main.py", "/escaped", "/etc/escaped"]:
    try:
        with open(path, "w") as f:
            f.write("x")
        print(path, "WRITTEN")
    except OSError as e:
        print(path, "refused", e.errno)
open("{marker}", "w").write("tmpfs is writable")
print("tmp", open("{marker}").read())
"#,
        marker = marker.display(),
        target = target.display()
    );
    let outcome = contain(&program, "").await;
    let stdout = details(&outcome)["stdout"].as_str().unwrap();
    assert!(!stdout.contains("WRITTEN"), "{stdout}");
    assert!(stdout.contains("tmp tmpfs is writable"), "{stdout}");
    assert!(!marker.exists(), "the sandbox's /tmp is the host's");
    assert!(
        !target.join("escaped").exists(),
        "a file appeared on the host"
    );
    assert_eq!(outcome.score["score"], 1.0, "{}", outcome.score);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fork_bomb_is_contained() {
    let program = "import os\nwhile True:\n    os.fork()\n";
    let outcome = contain(program, "").await;
    assert_eq!(outcome.score["score"], 0.0, "{}", outcome.score);
    let limit = details(&outcome)["limit"].as_str().unwrap_or("none");
    assert!(
        ["processes", "wall_time", "cpu_time"].contains(&limit),
        "{}",
        outcome.score
    );
    assert!(
        outcome.elapsed < Duration::from_secs(12),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocating_ten_gigabytes_hits_the_memory_limit() {
    let outcome = contain("block = bytearray(10 * 1024 ** 3)\n", "").await;
    assert_eq!(outcome.score["score"], 0.0);
    assert_eq!(details(&outcome)["limit"], "memory", "{}", outcome.score);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_infinite_loop_is_stopped() {
    let outcome = contain("while True:\n    pass\n", "").await;
    assert_eq!(outcome.score["score"], 0.0);
    // The CPU limit (2 s) comes first on an idle machine, the wall limit (4 s) on a
    // loaded one.
    let limit = details(&outcome)["limit"].as_str().unwrap_or("none");
    assert!(
        ["cpu_time", "wall_time"].contains(&limit),
        "{}",
        outcome.score
    );
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn printing_a_gigabyte_is_cut_at_the_output_limit() {
    let program =
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n";
    let outcome = contain(program, "").await;
    assert_eq!(outcome.score["score"], 0.0);
    assert_eq!(details(&outcome)["limit"], "output", "{}", outcome.score);
    let stdout = details(&outcome)["stdout"].as_str().unwrap();
    assert!(stdout.len() < 10_000, "details keep a truncated stdout");
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sleeping_past_the_wall_limit_is_stopped() {
    let outcome = contain("import time\ntime.sleep(600)\n", "").await;
    assert_eq!(outcome.score["score"], 0.0);
    assert_eq!(details(&outcome)["limit"], "wall_time", "{}", outcome.score);
    assert!(
        outcome.elapsed < Duration::from_secs(12),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_background_process_dies_with_the_program() {
    let needle = format!("{}.25", std::process::id() % 100_000 + 1_000);
    let program = format!(
        "import subprocess\nsubprocess.Popen(['sleep', '{needle}'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint('left it running')\n"
    );
    let outcome = contain(&program, "").await;
    assert_eq!(outcome.score["score"], 1.0, "{}", outcome.score);
    assert!(
        details(&outcome)["duration_ms"].as_u64().unwrap() < 3_000,
        "the execution waited for its background process: {}",
        outcome.score
    );
    assert_eq!(
        processes_with(&format!("sleep {needle}")),
        Vec::<String>::new()
    );
}
