//! The service under measurement runs as its own process (the real `themis serve`
//! binary), so its CPU time and memory are read from `/proc/<pid>` apart from the load
//! the bench itself generates (clients, pollers, SSE readers, the fake provider).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `themis serve` child on an ephemeral loopback port; killed if dropped unstopped.
pub struct Service {
    pub base: String,
    child: Option<Child>,
}

/// What the process has used so far: CPU seconds (user + system) and memory.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

impl Usage {
    /// CPU per case in µs between `self` (before) and `after`.
    pub fn cpu_micros_per_case(&self, after: &Usage, cases: usize) -> f64 {
        (after.cpu_seconds - self.cpu_seconds) * 1e6 / cases.max(1) as f64
    }
}

impl Service {
    /// Starts the service on `database_url` with `extra` flags (which may replace the
    /// defaults below) and waits until it serves.
    pub async fn start(database_url: &str, instance: &str, extra: &[&str]) -> Result<Self, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_themis"));
        command.args(["serve", "--addr", "127.0.0.1:0", "--database", database_url]);
        // Defaults `extra` may override (clap refuses a flag given twice).
        for (flag, value) in [
            ("--instance-id", instance),
            ("--max-running-runs", "4"),
            ("--poll-interval-ms", "200"),
            ("--log-format", "json"),
        ] {
            if !extra.contains(&flag) {
                command.args([flag, value]);
            }
        }
        command
            .args(extra)
            .env_remove("THEMIS_API_KEYS")
            // The service's own default filter: what an operator runs.
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The service runs with the machine's transparent-huge-page setting, as it would
        // outside the bench (the bench turns it off for itself: see `main`).
        // SAFETY: one async-signal-safe syscall between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| format!("themis serve: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Reads stderr for the process's whole life: a full pipe would stall the service.
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !announced && line.contains("themis is serving") {
                    announced = true;
                    let _ = tx.send(line);
                }
            }
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .map_err(|e| e.to_string())?;
        let Ok(line) = line else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("themis serve did not start within 60 s".into());
        };
        let log: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        let addr = log["fields"]["addr"]
            .as_str()
            .ok_or_else(|| format!("serving line without addr: {line}"))?;
        Ok(Service {
            base: format!("http://{addr}"),
            child: Some(child),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// CPU time and memory of the service process so far (Linux `/proc`).
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some(Usage {
            cpu_seconds: ticks / per_second.max(1.0),
            rss_mib: kib("VmRSS:")? / 1024.0,
            peak_rss_mib: kib("VmHWM:")? / 1024.0,
        })
    }

    /// Resets the process's peak RSS (`VmHWM`) to its current RSS (Linux ≥ 4.0).
    pub fn reset_peak(&self) -> Result<(), String> {
        let pid = self.pid().ok_or("the service is stopped")?;
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
            .map_err(|e| format!("resetting VmHWM: {e}"))
    }

    /// SIGTERM, then up to 30 s for a graceful exit, then SIGKILL.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the pid of a child we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
