//! `themis serve` refuses a bad setting at startup, naming the flag, before it takes its
//! port: out-of-range numbers are never clamped, and flags and their variables are
//! checked alike.

use crate::common::TestApp;

/// What `themis serve` printed when it exited instead of serving.
fn refused(flags: &[&str], env: &[(&str, &str)]) -> String {
    match TestApp::new().database("memory").try_process(flags, env) {
        Ok((_, base)) => panic!("themis serve {flags:?} started at {base}"),
        Err(stderr) => stderr,
    }
}

#[test]
fn out_of_range_values_are_refused_naming_the_flag() {
    for (flags, named, why) in [
        (
            &["--trace-sample-ratio", "1.5"][..],
            "'--trace-sample-ratio",
            "from 0 to 1",
        ),
        (
            &["--commit-window-ms", "5000"][..],
            "'--commit-window-ms",
            "0..=1000",
        ),
        (
            &["--otlp-protocol", "grpc"][..],
            "'--otlp-protocol",
            "gRPC is not supported",
        ),
        (
            &["--otlp-endpoint", "ftp://collector:4318"][..],
            "'--otlp-endpoint",
            "http",
        ),
        (
            &["--sandbox-pool", "2000"][..],
            "'--sandbox-pool",
            "is not in 1..=1024",
        ),
        (
            &["--max-running-runs", "0"][..],
            "'--max-running-runs",
            "is not in 1..",
        ),
    ] {
        let stderr = refused(flags, &[]);
        assert!(
            stderr.contains(&format!("invalid value '{}' for {named}", flags[1])),
            "{flags:?}: {stderr}"
        );
        assert!(stderr.contains(why), "{flags:?}: {stderr}");
        assert!(stderr.contains("(exited: exit status: 2)"), "{stderr}");
    }
}

#[test]
fn a_variable_is_checked_like_its_flag() {
    let stderr = refused(&[], &[("THEMIS_POLL_INTERVAL_MS", "10")]);
    assert!(
        stderr.contains("invalid value '10' for '--poll-interval-ms"),
        "{stderr}"
    );
}

#[test]
fn collector_headers_are_checked_without_showing_their_values() {
    for (headers, why) in [
        ("authorization", "expected name=value pairs"),
        (
            "content-type=text/s3cret",
            "header `content-type` is set by the exporter",
        ),
        (
            "bad header=s3cret",
            "header `bad header` is not a valid HTTP header name",
        ),
    ] {
        let stderr = refused(&[], &[("OTEL_EXPORTER_OTLP_HEADERS", headers)]);
        assert!(
            stderr.contains(&format!("error: --otlp-headers: {why}")),
            "{headers}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}

#[test]
fn a_setting_that_needs_the_environment_is_refused_before_serving() {
    let stderr = refused(
        &[
            "--provider",
            "name=corp,base_url=http://127.0.0.1:9/v1,key_env=THEMIS_TEST_UNSET_KEY",
        ],
        &[],
    );
    assert!(
        stderr.contains(
            "error: --provider corp: environment variable THEMIS_TEST_UNSET_KEY (key_env) is not set"
        ),
        "{stderr}"
    );
    let stderr = refused(&[], &[("THEMIS_SECRET_KEY", "abc")]);
    assert!(
        stderr.contains("error: THEMIS_SECRET_KEY: the secret key must be 32 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_provider_limit_out_of_range_is_refused_not_clamped() {
    let stderr = refused(
        &[
            "--provider",
            "name=slow,base_url=http://127.0.0.1:9/v1,breaker_cooldown_ms=90000000",
        ],
        &[],
    );
    assert!(
        stderr.contains("error: --provider slow: breaker_cooldown_ms must be at most 86400000"),
        "{stderr}"
    );
}
