//! Endpoint protection: token-bucket rate limits, a circuit breaker and an (optionally
//! adaptive) concurrency limit. Each set is configured once, either from the operator's
//! limits (shared by every run) or from one run's params (that run only).
//!
//! All three are plain state machines behind a `std::sync::Mutex` (never held across an
//! `.await`); waiting is done by the caller with `tokio::time::sleep` or a `Notify`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Locks a mutex, recovering the data if a panicking thread poisoned it (every update
/// below leaves the state consistent, so the data is still good).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token bucket that hands out reservations: a caller takes what it needs at once (the
/// level may go negative) and waits until the debt is refilled. Waits are therefore FIFO
/// and exact, with no polling. The burst is one second's worth of the rate (at least 1).
#[derive(Default)]
pub(super) struct RateLimiter {
    bucket: Mutex<Option<Bucket>>,
}

struct Bucket {
    per_second: f64,
    capacity: f64,
    level: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.level = (self.level + elapsed * self.per_second).min(self.capacity);
        self.refilled_at = now;
    }
}

impl RateLimiter {
    /// Sets the limit to `per_minute` (`None`: unlimited); the current level is kept
    /// when only the rate changes.
    pub(super) fn configure(&self, per_minute: Option<f64>) {
        let mut bucket = lock(&self.bucket);
        match (per_minute, bucket.as_mut()) {
            (None, _) => *bucket = None,
            (Some(rate), Some(b)) if (b.per_second * 60.0 - rate).abs() < 1e-9 => {}
            (Some(rate), existing) => {
                let now = Instant::now();
                let per_second = rate / 60.0;
                let capacity = per_second.max(1.0);
                let level = match existing {
                    Some(b) => {
                        b.refill(now);
                        b.level.min(capacity)
                    }
                    None => capacity,
                };
                *bucket = Some(Bucket {
                    per_second,
                    capacity,
                    level,
                    refilled_at: now,
                });
            }
        }
    }

    /// Takes `amount` and returns how long to wait before using it (zero when unlimited).
    pub(super) fn reserve(&self, amount: f64) -> Duration {
        self.reserve_at(amount, Instant::now())
    }

    /// [`Self::reserve`] at a given instant (tests pin the clock).
    fn reserve_at(&self, amount: f64, now: Instant) -> Duration {
        let mut bucket = lock(&self.bucket);
        let Some(b) = bucket.as_mut() else {
            return Duration::ZERO;
        };
        b.refill(now);
        b.level -= amount;
        if b.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.level / b.per_second)
        }
    }

    /// Gives back (positive) or charges (negative) tokens once the real cost is known.
    pub(super) fn adjust(&self, delta: f64) {
        if let Some(b) = lock(&self.bucket).as_mut() {
            b.refill(Instant::now());
            b.level = (b.level + delta).min(b.capacity);
        }
    }
}

/// How a request went, as far as the endpoint's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// The endpoint answered (2xx, or a 4xx about the request itself).
    Alive,
    /// Connection error, timeout, 408 or 5xx, or an unreadable success response.
    Failed,
}

/// A consecutive-failure circuit breaker: after `threshold` failures in a row the endpoint
/// is open (calls fail fast) for `cooldown`; then one probe is let through (half-open),
/// whose success closes it and whose failure opens it again.
#[derive(Default)]
pub(super) struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    threshold: u32,
    cooldown: Duration,
    consecutive: u32,
    open_until: Option<Instant>,
    probing: bool,
    last_failure: String,
}

/// A call the breaker let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Normal,
    /// The single half-open probe.
    Probe,
}

/// Why the breaker refused a call.
#[derive(Debug, Clone)]
pub(super) struct Open {
    pub failures: u32,
    /// Until the next probe is allowed (zero while a probe is in flight).
    pub retry_in: Duration,
    pub last_failure: String,
}

impl Breaker {
    /// Sets the threshold (0 disables the breaker) and the cool-down.
    pub(super) fn configure(&self, threshold: u32, cooldown: Duration) {
        let mut state = lock(&self.state);
        state.threshold = threshold;
        state.cooldown = cooldown;
        if threshold == 0 {
            state.open_until = None;
            state.probing = false;
        }
    }

    pub(super) fn admit(&self) -> Result<Admission, Open> {
        let mut state = lock(&self.state);
        let Some(until) = state.open_until.filter(|_| state.threshold > 0) else {
            return Ok(Admission::Normal);
        };
        let now = Instant::now();
        if now < until || state.probing {
            return Err(Open {
                failures: state.consecutive,
                retry_in: until.saturating_duration_since(now),
                last_failure: state.last_failure.clone(),
            });
        }
        state.probing = true;
        Ok(Admission::Probe)
    }

    pub(super) fn record(
        &self,
        admission: Admission,
        health: Health,
        failure: impl FnOnce() -> String,
    ) {
        let mut state = lock(&self.state);
        if admission == Admission::Probe {
            state.probing = false;
        }
        match health {
            Health::Alive => {
                state.consecutive = 0;
                state.open_until = None;
            }
            Health::Failed => {
                state.consecutive = state.consecutive.saturating_add(1);
                state.last_failure = failure();
                let trips = admission == Admission::Probe
                    || (state.open_until.is_none() && state.consecutive >= state.threshold);
                if state.threshold > 0 && trips {
                    state.open_until = Some(Instant::now() + state.cooldown);
                }
            }
        }
    }

    /// The state as the operator's metrics show it.
    pub(super) fn state(&self) -> crate::observe::BreakerState {
        let state = lock(&self.state);
        match state.open_until.filter(|_| state.threshold > 0) {
            None => crate::observe::BreakerState::Closed,
            Some(until) if Instant::now() < until && !state.probing => {
                crate::observe::BreakerState::Open
            }
            Some(_) => crate::observe::BreakerState::HalfOpen,
        }
    }

    /// Lets a probe that ended without an answer either way (cancelled) be retried.
    pub(super) fn abandon(&self, admission: Admission) {
        if admission == Admission::Probe {
            lock(&self.state).probing = false;
        }
    }
}

/// Bounds the requests in flight to an endpoint. Static (`max` at once) or adaptive
/// (AIMD): starts at min(8, max), grows by one per window of successes (1/limit per
/// success) and halves on a 429, at most once per window (a window ends at the first
/// decrease; permits taken before it do not decrease again).
///
/// On a database several instances share, the limit is also bounded by this instance's
/// share of it ([`ConcurrencyLimiter::set_share`]), leased from the database.
pub(super) struct ConcurrencyLimiter {
    state: Mutex<Concurrency>,
    released: Notify,
    /// A caller started waiting: the keeper of the share asks for more.
    pub(super) wants: Notify,
}

struct Concurrency {
    enabled: bool,
    adaptive: bool,
    max: usize,
    limit: f64,
    in_flight: usize,
    epoch: u64,
    /// This instance's share of the limit, when instances share it.
    share: Option<usize>,
    /// Callers waiting for a permit.
    waiting: usize,
}

/// What a finished request tells the adaptive limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    Success,
    Overloaded,
    Neutral,
}

/// A slot in the limiter, given back on drop.
pub(super) struct Permit<'a> {
    limiter: &'a ConcurrencyLimiter,
    epoch: u64,
    signal: Signal,
    counted: bool,
}

impl Permit<'_> {
    pub(super) fn signal(&mut self, signal: Signal) {
        self.signal = signal;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter.release(self);
    }
}

impl Default for ConcurrencyLimiter {
    fn default() -> Self {
        ConcurrencyLimiter {
            state: Mutex::new(Concurrency {
                enabled: false,
                adaptive: false,
                max: usize::MAX,
                limit: f64::MAX,
                in_flight: 0,
                epoch: 0,
                share: None,
                waiting: 0,
            }),
            released: Notify::new(),
            wants: Notify::new(),
        }
    }
}

/// A caller waiting for a permit, counted out when it gives up (its future dropped).
struct Waiting<'a>(&'a ConcurrencyLimiter);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.waiting = state.waiting.saturating_sub(1);
    }
}

/// The adaptive limit's default ceiling.
pub(super) const DEFAULT_MAX_CONCURRENCY: usize = 64;

impl ConcurrencyLimiter {
    /// `max: None` and not adaptive: unlimited.
    pub(super) fn configure(&self, adaptive: bool, max: Option<usize>) {
        let mut state = lock(&self.state);
        let enabled = adaptive || max.is_some();
        let max = max.unwrap_or(DEFAULT_MAX_CONCURRENCY).max(1);
        let changed = if !enabled {
            std::mem::replace(&mut state.enabled, false)
        } else if !state.enabled || state.adaptive != adaptive || state.max != max {
            state.limit = if adaptive {
                max.min(8) as f64
            } else {
                max as f64
            };
            state.enabled = true;
            state.adaptive = adaptive;
            state.max = max;
            true
        } else {
            false
        };
        drop(state);
        if changed {
            // Waiters re-check against the new limit.
            self.released.notify_waiters();
        }
    }

    /// The current limit (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn limit(&self) -> f64 {
        lock(&self.state).limit
    }

    pub(super) async fn acquire(&self) -> Permit<'_> {
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            // Created before checking, so a release in between is not missed.
            let released = self.released.notified();
            {
                let mut state = lock(&self.state);
                let allowed = (state.limit.floor() as usize).max(1);
                let allowed = state.share.map_or(allowed, |share| allowed.min(share));
                if (!state.enabled && state.share.is_none()) || state.in_flight < allowed {
                    state.in_flight += 1;
                    if let Some(counted) = waiting.take() {
                        // Counted out here, under the lock its drop would take.
                        state.waiting -= 1;
                        std::mem::forget(counted);
                    }
                    return Permit {
                        limiter: self,
                        epoch: state.epoch,
                        signal: Signal::Neutral,
                        counted: true,
                    };
                }
                if waiting.is_none() {
                    state.waiting += 1;
                    waiting = Some(Waiting(self));
                    self.wants.notify_one();
                }
            }
            released.await;
        }
    }

    /// Bounds the permits to `share` (this instance's part of a limit instances share).
    pub(super) fn set_share(&self, share: usize) {
        let old = lock(&self.state).share.replace(share);
        if old.is_none_or(|old| old < share) {
            self.released.notify_waiters();
        }
    }

    /// What to ask the other instances for: `(want, in_use)`. While callers wait, all of
    /// `max`; else what is in flight. Permits may be taken up to the share in force
    /// until the answer comes: all of it counts as in use.
    pub(super) fn share_needs(&self, max: usize) -> (usize, usize) {
        let state = lock(&self.state);
        let want = if state.waiting > 0 {
            max
        } else {
            state.in_flight
        };
        (want, state.in_flight.max(state.share.unwrap_or(0)))
    }

    fn release(&self, permit: &mut Permit<'_>) {
        if !std::mem::take(&mut permit.counted) {
            return;
        }
        let mut state = lock(&self.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.enabled && state.adaptive {
            match permit.signal {
                Signal::Success => {
                    state.limit = (state.limit + 1.0 / state.limit.max(1.0)).min(state.max as f64);
                }
                Signal::Overloaded if permit.epoch == state.epoch => {
                    state.limit = (state.limit / 2.0).max(1.0);
                    state.epoch += 1;
                }
                Signal::Overloaded | Signal::Neutral => {}
            }
        }
        drop(state);
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let limiter = RateLimiter::default();
        limiter.configure(Some(600.0)); // 10/s, burst 10
        // A pinned clock: the waits are exact, whatever the machine's load.
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.reserve_at(1.0, now), Duration::ZERO);
        }
        let close = |wait: Duration, millis: u64| {
            wait.abs_diff(Duration::from_millis(millis)) < Duration::from_micros(10)
        };
        let wait = limiter.reserve_at(1.0, now);
        assert!(close(wait, 100), "{wait:?}");
        let wait = limiter.reserve_at(1.0, now);
        assert!(close(wait, 200), "{wait:?}");
        // 150 ms later the debt of 2 tokens is down to 0.5: the next waits 50 + 100 ms.
        let wait = limiter.reserve_at(1.0, now + Duration::from_millis(150));
        assert!(close(wait, 150), "{wait:?}");
        limiter.configure(None);
        assert_eq!(limiter.reserve(1000.0), Duration::ZERO);
    }

    #[test]
    fn bucket_refunds_overestimates() {
        let limiter = RateLimiter::default();
        limiter.configure(Some(60.0)); // 1/s, burst 1
        assert_eq!(limiter.reserve(1.0), Duration::ZERO);
        limiter.adjust(1.0);
        assert_eq!(limiter.reserve(1.0), Duration::ZERO);
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let breaker = Breaker::default();
        breaker.configure(3, Duration::from_millis(30));
        for _ in 0..3 {
            let admission = breaker.admit().unwrap();
            breaker.record(admission, Health::Failed, || "HTTP 500".into());
        }
        let open = breaker.admit().unwrap_err();
        assert_eq!(open.failures, 3);
        assert_eq!(open.last_failure, "HTTP 500");
        std::thread::sleep(Duration::from_millis(40));
        let probe = breaker.admit().unwrap();
        assert_eq!(probe, Admission::Probe);
        // Only one probe at a time.
        assert!(breaker.admit().is_err());
        breaker.record(probe, Health::Failed, || "HTTP 502".into());
        assert!(breaker.admit().is_err(), "a failed probe opens again");
        std::thread::sleep(Duration::from_millis(40));
        let probe = breaker.admit().unwrap();
        breaker.record(probe, Health::Alive, String::new);
        assert_eq!(breaker.admit().unwrap(), Admission::Normal);
    }

    #[tokio::test]
    async fn aimd_grows_per_window_and_halves_once_per_window() {
        let limiter = ConcurrencyLimiter::default();
        limiter.configure(true, Some(12));
        assert_eq!(limiter.limit(), 8.0);
        for _ in 0..8 {
            let mut permit = limiter.acquire().await;
            permit.signal(Signal::Success);
        }
        assert!((limiter.limit() - 9.0).abs() < 0.1, "{}", limiter.limit());
        // Two 429s from the same window halve once.
        let mut a = limiter.acquire().await;
        let mut b = limiter.acquire().await;
        a.signal(Signal::Overloaded);
        b.signal(Signal::Overloaded);
        drop(a);
        drop(b);
        assert!((limiter.limit() - 4.5).abs() < 0.1, "{}", limiter.limit());
        for _ in 0..1000 {
            let mut permit = limiter.acquire().await;
            permit.signal(Signal::Success);
        }
        assert_eq!(limiter.limit(), 12.0, "never above max_concurrency");
    }

    #[tokio::test]
    async fn a_share_bounds_the_permits_and_waiters_ask_for_more() {
        let limiter = std::sync::Arc::new(ConcurrencyLimiter::default());
        limiter.configure(false, Some(8));
        // Before the first grant: nothing.
        limiter.set_share(0);
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let _a = limiter.acquire().await;
            })
        };
        tokio::time::timeout(Duration::from_secs(1), limiter.wants.notified())
            .await
            .expect("the keeper is told a caller waits");
        assert_eq!(limiter.share_needs(8), (8, 0), "it wants all of max");
        // A share of 1: one permit, which counts as in use while the share stands.
        limiter.set_share(1);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        let held = limiter.acquire().await;
        assert_eq!(limiter.share_needs(8), (1, 1));
        let blocked = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let _b = limiter.acquire().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !blocked.is_finished(),
            "the share binds below max_concurrency"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), blocked)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            limiter.share_needs(8),
            (0, 1),
            "idle: it wants nothing more"
        );
    }

    #[tokio::test]
    async fn limiter_blocks_at_the_limit() {
        let limiter = std::sync::Arc::new(ConcurrencyLimiter::default());
        limiter.configure(false, Some(2));
        let a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let _c = limiter.acquire().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
