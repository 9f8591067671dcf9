//! Why a `themis` command could not do its work (exit code 2): the CLI's one error.
//!
//! The library's errors are kept as they are (their text is what the user reads); what
//! the CLI itself finds wrong is a message in the CLI's terms (flags, file names,
//! `datasets[0].path`), never HTTP syntax.

use themis::components::DeclarationError;
use themis::engine::EngineError;
use themis::sandbox::SandboxError;
use themis::store::StoreError;

use super::config::ConfigError;
use super::serve::ServeError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments, an input file or a definition are wrong: the message says what and
    /// where.
    #[error("{0}")]
    Input(String),
    /// A server could not be reached or answered with an error: the message says which
    /// and quotes its answer.
    #[error("{0}")]
    Server(String),
    /// A local file could not be read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The database given with `--database` could not be opened.
    #[error("opening {database}: {source}")]
    Open {
        database: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Providers(#[from] DeclarationError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value the CLI made could not be written as JSON: a bug.
    #[error("writing JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// A [`CliError::Input`].
pub fn input(message: impl Into<String>) -> CliError {
    CliError::Input(message.into())
}
