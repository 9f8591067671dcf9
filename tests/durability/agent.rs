//! kill -9 of the real server binary in the middle of an agent loop: after a restart the
//! case re-runs from its start, and the turn answered before the crash comes from the
//! response cache (no request, no cost).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fake_provider::{FakeProvider, Reply, tool_messages};
use common::{all_results, post_run, spawn_server, wait_finished};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_case_interrupted_by_kill_9_replays_its_cached_turn_after_a_restart() {
    let stall = Arc::new(AtomicBool::new(true));
    let stalling = stall.clone();
    // Turn 1 calls a tool; turn 2 hangs while `stall` is set (the crash comes then).
    let fake = FakeProvider::replying(move |body, _| {
        if tool_messages(body).is_empty() {
            Reply::ToolCalls(vec![("lookup", json!({"q": "x"}))], 7)
        } else if stalling.load(Ordering::SeqCst) {
            Reply::After(Duration::from_secs(120), Box::new(Reply::text("late", 1)))
        } else {
            Reply::text("42", 3)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("agent.db").display());
    let body = json!({
        "generation": {"generator": {"name": "openai/agent", "params": {
            "base_url": fake.base_url, "model": "m", "conversation": "input.messages",
            "functions": [{"name": "lookup"}], "timeout_ms": 300000}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": [{"case_id": "c", "input": {
            "messages": [{"role": "user", "content": "the answer?"}],
            "tool_results": {"lookup": "42"}}, "expected_output": "42"}]}],
        "seeds": [1]
    });
    let client = reqwest::Client::new();
    let (mut first, base) = spawn_server(&database, &[]);
    let run_id = post_run(&client, &base, &body).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.hits() < 2 {
        assert!(Instant::now() < deadline, "turn 2 never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A turn's response is written with the next case commit, or on its own within
    // 100 ms when none comes (one case here): past that, a crash keeps it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    first.kill().unwrap(); // SIGKILL, turn 2 in flight
    first.wait().unwrap();
    stall.store(false, Ordering::SeqCst);

    let (mut second, base) = spawn_server(&database, &[]);
    let run = wait_finished(&client, &base, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let first_turns = fake
        .bodies()
        .iter()
        .filter(|b| tool_messages(b).is_empty())
        .count();
    assert_eq!(
        first_turns, 1,
        "turn 1 was sent once, replayed from the cache"
    );
    assert_eq!(fake.hits(), 3, "turn 1, turn 2 cut short, turn 2 again");
    let results = all_results(&client, &base, &run_id).await;
    let candidate = &results[0]["candidates"][0];
    assert_eq!(candidate["output"], "42");
    let turns = candidate["transcript"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(
        turns[0]["usage"]["requests"], 0,
        "the replayed turn cost nothing"
    );
    assert_eq!(turns[0]["usage"]["prompt_tokens"], 7);
    assert_eq!(turns[1]["usage"]["requests"], 1);
    assert_eq!(run["usage"]["requests"], 1);
    second.kill().unwrap();
    second.wait().unwrap();
}
