//! Command-line interface of the `themis` binary: `themis run` (one-call local
//! evaluation), `themis serve`, `themis compare` and `themis datasets`. It lives with the
//! binary, not in the library: it is a program built on the library's exports.

mod compare;
mod config;
mod datasets;
mod definition;
mod error;
mod import;
mod listen;
mod log_writer;
mod run;
mod serve;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use error::CliError;

pub use run::RunArgs;
pub use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "themis",
    version,
    about = "Evaluation service for LLM and model outputs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment in-process and print a summary.
    Run(RunArgs),
    /// Start the HTTP service.
    Serve(Box<ServeArgs>),
    /// Compare two runs case by case (exit 1 on regression with --fail-on-regression).
    Compare(compare::CompareArgs),
    /// Datasets on a server: `themis datasets push FILE --server URL`.
    Datasets(datasets::DatasetsArgs),
    /// Bring history from elsewhere: `themis import openai-evals DIR`.
    Import(import::ImportArgs),
}

/// A request to a server that failed before any answer, in plain words: "connection
/// refused" rather than the HTTP client's chain of wrappers.
fn unreachable(server: &str, error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            let what = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is `themis serve` running there?)".to_owned()
                }
                std::io::ErrorKind::TimedOut => "timed out".to_owned(),
                _ => io.to_string(),
            };
            return format!("cannot reach {server}: {what}");
        }
        source = cause.source();
    }
    if error.is_timeout() {
        return format!("cannot reach {server}: timed out");
    }
    if error.is_connect() {
        return format!("cannot reach {server}: cannot connect");
    }
    format!("asking {server}: {error}")
}

/// Runs the CLI; returns the process exit code (0 completed, 1 run failed or
/// cancelled, 2 invalid input).
pub async fn main(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Serve(args) => serve::serve(*args).await.map_err(CliError::from),
        Command::Compare(args) => compare::compare(args).await,
        Command::Datasets(args) => datasets::datasets(args).await,
        Command::Import(args) => import::import(args).await,
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        ExitCode::from(2)
    })
}
