//! What a run spent, split into generation (the generator's calls) and judging (the
//! judges' calls), overall and per dataset. Kept beside the run's aggregates and
//! updated in the same transaction as the cases it counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CaseRecord, Usage};

/// Spend of a set of cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendPart {
    /// Generation plus judging, in USD.
    pub cost_usd: f64,
    pub generation: Usage,
    pub judging: Usage,
}

impl SpendPart {
    fn add(&mut self, generation: &Usage, judging: &Usage) {
        self.generation.add(generation);
        self.judging.add(judging);
        // Both are on the nano-dollar grid: so is their sum, whatever the order.
        self.cost_usd = ((self.generation.cost_usd + self.judging.cost_usd) * 1e9).round() / 1e9;
    }

    /// The split of one case: its judges' calls, and the rest of what the case spent
    /// (its generator's calls; none for a rejudge, whose candidates were paid for by
    /// the run they come from).
    pub fn of_case(record: &CaseRecord) -> Self {
        let mut judging = Usage::default();
        for judgment in &record.judgments {
            judging.add(&judgment.usage);
        }
        let all = &record.usage;
        let cost = ((all.cost_usd - judging.cost_usd).max(0.0) * 1e9).round() / 1e9;
        let mut generation = Usage {
            requests: all.requests.saturating_sub(judging.requests),
            prompt_tokens: all.prompt_tokens.saturating_sub(judging.prompt_tokens),
            completion_tokens: all
                .completion_tokens
                .saturating_sub(judging.completion_tokens),
            cached_prompt_tokens: all
                .cached_prompt_tokens
                .saturating_sub(judging.cached_prompt_tokens),
            cost_usd: cost,
            price_source: None,
        };
        if generation.requests > 0 || cost > 0.0 {
            let mut sources = Usage::default();
            for candidate in &record.candidates {
                sources.add(&Usage {
                    price_source: candidate.usage.price_source,
                    ..Usage::default()
                });
            }
            generation.price_source = sources.price_source;
        }
        let mut part = SpendPart::default();
        part.add(&generation, &judging);
        part
    }
}

/// Spend of a run: overall and by dataset, and its budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    #[serde(flatten)]
    pub total: SpendPart,
    #[serde(default)]
    pub by_dataset: BTreeMap<String, SpendPart>,
    /// The budget the run executes under (its `budget_usd`, or the operator's cap),
    /// once its first case has reserved against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// The worst-case cost of the cases in flight, reserved against the budget before
    /// they started and released when they are recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved_usd: f64,
    /// Of `cost_usd`, what the cases a retry reused cost: paid by the run retried, not
    /// counted against this run's budget.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reused_usd: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The answer to a reservation against a budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    /// The amount was reserved: the case may start.
    pub granted: bool,
    /// What the run's recorded cases cost it (reused cases aside).
    pub spent_usd: f64,
    /// Reserved for cases in flight, this reservation included when granted.
    pub reserved_usd: f64,
}

/// Rounds to whole nano-dollars (the grid every cost is on).
fn nano(usd: f64) -> f64 {
    (usd * 1e9).round() / 1e9
}

impl Spend {
    /// Reserves `amount` against `budget` when what was spent, what is reserved and
    /// `amount` together stay within it.
    pub fn reserve(&mut self, amount: f64, budget: f64) -> Reservation {
        self.budget_usd = Some(budget);
        let spent = self.paid_usd();
        let granted = spent + self.reserved_usd + amount <= budget;
        if granted {
            self.reserved_usd = nano(self.reserved_usd + amount);
        }
        Reservation {
            granted,
            spent_usd: spent,
            reserved_usd: self.reserved_usd,
        }
    }

    /// What this run paid itself: its spend without the cases reused from another run.
    pub fn paid_usd(&self) -> f64 {
        nano((self.total.cost_usd - self.reused_usd).max(0.0))
    }

    /// Counts a reused case's cost apart (it was observed with the others too).
    pub fn observe_reused(&mut self, record: &CaseRecord) {
        self.reused_usd = nano(self.reused_usd + record.usage.cost_usd);
    }

    /// Releases reservations of cases that were recorded (or abandoned).
    pub fn release(&mut self, amount: f64) {
        self.reserved_usd = nano((self.reserved_usd - amount).max(0.0));
    }

    /// Counts one finished case.
    pub fn observe(&mut self, record: &CaseRecord) {
        let case = SpendPart::of_case(record);
        self.total.add(&case.generation, &case.judging);
        self.by_dataset
            .entry(record.key.dataset_id.clone())
            .or_default()
            .add(&case.generation, &case.judging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_are_released() {
        let mut spend = Spend::default();
        assert!(spend.reserve(0.4, 1.0).granted);
        assert!(spend.reserve(0.4, 1.0).granted);
        let refused = spend.reserve(0.4, 1.0);
        assert!(!refused.granted);
        assert_eq!(refused.reserved_usd, 0.8);
        spend.release(0.4);
        spend.total.cost_usd = 0.3;
        // 0.3 spent + 0.4 reserved + 0.4 asked > 1.
        assert!(!spend.reserve(0.4, 1.0).granted);
        assert!(spend.reserve(0.3, 1.0).granted);
        spend.release(5.0);
        assert_eq!(spend.reserved_usd, 0.0);
        assert_eq!(spend.budget_usd, Some(1.0));
    }
}
