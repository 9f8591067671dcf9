//! A webhook secret signs only for the destinations it is bound to, compared as a
//! receiver would see them: percent-decoded segments, no `..` smuggled in encoded.

use crate::common;

use serde_json::json;
use themis::components::Registry;
use themis::server::ServerConfig;
use themis::telemetry::WebhookSecrets;

use common::TestServer;

const SECRET: &str = "THEMIS_WEBHOOK_CI";

#[tokio::test]
async fn encoded_traversal_out_of_a_bound_prefix_is_not_signed() {
    let bound = vec![format!(
        "{SECRET}=http://127.0.0.1:9/hook,http://127.0.0.1:9/ci/"
    )];
    let config = ServerConfig {
        database_url: "memory".into(),
        webhook_secrets: WebhookSecrets::parse(&bound, |_| Some("s3cret".into())).unwrap(),
        ..Default::default()
    };
    let server = TestServer::start_config(config, Registry::builtin()).await;
    let definition = |url: &str| {
        json!({
            "generation": {"generator": "builtin/demo_generator"},
            "evaluation": {"metrics": ["builtin/exact_match"]},
            "datasets": [{"dataset_id": "d", "cases": [
                {"case_id": "a", "input": {"question": "1+1"}, "expected_output": {"answer": "2"}}
            ]}],
            "seeds": [1],
            "subscribers": [{"kind": "webhook", "url": url, "secret_env": SECRET}]
        })
    };
    for refused in [
        "http://127.0.0.1:9/hook/..%2fevil",
        "http://127.0.0.1:9/hook/..%2Fevil",
        "http://127.0.0.1:9/hook/%2e%2e%2fevil",
        "http://127.0.0.1:9/hook/x%5c..%5c..%5cevil",
        "http://127.0.0.1:9/hook/%2e%2e/evil",
        "http://127.0.0.1:9/ci/%2e%2e",
        "http://127.0.0.1:9/hook/a%00b",
        "http://127.0.0.1:9/hook%2fevil",
    ] {
        let (status, body) = server.post("/runs", &definition(refused)).await;
        assert_eq!(status, 422, "{refused}: {body}");
        assert_eq!(
            body["error"]["details"][0]["path"], "subscribers[0].secret_env",
            "{refused}: {body}"
        );
    }
    for signed in [
        "http://127.0.0.1:9/hook",
        "http://127.0.0.1:9/hook/run%20one",
        "http://127.0.0.1:9/ci/x",
    ] {
        let (status, body) = server.post("/runs", &definition(signed)).await;
        assert!((200..300).contains(&status), "{signed}: {status} {body}");
    }
}
