//! Provider-backed judges of the catalogue against a fake OpenAI-compatible endpoint:
//! `openai/pairwise` in both orders (position bias cancelled, ties, both verdicts
//! kept) and `openai/judge`'s default prompt layout (a rubric without `{{ output }}`
//! still shows the judge each case's answer, so cached verdicts never cross cases).

use crate::common;

use std::sync::Arc;

use common::fake_provider::FakeProvider;
use serde_json::{Value, json};
use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{CaseRecord, JudgmentRecord, RunStatus};
use themis::observe::Observers;
use themis::store::{CaseQuery, MemoryStore};

async fn run(body: &Value) -> Vec<CaseRecord> {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    );
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let record = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(record.status, RunStatus::Completed);
    let query = CaseQuery {
        limit: 100,
        ..CaseQuery::default()
    };
    engine.store().case_records(&run_id, &query).await.unwrap()
}

fn judgment<'r>(records: &'r [CaseRecord], case_id: &str) -> &'r JudgmentRecord {
    let record = records.iter().find(|r| r.key.case_id == case_id).unwrap();
    let j = &record.judgments[0];
    assert!(j.error.is_none(), "{j:?}");
    j
}

/// The text under a `## heading` of a prompt.
fn section<'p>(prompt: &'p str, heading: &str) -> &'p str {
    let start = prompt.find(&format!("## {heading}\n")).unwrap() + heading.len() + 4;
    let rest = &prompt[start..];
    rest.find("\n\n## ").map_or(rest, |end| &rest[..end]).trim()
}

/// The pairwise example with its provider pointed at `fake`.
fn pairwise_example(fake: &FakeProvider) -> Value {
    let mut body: Value =
        serde_json::from_str(include_str!("../../examples/pairwise.json")).unwrap();
    body["evaluation"]["judges"][0]["params"]["base_url"] = json!(fake.base_url);
    body
}

#[tokio::test]
async fn pairwise_runs_both_orders_and_scores_from_the_outputs_side() {
    // A fair judge: the response naming the right capital wins; equal ones tie.
    let fake = FakeProvider::answering(|prompt| {
        let right = ["Paris", "Canberra", "Tokyo"];
        let good = |s: &str| right.iter().any(|r| s.contains(r));
        let (a, b) = (section(prompt, "Response A"), section(prompt, "Response B"));
        let winner = match (good(a), good(b)) {
            (true, false) => "A",
            (false, true) => "B",
            _ => "tie",
        };
        json!({"winner": winner, "rationale": format!("{winner} names the capital")}).to_string()
    })
    .await;
    let records = run(&pairwise_example(&fake)).await;
    // France: both right -> tie twice -> 0.5, passes (as good as the reference).
    let france = judgment(&records, "france");
    assert_eq!(france.score, Some(0.5));
    assert_eq!(france.passed, Some(true));
    // Australia: "Sydney." loses in both orders -> 0, fails; verdicts agree.
    let australia = judgment(&records, "australia");
    assert_eq!(australia.score, Some(0.0));
    assert_eq!(australia.passed, Some(false));
    let verdicts = australia.details["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0]["order"], "output_first");
    assert_eq!(verdicts[0]["winner"], "B");
    assert_eq!(verdicts[1]["order"], "reference_first");
    assert_eq!(verdicts[1]["winner"], "A");
    assert_eq!(australia.details["consistent"], true);
    // Two requests per case, the output in each position once; criteria rendered.
    let prompts = fake.prompts();
    assert_eq!(prompts.len(), 6);
    let sydney: Vec<&String> = prompts.iter().filter(|p| p.contains("Sydney")).collect();
    assert_eq!(sydney.len(), 2);
    assert_ne!(
        section(sydney[0], "Response A"),
        section(sydney[1], "Response A")
    );
    assert!(
        sydney[0].starts_with(
            "Which response answers the question \"What is the capital of Australia?\""
        )
    );
}

#[tokio::test]
async fn pairwise_cancels_a_judge_that_always_prefers_the_first_response() {
    let fake = FakeProvider::answering(|_| "[[A]]".to_owned()).await;
    let records = run(&pairwise_example(&fake)).await;
    for case in ["france", "australia", "japan"] {
        let j = judgment(&records, case);
        // A win as A and a loss as B: the position bias averages out to a tie.
        assert_eq!(j.score, Some(0.5), "{case}");
        assert_eq!(j.details["consistent"], false);
    }
}

#[tokio::test]
async fn pairwise_reads_a_named_reference_field() {
    let fake = FakeProvider::answering(|prompt| {
        let winner = if section(prompt, "Response A").contains("baseline") {
            "B"
        } else {
            "A"
        };
        json!({"winner": winner}).to_string()
    })
    .await;
    let mut body = pairwise_example(&fake);
    body["evaluation"]["judges"][0]["params"]["reference"] = json!("metadata.baseline");
    for case in body["datasets"][0]["cases"].as_array_mut().unwrap() {
        case["metadata"] = json!({"baseline": "a baseline answer"});
    }
    let records = run(&body).await;
    // The output beats the baseline in both orders.
    assert_eq!(judgment(&records, "japan").score, Some(1.0));
    assert!(
        fake.prompts()
            .iter()
            .all(|p| p.contains("a baseline answer"))
    );
}

#[tokio::test]
async fn a_rubric_without_output_still_shows_each_answer() {
    // PASS only when the answer shown to the judge names the expected capital.
    let fake = FakeProvider::answering(|prompt| {
        let expected = section(prompt, "Expected output").trim_end_matches('.');
        if section(prompt, "Output to judge").contains(expected) {
            "PASS".to_owned()
        } else {
            "FAIL".to_owned()
        }
    })
    .await;
    let mut body = pairwise_example(&fake);
    body["evaluation"]["judges"] = json!([{"name": "openai/judge", "params": {
        "base_url": fake.base_url, "model": "judge", "pass_fail": true,
        "rubric": "Is the answer factually correct?"
    }}]);
    let records = run(&body).await;
    assert_eq!(judgment(&records, "france").passed, Some(true));
    assert_eq!(judgment(&records, "australia").passed, Some(false));
    assert_eq!(judgment(&records, "japan").passed, Some(true));
    let prompts = fake.prompts();
    assert_eq!(prompts.len(), 3);
    let distinct: std::collections::HashSet<&String> = prompts.iter().collect();
    assert_eq!(distinct.len(), 3, "each case gets its own prompt");
    let australia = prompts.iter().find(|p| p.contains("Australia")).unwrap();
    assert!(australia.starts_with("Is the answer factually correct?\n\n## Input\n"));
    assert_eq!(section(australia, "Output to judge"), "Sydney.");
    assert_eq!(section(australia, "Expected output"), "Canberra.");
}
