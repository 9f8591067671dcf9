//! The generation stage (every candidate of a case, one seed each) and the reduction
//! stage (the candidates reduced to the output that is evaluated).

use std::time::Instant;

use serde_json::Value;

use super::{CaseRun, candidate_seed};
use crate::components::{ComponentError, GenerateRequest, ReduceRequest};
use crate::engine::definition::Pipeline;
use crate::model::{Candidate, EventKind, Reduced, Stage, Usage};

impl CaseRun<'_> {
    pub(super) async fn generate(
        &mut self,
        pipeline: &Pipeline,
        generator_id: &str,
        num_samples: u32,
    ) {
        let observers = self.input.observers;
        let case = self.input.case;
        let key = &self.input.key;
        let stage = self.open_stage(Stage::Generation, generator_id);
        observers.notify(|s| s.before_generate(case, self.ctx()));
        let seeds: Vec<u64> = (0..num_samples).map(|i| candidate_seed(key, i)).collect();
        let requests: Vec<GenerateRequest<'_>> = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| GenerateRequest {
                dataset_id: &key.dataset_id,
                case,
                seed: *seed,
                candidate_index: i as u32,
                ctx: self.input.call_context(&stage.0),
            })
            .collect();
        let started = Instant::now();
        let results = pipeline.generator.generate_samples(&requests).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let mut first_error = None;
        for (i, result) in results.into_iter().enumerate() {
            let candidate_id = format!("cand-{}-{i}", key.case_index);
            let seed = seeds[i];
            let candidate = match result {
                Ok(generation) => {
                    self.record.usage.add(&generation.usage);
                    self.event(EventKind::GenerationCompleted {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        candidate_index: i as u32,
                        candidate_seed: seed,
                        provider_key: generator_id.to_owned(),
                        result: generation.output.clone(),
                    });
                    Candidate {
                        candidate_id,
                        candidate_index: i as u32,
                        seed,
                        output: generation.output,
                        raw_text: generation.raw_text,
                        finish_reason: generation.finish_reason,
                        usage: generation.usage,
                        duration_ms,
                        error: None,
                        transcript: generation.transcript,
                    }
                }
                Err(error) => {
                    first_error.get_or_insert_with(|| error.message.clone());
                    self.event(EventKind::GenerationFailed {
                        case: key.clone(),
                        candidate_id: candidate_id.clone(),
                        error_message: error.message.clone(),
                    });
                    Candidate {
                        candidate_id,
                        candidate_index: i as u32,
                        seed,
                        output: Value::Null,
                        raw_text: None,
                        finish_reason: None,
                        usage: Usage::default(),
                        duration_ms,
                        error: Some(error.message),
                        transcript: None,
                    }
                }
            };
            self.record.candidates.push(candidate);
        }
        observers.notify(|s| s.after_generate(&self.record.candidates, self.ctx()));
        self.close_stage(Stage::Generation, stage, first_error);
    }

    pub(super) async fn reduce(&mut self, pipeline: &Pipeline, reducer_id: &str) {
        let observers = self.input.observers;
        let stage = self.open_stage(Stage::Reduction, reducer_id);
        observers.notify(|s| s.before_reduce(&self.record.candidates, self.ctx()));
        let candidates = &self.record.candidates;
        let key = &self.input.key;
        let request = ReduceRequest {
            dataset_id: &key.dataset_id,
            case: self.input.case,
            seed: key.seed,
            candidates,
            ctx: self.input.call_context(&stage.0),
        };
        let outcome = pipeline
            .reducer
            .reduce_case(request)
            .await
            .and_then(|reduction| {
                let chosen = candidates.get(reduction.chosen).ok_or_else(|| {
                    ComponentError::new(format!(
                        "reducer chose candidate {} of {}",
                        reduction.chosen,
                        candidates.len()
                    ))
                })?;
                Ok(Reduced {
                    candidate_id: chosen.candidate_id.clone(),
                    output: chosen.output.clone(),
                    source_candidate_ids: reduction
                        .sources
                        .iter()
                        .filter_map(|i| candidates.get(*i))
                        .map(|c| c.candidate_id.clone())
                        .collect(),
                    details: reduction.details,
                })
            });
        let key = self.input.key.clone();
        match outcome {
            Ok(reduced) => {
                self.event(EventKind::ReductionCompleted {
                    case: key,
                    candidate_id: reduced.candidate_id.clone(),
                    source_candidate_ids: reduced.source_candidate_ids.clone(),
                    result: reduced.output.clone(),
                });
                observers.notify(|s| s.after_reduce(&reduced, self.ctx()));
                self.record.reduced = Some(reduced);
                self.close_stage(Stage::Reduction, stage, None);
            }
            Err(error) => {
                self.event(EventKind::ReductionFailed {
                    case: key,
                    error_message: error.message.clone(),
                });
                self.close_stage(Stage::Reduction, stage, Some(error.message));
            }
        }
    }
}
