//! The case tasks of an execution: claimed work items, each run as a task of its own
//! (so cases use every core, not one task's worth) with bounded concurrency, each
//! contained so one case never takes the run down.

use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::budget::BudgetGuard;
use super::eager_cache::EagerCacheWrites;
use super::leases::LeaseSet;
use super::plan::{Evaluate, Plan, Work, WorkItem};
use super::recorder::{CaseNotes, ChunkCommit, RecorderMsg};
use super::slots::Slots;
use super::stop::FailureGuard;
use crate::components::ResponseCache;
use crate::engine::pipeline::{CaseInput, panic_message, panicked_case, rejudge_case, run_case};
use crate::engine::spend::estimate_case;
use crate::model::{Case, CaseRecord, RunId, Stage};
use crate::observe::{Observers, Span};
use crate::store::{CacheWrite, CachedResponse, CaseCommit, Store, StoreError};

/// What every case of one execution shares.
pub(super) struct Shared<'a> {
    pub(super) run_id: &'a RunId,
    pub(super) observers: &'a Observers,
    pub(super) run_span: &'a Arc<Span>,
    pub(super) failures: &'a FailureGuard,
    /// The response cache, unless the run turned it off.
    pub(super) cache: Option<Arc<dyn Store>>,
    pub(super) concurrency: usize,
    /// The run's slots this execution may fill now (its share of `concurrency`).
    pub(super) slots: &'a Arc<Slots>,
    /// The chunks this execution holds, renewed by its heartbeat.
    pub(super) leases: &'a Arc<LeaseSet>,
    /// The run's budget, when it has one.
    pub(super) budget: Option<&'a Arc<BudgetGuard>>,
}

/// One case's view of the response cache backed by the run's store. Lookups only read;
/// what the case stores (responses it received) and uses (other runs' responses) is
/// collected and committed with the case, in its group commit. A cache failure is a
/// miss, never an error.
struct CaseCache {
    store: Arc<dyn Store>,
    run_id: RunId,
    writes: Mutex<Vec<CacheWrite>>,
    /// Where responses that should outlive a crash of this case go.
    eager: Arc<EagerCacheWrites>,
}

impl CaseCache {
    fn writes(&self) -> std::sync::MutexGuard<'_, Vec<CacheWrite>> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A response this case stored itself, not committed yet.
    fn own(&self, wanted: &str) -> Option<Value> {
        self.writes().iter().find_map(|write| match write {
            CacheWrite::Put { key, value } if key == wanted => serde_json::from_str(value).ok(),
            _ => None,
        })
    }
}

#[async_trait::async_trait]
impl ResponseCache for CaseCache {
    async fn get(&self, key: &str) -> Option<Value> {
        if let Some(value) = self.own(key) {
            return Some(value);
        }
        match self.store.cache_lookup(key).await {
            Ok(Some(CachedResponse { value, owner })) => {
                // Another run's response: noted, so deleting that run keeps it. (One from
                // before runs could be deleted has no owner and is never deleted.)
                if owner.is_some_and(|owner| owner != self.run_id.as_str()) {
                    self.writes().push(CacheWrite::Used {
                        key: key.to_owned(),
                    });
                }
                Some(value)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "response cache read failed");
                None
            }
        }
    }

    async fn put(&self, key: &str, response: &str) {
        self.writes().push(CacheWrite::Put {
            key: key.to_owned(),
            value: response.to_owned(),
        });
    }

    /// Written with the next case commit of the execution (or on its own soon after):
    /// an agent's intermediate turn outlives a crash of its case.
    async fn put_now(&self, key: &str, response: &str) {
        self.eager.push(key, response);
    }
}

/// What a case task owns a share of (tasks outlive any borrow of the execution).
struct CaseEnv {
    run_id: RunId,
    observers: Observers,
    run_span: Arc<Span>,
    cache: Option<Arc<dyn Store>>,
    /// Responses waiting for a case commit to carry them (with `cache` only).
    eager: Option<Arc<EagerCacheWrites>>,
    plan: Arc<Plan>,
    /// Where provider notes go (the recorder).
    notes: mpsc::Sender<RecorderMsg>,
    budget: Option<Arc<BudgetGuard>>,
}

/// A finished case; `None` for a case abandoned because its chunk's lease was lost.
type CaseOutcome = Result<Option<ChunkCommit>, StoreError>;

/// The running cases of one pass. Take finished ones with [`CaseTasks::next`]; end with
/// [`CaseTasks::shutdown`], which aborts the cases still running and waits until they are
/// gone (nothing of theirs, the run span included, outlives the pass).
pub(super) struct CaseTasks {
    env: Arc<CaseEnv>,
    items: mpsc::Receiver<Result<WorkItem, StoreError>>,
    items_done: bool,
    running: JoinSet<CaseOutcome>,
    slots: Arc<Slots>,
}

impl CaseTasks {
    pub(super) fn new(
        shared: &Shared<'_>,
        plan: &Arc<Plan>,
        items: mpsc::Receiver<Result<WorkItem, StoreError>>,
        notes: &mpsc::Sender<RecorderMsg>,
    ) -> Self {
        let env = CaseEnv {
            run_id: shared.run_id.clone(),
            observers: shared.observers.clone(),
            run_span: Arc::clone(shared.run_span),
            cache: shared.cache.clone(),
            eager: shared
                .cache
                .as_ref()
                .map(|store| EagerCacheWrites::new(store, shared.run_id.clone())),
            plan: Arc::clone(plan),
            notes: notes.clone(),
            budget: shared.budget.cloned(),
        };
        CaseTasks {
            env: Arc::new(env),
            items,
            items_done: false,
            running: JoinSet::new(),
            slots: Arc::clone(shared.slots),
        }
    }

    /// The next finished case, in order of completion; `None` when the claimer has no
    /// more items and every case has finished. Cancel-safe: dropping the future loses
    /// neither an item nor a finished case.
    pub(super) async fn next(&mut self) -> Option<CaseOutcome> {
        loop {
            let limit = self.slots.note(self.running.len(), !self.items_done);
            // A run out of budget starts nothing more; the cases in flight finish.
            let exhausted = self
                .env
                .budget
                .as_ref()
                .is_some_and(|b| b.exhausted.is_cancelled());
            let room = !self.items_done && !exhausted && self.running.len() < limit;
            // Held back by the slots alone: wait for more to be granted.
            let full = !self.items_done && !exhausted && self.running.len() >= limit;
            tokio::select! {
                biased;
                // Slots were granted (or taken back): look again.
                () = self.slots.changed(), if full => {}
                item = self.items.recv(), if room => match item {
                    None => self.items_done = true,
                    Some(Err(e)) => return Some(Err(e)),
                    Some(Ok(item)) => {
                        self.running.spawn(run_item(Arc::clone(&self.env), item));
                    }
                },
                Some(joined) = self.running.join_next() => {
                    return Some(joined.unwrap_or_else(|e| {
                        // Panics are caught inside the task; only a bug gets here.
                        Err(StoreError::Corrupt(format!("a case task ended abnormally: {e}")))
                    }));
                }
                else => return None,
            }
        }
    }

    /// Aborts the cases still running and waits for them to end.
    pub(super) async fn shutdown(mut self) {
        self.running.shutdown().await;
    }
}

/// Runs one work item through the pipeline.
async fn run_item(env: Arc<CaseEnv>, item: WorkItem) -> CaseOutcome {
    let (case, source) = match item.work {
        // A retry's reused record: the same outcome, now this run's.
        Work::Reuse(record) => {
            let record = CaseRecord {
                run_id: env.run_id.clone(),
                ..record
            };
            let mut commit = CaseCommit::new(record, Vec::new());
            commit.reused = true;
            return Ok(Some(ChunkCommit {
                chunk_index: item.chunk_index,
                commit,
            }));
        }
        Work::Execute(case) => (case, None),
        Work::Rejudge { case, source } => (case, Some(source)),
    };
    // Before anything is called: the case's worst-case cost, reserved against the budget.
    let reserved_usd = match &env.budget {
        Some(budget) => {
            let amount = worst_case(&env.plan, &item.key.dataset_id, &case, source.as_ref()).await;
            if !budget.reserve(amount).await? {
                // Not started: the case stays unrecorded, for a retry to run.
                return Ok(None);
            }
            amount
        }
        None => 0.0,
    };
    let notes = CaseNotes {
        key: item.key.clone(),
        tx: env.notes.clone(),
    };
    let cache = env
        .cache
        .as_ref()
        .zip(env.eager.as_ref())
        .map(|(store, eager)| CaseCache {
            store: Arc::clone(store),
            run_id: env.run_id.clone(),
            writes: Mutex::default(),
            eager: Arc::clone(eager),
        });
    let input = CaseInput {
        run_id: &env.run_id,
        key: item.key,
        case: &case,
        observers: &env.observers,
        run_span: &env.run_span,
        cache: cache.as_ref().map(|cache| cache as &dyn ResponseCache),
        notes: &notes,
    };
    let plan = &env.plan;
    let evaluators = plan.evaluate.evaluators();
    let first_stage = match &plan.evaluate {
        Evaluate::Experiment { .. } => Stage::Generation,
        Evaluate::Rejudge { .. } => Stage::Parsing,
    };
    let work = async {
        match (&source, &plan.evaluate) {
            (Some(source), Evaluate::Rejudge { evaluators, .. }) => {
                Ok(rejudge_case(&input, source, evaluators).await)
            }
            (
                _,
                Evaluate::Experiment {
                    generation,
                    pipeline,
                },
            ) => Ok(run_case(
                &input,
                pipeline,
                &generation.generator.id,
                &generation.reducer.id,
                generation.candidate_policy.num_samples,
            )
            .await),
            (None, Evaluate::Rejudge { .. }) => Err(StoreError::Corrupt(
                "rejudge item without its source record".into(),
            )),
        }
    };
    // The pipeline contains panics of components per stage; this catches any other, so
    // one case can never take the run (or the process) down.
    let mut commit = tokio::select! {
        biased;
        () = item.lost.cancelled() => return Ok(None),
        outcome = std::panic::AssertUnwindSafe(work).catch_unwind() => match outcome {
            Ok(commit) => commit?,
            Err(payload) => panicked_case(
                &input,
                evaluators,
                first_stage,
                panic_message(payload.as_ref()),
            ),
        },
    };
    if let Some(cache) = cache {
        commit.cache = cache
            .writes
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        // Any case's commit carries what the execution's agents stored along the way.
        commit.cache.extend(cache.eager.take());
    }
    commit.reserved_usd = reserved_usd;
    Ok(Some(ChunkCommit {
        chunk_index: item.chunk_index,
        // Here, on this case's task, rather than in the commit that waits for the writer.
        commit: commit.encode()?,
    }))
}

/// The most a case may cost: its generator's samples and its judges (a rejudge: the
/// judges of the stored output).
async fn worst_case(
    plan: &Plan,
    dataset_id: &str,
    case: &Case,
    source: Option<&CaseRecord>,
) -> f64 {
    let estimate = match &plan.evaluate {
        Evaluate::Experiment {
            generation,
            pipeline,
        } => {
            let generator = (
                pipeline.generator.as_ref(),
                generation.candidate_policy.num_samples,
            );
            estimate_case(
                Some(generator),
                &pipeline.evaluators.judges,
                dataset_id,
                case,
                "",
            )
            .await
        }
        Evaluate::Rejudge { evaluators, .. } => {
            let output = source
                .and_then(|s| s.reduced.as_ref())
                .map(|r| r.output.to_string())
                .unwrap_or_default();
            estimate_case(None, &evaluators.judges, dataset_id, case, &output).await
        }
    };
    estimate.worst_case_usd()
}
