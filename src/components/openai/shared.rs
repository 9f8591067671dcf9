//! What every `openai/...` component of one registry shares: the operator's providers
//! and egress ([`Outbound`]), the endpoint state every run shares (configured from the
//! operator's limits only, never from a run's params), and the provider call stacks,
//! composed once per declared provider (and once for undeclared endpoints) around one
//! server-wide cap on provider requests in flight.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::client::{Endpoint, OutboundCapLayer, ProviderService, compose};
use super::providers::{OperatorLimits, Outbound, ProviderSpec};
use crate::components::ClusterLink;

/// Undeclared endpoints beyond this many are forgotten once no component uses them, so
/// runs naming ever new base URLs or models cannot grow the table without bound.
const MAX_IDLE_ENDPOINTS: usize = 1024;

pub(super) struct Shared {
    pub outbound: Outbound,
    providers: Vec<Arc<ProviderSpec>>,
    endpoints: Mutex<HashMap<(String, String), Arc<Endpoint>>>,
    /// The call stack of each declared provider, by name.
    stacks: HashMap<String, ProviderService>,
    /// The call stack of undeclared endpoints.
    undeclared: ProviderService,
    /// The instances declared providers' limits are shared with, once known.
    cluster: ClusterLink,
}

impl Shared {
    pub(super) fn new(outbound: Outbound) -> Self {
        let providers: Vec<Arc<ProviderSpec>> =
            outbound.providers.iter().cloned().map(Arc::new).collect();
        let cap = OutboundCapLayer::new(outbound.max_requests);
        // Backoff jitter: distinct per call, no RNG state beyond a counter.
        let jitter = Arc::new(AtomicU64::new(0));
        let stacks = providers
            .iter()
            .map(|p| (p.name.clone(), compose(Some(p), &outbound, &cap, &jitter)))
            .collect();
        Shared {
            undeclared: compose(None, &outbound, &cap, &jitter),
            stacks,
            providers,
            outbound,
            endpoints: Mutex::default(),
            cluster: ClusterLink::default(),
        }
    }

    /// Declared providers' endpoints created from now on share their limits with the
    /// instances `cluster` names, once it is set.
    pub(super) fn with_cluster(self, cluster: ClusterLink) -> Self {
        Shared { cluster, ..self }
    }

    /// The call stack of `provider` (`None`: an undeclared endpoint).
    pub(super) fn stack(&self, provider: Option<&ProviderSpec>) -> ProviderService {
        provider
            .and_then(|p| self.stacks.get(&p.name))
            .unwrap_or(&self.undeclared)
            .clone()
    }

    pub(super) fn named(&self, name: &str) -> Option<&Arc<ProviderSpec>> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The provider declared at exactly this (normalised) base URL.
    pub(super) fn at(&self, base_url: &str) -> Option<&Arc<ProviderSpec>> {
        self.providers.iter().find(|p| p.base_url == base_url)
    }

    /// The shared state of (base URL, model), created with the provider's limits (the
    /// defaults for undeclared endpoints) on first use.
    pub(super) fn endpoint(
        &self,
        base_url: &str,
        model: &str,
        provider: Option<&ProviderSpec>,
    ) -> Arc<Endpoint> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (base_url.to_owned(), model.to_owned());
        if let Some(endpoint) = endpoints.get(&key) {
            return endpoint.clone();
        }
        if endpoints.len() >= MAX_IDLE_ENDPOINTS {
            endpoints.retain(|_, e| Arc::strong_count(e) > 1);
        }
        let limits = provider.map_or_else(OperatorLimits::default, |p| p.limits.clone());
        let endpoint = Arc::new(Endpoint::operator(&limits));
        // Only a declared provider's limits are the operator's to share: an undeclared
        // endpoint's are defaults, per instance.
        if let (Some(provider), Some(cluster)) = (provider, self.cluster.get()) {
            endpoint.join(
                cluster,
                &format!("provider/{}/{model}", provider.name),
                &limits,
            );
        }
        endpoints.insert(key, endpoint.clone());
        endpoint
    }
}
