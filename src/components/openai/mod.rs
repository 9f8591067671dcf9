//! `openai/chat`, `openai/judge` and `openai/pairwise`: a generator and LLM judges backed by any
//! OpenAI-compatible `/chat/completions` endpoint (OpenAI, Ollama, llama.cpp's server,
//! vLLM, ...).
//!
//! - [`client`]: one chat-completions call, with the response cache, per-endpoint rate
//!   limits, circuit breaker and concurrency limit ([`limits`]), retries and spans.
//! - [`template`]: prompts rendered from the case with MiniJinja.
//! - [`generator`], [`judge`], [`pairwise`]: the components; [`verdict`]: reading a
//!   judge model's verdict.
//! - [`providers`]: the providers the operator declares (the only place keys come
//!   from) and [`Outbound`], what the server or CLI hands the registry.
//! - [`shared`]: endpoint state and the outbound cap shared by all runs.
//! - [`params`]: the endpoint, robustness and sampling params all of them read.
//!
//! Both components share the endpoint and sampling params read by [`read_client`].

mod agent;
mod client;
mod generator;
mod judge;
mod limits;
mod pairwise;
mod params;
mod prices;
mod providers;
mod redact;
mod shared;
mod template;
mod tokens;
mod verdict;

use std::sync::Arc;

use super::Registry;
use params::{read_client, read_template};
pub use prices::{FoundPrice, ModelPrice, PriceTable};
pub use providers::{
    ApiKey, DEFAULT_MAX_OUTBOUND_REQUESTS, OperatorLimits, Outbound, ProviderSpec,
    implicit_providers,
};
pub(crate) use redact::redact_key;
use shared::Shared;

/// The components that send requests to model providers: all of them share the
/// instance's outbound cap.
pub const PROVIDER_COMPONENTS: [&str; 4] = [
    "openai/chat",
    "openai/agent",
    "openai/judge",
    "openai/pairwise",
];

pub(super) fn register(registry: &mut Registry, outbound: Outbound) {
    let shared = Arc::new(Shared::new(outbound).with_cluster(registry.cluster_link()));
    let for_judge = shared.clone();
    let for_pairwise = shared.clone();
    let for_agent = shared.clone();
    registry.register_generator("openai/chat", "1", move |p| {
        Arc::new(generator::ChatGenerator::from_params(p, &shared))
    });
    // Composite: the agent offers the tools of the registry's MCP servers.
    registry.register_composite_generator("openai/agent", "1", move |registry, p| {
        Arc::new(agent::AgentGenerator::from_params(
            p,
            &for_agent,
            registry.mcp_servers(),
        ))
    });
    // Version 2: the prompt shows input, expected output and output unless the rubric
    // places them itself.
    registry.register_judge("openai/judge", "2", move |p| {
        Arc::new(judge::LlmJudge::from_params(p, &for_judge))
    });
    registry.register_judge("openai/pairwise", "1", move |p| {
        Arc::new(pairwise::Pairwise::from_params(p, &for_pairwise))
    });
}

/// Truncates text for messages, at a character boundary.
fn truncate(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::ResolveError;
    use crate::model::FieldError;
    use serde_json::{Value, json};

    fn errors(name: &str, params: Value, judge: bool) -> Vec<FieldError> {
        let registry = Registry::builtin();
        let params = params.as_object().unwrap().clone();
        let result = if judge {
            registry.judge(name, &params).map(|_| ())
        } else {
            registry.generator(name, &params).map(|_| ())
        };
        match result {
            Ok(()) => Vec::new(),
            Err(ResolveError::Params(errors)) => errors,
            Err(other) => panic!("{other:?}"),
        }
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn valid_generator_params() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://localhost:11434/v1/", "model": "llama3.2:1b",
                   "prompt": "{{ input.question }}", "temperature": 0.7, "stop": ["\n"],
                   "extra_body": {"response_format": {"type": "json_object"}},
                   "price": {"prompt_per_1k": 0.1}}),
            false,
        );
        assert!(e.is_empty(), "{e:?}");
    }

    fn declared() -> Registry {
        let provider = ProviderSpec::new("corp", "https://llm.corp.example/v1")
            .unwrap()
            .with_key("sk-corp");
        let provider = ProviderSpec {
            key_env: Some("CORP_KEY".into()),
            ..provider
        };
        Registry::builtin_with(Outbound {
            providers: vec![provider],
            ..Outbound::local()
        })
    }

    fn declared_errors(params: Value) -> Vec<FieldError> {
        let params = params.as_object().unwrap().clone();
        match declared().generator("openai/chat", &params) {
            Ok(_) => Vec::new(),
            Err(ResolveError::Params(errors)) => errors,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_are_bound_to_declared_providers() {
        // By name, by base URL (any spelling), with or without naming its variable.
        for ok in [
            json!({"provider": "corp", "model": "m", "prompt": "x"}),
            json!({"base_url": "HTTPS://llm.corp.example/v1/", "model": "m", "prompt": "x"}),
            json!({"provider": "corp", "api_key_env": "CORP_KEY", "model": "m", "prompt": "x"}),
        ] {
            assert!(declared_errors(ok.clone()).is_empty(), "{ok}");
        }
        // Any other variable, or the provider's variable with another host: 422 listing
        // the declared providers.
        for (bad, path) in [
            (
                json!({"base_url": "http://evil.example/v1", "api_key_env": "CORP_KEY"}),
                "api_key_env",
            ),
            (
                json!({"provider": "corp", "api_key_env": "DATABASE_URL"}),
                "api_key_env",
            ),
            (json!({"provider": "nope"}), "provider"),
            (
                json!({"provider": "corp", "base_url": "http://evil.example/v1"}),
                "base_url",
            ),
        ] {
            let mut params = bad.clone();
            params["model"] = json!("m");
            params["prompt"] = json!("x");
            let e = declared_errors(params);
            assert_eq!(paths(&e), [path], "{bad}: {e:?}");
            if path != "base_url" {
                assert!(
                    e[0].message
                        .contains("corp (https://llm.corp.example/v1, key CORP_KEY)"),
                    "{e:?}"
                );
            }
            assert!(!e[0].message.contains("sk-corp"));
        }
        // A literal address no policy allows is refused at submit time.
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://169.254.169.254/v1", "model": "m", "prompt": "x"}),
            false,
        );
        assert_eq!(paths(&e), ["base_url"], "{e:?}");
        assert!(e[0].message.contains("link-local"), "{e:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "ftp://x", "temperature": 3, "prompt": "{{ inpt }}",
                   "messages": [{"role": "user", "content": "x"}], "api_key": "sk-123",
                   "api_key_env": "sk-123", "extra_body": {"seed": 1}, "stop": 3,
                   "output": "yaml", "bogus": 1, "price": {"prompt_per_1k": -1}}),
            false,
        );
        let paths = paths(&e);
        for expected in [
            "base_url",
            "model",
            "temperature",
            "prompt",
            "api_key",
            "api_key_env",
            "extra_body",
            "stop",
            "output",
            "bogus",
            "price.prompt_per_1k",
        ] {
            assert!(paths.contains(&expected), "{expected} missing in {e:?}");
        }
        // The secret itself is never echoed.
        assert!(e.iter().all(|e| !e.message.contains("sk-123")), "{e:?}");
    }

    #[test]
    fn credentials_in_base_url_are_rejected() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "https://user:hunter2@h/v1", "model": "m", "prompt": "x"}),
            false,
        );
        assert_eq!(paths(&e), ["base_url"], "{e:?}");
        assert!(!e[0].message.contains("hunter2"));
    }

    #[test]
    fn messages_are_validated() {
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://h/v1", "model": "m",
                   "messages": [{"role": "wizard", "content": "{{ input }}"},
                                {"role": "user", "content": "{% if %}"},
                                {"role": "user"}]}),
            false,
        );
        assert_eq!(
            paths(&e),
            [
                "messages[0].role",
                "messages[1].content",
                "messages[2].content"
            ],
            "{e:?}"
        );
        let e = errors(
            "openai/chat",
            json!({"base_url": "http://h/v1", "model": "m"}),
            false,
        );
        assert_eq!(paths(&e), ["prompt"], "{e:?}");
    }

    #[test]
    fn judge_params() {
        let ok = errors(
            "openai/judge",
            json!({"base_url": "http://h/v1", "model": "m",
                   "rubric": "Is {{ output }} right for {{ input }}? Expected {{ expected_output }}.",
                   "scale": {"min": 0, "max": 10}, "samples": 3}),
            true,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let e = errors(
            "openai/judge",
            json!({"base_url": "http://h/v1", "model": "m", "rubric": "{{ nope }}",
                   "scale": {"min": 5, "max": 1}, "pass_fail": true, "samples": 0}),
            true,
        );
        let paths = paths(&e);
        for expected in ["rubric", "scale", "pass_fail", "samples"] {
            assert!(paths.contains(&expected), "{expected} missing in {e:?}");
        }
    }

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
