//! Limits shared by every instance on one database: shares of a capacity (a run's
//! `concurrency`, a provider's `max_concurrency`) leased per holder, and rate budgets
//! (requests or tokens per minute) reserved in blocks. A store that serves one process
//! answers locally: the holder gets the whole capacity and no budget wait.

use crate::model::ShareGrant;

/// The holders' fair shares of `capacity` (water-filling): each gets what it wants when
/// everything wanted fits, else every holder wanting more than an equal level gets that
/// level (holders wanting less leave the rest to the others). The sum never exceeds
/// `capacity`, and all of it is given while some holder wants more.
pub(super) fn fair_shares(capacity: u64, wants: &[u64]) -> Vec<u64> {
    let mut shares = vec![0; wants.len()];
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| wants[i]);
    let mut left = capacity;
    let mut holders = wants.len() as u64;
    let mut unmet = Vec::new();
    for &i in &order {
        let level = left / holders.max(1);
        if wants[i] <= level {
            shares[i] = wants[i];
            left -= wants[i];
        } else {
            shares[i] = level;
            left -= level;
            unmet.push(i);
        }
        holders -= 1;
    }
    // What integer division left over, one each to holders wanting more, in order.
    let given: u64 = shares.iter().sum();
    let mut rest = capacity.saturating_sub(given);
    unmet.sort_unstable();
    for i in unmet {
        if rest == 0 {
            break;
        }
        if shares[i] < wants[i] {
            shares[i] += 1;
            rest -= 1;
        }
    }
    shares
}

/// The grant of a holder whose fair share is `target`, that held `old` (zero if its
/// grant ran out), uses `in_use`, while the other holders hold `others`: never more than
/// what the others leave, never less than what it uses and still held.
pub(super) fn next_grant(
    capacity: u64,
    others: u64,
    target: u64,
    old: u64,
    in_use: u64,
) -> ShareGrant {
    let free = capacity.saturating_sub(others);
    // A live grant fits beside the others' (`old <= free`): keeping it breaks nothing.
    let held = target.min(free).max(in_use.min(old));
    ShareGrant { held, target }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares_fill_to_a_level_and_never_exceed_the_capacity() {
        assert_eq!(fair_shares(32, &[32, 32, 32, 32]), vec![8, 8, 8, 8]);
        assert_eq!(fair_shares(32, &[2, 32, 32]), vec![2, 15, 15]);
        assert_eq!(fair_shares(10, &[10, 10, 10]), vec![3, 3, 4]);
        assert_eq!(fair_shares(32, &[5, 6]), vec![5, 6]);
        assert_eq!(fair_shares(0, &[5]), vec![0]);
        for wants in [vec![7, 1, 9, 30, 2], vec![100; 7], vec![0, 0, 3]] {
            for capacity in [0, 1, 5, 17, 64] {
                let shares = fair_shares(capacity, &wants);
                assert!(shares.iter().sum::<u64>() <= capacity);
                assert!(shares.iter().zip(&wants).all(|(s, w)| s <= w));
            }
        }
    }

    #[test]
    fn a_grant_keeps_what_is_in_use_and_takes_only_what_is_free() {
        // Alone: everything.
        assert_eq!(next_grant(32, 0, 32, 0, 0).held, 32);
        // A newcomer gets nothing until the holder above its share gives back.
        assert_eq!(next_grant(32, 32, 16, 0, 0).held, 0);
        // The holder above its share keeps what it uses, not more.
        let grant = next_grant(32, 0, 16, 32, 32);
        assert_eq!((grant.held, grant.usable()), (32, 16));
        assert_eq!(next_grant(32, 0, 16, 32, 20).held, 20);
        assert_eq!(next_grant(32, 0, 16, 32, 10).held, 16);
        // A grant that ran out while others took the pool: only what is free.
        assert_eq!(next_grant(32, 30, 16, 0, 10).held, 2);
    }
}
