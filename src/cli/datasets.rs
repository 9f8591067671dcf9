//! `themis datasets push FILE --server URL`: uploads a JSONL or CSV file as a revision of
//! a dataset, streamed from disk (never read whole).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::error::{CliError, input};

#[derive(Debug, Args)]
pub struct DatasetsArgs {
    #[command(subcommand)]
    command: DatasetsCommand,
}

#[derive(Debug, Subcommand)]
enum DatasetsCommand {
    /// Upload a file (`.jsonl`/`.ndjson`, or `.csv`) as a revision of a dataset.
    Push(PushArgs),
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The file to upload.
    file: PathBuf,
    /// The service, e.g. `http://localhost:8080`.
    #[arg(long, env = "THEMIS_SERVER")]
    server: String,
    /// The dataset's id (default: the file's name without its extension).
    #[arg(long)]
    dataset_id: Option<String>,
    /// An API key of the server, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "THEMIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(flatten)]
    columns: CsvColumns,
}

/// CSV column mapping (see `PUT /datasets/{id}`); defaults follow the header convention.
#[derive(Debug, Args, Default)]
pub struct CsvColumns {
    /// CSV: the column holding `case_id`.
    #[arg(long)]
    pub case_id: Option<String>,
    /// CSV: the column (or comma-separated columns) holding `input`.
    #[arg(long)]
    pub input: Option<String>,
    /// CSV: the column holding `expected_output`.
    #[arg(long)]
    pub expected_output: Option<String>,
    /// CSV: the comma-separated columns that go into `metadata`.
    #[arg(long)]
    pub metadata: Option<String>,
}

/// The CSV mapping's parameters, as the server names them in a problem's path.
const CSV_PARAMETERS: [&str; 4] = ["case_id", "input", "expected_output", "metadata"];

/// A dataset problem in the words of the command line: the server names a CSV column
/// mapping by its query parameter (`case_id`, "name the column with `?case_id=`"); here
/// it is what `name` calls it (`--case-id`, or `datasets[0].columns.case_id`).
pub fn in_cli_terms(path: &str, message: &str, name: impl Fn(&str) -> String) -> (String, String) {
    if !CSV_PARAMETERS.contains(&path) {
        return (path.to_owned(), message.to_owned());
    }
    let named = name(path);
    (
        named.clone(),
        message.replace(&format!("`?{path}=`"), &format!("`{named}`")),
    )
}

/// What a file's extension says about its format: `(content type, is CSV)`.
pub fn content_type(file: &Path) -> Result<(&'static str, bool), CliError> {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "ndjson") => Ok(("application/x-ndjson", false)),
        Some("csv") => Ok(("text/csv", true)),
        _ => Err(input(format!(
            "{}: a dataset file ends in .jsonl, .ndjson or .csv",
            file.display()
        ))),
    }
}

/// The dataset id a file stands for when none is given: its name without extension.
pub fn default_dataset_id(file: &Path) -> Result<String, CliError> {
    file.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            input(format!(
                "{}: name the dataset with --dataset-id",
                file.display()
            ))
        })
}

pub async fn datasets(args: DatasetsArgs) -> Result<ExitCode, CliError> {
    match args.command {
        DatasetsCommand::Push(push) => push_file(push).await,
    }
}

async fn push_file(args: PushArgs) -> Result<ExitCode, CliError> {
    let (content_type, csv) = content_type(&args.file)?;
    let dataset_id = match args.dataset_id {
        Some(id) => id,
        None => default_dataset_id(&args.file)?,
    };
    let mut url = reqwest::Url::parse(&args.server)
        .map_err(|e| input(format!("--server {}: {e}", args.server)))?;
    url.path_segments_mut()
        .map_err(|()| input(format!("--server {}: not a base URL", args.server)))?
        .pop_if_empty()
        .extend(["datasets", dataset_id.as_str()]);
    if csv {
        let mut query = url.query_pairs_mut();
        let columns = &args.columns;
        for (name, value) in [
            ("case_id", &columns.case_id),
            ("input", &columns.input),
            ("expected_output", &columns.expected_output),
            ("metadata", &columns.metadata),
        ] {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    let file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|source| CliError::Io {
            what: format!("opening {}", args.file.display()),
            source,
        })?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let mut request = reqwest::Client::new()
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(key) = &args.api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| CliError::Server(super::unreachable(&args.server, &e)))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| CliError::Server(format!("reading the answer of {}: {e}", args.server)))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        let verb = if status == reqwest::StatusCode::CREATED {
            "stored"
        } else {
            "unchanged (already stored)"
        };
        println!(
            "{dataset_id} {}: {} cases, {verb}",
            body["revision"].as_str().unwrap_or("?"),
            body["case_count"]
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut message = format!(
        "the server answered {status}: {}",
        body["error"]["message"].as_str().unwrap_or("")
    );
    for detail in body["error"]["details"].as_array().into_iter().flatten() {
        let (path, text) = in_cli_terms(
            detail["path"].as_str().unwrap_or(""),
            detail["message"].as_str().unwrap_or(""),
            |param| format!("--{}", param.replace('_', "-")),
        );
        message.push_str(&format!("\n  {path}: {text}"));
    }
    Err(CliError::Server(message))
}
