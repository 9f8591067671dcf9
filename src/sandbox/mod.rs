//! Running untrusted code: one [`Sandbox`] interface, a local bubblewrap backend
//! ([`local`]) and remote services speaking Piston's or SandboxFusion's API ([`remote`]).
//!
//! The operator declares sandboxes by name ([`SandboxSpec`], `themis serve --sandbox`);
//! the server builds them once into [`Sandboxes`], which also holds the bounded pool every
//! execution waits on, and hands that to the components. Runs only name a sandbox and a
//! language; neither can widen the limits the operator set.

mod local;
mod pool;
mod remote;
mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalConfig;
use pool::Pool;
pub use pool::Slot;
pub use spec::{SandboxKind, SandboxSpec};

use crate::egress::Egress;

/// Default executions at once across every sandbox of a server.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Most programs running at once (the local sandbox runs each slot as its own user).
pub const MAX_POOL_SIZE: usize = local::MAX_SLOTS;

/// The limits of one execution. The operator sets them; a run may only lower the wall
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub wall: Duration,
    /// CPU seconds of each process (the wall time bounds the group).
    pub cpu: Duration,
    /// Address space of each process, bytes.
    pub memory_bytes: u64,
    /// Processes and threads at once.
    pub processes: u64,
    /// stdout and stderr together, bytes; more ends the execution.
    pub output_bytes: usize,
    /// Largest file written, and the size of the private tmpfs, bytes.
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(10),
            cpu: Duration::from_secs(10),
            memory_bytes: 512 * 1024 * 1024,
            processes: 32,
            output_bytes: 1024 * 1024,
            file_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The limit an execution ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    WallTime,
    CpuTime,
    Memory,
    Processes,
    Output,
    FileSize,
}

impl LimitHit {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::WallTime => "wall_time",
            LimitHit::CpuTime => "cpu_time",
            LimitHit::Memory => "memory",
            LimitHit::Processes => "processes",
            LimitHit::Output => "output",
            LimitHit::FileSize => "file_size",
        }
    }
}

/// What the operator configured: the sandboxes, the pool and the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub specs: Vec<SandboxSpec>,
    /// Executions at once across every sandbox (1 to 1,024).
    pub pool_size: usize,
    pub limits: Limits,
    pub local: LocalConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            specs: Vec::new(),
            pool_size: DEFAULT_POOL_SIZE,
            limits: Limits::default(),
            local: LocalConfig::default(),
        }
    }
}

/// One program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// A language the sandbox lists in [`Sandbox::languages`].
    pub language: String,
    /// The whole program (one source file).
    pub source: String,
    pub stdin: String,
    /// Wall time for this execution; never above the sandbox's own limit.
    pub timeout: Duration,
}

/// What an execution did. A program that failed, crashed or hit a limit is an
/// execution too; only a sandbox that could not run it at all is a [`SandboxError`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Execution {
    pub stdout: String,
    pub stderr: String,
    /// The exit status; `None` when a signal ended the program.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub limit: Option<LimitHit>,
    /// The compiler's complaint when the program did not compile.
    pub compile_error: Option<String>,
    pub duration: Duration,
}

impl Execution {
    /// Exit status 0, no signal, no limit, compiled.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.limit.is_none() && self.compile_error.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox `{0}` is not configured")]
    Unknown(String),
    #[error("sandbox does not run {0}")]
    Language(String),
    /// The backend could not be reached or answered nonsense; trying again may work.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// The backend failed for a reason retrying will not fix.
    #[error("sandbox failed: {0}")]
    Failed(String),
    /// A declared sandbox cannot be set up (declared twice, a local sandbox without its
    /// programs): refused at startup.
    #[error("{0}")]
    Setup(String),
}

impl SandboxError {
    pub fn retryable(&self) -> bool {
        matches!(self, SandboxError::Unavailable(_))
    }
}

/// A place code runs. Implementations never trust the program: every limit is theirs
/// to enforce (or, for remote services, the service's).
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Languages this sandbox runs, as runs name them.
    fn languages(&self) -> &[String];
    /// Runs one program on a pool slot the caller holds.
    async fn execute(&self, request: &ExecRequest, slot: &Slot) -> Result<Execution, SandboxError>;
}

/// The operator's sandboxes by name and the pool their executions share.
pub struct Sandboxes {
    by_name: BTreeMap<String, Arc<dyn Sandbox>>,
    pool: Pool,
    limits: Limits,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Sandboxes {
    /// No sandbox: code metrics are refused at submission.
    pub fn none() -> Self {
        Sandboxes {
            by_name: BTreeMap::new(),
            pool: Pool::new(1),
            limits: Limits::default(),
        }
    }

    /// Builds the declared sandboxes: remote ones send through `egress` as destinations
    /// the operator declared.
    pub fn build(config: &SandboxConfig, egress: Arc<Egress>) -> Result<Self, SandboxError> {
        let mut by_name: BTreeMap<String, Arc<dyn Sandbox>> = BTreeMap::new();
        for spec in &config.specs {
            if by_name.contains_key(&spec.name) {
                return Err(SandboxError::Setup(format!(
                    "sandbox `{}` is declared twice",
                    spec.name
                )));
            }
            let sandbox: Arc<dyn Sandbox> = match &spec.kind {
                SandboxKind::Local => Arc::new(local::Bubblewrap::new(
                    config.local.clone(),
                    config.limits,
                    spec.languages.clone(),
                )?),
                SandboxKind::Piston { url } | SandboxKind::SandboxFusion { url } => Arc::new(
                    remote::Remote::new(spec, url, config.limits, egress.clone())?,
                ),
            };
            by_name.insert(spec.name.clone(), sandbox);
        }
        Ok(Sandboxes {
            by_name,
            pool: Pool::new(config.pool_size.clamp(1, local::MAX_SLOTS)),
            limits: config.limits,
        })
    }

    /// A set of the caller's own sandboxes (embedders, tests).
    pub fn from_parts(
        sandboxes: impl IntoIterator<Item = (String, Arc<dyn Sandbox>)>,
        limits: Limits,
        pool_size: usize,
    ) -> Self {
        Sandboxes {
            by_name: sandboxes.into_iter().collect(),
            pool: Pool::new(pool_size.max(1)),
            limits,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The languages sandbox `name` runs; `None` if there is no such sandbox.
    pub fn languages(&self, name: &str) -> Option<&[String]> {
        self.by_name.get(name).map(|s| s.languages())
    }

    /// `name [languages]` for each sandbox, for the startup log.
    pub fn listing(&self) -> String {
        self.by_name
            .iter()
            .map(|(name, s)| format!("{name} [{}]", s.languages().join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Runs `request` on sandbox `name` once a pool slot is free. The wall time is
    /// capped at the operator's.
    pub async fn execute(
        &self,
        name: &str,
        request: &ExecRequest,
    ) -> Result<Execution, SandboxError> {
        let sandbox = self
            .by_name
            .get(name)
            .ok_or_else(|| SandboxError::Unknown(name.to_owned()))?;
        if !sandbox.languages().contains(&request.language) {
            return Err(SandboxError::Language(request.language.clone()));
        }
        let mut request = request.clone();
        request.timeout = request.timeout.min(self.limits.wall);
        let slot = self.pool.acquire().await;
        sandbox.execute(&request, &slot).await
    }
}

/// Keeps at most `max` bytes of `bytes` as text, cut at a character boundary.
pub(crate) fn capped_text(bytes: &[u8], max: usize) -> String {
    let mut end = bytes.len().min(max);
    loop {
        match std::str::from_utf8(&bytes[..end]) {
            Ok(text) => return text.to_owned(),
            // Invalid at the cut: step back to the last whole character.
            Err(e) if e.error_len().is_none() => end = e.valid_up_to(),
            // Invalid in the middle: the program's bytes, shown lossily.
            Err(_) => return String::from_utf8_lossy(&bytes[..end]).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_text_cuts_at_a_character_boundary() {
        assert_eq!(capped_text("héllo".as_bytes(), 2), "h");
        assert_eq!(capped_text(b"abc", 10), "abc");
        assert_eq!(capped_text(b"a\xffb", 10), "a\u{fffd}b");
    }
}
