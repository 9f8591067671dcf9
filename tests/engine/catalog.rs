//! The component catalogue end to end: each example experiment of a family runs offline
//! through the engine with hand-worked expected values, and every registered component
//! is documented in docs/reference/components.md and listed in the OpenAPI document.

use std::sync::Arc;

use serde_json::Value;
use themis::components::{ComponentKind, Registry};
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{CaseRecord, RunRecord, RunStatus};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

async fn run_example(source: &str) -> (RunRecord, Vec<CaseRecord>) {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    );
    let body: Value = serde_json::from_str(source).expect("example is JSON");
    let request = engine.parse(&body).expect("example is a valid definition");
    let run_id = engine
        .submit(&request)
        .await
        .expect("submitted")
        .into_record()
        .run_id;
    let record = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .expect("executed");
    let query = CaseQuery {
        limit: 1_000,
        ..CaseQuery::default()
    };
    let cases = engine
        .store()
        .case_records(&run_id, &query)
        .await
        .expect("records");
    (record, cases)
}

fn score(record: &CaseRecord, metric: &str) -> f64 {
    record
        .scores
        .iter()
        .find(|s| s.metric_id == metric)
        .and_then(|s| s.score)
        .unwrap_or_else(|| panic!("{metric} not scored: {record:?}"))
}

#[tokio::test]
async fn multiple_choice_example_scores_by_hand() {
    let (run, cases) = run_example(include_str!("../../examples/multiple_choice.json")).await;
    assert_eq!(run.status, RunStatus::Completed);
    let by_case = |id: &str| {
        let record = cases.iter().find(|c| c.key.case_id == id).expect("case");
        (
            record.parsed.clone(),
            score(record, "builtin/choice_accuracy"),
        )
    };
    // "The answer is B, as a matter of fact." -> B (the explicit answer, not the "A" of "a").
    assert_eq!(by_case("capital"), (Some(Value::from("B")), 1.0));
    // "Answer: (c)" against {"choice": "C"}.
    assert_eq!(by_case("planet"), (Some(Value::from("C")), 1.0));
    // "I think it is D." -> D (the pronoun I is not among ABCD), expected A.
    assert_eq!(by_case("element"), (Some(Value::from("D")), 0.0));
    assert_eq!(by_case("bare"), (Some(Value::from("D")), 1.0));
    let accuracy = &run.aggregates.metrics["builtin/choice_accuracy"].overall;
    assert_eq!(accuracy.mean, Some(0.75));
}

#[tokio::test]
async fn translation_example_reports_sacrebleu_corpus_bleu() {
    let (run, cases) = run_example(include_str!("../../examples/translation.json")).await;
    assert_eq!(run.status, RunStatus::Completed);
    let bleu = &run.aggregates.metrics["builtin/bleu"];
    // sacrebleu test/test_bleu.py test_corpus_bleu: the README example (these three
    // hypotheses, two reference streams, default settings) scores 48.530827.
    let corpus = bleu.overall.corpus_bleu.expect("corpus BLEU");
    assert!((corpus * 100.0 - 48.530_827).abs() < 1e-6, "{corpus}");
    assert_eq!(
        bleu.by_dataset["sacrebleu-readme"].corpus_bleu,
        Some(corpus)
    );
    // Corpus BLEU is not the mean of sentence BLEU.
    assert!((bleu.overall.mean.unwrap() - corpus).abs() > 1e-3);
    // Other metrics carry no corpus score.
    assert_eq!(
        run.aggregates.metrics["builtin/rouge_l"]
            .overall
            .corpus_bleu,
        None
    );
    // The identical first sentence scores 1 on every metric.
    let s1 = cases.iter().find(|c| c.key.case_id == "s1").unwrap();
    for metric in [
        "builtin/bleu",
        "builtin/rouge_l",
        "builtin/levenshtein_ratio",
    ] {
        assert_eq!(score(s1, metric), 1.0, "{metric}");
    }
}

#[tokio::test]
async fn math_example_selects_the_best_sample_and_normalises_answers() {
    let (run, cases) = run_example(include_str!("../../examples/math.json")).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(cases.len(), 6);
    for record in &cases {
        let reduced = record.reduced.as_ref().expect("reduced");
        let scores: Vec<f64> = reduced.details["scores"]
            .as_array()
            .expect("best_of_n records the scores")
            .iter()
            .map(|s| s["score"].as_f64().expect("scored"))
            .collect();
        assert_eq!(scores.len(), 4);
        assert_eq!(reduced.details["selected_by"], "builtin/math_equivalence");
        let best = scores.iter().copied().fold(f64::MIN, f64::max);
        // The chosen candidate is the first with the best score, and the final metric
        // (same parser and metric) agrees with the selector's score of it.
        let first_best = scores.iter().position(|s| *s == best).unwrap();
        assert_eq!(
            reduced.candidate_id,
            record.candidates[first_best].candidate_id
        );
        assert_eq!(score(record, "builtin/math_equivalence"), best);
    }
    // 0.5 against \frac{1}{2}, 1000 against "1,000", 9 against \boxed{9}: with four
    // samples at a 30% error rate, each case has a correct sample for these seeds.
    let overall = &run.aggregates.metrics["builtin/math_equivalence"].overall;
    assert_eq!(overall.mean, Some(1.0));
}

#[test]
fn every_component_is_documented_and_listed() {
    let readme = include_str!("../../docs/reference/components.md");
    let openapi = include_str!("../../openapi.yaml");
    let registry = Registry::builtin();
    for kind in [
        ComponentKind::Generator,
        ComponentKind::Reducer,
        ComponentKind::Parser,
        ComponentKind::Metric,
        ComponentKind::Judge,
    ] {
        for name in registry.names(kind) {
            let quoted = format!("`{name}`");
            assert!(
                readme.contains(&quoted),
                "docs/reference/components.md does not document {name}"
            );
            assert!(
                openapi.contains(&quoted),
                "openapi.yaml does not list {name}"
            );
        }
    }
}

fn pass_at_k_experiment(pass_at_k: Value) -> Value {
    serde_json::json!({
        "generation": {
            "generator": {"name": "builtin/demo_generator", "params": {"wrong_rate": 0.5}},
            "candidate_policy": {"num_samples": 5}
        },
        "evaluation": {
            "parsers": [{"name": "builtin/json_extract", "params": {"path": "answer"}}],
            "metrics": [{"name": "builtin/exact_match", "id": "exact"}],
            "pass_at_k": pass_at_k
        },
        "datasets": [{"dataset_id": "d", "cases": [
            {"case_id": "a", "input": {"question": "2+2"}, "expected_output": "4"},
            {"case_id": "b", "input": {"question": "6 * 7"}, "expected_output": "42"},
            {"case_id": "c", "input": {"question": "10 - 3"}, "expected_output": "7"}
        ]}],
        "seeds": [1, 2, 3, 4]
    })
}

#[tokio::test]
async fn pass_at_k_per_case_and_in_aggregates() {
    let body = pass_at_k_experiment(serde_json::json!({"k": [1, 3], "metric": "exact"}));
    let (run, cases) = run_example(&body.to_string()).await;
    assert_eq!(run.status, RunStatus::Completed);
    // C(m, 3) for m = 0..=5, and C(5, 3) = 10.
    let choose3 = [0.0, 0.0, 0.0, 1.0, 4.0, 10.0];
    let mut sum1 = 0.0;
    let mut seen_c = std::collections::HashSet::new();
    for record in &cases {
        let expected = record.key.case_id.as_str();
        let answer = match expected {
            "a" => "4",
            "b" => "42",
            _ => "7",
        };
        // Counted here from the raw candidates, independently of the engine.
        let c = record
            .candidates
            .iter()
            .filter(|cand| cand.output["answer"] == answer)
            .count();
        seen_c.insert(c);
        let p1 = score(record, "pass@1");
        let p3 = score(record, "pass@3");
        assert!((p1 - c as f64 / 5.0).abs() < 1e-12, "{record:?}");
        assert!((p3 - (1.0 - choose3[5 - c] / 10.0)).abs() < 1e-12);
        let details = &record
            .scores
            .iter()
            .find(|s| s.metric_id == "pass@3")
            .unwrap()
            .details;
        assert_eq!(details["n"], 5);
        assert_eq!(details["c"], c);
        sum1 += p1;
    }
    // With half the answers wrong, cases differ in how many samples are right.
    assert!(seen_c.len() > 1, "{seen_c:?}");
    let mean1 = run.aggregates.metrics["pass@1"].overall.mean.unwrap();
    assert!((mean1 - sum1 / cases.len() as f64).abs() < 1e-12);
    assert_eq!(run.aggregates.metrics["pass@3"].overall.n, 12);
}

#[test]
fn pass_at_k_is_validated_with_paths() {
    let registry = Registry::builtin();
    for (pass_at_k, path, needle) in [
        (
            serde_json::json!({"k": [6]}),
            "evaluation.pass_at_k.k",
            "exceeds",
        ),
        (
            serde_json::json!({"k": [1, 1]}),
            "evaluation.pass_at_k.k",
            "distinct",
        ),
        (
            serde_json::json!({"k": [0]}),
            "evaluation.pass_at_k.k",
            "integer",
        ),
        (
            serde_json::json!({"k": [1], "metric": "nope"}),
            "evaluation.pass_at_k.metric",
            "no metric `nope`",
        ),
        (
            serde_json::json!({"k": [1], "extra": 1}),
            "evaluation.pass_at_k.extra",
            "unknown field",
        ),
    ] {
        let errors = themis::engine::parse_experiment(&pass_at_k_experiment(pass_at_k), &registry)
            .err()
            .expect("rejected");
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(needle)),
            "{path}: {errors:?}"
        );
    }
    // Without pass_at_k the canonical definition has no such key (run ids unchanged).
    let mut body = pass_at_k_experiment(Value::Null);
    body["evaluation"]
        .as_object_mut()
        .unwrap()
        .remove("pass_at_k");
    let request = themis::engine::parse_experiment(&body, &registry)
        .ok()
        .unwrap();
    assert!(
        request.experiment.canonical()["evaluation"]
            .get("pass_at_k")
            .is_none()
    );
}
