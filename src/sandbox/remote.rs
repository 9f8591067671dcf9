//! Remote sandboxes: a Piston service (`POST {url}/api/v2/execute`) or a SandboxFusion
//! service (`POST {url}/run_code`), reached through the server's egress policy as a
//! destination the operator declared. The service enforces its own limits; this side
//! bounds the wait (the wall time plus [`QUEUE_MARGIN`]) and the response it reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ExecRequest, Execution, LimitHit, Limits, Sandbox, SandboxError, SandboxKind, SandboxSpec, Slot,
};
use crate::egress::Egress;

/// Time a remote service may take beyond the wall time (queueing, compiling).
const QUEUE_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Piston,
    SandboxFusion,
}

pub(super) struct Remote {
    api: Api,
    endpoint: reqwest::Url,
    languages: Vec<String>,
    limits: Limits,
    egress: Arc<Egress>,
}

impl Remote {
    pub(super) fn new(
        spec: &SandboxSpec,
        base: &reqwest::Url,
        limits: Limits,
        egress: Arc<Egress>,
    ) -> Result<Self, SandboxError> {
        let (api, path) = match spec.kind {
            SandboxKind::Piston { .. } => (Api::Piston, "api/v2/execute"),
            SandboxKind::SandboxFusion { .. } => (Api::SandboxFusion, "run_code"),
            SandboxKind::Local => {
                return Err(SandboxError::Setup("not a remote sandbox".into()));
            }
        };
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join(path)
            .map_err(|e| SandboxError::Setup(format!("sandbox `{}`: {e}", spec.name)))?;
        Ok(Remote {
            api,
            endpoint,
            languages: spec.languages.clone(),
            limits,
            egress,
        })
    }

    fn body(&self, request: &ExecRequest) -> Value {
        match self.api {
            Api::Piston => json!({
                "language": request.language,
                // Piston picks its newest installed version of the language.
                "version": "*",
                "files": [{"name": file_name(&request.language), "content": request.source}],
                "stdin": request.stdin,
                "args": [],
            }),
            Api::SandboxFusion => json!({
                "code": request.source,
                "language": request.language,
                "stdin": request.stdin,
                "args": [],
                "run_timeout": request.timeout.as_secs_f64(),
            }),
        }
    }

    /// The response body, refusing more than the output limit allows for.
    async fn read(&self, mut response: reqwest::Response) -> Result<Vec<u8>, SandboxError> {
        let max = self.limits.output_bytes * 4 + 64 * 1024;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SandboxError::Unavailable(e.to_string()))?
        {
            if bytes.len() + chunk.len() > max {
                return Err(SandboxError::Failed(format!(
                    "the sandbox answered more than {max} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

fn file_name(language: &str) -> String {
    match language {
        "python" | "python3" => "main.py".into(),
        "c" => "main.c".into(),
        "cpp" | "c++" => "main.cpp".into(),
        other => format!("main.{other}"),
    }
}

#[async_trait]
impl Sandbox for Remote {
    fn languages(&self) -> &[String] {
        &self.languages
    }

    async fn execute(
        &self,
        request: &ExecRequest,
        _slot: &Slot,
    ) -> Result<Execution, SandboxError> {
        let unavailable = |e: String| SandboxError::Unavailable(e);
        self.egress
            .check_url(&self.endpoint, true)
            .map_err(|e| SandboxError::Failed(e.to_string()))?;
        let client = self
            .egress
            .client(true)
            .map_err(|e| SandboxError::Failed(e.to_string()))?;
        let started = Instant::now();
        let response = client
            .post(self.endpoint.clone())
            .json(&self.body(request))
            .timeout(request.timeout + QUEUE_MARGIN)
            .send()
            .await
            .map_err(|e| unavailable(format!("{}: {e}", self.endpoint)))?;
        let status = response.status();
        let body = self.read(response).await?;
        if !status.is_success() {
            let text = super::capped_text(&body, 500);
            let message = format!("{} answered {status}: {text}", self.endpoint);
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                SandboxError::Unavailable(message)
            } else {
                SandboxError::Failed(message)
            });
        }
        let mut execution = match self.api {
            Api::Piston => piston(&body)?,
            Api::SandboxFusion => sandbox_fusion(&body)?,
        };
        execution.duration = started.elapsed();
        let cap = self.limits.output_bytes;
        if execution.stdout.len() + execution.stderr.len() > cap {
            execution.limit.get_or_insert(LimitHit::Output);
        }
        execution.stdout = super::capped_text(execution.stdout.as_bytes(), cap);
        execution.stderr = super::capped_text(execution.stderr.as_bytes(), cap);
        Ok(execution)
    }
}

fn malformed(api: &str, e: serde_json::Error) -> SandboxError {
    SandboxError::Unavailable(format!("{api} answered an unexpected body: {e}"))
}

#[derive(Deserialize)]
struct PistonResponse {
    run: Option<PistonStage>,
    compile: Option<PistonStage>,
}

#[derive(Deserialize)]
struct PistonStage {
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    code: Option<i32>,
    signal: Option<String>,
}

fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "SIGKILL" => libc::SIGKILL,
        "SIGXCPU" => libc::SIGXCPU,
        "SIGXFSZ" => libc::SIGXFSZ,
        "SIGSEGV" => libc::SIGSEGV,
        "SIGABRT" => libc::SIGABRT,
        "SIGTERM" => libc::SIGTERM,
        _ => return None,
    })
}

/// `{"run": {"stdout", "stderr", "code", "signal"}, "compile": {…}}`.
fn piston(body: &[u8]) -> Result<Execution, SandboxError> {
    let response: PistonResponse =
        serde_json::from_slice(body).map_err(|e| malformed("Piston", e))?;
    if let Some(compile) = &response.compile
        && compile.code != Some(0)
    {
        return Ok(Execution {
            stdout: compile.stdout.clone(),
            stderr: compile.stderr.clone(),
            exit_code: compile.code,
            compile_error: Some(compile.stderr.clone()),
            ..Default::default()
        });
    }
    let run = response
        .run
        .ok_or_else(|| SandboxError::Unavailable("Piston answered without `run`".into()))?;
    let signal = run.signal.as_deref().and_then(signal_number);
    Ok(Execution {
        exit_code: if run.signal.is_some() { None } else { run.code },
        limit: match signal {
            Some(libc::SIGXCPU) => Some(LimitHit::CpuTime),
            Some(libc::SIGXFSZ) => Some(LimitHit::FileSize),
            _ => None,
        },
        signal,
        stdout: run.stdout,
        stderr: run.stderr,
        ..Default::default()
    })
}

#[derive(Deserialize)]
struct FusionResponse {
    status: String,
    #[serde(default)]
    message: String,
    compile_result: Option<FusionResult>,
    run_result: Option<FusionResult>,
}

#[derive(Deserialize)]
struct FusionResult {
    #[serde(default)]
    status: String,
    return_code: Option<i32>,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
}

/// `{"status": "Success"|"Failed"|"SandboxError", "compile_result", "run_result":
/// {"status", "stdout", "stderr", "return_code"}}`.
fn sandbox_fusion(body: &[u8]) -> Result<Execution, SandboxError> {
    let response: FusionResponse =
        serde_json::from_slice(body).map_err(|e| malformed("SandboxFusion", e))?;
    if response.status == "SandboxError" {
        return Err(SandboxError::Unavailable(format!(
            "SandboxFusion: {}",
            response.message
        )));
    }
    if let Some(compile) = &response.compile_result
        && compile.return_code.is_some_and(|c| c != 0)
    {
        let stderr = compile.stderr.clone().unwrap_or_default();
        return Ok(Execution {
            stdout: compile.stdout.clone().unwrap_or_default(),
            exit_code: compile.return_code,
            compile_error: Some(stderr.clone()),
            stderr,
            ..Default::default()
        });
    }
    let run = response.run_result.ok_or_else(|| {
        SandboxError::Unavailable(format!(
            "SandboxFusion answered {} without `run_result`: {}",
            response.status, response.message
        ))
    })?;
    let timed_out = run.status == "TimeLimitExceeded";
    Ok(Execution {
        stdout: run.stdout.unwrap_or_default(),
        stderr: run.stderr.unwrap_or_default(),
        exit_code: if timed_out { None } else { run.return_code },
        limit: timed_out.then_some(LimitHit::WallTime),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_piston_runs_and_compile_failures() {
        let ok = piston(br#"{"language":"python","version":"3.10.0","run":{"stdout":"4\n","stderr":"","code":0,"signal":null,"output":"4\n"}}"#).unwrap();
        assert!(ok.succeeded());
        assert_eq!(ok.stdout, "4\n");
        let killed = piston(
            br#"{"run":{"stdout":"","stderr":"","code":null,"signal":"SIGKILL","output":""}}"#,
        )
        .unwrap();
        assert_eq!(
            (killed.exit_code, killed.signal),
            (None, Some(libc::SIGKILL))
        );
        let bad = piston(br#"{"compile":{"stdout":"","stderr":"main.c:1: error","code":1,"signal":null},"run":null}"#).unwrap();
        assert_eq!(bad.compile_error.as_deref(), Some("main.c:1: error"));
        assert!(piston(b"{}").is_err());
    }

    #[test]
    fn reads_sandbox_fusion_results() {
        let ok = sandbox_fusion(br#"{"status":"Success","message":"","compile_result":null,"run_result":{"status":"Finished","execution_time":0.01,"return_code":0,"stdout":"hi\n","stderr":""},"executor_pod_name":null,"files":{}}"#).unwrap();
        assert!(ok.succeeded());
        let timeout = sandbox_fusion(br#"{"status":"Failed","message":"","run_result":{"status":"TimeLimitExceeded","execution_time":10.0,"return_code":null,"stdout":"","stderr":""}}"#).unwrap();
        assert_eq!(timeout.limit, Some(LimitHit::WallTime));
        let down = sandbox_fusion(
            br#"{"status":"SandboxError","message":"no executor","run_result":null}"#,
        )
        .unwrap_err();
        assert!(down.retryable());
    }
}
