//! Riding out transient store errors. The executor sends every store call a run depends
//! on (claims, commits, status reads) through [`retry`], so a database restart, a lost
//! connection or a serialization failure delays a run instead of failing it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// First pause after a transient error; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between two attempts: short, so work resumes soon after the store is back.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds, fails with a non-transient error, or transient errors
/// have gone on for `patience` (then the last error is returned).
pub(crate) async fn retry<T, F, Fut>(
    patience: Duration,
    what: &str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(error) if error.is_transient() && started.elapsed() < patience => {
                attempt += 1;
                tracing::warn!(%error, attempt, operation = what, "store unavailable; retrying");
                let left = patience.saturating_sub(started.elapsed());
                tokio::time::sleep(delay.min(left)).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            Err(error) if error.is_transient() => {
                tracing::error!(%error, attempt, operation = what, "store unavailable; giving up");
                return Err(error);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let value = retry(Duration::from_secs(10), "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
                _ => Ok(7),
            }
        })
        .await
        .unwrap();
        assert_eq!((value, calls.load(Ordering::SeqCst)), (7, 3));
    }

    #[tokio::test]
    async fn other_errors_are_returned_at_once() {
        let calls = AtomicU32::new(0);
        let error = retry(Duration::from_secs(10), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(StoreError::Corrupt("bad".into()))
        })
        .await
        .unwrap_err();
        assert!(matches!(error, StoreError::Corrupt(_)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn patience_bounds_the_retries() {
        let started = Instant::now();
        let error = retry(Duration::from_millis(300), "test", || async {
            Err::<(), _>(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
        })
        .await
        .unwrap_err();
        assert!(error.is_transient());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}
