//! An endpoint's rate limiters, breaker and concurrency limit: either shared by all runs
//! (configured from the operator's limits) or one run's own (from its params).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::cluster::{ClusterBudget, ClusterBudgets, keep_concurrency_share};
use crate::components::Cluster;
use crate::components::openai::limits::{
    Admission, Breaker, ConcurrencyLimiter, Health, RateLimiter,
};
use crate::components::openai::providers::OperatorLimits;

/// A run's own limits (its params); they only add to the operator's.
#[derive(Debug, Clone)]
pub(in crate::components::openai) struct RunLimits {
    pub requests_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub adaptive_concurrency: bool,
    pub max_concurrency: Option<usize>,
    /// 0 disables the run's breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

/// Rate limits, breaker and concurrency of an endpoint: either shared by all runs
/// ([`Endpoint::operator`]) or one run's own ([`Endpoint::for_run`]). Configured once.
#[derive(Default)]
pub(in crate::components::openai) struct Endpoint {
    pub(super) requests: RateLimiter,
    pub(super) tokens: RateLimiter,
    pub(super) breaker: Breaker,
    pub(super) concurrency: ConcurrencyLimiter,
    /// The endpoint rejected or ignored `n`: samples are asked for one by one.
    n_unsupported: AtomicBool,
    /// The rate budgets every instance shares, when they do.
    budgets: OnceLock<ClusterBudgets>,
}

impl Endpoint {
    /// The shared state of an endpoint: the operator's limits, never adaptive.
    pub(crate) fn operator(limits: &OperatorLimits) -> Self {
        Endpoint::for_run(&RunLimits {
            requests_per_minute: limits.requests_per_minute,
            tokens_per_minute: limits.tokens_per_minute,
            adaptive_concurrency: false,
            max_concurrency: limits.max_concurrency,
            breaker_failures: limits.breaker_failures,
            breaker_cooldown: limits.breaker_cooldown,
        })
    }

    pub(crate) fn for_run(limits: &RunLimits) -> Self {
        let endpoint = Endpoint::default();
        endpoint.requests.configure(limits.requests_per_minute);
        endpoint.tokens.configure(limits.tokens_per_minute);
        endpoint
            .breaker
            .configure(limits.breaker_failures, limits.breaker_cooldown);
        endpoint
            .concurrency
            .configure(limits.adaptive_concurrency, limits.max_concurrency);
        endpoint
    }

    /// Shares the operator's `limits` of this endpoint with the other instances on
    /// `cluster`'s store, under the pool names starting `pool` (the provider and model).
    pub(crate) fn join(self: &Arc<Self>, cluster: &Cluster, pool: &str, limits: &OperatorLimits) {
        if let Some(max) = limits.max_concurrency {
            self.concurrency.set_share(0);
            keep_concurrency_share(
                Arc::downgrade(self),
                cluster.clone(),
                format!("{pool}/concurrency"),
                max,
            );
        }
        let budget = |per_minute: Option<f64>, kind: &str| {
            per_minute
                .map(|rate| ClusterBudget::new(cluster.clone(), format!("{pool}/{kind}"), rate))
        };
        let _ = self.budgets.set(ClusterBudgets {
            requests: budget(limits.requests_per_minute, "requests"),
            tokens: budget(limits.tokens_per_minute, "tokens"),
        });
    }

    /// The rate budgets every instance shares, when they do.
    pub(super) fn budgets(&self) -> Option<&ClusterBudgets> {
        self.budgets.get()
    }

    pub(crate) fn supports_n(&self) -> bool {
        !self.n_unsupported.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_n_unsupported(&self) {
        if !self.n_unsupported.swap(true, Ordering::Relaxed) {
            tracing::info!("endpoint does not support `n`; asking for samples one by one");
        }
    }
}

/// Records a breaker admission's outcome, or abandons it when the call is dropped
/// half-way (so a cancelled probe never leaves the breaker stuck half-open).
pub(super) struct BreakerGuard<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    recorded: bool,
}

impl<'a> BreakerGuard<'a> {
    pub(super) fn new(breaker: &'a Breaker, admission: Admission) -> Self {
        BreakerGuard {
            breaker,
            admission,
            recorded: false,
        }
    }

    pub(super) fn record(mut self, health: Health, failure: impl FnOnce() -> String) {
        self.recorded = true;
        self.breaker.record(self.admission, health, failure);
    }
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.abandon(self.admission);
        }
    }
}
