//! What `themis run` prints when a run ends: counts, the most common error of its failed
//! cases, and the metric table.

use std::collections::HashMap;

use themis::model::{RunId, RunRecord};
use themis::store::{CaseQuery, Store, StoreError};

/// Most failed records read to find the most common error: enough to name the cause of
/// a broken provider or prompt without reading a huge run whole.
const MAX_FAILED_READ: u64 = 10_000;

/// The error most failed cases share.
#[derive(Debug, Clone, PartialEq)]
pub struct CommonError {
    /// The first message of the group, as recorded.
    pub message: String,
    pub stage: String,
    /// Failed cases whose error is this one (digits aside).
    pub count: u64,
    /// Failed cases read to count it.
    pub read: u64,
}

/// Messages that differ only in numbers (`next probe in 29182 ms`, a line number) are
/// the same error.
fn group_key(stage: &str, message: &str) -> String {
    let mut key = format!("{stage}:");
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                key.push('#');
            }
            in_digits = true;
        } else {
            key.push(c);
            in_digits = false;
        }
    }
    key
}

/// The most common error among the run's failed cases (the first [`MAX_FAILED_READ`]).
pub async fn most_common_error(
    store: &dyn Store,
    run_id: &RunId,
) -> Result<Option<CommonError>, StoreError> {
    // key -> (count, first index seen, stage, message)
    let mut groups: HashMap<String, (u64, u64, String, String)> = HashMap::new();
    let mut query = CaseQuery {
        failed_only: true,
        limit: 1_000,
        ..CaseQuery::default()
    };
    let mut read = 0;
    while read < MAX_FAILED_READ {
        let page = store.case_records(run_id, &query).await?;
        let Some(last) = page.last() else { break };
        query.after_index = Some(last.key.case_index);
        for record in &page {
            let Some(error) = &record.error else { continue };
            let stage = error.stage.as_str().to_owned();
            let entry = groups
                .entry(group_key(&stage, &error.message))
                .or_insert_with(|| (0, read, stage, error.message.clone()));
            entry.0 += 1;
            read += 1;
        }
    }
    Ok(groups
        .into_values()
        // Most cases first; among equals, the one seen first.
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(count, _, stage, message)| CommonError {
            message,
            stage,
            count,
            read,
        }))
}

pub fn duration_ms(record: &RunRecord) -> Option<u64> {
    Some(record.finished_at?.millis_since(record.started_at?))
}

/// The human-readable result of a run.
pub fn summary(record: &RunRecord, common_error: Option<&CommonError>) -> String {
    let mut out = String::new();
    let seconds = duration_ms(record).map_or(0.0, |ms| ms as f64 / 1e3);
    out.push_str(&format!(
        "Run {}: {} in {seconds:.2}s\n",
        record.run_id,
        record.status.as_str()
    ));
    let p = record.progress;
    out.push_str(&format!(
        "Cases: {} total, {} completed, {} failed\n",
        p.total, p.completed, p.failed
    ));
    if let Some(error) = &record.error {
        out.push_str(&format!("Error: {error}\n"));
    }
    if let Some(common) = common_error {
        let of = if common.read < p.failed {
            format!("of the first {} failed cases", common.read)
        } else {
            format!("of {} failed", common.read)
        };
        out.push_str(&format!(
            "Most common error ({} {of}, at {}): {}\n",
            common.count, common.stage, common.message
        ));
    }
    if record.usage.requests > 0 {
        out.push_str(&format!(
            "Usage: {} requests, {} prompt + {} completion tokens\n",
            record.usage.requests, record.usage.prompt_tokens, record.usage.completion_tokens
        ));
    }
    if record.aggregates.metrics.is_empty() {
        return out;
    }
    let width = record
        .aggregates
        .metrics
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(6)
        .max(6);
    out.push_str(&format!(
        "\n{:<width$}  {:>7}  {:<19} {:>6}  {:>8}\n",
        "metric", "mean", "95% CI", "n", "failures"
    ));
    for (metric, aggregate) in &record.aggregates.metrics {
        let s = &aggregate.overall;
        let mean = s.mean.map_or("-".to_owned(), |m| format!("{m:.3}"));
        let ci = s
            .ci95
            .map_or("-".to_owned(), |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"));
        out.push_str(&format!(
            "{metric:<width$}  {mean:>7}  {ci:<19} {:>6}  {:>8}\n",
            s.n, s.failures
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group_key;

    #[test]
    fn messages_that_differ_only_in_numbers_are_one_group() {
        assert_eq!(
            group_key("generation", "breaker open, next probe in 29182 ms"),
            group_key("generation", "breaker open, next probe in 28827 ms"),
        );
        assert_ne!(
            group_key("generation", "timeout"),
            group_key("parsing", "timeout")
        );
    }
}
