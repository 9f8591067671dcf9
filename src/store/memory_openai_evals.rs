//! [`EvalStore`] of the in-process store: objects in creation order.

use async_trait::async_trait;

use super::openai_evals::EvalStore;
use super::{MemoryStore, StoreResult};
use crate::model::{EvalKind, EvalObject, EvalObjectQuery, ListOrder};

/// The objects, oldest first.
#[derive(Default)]
pub(super) struct MemoryEvalObjects {
    objects: Vec<EvalObject>,
}

#[async_trait]
impl EvalStore for MemoryStore {
    async fn insert_eval_object(&self, object: &EvalObject) -> StoreResult<()> {
        self.eval_objects.lock().await.objects.push(object.clone());
        Ok(())
    }

    async fn update_eval_object(
        &self,
        kind: EvalKind,
        id: &str,
        status: Option<&str>,
        body: &serde_json::Value,
    ) -> StoreResult<bool> {
        let mut objects = self.eval_objects.lock().await;
        match objects
            .objects
            .iter_mut()
            .find(|o| o.kind == kind && o.id == id)
        {
            Some(object) => {
                object.status = status.map(str::to_owned);
                object.body = body.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get_eval_object(
        &self,
        kind: EvalKind,
        id: &str,
        with_content: bool,
    ) -> StoreResult<Option<EvalObject>> {
        let objects = self.eval_objects.lock().await;
        Ok(objects
            .objects
            .iter()
            .find(|o| o.kind == kind && o.id == id)
            .map(|o| {
                let mut o = o.clone();
                if !with_content {
                    o.content = None;
                }
                o
            }))
    }

    async fn list_eval_objects(&self, query: &EvalObjectQuery) -> StoreResult<Vec<EvalObject>> {
        let objects = self.eval_objects.lock().await;
        let matching: Vec<&EvalObject> = objects
            .objects
            .iter()
            .filter(|o| o.kind == query.kind)
            .filter(|o| query.parent_id.is_none() || o.parent_id == query.parent_id)
            .collect();
        let ordered: Vec<&EvalObject> = match query.order {
            ListOrder::Asc => matching,
            ListOrder::Desc => matching.into_iter().rev().collect(),
        };
        let start = query
            .after
            .as_ref()
            .and_then(|after| ordered.iter().position(|o| &o.id == after))
            .map_or(0, |i| i + 1);
        Ok(ordered[start..]
            .iter()
            .filter(|o| query.status.is_none() || o.status == query.status)
            .take(query.limit as usize)
            .map(|o| EvalObject {
                content: None,
                ..(*o).clone()
            })
            .collect())
    }

    async fn delete_eval_object(&self, kind: EvalKind, id: &str) -> StoreResult<bool> {
        let mut objects = self.eval_objects.lock().await;
        let before = objects.objects.len();
        objects.objects.retain(|o| !(o.kind == kind && o.id == id));
        let found = objects.objects.len() < before;
        if found {
            objects
                .objects
                .retain(|o| o.parent_id.as_deref() != Some(id));
        }
        Ok(found)
    }
}
