//! What a case's model calls may cost, before they are made: the dry run's estimate and
//! the worst case a budgeted run reserves before a case starts.

use serde::Serialize;

use crate::model::Case;

/// What an estimate is asked about: one case, and for judges how long the output they
/// judge may be.
#[derive(Debug, Clone, Copy)]
pub struct EstimateRequest<'a> {
    pub dataset_id: &'a str,
    pub case: &'a Case,
    /// Tokens of the output a judge sees (the generator's completion allowance).
    pub output_tokens: u64,
}

/// Model calls and their tokens and cost, summed over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Estimate {
    pub calls: u64,
    pub prompt_tokens: u64,
    /// The completion allowance: `max_tokens` per choice, or the stated assumption.
    pub completion_tokens: u64,
    /// The prompts at the input price, no completion.
    pub cost_low_usd: f64,
    /// The prompts at the input price plus the whole completion allowance at the output
    /// price: what the calls cost at most, unless prompts are longer than estimated.
    pub cost_high_usd: f64,
    /// Calls to models with no known price (counted at 0).
    pub unpriced_calls: u64,
    /// Calls whose prompts were counted approximately (no tokenizer for the model).
    pub approximate_calls: u64,
}

impl Estimate {
    pub fn add(&mut self, other: &Estimate) {
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_low_usd += other.cost_low_usd;
        self.cost_high_usd += other.cost_high_usd;
        self.unpriced_calls += other.unpriced_calls;
        self.approximate_calls += other.approximate_calls;
    }

    /// This estimate `k` times over.
    pub fn times(&self, k: u64) -> Estimate {
        let f = k as f64;
        Estimate {
            calls: self.calls * k,
            prompt_tokens: self.prompt_tokens * k,
            completion_tokens: self.completion_tokens * k,
            cost_low_usd: self.cost_low_usd * f,
            cost_high_usd: self.cost_high_usd * f,
            unpriced_calls: self.unpriced_calls * k,
            approximate_calls: self.approximate_calls * k,
        }
    }

    /// The completion allowance of one call (what a judge of this output sees at most).
    pub fn completion_per_call(&self) -> u64 {
        self.completion_tokens.checked_div(self.calls).unwrap_or(0)
    }
}
