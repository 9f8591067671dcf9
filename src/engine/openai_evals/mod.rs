//! The OpenAI Evals API over the engine: evals and files are stored documents; each
//! eval run is translated into a Themis run (one case per data row, one judge per
//! testing criterion) and submitted like any other, so events, the dashboard,
//! comparisons, exports and rejudges work on it. Run and output item views are read
//! back from the Themis run's records.

mod evals;
mod import;
mod rows;
mod runs;
mod views;

use serde_json::{Value, json};

use super::{Engine, EngineError};
use crate::model::{EvalKind, EvalObject, EvalObjectQuery, FieldError, ListOrder};

pub use import::{Imported, collect_exported};
pub use runs::CreatedRun;

/// What the operator sets for the Evals API.
#[derive(Debug, Clone, Default)]
pub struct EvalsConfig {
    /// Where model names without a declared `PROVIDER/` prefix go (`--default-provider`).
    pub default_provider: Option<String>,
    /// The sandbox python graders run in (the first the operator declared that runs
    /// Python); none means python graders are refused.
    pub sandbox: Option<String>,
}

/// Most rows of one eval run.
pub(super) const MAX_ROWS: usize = 100_000;
/// Largest uploaded file (`POST /v1/files`).
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Most objects of one page.
pub(super) const MAX_PAGE: u32 = 100;

/// A page request: OpenAI's `after`, `limit`, `order`.
#[derive(Debug, Clone)]
pub struct Page {
    pub after: Option<String>,
    pub limit: u32,
    pub order: ListOrder,
}

/// One page of objects (as the API shows them) and whether more follow.
#[derive(Debug, Clone)]
pub struct Listing {
    pub data: Vec<Value>,
    pub has_more: bool,
}

/// The OpenAI Evals API's operations.
#[derive(Clone)]
pub struct OpenAiEvals {
    engine: Engine,
    config: EvalsConfig,
}

pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> EngineError {
    EngineError::Invalid(vec![FieldError {
        path: path.into(),
        message: message.into(),
    }])
}

fn not_found(kind: EvalKind, id: &str) -> EngineError {
    let what = match kind {
        EvalKind::Eval => "eval",
        EvalKind::Run => "eval run",
        EvalKind::File => "file",
    };
    EngineError::NotFound(format!("no {what} with id `{id}`"))
}

pub(crate) fn now_secs() -> i64 {
    crate::model::Timestamp::now().as_millis() / 1000
}

impl OpenAiEvals {
    pub fn new(engine: Engine, config: EvalsConfig) -> Self {
        OpenAiEvals { engine, config }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    async fn get(&self, kind: EvalKind, id: &str) -> Result<EvalObject, EngineError> {
        if !kind.is_id(id) {
            return Err(not_found(kind, id));
        }
        self.engine
            .store()
            .get_eval_object(kind, id, false)
            .await?
            .ok_or_else(|| not_found(kind, id))
    }

    /// A page of `kind` (under `parent`), one more asked for to learn `has_more`.
    async fn page(
        &self,
        kind: EvalKind,
        parent: Option<&str>,
        status: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<EvalObject>, bool), EngineError> {
        let limit = page.limit.clamp(1, MAX_PAGE);
        let mut objects = self
            .engine
            .store()
            .list_eval_objects(&EvalObjectQuery {
                kind,
                parent_id: parent.map(str::to_owned),
                status: status.map(str::to_owned),
                after: page.after.clone(),
                order: page.order,
                limit: limit + 1,
            })
            .await?;
        let has_more = objects.len() > limit as usize;
        objects.truncate(limit as usize);
        Ok((objects, has_more))
    }

    // Files.

    pub async fn create_file(
        &self,
        filename: &str,
        purpose: &str,
        content: String,
    ) -> Result<Value, EngineError> {
        if purpose != "evals" {
            return Err(invalid(
                "purpose",
                format!("Themis keeps files for evals only (`purpose=evals`), not `{purpose}`"),
            ));
        }
        if content.len() > MAX_FILE_BYTES {
            return Err(EngineError::TooLarge(format!(
                "files are at most {MAX_FILE_BYTES} bytes"
            )));
        }
        // Checked now so a bad file is refused at upload, as OpenAI does.
        rows::parse_jsonl(&content, "file")?;
        let id = EvalKind::File.new_id();
        let body = json!({
            "object": "file", "id": id, "bytes": content.len(), "created_at": now_secs(),
            "filename": filename, "purpose": purpose, "status": "processed",
            "expires_at": null, "status_details": null,
        });
        self.engine
            .store()
            .insert_eval_object(&EvalObject {
                kind: EvalKind::File,
                id,
                parent_id: None,
                status: None,
                created_at: now_secs(),
                body: body.clone(),
                content: Some(content),
            })
            .await?;
        Ok(body)
    }

    pub async fn get_file(&self, id: &str) -> Result<Value, EngineError> {
        Ok(self.get(EvalKind::File, id).await?.body)
    }

    pub async fn file_content(&self, id: &str) -> Result<String, EngineError> {
        if !EvalKind::File.is_id(id) {
            return Err(not_found(EvalKind::File, id));
        }
        self.engine
            .store()
            .get_eval_object(EvalKind::File, id, true)
            .await?
            .and_then(|o| o.content)
            .ok_or_else(|| not_found(EvalKind::File, id))
    }

    pub async fn delete_file(&self, id: &str) -> Result<Value, EngineError> {
        self.get(EvalKind::File, id).await?;
        self.engine
            .store()
            .delete_eval_object(EvalKind::File, id)
            .await?;
        Ok(json!({"object": "file", "id": id, "deleted": true}))
    }

    pub async fn list_files(&self, page: &Page) -> Result<Listing, EngineError> {
        let (objects, has_more) = self.page(EvalKind::File, None, None, page).await?;
        Ok(Listing {
            data: objects.into_iter().map(|o| o.body).collect(),
            has_more,
        })
    }
}
