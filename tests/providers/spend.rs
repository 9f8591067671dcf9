//! What calls cost: the operator's price table (cached input at its own price), the
//! bundled table, a run's own `price` reported as the run's, and the run's spend split
//! into generation and judging, overall and by dataset.

use super::*;
use axum::response::IntoResponse;
use themis::components::PriceTable;
use themis::model::{EventKind, PriceSource};

/// Answers like [`arithmetic`] (judges with a score), reporting 1,000 prompt tokens of
/// which 400 were cached and 100 completion tokens.
fn with_cached_tokens(body: &Value) -> Reply {
    let content = if body["model"] == "judge" {
        "{\"score\": 5, \"rationale\": \"ok\"}".to_owned()
    } else {
        let Reply::Answer(choices) = arithmetic(body) else {
            unreachable!()
        };
        choices[0].clone()
    };
    let response = json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100,
                  "prompt_tokens_details": {"cached_tokens": 400}}
    });
    Reply::Raw(axum::Json(response).into_response())
}

fn priced_engine(fake: &FakeProvider, table: &str) -> Engine {
    let provider = ProviderSpec::new("fake", &fake.base_url).unwrap();
    let outbound = Outbound {
        providers: vec![provider],
        prices: Arc::new(PriceTable::parse(table, false).unwrap()),
        ..Outbound::local()
    };
    outbound.validate().unwrap();
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin_with(outbound)),
        EngineConfig::default(),
    )
}

const TABLE: &str = r#"
date = "2026-12-01"
[[price]]
provider = "fake"
model = "gen"
input_per_1m = 10.0
cached_input_per_1m = 5.0
output_per_1m = 40.0
batch_discount = 0.5

[[price]]
provider = "fake"
model = "*"
input_per_1m = 1.0
output_per_1m = 2.0
"#;

#[tokio::test]
async fn the_operator_table_prices_calls_and_the_run_splits_generation_from_judging() {
    let fake = FakeProvider::replying(|body, _| with_cached_tokens(body)).await;
    let engine = priced_engine(&fake, TABLE);
    let mut body = judged_experiment(&fake, false);
    body["datasets"] = json!([
        {"dataset_id": "a", "cases": cases(2)},
        {"dataset_id": "b", "cases": cases(1)}
    ]);
    let outcome = run(&engine, &body).await;
    assert!(outcome.failed().is_empty(), "{:?}", outcome.records);
    // gen: 600 × $10 + 400 × $5 + 100 × $40 per 1M = $0.012 a call.
    // judge (the `*` row): 1000 × $1 + 100 × $2 per 1M = $0.0012 a call.
    let record = &outcome.records[0];
    let candidate = &record.candidates[0].usage;
    assert_eq!(candidate.cost_usd, 0.012);
    assert_eq!(candidate.cached_prompt_tokens, 400);
    assert_eq!(candidate.price_source, Some(PriceSource::Operator));
    assert_eq!(record.judgments[0].usage.cost_usd, 0.0012);
    assert_eq!(record.usage.cost_usd, 0.0132);

    let spend = &outcome.run.aggregates.spend;
    assert_eq!(spend.total.generation.cost_usd, 0.036);
    assert_eq!(spend.total.judging.cost_usd, 0.0036);
    assert_eq!(spend.total.cost_usd, 0.0396);
    assert_eq!(spend.total.generation.requests, 3);
    assert_eq!(spend.by_dataset["a"].cost_usd, 0.0264);
    assert_eq!(spend.by_dataset["b"].cost_usd, 0.0132);
    assert_eq!(outcome.run.usage.cost_usd, 0.0396);
    assert_eq!(outcome.run.usage.price_source, Some(PriceSource::Operator));
}

#[tokio::test]
async fn a_runs_own_price_wins_and_is_reported_as_the_runs() {
    let fake = FakeProvider::replying(|body, _| with_cached_tokens(body)).await;
    let engine = priced_engine(&fake, TABLE);
    let mut body = judged_experiment(&fake, false);
    body["generation"]["generator"]["params"]["price"] =
        json!({"prompt_per_1k": 0.001, "completion_per_1k": 0.002});
    let outcome = run(&engine, &body).await;
    let record = &outcome.records[0];
    // The run's price has no cached rate: 1000 × $1 + 100 × $2 per 1M.
    assert_eq!(record.candidates[0].usage.cost_usd, 0.0012);
    assert_eq!(
        record.candidates[0].usage.price_source,
        Some(PriceSource::Run)
    );
    assert_eq!(
        record.judgments[0].usage.price_source,
        Some(PriceSource::Operator)
    );
    assert_eq!(outcome.run.usage.price_source, Some(PriceSource::Mixed));
}

#[tokio::test]
async fn unpriced_models_cost_nothing_and_say_no_source() {
    let fake = FakeProvider::replying(|body, _| with_cached_tokens(body)).await;
    let engine = priced_engine(&fake, "defaults = false");
    let outcome = run(&engine, &judged_experiment(&fake, false)).await;
    assert_eq!(outcome.run.usage.cost_usd, 0.0);
    assert_eq!(outcome.run.usage.price_source, None);
    assert_eq!(outcome.run.aggregates.spend.total.cost_usd, 0.0);
    assert_eq!(outcome.run.usage.cached_prompt_tokens, 1600);
}

// ---------------------------------------------------------------------------------
// Budgets

/// 10 prompt and 100 completion tokens per answer: at $1 and $1,000 per 1M tokens, a
/// case costs $0.10001; with `max_tokens` 100 its worst case is $0.1 plus its prompt.
fn hundred_tokens(body: &Value) -> Reply {
    let Reply::Answer(choices) = arithmetic(body) else {
        unreachable!()
    };
    let response = json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": choices[0]}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 100}
    });
    Reply::Raw(axum::Json(response).into_response())
}

const EXPENSIVE: &str = r#"
[[price]]
provider = "fake"
model = "gen"
input_per_1m = 1.0
output_per_1m = 1000.0
"#;

fn budgeted(fake: &FakeProvider, budget: f64, concurrency: u64) -> Value {
    let mut body = experiment(fake, json!({"max_tokens": 100}), cases(10));
    body["budget_usd"] = json!(budget);
    body["concurrency"] = json!(concurrency);
    body
}

#[tokio::test]
async fn a_budget_stops_the_run_at_the_case_that_would_pass_it_and_a_retry_continues() {
    let fake = FakeProvider::replying(|body, _| hundred_tokens(body)).await;
    let engine = priced_engine(&fake, EXPENSIVE);
    let outcome = run(&engine, &budgeted(&fake, 0.35, 1)).await;
    // Three cases fit ($0.30003 spent); the fourth's worst case ($0.1 and its prompt)
    // would pass $0.35.
    assert_eq!(outcome.run.status, RunStatus::Failed);
    assert_eq!(outcome.records.len(), 3, "{:?}", outcome.records);
    assert_eq!(fake.hits(), 3);
    let error = outcome.run.error.clone().unwrap_or_default();
    assert!(error.starts_with("budget exhausted"), "{error}");
    let spend = &outcome.run.aggregates.spend;
    assert_eq!(spend.total.cost_usd, 0.30003);
    assert_eq!(spend.budget_usd, Some(0.35));
    assert_eq!(
        spend.reserved_usd, 0.0,
        "nothing is reserved once the run ended"
    );
    let exhausted = outcome.events_of("budget_exhausted");
    assert_eq!(exhausted.len(), 1);
    let EventKind::BudgetExhausted {
        budget_usd,
        spent_usd,
        reserved_usd,
        next_case_usd,
    } = exhausted[0].kind
    else {
        panic!("{:?}", exhausted[0]);
    };
    // The third case may still have been on its way to the store: spent or reserved.
    assert_eq!(budget_usd, 0.35);
    let held = spent_usd + reserved_usd;
    assert!(held > 0.3 && held < 0.301, "{spent_usd} + {reserved_usd}");
    assert!(
        next_case_usd > 0.1 && next_case_usd < 0.101,
        "{next_case_usd}"
    );
    let last = outcome.events.last().unwrap();
    assert_eq!(last.event_type(), "run_failed");

    // A retry with a budget for the rest runs the seven cases never started ($0.70007);
    // the three recorded ones are reused, not paid again, and not counted against it.
    let retry = engine
        .submit_retry_with_budget(&outcome.run.run_id, None, Some(0.75))
        .await
        .unwrap()
        .into_record()
        .run_id;
    let retried = engine
        .execute(&retry, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(retried.status, RunStatus::Completed, "{:?}", retried.error);
    assert_eq!(retried.progress.completed, 10);
    assert_eq!(fake.hits(), 10, "every case was paid for once");
    assert_eq!(retried.aggregates.spend.total.cost_usd, 1.0001);
    assert_eq!(retried.aggregates.spend.reused_usd, 0.30003);
}

#[tokio::test]
async fn cases_in_flight_finish_and_spend_stays_within_the_budget() {
    let fake =
        FakeProvider::start_with(Duration::from_millis(50), |body, _| hundred_tokens(body)).await;
    let engine = priced_engine(&fake, EXPENSIVE);
    let outcome = run(&engine, &budgeted(&fake, 0.35, 4)).await;
    assert_eq!(outcome.run.status, RunStatus::Failed);
    // Three reservations fit at once; every case that started was recorded.
    assert_eq!(outcome.records.len(), 3);
    assert_eq!(fake.hits(), 3);
    assert!(outcome.run.aggregates.spend.total.cost_usd <= 0.35);
}

#[tokio::test]
async fn the_operators_cap_bounds_every_runs_budget() {
    let fake = FakeProvider::replying(|body, _| hundred_tokens(body)).await;
    let provider = ProviderSpec::new("fake", &fake.base_url).unwrap();
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Registry::builtin_with(Outbound {
            providers: vec![provider],
            prices: Arc::new(PriceTable::parse(EXPENSIVE, false).unwrap()),
            ..Outbound::local()
        })),
        EngineConfig {
            max_run_budget_usd: Some(0.25),
            ..EngineConfig::default()
        },
    );
    // Its own budget is larger than the cap: the cap applies.
    let outcome = run(&engine, &budgeted(&fake, 5.0, 1)).await;
    assert_eq!(outcome.records.len(), 2);
    assert_eq!(outcome.run.aggregates.spend.budget_usd, Some(0.25));
    // Without a budget of its own, a run gets the cap.
    let mut body = budgeted(&fake, 1.0, 1);
    body.as_object_mut().unwrap().remove("budget_usd");
    body["seeds"] = json!([2]);
    let outcome = run(&engine, &body).await;
    assert_eq!(outcome.records.len(), 2);
}

#[tokio::test]
async fn a_budget_must_be_a_positive_number() {
    let fake = FakeProvider::replying(|body, _| hundred_tokens(body)).await;
    let engine = priced_engine(&fake, EXPENSIVE);
    for bad in [json!(0), json!(-1), json!("5"), json!(1e12)] {
        let mut body = budgeted(&fake, 1.0, 1);
        body["budget_usd"] = bad.clone();
        let Err(themis::engine::EngineError::Invalid(errors)) = engine.parse(&body) else {
            panic!("{bad} accepted");
        };
        assert_eq!(errors[0].path, "budget_usd", "{errors:?}");
    }
}

#[tokio::test]
async fn a_comparison_puts_the_cost_delta_beside_the_score_delta() {
    let fake = FakeProvider::replying(|body, _| with_cached_tokens(body)).await;
    let engine = priced_engine(&fake, TABLE);
    let baseline = run(&engine, &judged_experiment(&fake, false)).await;
    // The same cases with a cheaper generator price of the run's own.
    let mut body = judged_experiment(&fake, false);
    body["generation"]["generator"]["params"]["price"] =
        json!({"prompt_per_1k": 0.001, "completion_per_1k": 0.002});
    // Without the response cache, which would answer every request for free.
    body["cache"] = json!(false);
    let candidate = run(&engine, &body).await;
    let report = themis::engine::compare_runs(
        engine.store().as_ref(),
        &baseline.run.run_id,
        &candidate.run.run_id,
    )
    .await
    .unwrap();
    // Generation: 2 cases at $0.012 against 2 at $0.0012; judging the same.
    let cost = &report.cost;
    assert_eq!(
        (cost.total.baseline_usd, cost.total.candidate_usd),
        (0.0264, 0.0048)
    );
    assert_eq!(cost.total.delta_usd, -0.0216);
    assert_eq!(cost.generation.delta_usd, -0.0216);
    assert_eq!(cost.judging.delta_usd, 0.0);
    assert_eq!(cost.by_dataset["d"].delta_usd, -0.0216);
    let table = themis::engine::render_table(&report);
    assert!(table.contains("delta -0.021600 USD"), "{table}");
}

#[tokio::test]
async fn a_dry_run_counts_pairwise_orders_and_panel_members() {
    let fake = FakeProvider::replying(|body, _| with_cached_tokens(body)).await;
    let engine = priced_engine(&fake, TABLE);
    let mut body = experiment(&fake, json!({"max_tokens": 10}), cases(3));
    let judge = |model: &str| {
        json!({"name": "openai/judge", "id": format!("judge-{model}"), "params": {
            "base_url": fake.base_url, "model": model, "rubric": "Right?", "max_tokens": 5}})
    };
    body["evaluation"]["judges"] = json!([
        {"name": "openai/pairwise", "params": {"base_url": fake.base_url, "model": "judge", "max_tokens": 5}},
        {"name": "builtin/panel", "params": {"judges": [judge("a"), judge("b")]}}
    ]);
    let request = engine.parse(&body).expect("valid");
    let estimate = engine.dry_run(&request, Vec::new()).await.unwrap();
    // Three cases: the pairwise judge asks twice each, the panel's two members once.
    assert_eq!(estimate.judges["openai/pairwise"].calls, 6);
    assert_eq!(estimate.judges["builtin/panel"].calls, 6);
    assert_eq!(estimate.judging.calls, 12);
    assert_eq!(estimate.judging.completion_tokens, 12 * 5);
    // Each judge sees the generator's 10-token allowance as the output.
    assert!(estimate.judges["openai/pairwise"].prompt_tokens > 6 * 10);
    assert_eq!(estimate.generation.calls, 3);
    assert_eq!(fake.hits(), 0);
}
