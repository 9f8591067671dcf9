//! An agent's case in the browser: the transcript reads as a conversation — the
//! assistant's turns, each tool call collapsible with its arguments and result, the
//! outcome — and untrusted tool output stays text.

use crate::common;

use common::browser::Browser;
use common::fake_provider::{FakeProvider, Reply, tool_messages};
use serde_json::json;

use super::service::{Service, screenshots};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_view_shows_the_agents_transcript() {
    let fake = FakeProvider::replying(|body, _| {
        if tool_messages(body).is_empty() {
            Reply::ToolCalls(
                vec![
                    ("get_weather", json!({"city": "Paris"})),
                    ("get_time", json!({"zone": "Europe/Paris"})),
                ],
                40,
            )
        } else {
            Reply::text("It is sunny in Paris, and it is noon.", 25)
        }
    })
    .await;
    let service = Service::start(&[], None);
    let experiment = json!({
        "generation": {"generator": {"name": "openai/agent", "params": {
            "base_url": fake.base_url, "model": "agent-model",
            "messages": [{"role": "system", "content": "Use the tools."}],
            "conversation": "input.messages",
            "functions": [{"name": "get_weather"}, {"name": "get_time"}]
        }}},
        "evaluation": {"metrics": [{"name": "builtin/tool_call_match",
            "params": {"mode": "unordered", "expected": [{"name": "get_weather"}, {"name": "get_time"}]}}]},
        "datasets": [{"dataset_id": "weather", "cases": [{"case_id": "paris", "input": {
            "messages": [{"role": "user", "content": "Weather and time in Paris?"}],
            "tool_results": {
                "get_weather": "<img src=x onerror=alert(1)> sunny, 21 °C",
                "get_time": {"time": "12:00", "zone": "CET"}
            }}}]}],
        "seeds": [1]
    });
    let run = service.post("/runs", &experiment).await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let finished = service.wait_finished(&run_id).await;
    assert_eq!(finished["status"], "completed", "{finished}");

    let browser = Browser::start(1200, 1400).await;
    browser
        .goto(&format!("{}/ui/#/runs/{run_id}/cases/0", service.base))
        .await;
    browser.wait_view().await;
    browser.wait_for(".transcript").await;
    let text = browser.text(".transcript").await;
    for expected in [
        "Transcript, 2 turns",
        "answered",
        "get_weather(…)",
        "get_time(…)",
        "It is sunny in Paris, and it is noon.",
        "The model answered.",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    // Tool calls are collapsed until opened; opened, they show arguments and result.
    browser
        .expect(
            "tool calls start collapsed",
            "return [...document.querySelectorAll('.tool-call')].every((d) => !d.open)",
        )
        .await;
    browser.click(".tool-call summary").await;
    let opened = browser.text(".tool-call[open]").await;
    assert!(opened.contains("\"city\": \"Paris\""), "{opened}");
    assert!(opened.contains("sunny, 21 °C"), "{opened}");
    // The markup in the tool's output is text, not an element.
    browser
        .expect(
            "tool output is never markup",
            "return document.querySelector('.tool-result img') === null && document.querySelector('.tool-result').textContent.includes('<img')",
        )
        .await;
    browser
        .eval("document.querySelector('.transcript').scrollIntoView(); return true")
        .await;
    browser
        .screenshot(&screenshots(), "dashboard-transcript.png")
        .await;
    let errors: Vec<_> = browser
        .console()
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    browser.close().await;
}
