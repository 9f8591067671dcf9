//! Data rows of an eval run: `{"item": {...}, "sample"?: {...}}`, from the request
//! (`file_content`) or an uploaded JSONL file (`file_id`), each checked against the
//! eval's `item_schema`.

use serde_json::Value;

use super::{EngineError, MAX_ROWS, invalid};

/// Most schema violations reported at once.
const MAX_REPORTED: usize = 20;

/// A row as OpenAI defines it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub item: Value,
    pub sample: Option<Value>,
}

fn row_of(value: Value, path: &str) -> Result<Row, EngineError> {
    let Value::Object(mut map) = value else {
        return Err(invalid(
            path,
            "a row is an object `{\"item\": {...}, \"sample\"?: {...}}`",
        ));
    };
    let item = match map.remove("item") {
        Some(item @ Value::Object(_)) => item,
        _ => return Err(invalid(format!("{path}.item"), "must be an object")),
    };
    let sample = match map.remove("sample") {
        None | Some(Value::Null) => None,
        Some(sample @ Value::Object(_)) => Some(sample),
        Some(_) => return Err(invalid(format!("{path}.sample"), "must be an object")),
    };
    Ok(Row { item, sample })
}

/// The rows of a JSONL text (blank lines skipped).
pub(super) fn parse_jsonl(text: &str, path: &str) -> Result<Vec<Row>, EngineError> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(invalid(path, format!("at most {MAX_ROWS} rows")));
        }
        let at = format!("{path}:{}", n + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| invalid(at.clone(), format!("not JSON: {e}")))?;
        rows.push(row_of(value, &at)?);
    }
    Ok(rows)
}

/// The rows of a `file_content` source.
pub(super) fn parse_content(content: &Value, path: &str) -> Result<Vec<Row>, EngineError> {
    let Some(items) = content.as_array() else {
        return Err(invalid(path, "must be a list of rows"));
    };
    if items.len() > MAX_ROWS {
        return Err(invalid(path, format!("at most {MAX_ROWS} rows")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| row_of(v.clone(), &format!("{path}[{i}]")))
        .collect()
}

/// Every row's item must validate against the eval's `item_schema`.
pub(super) fn check_items(schema: &Value, rows: &[Row], path: &str) -> Result<(), EngineError> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| invalid("item_schema", format!("is not a valid JSON Schema: {e}")))?;
    let mut problems = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for error in validator.iter_errors(&row.item).take(3) {
            if problems.len() >= MAX_REPORTED {
                break;
            }
            problems.push(crate::model::FieldError {
                path: format!("{path}[{i}].item{}", error.instance_path()),
                message: format!("does not match the eval's item_schema: {error}"),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Invalid(problems))
    }
}
