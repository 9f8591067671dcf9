//! `builtin/best_of_n`: the framework's selector stage. It runs in the reduction slot
//! (`generation.reducer`) and picks the candidate a metric or judge scores highest.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::judges_panel::nested;
use super::{
    ComponentError, Judge, JudgeRequest, Metric, Parser, ReduceRequest, Reducer, Reduction,
    Registry,
};
use crate::model::Candidate;

/// Most parsers applied to each candidate before scoring.
const MAX_SELECTOR_PARSERS: usize = 8;

pub(super) fn register(registry: &mut Registry) {
    registry.register_composite_reducer("builtin/best_of_n", "1", |registry, p| {
        let metric = p.value("metric");
        let judge = p.value("judge");
        let scorer = match (metric, judge) {
            (Some(m), None) => nested(p, m, "metric", |n, params| registry.metric(n, params))
                .map(|(id, _, metric)| (id, Scorer::Metric(metric))),
            (None, Some(j)) => nested(p, j, "judge", |n, params| registry.judge(n, params))
                .map(|(id, _, judge)| (id, Scorer::Judge(judge))),
            _ => {
                p.error("metric", "give exactly one of metric or judge to select by");
                None
            }
        };
        let mut parsers = Vec::new();
        match p.value("parsers") {
            None => {}
            Some(Value::Array(items)) if items.len() <= MAX_SELECTOR_PARSERS => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("parsers[{i}]");
                    if let Some((_, _, parser)) =
                        nested(p, item, &at, |n, params| registry.parser(n, params))
                    {
                        parsers.push(parser);
                    }
                }
            }
            Some(_) => p.error(
                "parsers",
                format!("must be a list of at most {MAX_SELECTOR_PARSERS} parsers"),
            ),
        }
        let (scorer_id, scorer) = scorer.unwrap_or((String::new(), Scorer::None));
        Arc::new(BestOfN {
            scorer_id,
            scorer,
            parsers,
        })
    });
}

enum Scorer {
    Metric(Arc<dyn Metric>),
    Judge(Arc<dyn Judge>),
    /// Only when the params were wrong (the component is then discarded).
    None,
}

/// Scores every generated candidate (after `parsers`, if any) with `metric` or `judge`
/// and chooses the highest score; a tie goes to the earliest candidate, so the choice
/// never depends on timing. Candidates that failed to generate, parse or score are
/// not eligible; none eligible is a reduction error. The details record every
/// candidate's score (or why it had none) and the scorer's id.
///
/// Composition: the selector takes the reducer's place; to vote among the best, score
/// with a judge or metric that already reflects agreement. Metrics that compare with
/// the expected output (exact_match, f1, ...) make best-of-n an oracle upper bound
/// ("best@n"); judges and reference-free metrics (json_schema) make it a deployable
/// selector.
struct BestOfN {
    scorer_id: String,
    scorer: Scorer,
    parsers: Vec<Arc<dyn Parser>>,
}

impl BestOfN {
    async fn score(
        &self,
        request: &ReduceRequest<'_>,
        candidate: &Candidate,
    ) -> Result<f64, String> {
        if let Some(error) = &candidate.error {
            return Err(format!("generation failed: {error}"));
        }
        let mut value = candidate.output.clone();
        for parser in &self.parsers {
            value = parser
                .parse(&value)
                .map_err(|e| format!("parse: {}", e.message))?;
        }
        let score = match &self.scorer {
            Scorer::Metric(metric) => metric
                .score_transcript(&value, request.case, candidate.transcript.as_ref())
                .await
                .map(|s| s.score)
                .map_err(|e| e.message)?,
            Scorer::Judge(judge) => {
                judge
                    .judge(JudgeRequest {
                        dataset_id: request.dataset_id,
                        case: request.case,
                        parsed: &value,
                        seed: candidate.seed,
                        transcript: candidate.transcript.as_ref(),
                        ctx: request.ctx,
                    })
                    .await
                    .map_err(|e| e.message)?
                    .score
            }
            Scorer::None => return Err("no scorer".into()),
        };
        if score.is_finite() {
            Ok(score)
        } else {
            Err(format!("score {score} is not a number"))
        }
    }
}

#[async_trait]
impl Reducer for BestOfN {
    async fn reduce(&self, _candidates: &[Candidate]) -> Result<Reduction, ComponentError> {
        Err(ComponentError::new(
            "builtin/best_of_n needs the case: it is called through reduce_case",
        ))
    }

    async fn reduce_case(&self, request: ReduceRequest<'_>) -> Result<Reduction, ComponentError> {
        let scores =
            futures::future::join_all(request.candidates.iter().map(|c| self.score(&request, c)))
                .await;
        let mut best: Option<(usize, f64)> = None;
        for (i, score) in scores.iter().enumerate() {
            if let Ok(score) = score
                && best.is_none_or(|(_, top)| *score > top)
            {
                best = Some((i, *score));
            }
        }
        let listed: Vec<Value> = request
            .candidates
            .iter()
            .zip(&scores)
            .map(|(c, s)| match s {
                Ok(score) => json!({"candidate_id": c.candidate_id, "score": score}),
                Err(e) => json!({"candidate_id": c.candidate_id, "error": e}),
            })
            .collect();
        let Some((chosen, _)) = best else {
            return Err(ComponentError::new(format!(
                "best_of_n: no candidate could be scored by {}",
                self.scorer_id
            )));
        };
        Ok(Reduction {
            chosen,
            sources: (0..request.candidates.len()).collect(),
            details: json!({"selected_by": self.scorer_id, "scores": listed}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{CallContext, ResolveError};
    use crate::model::Case;

    fn candidate(index: u32, output: Value) -> Candidate {
        Candidate {
            candidate_id: format!("c{index}"),
            candidate_index: index,
            seed: u64::from(index),
            output,
            raw_text: None,
            finish_reason: None,
            usage: Default::default(),
            duration_ms: 0,
            error: None,
            transcript: None,
        }
    }

    fn selector(params: Value) -> Result<Arc<dyn Reducer>, ResolveError> {
        let params = params.as_object().cloned().unwrap_or_default();
        Registry::builtin()
            .reducer("builtin/best_of_n", &params)
            .map(|r| r.component)
    }

    #[tokio::test]
    async fn picks_the_best_scored_and_records_the_scores() {
        let case = Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: json!("the cat sat"),
            metadata: Value::Null,
        };
        let mut failed = candidate(3, Value::Null);
        failed.error = Some("boom".into());
        // f1 against "the cat sat": 1/3, 1, 0.8, and a failed candidate.
        let candidates = [
            candidate(0, json!("a dog sat")),
            candidate(1, json!("the cat sat")),
            candidate(2, json!("the cat")),
            failed,
        ];
        let best = selector(json!({"metric": "builtin/f1"})).unwrap();
        let r = best
            .reduce_case(ReduceRequest {
                dataset_id: "d",
                case: &case,
                seed: 0,
                candidates: &candidates,
                ctx: CallContext::detached(),
            })
            .await
            .unwrap();
        assert_eq!(r.chosen, 1);
        let scores = r.details["scores"].as_array().unwrap();
        assert!((scores[0]["score"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(scores[1]["score"], 1.0);
        assert_eq!(scores[2]["score"], 0.8);
        assert!(scores[3]["error"].as_str().unwrap().contains("boom"));
        assert_eq!(r.details["selected_by"], "builtin/f1");

        // Equal scores: the earliest wins.
        let tie = [candidate(0, json!("x")), candidate(1, json!("y"))];
        let r = best
            .reduce_case(ReduceRequest {
                dataset_id: "d",
                case: &case,
                seed: 0,
                candidates: &tie,
                ctx: CallContext::detached(),
            })
            .await
            .unwrap();
        assert_eq!(r.chosen, 0);
    }

    #[test]
    fn needs_exactly_one_scorer() {
        assert!(selector(json!({})).is_err());
        assert!(
            selector(json!({"metric": "builtin/f1", "judge": "builtin/rubric_keywords"})).is_err()
        );
        let Err(ResolveError::Params(errors)) =
            selector(json!({"metric": {"name": "builtin/f1", "params": {"tokenize": 1}}}))
        else {
            panic!("expected param errors");
        };
        assert_eq!(errors[0].path, "metric.params.tokenize");
    }
}
