//! `builtin/majority_vote` and `builtin/first`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{ComponentError, Reducer, Reduction, Registry};
use crate::model::Candidate;

pub(super) fn register(registry: &mut Registry) {
    registry.register_reducer("builtin/majority_vote", "1", |p| {
        Arc::new(MajorityVote {
            field: p.string("field"),
        })
    });
    registry.register_reducer("builtin/first", "1", |_| Arc::new(First));
}

/// Picks the most frequent output (compared as canonical JSON, or by `field`); a tie
/// goes to the output that appeared first in candidate order, so the choice never
/// depends on timing.
struct MajorityVote {
    field: Option<String>,
}

#[async_trait]
impl Reducer for MajorityVote {
    async fn reduce(&self, candidates: &[Candidate]) -> Result<Reduction, ComponentError> {
        // key -> (count, first index)
        let mut tally: HashMap<String, (usize, usize)> = HashMap::new();
        for (index, candidate) in candidates.iter().enumerate() {
            let value = match &self.field {
                Some(path) => super::text::select(&candidate.output, path)
                    .cloned()
                    .unwrap_or_default(),
                None => candidate.output.clone(),
            };
            let key = crate::model::canonical_json(&value);
            tally.entry(key).or_insert((0, index)).0 += 1;
        }
        let (_, (_, chosen)) = tally
            .into_iter()
            .max_by(|(_, (count_a, first_a)), (_, (count_b, first_b))| {
                count_a.cmp(count_b).then(first_b.cmp(first_a))
            })
            .ok_or_else(|| ComponentError::new("no candidates to vote on"))?;
        Ok(Reduction {
            chosen,
            sources: (0..candidates.len()).collect(),
            details: serde_json::Value::Null,
        })
    }
}

struct First;

#[async_trait]
impl Reducer for First {
    async fn reduce(&self, candidates: &[Candidate]) -> Result<Reduction, ComponentError> {
        if candidates.is_empty() {
            return Err(ComponentError::new("no candidates"));
        }
        Ok(Reduction {
            chosen: 0,
            sources: vec![0],
            details: serde_json::Value::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn candidate(index: u32, output: Value) -> Candidate {
        Candidate {
            candidate_id: format!("c{index}"),
            candidate_index: index,
            seed: 0,
            output,
            raw_text: None,
            finish_reason: None,
            usage: Default::default(),
            duration_ms: 0,
            error: None,
            transcript: None,
        }
    }

    #[tokio::test]
    async fn majority_wins_and_ties_go_to_the_earliest() {
        let vote = MajorityVote { field: None };
        let cs = [
            candidate(0, json!({"answer": "5"})),
            candidate(1, json!({"answer": "4"})),
            candidate(2, json!({"answer": "4"})),
        ];
        assert_eq!(vote.reduce(&cs).await.unwrap().chosen, 1);
        let tie = [
            candidate(0, json!("b")),
            candidate(1, json!("a")),
            candidate(2, json!("a")),
            candidate(3, json!("b")),
        ];
        assert_eq!(vote.reduce(&tie).await.unwrap().chosen, 0);
    }
}
