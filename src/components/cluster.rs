//! The instances a registry's components share limits with: set once the store is open,
//! when the store is one several instances share (Postgres). Declared providers' limits
//! are then drawn from it; until then (and on memory or SQLite) they are this
//! process's alone.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::store::Store;

/// Where shared limits are kept, and this instance's name there.
#[derive(Clone)]
pub struct Cluster {
    pub store: Arc<dyn Store>,
    /// The instance (its lease owner name).
    pub holder: String,
    /// How long a share lasts unrenewed: a dead instance's shares return this late.
    pub lease: Duration,
}

/// Set at most once, read by every provider endpoint created after.
pub(crate) type ClusterLink = Arc<OnceLock<Cluster>>;
