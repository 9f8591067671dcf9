//! What the stores keep of the OpenAI Evals API: evals, eval runs and files, each one
//! row (a JSON document) under its OpenAI id, listed in creation order.

use async_trait::async_trait;

use super::StoreResult;
use crate::model::{EvalKind, EvalObject, EvalObjectQuery};

#[async_trait]
pub trait EvalStore: Send + Sync {
    /// Stores a new object (its id is new: ids are random).
    async fn insert_eval_object(&self, object: &EvalObject) -> StoreResult<()>;

    /// Replaces the status and body of an object; `false` when there is none.
    async fn update_eval_object(
        &self,
        kind: EvalKind,
        id: &str,
        status: Option<&str>,
        body: &serde_json::Value,
    ) -> StoreResult<bool>;

    /// The object, with a file's content when `with_content`.
    async fn get_eval_object(
        &self,
        kind: EvalKind,
        id: &str,
        with_content: bool,
    ) -> StoreResult<Option<EvalObject>>;

    /// One page, without content. An `after` that names no object of the listing
    /// starts from the beginning.
    async fn list_eval_objects(&self, query: &EvalObjectQuery) -> StoreResult<Vec<EvalObject>>;

    /// Deletes the object and the objects whose parent it is; `false` when there is none.
    async fn delete_eval_object(&self, kind: EvalKind, id: &str) -> StoreResult<bool>;
}
