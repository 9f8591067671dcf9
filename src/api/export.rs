//! `GET /runs/{id}/results?format=csv|jsonl`: every record, streamed page by page.
//!
//! The body is produced one store page at a time through `Body::from_stream`, so memory
//! stays bounded by a page whatever the run's size. The status and headers are sent
//! before the first page: a store failure midway ends the body early (the connection is
//! closed without the final chunk), which clients see as a truncated download.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use crate::model::{CaseRecord, Review, RunId, RunRecord, latest_per_reviewer};
use crate::store::{CaseQuery, ReviewQuery, Store};

/// Records read per store query while exporting.
const EXPORT_PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExportFormat {
    /// One row per case: key, status, one column per metric/judge, output text, error,
    /// the case's cost (generation, judging, total).
    Csv,
    /// One whole case record (as `GET /runs/{id}/results` returns it) per line.
    Jsonl,
}

impl ExportFormat {
    pub(super) fn parse(raw: &str) -> Result<Self, ApiError> {
        match raw {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" => Ok(ExportFormat::Jsonl),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                "format",
                "must be `csv` or `jsonl`",
            )),
        }
    }
}

/// Quotes a CSV field when it holds a separator, quote or line break (RFC 4180).
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// A text cell from the data (ids, outputs, errors, metric ids) that a spreadsheet would
/// read as a formula (`=`, `+`, `-`, `@`, tab or CR first) gets a leading `'`, so opening
/// an export cannot run what a model or a dataset wrote (CSV injection). Numbers we
/// format ourselves are left alone.
fn text_cell(field: String) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field
    }
}

fn csv_row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, &field);
    }
    out.push_str("\r\n");
}

/// The output as text: a JSON string as is, anything else as compact JSON.
fn output_text(record: &CaseRecord) -> String {
    match record.reduced.as_ref().map(|r| &r.output) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn csv_line(
    out: &mut String,
    record: &CaseRecord,
    metrics: &[String],
    reviews: Option<&ExportReviews>,
    latest: &[Review],
) {
    let scores = crate::engine::scores_of(record, metrics);
    let fixed = [
        record.key.case_index.to_string(),
        text_cell(record.key.dataset_id.clone()),
        text_cell(record.key.case_id.clone()),
        record.key.seed.to_string(),
        match record.status {
            crate::model::CaseStatus::Completed => "completed".into(),
            crate::model::CaseStatus::Failed => "failed".into(),
        },
    ];
    let scored = scores
        .into_iter()
        .map(|s| s.map(|v| v.to_string()).unwrap_or_default());
    let tail = [
        output_text(record),
        record
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
    ]
    .map(text_cell);
    // The case's cost, generation apart from judging (numbers we format).
    let spend = crate::model::SpendPart::of_case(record);
    let costs = [
        spend.generation.cost_usd,
        spend.judging.cost_usd,
        spend.cost_usd,
    ]
    .map(|usd| usd.to_string());
    let human = reviews.into_iter().flat_map(|r| {
        r.components
            .iter()
            .map(|id| {
                let values: Vec<f64> = latest
                    .iter()
                    .filter_map(|l| l.scores.get(id))
                    .copied()
                    .collect();
                if values.is_empty() {
                    String::new()
                } else {
                    (values.iter().sum::<f64>() / values.len() as f64).to_string()
                }
            })
            .chain([latest.len().to_string()])
    });
    csv_row(
        out,
        fixed
            .into_iter()
            .chain(scored)
            .chain(tail)
            .chain(costs)
            .chain(human),
    );
}

/// Where an exported run's reviews are, when it has any: each record then carries the
/// latest review of each reviewer (JSONL), or a `human:<id>` column per reviewable
/// component with the mean of those reviewers' values and a `reviewers` count (CSV).
pub(super) struct ExportReviews {
    /// The run the reviews are stored under (its generations' run).
    pub run_id: RunId,
    pub components: Vec<String>,
}

/// Most reviews read for one page of an export (history included).
const MAX_EXPORT_PAGE_REVIEWS: u32 = 50_000;

/// Where the export stream is.
struct Cursor {
    store: Arc<dyn Store>,
    run_id: RunId,
    query: CaseQuery,
    metrics: Vec<String>,
    reviews: Option<ExportReviews>,
    format: ExportFormat,
    header_sent: bool,
    done: bool,
}

async fn next_chunk(mut c: Cursor) -> Option<(Result<Bytes, std::io::Error>, Cursor)> {
    if c.done {
        return None;
    }
    let mut out = String::new();
    if !c.header_sent && c.format == ExportFormat::Csv {
        let fixed = ["case_index", "dataset_id", "case_id", "seed", "status"];
        let header = fixed
            .iter()
            .map(|s| (*s).to_owned())
            .chain(c.metrics.iter().cloned().map(text_cell))
            .chain(
                [
                    "output",
                    "error",
                    "generation_usd",
                    "judging_usd",
                    "cost_usd",
                ]
                .map(str::to_owned),
            )
            .chain(c.reviews.iter().flat_map(|r| {
                r.components
                    .iter()
                    .map(|id| text_cell(format!("human:{id}")))
                    .chain(["reviewers".to_owned()])
            }));
        csv_row(&mut out, header);
    }
    c.header_sent = true;
    let page = match c.store.case_records(&c.run_id, &c.query).await {
        Ok(page) => page,
        Err(error) => {
            tracing::error!(run_id = %c.run_id, %error, "export failed midway");
            c.done = true;
            return Some((Err(std::io::Error::other(error.to_string())), c));
        }
    };
    c.done = page.len() < c.query.limit as usize;
    let reviews = match page_reviews(&c, &page).await {
        Ok(reviews) => reviews,
        Err(error) => {
            tracing::error!(run_id = %c.run_id, %error, "export failed midway");
            c.done = true;
            return Some((Err(std::io::Error::other(error.to_string())), c));
        }
    };
    let none = Vec::new();
    for record in &page {
        let latest = reviews.get(&record.key.case_index).unwrap_or(&none);
        match c.format {
            ExportFormat::Csv => csv_line(&mut out, record, &c.metrics, c.reviews.as_ref(), latest),
            ExportFormat::Jsonl => {
                let line = if latest.is_empty() {
                    serde_json::to_string(record)
                } else {
                    serde_json::to_value(record).and_then(|mut value| {
                        value["reviews"] = serde_json::to_value(latest)?;
                        serde_json::to_string(&value)
                    })
                };
                if let Ok(line) = line {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
    }
    c.query.after_index = page
        .last()
        .map(|r| r.key.case_index)
        .or(c.query.after_index);
    Some((Ok(Bytes::from(out)), c))
}

/// The latest review of each reviewer of the cases of `page`, by case index.
async fn page_reviews(
    c: &Cursor,
    page: &[CaseRecord],
) -> Result<std::collections::HashMap<u64, Vec<Review>>, crate::store::StoreError> {
    let mut out = std::collections::HashMap::new();
    let (Some(reviews), Some(first), Some(last)) = (&c.reviews, page.first(), page.last()) else {
        return Ok(out);
    };
    let query = ReviewQuery {
        cases: first.key.case_index..last.key.case_index.saturating_add(1),
        after: None,
        limit: MAX_EXPORT_PAGE_REVIEWS,
    };
    let mut by_case: std::collections::HashMap<u64, Vec<Review>> = Default::default();
    for review in c.store.reviews(&reviews.run_id, &query).await? {
        by_case.entry(review.case_index).or_default().push(review);
    }
    for (index, history) in by_case {
        out.insert(
            index,
            latest_per_reviewer(&history).into_iter().cloned().collect(),
        );
    }
    Ok(out)
}

/// Streams the records of `run` matching `dataset_id` / `failed_only` in `format`.
pub(super) fn export(
    store: Arc<dyn Store>,
    run: &RunRecord,
    dataset_id: Option<String>,
    failed_only: bool,
    format: ExportFormat,
    reviews: Option<ExportReviews>,
) -> Response {
    let cursor = Cursor {
        store,
        run_id: run.run_id.clone(),
        query: CaseQuery {
            after_index: None,
            dataset_id,
            failed_only,
            limit: EXPORT_PAGE,
        },
        metrics: run.aggregates.metrics.keys().cloned().collect(),
        reviews,
        format,
        header_sent: false,
        done: false,
    };
    let (content_type, extension) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let body = Body::from_stream(futures::stream::unfold(cursor, next_chunk));
    let disposition = format!("attachment; filename=\"{}.{extension}\"", run.run_id);
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut out = String::new();
        csv_row(
            &mut out,
            [
                "plain".to_owned(),
                "a,b".to_owned(),
                "say \"hi\"".to_owned(),
                "two\nlines".to_owned(),
                String::new(),
            ],
        );
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        for risky in ["=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(text_cell(risky.to_owned()), format!("'{risky}"));
        }
        for safe in ["", "plain", "1-1", "a=b", " =x", "'quoted"] {
            assert_eq!(text_cell(safe.to_owned()), safe);
        }
    }
}
