//! The service's own log output, as an operator's file, pipe or collector receives it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The text log read through a pipe (as a file, `journald` or a log shipper reads it)
/// holds no ANSI escape sequences: colours are for terminals only.
#[test]
fn the_text_log_through_a_pipe_has_no_colour_codes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--database",
            "memory",
            "--log-format",
            "text",
        ])
        .env_remove("THEMIS_API_KEYS")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start themis serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let serving = line.contains("themis is serving");
        lines.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("themis is serving")),
        "the server did not log that it serves: {lines:#?}"
    );
    // Levels and field names are still written, as plain text.
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:#?}");
    let coloured: Vec<&String> = lines.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(
        coloured.is_empty(),
        "escape sequences in a piped log: {coloured:#?}"
    );
}

/// The text log redirected to a file (`themis serve 2>themis.log`) holds no ANSI
/// escape sequences either.
#[test]
fn the_text_log_in_a_file_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("themis.log");
    let file = std::fs::File::create(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["serve", "--addr", "127.0.0.1:0", "--database", "memory"])
        .args(["--log-format", "text"])
        .env_remove("THEMIS_API_KEYS")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .expect("start themis serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("themis is serving") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("themis is serving"), "{text}");
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences in a log file: {text:?}"
    );
}

/// A log nobody reads (a stalled shipper, a pipe left full) never stalls the service:
/// every request writes an access line, far more than a pipe holds, and every one is
/// answered. Writing the lines on the request's thread blocked it once the pipe filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_wait_for_a_log_reader() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_themis"))
        .args(["serve", "--addr", "127.0.0.1:0", "--database", "memory"])
        .args(["--log-format", "json"])
        .env_remove("THEMIS_API_KEYS")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start themis serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    // Read up to the line with the address, then never again.
    let (addr, stderr) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                return (None, stderr);
            }
            if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
                && log["fields"]["message"] == "themis is serving"
            {
                let addr = log["fields"]["addr"].as_str().map(str::to_owned);
                return (addr, stderr);
            }
        }
    })
    .await
    .unwrap();
    let addr = addr.expect("the server's address");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // ~250 bytes of access log each: ~1 MB, sixteen times a pipe's 64 KiB.
    let mut answered = 0;
    for _ in 0..4_000 {
        match client.get(format!("http://{addr}/healthz")).send().await {
            Ok(response) if response.status() == 200 => answered += 1,
            other => panic!("request {answered} was not answered: {other:?}"),
        }
    }
    assert_eq!(answered, 4_000);
    drop(stderr);
    let _ = child.kill();
    let _ = child.wait();
}
