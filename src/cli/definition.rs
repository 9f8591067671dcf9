//! Reading an experiment file for `themis run`: JSON, or YAML for `.yaml`/`.yml`. A
//! dataset may name a file instead of listing its cases, `{"path": "data.jsonl"}` (or
//! `.csv`, with optional `"columns": {"input": "question", ...}`), resolved relative to
//! the experiment file: it is streamed into the run's store as a revision, checked like
//! an upload, and the definition references that revision.

use std::path::Path;

use serde_json::{Map, Value, json};
use themis::engine::{CsvMapping, Engine, EngineError, UploadFormat, UploadLimits};

use super::datasets::{content_type, default_dataset_id, in_cli_terms};
use super::error::{CliError, input};

/// The definition in `file` (`-`: standard input, JSON).
pub fn read_definition(file: &Path) -> Result<Value, CliError> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|source| CliError::Io {
            what: "reading standard input".to_owned(),
            source,
        })?
    } else {
        std::fs::read_to_string(file).map_err(|source| CliError::Io {
            what: format!("reading {}", file.display()),
            source,
        })?
    };
    let yaml = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if yaml {
        serde_yaml_ng::from_str(&text)
            .map_err(|e| input(format!("{} is not valid YAML: {e}", file.display())))
    } else {
        serde_json::from_str(&text)
            .map_err(|e| input(format!("{} is not valid JSON: {e}", file.display())))
    }
}

/// `definition` with each file dataset standing for a stored one of its id: what the
/// definition's checks read before the files are uploaded (into the store the
/// definition itself may choose).
pub fn without_files(definition: &Value) -> Value {
    let mut probe = definition.clone();
    if let Some(datasets) = probe.get_mut("datasets").and_then(Value::as_array_mut) {
        for dataset in datasets.iter_mut() {
            let Some(path) = dataset.get("path").and_then(Value::as_str) else {
                continue;
            };
            let id = match dataset.get("dataset_id") {
                Some(id) => id.clone(),
                None => json!(default_dataset_id(Path::new(path)).unwrap_or_default()),
            };
            *dataset = json!({ "dataset_id": id });
        }
    }
    probe
}

/// Uploads every dataset of `definition` that names a `path` into the engine's store and
/// puts `{"dataset_id", "revision"}` in its place. Paths are relative to `base`.
pub async fn upload_file_datasets(
    engine: &Engine,
    definition: &mut Value,
    base: &Path,
) -> Result<(), CliError> {
    let Some(datasets) = definition.get_mut("datasets").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, dataset) in datasets.iter_mut().enumerate() {
        let Some(map) = dataset.as_object_mut() else {
            continue;
        };
        let Some(path) = map.get("path") else {
            continue;
        };
        let at = format!("datasets[{i}]");
        let path = path
            .as_str()
            .ok_or_else(|| input(format!("{at}.path: must be a string")))?;
        let file = base.join(path);
        let revision = upload(engine, map, &file, &at).await?;
        *dataset = json!({"dataset_id": revision.0, "revision": revision.1});
    }
    Ok(())
}

/// Uploads one dataset file; its `(dataset_id, revision)`.
async fn upload(
    engine: &Engine,
    dataset: &Map<String, Value>,
    file: &Path,
    at: &str,
) -> Result<(String, String), CliError> {
    for key in dataset.keys() {
        if !["dataset_id", "path", "columns"].contains(&key.as_str()) {
            return Err(input(format!(
                "{at}.{key}: unknown field for a dataset file; expected dataset_id, path, columns"
            )));
        }
    }
    let dataset_id = match dataset.get("dataset_id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(input(format!("{at}.dataset_id: must be a string"))),
        None => default_dataset_id(file)?,
    };
    let (_, csv) = content_type(file)?;
    let format = if csv {
        let columns = dataset.get("columns").cloned().unwrap_or(json!({}));
        let mapping: CsvMapping =
            serde_json::from_value(columns).map_err(|e| input(format!("{at}.columns: {e}")))?;
        UploadFormat::Csv(mapping)
    } else {
        if dataset.contains_key("columns") {
            return Err(input(format!("{at}.columns: only CSV files have columns")));
        }
        UploadFormat::Jsonl
    };
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|source| CliError::Io {
            what: format!("{at}.path: opening {}", file.display()),
            source,
        })?;
    let body = tokio_util::io::ReaderStream::new(opened);
    match engine
        .put_dataset(&dataset_id, &format, UploadLimits::default(), body)
        .await
    {
        Ok(outcome) => Ok((dataset_id, outcome.revision().revision.to_string())),
        Err(EngineError::InvalidDataset(details)) => {
            let lines: Vec<String> = details
                .iter()
                .map(|d| {
                    let (path, message) =
                        in_cli_terms(&d.path, &d.message, |param| format!("{at}.columns.{param}"));
                    format!("  {path}: {message}")
                })
                .collect();
            Err(input(format!(
                "{} is invalid:\n{}",
                file.display(),
                lines.join("\n")
            )))
        }
        Err(e) => Err(input(format!("{}: {e}", file.display()))),
    }
}
