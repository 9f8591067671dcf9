//! A run named by its id or by its name: where a person compares runs, a name that
//! stands for exactly one run is as good as its id.

use super::EngineError;
use crate::model::RunId;
use crate::store::{RunQuery, Store};

/// Most runs an ambiguous name lists.
const MAX_CANDIDATES: u32 = 20;

/// What names a run: its id (`run_…`), or else its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    Id(RunId),
    Name(String),
}

impl RunRef {
    /// `run_…` must be a well-formed id (names never start so); anything else is a name.
    pub fn parse(raw: &str) -> Result<RunRef, crate::model::InvalidRunId> {
        if raw.starts_with(RUN_ID_PREFIX) {
            raw.parse().map(RunRef::Id)
        } else {
            Ok(RunRef::Name(raw.to_owned()))
        }
    }
}

/// Run ids start with this; names may not.
pub const RUN_ID_PREFIX: &str = "run_";

/// The id `reference` stands for: itself, or the one run of that name. No run of the
/// name is [`EngineError::NotFound`]; several, [`EngineError::AmbiguousName`] with
/// them (newest first, at most twenty).
pub async fn resolve_run(store: &dyn Store, reference: &RunRef) -> Result<RunId, EngineError> {
    let name = match reference {
        RunRef::Id(id) => return Ok(id.clone()),
        RunRef::Name(name) => name,
    };
    let runs = store
        .list_runs(&RunQuery {
            name: Some(name.clone()),
            limit: MAX_CANDIDATES,
            ..RunQuery::default()
        })
        .await?;
    match runs.as_slice() {
        [] => Err(EngineError::NotFound(format!("no run is named `{name}`"))),
        [run] => Ok(run.run_id.clone()),
        _ => Err(EngineError::AmbiguousName {
            name: name.clone(),
            runs: runs.into_iter().map(|r| r.run_id).collect(),
        }),
    }
}
