//! Reads whose work grows with a run's cases (bootstrap intervals, comparisons): at most
//! a fixed number run at once on this instance (more are refused as busy, never queued,
//! so a burst cannot pile up work), and the answers for finished runs are kept, keyed by
//! the runs (their id, creation and last event) and the options, so asking again costs
//! a lookup.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::compare::{CompareReport, compare_runs, load_pair};
use super::compare_cases::{ChangedCasesPage, RunsTable};
use super::{
    CaseFilter, Engine, EngineError, add_bootstrap_intervals, changed_cases, compare_many,
};
use crate::model::{Aggregates, RunId, RunRecord};

/// Answers kept per instance.
const CACHED: usize = 64;

/// How long a refused client is asked to wait (seconds).
pub const RETRY_AFTER_SECS: u64 = 1;

/// The default of [`super::EngineConfig::max_heavy_reads`]: one per core.
pub(super) fn default_limit() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// What identifies an answer: the kind of read, its options, and each run's identity
/// at a point where it can no longer change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReadKey(String);

impl ReadKey {
    /// The key of `kind` over `runs`; `None` while any run is still executing (its
    /// answer would change).
    pub(super) fn of(kind: &str, runs: &[&RunRecord]) -> Option<ReadKey> {
        let mut key = kind.to_owned();
        for run in runs {
            if !run.status.is_terminal() {
                return None;
            }
            key.push_str(&format!(
                " {}@{}.{}.{}",
                run.run_id,
                run.created_at.as_millis(),
                run.version,
                run.last_seq
            ));
        }
        Some(ReadKey(key))
    }
}

type Entry = (ReadKey, Arc<dyn Any + Send + Sync>);

/// The limit and the cache of one engine.
pub(super) struct HeavyReads {
    permits: Arc<Semaphore>,
    cache: Mutex<VecDeque<Entry>>,
}

impl HeavyReads {
    pub(super) fn new(limit: usize) -> Self {
        HeavyReads {
            permits: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))),
            cache: Mutex::new(VecDeque::with_capacity(CACHED)),
        }
    }

    /// A cached answer of type `T`, most recently used kept longest.
    pub(super) fn cached<T: Send + Sync + 'static>(&self, key: &ReadKey) -> Option<Arc<T>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let at = cache.iter().position(|(k, _)| k == key)?;
        let entry = cache.remove(at)?;
        let hit = entry.1.clone().downcast::<T>().ok();
        cache.push_front(entry);
        hit
    }

    pub(super) fn keep<T: Send + Sync + 'static>(&self, key: ReadKey, answer: Arc<T>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(k, _)| *k != key);
        cache.push_front((key, answer));
        cache.truncate(CACHED);
    }

    /// A slot to compute in, or busy when every slot is taken.
    pub(super) fn slot(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            EngineError::Busy(format!(
                "too many bootstrap intervals and comparisons are being computed on this \
                 instance; retry in {RETRY_AFTER_SECS} s"
            ))
        })
    }
}

impl Engine {
    /// `candidate` compared with `baseline`: kept once both runs are finished.
    pub async fn compare(
        &self,
        baseline: &RunId,
        candidate: &RunId,
    ) -> Result<Arc<CompareReport>, EngineError> {
        let heavy = &self.inner.heavy;
        let (b, c) = load_pair(self.store().as_ref(), baseline, candidate).await?;
        let key = ReadKey::of("compare", &[&b, &c]);
        if let Some(hit) = key.as_ref().and_then(|k| heavy.cached(k)) {
            return Ok(hit);
        }
        let _slot = heavy.slot()?;
        let report = Arc::new(compare_runs(self.store().as_ref(), baseline, candidate).await?);
        if let Some(key) = key {
            heavy.keep(key, report.clone());
        }
        Ok(report)
    }

    /// Fills the bootstrap intervals of `run`'s aggregates: kept once it is finished.
    pub async fn add_bootstrap(&self, run: &mut RunRecord) -> Result<(), EngineError> {
        let heavy = &self.inner.heavy;
        let key = ReadKey::of("bootstrap", &[run]);
        if let Some(hit) = key.as_ref().and_then(|k| heavy.cached::<Aggregates>(k)) {
            run.aggregates = Aggregates::clone(&hit);
            return Ok(());
        }
        let _slot = heavy.slot()?;
        add_bootstrap_intervals(self.store().as_ref(), run).await?;
        if let Some(key) = key {
            heavy.keep(key, Arc::new(run.aggregates.clone()));
        }
        Ok(())
    }

    /// Several runs against the first, within the instance's limit.
    pub(crate) async fn compare_many(&self, runs: &[RunId]) -> Result<RunsTable, EngineError> {
        let _slot = self.inner.heavy.slot()?;
        compare_many(self.store().as_ref(), runs).await
    }

    /// A page of the cases that changed, within the instance's limit.
    pub(crate) async fn changed_cases(
        &self,
        baseline: &RunId,
        candidate: &RunId,
        filter: CaseFilter,
        metric: Option<&str>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<ChangedCasesPage, EngineError> {
        let _slot = self.inner.heavy.slot()?;
        changed_cases(
            self.store().as_ref(),
            baseline,
            candidate,
            filter,
            metric,
            after,
            limit,
        )
        .await
    }
}
