//! The engine end to end on the memory store: the seed scenario, run ids, validation,
//! determinism, cancellation, resume and rejudge.

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, EngineError, RunControl};
use themis::model::{Case, CaseRecord, CaseStatus, RunEvent, RunId, RunRecord, RunStatus, Stage};
use themis::observe::{LifecycleSubscriber, NoopTracer, Observers, SpanStatus, StageContext};
use themis::store::{CaseQuery, MemoryStore};
use themis::telemetry::RecordingTracer;

use common::{CallCounter, counting_experiment, registry_with_counter, seed_example};

fn engine_with(registry: Registry) -> Engine {
    Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(registry),
        EngineConfig::default(),
    )
}

async fn submit_and_run(engine: &Engine, body: &Value, observers: Observers) -> RunRecord {
    let request = engine.parse(body).expect("valid definition");
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    engine
        .execute(&run_id, observers, RunControl::default())
        .await
        .unwrap()
}

async fn records(engine: &Engine, run_id: &RunId) -> Vec<CaseRecord> {
    let query = CaseQuery {
        limit: 100_000,
        ..CaseQuery::default()
    };
    engine.store().case_records(run_id, &query).await.unwrap()
}

/// Polls the store until at least `n` cases of the run are recorded (deadline 30 s).
async fn wait_recorded(engine: &Engine, run_id: &RunId, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = engine.store().get_run_summary(run_id).await.unwrap();
        if run.is_some_and(|r| r.progress.finished() >= n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} cases never recorded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn events(engine: &Engine, run_id: &RunId) -> Vec<RunEvent> {
    engine
        .store()
        .events_after(run_id, 0, 1_000_000)
        .await
        .unwrap()
}

/// Like the framework documentation's `RecordingSubscriber`.
#[derive(Default)]
struct RecordingSubscriber {
    calls: Mutex<Vec<String>>,
}

impl LifecycleSubscriber for RecordingSubscriber {
    fn before_generate(&self, case: &Case, _ctx: StageContext<'_>) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("before_generate:{}", case.case_id));
    }

    fn on_event(&self, event: &RunEvent) {
        self.calls
            .lock()
            .unwrap()
            .push(event.event_type().to_owned());
    }
}

#[tokio::test]
async fn seed_scenario_is_observed_and_instrumentation_never_changes_the_run() {
    let engine = engine_with(Registry::builtin());
    let subscriber = Arc::new(RecordingSubscriber::default());
    let tracer = Arc::new(RecordingTracer::new());
    let observed = submit_and_run(
        &engine,
        &seed_example(),
        Observers::new(vec![subscriber.clone()], tracer.clone()),
    )
    .await;

    assert_eq!(observed.status, RunStatus::Completed);
    assert_eq!(
        observed.aggregates.metrics["builtin/exact_match"]
            .overall
            .mean,
        Some(1.0)
    );
    let calls = subscriber.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "run_started",
            "before_generate:case-1",
            "case_started",
            "generation_completed",
            "reduction_completed",
            "parse_completed",
            "score_completed",
            "case_completed",
            "progress",
            "run_completed",
        ]
    );
    let spans = tracer.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "run",
            "case",
            "generation",
            "reduction",
            "parsing",
            "scoring",
            "judging"
        ]
    );
    assert!(
        spans.iter().all(|s| s.status == Some(SpanStatus::Ok)),
        "{spans:?}"
    );
    // Stage spans are children of the case span, which is a child of the run span.
    assert_eq!(spans[1].parent, Some(spans[0].id));
    assert!(spans[2..].iter().all(|s| s.parent == Some(spans[1].id)));
    let generation = &spans[2];
    for attribute in ["run_id", "case_id", "dataset_id", "seed", "component"] {
        assert!(
            generation.attributes.iter().any(|(k, _)| *k == attribute),
            "missing {attribute}"
        );
    }

    // Same definition, other instrumentation (and a runtime-only field): same run id,
    // identical results.
    let mut body = seed_example();
    body["tracing"] = json!({"provider": "log"});
    body["concurrency"] = json!(3);
    let other = engine_with(Registry::builtin());
    let plain = submit_and_run(
        &other,
        &body,
        Observers::new(Vec::new(), Arc::new(NoopTracer)),
    )
    .await;
    assert_eq!(plain.run_id, observed.run_id);
    assert_eq!(plain.aggregates, observed.aggregates);
    let strip = |mut rs: Vec<CaseRecord>| {
        for r in &mut rs {
            normalize_timing(r);
        }
        rs
    };
    assert_eq!(
        strip(records(&other, &plain.run_id).await),
        strip(records(&engine, &observed.run_id).await)
    );
}

fn normalize_timing(record: &mut CaseRecord) {
    record.started_at = themis::model::Timestamp::from_millis(0);
    record.finished_at = record.started_at;
    for stage in &mut record.stages {
        stage.duration_ms = 0;
    }
    for candidate in &mut record.candidates {
        candidate.duration_ms = 0;
    }
}

#[test]
fn run_id_depends_on_the_logical_definition_only() {
    let registry = Registry::builtin();
    let id = |body: &Value| {
        let request = themis::engine::parse_experiment(body, &registry).unwrap();
        themis::engine::run_id(&request.experiment)
    };
    let base = seed_example();
    let base_id = id(&base);

    // Key order and whitespace.
    let text = serde_json::to_string_pretty(&base).unwrap();
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(id(&reparsed), base_id);
    let reordered: Value = serde_json::from_str(
        r#"{"seeds":[7],"datasets":[{"cases":[{"expected_output":{"answer":"4"},"input":{"question":"2+2"},"case_id":"case-1"}],"dataset_id":"sample"}],
            "evaluation":{"judges":[],"parsers":["builtin/json_identity"],"metrics":["builtin/exact_match"]},
            "generation":{"reducer":"builtin/majority_vote","candidate_policy":{"num_samples":1},"generator":"builtin/demo_generator"}}"#,
    )
    .unwrap();
    assert_eq!(id(&reordered), base_id);
    // A plain name and the object form with empty params are the same component.
    let mut object_form = base.clone();
    object_form["generation"]["generator"] =
        json!({"name": "builtin/demo_generator", "params": {}});
    assert_eq!(id(&object_form), base_id);
    // Runtime-only fields never count.
    let mut runtime = base.clone();
    runtime["tracing"] = json!({"provider": "log"});
    runtime["concurrency"] = json!(64);
    runtime["subscribers"] = json!([]);
    runtime["storage"] = json!({"store": "memory"});
    assert_eq!(id(&runtime), base_id);

    // Any logical change does.
    type Change = Box<dyn Fn(&mut Value)>;
    let changes: Vec<Change> = vec![
        Box::new(|v| v["seeds"] = json!([8])),
        Box::new(|v| v["datasets"][0]["cases"][0]["input"]["question"] = json!("2+3")),
        Box::new(|v| v["datasets"][0]["cases"][0]["expected_output"] = json!({"answer": "5"})),
        Box::new(|v| v["datasets"][0]["dataset_id"] = json!("other")),
        Box::new(|v| {
            v["generation"]["generator"] =
                json!({"name": "builtin/demo_generator", "params": {"delay_ms": 1}})
        }),
        Box::new(|v| v["generation"]["candidate_policy"]["num_samples"] = json!(3)),
        Box::new(|v| v["generation"]["reducer"] = json!("builtin/first")),
        Box::new(|v| v["evaluation"]["metrics"] = json!(["builtin/token_f1"])),
        Box::new(|v| v["evaluation"]["parsers"] = json!([])),
    ];
    let mut seen = HashSet::from([base_id]);
    for change in changes {
        let mut changed = base.clone();
        change(&mut changed);
        assert!(
            seen.insert(id(&changed)),
            "change did not alter the run id: {changed}"
        );
    }
}

#[test]
fn invalid_definitions_report_every_problem_with_its_path() {
    let registry = Registry::builtin();
    let body = json!({
        "generation": {
            "generator": {"name": "builtin/demo_generator", "params": {"delay_ms": -1, "colour": "red"}},
            "candidate_policy": {"num_samples": 0}
        },
        "evaluation": {"metrics": ["builtin/nope", {"name": "builtin/regex_match", "params": {"pattern": "("}}]},
        "datasets": [
            {"dataset_id": "a", "cases": [{"case_id": "x", "input": 1}, {"case_id": "x", "input": 2}]},
            {"dataset_id": "b", "cases": []}
        ],
        "seeds": [],
        "extra": true
    });
    let Err(errors) = themis::engine::parse_experiment(&body, &registry) else {
        panic!("accepted an invalid definition")
    };
    let paths: HashSet<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "extra",
        "generation.generator.params.delay_ms",
        "generation.generator.params.colour",
        "generation.candidate_policy.num_samples",
        "evaluation.metrics[0]",
        "evaluation.metrics[1].params.pattern",
        "datasets[0].cases[1].case_id",
        "datasets[1].cases",
        "seeds",
    ] {
        assert!(
            paths.contains(expected),
            "no error at {expected}: {errors:?}"
        );
    }
    let unknown = errors
        .iter()
        .find(|e| e.path == "evaluation.metrics[0]")
        .unwrap();
    assert!(
        unknown.message.contains("builtin/exact_match"),
        "should list what exists: {}",
        unknown.message
    );

    for (body, path) in [
        (json!([]), ""),
        (
            json!({"generation": {"generator": "builtin/demo_generator", "candidate_policy": {"num_samples": 1_000_000}}, "evaluation": {}, "datasets": [{"dataset_id": "a", "cases": [{"case_id": "x", "input": 1}]}], "seeds": [1]}),
            "generation.candidate_policy.num_samples",
        ),
        (
            json!({"generation": {"generator": 5}, "evaluation": {}, "datasets": [], "seeds": [1.5]}),
            "seeds[0]",
        ),
    ] {
        let errors = themis::engine::parse_experiment(&body, &registry)
            .err()
            .expect("rejected");
        assert!(errors.iter().any(|e| e.path == path), "{path}: {errors:?}");
    }
}

#[tokio::test]
async fn results_are_identical_whatever_the_concurrency() {
    let body: Value = serde_json::from_str(include_str!("../../examples/arithmetic.json")).unwrap();
    let mut outcomes = Vec::new();
    for concurrency in [1, 4, 64] {
        let engine = engine_with(Registry::builtin());
        let mut body = body.clone();
        body["concurrency"] = json!(concurrency);
        let record = submit_and_run(&engine, &body, Observers::default()).await;
        let mut cases = records(&engine, &record.run_id).await;
        cases.iter_mut().for_each(normalize_timing);
        outcomes.push((
            record.run_id.clone(),
            record.aggregates.clone(),
            record.progress,
            cases,
        ));
    }
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]));
    let (_, aggregates, progress, cases) = &outcomes[0];
    assert_eq!(progress.total, 15);
    assert_eq!(cases.len(), 15);
    // Some generations fail by seed (error_rate), and they are counted, not fatal.
    assert!(progress.failed > 0 && progress.completed > 0);
    let failed = cases
        .iter()
        .find(|c| c.status == CaseStatus::Failed)
        .unwrap();
    assert_eq!(failed.error.as_ref().unwrap().stage, Stage::Generation);
    assert!(
        failed
            .scores
            .iter()
            .all(|s| s.score.is_none() && s.error.is_some())
    );
    let exact = &aggregates.metrics["exact"];
    assert_eq!(exact.overall.failures, progress.failed);
    assert_eq!(exact.overall.n, progress.completed);
    assert_eq!(exact.by_dataset.len(), 2);
    assert_eq!(
        exact.by_dataset.values().map(|d| d.n).sum::<u64>(),
        exact.overall.n
    );
}

#[tokio::test]
async fn cancel_stops_promptly_and_keeps_finished_cases() {
    let calls = CallCounter::default();
    let engine = engine_with(registry_with_counter(&calls));
    let mut body = counting_experiment(400, 20);
    body["concurrency"] = json!(4);
    let request = engine.parse(&body).unwrap();
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let control = RunControl::default();
    let cancel = control.cancel.clone();
    let task = tokio::spawn({
        let engine = engine.clone();
        let run_id = run_id.clone();
        async move { engine.execute(&run_id, Observers::default(), control).await }
    });
    wait_recorded(&engine, &run_id, 8).await;
    cancel.cancel();
    let record = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(record.status, RunStatus::Cancelled);
    let kept = records(&engine, &run_id).await;
    assert!(
        !kept.is_empty() && (kept.len() as u64) < 400,
        "kept {}",
        kept.len()
    );
    assert_eq!(record.progress.finished(), kept.len() as u64);
    let all = events(&engine, &run_id).await;
    assert_eq!(all.last().unwrap().event_type(), "run_cancelled");
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_redoing_finished_cases() {
    let calls = CallCounter::default();
    let engine = engine_with(registry_with_counter(&calls));
    let mut body = counting_experiment(300, 10);
    body["concurrency"] = json!(8);
    let request = engine.parse(&body).unwrap();
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;

    let control = RunControl::default();
    let interrupt = control.interrupt.clone();
    let first = tokio::spawn({
        let engine = engine.clone();
        let run_id = run_id.clone();
        async move { engine.execute(&run_id, Observers::default(), control).await }
    });
    wait_recorded(&engine, &run_id, 8).await;
    interrupt.cancel();
    let halfway = first.await.unwrap().unwrap();
    assert_eq!(halfway.status, RunStatus::Running);
    let done_before: HashSet<String> = records(&engine, &run_id)
        .await
        .into_iter()
        .map(|r| r.key.case_id)
        .collect();
    assert!(!done_before.is_empty() && done_before.len() < 300);

    let finished = engine
        .execute(&run_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(finished.status, RunStatus::Completed);
    let all = records(&engine, &run_id).await;
    assert_eq!(all.len(), 300);
    let per_case = calls.per_case();
    for case_id in &done_before {
        assert_eq!(per_case[case_id], 1, "{case_id} was generated again");
    }
    // Only cases in flight at the interruption may have been generated twice.
    assert!(calls.total() <= 300 + 8, "{} calls", calls.total());

    let all_events = events(&engine, &run_id).await;
    let seqs: Vec<u64> = all_events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=all_events.len() as u64).collect::<Vec<_>>());
    let started = all_events
        .iter()
        .filter(|e| e.event_type() == "case_started")
        .count();
    assert_eq!(
        started, 300,
        "every case starts exactly once in the event log"
    );
    let run_started: Vec<&RunEvent> = all_events
        .iter()
        .filter(|e| e.event_type() == "run_started")
        .collect();
    assert_eq!(run_started.len(), 2);
    assert_eq!(
        serde_json::to_value(run_started[1]).unwrap()["resumed"],
        true
    );
}

#[tokio::test]
async fn rejudge_reevaluates_stored_generations_without_generating() {
    let calls = CallCounter::default();
    let engine = engine_with(registry_with_counter(&calls));
    let original = submit_and_run(&engine, &counting_experiment(30, 0), Observers::default()).await;
    assert_eq!(calls.total(), 30);
    let before = original.aggregates.metrics["builtin/exact_match"]
        .overall
        .mean;

    let body =
        json!({"metrics": [{"name": "builtin/numeric_match", "params": {"tolerance": 2.0}}]});
    let (evaluation, _, runtime) =
        themis::engine::parse_evaluation(&body, engine.registry()).unwrap();
    let rejudge = engine
        .submit_rejudge(&original.run_id, &evaluation, &runtime)
        .await
        .unwrap();
    assert!(rejudge.was_created());
    let rejudge_id = rejudge.record().run_id.clone();
    assert_ne!(rejudge_id, original.run_id);
    assert_eq!(
        rejudge.record().parent_run_id.as_ref(),
        Some(&original.run_id)
    );
    let again = engine
        .submit_rejudge(&original.run_id, &evaluation, &runtime)
        .await
        .unwrap();
    assert!(!again.was_created(), "the same rejudge is the same run");

    let done = engine
        .execute(&rejudge_id, Observers::default(), RunControl::default())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(calls.total(), 30, "rejudge must not call the generator");
    // answers are i % 3, expected i % 2: |diff| <= 2 always
    let numeric = &done.aggregates.metrics["builtin/numeric_match"].overall;
    assert_eq!((numeric.n, numeric.mean), (30, Some(1.0)));
    assert!(!done.aggregates.metrics.contains_key("builtin/exact_match"));
    let source = engine
        .store()
        .get_run(&original.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        source.aggregates.metrics["builtin/exact_match"]
            .overall
            .mean,
        before
    );
    let rejudged = records(&engine, &rejudge_id).await;
    assert_eq!(rejudged.len(), 30);
    assert!(
        rejudged
            .iter()
            .all(|r| r.candidates.len() == 1 && r.reduced.is_some())
    );
    let types: HashSet<String> = events(&engine, &rejudge_id)
        .await
        .iter()
        .map(|e| e.event_type().to_owned())
        .collect();
    assert!(types.contains("score_completed") && !types.contains("generation_completed"));
}

#[tokio::test]
async fn rejudge_needs_a_finished_run() {
    let engine = engine_with(Registry::builtin());
    let request = engine.parse(&seed_example()).unwrap();
    let run_id = engine.submit(&request).await.unwrap().into_record().run_id;
    let (evaluation, _, runtime) = themis::engine::parse_evaluation(
        &json!({"metrics": ["builtin/token_f1"]}),
        engine.registry(),
    )
    .unwrap();
    let err = engine
        .submit_rejudge(&run_id, &evaluation, &runtime)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");
    let missing: RunId = "run_00000000000000000000000000000000".parse().unwrap();
    let err = engine
        .submit_rejudge(&missing, &evaluation, &runtime)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::RunNotFound(_)));
}

#[tokio::test]
async fn a_panicking_subscriber_never_affects_the_run() {
    struct Panics;
    impl LifecycleSubscriber for Panics {
        fn before_generate(&self, _case: &Case, _ctx: StageContext<'_>) {
            panic!("subscriber bug");
        }
        fn on_event(&self, _event: &RunEvent) {
            panic!("subscriber bug");
        }
    }
    let engine = engine_with(Registry::builtin());
    let record = submit_and_run(
        &engine,
        &seed_example(),
        Observers::new(vec![Arc::new(Panics)], Arc::new(NoopTracer)),
    )
    .await;
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(
        record.aggregates.metrics["builtin/exact_match"]
            .overall
            .mean,
        Some(1.0)
    );
}

#[tokio::test]
async fn majority_vote_over_samples_uses_derived_seeds() {
    let engine = engine_with(Registry::builtin());
    let mut body = seed_example();
    body["generation"]["generator"] =
        json!({"name": "builtin/demo_generator", "params": {"wrong_rate": 0.3}});
    body["generation"]["candidate_policy"]["num_samples"] = json!(9);
    let record = submit_and_run(&engine, &body, Observers::default()).await;
    let case = &records(&engine, &record.run_id).await[0];
    let seeds: HashSet<u64> = case.candidates.iter().map(|c| c.seed).collect();
    assert_eq!(seeds.len(), 9, "each candidate has its own seed");
    let outputs: HashSet<String> = case
        .candidates
        .iter()
        .map(|c| c.output.to_string())
        .collect();
    assert!(
        outputs.len() > 1,
        "wrong_rate should make some candidates differ"
    );
    assert_eq!(
        case.reduced.as_ref().unwrap().output,
        json!({"answer": "4"})
    );
    assert_eq!(case.reduced.as_ref().unwrap().source_candidate_ids.len(), 9);
}

#[tokio::test]
async fn a_failure_policy_stops_a_run_that_keeps_failing() {
    let engine = engine_with(Registry::builtin());
    let body = json!({
        "generation": {"generator": {"name": "builtin/demo_generator", "params": {"error_rate": 1.0, "delay_ms": 2}}},
        "evaluation": {"metrics": ["builtin/exact_match"]},
        "datasets": [{"dataset_id": "d", "cases": (0..400).map(|i| json!({"case_id": format!("c{i}"), "input": "1+1"})).collect::<Vec<_>>()}],
        "seeds": [1],
        "concurrency": 2,
        "failure_policy": {"max_ratio": 0.5, "min_cases": 10}
    });
    let record = submit_and_run(&engine, &body, Observers::default()).await;
    assert_eq!(record.status, RunStatus::Failed);
    assert!(
        record.error.as_deref().unwrap_or("").contains("max_ratio"),
        "{:?}",
        record.error
    );
    // Every case fails; the commit that reaches min_cases trips the policy and is the
    // last one (at most one batch of max_batch cases past the threshold).
    let progress = record.progress;
    assert_eq!(progress.failed, progress.finished(), "{progress:?}");
    assert!(
        (10..10 + EngineConfig::default().max_batch as u64).contains(&progress.finished()),
        "{progress:?}"
    );
    assert_eq!(
        record.error.as_deref(),
        Some(
            format!(
                "stopped: {0} of {0} finished cases failed, more than the failure policy's max_ratio 0.5",
                progress.failed
            )
            .as_str()
        ),
        "the error reports the counts the run ends with"
    );

    // The same definition without the policy has the same id: it is runtime-only.
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("failure_policy");
    let request = engine.parse(&plain).unwrap();
    assert_eq!(themis::engine::run_id(&request.experiment), record.run_id);
}

/// `test/busy`: holds its thread for a moment, as CPU-bound work does, and notes the
/// most calls inside at once.
struct BusyGenerator {
    inside: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl themis::components::Generator for BusyGenerator {
    async fn generate(
        &self,
        request: themis::components::GenerateRequest<'_>,
    ) -> Result<themis::components::Generation, themis::components::ComponentError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.inside.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        self.inside.fetch_sub(1, SeqCst);
        Ok(themis::components::Generation {
            output: request.case.input["answer"].clone(),
            raw_text: None,
            finish_reason: None,
            usage: themis::model::Usage::default(),
            transcript: None,
        })
    }
}

/// Cases are tasks of their own: CPU-bound cases of one run use every worker thread
/// instead of taking turns inside one task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_of_one_run_use_every_worker_thread() {
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registry = Registry::builtin();
    let (i, m) = (inside.clone(), most.clone());
    registry.register_generator("test/busy", "1", move |_| {
        Arc::new(BusyGenerator {
            inside: i.clone(),
            most: m.clone(),
        })
    });
    let mut body = counting_experiment(24, 0);
    body["generation"]["generator"] = json!("test/busy");
    body["concurrency"] = json!(8);
    let engine = engine_with(registry);
    let run = submit_and_run(&engine, &body, Observers::default()).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.progress.completed, 24);
    assert!(
        most.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "no two busy cases ever ran at once: the run's cases share one task"
    );
}
