//! Limits several instances share: the requests a holder makes for its share of a
//! capacity or for rate budget, and what it is granted. The store keeps them (Postgres:
//! every instance on the database; one process: all of it is local), the components
//! spend them.

use std::time::Duration;

/// One holder's periodic request for its share of a pool's capacity.
#[derive(Debug, Clone)]
pub struct ShareRequest<'a> {
    /// What is shared: `run/{run_id}`, `provider/{name}/{model}/concurrency`.
    pub pool: &'a str,
    /// Who asks: the instance.
    pub holder: &'a str,
    /// The pool's size: what every holder together may use at once.
    pub capacity: u64,
    /// How many the holder could use now.
    pub want: u64,
    /// How many the holder uses now: a grant never goes below it (what is in use is
    /// given back as it ends, by asking again with less).
    pub in_use: u64,
    /// The grant lasts this long unless asked for again; a dead holder's share returns
    /// to the pool when it runs out.
    pub lease: Duration,
}

/// What a holder may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareGrant {
    /// Units leased to the holder: together with every other holder's, at most the
    /// capacity.
    pub held: u64,
    /// The holder's fair share of the capacity given what every holder wants: a holder
    /// above it starts no new work until it is back under it, and gives the rest back.
    pub target: u64,
}

impl ShareGrant {
    /// What the holder may have in use from now on.
    pub fn usable(&self) -> u64 {
        self.held.min(self.target)
    }

    /// The answer of a store serving one process: all of it.
    pub fn whole(capacity: u64) -> Self {
        ShareGrant {
            held: capacity,
            target: capacity,
        }
    }
}

/// A reservation of `amount` from a token bucket every holder shares (refilling at
/// `per_second`, holding at most `burst`).
#[derive(Debug, Clone)]
pub struct BudgetRequest<'a> {
    /// `provider/{name}/{model}/requests` or `.../tokens`.
    pub pool: &'a str,
    pub per_second: f64,
    pub burst: f64,
    /// What to take; a negative amount gives unused budget back.
    pub amount: f64,
}
