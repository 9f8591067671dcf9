//! [`ReviewStore`] of the in-process store.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::reviews::{ReviewQuery, ReviewStore};
use super::{MemoryStore, StoreError, StoreResult};
use crate::model::{NewReview, Review, RunId};

#[async_trait]
impl ReviewStore for MemoryStore {
    async fn add_review(&self, review: NewReview) -> StoreResult<Review> {
        let mut runs = self.runs.lock().await;
        let run = runs
            .get_mut(&review.run_id)
            .ok_or_else(|| StoreError::RunNotFound(review.run_id.clone()))?;
        let review_id = self.last_review_id.fetch_add(1, Ordering::Relaxed) + 1;
        let review = review.into_review(review_id);
        run.reviews.push(review.clone());
        Ok(review)
    }

    async fn reviews(&self, run_id: &RunId, query: &ReviewQuery) -> StoreResult<Vec<Review>> {
        let runs = self.runs.lock().await;
        let Some(run) = runs.get(run_id) else {
            return Ok(Vec::new());
        };
        Ok(run
            .reviews
            .iter()
            .filter(|r| query.cases.contains(&r.case_index))
            .filter(|r| query.after.is_none_or(|after| r.review_id > after))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }
}
