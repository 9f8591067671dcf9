//! What a case's model calls may cost before they are made: its generator's samples and
//! its judges, each estimated by the component itself. The worst case is what a budgeted
//! run reserves before a case starts; summed over a run's cases, it is the dry run's
//! estimate.

use std::sync::Arc;

use serde::Serialize;

use crate::components::{Estimate, EstimateRequest, Generator, Judge};
use crate::model::Case;

/// The estimate of one case (or many, summed), generation and judging apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CaseEstimate {
    pub generation: Estimate,
    pub judging: Estimate,
}

impl CaseEstimate {
    pub fn add(&mut self, other: &CaseEstimate) {
        self.generation.add(&other.generation);
        self.judging.add(&other.judging);
    }

    pub fn total(&self) -> Estimate {
        let mut total = self.generation;
        total.add(&self.judging);
        total
    }

    /// The most the case may cost: what a budget reserves for it.
    pub fn worst_case_usd(&self) -> f64 {
        self.generation.cost_high_usd + self.judging.cost_high_usd
    }
}

/// What generating `samples` samples of `case` (when `generator` is given) and judging
/// the output with `judges` may cost. Judges see the generator's completion allowance
/// as the output; without a generator estimate (a local generator, or a rejudge), the
/// output is taken to be as long as `known_output` (approximately, a token per four
/// characters).
pub(crate) async fn estimate_case(
    generator: Option<(&dyn Generator, u32)>,
    judges: &[(String, Arc<dyn Judge>)],
    dataset_id: &str,
    case: &Case,
    known_output: &str,
) -> CaseEstimate {
    let fallback = (known_output.chars().count() as u64).div_ceil(4);
    let mut request = EstimateRequest {
        dataset_id,
        case,
        output_tokens: fallback,
    };
    let mut estimate = CaseEstimate::default();
    if let Some((generator, samples)) = generator
        && let Some(one) = generator.estimate(request).await
    {
        estimate.generation = one.times(u64::from(samples));
        request.output_tokens = one.completion_per_call();
    }
    for (_, judge) in judges {
        if let Some(judging) = judge.estimate(request).await {
            estimate.judging.add(&judging);
        }
    }
    estimate
}
