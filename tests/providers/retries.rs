//! Failures of a provider call: what is retried (5xx bursts, Retry-After, timeouts), what
//! fails the case at once (4xx, malformed answers) and when identical failures stop early.

use super::*;

#[tokio::test]
async fn server_error_bursts_are_retried_until_success() {
    // Each case's first two requests fail with 500, the third succeeds.
    let attempts: Arc<Mutex<std::collections::HashMap<String, usize>>> = Default::default();
    let counter = attempts.clone();
    let fake = FakeProvider::replying(move |body, _| {
        let mut attempts = counter.lock().unwrap();
        let seen = attempts.entry(user_text(body)).or_default();
        *seen += 1;
        if *seen <= 2 {
            Reply::Status(
                500,
                "{\"error\": {\"message\": \"overloaded\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let tracer = Arc::new(RecordingTracer::new());
    let outcome = run_with(
        &engine(),
        &experiment(&fake, json!({}), cases(4)),
        Observers::new(Vec::new(), tracer.clone()),
    )
    .await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    assert_eq!(fake.hits(), 12);
    // Each HTTP request is a span; the failed ones carry the reason.
    let spans = tracer.spans();
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "provider_call").collect();
    assert_eq!(calls.len(), 12);
    let failed: Vec<_> = calls
        .iter()
        .filter(|s| s.status == Some(SpanStatus::Error))
        .collect();
    assert_eq!(failed.len(), 8);
    assert!(failed[0].error.as_deref().unwrap().contains("HTTP 500"));
    // Every HTTP request is counted, retries included.
    assert_eq!(outcome.run.usage.requests, 12);
    let retries = outcome.events_of("provider_retry");
    assert_eq!(retries.len(), 8);
    let event = serde_json::to_value(retries[0]).unwrap();
    assert!(
        event["reason"].as_str().unwrap().contains("HTTP 500"),
        "{event}"
    );
    assert_eq!(event["provider"], format!("gen @ {}", fake.base_url));
    assert!(attempts.lock().unwrap().values().all(|n| *n == 3));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeProvider::replying(|body, index| {
        if index == 0 {
            Reply::Status(429, "{\"error\": \"slow down\"}".into(), Some("1"))
        } else {
            arithmetic(body)
        }
    })
    .await;
    let outcome = run(&engine(), &experiment(&fake, json!({}), cases(1))).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 2);
    let waited = arrivals[1] - arrivals[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let retry = serde_json::to_value(outcome.events_of("provider_retry")[0]).unwrap();
    assert!(retry["delay_ms"].as_u64().unwrap() >= 1000, "{retry}");
    assert!(retry["reason"].as_str().unwrap().contains("429"), "{retry}");
}

#[tokio::test]
async fn client_errors_fail_the_case_without_retries_and_the_run_goes_on() {
    let fake = FakeProvider::replying(|body, _| {
        if user_text(body).contains("1 + 1") {
            Reply::Status(
                401,
                "{\"error\": {\"message\": \"Invalid authentication\", \"code\": \"invalid_api_key\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let outcome = run(
        &engine_for(&fake, None),
        &experiment(&fake, json!({}), cases(3)),
    )
    .await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 3, "a 401 is not retried");
    assert_eq!(outcome.failed().len(), 1);
    let failed = outcome.failed()[0];
    assert_eq!(failed.key.case_id, "c1");
    assert_eq!(failed.error.as_ref().unwrap().stage, Stage::Generation);
    let message = outcome.error_of("c1");
    assert!(
        message.contains("HTTP 401") && message.contains("Invalid authentication"),
        "{message}"
    );
    assert!(outcome.events_of("provider_retry").is_empty());
    assert_eq!(outcome.run.progress.completed, 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_fail() {
    let fake = FakeProvider::replying(|body, _| {
        Reply::After(Duration::from_secs(5), Box::new(arithmetic(body)))
    })
    .await;
    let started = Instant::now();
    let outcome = run(
        &engine(),
        &experiment(
            &fake,
            json!({"timeout_ms": 150, "max_retries": 2}),
            cases(1),
        ),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 3);
    let message = outcome.error_of("c0");
    assert!(
        message.contains("timed out after 150 ms") && message.contains("3 attempts"),
        "{message}"
    );
    assert_eq!(outcome.events_of("provider_retry").len(), 2);
}

#[tokio::test]
async fn malformed_answers_are_case_errors() {
    let fake = FakeProvider::replying(|body, _| {
        if user_text(body).contains("0 + 1") {
            Reply::Malformed
        } else {
            // Valid API JSON, but the model's text is not the JSON asked for.
            Reply::Answer(vec!["the answer is two".into()])
        }
    })
    .await;
    let outcome = run(&engine(), &experiment(&fake, json!({}), cases(2))).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 2, "malformed answers are not retried");
    let message = outcome.error_of("c0");
    // An arbitrary body is never quoted.
    assert!(
        message.contains("not JSON") && !message.contains("definitely not json"),
        "{message}"
    );
    let message = outcome.error_of("c1");
    assert!(
        message.contains("answer is not JSON") && message.contains("the answer is two"),
        "{message}"
    );
}

#[tokio::test]
async fn identical_failures_stop_retrying_early() {
    let fake = FakeProvider::replying(|_, _| {
        Reply::Status(503, "{\"error\": \"model is loading\"}".into(), None)
    })
    .await;
    let outcome = run(
        &engine_for(&fake, None),
        &experiment(&fake, json!({"max_retries": 10}), cases(1)),
    )
    .await;
    assert_eq!(fake.hits(), 3);
    let message = outcome.error_of("c0");
    assert!(
        message.contains("HTTP 503")
            && message.contains("model is loading")
            && message.contains("same failure 3 times"),
        "{message}"
    );
}
