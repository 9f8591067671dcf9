//! What the command line tells its user: a run whose cases all failed exits non-zero
//! and names the cause, a run found in a database says it was reused, errors speak in
//! flags and report the first problem alone, an unreachable server reads "connection
//! refused", p-values read the same everywhere, and the documented example files run.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn themis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run themis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `n` arithmetic cases whose demo answers are wrong with probability `wrong_rate` and
/// fail with probability `error_rate`.
fn experiment(n: usize, wrong_rate: f64, error_rate: f64) -> Value {
    let cases: Vec<Value> = (0..n)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"question": format!("{i}+1")}, "expected_output": {"answer": (i + 1).to_string()}}))
        .collect();
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"wrong_rate": wrong_rate, "error_rate": error_rate}}},
        "evaluation": {"parsers": ["builtin/json_identity"], "metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "sums", "cases": cases}],
        "seeds": [3]
    })
}

#[test]
fn a_run_whose_cases_all_failed_exits_1_and_names_the_most_common_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        experiment(6, 0.0, 1.0).to_string(),
    )
    .unwrap();
    let out = themis(dir.path(), &["run", "broken.json"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("Cases: 6 total, 0 completed, 6 failed"),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Most common error"))
        .unwrap_or_else(|| panic!("no most common error in\n{stdout}"));
    assert!(
        line.starts_with("Most common error (6 of 6 failed, at generation): "),
        "{line}"
    );

    // Some cases completed: the run succeeded, and the error of the others is named.
    std::fs::write(
        dir.path().join("partly.json"),
        experiment(40, 0.0, 0.5).to_string(),
    )
    .unwrap();
    let out = themis(dir.path(), &["run", "partly.json"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Most common error ("), "{stdout}");
}

#[test]
fn a_run_found_in_the_database_says_it_was_reused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("exp.json"),
        experiment(3, 0.0, 0.0).to_string(),
    )
    .unwrap();
    let database = format!("sqlite://{}", dir.path().join("runs.db").display());
    let first = themis(dir.path(), &["run", "exp.json", "--database", &database]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        !text(&first.stdout).contains("Reused"),
        "{}",
        text(&first.stdout)
    );
    let again = themis(dir.path(), &["run", "exp.json", "--database", &database]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let stdout = text(&again.stdout);
    assert!(
        stdout.starts_with("Reused run run_")
            && stdout.contains("it had finished (completed), so nothing was executed again"),
        "{stdout}"
    );
    let json = themis(
        dir.path(),
        &["run", "exp.json", "--database", &database, "--json"],
    );
    let result: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(result["reused"], true);
}

#[test]
fn the_documented_yaml_example_runs_its_dataset_files() {
    let out = themis(repo(), &["run", "examples/questions.yaml", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "completed");
    // 4 JSONL cases and 3 CSV rows, two seeds each.
    assert_eq!(result["progress"]["total"], 14);
    let datasets: std::collections::BTreeSet<&str> = result["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["dataset_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        datasets.into_iter().collect::<Vec<_>>(),
        ["more_questions", "questions"]
    );
    let help = themis(repo(), &["run", "--help"]);
    let help = text(&help.stdout);
    for word in ["YAML", "JSONL", "CSV", "examples/questions.yaml"] {
        assert!(
            help.contains(word),
            "`themis run --help` lacks {word}:\n{help}"
        );
    }
}

#[test]
fn a_bad_csv_header_in_an_experiment_names_the_columns_field_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.csv"), "id,question\nx,1+1\n").unwrap();
    std::fs::write(
        dir.path().join("exp.yaml"),
        "generation:\n  generator: builtin/demo_generator\nevaluation:\n  metrics: [builtin/exact_match]\ndatasets:\n  - path: data.csv\n    columns: {input: question}\nseeds: [1]\n",
    )
    .unwrap();
    let out = themis(dir.path(), &["run", "exp.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("datasets[0].columns.case_id: the header has no column `case_id`")
            && stderr.contains("name the column with `datasets[0].columns.case_id`"),
        "{stderr}"
    );
    assert!(!stderr.contains("?case_id="), "{stderr}");
    assert!(!stderr.contains("at least one case"), "{stderr}");
}

#[tokio::test]
async fn datasets_push_names_flags_and_reports_the_first_problem_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::TestServer::start("sqlite::memory:", themis::components::Registry::builtin()).await;
    std::fs::write(dir.path().join("qa.csv"), "id,question\nx,1+1\n").unwrap();
    let (path, base) = (dir.path().to_owned(), server.base.clone());
    let out = tokio::task::spawn_blocking(move || {
        themis(
            &path,
            &[
                "datasets", "push", "qa.csv", "--server", &base, "--input", "question",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--case-id: the header has no column `case_id`")
            && stderr.contains("name the column with `--case-id`"),
        "{stderr}"
    );
    assert!(!stderr.contains("?case_id="), "{stderr}");
    assert!(!stderr.contains("at least one case"), "{stderr}");
    server.stop().await;
}

#[test]
fn compare_with_the_server_down_says_connection_refused() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = format!("run_{}", "a".repeat(32));
    let b = format!("run_{}", "b".repeat(32));
    let server = format!("http://127.0.0.1:{port}");
    let out = themis(repo(), &["compare", &a, &b, "--server", &server]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: cannot reach {server}: connection refused (is `themis serve` running there?)"
        )
    );
}

#[test]
fn a_regression_line_formats_its_p_value_like_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("runs.db").display());
    let mut ids = Vec::new();
    for (name, wrong_rate) in [("good.json", 0.0), ("bad.json", 1.0)] {
        std::fs::write(
            dir.path().join(name),
            experiment(30, wrong_rate, 0.0).to_string(),
        )
        .unwrap();
        let out = themis(
            dir.path(),
            &["run", name, "--database", &database, "--json"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(result["run_id"].as_str().unwrap().to_owned());
    }
    let out = themis(
        dir.path(),
        &[
            "compare",
            &ids[0],
            &ids[1],
            "--database",
            &database,
            "--fail-on-regression",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(table.contains("<0.0001"), "{table}");
    assert!(
        stderr.contains("regression: builtin/exact_match delta -1.0000 (p = <0.0001)"),
        "{stderr}"
    );
}

#[test]
fn the_sqlite_lock_file_is_ignored_by_git() {
    let out = Command::new("git")
        .args(["check-ignore", "--no-index", "-q", "themis.db.lock"])
        .current_dir(repo())
        .output()
        .expect("git");
    assert!(out.status.success(), "themis.db.lock is not in .gitignore");
}
