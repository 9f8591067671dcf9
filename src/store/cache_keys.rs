//! The keys a SQLite database's response cache holds, kept in memory. Most lookups are of
//! requests never made before (every case of a new experiment): answered from here, such
//! a lookup costs no read, and so no round trip to the thread of a pooled SQLite
//! connection (two thread wake-ups, most of what a one-row read costs).
//!
//! The set is exact, not a guess: SQLite serves one process (its file lock), and every
//! cache entry this process writes is added here before the transaction writing it
//! commits. A key whose entry was deleted with its run stays (a lookup then reads and
//! finds nothing). Until the keys stored before the process started are read (in the
//! background, after the store opens), every lookup reads.
//!
//! Memory: one 64-bit digest per key ([`digest`], what the table indexes), ~16 bytes with
//! the set's overhead; two keys with one digest only cost a read.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::TryStreamExt;
use sqlx::SqlitePool;

use super::cache_digest::digest;

/// Digests are already uniformly spread: the set uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed; this keeps the hasher total anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Fingerprints = HashSet<u64, BuildHasherDefault<Identity>>;

enum State {
    /// The stored keys are being read; these were added meanwhile.
    Loading(Vec<u64>),
    Ready(Fingerprints),
    /// Reading the stored keys failed: every lookup reads.
    Unknown,
}

pub(crate) struct CacheKeys {
    state: Mutex<State>,
}

fn fingerprint(key: &str) -> u64 {
    u64::from_ne_bytes(digest(key).to_ne_bytes())
}

impl CacheKeys {
    /// A set that knows nothing yet (every lookup reads) until [`CacheKeys::load`] ends.
    fn loading() -> Self {
        CacheKeys {
            state: Mutex::new(State::Loading(Vec::new())),
        }
    }

    /// The set of the keys in `pool`'s `response_cache`, read in the background.
    pub(crate) fn load(pool: &SqlitePool) -> Arc<Self> {
        let keys = Arc::new(Self::loading());
        let filling = Arc::clone(&keys);
        let pool = pool.clone();
        tokio::spawn(async move {
            let read = async {
                let mut set = Fingerprints::default();
                // The digests' index holds them all: the table itself is not read.
                let mut rows =
                    sqlx::query_scalar::<_, i64>("SELECT digest FROM response_cache").fetch(&pool);
                while let Some(digest) = rows.try_next().await? {
                    set.insert(u64::from_ne_bytes(digest.to_ne_bytes()));
                }
                Ok::<_, sqlx::Error>(set)
            };
            match read.await {
                Ok(set) => filling.loaded(set),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the response cache's keys failed: every lookup reads the database");
                    *filling.lock() = State::Unknown;
                }
            }
        });
        keys
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn loaded(&self, mut set: Fingerprints) {
        let mut state = self.lock();
        if let State::Loading(added) = &*state {
            set.extend(added.iter().copied());
            *state = State::Ready(set);
        }
    }

    /// Whether the database may hold `key`: `false` only when it certainly does not.
    pub(crate) fn may_hold(&self, key: &str) -> bool {
        match &*self.lock() {
            State::Ready(set) => set.contains(&fingerprint(key)),
            State::Loading(_) | State::Unknown => true,
        }
    }

    /// Notes keys about to be stored (before their transaction commits: a lookup must
    /// never be told "absent" about a committed key).
    pub(crate) fn add<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        let mut state = self.lock();
        match &mut *state {
            State::Ready(set) => set.extend(keys.into_iter().map(fingerprint)),
            State::Loading(added) => added.extend(keys.into_iter().map(fingerprint)),
            State::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_only_once_loaded_and_never_for_an_added_key() {
        let keys = CacheKeys::loading();
        assert!(keys.may_hold("a"), "while loading, every key may be stored");
        keys.add(["during"]);
        let mut stored = Fingerprints::default();
        stored.insert(fingerprint("stored"));
        keys.loaded(stored);
        assert!(keys.may_hold("stored"));
        assert!(keys.may_hold("during"), "added while loading");
        assert!(!keys.may_hold("never"));
        keys.add(["later"]);
        assert!(keys.may_hold("later"));
    }

    #[tokio::test]
    async fn loads_the_stored_keys() {
        // One connection: each holds an in-memory database of its own.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE response_cache (digest INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        for key in ["k1", "k2"] {
            sqlx::query("INSERT INTO response_cache (digest) VALUES ($1)")
                .bind(digest(key))
                .execute(&pool)
                .await
                .unwrap();
        }
        let keys = CacheKeys::load(&pool);
        for _ in 0..200 {
            if matches!(&*keys.lock(), State::Ready(_)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(matches!(&*keys.lock(), State::Ready(_)), "loaded");
        assert!(keys.may_hold("k1") && keys.may_hold("k2"));
        assert!(!keys.may_hold("k3"));
    }
}
