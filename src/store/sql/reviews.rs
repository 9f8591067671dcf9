//! [`ReviewStore`] for every [`Dialect`]: one appended row per review.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Row as _, Type};

use super::{Conn, Dialect, Row, Value, from_json, json_text, to_i64, to_u64};
use crate::model::{NewReview, Review, RunId, Timestamp};
use crate::store::{ReviewQuery, ReviewStore, StoreError, StoreResult};

/// A bound on case indices the databases can hold (they are `i64`).
fn index_bound(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

#[async_trait]
impl<D> ReviewStore for D
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    for<'s> &'s str: Encode<'s, D::Db> + Type<D::Db> + ColumnIndex<Row<D>>,
    usize: ColumnIndex<Row<D>>,
{
    async fn add_review(&self, review: NewReview) -> StoreResult<Review> {
        let scores = json_text(&review.scores)?;
        let mut write = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM runs WHERE run_id = $1")
            .bind(review.run_id.as_str())
            .fetch_optional(write.conn())
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::RunNotFound(review.run_id));
        }
        let row = sqlx::query(
            "INSERT INTO case_reviews (run_id, case_index, reviewer, scores, comment, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING review_id",
        )
        .bind(review.run_id.as_str())
        .bind(to_i64(review.case_index)?)
        .bind(review.reviewer.clone())
        .bind(scores)
        .bind(review.comment.clone())
        .bind(review.created_at.as_millis())
        .fetch_one(write.conn())
        .await?;
        let review_id: i64 = row.try_get(0)?;
        write.commit().await?;
        Ok(review.into_review(to_u64(review_id)?))
    }

    async fn reviews(&self, run_id: &RunId, query: &ReviewQuery) -> StoreResult<Vec<Review>> {
        let rows = sqlx::query(
            "SELECT review_id, case_index, reviewer, scores, comment, created_at FROM case_reviews \
             WHERE run_id = $1 AND case_index >= $2 AND case_index < $3 AND review_id > $4 \
             ORDER BY review_id LIMIT $5",
        )
        .bind(run_id.as_str())
        .bind(index_bound(query.cases.start))
        .bind(index_bound(query.cases.end))
        .bind(index_bound(query.after.unwrap_or(0)))
        .bind(i64::from(query.limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let scores: String = row.try_get(3)?;
                let created_at: i64 = row.try_get(5)?;
                Ok(Review {
                    review_id: to_u64(row.try_get(0)?)?,
                    run_id: run_id.clone(),
                    case_index: to_u64(row.try_get(1)?)?,
                    reviewer: row.try_get(2)?,
                    scores: from_json(&scores)?,
                    comment: row.try_get(4)?,
                    created_at: Timestamp::from_millis(created_at),
                })
            })
            .collect()
    }
}
