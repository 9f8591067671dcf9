//! Persistence behind one [`Store`] trait: in-memory, SQLite (embedded default) and Postgres.
//!
//! The store owns the consistency rules that must hold whoever writes: event sequence
//! numbers are assigned inside the commit transaction, a case is recorded at most once
//! (a second commit of the same case is ignored together with its events), and progress,
//! usage and aggregates are updated in the same transaction as the records they count.

mod apply;
mod cache_digest;
mod cache_keys;
mod checkpoint;
mod cluster;
mod connect;
mod datasets;
mod error;
mod lock;
mod memory;
mod memory_datasets;
mod memory_openai_evals;
mod memory_reviews;
mod openai_evals;
mod postgres;
mod postgres_cluster;
mod reviews;
mod sql;
mod sqlite;

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    CaseRecord, DatasetUse, EventBody, NewEvent, Progress, RunEvent, RunId, RunKind, RunLabels,
    RunRecord, RunStatus, Timestamp,
};

pub use crate::model::{BudgetRequest, ShareGrant, ShareRequest};
pub use connect::connect;
pub(crate) use datasets::MAX_NAMED_RUNS;
pub use datasets::{
    CaseBatches, DatasetStore, DeleteRevisions, DeleteRun, PutOutcome, RevisionCursor,
};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use openai_evals::EvalStore;
pub use postgres::PostgresStore;
pub use reviews::{ReviewQuery, ReviewStore};
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// Cases are claimed for execution in chunks of this many consecutive case indices.
pub const CHUNK_SIZE: u64 = 64;

/// A claimed range of case indices `[start, end)` of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub chunk_index: u64,
    pub start: u64,
    pub end: u64,
}

/// How far the chunks of a run are from done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkStatus {
    /// Chunks not marked done.
    pub unfinished: u64,
    /// Unfinished chunks under a live lease of another owner.
    pub held_by_others: u64,
    /// Unfinished chunks that were claimed once and whose lease ran out or was released:
    /// work an instance left behind (it died or shut down).
    pub abandoned: u64,
}

/// Number of chunks covering `index_space` case indices.
pub fn chunk_count(index_space: u64) -> u64 {
    index_space.div_ceil(CHUNK_SIZE)
}

/// The case-index range of a chunk.
pub fn chunk_range(chunk_index: u64, index_space: u64) -> Range<u64> {
    let start = chunk_index * CHUNK_SIZE;
    start..(start + CHUNK_SIZE).min(index_space)
}

impl Chunk {
    /// Chunk `chunk_index` of a run whose chunks cover `index_space` case indices.
    pub(crate) fn new(chunk_index: u64, index_space: u64) -> Chunk {
        let range = chunk_range(chunk_index, index_space);
        Chunk {
            chunk_index,
            start: range.start,
            end: range.end,
        }
    }
}

/// What `create_run` needs to insert a queued run.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: RunId,
    pub kind: RunKind,
    pub parent_run_id: Option<RunId>,
    pub labels: RunLabels,
    pub definition: Value,
    pub runtime: Value,
    pub total_cases: u64,
    /// Size of the case-index space the run's chunks cover (an experiment: its total;
    /// a rejudge: its source's total, as it keeps the source's indices).
    pub index_space: u64,
    /// The dataset revisions the run reads its cases from (none for a rejudge or retry,
    /// which read their parent's): they cannot be deleted while the run exists.
    pub datasets: Vec<DatasetUse>,
    pub created_at: Timestamp,
}

impl NewRun {
    pub(crate) fn into_record(self) -> RunRecord {
        RunRecord {
            run_id: self.run_id,
            kind: self.kind,
            parent_run_id: self.parent_run_id,
            status: RunStatus::Queued,
            labels: self.labels,
            definition: self.definition,
            runtime: self.runtime,
            progress: Progress {
                total: self.total_cases,
                ..Progress::default()
            },
            usage: Default::default(),
            aggregates: Default::default(),
            error: None,
            cancel_requested: false,
            last_seq: 0,
            version: 1,
            created_at: self.created_at,
            started_at: None,
            finished_at: None,
            updated_at: self.created_at,
        }
    }
}

/// Result of `create_run`: the run id is unique, so a second create returns the first run.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created(RunRecord),
    Existing(RunRecord),
}

impl CreateOutcome {
    pub fn record(&self) -> &RunRecord {
        match self {
            CreateOutcome::Created(record) | CreateOutcome::Existing(record) => record,
        }
    }

    pub fn into_record(self) -> RunRecord {
        match self {
            CreateOutcome::Created(record) | CreateOutcome::Existing(record) => record,
        }
    }

    pub fn was_created(&self) -> bool {
        matches!(self, CreateOutcome::Created(_))
    }
}

/// A run status transition. `started_at` is set on the first move to `running`,
/// `finished_at` on a move to a terminal status.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub status: RunStatus,
    pub error: Option<String>,
    pub at: Timestamp,
}

/// A finished case and the events it produced, recorded together or not at all.
#[derive(Debug, Clone)]
pub struct CaseCommit {
    pub record: CaseRecord,
    pub events: Vec<NewEvent>,
    /// What the case did to the response cache, written in the same commit: a response
    /// cached by the case that received it costs no transaction of its own.
    pub cache: Vec<CacheWrite>,
    /// `record` and `events` as JSON, when encoded before the commit
    /// ([`CaseCommit::encode`]); a SQL store encodes what is missing itself.
    pub encoded: Option<Box<EncodedCase>>,
    /// What the case reserved against the run's budget before it started: released
    /// by the commit that records it.
    pub reserved_usd: f64,
    /// A retry's record reused from the run it retries: its cost was paid there, and
    /// does not count against this run's budget.
    pub reused: bool,
}

/// A case commit's JSON, encoded where the case ran: case tasks run on every core,
/// while commits run one at a time, so the commit's share of serialisation (a third of
/// it, issue 12) no longer waits in line.
#[derive(Debug, Clone)]
pub struct EncodedCase {
    pub record: String,
    /// One per event of the commit, in order.
    pub events: Vec<EventBody>,
}

impl CaseCommit {
    /// A case commit without its JSON (a store that needs it encodes it).
    pub fn new(record: CaseRecord, events: Vec<NewEvent>) -> Self {
        CaseCommit {
            record,
            events,
            cache: Vec::new(),
            encoded: None,
            reserved_usd: 0.0,
            reused: false,
        }
    }

    /// The commit with its JSON encoded (now, unless it was).
    pub fn encode(self) -> StoreResult<Self> {
        if self.encoded.is_some() {
            return Ok(self);
        }
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let encoded = EncodedCase {
            record: serde_json::to_string(&self.record).map_err(corrupt)?,
            events: self
                .events
                .iter()
                .map(EventBody::encode)
                .collect::<Result<_, _>>()
                .map_err(corrupt)?,
        };
        Ok(CaseCommit {
            encoded: Some(Box::new(encoded)),
            ..self
        })
    }
}

/// A change to the response cache, committed with the case that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheWrite {
    /// A provider response (JSON text) received by the case: stored under `key`, owned
    /// by the case's run, unless a response is stored under `key` already.
    Put { key: String, value: String },
    /// A response another run stored, used by the case: noted, so deleting the run
    /// that stored it keeps it for this one.
    Used { key: String },
}

/// A cached response and the run that stored it (`None`: stored before runs could be
/// deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResponse {
    pub value: Value,
    pub owner: Option<String>,
}

/// One atomic write to a run: case commits first (in order), then run-level events, then
/// the optional status change. Rejected with [`StoreError::RunFinished`] when the run is
/// already terminal.
#[derive(Debug, Clone)]
pub struct CommitBatch {
    pub run_id: RunId,
    pub cases: Vec<CaseCommit>,
    pub events: Vec<NewEvent>,
    /// Append a `progress` event carrying the counts after this commit.
    pub progress_event: bool,
    pub status: Option<StatusChange>,
    /// Apply the batch only if the run is in this status (else nothing is written and
    /// the outcome says `skipped`): how instances agree on who starts or ends a run.
    pub expect_status: Option<RunStatus>,
    /// Chunks whose every case is now recorded.
    pub completed_chunks: Vec<u64>,
    /// Lease fencing: when set, the batch is written on behalf of this lease owner, and
    /// only for chunks it still holds. Cases of a chunk it no longer holds (another
    /// instance took the chunk over, or finished it) are discarded with their events, and
    /// such chunks are not marked done: a stale owner's work is never recorded.
    pub lease_owner: Option<String>,
}

impl CommitBatch {
    pub fn new(run_id: RunId) -> Self {
        CommitBatch {
            run_id,
            cases: Vec::new(),
            events: Vec::new(),
            progress_event: false,
            status: None,
            expect_status: None,
            completed_chunks: Vec::new(),
            lease_owner: None,
        }
    }
}

/// What a commit did: where the events it wrote are ([`CommitOutcome::events`]) and the
/// run's progress after it.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    /// Positions in the batch's `cases` of the cases written (not duplicates, not fenced
    /// off), ascending. Their events were sequenced from `first_case_seq` on, in order:
    /// they are named, not copied, because only live listeners and lifecycle
    /// subscribers read them and most commits have neither (issue 12: the copies were
    /// 8% of an engine-only run's CPU).
    pub kept_cases: Vec<usize>,
    pub first_case_seq: u64,
    /// The batch's own events and its progress event, sequenced after the cases' events.
    pub tail: Vec<RunEvent>,
    pub progress: Progress,
    /// Case commits skipped because the case was already recorded.
    pub duplicates: usize,
    /// Someone asked to cancel the run: its executor should stop.
    pub cancel_requested: bool,
    /// `expect_status` did not match: nothing was written.
    pub skipped: bool,
    /// Case commits dropped because their chunk is not held by the batch's `lease_owner`.
    pub discarded: usize,
    /// The run's summary (no definition or runtime) as it stands after the commit, as
    /// [`Store::get_run_summary`] would read it now.
    pub run: Box<RunRecord>,
}

impl CommitOutcome {
    /// Every event the commit wrote, in sequence order. `batch` is the committed one.
    pub fn events(&self, batch: &CommitBatch) -> Vec<RunEvent> {
        let kept: Vec<&CaseCommit> = self
            .kept_cases
            .iter()
            .filter_map(|position| batch.cases.get(*position))
            .collect();
        let mut events = apply::case_events(&batch.run_id, self.first_case_seq, &kept);
        events.extend(self.tail.iter().cloned());
        events
    }
}

/// Newest-first listing of runs, with a keyset cursor.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub kind: Option<RunKind>,
    pub parent_run_id: Option<RunId>,
    /// Only runs of this name.
    pub name: Option<String>,
    /// Only runs with this tag.
    pub tag: Option<String>,
    /// Only runs strictly older than this position in the newest-first order.
    pub before: Option<RunCursor>,
    pub limit: u32,
}

/// Position in the newest-first order of runs: `(created_at, run_id)` descending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCursor {
    pub created_at: Timestamp,
    pub run_id: RunId,
}

/// Case records in `case_index` order, with a keyset cursor.
#[derive(Debug, Clone, Default)]
pub struct CaseQuery {
    pub after_index: Option<u64>,
    pub dataset_id: Option<String>,
    pub failed_only: bool,
    pub limit: u32,
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The run was queued: it is now cancelled, with its `run_cancelled` event.
    Cancelled(RunRecord, Vec<RunEvent>),
    /// The run is executing: the flag is set and the executor stops it.
    Requested(RunRecord),
    /// The run had already finished.
    AlreadyFinished(RunRecord),
}

#[async_trait]
pub trait Store: DatasetStore + ReviewStore + EvalStore + Send + Sync + 'static {
    /// Inserts a queued run unless one with the same id exists (the id decides, atomically).
    async fn create_run(&self, run: NewRun) -> StoreResult<CreateOutcome>;

    async fn get_run(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>>;

    /// The run without its (possibly large) `definition` and `runtime`, which are
    /// `Value::Null`: what status polling needs. Stores override it to skip those columns.
    async fn get_run_summary(&self, run_id: &RunId) -> StoreResult<Option<RunRecord>> {
        Ok(self.get_run(run_id).await?.map(|mut record| {
            record.definition = Value::Null;
            record.runtime = Value::Null;
            record
        }))
    }

    /// Runs newest first. Listed records carry empty `definition` and `runtime` to keep
    /// listings small.
    async fn list_runs(&self, query: &RunQuery) -> StoreResult<Vec<RunRecord>>;

    /// Ids of runs in any of `statuses`, oldest first (used to resume after a restart).
    async fn run_ids_with_status(&self, statuses: &[RunStatus]) -> StoreResult<Vec<RunId>>;

    /// Takes the batch by reference: a commit that failed transiently is retried as is.
    async fn commit(&self, batch: &CommitBatch) -> StoreResult<CommitOutcome>;

    async fn request_cancel(&self, run_id: &RunId) -> StoreResult<CancelOutcome>;

    /// Reserves `amount` USD of `budget` for a case about to start, in the run's row
    /// (under its lock: instances sharing the run see one account). Refused when the
    /// run's spend, its reservations and `amount` would pass `budget`.
    async fn reserve_spend(
        &self,
        run_id: &RunId,
        amount: f64,
        budget: f64,
    ) -> StoreResult<crate::model::Reservation>;

    /// `case_index` of the recorded cases of the run within `range`, ascending.
    async fn recorded_case_indices(
        &self,
        run_id: &RunId,
        range: Range<u64>,
    ) -> StoreResult<Vec<u64>>;

    /// Claims the lowest unfinished chunk of the run that no live lease holds, for
    /// `owner` until `lease` from now (by the store's clock). Concurrent claimers never
    /// get the same chunk.
    async fn claim_chunk(
        &self,
        run_id: &RunId,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Option<Chunk>> {
        self.claim_chunk_from(run_id, owner, lease, 0).await
    }

    /// [`Store::claim_chunk`] among the chunks numbered `from` or more. A claimer going
    /// through a run passes the chunk after its last claim: the search then starts
    /// there instead of walking past every chunk already done (on Postgres, past their
    /// dead index entries too), which made each claim cost more as the run went on.
    async fn claim_chunk_from(
        &self,
        run_id: &RunId,
        owner: &str,
        lease: Duration,
        from: u64,
    ) -> StoreResult<Option<Chunk>>;

    /// The heartbeat: extends `owner`'s leases on `chunks` of the run to `lease` from now
    /// and returns those of `chunks` it still holds (not done, not taken over by another
    /// owner). A lease that ran out but that nobody took over is still held.
    async fn renew_leases(
        &self,
        run_id: &RunId,
        owner: &str,
        chunks: &[u64],
        lease: Duration,
    ) -> StoreResult<Vec<u64>>;

    /// Gives up every lease `owner` holds on the run's chunks (when its execution of the
    /// run stops), so others take over at once. Leases of other runs are untouched. The
    /// chunks keep their owner's name: they count as abandoned until claimed again.
    async fn release_leases(&self, run_id: &RunId, owner: &str) -> StoreResult<()>;

    /// Counts an execution of the run that is starting, durably. Returns how many earlier
    /// executions started and never ended (the process crashed or was killed while
    /// running it, or is still running it elsewhere).
    async fn begin_attempt(&self, run_id: &RunId) -> StoreResult<u64>;

    /// The execution counted by [`Store::begin_attempt`] ended without crashing the process.
    async fn end_attempt(&self, run_id: &RunId) -> StoreResult<()>;

    async fn chunk_status(&self, run_id: &RunId, owner: &str) -> StoreResult<ChunkStatus>;

    async fn case_records(&self, run_id: &RunId, query: &CaseQuery)
    -> StoreResult<Vec<CaseRecord>>;

    /// Events with `seq > after`, ascending, at most `limit`.
    async fn events_after(
        &self,
        run_id: &RunId,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<RunEvent>>;

    /// A cached provider response, if one was stored under `key`. A response another
    /// run stored is noted as used by `run_id` too, so deleting either run keeps it.
    async fn cache_get(&self, key: &str, run_id: &RunId) -> StoreResult<Option<Value>>;

    /// Stores a provider response under `key` (the first one stored wins), owned by
    /// `run_id`: deleting that run deletes it unless another run used it.
    async fn cache_put(&self, key: &str, value: &Value, run_id: &RunId) -> StoreResult<()>;

    /// The response cached under `key` and its owner, read without writing anything:
    /// the engine commits what it stores and uses with its cases ([`CaseCommit::cache`]).
    async fn cache_lookup(&self, key: &str) -> StoreResult<Option<CachedResponse>>;

    /// Run ids of commits made by other processes on the same database, as they happen
    /// (`None` when nobody else can write to this store). Wakes event streams at once.
    async fn watch_commits(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<RunId>>> {
        Ok(None)
    }

    /// Whether other processes execute runs on this store's data (Postgres): limits
    /// meant for all of them are then drawn from the store ([`Store::lease_share`],
    /// [`Store::reserve_budget`]) rather than kept by each process.
    fn shared_by_instances(&self) -> bool {
        false
    }

    /// Leases `request.holder` its share of a pool's capacity until `request.lease` from
    /// now (by the store's clock), replacing its previous grant: the grants of all live
    /// holders together never exceed the capacity, a grant never drops below what its
    /// holder has in use (while it holds that much), and a grant that is not renewed runs
    /// out, its units free for the others. One process (memory, SQLite) holds it all.
    async fn lease_share(&self, request: &ShareRequest<'_>) -> StoreResult<ShareGrant> {
        Ok(ShareGrant::whole(request.capacity))
    }

    /// Gives `holder`'s share of `pool` back at once.
    async fn release_share(&self, _pool: &str, _holder: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Takes `request.amount` from a rate budget every process shares and returns how
    /// long to wait before spending it (a negative amount gives unused budget back). One
    /// process has no such budget: its own limiters are all there is (zero).
    async fn reserve_budget(&self, _request: &BudgetRequest<'_>) -> StoreResult<Duration> {
        Ok(Duration::ZERO)
    }

    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> StoreResult<()>;

    /// The service is stopping (its runs stopped): leave the database as small as it
    /// is, nothing of it in logs to replay. SQLite copies its write-ahead log into the
    /// database file and truncates it (up to 64 MiB were left beside the file).
    async fn close(&self) -> StoreResult<()> {
        Ok(())
    }
}
