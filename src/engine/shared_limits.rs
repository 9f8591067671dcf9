//! The limits every instance shares, kept in the store, as the components ask for them
//! ([`SharedLimits`]): a store error is logged here and answered `None`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::components::SharedLimits;
use crate::model::{BudgetRequest, ShareGrant, ShareRequest};
use crate::store::Store;

/// [`SharedLimits`] over a store several instances share.
pub struct StoreLimits {
    store: Arc<dyn Store>,
}

impl StoreLimits {
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreLimits { store }
    }
}

#[async_trait]
impl SharedLimits for StoreLimits {
    async fn lease_share(&self, request: &ShareRequest<'_>) -> Option<ShareGrant> {
        self.store
            .lease_share(request)
            .await
            .inspect_err(|e| {
                tracing::warn!(pool = request.pool, error = %e, "renewing a share of a shared limit failed")
            })
            .ok()
    }

    async fn release_share(&self, pool: &str, holder: &str) {
        if let Err(e) = self.store.release_share(pool, holder).await {
            tracing::warn!(pool, error = %e, "giving back a share of a shared limit failed");
        }
    }

    async fn reserve_budget(&self, request: &BudgetRequest<'_>) -> Option<Duration> {
        self.store
            .reserve_budget(request)
            .await
            .inspect_err(|e| {
                tracing::warn!(pool = request.pool, error = %e, "reserving shared rate budget failed")
            })
            .ok()
    }
}
