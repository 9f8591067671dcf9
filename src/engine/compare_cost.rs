//! The cost side of a comparison: what each run spent (its recorded cases, generation
//! and judging apart, by dataset) and the difference, reported beside the score deltas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{RunRecord, SpendPart};

/// Baseline and candidate spend of one slice, and candidate minus baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostDelta {
    pub baseline_usd: f64,
    pub candidate_usd: f64,
    pub delta_usd: f64,
}

impl CostDelta {
    fn of(baseline: f64, candidate: f64) -> Self {
        CostDelta {
            baseline_usd: baseline,
            candidate_usd: candidate,
            delta_usd: ((candidate - baseline) * 1e9).round() / 1e9,
        }
    }
}

/// What the two runs spent: overall, generation, judging, and by dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostComparison {
    #[serde(flatten)]
    pub total: CostDelta,
    pub generation: CostDelta,
    pub judging: CostDelta,
    pub by_dataset: BTreeMap<String, CostDelta>,
}

impl CostComparison {
    pub(crate) fn of(baseline: &RunRecord, candidate: &RunRecord) -> Self {
        let (b, c) = (&baseline.aggregates.spend, &candidate.aggregates.spend);
        let none = SpendPart::default();
        let datasets = b.by_dataset.keys().chain(c.by_dataset.keys());
        let by_dataset = datasets
            .map(|id| {
                let bd = b.by_dataset.get(id).unwrap_or(&none);
                let cd = c.by_dataset.get(id).unwrap_or(&none);
                (id.clone(), CostDelta::of(bd.cost_usd, cd.cost_usd))
            })
            .collect();
        CostComparison {
            total: CostDelta::of(b.total.cost_usd, c.total.cost_usd),
            generation: CostDelta::of(b.total.generation.cost_usd, c.total.generation.cost_usd),
            judging: CostDelta::of(b.total.judging.cost_usd, c.total.judging.cost_usd),
            by_dataset,
        }
    }

    /// One sentence for the text and Markdown reports; `None` when neither run spent.
    pub(crate) fn sentence(&self) -> Option<String> {
        let t = &self.total;
        (t.baseline_usd > 0.0 || t.candidate_usd > 0.0).then(|| {
            format!(
                "Cost: ${:.6} (candidate) vs ${:.6} (baseline), delta {:+.6} USD \
                 (generation {:+.6}, judging {:+.6}).",
                t.candidate_usd,
                t.baseline_usd,
                t.delta_usd,
                self.generation.delta_usd,
                self.judging.delta_usd
            )
        })
    }
}
