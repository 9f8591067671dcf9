//! `openai/judge` verdicts: parsed from JSON, score lines and pass/fail, and samples averaged
//! with a majority verdict.

use super::*;

#[tokio::test]
async fn judge_verdicts_are_parsed_from_json_score_lines_and_pass_fail() {
    let fake = FakeProvider::replying(|body, _| {
        let text = user_text(body);
        let case = text.lines().next().unwrap_or("").to_owned();
        let answer = match (body["model"].as_str().unwrap(), case.as_str()) {
            ("scale", "case json") => "{\"score\": 4, \"rationale\": \"nearly right\"}",
            ("scale", "case line") => "The sum is right.\nScore: 5",
            ("scale", _) => "I rather like this answer.",
            ("pf", "case json") => "{\"verdict\": \"FAIL\", \"rationale\": \"wrong\"}",
            ("pf", "case line") => "Checked the arithmetic.\nPASS",
            ("pf", _) => "FAIL",
            _ => return arithmetic(body),
        };
        Reply::Answer(vec![answer.into()])
    })
    .await;
    let judge = |id: &str, extra: Value| {
        json!({"name": "openai/judge", "id": id, "params": merge(merge(json!({
            "base_url": fake.base_url, "model": id,
            "rubric": "case {{ case_id }}\nQ: {{ input.question }} A: {{ output | tojson }}"
        }), &fast()), &extra)})
    };
    let cases = vec![
        json!({"case_id": "json", "input": {"question": "1 + 1"}, "expected_output": {"answer": "2"}}),
        json!({"case_id": "line", "input": {"question": "2 + 2"}, "expected_output": {"answer": "4"}}),
        json!({"case_id": "garbage", "input": {"question": "3 + 3"}, "expected_output": {"answer": "6"}}),
    ];
    let mut body = experiment(&fake, json!({}), cases);
    body["evaluation"]["judges"] = json!([
        judge("scale", json!({"scale": {"min": 1, "max": 5}})),
        judge("pf", json!({"pass_fail": true}))
    ]);
    let outcome = run(&engine(), &body).await;
    assert_eq!(outcome.run.status, RunStatus::Completed);
    let judgment = |case: &str, judge: &str| {
        let record = outcome
            .records
            .iter()
            .find(|r| r.key.case_id == case)
            .unwrap();
        record
            .judgments
            .iter()
            .find(|j| j.judge_id == judge)
            .unwrap()
            .clone()
    };

    let j = judgment("json", "scale");
    assert_eq!(j.score, Some(0.75));
    assert_eq!(j.passed, Some(true));
    assert_eq!(j.rationale.as_deref(), Some("nearly right"));
    assert_eq!(j.details["raw_score"], 4.0);
    assert_eq!(j.details["scale"], json!({"min": 1.0, "max": 5.0}));
    assert_eq!(j.usage.requests, 1);
    let j = judgment("json", "pf");
    assert_eq!((j.score, j.passed), (Some(0.0), Some(false)));
    assert_eq!(j.rationale.as_deref(), Some("wrong"));

    let j = judgment("line", "scale");
    assert_eq!((j.score, j.passed), (Some(1.0), Some(true)));
    assert_eq!(j.rationale.as_deref(), Some("The sum is right."));
    let j = judgment("line", "pf");
    assert_eq!((j.score, j.passed), (Some(1.0), Some(true)));

    let j = judgment("garbage", "scale");
    assert_eq!(j.score, None);
    let error = j.error.unwrap();
    assert!(
        error.contains("unparseable verdict") && error.contains("I rather like this answer."),
        "{error}"
    );
    // The other judge of the case still ran; the case failed at judging.
    assert_eq!(judgment("garbage", "pf").score, Some(0.0));
    let garbage = outcome
        .records
        .iter()
        .find(|r| r.key.case_id == "garbage")
        .unwrap();
    assert_eq!(garbage.status, CaseStatus::Failed);
    assert_eq!(garbage.error.as_ref().unwrap().stage, Stage::Judging);
    assert_eq!(outcome.run.aggregates.metrics["scale"].overall.failures, 1);
}

#[tokio::test]
async fn judge_samples_are_averaged_with_a_majority_verdict() {
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let fake = FakeProvider::replying(move |body, _| {
        if body["model"] != "judge" {
            return arithmetic(body);
        }
        // Two of the three samples pass.
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Answer(vec!["PASS".into()])
        } else {
            Reply::Answer(vec!["FAIL".into()])
        }
    })
    .await;
    let mut body = experiment(&fake, json!({}), cases(1));
    body["evaluation"]["judges"] = json!([{"name": "openai/judge", "params": merge(json!({
        "base_url": fake.base_url, "model": "judge", "pass_fail": true, "samples": 3,
        "rubric": "Is {{ output.answer }} the sum in {{ input.question }}?"
    }), &fast())}]);
    let outcome = run(&engine(), &body).await;
    let j = &outcome.records[0].judgments[0];
    assert!(j.error.is_none(), "{j:?}");
    assert!((j.score.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(j.passed, Some(true));
    assert_eq!(j.usage.requests, 3);
    assert_eq!(j.details["samples"].as_array().unwrap().len(), 3);
    // Three distinct seeds, the first being the case seed.
    let seeds: std::collections::HashSet<u64> = fake
        .bodies()
        .iter()
        .filter(|b| b["model"] == "judge")
        .map(|b| b["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 3);
    assert!(seeds.contains(&1));
}
