//! The engine's side of datasets: uploads checked and stored as revisions.

use bytes::Bytes;
use futures::Stream;

use super::ingest::Ingested;
use super::upload::{UploadError, UploadFormat, UploadLimits, ingest_upload};
use crate::engine::{Engine, EngineError};
use crate::model::FieldError;
use crate::model::check::id_problem;
use crate::model::{DatasetRevision, Timestamp};
use crate::store::PutOutcome;

/// Longest `dataset_id`, in bytes.
pub(super) const MAX_DATASET_ID_BYTES: usize = 512;

/// A dataset id is a non-blank string of at most [`MAX_DATASET_ID_BYTES`], without
/// control or bidirectional characters.
pub(crate) fn check_dataset_id(dataset_id: &str) -> Result<(), String> {
    if dataset_id.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if dataset_id.len() > MAX_DATASET_ID_BYTES {
        Err(format!("must be at most {MAX_DATASET_ID_BYTES} bytes"))
    } else if let Some(problem) = id_problem(dataset_id) {
        Err(problem.to_owned())
    } else {
        Ok(())
    }
}

impl From<UploadError> for EngineError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Invalid(details) => EngineError::InvalidDataset(details),
            UploadError::TooLarge(_) => EngineError::TooLarge(error.to_string()),
            UploadError::Body(_) => EngineError::BadBody(error.to_string()),
            UploadError::Spool(e) => EngineError::Spool(e),
        }
    }
}

impl Engine {
    /// Checks an uploaded body case by case and stores it as a revision of `dataset_id`
    /// (whole, or not at all); an identical upload finds the stored revision.
    pub async fn put_dataset<S, E>(
        &self,
        dataset_id: &str,
        format: &UploadFormat,
        limits: UploadLimits,
        body: S,
    ) -> Result<PutOutcome, EngineError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        check_dataset_id(dataset_id).map_err(|message| {
            EngineError::InvalidDataset(vec![FieldError {
                path: "dataset_id".to_owned(),
                message,
            }])
        })?;
        let ingested = ingest_upload(body, format, limits).await?;
        self.store_revision(dataset_id, ingested).await
    }

    /// Stores a checked revision under `dataset_id`.
    pub(crate) async fn store_revision(
        &self,
        dataset_id: &str,
        mut ingested: Ingested,
    ) -> Result<PutOutcome, EngineError> {
        let revision = DatasetRevision {
            dataset_id: dataset_id.to_owned(),
            revision: ingested.revision.clone(),
            case_count: ingested.case_count,
            bytes: ingested.bytes,
            created_at: Timestamp::now(),
        };
        Ok(self
            .store()
            .put_revision(revision, &mut ingested.cases)
            .await?)
    }
}
