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
