//! The component catalogue end to end: each example experiment of a family runs offline
//! through the engine with hand-worked expected values, and every registered component
//! is documented in the README and listed in the OpenAPI document.

use std::sync::Arc;

use serde_json::Value;
use themis::components::{ComponentKind, Registry};
use themis::engine::{Engine, EngineConfig, Observers, RunControl};
use themis::model::{CaseRecord, RunRecord, RunStatus};
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
    let (run, cases) = run_example(include_str!("../examples/multiple_choice.json")).await;
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
    let (run, cases) = run_example(include_str!("../examples/translation.json")).await;
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
    let (run, cases) = run_example(include_str!("../examples/math.json")).await;
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
    let readme = include_str!("../README.md");
    let openapi = include_str!("../openapi.yaml");
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
            assert!(readme.contains(&quoted), "README does not document {name}");
            assert!(
                openapi.contains(&quoted),
                "openapi.yaml does not list {name}"
            );
        }
    }
}
