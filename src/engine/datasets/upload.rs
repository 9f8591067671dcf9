//! An upload's body, as it arrives, into one checked revision: JSONL (one case per line)
//! or CSV (see [`super::csv`]). Problems name their line; at most
//! [`crate::model::MAX_DETAILS`] are listed and the rest counted.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::csv::{Columns, CsvMapping, CsvRecords, CsvStep};
use super::ingest::{Ingest, Ingested};
use super::lines::{Line, LineSplitter};
use crate::model::FieldError;
use crate::model::Problems;

/// The body formats an upload may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadFormat {
    /// `application/x-ndjson` (also `application/jsonl`, `application/json-lines`).
    Jsonl,
    /// `text/csv`, with its column mapping.
    Csv(CsvMapping),
}

/// Caps on one upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_body_bytes: u64,
    /// Longest line (JSONL) or record (CSV).
    pub max_case_bytes: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_body_bytes: 1 << 30,
            max_case_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the dataset is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the body exceeds the {0}-byte limit for a dataset upload")]
    TooLarge(u64),
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error("spooling the cases failed: {0}")]
    Spool(#[from] std::io::Error),
}

fn line_path(line: u64, key: &str) -> String {
    if key.is_empty() {
        format!("line {line}")
    } else {
        format!("line {line}.{key}")
    }
}

/// Body chunks waiting for the parser: enough to keep it busy while the next arrive,
/// few enough that a slow parser holds back the client (TCP backpressure), not memory.
const CHUNKS_IN_FLIGHT: usize = 8;

/// What the body reader hands the parser.
enum Piece {
    Chunk(Bytes),
    /// The body ended whole (a parser whose channel closes without it stops).
    End,
}

/// Reads the body to its end, checking every case; the revision only if all were valid.
///
/// The body is read here, on the async workers; parsing, checking, hashing and spooling
/// (CPU and file writes in proportion to the body) run on a blocking thread fed by a
/// bounded channel, so an upload of any size never holds up other requests.
pub(super) async fn ingest_upload<S, E>(
    body: S,
    format: &UploadFormat,
    limits: UploadLimits,
) -> Result<Ingested, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let format = format.clone();
    let parser = tokio::task::spawn_blocking(move || parse_body(receiver, &format, limits));
    let mut received = 0u64;
    let mut body = std::pin::pin!(body);
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failed = Some(UploadError::Body(e.to_string()));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > limits.max_body_bytes {
            failed = Some(UploadError::TooLarge(limits.max_body_bytes));
            break;
        }
        if sender.send(Piece::Chunk(chunk)).await.is_err() {
            // The parser stopped reading (a problem that ends reading): its answer says why.
            break;
        }
    }
    if failed.is_none() {
        // Ignored when the parser has stopped already.
        let _ = sender.send(Piece::End).await;
    }
    drop(sender);
    let parsed = parser
        .await
        .map_err(|e| UploadError::Spool(std::io::Error::other(e.to_string())))?;
    match failed {
        Some(error) => Err(error),
        None => parsed,
    }
}

/// The parser's side of [`ingest_upload`], on a blocking thread.
fn parse_body(
    mut pieces: tokio::sync::mpsc::Receiver<Piece>,
    format: &UploadFormat,
    limits: UploadLimits,
) -> Result<Ingested, UploadError> {
    let mut reader = match format {
        UploadFormat::Jsonl => BodyReader::Jsonl(LineSplitter::new(limits.max_case_bytes)),
        UploadFormat::Csv(mapping) => BodyReader::Csv(Box::new(CsvReader {
            records: CsvRecords::new(limits.max_case_bytes),
            mapping: mapping.clone(),
            columns: None,
        })),
    };
    let mut problems = Problems::default();
    if let UploadFormat::Csv(mapping) = format {
        mapping.check(&mut problems);
        if !problems.is_empty() {
            return Err(UploadError::Invalid(problems.into_details()));
        }
    }
    let mut ingest = Ingest::new(|line| line_path(line, ""))?;
    let mut complete = true;
    loop {
        match pieces.blocking_recv() {
            Some(Piece::Chunk(chunk)) => {
                if !reader.feed(&chunk, &mut ingest, &mut problems)? {
                    complete = false;
                    break;
                }
            }
            Some(Piece::End) => break,
            // The reader failed (its error is the answer).
            None => return Err(UploadError::Body("the body ended early".into())),
        }
    }
    // Reading that stopped at a problem (a header mapping no case) reports that problem
    // alone: the cases it never read are not also "missing".
    if !complete || !reader.finish(&mut ingest, &mut problems)? {
        return Err(UploadError::Invalid(problems.into_details()));
    }
    match ingest.finish(&mut problems, "body")? {
        Some(ingested) => Ok(ingested),
        None => Err(UploadError::Invalid(problems.into_details())),
    }
}

enum BodyReader {
    Jsonl(LineSplitter),
    Csv(Box<CsvReader>),
}

struct CsvReader {
    records: CsvRecords,
    mapping: CsvMapping,
    /// Known once the header row was read.
    columns: Option<Columns>,
}

impl BodyReader {
    /// Takes a chunk; `false` when reading cannot go on (a CSV record too long to
    /// parse past, or a header that maps no case).
    fn feed(
        &mut self,
        chunk: &[u8],
        ingest: &mut Ingest,
        problems: &mut Problems,
    ) -> Result<bool, UploadError> {
        match self {
            BodyReader::Jsonl(lines) => {
                lines.feed(chunk);
                while let Some(line) = lines.next_line() {
                    jsonl_line(line, ingest, problems)?;
                }
                Ok(true)
            }
            BodyReader::Csv(csv) => csv.read(chunk, ingest, problems),
        }
    }

    /// The end of the body; `false` as for [`BodyReader::feed`].
    fn finish(
        &mut self,
        ingest: &mut Ingest,
        problems: &mut Problems,
    ) -> Result<bool, UploadError> {
        match self {
            BodyReader::Jsonl(lines) => {
                if let Some(line) = lines.finish() {
                    jsonl_line(line, ingest, problems)?;
                }
                Ok(true)
            }
            BodyReader::Csv(csv) => csv.read(&[], ingest, problems),
        }
    }
}

impl CsvReader {
    /// Parses `input` (empty: the body ended); `false` when reading cannot go on.
    fn read(
        &mut self,
        mut input: &[u8],
        ingest: &mut Ingest,
        problems: &mut Problems,
    ) -> Result<bool, UploadError> {
        let CsvReader {
            records,
            mapping,
            columns,
        } = self;
        loop {
            let (consumed, step) = records.read(input);
            input = &input[consumed..];
            match step {
                CsvStep::NeedInput | CsvStep::End => return Ok(true),
                CsvStep::TooLong(line) => {
                    problems.push(
                        line_path(line, ""),
                        "the record is longer than the per-case limit; reading stopped here",
                    );
                    return Ok(false);
                }
                CsvStep::Record(line) => {
                    let mut row = Vec::new();
                    for field in records.fields() {
                        match std::str::from_utf8(field) {
                            Ok(text) => row.push(text),
                            Err(_) => {
                                problems.push(line_path(line, ""), "is not valid UTF-8");
                                row.clear();
                                break;
                            }
                        }
                    }
                    if row.is_empty() {
                        continue;
                    }
                    let Some(columns) = columns else {
                        let header: Vec<String> = row.iter().map(|s| s.to_string()).collect();
                        match mapping.columns(&header, problems) {
                            Some(found) => *columns = Some(found),
                            None => return Ok(false),
                        }
                        continue;
                    };
                    let at = |key: &str| line_path(line, key);
                    ingest.push(columns.case(&row), line, problems, &at)?;
                }
            }
        }
    }
}

fn jsonl_line(line: Line, ingest: &mut Ingest, problems: &mut Problems) -> Result<(), UploadError> {
    let (number, text) = match line {
        Line::TooLong(number) => {
            problems.push(line_path(number, ""), "is longer than the per-case limit");
            return Ok(());
        }
        Line::Text(number, text) => (number, text),
    };
    // A byte-order mark may open the first line.
    let text = match text.strip_prefix(b"\xEF\xBB\xBF".as_slice()) {
        Some(rest) if number == 1 => rest,
        _ => &text[..],
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(text) {
        Ok(value) => {
            let at = |key: &str| line_path(number, key);
            ingest.push(value, number, problems, &at)?;
        }
        Err(e) => problems.report(|| (line_path(number, ""), format!("is not valid JSON: {e}"))),
    }
    Ok(())
}
