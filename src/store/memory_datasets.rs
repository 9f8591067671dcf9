//! [`DatasetStore`] of the in-process store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use super::memory::MemoryStore;
use super::{
    CaseBatches, DatasetStore, DeleteRevisions, DeleteRun, MAX_NAMED_RUNS, PutOutcome,
    RevisionCursor, StoreError, StoreResult,
};
use crate::model::{
    DatasetRevision, DatasetSummary, DatasetUse, Revision, RunId, StoredCase, Timestamp,
};

#[derive(Default)]
pub(super) struct MemoryDatasets {
    /// Each dataset's revisions, oldest first.
    revisions: BTreeMap<String, Vec<DatasetRevision>>,
    /// Cases per revision, shared by the datasets that hold it.
    cases: HashMap<Revision, Arc<Vec<StoredCase>>>,
}

impl MemoryDatasets {
    /// Fails unless every revision a new run would use exists.
    pub(super) fn check_uses(&self, uses: &[DatasetUse]) -> StoreResult<()> {
        for used in uses {
            let exists = self
                .revisions
                .get(&used.dataset_id)
                .is_some_and(|revs| revs.iter().any(|r| r.revision == used.revision));
            if !exists {
                return Err(StoreError::MissingRevision {
                    dataset_id: used.dataset_id.clone(),
                    revision: used.revision.to_string(),
                });
            }
        }
        Ok(())
    }

    fn find(&self, dataset_id: &str, revision: Option<&Revision>) -> Option<&DatasetRevision> {
        let revisions = self.revisions.get(dataset_id)?;
        match revision {
            None => revisions.iter().max_by_key(|r| order_key(r)),
            Some(wanted) => revisions.iter().find(|r| &r.revision == wanted),
        }
    }

    fn is_shared(&self, revision: &Revision) -> bool {
        self.revisions
            .values()
            .flatten()
            .any(|r| &r.revision == revision)
    }
}

/// Newest first is descending `(created_at, revision)`.
fn order_key(r: &DatasetRevision) -> (Timestamp, &Revision) {
    (r.created_at, &r.revision)
}

#[async_trait]
impl DatasetStore for MemoryStore {
    async fn put_revision(
        &self,
        revision: DatasetRevision,
        cases: &mut dyn CaseBatches,
    ) -> StoreResult<PutOutcome> {
        {
            let datasets = self.datasets.lock().await;
            if let Some(existing) = datasets.find(&revision.dataset_id, Some(&revision.revision)) {
                return Ok(PutOutcome::Existing(existing.clone()));
            }
        }
        // Read outside the lock; whoever inserts first wins below.
        let known = self
            .datasets
            .lock()
            .await
            .cases
            .contains_key(&revision.revision);
        let mut read = Vec::new();
        if !known {
            loop {
                let batch = cases.next_batch().await?;
                if batch.is_empty() {
                    break;
                }
                read.extend(batch);
            }
        }
        let mut datasets = self.datasets.lock().await;
        if let Some(existing) = datasets.find(&revision.dataset_id, Some(&revision.revision)) {
            return Ok(PutOutcome::Existing(existing.clone()));
        }
        if !known {
            datasets
                .cases
                .entry(revision.revision.clone())
                .or_insert_with(|| Arc::new(read));
        }
        datasets
            .revisions
            .entry(revision.dataset_id.clone())
            .or_default()
            .push(revision.clone());
        Ok(PutOutcome::Created(revision))
    }

    async fn get_revision(
        &self,
        dataset_id: &str,
        revision: Option<&Revision>,
    ) -> StoreResult<Option<DatasetRevision>> {
        Ok(self
            .datasets
            .lock()
            .await
            .find(dataset_id, revision)
            .cloned())
    }

    async fn list_revisions(
        &self,
        dataset_id: &str,
        before: Option<&RevisionCursor>,
        limit: u32,
    ) -> StoreResult<Vec<DatasetRevision>> {
        let datasets = self.datasets.lock().await;
        let mut revisions: Vec<&DatasetRevision> = datasets
            .revisions
            .get(dataset_id)
            .into_iter()
            .flatten()
            .filter(|r| before.is_none_or(|c| order_key(r) < (c.created_at, &c.revision)))
            .collect();
        revisions.sort_by(|a, b| order_key(b).cmp(&order_key(a)));
        Ok(revisions
            .into_iter()
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn list_datasets(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<DatasetSummary>> {
        let datasets = self.datasets.lock().await;
        Ok(datasets
            .revisions
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
            .filter_map(|(id, revisions)| {
                let latest = revisions.iter().max_by_key(|r| order_key(r))?;
                Some(DatasetSummary {
                    dataset_id: id.clone(),
                    latest: latest.clone(),
                    revisions: revisions.len() as u64,
                })
            })
            .take(limit as usize)
            .collect())
    }

    async fn revision_cases(
        &self,
        revision: &Revision,
        range: Range<u64>,
    ) -> StoreResult<Vec<StoredCase>> {
        let cases = self.datasets.lock().await.cases.get(revision).cloned();
        let Some(cases) = cases else {
            return Ok(Vec::new());
        };
        let end = usize::try_from(range.end)
            .unwrap_or(usize::MAX)
            .min(cases.len());
        let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
        Ok(cases[start..end].to_vec())
    }

    async fn delete_revisions(
        &self,
        dataset_id: &str,
        revision: Option<&Revision>,
    ) -> StoreResult<DeleteRevisions> {
        let runs = self.runs.lock().await;
        let mut datasets = self.datasets.lock().await;
        let Some(revisions) = datasets.revisions.get(dataset_id) else {
            return Ok(DeleteRevisions::NotFound);
        };
        let doomed: Vec<Revision> = revisions
            .iter()
            .map(|r| r.revision.clone())
            .filter(|r| revision.is_none_or(|wanted| wanted == r))
            .collect();
        if doomed.is_empty() {
            return Ok(DeleteRevisions::NotFound);
        }
        let mut users: Vec<RunId> = runs
            .iter()
            .filter(|(_, run)| {
                run.datasets
                    .iter()
                    .any(|u| u.dataset_id == dataset_id && doomed.contains(&u.revision))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !users.is_empty() {
            users.sort();
            users.truncate(MAX_NAMED_RUNS);
            return Ok(DeleteRevisions::InUse(users));
        }
        if let Some(revisions) = datasets.revisions.get_mut(dataset_id) {
            revisions.retain(|r| !doomed.contains(&r.revision));
            if revisions.is_empty() {
                datasets.revisions.remove(dataset_id);
            }
        }
        for gone in &doomed {
            if !datasets.is_shared(gone) {
                datasets.cases.remove(gone);
            }
        }
        Ok(DeleteRevisions::Deleted(doomed))
    }

    async fn delete_run(&self, run_id: &RunId, cascade: bool) -> StoreResult<DeleteRun> {
        let mut runs = self.runs.lock().await;
        if !runs.contains_key(run_id) {
            return Ok(DeleteRun::NotFound);
        }
        // The run and every run derived from it, parents before children.
        let mut doomed = vec![run_id.clone()];
        let mut next = 0;
        while next < doomed.len() {
            let parent = doomed[next].clone();
            let mut children: Vec<RunId> = runs
                .values()
                .map(|run| run.record())
                .filter(|r| r.parent_run_id.as_ref() == Some(&parent))
                .map(|r| r.run_id.clone())
                .collect();
            children.sort();
            doomed.extend(children);
            next += 1;
        }
        if doomed.len() > 1 && !cascade {
            let mut children = doomed.split_off(1);
            children.truncate(MAX_NAMED_RUNS);
            return Ok(DeleteRun::HasChildren(children));
        }
        let mut unfinished: Vec<RunId> = doomed
            .iter()
            .filter(|id| {
                runs.get(*id)
                    .is_some_and(|r| !r.record().status.is_terminal())
            })
            .cloned()
            .collect();
        if !unfinished.is_empty() {
            unfinished.truncate(MAX_NAMED_RUNS);
            return Ok(DeleteRun::Unfinished(unfinished));
        }
        let gone: HashSet<&RunId> = doomed.iter().collect();
        let mut cache = self.cache.lock().await;
        cache.retain(|_, entry| {
            entry.users.retain(|user| !gone.contains(user));
            if !gone.contains(&entry.owner) {
                return true;
            }
            // Another run used it: it becomes that run's, and stays.
            match entry.users.iter().min().cloned() {
                Some(heir) => {
                    entry.users.remove(&heir);
                    entry.owner = heir;
                    true
                }
                None => false,
            }
        });
        for id in &doomed {
            runs.remove(id);
        }
        Ok(DeleteRun::Deleted(doomed))
    }

    async fn expired_runs(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<RunId>> {
        let runs = self.runs.lock().await;
        let parents: HashSet<&RunId> = runs
            .values()
            .filter_map(|run| run.record().parent_run_id.as_ref())
            .collect();
        let mut expired: Vec<(Timestamp, &RunId)> = runs
            .values()
            .map(|run| run.record())
            .filter(|r| r.status.is_terminal() && !parents.contains(&r.run_id))
            .filter_map(|r| Some((r.finished_at?, &r.run_id)))
            .filter(|(finished, _)| *finished < before)
            .collect();
        expired.sort();
        Ok(expired
            .into_iter()
            .take(limit as usize)
            .map(|(_, id)| id.clone())
            .collect())
    }
}
