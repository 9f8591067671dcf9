//! `themis import openai-evals DIR`: evals, runs and output items exported from OpenAI's
//! Evals API (the JSON its list and get endpoints answered, in any `.json`/`.jsonl`
//! files under DIR) recreated in a Themis database under their own ids; each past run
//! becomes a finished Themis run replaying its recorded results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::Value;

use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, EngineError, EvalsConfig, OpenAiEvals, RunControl};

use super::error::{CliError, input};

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    command: ImportCommand,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Evals, runs and output items exported from OpenAI's Evals API.
    OpenaiEvals(OpenAiEvalsArgs),
}

#[derive(Debug, Args)]
struct OpenAiEvalsArgs {
    /// The directory of exported JSON (`.json` and `.jsonl` files, searched recursively).
    dir: PathBuf,
    /// The database the server uses (`sqlite://themis.db`, `postgres://…`).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://themis.db")]
    database: String,
}

/// Largest export file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;

/// A failed read of `path`, kept with its cause.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        what: path.display().to_string(),
        source,
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_objects(path: &Path, out: &mut Vec<Value>) -> Result<(), CliError> {
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    if size > MAX_FILE_BYTES {
        return Err(input(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(value) => themis::engine::collect_exported(value, out),
        Err(_) => {
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let value = serde_json::from_str(line)
                    .map_err(|e| input(format!("{}:{}: not JSON: {e}", path.display(), n + 1)))?;
                themis::engine::collect_exported(value, out);
            }
        }
    }
    Ok(())
}

pub async fn import(args: ImportArgs) -> Result<ExitCode, CliError> {
    let ImportCommand::OpenaiEvals(args) = args.command;
    let mut paths = Vec::new();
    files(&args.dir, &mut paths)?;
    paths.sort();
    let mut objects = Vec::new();
    for path in &paths {
        read_objects(path, &mut objects)?;
    }
    let store = themis::store::connect(&args.database)
        .await
        .map_err(|source| CliError::Open {
            database: args.database.clone(),
            source,
        })?;
    // Replays call no model: the builtin components are all an import needs.
    let engine = Engine::new(
        store,
        Arc::new(Registry::builtin()),
        EngineConfig::default(),
    );
    let evals = OpenAiEvals::new(engine.clone(), EvalsConfig::default());
    let report = evals.import(objects).await.map_err(|e| match e {
        EngineError::Invalid(problems) => input(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => CliError::Engine(other),
    })?;
    for run in &report.to_execute {
        engine
            .execute_with(run, None, RunControl::default())
            .await?;
    }
    println!(
        "imported {} evals and {} runs ({} already there) into {}",
        report.evals, report.runs, report.skipped, args.database
    );
    Ok(ExitCode::SUCCESS)
}
