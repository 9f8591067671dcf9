//! The store contract for limits every instance shares: shares of a pool's capacity
//! leased per holder, and rate budgets. A store one process serves grants it all.

use super::*;
use themis::store::{BudgetRequest, ShareGrant, ShareRequest};

fn ask<'a>(holder: &'a str, want: u64, in_use: u64, lease: Duration) -> ShareRequest<'a> {
    ShareRequest {
        pool: "run/test",
        holder,
        capacity: 32,
        want,
        in_use,
        lease,
    }
}

const LONG: Duration = Duration::from_secs(60);

async fn shares_never_sum_above_the_capacity_and_converge_to_fair(store: Arc<dyn Store>) {
    if !store.shared_by_instances() {
        // One process: the whole capacity, whatever else asks.
        for holder in ["a", "b"] {
            let grant = store.lease_share(&ask(holder, 32, 0, LONG)).await.unwrap();
            assert_eq!(grant, ShareGrant::whole(32));
        }
        return;
    }
    let holders = ["a", "b", "c", "d"];
    // Each holder uses all it may, asks again, and so on; the held sum never exceeds 32.
    let mut usable = [0u64; 4];
    let mut held = [0u64; 4];
    for _round in 0..4 {
        for (i, holder) in holders.iter().enumerate() {
            let grant = store
                .lease_share(&ask(holder, 32, usable[i], LONG))
                .await
                .unwrap();
            held[i] = grant.held;
            usable[i] = grant.usable();
            assert!(held.iter().sum::<u64>() <= 32, "{held:?}");
            assert!(grant.held >= grant.usable());
        }
    }
    assert_eq!(usable, [8, 8, 8, 8], "{held:?}");
    // A holder out of work asks for less: the others' fair shares grow, and they get
    // the units once it gave them back.
    store.lease_share(&ask("d", 2, 2, LONG)).await.unwrap();
    for _round in 0..2 {
        for (i, holder) in holders[..3].iter().enumerate() {
            let grant = store
                .lease_share(&ask(holder, 32, usable[i], LONG))
                .await
                .unwrap();
            held[i] = grant.held;
            usable[i] = grant.usable();
        }
    }
    assert_eq!(&usable[..3], &[10, 10, 10], "{held:?}");
    // Another pool is another capacity.
    let other = ShareRequest {
        pool: "run/other",
        ..ask("a", 32, 0, LONG)
    };
    assert_eq!(store.lease_share(&other).await.unwrap().held, 32);
}

async fn a_share_returns_to_the_pool_when_released_or_when_it_runs_out(store: Arc<dyn Store>) {
    if !store.shared_by_instances() {
        store.release_share("run/test", "a").await.unwrap();
        return;
    }
    let short = Duration::from_millis(400);
    let a = store.lease_share(&ask("a", 32, 0, short)).await.unwrap();
    assert_eq!(a.held, 32);
    // "b" wants its half, but "a" holds everything and is not asked again: nothing yet.
    let b = store.lease_share(&ask("b", 32, 0, LONG)).await.unwrap();
    assert_eq!((b.held, b.target), (0, 16));
    // "a" died: its grant runs out and "b" gets all.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b = store.lease_share(&ask("b", 32, 0, LONG)).await.unwrap();
    assert_eq!(b.usable(), 32);
    // Released: free at once.
    store.release_share("run/test", "b").await.unwrap();
    let c = store.lease_share(&ask("c", 32, 0, LONG)).await.unwrap();
    assert_eq!(c.usable(), 32);
}

async fn concurrent_newcomers_never_share_the_same_units(store: Arc<dyn Store>) {
    if !store.shared_by_instances() {
        return;
    }
    let asks = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let holder = format!("h{i}");
            store
                .lease_share(&ask(&holder, 32, 0, LONG))
                .await
                .unwrap()
                .held
        })
    });
    let mut total = 0;
    for ask in asks {
        total += ask.await.unwrap();
    }
    assert!(total <= 32, "{total}");
}

async fn a_budget_paces_every_holder_together(store: Arc<dyn Store>) {
    let take = |amount: f64| BudgetRequest {
        pool: "provider/p/m/requests",
        per_second: 10.0,
        burst: 10.0,
        amount,
    };
    if !store.shared_by_instances() {
        // One process: its own limiters are all there is.
        assert_eq!(
            store.reserve_budget(&take(100.0)).await.unwrap(),
            Duration::ZERO
        );
        return;
    }
    // A full bucket: the burst is free.
    assert_eq!(
        store.reserve_budget(&take(10.0)).await.unwrap(),
        Duration::ZERO
    );
    // Then a block of 5 waits for its refill (0.5 s at 10 a second, less what refilled
    // since the first statement).
    let wait = store.reserve_budget(&take(5.0)).await.unwrap();
    assert!(
        wait > Duration::from_millis(300) && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    // The 5 go unused and are given back: the next 4 wait for their own refill only
    // (0.4 s), not behind the 5 (0.9 s).
    store.reserve_budget(&take(-5.0)).await.unwrap();
    let wait = store.reserve_budget(&take(4.0)).await.unwrap();
    assert!(wait <= Duration::from_millis(400), "{wait:?}");
}

contract!(
    shares_never_sum_above_the_capacity_and_converge_to_fair,
    a_share_returns_to_the_pool_when_released_or_when_it_runs_out,
    concurrent_newcomers_never_share_the_same_units,
    a_budget_paces_every_holder_together,
);
