//! What the stores keep of human reviews: append-only, one row per review, under the run
//! whose generations were reviewed; deleted with that run.

use std::ops::Range;

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{NewReview, Review, RunId};

/// Reviews of a run's cases in `cases`, in `review_id` order after `after`.
#[derive(Debug, Clone)]
pub struct ReviewQuery {
    pub cases: Range<u64>,
    /// Only reviews with a larger `review_id` (the keyset cursor).
    pub after: Option<u64>,
    pub limit: u32,
}

impl ReviewQuery {
    /// Every review of one case, up to `limit`.
    pub fn case(case_index: u64, limit: u32) -> Self {
        ReviewQuery {
            cases: case_index..case_index.saturating_add(1),
            after: None,
            limit,
        }
    }
}

#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// Appends a review; its `review_id` is larger than every review stored before.
    /// [`StoreError::RunNotFound`](super::StoreError::RunNotFound) when the run is gone.
    async fn add_review(&self, review: NewReview) -> StoreResult<Review>;

    /// Reviews of the run matching `query`, ascending by `review_id`, at most `limit`.
    async fn reviews(&self, run_id: &RunId, query: &ReviewQuery) -> StoreResult<Vec<Review>>;
}
