//! The evaluation engine: experiment definitions, run ids, the five-stage pipeline,
//! lifecycle events and execution. No HTTP here; the API and the CLI both drive it.

mod agreement;
mod bootstrap;
mod compare;
mod compare_cases;
mod compare_cost;
mod compare_render;
mod concurrency;
mod datasets;
mod definition;
mod dry_run;
mod execute;
mod frames;
mod heavy;
mod hub;
mod live;
mod openai_evals;
mod pipeline;
mod removal;
mod rerun;
mod resolve;
mod results;
mod retry;
mod reviews;
mod run_id;
mod scheduler;
mod shared_limits;
mod spend;

use std::sync::Arc;
use std::time::Duration;

// The embedder's API: typed definitions, executing, following, comparing and
// identifying runs, datasets.
pub use crate::stats::{PairedStats, PairedTest};
pub use compare::{
    CompareReport, Comparison, Methods, MetricComparison, NotComparable, RunSide, compare_runs,
};
pub use compare_cost::{CostComparison, CostDelta};
pub use compare_render::{Regression, format_p_value, regressions, render_markdown, render_table};
pub use concurrency::ConcurrencyLimit;
pub use datasets::{CsvMapping, UploadFormat, UploadLimits};
pub use definition::{
    CandidatePolicy, ComponentRef, Dataset, DatasetCases, EvaluationConfig, Evaluators, Experiment,
    ExperimentRequest, FailurePolicy, GenerationConfig, MAX_BUDGET_USD, MAX_CONCURRENCY, PassAtK,
    PassAtKConfig, Pipeline, RuntimeOptions, StorageConfig, check_run_name, check_tag,
    parse_evaluation, parse_experiment,
};
pub use dry_run::{DryRun, MAX_EXACT_CASES};
pub use execute::RunControl;
pub use frames::{EncodedBatch, Frames};
pub use heavy::RETRY_AFTER_SECS;
pub use hub::{EventHub, LiveMessage, Subscription};
pub use openai_evals::{
    CreatedRun, EvalsConfig, Imported, Listing, MAX_FILE_BYTES, OpenAiEvals, Page as EvalsPage,
    collect_exported,
};
pub use pipeline::candidate_seed;
pub use rerun::retry_id;
pub use resolve::{RUN_ID_PREFIX, RunRef, resolve_run};
pub use run_id::{rejudge_id, run_id};
pub use scheduler::Scheduler;
pub use shared_limits::StoreLimits;
pub use spend::CaseEstimate;

// For the API and the server only.
pub(crate) use agreement::Agreement;
pub(crate) use bootstrap::add_bootstrap_intervals;
pub(crate) use compare::scores_of;
pub(crate) use compare_cases::{CaseFilter, changed_cases, compare_many};
pub(crate) use compare_render::render_runs_markdown;
pub(crate) use datasets::check_dataset_id;
pub(crate) use removal::retention_loop;
pub(crate) use results::{CaseDetail, ScoreBelow, case_detail, results_page};
pub(crate) use reviews::{
    MAX_COMMENT_BYTES, MAX_REVIEW_SCORES, ReviewInput, Reviewable, ReviewedRecord,
};
pub(crate) use run_id::rejudge_definition;

use crate::components::Registry;
use crate::model::{
    FieldError, Problems, RunId, RunKind, RunLabels, RunRecord, RunStatus, Sealer, Timestamp,
};
use crate::observe::{Instrumentation, Meter, NoInstrumentation, NoMeter, ObservationRequest};
use crate::store::{CreateOutcome, NewRun, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("run {0} not found")]
    RunNotFound(RunId),
    #[error("invalid definition")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but cannot be answered (e.g. two runs with nothing to compare).
    #[error("{0}")]
    Unprocessable(String),
    /// An uploaded dataset has problems (each names its line or field).
    #[error("the dataset is invalid")]
    InvalidDataset(Vec<FieldError>),
    #[error("{0}")]
    TooLarge(String),
    /// The request body could not be read to its end.
    #[error("{0}")]
    BadBody(String),
    /// The request body is not JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// A review's problems, each naming its field (`scores.<component id>`).
    #[error("the review is invalid")]
    InvalidReview(Vec<FieldError>),
    /// A part of a run that does not exist (a case without a record).
    #[error("{0}")]
    NotFound(String),
    /// A name given for a run that several runs have.
    #[error("{} runs are named `{name}`; give one of their ids", runs.len())]
    AmbiguousName { name: String, runs: Vec<RunId> },
    /// At a per-instance limit on heavy reads: retry shortly.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored run the engine can no longer use: its definition no longer parses or its
    /// chain of derived runs is broken (data of another version, or a bug).
    #[error("{0}")]
    Unusable(String),
    /// A component panicked on a case (a bug of the component); the message is the
    /// panic's.
    #[error("{0}")]
    Panicked(String),
    /// Cases could not be spooled to a temporary file (disk full, no temporary
    /// directory): a fault of this machine, not of the request.
    #[error("spooling the cases failed: {0}")]
    Spool(#[source] std::io::Error),
    /// Work handed to a blocking task did not finish (it panicked): a bug.
    #[error("a background computation failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Tuning of execution; none of it changes results.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Cases of one run executed at once unless the request says otherwise.
    pub default_concurrency: usize,
    /// Most case records written in one store transaction.
    pub max_batch: usize,
    /// How long the first finished case of a batch waits for others to join its commit
    /// (group commit): fewer, larger transactions for a little latency.
    pub commit_window: Duration,
    /// Least time between two `progress` events of a run.
    pub progress_interval: Duration,
    /// How often an executing run checks the store for a cancel request made elsewhere.
    pub cancel_poll_interval: Duration,
    /// This instance's name on the chunk leases it holds (unique per process).
    pub instance_id: String,
    /// How long a claimed chunk stays ours without a heartbeat; heartbeats run every
    /// third of it. After an instance dies, others take its chunks over this late.
    pub lease: Duration,
    /// How long store calls a run depends on are retried through transient errors
    /// (connection loss, failover, busy database) before the execution stops; the run
    /// stays `running` and resumes once the store is back.
    pub store_patience: Duration,
    /// Executions of a run that may end with the process dying (crash, abort, kill)
    /// before the run is quarantined as `failed` instead of executed again.
    pub max_attempts: u64,
    /// Seals what a client hands over for later use (its tracing headers) before it is
    /// stored; the operator's key (`THEMIS_SECRET_KEY`) or one of this process.
    pub sealer: Arc<Sealer>,
    /// Provider requests this instance sends at once across all runs (the outbound cap
    /// of its provider components), when it has one: a provider-backed run asking for
    /// more concurrency says that it gets this much.
    pub outbound_cap: Option<usize>,
    /// Bootstrap intervals and comparisons computed at once on this instance; more are
    /// refused as busy (`429`) until one ends.
    pub max_heavy_reads: usize,
    /// The operator's cap on what one run may spend, in USD (`--max-run-budget-usd`):
    /// a run's `budget_usd` cannot exceed it, and a run without one gets it.
    pub max_run_budget_usd: Option<f64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_concurrency: 16,
            max_batch: 512,
            // Each commit costs a transaction, a WAL append and a handful of statements
            // whatever its size: 25 ms lets ~30 cases share one at 1,200 cases/s.
            // At ~1,200 provider-backed cases/s, 50 ms makes ~60-case commits: ~6% less
            // CPU per case than 25 ms in the bench, for events ~12 ms later on average.
            commit_window: Duration::from_millis(50),
            progress_interval: Duration::from_millis(500),
            cancel_poll_interval: Duration::from_secs(1),
            instance_id: format!("themis-{}", uuid::Uuid::new_v4()),
            lease: Duration::from_secs(15),
            store_patience: Duration::from_secs(60),
            max_attempts: 5,
            sealer: Arc::new(Sealer::ephemeral()),
            outbound_cap: None,
            max_heavy_reads: heavy::default_limit(),
            max_run_budget_usd: None,
        }
    }
}

/// Creates and executes runs against one store.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    hub: Arc<EventHub>,
    config: EngineConfig,
    instrumentation: Arc<dyn Instrumentation>,
    /// The operator's metrics: cases, stages, commits, finished runs.
    meter: Arc<dyn Meter>,
    /// Runs executing here below the concurrency they asked for.
    limits: Arc<concurrency::LiveLimits>,
    /// The limit on, and the answers of, bootstrap intervals and comparisons.
    heavy: Arc<heavy::HeavyReads>,
    /// Summaries of the runs executing here, as of their last commit.
    live: Arc<live::LiveRuns>,
}

impl Engine {
    /// An engine that observes nothing unless its caller passes observers to
    /// [`Engine::execute`] (tests, embedders).
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>, config: EngineConfig) -> Self {
        Engine::instrumented(store, registry, config, NoInstrumentation::shared())
    }

    /// An engine whose runs are observed as they ask (their `tracing` and
    /// `subscribers`) by `instrumentation`, which the server builds (`telemetry`).
    pub fn instrumented(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        config: EngineConfig,
        instrumentation: Arc<dyn Instrumentation>,
    ) -> Self {
        Engine {
            inner: Arc::new(EngineInner {
                store,
                registry,
                hub: Arc::new(EventHub::new()),
                heavy: Arc::new(heavy::HeavyReads::new(config.max_heavy_reads)),
                config,
                instrumentation,
                meter: NoMeter::shared(),
                limits: Default::default(),
                live: Default::default(),
            }),
        }
    }

    /// The same engine reporting to `meter` (the server's metrics). Call it before the
    /// engine is shared: clones made earlier keep reporting to the previous meter.
    pub fn with_meter(self, meter: Arc<dyn Meter>) -> Self {
        let inner = &self.inner;
        Engine {
            inner: Arc::new(EngineInner {
                store: inner.store.clone(),
                registry: inner.registry.clone(),
                hub: inner.hub.clone(),
                config: inner.config.clone(),
                instrumentation: inner.instrumentation.clone(),
                heavy: inner.heavy.clone(),
                meter,
                limits: inner.limits.clone(),
                live: inner.live.clone(),
            }),
        }
    }

    pub fn meter(&self) -> &Arc<dyn Meter> {
        &self.inner.meter
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn hub(&self) -> &Arc<EventHub> {
        &self.inner.hub
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The concurrency `run_id` gets while this instance executes it, when less than it
    /// asked for.
    pub fn concurrency_limit(&self, run_id: &RunId) -> Option<ConcurrencyLimit> {
        self.inner.limits.get(run_id)
    }

    /// The summary (no definition or runtime) of a run this instance executes, as of
    /// its last commit here or the executor's last read of it (at most
    /// `cancel_poll_interval` old for changes made elsewhere); `None` for other runs.
    pub fn live_summary(&self, run_id: &RunId) -> Option<Arc<RunRecord>> {
        self.inner.live.get(run_id)
    }

    /// What observes this engine's runs (and knows what became of their exports).
    pub fn instrumentation(&self) -> &dyn Instrumentation {
        self.inner.instrumentation.as_ref()
    }

    /// `422` when a run's instrumentation asks for what the operator did not declare
    /// (a webhook secret not bound to the webhook's URL); checked before anything is
    /// stored.
    pub(crate) fn check_observation(&self, runtime: &RuntimeOptions) -> Result<(), EngineError> {
        let mut problems = Problems::default();
        self.instrumentation().check(
            ObservationRequest {
                tracing: runtime.tracing.as_ref(),
                subscribers: &runtime.subscribers,
                traceparent: None,
            },
            &mut problems,
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Invalid(problems.into_details()))
        }
    }

    /// A run's runtime options as the store keeps them: client secrets sealed.
    pub(crate) fn stored_runtime(&self, runtime: &RuntimeOptions) -> serde_json::Value {
        let mut stored = runtime.clone();
        if let Some(tracing) = &mut stored.tracing {
            *tracing = tracing.sealed(&self.config().sealer);
        }
        serde_json::to_value(&stored).unwrap_or_default()
    }

    /// Parses and validates an experiment request (every problem at once).
    pub fn parse(&self, body: &serde_json::Value) -> Result<ExperimentRequest, EngineError> {
        parse_experiment(body, &self.inner.registry).map_err(EngineError::Invalid)
    }

    /// Stores a queued rejudge of `source`: the new evaluation over its stored
    /// generations. The source must have finished.
    pub async fn submit_rejudge(
        &self,
        source: &RunId,
        evaluation: &EvaluationConfig,
        runtime: &RuntimeOptions,
    ) -> Result<CreateOutcome, EngineError> {
        self.check_observation(runtime)?;
        let parent = self
            .inner
            .store
            .get_run(source)
            .await?
            .ok_or_else(|| EngineError::RunNotFound(source.clone()))?;
        if !parent.status.is_terminal() {
            return Err(EngineError::Conflict(format!(
                "run {source} is {}; rejudge needs a finished run",
                parent.status.as_str()
            )));
        }
        // Generations live in the experiment run a rejudge chain started from.
        let generations = match parent.kind {
            RunKind::Experiment | RunKind::Retry => parent.run_id.clone(),
            RunKind::Rejudge => generation_source(&parent).ok_or_else(|| {
                EngineError::Store(StoreError::Corrupt(format!(
                    "rejudge {source} has no source_run_id"
                )))
            })?,
        };
        let source_record = if generations == parent.run_id {
            parent
        } else {
            self.inner
                .store
                .get_run_summary(&generations)
                .await?
                .ok_or_else(|| EngineError::RunNotFound(generations.clone()))?
        };
        let run = NewRun {
            run_id: rejudge_id(&generations, evaluation),
            kind: RunKind::Rejudge,
            parent_run_id: Some(generations.clone()),
            labels: RunLabels::default(),
            definition: rejudge_definition(&generations, evaluation),
            runtime: self.stored_runtime(runtime),
            // Every recorded case of the source, under the source's case indices.
            total_cases: source_record.progress.finished(),
            index_space: source_record.progress.total,
            datasets: Vec::new(),
            created_at: Timestamp::now(),
        };
        Ok(self.inner.store.create_run(run).await?)
    }

    /// Asks a run to stop: a queued run is cancelled at once, an executing one by its
    /// executor (which polls the flag and is also signalled directly by the scheduler).
    pub async fn request_cancel(
        &self,
        run_id: &RunId,
    ) -> Result<crate::store::CancelOutcome, EngineError> {
        let outcome = self.inner.store.request_cancel(run_id).await?;
        match &outcome {
            crate::store::CancelOutcome::Cancelled(record, events) => {
                self.inner.live.update(record);
                self.inner.hub.publish(run_id, events);
            }
            crate::store::CancelOutcome::Requested(record)
            | crate::store::CancelOutcome::AlreadyFinished(record) => {
                self.inner.live.update(record)
            }
        }
        Ok(outcome)
    }

    /// Runs left queued or running (after a restart), oldest first.
    pub async fn unfinished_runs(&self) -> Result<Vec<RunId>, EngineError> {
        Ok(self
            .inner
            .store
            .run_ids_with_status(&[RunStatus::Queued, RunStatus::Running])
            .await?)
    }
}

/// The experiment run whose generations a rejudge evaluates.
pub(crate) fn generation_source(record: &RunRecord) -> Option<RunId> {
    match record.kind {
        // A retry's records hold generations: reused ones and its own.
        RunKind::Experiment | RunKind::Retry => Some(record.run_id.clone()),
        RunKind::Rejudge => record
            .definition
            .get("source_run_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok()),
    }
}
