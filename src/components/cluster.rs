//! The instances a registry's components share limits with: set once the store is open,
//! when the store is one several instances share (Postgres). Declared providers' limits
//! are then drawn through a [`SharedLimits`] (the engine's, over the store); until then
//! (and on memory or SQLite) they are this process's alone.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{BudgetRequest, ShareGrant, ShareRequest};

/// Where limits every instance shares are kept. `None` answers: the keeper could not
/// reach it (the implementation logs why); the caller acts as its failure behaviour says.
#[async_trait]
pub trait SharedLimits: Send + Sync + 'static {
    /// Leases the holder its share of a pool's capacity (see `Store::lease_share`).
    async fn lease_share(&self, request: &ShareRequest<'_>) -> Option<ShareGrant>;

    /// Gives the holder's share of `pool` back.
    async fn release_share(&self, pool: &str, holder: &str);

    /// Takes from a shared rate budget; how long to wait before spending it.
    async fn reserve_budget(&self, request: &BudgetRequest<'_>) -> Option<Duration>;
}

/// Where shared limits are kept, and this instance's name there.
#[derive(Clone)]
pub struct Cluster {
    pub limits: Arc<dyn SharedLimits>,
    /// The instance (its lease owner name).
    pub holder: String,
    /// How long a share lasts unrenewed: a dead instance's shares return this late.
    pub lease: Duration,
}

/// Set at most once, read by every provider endpoint created after.
pub(crate) type ClusterLink = Arc<OnceLock<Cluster>>;
