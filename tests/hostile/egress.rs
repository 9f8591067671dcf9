//! Hostile runs against credentials and egress (issue 10, requirements 1 to 3): one test
//! per hole. Fake providers, webhook receivers and "other hosts" are real listeners on
//! loopback ports; a strict server is one listening on 0.0.0.0.

use crate::common;

use common::fake_provider::{FakeProvider, Reply};
use common::webhook::WebhookReceiver;
use common::{TestApp, TestServer};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use themis::components::{Outbound, ProviderSpec, Registry};
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{CaseRecord, CaseStatus, RunRecord};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

// ---------------------------------------------------------------------------------
// Driving runs

fn registry(providers: Vec<ProviderSpec>, max_requests: usize) -> Registry {
    Registry::builtin_with(Outbound {
        providers,
        max_requests,
        ..Outbound::local()
    })
}

fn engine(registry: Registry) -> Engine {
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(registry),
        EngineConfig::default(),
    )
}

/// An experiment of `cases` cases whose prompts start with `tag`, with `params` for
/// `openai/chat`.
fn experiment(params: Value, tag: &str, cases: usize) -> Value {
    let mut generator = json!({"model": "m", "prompt": format!("{tag} {{{{ input.q }}}}"),
        "initial_backoff_ms": 1, "max_backoff_ms": 5, "max_retries": 0});
    for (k, v) in params.as_object().unwrap() {
        generator[k] = v.clone();
    }
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"case_id": format!("c{i}"), "input": {"q": i}, "expected_output": "ok"}))
        .collect();
    json!({
        "generation": {"generator": {"name": "openai/chat", "params": generator}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": cases}],
        "seeds": [1],
        "concurrency": 16
    })
}

async fn run(engine: &Engine, body: &Value) -> (RunRecord, Vec<CaseRecord>) {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let record = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    let query = CaseQuery {
        limit: 10_000,
        ..CaseQuery::default()
    };
    let cases = engine.store().case_records(&run_id, &query).await.unwrap();
    (record, cases)
}

fn errors(cases: &[CaseRecord]) -> Vec<String> {
    cases
        .iter()
        .filter(|c| c.status == CaseStatus::Failed)
        .map(|c| {
            c.error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default()
        })
        .collect()
}

fn declared(name: &str, host: &FakeProvider, key: &str) -> ProviderSpec {
    ProviderSpec::new(name, &host.base_url)
        .unwrap()
        .with_key(key)
}

/// A server started in-process on `addr` (0.0.0.0:0 for a non-loopback listener),
/// stopped on drop.
struct Server(TestServer);

impl std::ops::Deref for Server {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl Server {
    async fn start(
        addr: &str,
        configure: impl FnOnce(&mut themis::server::ServerConfig),
    ) -> Server {
        let server = Server(
            TestApp::new()
                .listen_on(addr)
                .configure(configure)
                .serve()
                .await,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while server
            .client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/runs", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Waits for a run to finish; returns its record.
    async fn finished(&self, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run: Value = self
                .client
                .get(format!("{}/runs/{run_id}", self.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if matches!(
                run["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return run;
            }
            assert!(Instant::now() < deadline, "run did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn case_errors(&self, run_id: &str) -> Vec<String> {
        common::all_results(&self.client, &self.base, run_id)
            .await
            .iter()
            .filter_map(|r| r["error"]["message"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn detail_paths(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|d| d["path"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// Tests

/// The issue's reproduction: a run naming a server variable and its own host.
#[tokio::test]
async fn naming_an_unbound_variable_is_a_422_listing_the_providers() {
    let listener = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let corp = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let provider = ProviderSpec {
        key_env: Some("CORP_KEY".into()),
        ..declared("corp", &corp, "sk-corp")
    };
    let server = Server::start("127.0.0.1:0", |c| c.providers = vec![provider]).await;
    for variable in ["THEMIS_API_KEYS", "DATABASE_URL", "CORP_KEY"] {
        let body = experiment(
            json!({"base_url": listener.base_url, "api_key_env": variable}),
            "x",
            1,
        );
        let (status, answer) = server.post(&body).await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            detail_paths(&answer)
                .iter()
                .any(|p| p.ends_with("params.api_key_env")),
            "{answer}"
        );
        let text = answer.to_string();
        assert!(
            text.contains("corp (") && text.contains("key CORP_KEY"),
            "{text}"
        );
        assert!(!text.contains("sk-corp"), "{text}");
    }
    assert_eq!(listener.hits(), 0, "nothing was sent anywhere");
}

#[tokio::test]
async fn a_declared_key_reaches_only_its_host() {
    let corp = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let other = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let engine = engine(registry(vec![declared("corp", &corp, "sk-corp-123")], 64));
    let (record, cases) = run(&engine, &experiment(json!({"provider": "corp"}), "a", 2)).await;
    assert_eq!(record.progress.completed, 2, "{:?}", errors(&cases));
    let (record, cases) = run(
        &engine,
        &experiment(json!({"base_url": other.base_url}), "b", 2),
    )
    .await;
    assert_eq!(record.progress.completed, 2, "{:?}", errors(&cases));
    assert_eq!(
        corp.authorizations(),
        vec![Some("Bearer sk-corp-123".to_owned()); 2]
    );
    assert_eq!(
        other.authorizations(),
        vec![None; 2],
        "no key for an undeclared host"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let target = format!("{}/chat/completions", elsewhere.base_url);
    let corp = FakeProvider::replying(move |_, _| {
        Reply::Raw(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", target.clone())],
            )
                .into_response(),
        )
    })
    .await;
    let engine = engine(registry(vec![declared("corp", &corp, "sk-corp")], 64));
    let (_, cases) = run(&engine, &experiment(json!({"provider": "corp"}), "r", 1)).await;
    let errors = errors(&cases);
    assert!(
        errors.len() == 1 && errors[0].contains("HTTP 307"),
        "{errors:?}"
    );
    assert_eq!(corp.hits(), 1);
    assert_eq!(elsewhere.hits(), 0, "the redirect was not followed");
}

#[tokio::test]
async fn error_bodies_are_quoted_only_from_declared_providers_and_sanitised() {
    let body = "{\"error\": {\"message\": \"internal-token-4242 at\\n\\u001b[31mdb01\"}}";
    let undeclared = FakeProvider::replying(move |_, _| {
        Reply::Raw((StatusCode::BAD_REQUEST, body).into_response())
    })
    .await;
    let plain = FakeProvider::replying(|_, _| {
        Reply::Raw((StatusCode::OK, "root:x:0:0:root:/root:/bin/bash").into_response())
    })
    .await;
    let corp = FakeProvider::replying(move |_, _| {
        Reply::Raw((StatusCode::BAD_REQUEST, body).into_response())
    })
    .await;
    let engine = engine(registry(vec![declared("corp", &corp, "k")], 64));
    for (host, leaked) in [(&undeclared, "internal-token-4242"), (&plain, "root:x")] {
        let (_, cases) = run(
            &engine,
            &experiment(json!({"base_url": host.base_url}), "e", 1),
        )
        .await;
        let errors = errors(&cases);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("HTTP"), "{errors:?}");
        assert!(
            !errors[0].contains(leaked),
            "quoted an undeclared host's body: {errors:?}"
        );
    }
    let (_, cases) = run(&engine, &experiment(json!({"provider": "corp"}), "e", 1)).await;
    let errors = errors(&cases);
    assert!(
        errors[0].contains("HTTP 400") && errors[0].contains("internal-token-4242"),
        "{errors:?}"
    );
    assert!(
        !errors[0].contains('\n') && !errors[0].contains('\u{1b}'),
        "{errors:?}"
    );
}

#[tokio::test]
async fn webhooks_and_collectors_at_metadata_addresses_are_refused() {
    let server = Server::start("127.0.0.1:0", |_| {}).await;
    let mut body = experiment(json!({"base_url": "http://127.0.0.1:9/v1"}), "w", 1);
    body["subscribers"] =
        json!([{"kind": "webhook", "url": "http://169.254.169.254/latest/meta-data"}]);
    body["tracing"] = json!({"provider": "otlp", "endpoint": "http://[fe80::1]:4318"});
    let (status, answer) = server.post(&body).await;
    assert_eq!(status, 422, "{answer}");
    let paths = detail_paths(&answer);
    assert!(paths.contains(&"subscribers[0].url".to_owned()), "{answer}");
    assert!(paths.contains(&"tracing.endpoint".to_owned()), "{answer}");
    let mut body = experiment(json!({"base_url": "http://169.254.169.254/v1"}), "w", 1);
    body["tracing"] =
        json!({"provider": "otlp", "endpoint": "http://[::ffff:169.254.169.254]:4318"});
    let (status, answer) = server.post(&body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(detail_paths(&answer).len(), 2, "{answer}");
}

#[tokio::test]
async fn internal_addresses_are_refused_on_a_public_listener_unless_allowed() {
    let provider = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let hook = WebhookReceiver::start().await;
    let by_name = format!("http://localhost:{}/v1", provider.port);
    let hook_url = format!("http://localhost:{}/hook", hook.port);
    let strict = Server::start("0.0.0.0:0", |_| {}).await;

    // A literal loopback address is refused at submit time, naming the field.
    let (status, answer) = strict
        .post(&experiment(json!({"base_url": provider.base_url}), "s", 1))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("--allow-egress"), "{answer}");

    // A name resolving to loopback is refused when resolved: the case fails, the webhook
    // delivery fails, and nothing arrives.
    let mut body = experiment(json!({"base_url": by_name}), "s", 1);
    body["subscribers"] =
        json!([{"kind": "webhook", "url": hook_url, "events": ["run_completed"]}]);
    let (status, answer) = strict.post(&body).await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["run_id"].as_str().unwrap().to_owned();
    strict.finished(&run_id).await;
    let errors = strict.case_errors(&run_id).await;
    assert!(
        errors.len() == 1 && errors[0].contains("egress policy"),
        "{errors:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let telemetry = loop {
        let run: Value = strict
            .client
            .get(format!("{}/runs/{run_id}", strict.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let webhook = run["telemetry"]["webhooks"][0].clone();
        if webhook["failed"].as_u64() == Some(1) {
            break webhook;
        }
        assert!(Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        telemetry.to_string().contains("egress policy"),
        "{telemetry}"
    );
    assert_eq!((provider.hits(), hook.attempts().len()), (0, 0));
    drop(strict);

    // A provider the operator declared on an internal address is reachable.
    let declared_server = Server::start("0.0.0.0:0", |c| {
        c.providers = vec![ProviderSpec::new("local", &by_name).unwrap()];
    })
    .await;
    let (status, answer) = declared_server
        .post(&experiment(json!({"provider": "local"}), "d", 1))
        .await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["run_id"].as_str().unwrap().to_owned();
    let run = declared_server.finished(&run_id).await;
    assert_eq!(run["progress"]["completed"], 1, "{run}");
    assert_eq!(provider.hits(), 1);
    drop(declared_server);

    // --allow-egress opens the network for undeclared destinations and webhooks.
    let allowed = Server::start("0.0.0.0:0", |c| {
        c.allow_egress = themis::egress::parse_allow(&["127.0.0.0/8".into()]).unwrap();
    })
    .await;
    let (status, answer) = allowed.post(&body).await;
    assert_eq!(status, 202, "{answer}");
    let run_id = answer["run_id"].as_str().unwrap().to_owned();
    let run = allowed.finished(&run_id).await;
    assert_eq!(run["progress"]["completed"], 1, "{run}");
    wait_for("the webhook delivery", || hook.attempts().len() == 1).await;
}

#[tokio::test]
async fn one_runs_breaker_and_rate_params_do_not_affect_other_runs() {
    // Requests of the "bad" run fail; everyone else's succeed.
    let host = FakeProvider::replying(|body, _| {
        let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
        if prompt.starts_with("bad") {
            Reply::Status(502, "down".into(), None)
        } else {
            Reply::text("{\"answer\": \"ok\"}", 1)
        }
    })
    .await;
    let provider = ProviderSpec {
        limits: themis::components::OperatorLimits {
            requests_per_minute: Some(120.0),
            ..Default::default()
        },
        ..declared("corp", &host, "k")
    };
    let engine = engine(registry(vec![provider], 64));
    // A run opening its breaker for a day after one failure...
    let (_, cases) = run(
        &engine,
        &experiment(
            json!({"provider": "corp", "breaker_failures": 1, "breaker_cooldown_ms": 86_400_000}),
            "bad",
            3,
        ),
    )
    .await;
    assert_eq!(errors(&cases).len(), 3);
    // ...only stops its own calls.
    let (record, cases) = run(&engine, &experiment(json!({"provider": "corp"}), "good", 2)).await;
    assert_eq!(record.progress.completed, 2, "{:?}", errors(&cases));
    assert_eq!(
        host.prompts()
            .iter()
            .filter(|p| p.starts_with("good"))
            .count(),
        2
    );

    // A huge requests_per_minute does not loosen the operator's 120/min (burst 2).
    let before = host.hits();
    let started = Instant::now();
    let (record, cases) = run(
        &engine,
        &experiment(
            json!({"provider": "corp", "requests_per_minute": 1e9}),
            "fast",
            5,
        ),
    )
    .await;
    assert_eq!(record.progress.completed, 5, "{:?}", errors(&cases));
    assert_eq!(host.hits() - before, 5);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_outbound_cap_bounds_requests_in_flight() {
    let host = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::from_millis(80)).await;
    let engine = engine(registry(vec![declared("corp", &host, "k")], 2));
    let (record, cases) = run(&engine, &experiment(json!({"provider": "corp"}), "cap", 12)).await;
    assert_eq!(record.progress.completed, 12, "{:?}", errors(&cases));
    assert_eq!(host.max_in_flight(), 2);
}

/// The real binary: `--provider` (keys read from the server's environment at startup) and
/// `THEMIS_PROVIDERS` (entries separated by `;`).
#[tokio::test]
async fn providers_are_declared_by_flag_or_environment_of_the_real_binary() {
    let a = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let b = FakeProvider::fixed("{\"answer\": \"ok\"}", Duration::ZERO).await;
    let client = reqwest::Client::new();
    let flag = format!("name=a,base_url={},key_env=EGRESS_TEST_KEY_A", a.base_url);
    let env = format!(
        "name=a,base_url={},key_env=EGRESS_TEST_KEY_A; name=b,base_url={},max_concurrency=2",
        a.base_url, b.base_url
    );
    let key = ("EGRESS_TEST_KEY_A", "sk-from-env-a");
    for (extra, environment) in [
        (vec!["--provider", flag.as_str()], vec![key]),
        (vec![], vec![key, ("THEMIS_PROVIDERS", env.as_str())]),
    ] {
        // `ServerProcess` kills the server on every path.
        let (_child, base) = common::spawn_server_with_env("memory", &extra, &environment);
        let before = a.hits();
        let run_id = common::post_run(
            &client,
            &base,
            &experiment(json!({"provider": "a"}), &format!("bin{}", extra.len()), 1),
        )
        .await;
        wait_for("the provider call", || a.hits() == before + 1).await;
        assert_eq!(
            a.authorizations().last().cloned().flatten().as_deref(),
            Some("Bearer sk-from-env-a"),
            "{run_id}"
        );
        // The variable stays unusable from a run under any other destination.
        let answer: Value = client
            .post(format!("{base}/runs"))
            .json(&experiment(
                json!({"base_url": b.base_url, "api_key_env": "EGRESS_TEST_KEY_A"}),
                "steal",
                1,
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["error"]["code"], "invalid_definition", "{answer}");
    }
    assert_eq!(b.hits(), 0);
}
