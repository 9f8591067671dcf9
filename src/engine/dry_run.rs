//! A dry run: an experiment validated as `POST /runs` would (datasets resolved, stored
//! ones looked up), and the estimate of what executing it would call and cost — without
//! storing anything or calling any model.
//!
//! Each case is estimated by the run's own components ([`estimate_case`]'s parts): the
//! prompts rendered from the case and counted with the model's tokenizer (OpenAI model
//! families) or approximately, the completion from `max_tokens` (or the assumption of
//! 256 tokens a choice). A case's estimate is the same for every seed. The first
//! [`MAX_EXACT_CASES`] cases are estimated one by one; the rest are taken to cost
//! what those did on average.

use std::collections::BTreeMap;

use serde::Serialize;

use super::definition::ExperimentRequest;
use crate::components::{Estimate, EstimateRequest};
use crate::model::Case;

/// Cases rendered and counted one by one in a dry run; beyond, extrapolated.
pub const MAX_EXACT_CASES: u64 = 1_000;

/// What executing an experiment would do and cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DryRun {
    /// Always `true`: an invalid definition is an error, as `POST /runs` answers it.
    pub valid: bool,
    /// Work items: every case once per seed.
    pub cases: u64,
    /// Cases by dataset (before seeds).
    pub datasets: BTreeMap<String, u64>,
    pub seeds: u64,
    /// Candidates generated per case (`candidate_policy.num_samples`).
    pub samples_per_case: u32,
    /// The generator's calls.
    pub generation: Estimate,
    /// Every judge's calls (a panel's are its members').
    pub judging: Estimate,
    /// By judge id.
    pub judges: BTreeMap<String, Estimate>,
    /// Generation and judging together.
    pub total: Estimate,
    /// Cases estimated one by one (the rest extrapolated from their mean).
    pub estimated_cases: u64,
    /// What the estimate takes for granted.
    pub assumptions: Vec<String>,
}

/// Estimates one case and adds it (`seeds` times) to the totals.
pub(super) struct Tally<'a> {
    request: &'a ExperimentRequest,
    seeds: u64,
    generation: Estimate,
    judges: Vec<Estimate>,
    exact: u64,
}

impl<'a> Tally<'a> {
    pub(super) fn new(request: &'a ExperimentRequest) -> Self {
        Tally {
            request,
            seeds: request.experiment.seeds.len() as u64,
            generation: Estimate::default(),
            judges: vec![Estimate::default(); request.pipeline.evaluators.judges.len()],
            exact: 0,
        }
    }

    /// Whether more cases are estimated one by one.
    pub(super) fn wants_more(&self) -> bool {
        self.exact < MAX_EXACT_CASES
    }

    pub(super) async fn add(&mut self, dataset_id: &str, case: &Case) {
        let pipeline = &self.request.pipeline;
        let samples = self
            .request
            .experiment
            .generation
            .candidate_policy
            .num_samples;
        let mut request = EstimateRequest {
            dataset_id,
            case,
            output_tokens: (case.expected_output.to_string().chars().count() as u64).div_ceil(4),
        };
        if let Some(one) = pipeline.generator.estimate(request).await {
            self.generation
                .add(&one.times(u64::from(samples) * self.seeds));
            request.output_tokens = one.completion_per_call();
        }
        for ((_, judge), total) in pipeline.evaluators.judges.iter().zip(&mut self.judges) {
            if let Some(estimate) = judge.estimate(request).await {
                total.add(&estimate.times(self.seeds));
            }
        }
        self.exact += 1;
    }

    /// The dry run of `counts` cases by dataset, extrapolating past the exact ones.
    pub(super) fn finish(self, counts: BTreeMap<String, u64>) -> DryRun {
        let all: u64 = counts.values().sum();
        let scale = |e: &Estimate| extrapolate(e, self.exact, all);
        let generation = scale(&self.generation);
        let mut judging = Estimate::default();
        let mut judges = BTreeMap::new();
        for ((id, _), estimate) in self
            .request
            .pipeline
            .evaluators
            .judges
            .iter()
            .zip(&self.judges)
        {
            let estimate = scale(estimate);
            judging.add(&estimate);
            judges.insert(id.clone(), estimate);
        }
        let mut total = generation;
        total.add(&judging);
        let mut assumptions = vec![
            "completion tokens: each call's max_tokens, or 256 a choice where none is set"
                .to_owned(),
            "cost_low_usd: the prompts alone at the input price; cost_high_usd: plus the \
             whole completion allowance at the output price; cached prompts and the \
             response cache would make either lower"
                .to_owned(),
            "judges: the output they judge is as long as the generator's completion \
             allowance (or the expected output, for a generator that calls no model)"
                .to_owned(),
        ];
        if total.approximate_calls > 0 {
            assumptions.push(
                "prompts of models without a known tokenizer: a token per four characters"
                    .to_owned(),
            );
        }
        if total.unpriced_calls > 0 {
            assumptions.push(
                "calls to models with no price (not in the price tables, no `price` \
                 param) count as free"
                    .to_owned(),
            );
        }
        if self.exact < all {
            assumptions.push(format!(
                "the first {} cases were estimated one by one; the other {} are taken to \
                 cost their mean",
                self.exact,
                all - self.exact
            ));
        }
        DryRun {
            valid: true,
            cases: all * self.seeds,
            datasets: counts,
            seeds: self.seeds,
            samples_per_case: self
                .request
                .experiment
                .generation
                .candidate_policy
                .num_samples,
            generation,
            judging,
            judges,
            total,
            estimated_cases: self.exact,
            assumptions,
        }
    }
}

/// `estimate` of `exact` cases, scaled to `all`.
fn extrapolate(estimate: &Estimate, exact: u64, all: u64) -> Estimate {
    if exact == 0 || exact >= all {
        return *estimate;
    }
    let ratio = all as f64 / exact as f64;
    let count = |n: u64| (n as f64 * ratio).round() as u64;
    Estimate {
        calls: count(estimate.calls),
        prompt_tokens: count(estimate.prompt_tokens),
        completion_tokens: count(estimate.completion_tokens),
        cost_low_usd: estimate.cost_low_usd * ratio,
        cost_high_usd: estimate.cost_high_usd * ratio,
        unpriced_calls: count(estimate.unpriced_calls),
        approximate_calls: count(estimate.approximate_calls),
    }
}
