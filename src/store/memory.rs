//! In-process store: for tests, the CLI's one-call evaluation and embedding.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::model::{
    AggregateState, CaseRecord, CaseStatus, DatasetUse, RunEvent, RunId, RunRecord, RunStatus,
};

use super::apply::{CancelStep, RunState, case_events};
use super::memory_datasets::MemoryDatasets;
use super::{
    CHUNK_SIZE, CacheWrite, CachedResponse, CancelOutcome, CaseQuery, Chunk, ChunkStatus,
    CommitBatch, CommitOutcome, CreateOutcome, NewRun, RunQuery, Store, StoreError, StoreResult,
    chunk_count,
};

#[derive(Default)]
pub struct MemoryStore {
    // Lock order, where several are held: runs, then datasets, then cache.
    pub(super) runs: Mutex<HashMap<RunId, MemoryRun>>,
    pub(super) cache: Mutex<HashMap<String, CacheEntry>>,
    pub(super) datasets: Mutex<MemoryDatasets>,
    /// The last `review_id` given out (under the runs lock).
    pub(super) last_review_id: std::sync::atomic::AtomicU64,
    /// Evals, eval runs and files of the OpenAI Evals API.
    pub(super) eval_objects: Mutex<super::memory_openai_evals::MemoryEvalObjects>,
}

/// A cached response, its owner (the run that stored it) and the other runs that used it.
pub(super) struct CacheEntry {
    pub(super) value: serde_json::Value,
    pub(super) owner: RunId,
    pub(super) users: std::collections::HashSet<RunId>,
}

pub(super) struct MemoryRun {
    state: RunState,
    cases: BTreeMap<u64, CaseRecord>,
    events: Vec<RunEvent>,
    chunks: Vec<ChunkLease>,
    index_space: u64,
    /// Executions begun and not ended (see [`Store::begin_attempt`]).
    attempts: u64,
    pub(super) datasets: Vec<DatasetUse>,
    /// Human reviews of the run's cases, oldest first.
    pub(super) reviews: Vec<crate::model::Review>,
}

impl MemoryRun {
    pub(super) fn record(&self) -> &RunRecord {
        &self.state.record
    }
}

#[derive(Default)]
struct ChunkLease {
    owner: Option<String>,
    expires_at: Option<Instant>,
    done: bool,
}

impl ChunkLease {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t > now)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn summary_of(record: &RunRecord) -> RunRecord {
    RunRecord {
        definition: serde_json::Value::Null,
        runtime: serde_json::Value::Null,
        ..record.clone()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_run(&self, mut run: NewRun) -> StoreResult<CreateOutcome> {
        let mut runs = self.runs.lock().await;
        if let Some(existing) = runs.get(&run.run_id) {
            return Ok(CreateOutcome::Existing(existing.state.record.clone()));
        }
        self.datasets.lock().await.check_uses(&run.datasets)?;
        let datasets = std::mem::take(&mut run.datasets);
        let index_space = run.index_space;
        let chunks = (0..chunk_count(index_space))
            .map(|_| ChunkLease::default())
            .collect();
        let record = run.into_record();
        runs.insert(
            record.run_id.clone(),
            MemoryRun {
                state: RunState {
                    record: record.clone(),
                    aggregates: AggregateState::default(),
                },
                cases: BTreeMap::new(),
                events: Vec::new(),
                chunks,
                index_space,
                attempts: 0,
                datasets,
                reviews: Vec::new(),
            },
        );
        Ok(CreateOutcome::Created(record))
    }

    async fn get_run(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>> {
        let runs = self.runs.lock().await;
        Ok(runs.get(run_id).map(|run| run.state.record.clone()))
    }

    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>> {
        let runs = self.runs.lock().await;
        let mut matching: Vec<&RunRecord> = runs
            .values()
            .map(|run| &run.state.record)
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| query.kind.is_none_or(|k| r.kind == k))
            .filter(|r| {
                query
                    .parent_run_id
                    .as_ref()
                    .is_none_or(|p| r.parent_run_id.as_ref() == Some(p))
            })
            .filter(|r| {
                query
                    .name
                    .as_ref()
                    .is_none_or(|n| r.labels.name.as_ref() == Some(n))
            })
            .filter(|r| query.tag.as_ref().is_none_or(|t| r.labels.tags.contains(t)))
            .filter(|r| {
                query
                    .before
                    .as_ref()
                    .is_none_or(|c| (r.created_at, &r.run_id) < (c.created_at, &c.run_id))
            })
            .collect();
        matching.sort_by(|a, b| (b.created_at, &b.run_id).cmp(&(a.created_at, &a.run_id)));
        Ok(matching
            .into_iter()
            .take(query.limit as usize)
            .map(summary_of)
            .collect())
    }

    async fn run_ids_with_status(&self, statuses: &[RunStatus]) -> StoreResult<Vec<RunId>> {
        let runs = self.runs.lock().await;
        let mut matching: Vec<&RunRecord> = runs
            .values()
            .map(|run| &run.state.record)
            .filter(|r| statuses.contains(&r.status))
            .collect();
        matching.sort_by(|a, b| (a.created_at, &a.run_id).cmp(&(b.created_at, &b.run_id)));
        Ok(matching.into_iter().map(|r| r.run_id.clone()).collect())
    }

    async fn commit(&self, batch: &CommitBatch) -> StoreResult<CommitOutcome> {
        let mut runs = self.runs.lock().await;
        let run = runs
            .get_mut(&batch.run_id)
            .ok_or_else(|| StoreError::RunNotFound(batch.run_id.clone()))?;
        if let Some(skipped) = run.state.precheck(batch)? {
            return Ok(skipped);
        }
        let mut kept = Vec::with_capacity(batch.cases.len());
        let mut duplicates = 0;
        let mut discarded = 0;
        // Fencing: only chunks the batch's lease owner still holds.
        let held = |chunks: &[ChunkLease], index: u64| match &batch.lease_owner {
            None => true,
            Some(owner) => chunks
                .get(index as usize)
                .is_some_and(|c| !c.done && c.owner.as_deref() == Some(owner.as_str())),
        };
        let completed: Vec<u64> = batch
            .completed_chunks
            .iter()
            .copied()
            .filter(|chunk| held(&run.chunks, *chunk))
            .collect();
        let mut kept_cases = Vec::with_capacity(batch.cases.len());
        for (position, case) in batch.cases.iter().enumerate() {
            let index = case.record.key.case_index;
            if !held(&run.chunks, index / CHUNK_SIZE) {
                discarded += 1;
                continue;
            }
            if run.cases.contains_key(&index) {
                duplicates += 1;
                continue;
            }
            run.state.count_case(case);
            run.cases.insert(index, case.record.clone());
            kept.push(case);
            kept_cases.push(position);
        }
        for chunk in completed {
            if let Some(lease) = run.chunks.get_mut(chunk as usize) {
                lease.done = true;
            }
        }
        // Lock order: runs, then cache.
        let writes: Vec<&CacheWrite> = kept.iter().flat_map(|case| &case.cache).collect();
        if !writes.is_empty() {
            let mut cache = self.cache.lock().await;
            for write in writes {
                apply_cache_write(&mut cache, write, &batch.run_id)?;
            }
        }
        let (first_case_seq, tail) = run.state.sequence_commit(&kept, batch);
        run.events
            .extend(case_events(&batch.run_id, first_case_seq, &kept));
        run.events.extend(tail.iter().cloned());
        Ok(CommitOutcome {
            kept_cases,
            first_case_seq,
            tail,
            duplicates,
            discarded,
            ..run.state.outcome()
        })
    }

    async fn request_cancel(&self, run_id: &RunId) -> StoreResult<CancelOutcome> {
        let mut runs = self.runs.lock().await;
        let run = runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        let outcome = match run.state.request_cancel() {
            CancelStep::AlreadyFinished => CancelOutcome::AlreadyFinished(run.state.record.clone()),
            CancelStep::Requested => CancelOutcome::Requested(run.state.record.clone()),
            CancelStep::Cancelled(events) => {
                run.events.extend(events.iter().cloned());
                CancelOutcome::Cancelled(run.state.record.clone(), events)
            }
        };
        Ok(outcome)
    }

    async fn reserve_spend(
        &self,
        run_id: &RunId,
        amount: f64,
        budget: f64,
    ) -> StoreResult<crate::model::Reservation> {
        let mut runs = self.runs.lock().await;
        let run = runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        run.state.ensure_open()?;
        Ok(run.state.reserve(amount, budget))
    }

    async fn recorded_case_indices(
        &self,
        run_id: &RunId,
        range: Range<u64>,
    ) -> StoreResult<Vec<u64>> {
        let runs = self.runs.lock().await;
        Ok(runs
            .get(run_id)
            .map(|run| run.cases.range(range).map(|(index, _)| *index).collect())
            .unwrap_or_default())
    }

    async fn claim_chunk_from(
        &self,
        run_id: &RunId,
        owner: &str,
        lease: Duration,
        from: u64,
    ) -> StoreResult<Option<Chunk>> {
        let mut runs = self.runs.lock().await;
        let Some(run) = runs.get_mut(run_id) else {
            return Ok(None);
        };
        let now = Instant::now();
        let space = run.index_space;
        let Some((chunk_index, chunk)) = run
            .chunks
            .iter_mut()
            .enumerate()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .find(|(_, c)| !c.done && !c.is_live(now))
        else {
            return Ok(None);
        };
        chunk.owner = Some(owner.to_owned());
        chunk.expires_at = Some(now + lease);
        Ok(Some(Chunk::new(chunk_index as u64, space)))
    }

    async fn renew_leases(
        &self,
        run_id: &RunId,
        owner: &str,
        chunks: &[u64],
        lease: Duration,
    ) -> StoreResult<Vec<u64>> {
        let mut runs = self.runs.lock().await;
        let Some(run) = runs.get_mut(run_id) else {
            return Ok(Vec::new());
        };
        let until = Instant::now() + lease;
        let mut held = Vec::new();
        for &index in chunks {
            if let Some(chunk) = run.chunks.get_mut(index as usize)
                && !chunk.done
                && chunk.owner.as_deref() == Some(owner)
            {
                chunk.expires_at = Some(until);
                held.push(index);
            }
        }
        Ok(held)
    }

    async fn release_leases(&self, run_id: &RunId, owner: &str) -> StoreResult<()> {
        let mut runs = self.runs.lock().await;
        let now = Instant::now();
        if let Some(run) = runs.get_mut(run_id) {
            for chunk in &mut run.chunks {
                if chunk.owner.as_deref() == Some(owner) {
                    chunk.expires_at = Some(now);
                }
            }
        }
        Ok(())
    }

    async fn begin_attempt(&self, run_id: &RunId) -> StoreResult<u64> {
        let mut runs = self.runs.lock().await;
        let run = runs
            .get_mut(run_id)
            .ok_or_else(|| StoreError::RunNotFound(run_id.clone()))?;
        run.attempts += 1;
        Ok(run.attempts - 1)
    }

    async fn end_attempt(&self, run_id: &RunId) -> StoreResult<()> {
        if let Some(run) = self.runs.lock().await.get_mut(run_id) {
            run.attempts = run.attempts.saturating_sub(1);
        }
        Ok(())
    }

    async fn chunk_status(&self, run_id: &RunId, owner: &str) -> StoreResult<ChunkStatus> {
        let runs = self.runs.lock().await;
        let now = Instant::now();
        Ok(runs
            .get(run_id)
            .map_or_else(ChunkStatus::default, |run| ChunkStatus {
                unfinished: run.chunks.iter().filter(|c| !c.done).count() as u64,
                held_by_others: run
                    .chunks
                    .iter()
                    .filter(|c| !c.done && c.is_live(now) && c.owner.as_deref() != Some(owner))
                    .count() as u64,
                abandoned: run
                    .chunks
                    .iter()
                    .filter(|c| !c.done && c.owner.is_some() && !c.is_live(now))
                    .count() as u64,
            }))
    }

    async fn case_records(
        &self,
        run_id: &RunId,
        query: &CaseQuery,
    ) -> StoreResult<Vec<CaseRecord>> {
        let runs = self.runs.lock().await;
        let Some(run) = runs.get(run_id) else {
            return Ok(Vec::new());
        };
        let start = query.after_index.map_or(0, |i| i + 1);
        Ok(run
            .cases
            .range(start..)
            .map(|(_, record)| record)
            .filter(|r| {
                query
                    .dataset_id
                    .as_ref()
                    .is_none_or(|d| &r.key.dataset_id == d)
            })
            .filter(|r| !query.failed_only || r.status == CaseStatus::Failed)
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn events_after(
        &self,
        run_id: &RunId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<RunEvent>> {
        let runs = self.runs.lock().await;
        let Some(run) = runs.get(run_id) else {
            return Ok(Vec::new());
        };
        // Sequence numbers start at 1 without gaps, so seq n sits at index n - 1.
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(run.events.len());
        Ok(run.events[start..]
            .iter()
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn cache_lookup(&self, key: &str) -> StoreResult<Option<CachedResponse>> {
        Ok(self
            .cache
            .lock()
            .await
            .get(key)
            .map(|entry| CachedResponse {
                value: entry.value.clone(),
                owner: Some(entry.owner.as_str().to_owned()),
            }))
    }

    async fn cache_get(&self, key: &str, run_id: &RunId) -> StoreResult<Option<serde_json::Value>> {
        let mut cache = self.cache.lock().await;
        Ok(cache.get_mut(key).map(|entry| {
            if entry.owner != *run_id {
                entry.users.insert(run_id.clone());
            }
            entry.value.clone()
        }))
    }

    async fn cache_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        run_id: &RunId,
    ) -> StoreResult<()> {
        self.cache
            .lock()
            .await
            .entry(key.to_owned())
            .or_insert_with(|| CacheEntry {
                value: value.clone(),
                owner: run_id.clone(),
                users: Default::default(),
            });
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// A case's cache write, applied as the SQL stores apply it in their commit.
fn apply_cache_write(
    cache: &mut HashMap<String, CacheEntry>,
    write: &CacheWrite,
    run_id: &RunId,
) -> StoreResult<()> {
    match write {
        CacheWrite::Put { key, value } => {
            if !cache.contains_key(key) {
                let value = serde_json::from_str(value)
                    .map_err(|e| StoreError::Corrupt(format!("cached response: {e}")))?;
                cache.insert(
                    key.clone(),
                    CacheEntry {
                        value,
                        owner: run_id.clone(),
                        users: Default::default(),
                    },
                );
            }
        }
        CacheWrite::Used { key } => {
            if let Some(entry) = cache.get_mut(key)
                && entry.owner != *run_id
            {
                entry.users.insert(run_id.clone());
            }
        }
    }
    Ok(())
}
