//! Pacing and protection of a provider: rate limits, adaptive concurrency under its cap,
//! the circuit breaker, and the response cache that makes repeated requests free.

use super::*;

#[tokio::test]
async fn rate_limits_pace_requests_and_are_reported() {
    let fake = FakeProvider::replying(|body, _| arithmetic(body)).await;
    let mut body = experiment(&fake, json!({"requests_per_minute": 600}), cases(20));
    body["concurrency"] = json!(20);
    let started = Instant::now();
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    // 10 per second with a burst of 10: the 20th request cannot go out before 1 s after
    // the bucket was filled (which is after `started`). Measured from `started`, not from
    // the first arrival: that one may come late on a loaded machine while the bucket
    // already refills, which made a first-to-last bound flaky.
    let arrivals = fake.arrivals();
    let last = *arrivals.iter().max().unwrap() - started;
    assert!(last >= Duration::from_millis(990), "{last:?}");
    let waits = outcome.events_of("provider_rate_limited");
    assert!(waits.len() >= 8, "{} waits reported", waits.len());
    let wait = serde_json::to_value(waits[0]).unwrap();
    assert!(wait["wait_ms"].as_u64().unwrap() > 50, "{wait}");
}

#[tokio::test]
async fn adaptive_concurrency_never_exceeds_max_concurrency() {
    let fake = FakeProvider::replying(|body, _| {
        Reply::After(Duration::from_millis(30), Box::new(arithmetic(body)))
    })
    .await;
    let mut body = experiment(
        &fake,
        json!({"adaptive_concurrency": true, "max_concurrency": 3}),
        cases(12),
    );
    body["concurrency"] = json!(12);
    let outcome = run(&engine(), &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    let max = fake.max_in_flight();
    assert!((1..=3).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn circuit_breaker_opens_and_fails_fast() {
    let fake = FakeProvider::replying(|_, index| {
        Reply::Status(502, format!("bad gateway #{index}"), None)
    })
    .await;
    let mut body = experiment(
        &fake,
        json!({"max_retries": 0, "breaker_failures": 3, "breaker_cooldown_ms": 60000}),
        cases(6),
    );
    body["concurrency"] = json!(1);
    let outcome = run(&engine(), &body).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    assert_eq!(outcome.failed().len(), 6);
    assert_eq!(fake.hits(), 3, "the breaker stops calls after 3 failures");
    let message = outcome.error_of("c5");
    assert!(
        message.contains("circuit breaker open") && message.contains("HTTP 502"),
        "{message}"
    );
}

#[tokio::test]
async fn cached_responses_make_new_runs_of_the_same_requests_free() {
    let fake = FakeProvider::replying(|body, _| {
        if body["model"] == "judge" {
            Reply::Answer(vec!["{\"score\": 5, \"rationale\": \"correct\"}".into()])
        } else {
            arithmetic(body)
        }
    })
    .await;
    let engine = engine();
    let first = run(&engine, &judged_experiment(&fake, false)).await;
    assert!(first.failed().is_empty(), "{:?}", first.records);
    assert_eq!(fake.hits(), 4);
    assert_eq!(first.run.usage.requests, 4);

    // Another run (a new metric makes a new run id) sends the same requests: all cached.
    let second = run(&engine, &judged_experiment(&fake, true)).await;
    assert_ne!(first.run.run_id, second.run.run_id);
    assert!(second.failed().is_empty(), "{:?}", second.records);
    assert_eq!(fake.hits(), 4, "no request reached the provider");
    assert_eq!(second.run.usage.requests, 0);
    assert_eq!(
        (
            second.run.usage.prompt_tokens,
            second.run.usage.completion_tokens
        ),
        (
            first.run.usage.prompt_tokens,
            first.run.usage.completion_tokens
        ),
        "cache hits report the cached token counts"
    );
    assert_eq!(
        second.records[0].judgments[0].score,
        first.records[0].judgments[0].score
    );

    // A rejudge with the same judge (and another metric) is served from the cache too.
    let evaluation = json!({
        "metrics": ["builtin/token_f1"],
        "judges": judged_experiment(&fake, false)["evaluation"]["judges"].clone()
    });
    let (evaluation, _, runtime) =
        themis::engine::parse_evaluation(&evaluation, engine.registry()).unwrap();
    let rejudge = engine
        .submit_rejudge(&first.run.run_id, &evaluation, &runtime)
        .await
        .unwrap()
        .into_record()
        .run_id;
    let rejudged = engine
        .execute(&rejudge, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(rejudged.status, RunStatus::Completed);
    assert_eq!(
        rejudged.aggregates.metrics["openai/judge"].overall.mean,
        Some(1.0)
    );
    assert_eq!(fake.hits(), 4, "the rejudge sent nothing");
    assert_eq!(rejudged.usage.requests, 0);

    // With the cache off (and another metric, for a new run id), requests are sent again.
    let mut uncached = judged_experiment(&fake, true);
    uncached["cache"] = json!(false);
    uncached["evaluation"]["metrics"]
        .as_array_mut()
        .unwrap()
        .push(json!("builtin/token_f1"));
    let third = run(&engine, &uncached).await;
    assert_eq!(third.run.usage.requests, 4);
    assert_eq!(fake.hits(), 8);
}
