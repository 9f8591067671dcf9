//! CSV uploads: a header row names the columns; each later row is one case.
//!
//! The convention: columns `case_id`, `input` and (optional) `expected_output` fill those
//! fields, every other column goes into `metadata` (empty cells left out). Query
//! parameters remap them: `case_id=id`, `input=question` (several columns,
//! comma-separated, make `input` an object of them), `expected_output=answer`,
//! `metadata=source,tags` (only those columns). Cells are strings; an empty
//! `expected_output` cell means none.

use std::collections::{HashMap, HashSet};

use csv_core::{ReadRecordResult, Reader};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::Problems;

/// How CSV columns map to case fields (the query parameters of an upload).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvMapping {
    pub case_id: Option<String>,
    pub input: Option<String>,
    pub expected_output: Option<String>,
    pub metadata: Option<String>,
}

/// The column positions of a mapping in one header.
#[derive(Debug)]
pub(crate) struct Columns {
    case_id: usize,
    input: Vec<(String, usize)>,
    expected_output: Option<usize>,
    metadata: Vec<(String, usize)>,
}

/// Most columns one mapping parameter may name.
pub(crate) const MAX_MAPPED_COLUMNS: usize = 1_024;

/// A header is quoted in a message only when it is this short; otherwise its size is.
const QUOTED_HEADER_BYTES: usize = 200;

/// A column name is quoted in a message up to this many characters.
const QUOTED_NAME_CHARS: usize = 64;

/// The names of a parameter, each once, in order (`input=q,q` is `input=q`).
fn list(names: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && seen.insert(*n))
        .map(str::to_owned)
        .collect()
}

/// `name` as a message quotes it: at most [`QUOTED_NAME_CHARS`] characters.
fn quoted(name: &str) -> String {
    match name.char_indices().nth(QUOTED_NAME_CHARS) {
        Some((end, _)) => format!("`{}…`", &name[..end]),
        None => format!("`{name}`"),
    }
}

/// The header as a message describes it: its columns when short, else their number.
fn describe(header: &[String]) -> String {
    let joined_len: usize = header.iter().map(|h| h.len() + 2).sum();
    if joined_len <= QUOTED_HEADER_BYTES {
        format!("columns: {}", header.join(", "))
    } else {
        format!("{} columns", header.len())
    }
}

impl CsvMapping {
    /// The mapping's own problems, before any body is read: a parameter naming more
    /// than [`MAX_MAPPED_COLUMNS`] distinct columns.
    pub(crate) fn check(&self, problems: &mut Problems) {
        for (param, names) in [("input", &self.input), ("metadata", &self.metadata)] {
            if let Some(names) = names
                && list(names).len() > MAX_MAPPED_COLUMNS
            {
                problems.push(
                    param,
                    format!("names more than {MAX_MAPPED_COLUMNS} columns"),
                );
            }
        }
    }

    /// Finds the mapped columns in `header`; problems are listed at their query
    /// parameter (or `header`). Work is linear in the header and the mapping.
    pub(crate) fn columns(&self, header: &[String], problems: &mut Problems) -> Option<Columns> {
        let before = problems.count();
        let mut positions: HashMap<&str, usize> = HashMap::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            if positions.insert(name.as_str(), i).is_some() {
                problems.report(|| {
                    (
                        "header".to_owned(),
                        format!("column {} appears twice", quoted(name)),
                    )
                });
            }
        }
        // The first column of a repeated name, as a reader of the header would expect.
        for (i, name) in header.iter().enumerate().rev() {
            positions.insert(name.as_str(), i);
        }
        let mut find = |param: &str, names: Vec<String>, required: bool| {
            let mut found = Vec::new();
            for name in names {
                match positions.get(name.as_str()) {
                    Some(&i) => found.push((name, i)),
                    None if required || self.given(param) => problems.report(|| {
                        (
                            param.to_owned(),
                            format!(
                                "the header has no column {} ({}); name the column with `?{param}=`",
                                quoted(&name),
                                describe(header)
                            ),
                        )
                    }),
                    None => {}
                }
            }
            found
        };
        let case_id = find(
            "case_id",
            vec![self.case_id.clone().unwrap_or_else(|| "case_id".into())],
            true,
        );
        let input = find(
            "input",
            list(self.input.as_deref().unwrap_or("input")),
            true,
        );
        let expected_output = find(
            "expected_output",
            vec![
                self.expected_output
                    .clone()
                    .unwrap_or_else(|| "expected_output".into()),
            ],
            false,
        );
        let used: HashSet<usize> = case_id
            .iter()
            .chain(&input)
            .chain(&expected_output)
            .map(|(_, i)| *i)
            .collect();
        let metadata = match &self.metadata {
            Some(names) => find("metadata", list(names), true),
            None => header
                .iter()
                .enumerate()
                .filter(|(i, _)| !used.contains(i))
                .map(|(i, name)| (name.clone(), i))
                .collect(),
        };
        if input.is_empty() && problems.count() == before {
            problems.push("input", "names no column");
        }
        if problems.count() != before {
            return None;
        }
        Some(Columns {
            case_id: case_id.first()?.1,
            input,
            expected_output: expected_output.first().map(|(_, i)| *i),
            metadata,
        })
    }

    fn given(&self, param: &str) -> bool {
        match param {
            "case_id" => self.case_id.is_some(),
            "input" => self.input.is_some(),
            "expected_output" => self.expected_output.is_some(),
            _ => self.metadata.is_some(),
        }
    }
}

impl Columns {
    /// The case of one row, as JSON for the common case checks.
    pub(crate) fn case(&self, row: &[&str]) -> Value {
        let cell = |i: usize| row.get(i).copied().unwrap_or("");
        let mut case = Map::new();
        case.insert(
            "case_id".into(),
            Value::String(cell(self.case_id).to_owned()),
        );
        let input = match self.input.as_slice() {
            [(_, i)] => Value::String(cell(*i).to_owned()),
            columns => Value::Object(
                columns
                    .iter()
                    .map(|(name, i)| (name.clone(), Value::String(cell(*i).to_owned())))
                    .collect(),
            ),
        };
        case.insert("input".into(), input);
        if let Some(i) = self.expected_output
            && !cell(i).is_empty()
        {
            case.insert("expected_output".into(), Value::String(cell(i).to_owned()));
        }
        let metadata: Map<String, Value> = self
            .metadata
            .iter()
            .filter(|(_, i)| !cell(*i).is_empty())
            .map(|(name, i)| (name.clone(), Value::String(cell(*i).to_owned())))
            .collect();
        if !metadata.is_empty() {
            case.insert("metadata".into(), Value::Object(metadata));
        }
        Value::Object(case)
    }
}

/// Most fields in one CSV record.
const MAX_FIELDS: usize = 16_384;

/// What [`CsvRecords::read`] found in the input it was given.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CsvStep {
    /// Everything given was consumed without completing a record: feed more.
    NeedInput,
    /// A record that starts on this line: its fields are in [`CsvRecords::fields`].
    Record(u64),
    /// A record that starts on this line is longer than the cap.
    TooLong(u64),
    /// The input ended (after `read(&[])`).
    End,
}

/// Pull-style records over pushed chunks (csv-core does the parsing: quoting, escaped
/// quotes, newlines inside quoted fields, CRLF), holding one record at most.
pub(super) struct CsvRecords {
    core: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    outlen: usize,
    endlen: usize,
    max_record_bytes: usize,
    /// Line the current record starts on.
    line: u64,
    /// Fields of the last record read.
    fields: usize,
}

impl CsvRecords {
    pub(super) fn new(max_record_bytes: usize) -> Self {
        CsvRecords {
            core: Reader::new(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            outlen: 0,
            endlen: 0,
            max_record_bytes,
            line: 1,
            fields: 0,
        }
    }

    /// Parses from `input` (empty: the body ended); returns how much was consumed.
    pub(super) fn read(&mut self, input: &[u8]) -> (usize, CsvStep) {
        let mut consumed = 0;
        loop {
            if self.outlen == 0 && self.endlen == 0 {
                self.line = self.core.line();
            }
            let (result, nin, nout, nend) = self.core.read_record(
                &input[consumed..],
                &mut self.out[self.outlen..],
                &mut self.ends[self.endlen..],
            );
            consumed += nin;
            self.outlen += nout;
            self.endlen += nend;
            match result {
                ReadRecordResult::InputEmpty => return (consumed, CsvStep::NeedInput),
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= self.max_record_bytes {
                        return (consumed, CsvStep::TooLong(self.line));
                    }
                    let grown = (self.out.len() * 2).min(self.max_record_bytes);
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    // Empty fields take no output: cap their number as well.
                    if self.ends.len() >= MAX_FIELDS {
                        return (consumed, CsvStep::TooLong(self.line));
                    }
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    self.fields = self.endlen;
                    self.outlen = 0;
                    self.endlen = 0;
                    return (consumed, CsvStep::Record(self.line));
                }
                ReadRecordResult::End => return (consumed, CsvStep::End),
            }
        }
    }

    /// The fields of the record [`CsvRecords::read`] last returned.
    pub(super) fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..self.fields];
        ends.iter().enumerate().map(|(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &self.out[start..end]
        })
    }
}
