//! The local sandbox: every execution in a fresh bubblewrap (`bwrap`) container.
//!
//! What the program sees: new user, PID, network, IPC, UTS and cgroup namespaces (no
//! network at all, only its own processes in `/proc`); read-only binds of `/usr/bin`,
//! `/usr/lib`, `/usr/lib64` and `/usr/include` (the interpreter, the compiler and their
//! libraries) and nothing else of the host; its source read-only under `/src`; a
//! private, size-limited tmpfs at `/tmp` as the only writable place; an empty
//! environment. bwrap itself starts with an empty environment and, when the server is
//! root, as a user of its own per pool slot, so the process limit is the program's alone.
//!
//! Limits: `setrlimit` before bwrap starts (inherited by everything inside: CPU seconds,
//! address space, processes, file size, no core dumps), the wall time and the output cap
//! enforced here. Any limit kills bwrap's whole process group; the PID namespace then
//! takes every process the program started with it, background ones included.

use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ExecRequest, Execution, LimitHit, Limits, Sandbox, SandboxError, Slot};

/// The languages the local sandbox knows how to run.
pub(super) const LOCAL_LANGUAGES: &[&str] = &["python", "c"];
/// Host directories bound read-only (when they exist): the interpreter, compiler,
/// linker, their libraries and the C headers.
const READ_ONLY: &[&str] = &["/usr/bin", "/usr/lib", "/usr/lib64", "/usr/include"];
/// The compiler's exit status when the program did not compile (never the program's:
/// the program does not run then).
const COMPILE_FAILED: i32 = 125;
/// Marks the compiler's output on stderr.
const COMPILE_MARKER: &str = "themis: compilation failed\n";
/// Largest source or stdin handed to a program, bytes.
const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Processes bwrap itself needs besides the program's (its monitor and init).
const BWRAP_PROCESSES: u64 = 3;

/// Where the local sandbox finds its tools, and the users it runs programs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    pub bwrap: PathBuf,
    pub python: PathBuf,
    pub cc: PathBuf,
    /// Slot `i` runs as user `uid_base + i` when the server is root: a range no files
    /// belong to. `None` picks a random range per server, so servers sharing a machine
    /// never share a user (nor its process limit).
    pub uid_base: Option<u32>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            python: PathBuf::from("/usr/bin/python3"),
            cc: PathBuf::from("/usr/bin/gcc"),
            uid_base: None,
        }
    }
}

pub(super) struct Bubblewrap {
    config: LocalConfig,
    limits: Limits,
    languages: Vec<String>,
    /// Slot `i` runs as user `uid_base + i` (the server is root).
    uid_base: Option<u32>,
}

impl Bubblewrap {
    pub(super) fn new(
        config: LocalConfig,
        limits: Limits,
        languages: Vec<String>,
    ) -> Result<Self, SandboxError> {
        let mut needed = vec![("bubblewrap", &config.bwrap)];
        if languages.iter().any(|l| l == "python") {
            needed.push(("python3", &config.python));
        }
        if languages.iter().any(|l| l == "c") {
            needed.push(("a C compiler", &config.cc));
        }
        for (what, path) in needed {
            if !path.is_file() {
                return Err(SandboxError::Setup(format!(
                    "the local sandbox needs {what} at {} (Debian: apt-get install bubblewrap python3 gcc)",
                    path.display()
                )));
            }
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let uid_base = root.then(|| config.uid_base.unwrap_or_else(random_uid_base));
        Ok(Bubblewrap {
            config,
            limits,
            languages,
            uid_base,
        })
    }

    /// The bwrap command line for one program.
    fn arguments(&self, language: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]
        .map(str::to_owned)
        .to_vec();
        for dir in READ_ONLY {
            if Path::new(dir).is_dir() {
                args.extend(["--ro-bind".into(), (*dir).into(), (*dir).into()]);
            }
        }
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            args.extend(["--symlink".into(), target.into(), link.into()]);
        }
        let source = match language {
            "c" => "/src/main.c",
            _ => "/src/main.py",
        };
        args.extend(
            [
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "--size",
                &self.limits.file_bytes.to_string(),
                "--tmpfs",
                "/tmp",
                "--chdir",
                "/tmp",
                // fd 3: the source, copied into a read-only file.
                "--ro-bind-data",
                "3",
                source,
                "--remount-ro",
                "/",
                "--setenv",
                "PATH",
                "/usr/bin",
                "--setenv",
                "HOME",
                "/tmp",
                "--setenv",
                "TMPDIR",
                "/tmp",
                "--setenv",
                "LANG",
                "C.UTF-8",
                "--",
            ]
            .map(str::to_owned),
        );
        match language {
            "c" => {
                let cc = self.config.cc.display();
                args.extend([
                    "/bin/sh".into(),
                    "-c".into(),
                    format!(
                        "{cc} -O1 -o /tmp/main {source} -lm 2>/tmp/cc.err || {{ printf '{}' >&2; cat /tmp/cc.err >&2; exit {COMPILE_FAILED}; }}; exec /tmp/main",
                        COMPILE_MARKER.replace('\n', "\\n")
                    ),
                ]);
            }
            _ => args.extend([
                self.config.python.display().to_string(),
                "-I".into(),
                source.into(),
            ]),
        }
        args
    }
}

/// Most pool slots with users of their own; the random ranges are this far apart.
pub(super) const MAX_SLOTS: usize = 1024;

/// A random range of [`MAX_SLOTS`] users between 1,000,000,000 and 2^31 (user
/// namespaces refuse higher ids), far above the users of any real system.
fn random_uid_base() -> u32 {
    let random = uuid::Uuid::new_v4().as_u128() as u32 % 1_120_000;
    1_000_000_000 + random * MAX_SLOTS as u32
}

/// An unlinked file holding `content`, rewound: handed to the child as an fd.
fn content_file(content: &str) -> Result<std::fs::File, SandboxError> {
    let failed = |e: std::io::Error| SandboxError::Failed(format!("temporary file: {e}"));
    let mut file = tempfile::tempfile().map_err(failed)?;
    file.write_all(content.as_bytes()).map_err(failed)?;
    file.rewind().map_err(failed)?;
    Ok(file)
}

fn kill_group(pgid: i32) {
    // SAFETY: kill has no memory preconditions; a negative pid names the group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Reads `reader` to its end, keeping at most `cap` bytes; past `cap` the process
/// group is killed (a program printing forever would otherwise run to its wall time).
async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize, pgid: i32) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, false),
            Ok(n) if kept.len() + n > cap => {
                let room = cap - kept.len();
                kept.extend_from_slice(&chunk[..room]);
                kill_group(pgid);
                return (kept, true);
            }
            Ok(n) => kept.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Limits set in the child between fork and exec, inherited by bwrap and the program.
fn rlimits(limits: &Limits) -> [(libc::__rlimit_resource_t, u64, u64); 6] {
    let cpu = limits.cpu.as_secs().max(1);
    [
        // SIGXCPU at the soft limit, SIGKILL a second later.
        (libc::RLIMIT_CPU, cpu, cpu + 1),
        (libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (
            libc::RLIMIT_NPROC,
            limits.processes + BWRAP_PROCESSES,
            limits.processes + BWRAP_PROCESSES,
        ),
        (libc::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_NOFILE, 256, 256),
    ]
}

#[async_trait]
impl Sandbox for Bubblewrap {
    fn languages(&self) -> &[String] {
        &self.languages
    }

    async fn execute(&self, request: &ExecRequest, slot: &Slot) -> Result<Execution, SandboxError> {
        if !LOCAL_LANGUAGES.contains(&request.language.as_str()) {
            return Err(SandboxError::Language(request.language.clone()));
        }
        if request.source.len() > MAX_INPUT_BYTES || request.stdin.len() > MAX_INPUT_BYTES {
            return Err(SandboxError::Failed(format!(
                "source and stdin are limited to {MAX_INPUT_BYTES} bytes each"
            )));
        }
        let source = content_file(&request.source)?;
        let stdin = content_file(&request.stdin)?;
        let source_fd = source.as_raw_fd();
        let mut command = tokio::process::Command::new(&self.config.bwrap);
        command
            .args(self.arguments(&request.language))
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(base) = self.uid_base {
            let id = base.saturating_add(slot.index() as u32);
            command.uid(id).gid(id);
        }
        let limits = rlimits(&self.limits);
        // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, dup2,
        // fcntl) on values computed before the fork.
        unsafe {
            command.pre_exec(move || {
                for (resource, soft, hard) in limits {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if source_fd == 3 {
                    // dup2 onto itself keeps close-on-exec set.
                    if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(source_fd, 3) != 3 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| SandboxError::Failed(format!("starting bwrap: {e}")))?;
        drop(source);
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| SandboxError::Failed("bwrap exited at once".into()))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            kill_group(pgid);
            return Err(SandboxError::Failed(
                "bwrap's output pipes are missing".into(),
            ));
        };
        let cap = self.limits.output_bytes;
        let finished = async {
            tokio::join!(
                read_capped(stdout, cap, pgid),
                read_capped(stderr, cap, pgid),
                child.wait()
            )
        };
        let outcome = tokio::time::timeout(request.timeout, finished).await;
        let mut limit = None;
        let ((stdout, out_capped), (stderr, err_capped), status) = match outcome {
            Ok(done) => done,
            Err(_) => {
                limit = Some(LimitHit::WallTime);
                kill_group(pgid);
                // The pipes close once the namespace is gone; what was printed is lost,
                // which only the program's own score pays for.
                let status = child.wait().await;
                ((Vec::new(), false), (Vec::new(), false), status)
            }
        };
        // Killed or not, nothing of the group may outlive the execution.
        kill_group(pgid);
        let status = status.map_err(|e| SandboxError::Failed(format!("waiting for bwrap: {e}")))?;
        if out_capped || err_capped {
            limit.get_or_insert(LimitHit::Output);
        }
        let mut execution = Execution {
            stdout: super::capped_text(&stdout, cap),
            stderr: super::capped_text(&stderr, cap),
            duration: started.elapsed(),
            ..Default::default()
        };
        interpret_status(&mut execution, status, limit);
        Ok(execution)
    }
}

/// Fills in exit code, signal and the limit hit. bwrap reports a program killed by
/// signal N as exit status 128 + N.
fn interpret_status(
    execution: &mut Execution,
    status: std::process::ExitStatus,
    limit: Option<LimitHit>,
) {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code();
    let signal = status
        .signal()
        .or_else(|| code.filter(|c| (129..=192).contains(c)).map(|c| c - 128));
    if code == Some(COMPILE_FAILED)
        && let Some(message) = execution.stderr.strip_prefix(COMPILE_MARKER)
    {
        execution.compile_error = Some(message.to_owned());
    }
    execution.signal = signal;
    execution.exit_code = if signal.is_some() { None } else { code };
    execution.limit = limit.or_else(|| match signal {
        Some(libc::SIGXCPU) => Some(LimitHit::CpuTime),
        Some(libc::SIGXFSZ) => Some(LimitHit::FileSize),
        _ if execution.stderr.contains("MemoryError") => Some(LimitHit::Memory),
        _ if execution
            .stderr
            .contains("Resource temporarily unavailable") =>
        {
            Some(LimitHit::Processes)
        }
        _ if execution.stderr.contains("File too large")
            || execution.stderr.contains("No space left on device") =>
        {
            Some(LimitHit::FileSize)
        }
        _ => None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_user_ranges_stay_below_what_user_namespaces_accept() {
        for _ in 0..1_000 {
            let base = random_uid_base();
            assert!(base >= 1_000_000_000);
            assert!(u64::from(base) + MAX_SLOTS as u64 <= i32::MAX as u64);
        }
    }
}
