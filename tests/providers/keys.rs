//! API keys: a declared key is sent to its provider only and never leaks; a key the
//! provider echoes is redacted from errors.

use super::*;

#[tokio::test]
async fn declared_keys_are_sent_to_their_provider_and_never_leak() {
    let fake = FakeProvider::replying(|body, _| {
        if user_text(body).contains("1 + 1") {
            Reply::Status(
                401,
                "{\"error\": {\"message\": \"Incorrect API key\"}}".into(),
                None,
            )
        } else {
            arithmetic(body)
        }
    })
    .await;
    let secret = format!("sk-themis-test-{}", uuid::Uuid::new_v4().simple());
    let outcome = run(
        &engine_for(&fake, Some(&secret)),
        &experiment(&fake, json!({}), cases(2)),
    )
    .await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    let authorizations = fake.authorizations();
    assert_eq!(authorizations.len(), 2);
    assert!(
        authorizations
            .iter()
            .all(|a| a.as_deref() == Some(format!("Bearer {secret}").as_str())),
        "the key is sent as a bearer token"
    );
    assert_eq!(outcome.failed().len(), 1);
    assert!(outcome.error_of("c1").contains("HTTP 401"));

    // A provider declared without a key gets no Authorization header.
    let before = fake.hits();
    let keyless = run(
        &engine_for(&fake, None),
        &experiment(&fake, json!({"model": "other"}), cases(1)),
    )
    .await;
    assert_eq!(keyless.run.status, RunStatus::Completed);
    assert_eq!(fake.authorizations()[before..], [None]);

    // The key is nowhere in what was stored.
    for stored in [
        serde_json::to_string(&outcome.run).unwrap(),
        serde_json::to_string(&outcome.records).unwrap(),
        serde_json::to_string(&outcome.events).unwrap(),
    ] {
        assert!(!stored.contains(&secret), "secret leaked: {stored}");
    }
}

#[tokio::test]
async fn echoed_keys_are_redacted_from_errors() {
    let secret = format!("sk-echo-{}", uuid::Uuid::new_v4().simple());
    // A provider that quotes the rejected key back in its error body.
    let fake = {
        let secret = secret.clone();
        FakeProvider::replying(move |_, _| {
            Reply::Status(
                401,
                format!("{{\"error\": {{\"message\": \"Incorrect API key provided: {secret}\"}}}}"),
                None,
            )
        })
        .await
    };
    let outcome = run(
        &engine_for(&fake, Some(&secret)),
        &experiment(&fake, json!({}), cases(1)),
    )
    .await;
    let message = outcome.error_of("c0");
    assert!(
        message.contains("HTTP 401") && message.contains("[redacted]"),
        "{message}"
    );
    for stored in [
        serde_json::to_string(&outcome.records).unwrap(),
        serde_json::to_string(&outcome.events).unwrap(),
    ] {
        assert!(!stored.contains(&secret), "secret leaked: {stored}");
    }
}
