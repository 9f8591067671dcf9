//! The bounded execution pool: at most `size` executions at once, each on a numbered
//! slot no other execution holds meanwhile (the local sandbox runs each slot as its own
//! user, so one program's processes never count against another's limit).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(super) struct Pool {
    permits: Arc<Semaphore>,
    free: Arc<Mutex<Vec<usize>>>,
}

/// A held pool slot; dropping it frees the slot.
pub struct Slot {
    index: usize,
    free: Arc<Mutex<Vec<usize>>>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// `0..size`, unique among the slots held at once.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut free) = self.free.lock() {
            free.push(self.index);
        }
    }
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Pool {
            permits: Arc::new(Semaphore::new(size)),
            free: Arc::new(Mutex::new((0..size).rev().collect())),
        }
    }

    pub(super) async fn acquire(&self) -> Slot {
        // The semaphore is never closed.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the pool's semaphore is never closed"));
        // A permit guarantees a free index: indices and permits are returned together.
        let index = self
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or(0);
        Slot {
            index,
            free: self.free.clone(),
            _permit: permit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_unique_while_held_and_bounded() {
        let pool = Pool::new(2);
        let a = pool.acquire().await;
        let b = pool.acquire().await;
        assert_ne!(a.index(), b.index());
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), pool.acquire());
        assert!(third.await.is_err(), "a third slot while two are held");
        let freed = a.index();
        drop(a);
        assert_eq!(pool.acquire().await.index(), freed);
    }
}
