//! `themis run`: one experiment in-process, with a progress bar and a summary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use themis::components::Registry;
use themis::engine::{Engine, EngineConfig, RunControl};
use themis::model::{EventKind, RunEvent, RunStatus};
use themis::observe::{Instrumentation, LifecycleSubscriber, ObservationRequest};
use themis::store::{CaseQuery, CreateOutcome, Store};
use themis::telemetry::{RecordingTracer, Telemetry};

use super::error::{CliError, input};
use super::serve::{OutboundArgs, SandboxArgs};
use super::summary::{duration_ms, most_common_error, summary};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Experiment file: JSON, or YAML when named `.yaml`/`.yml` (`-` reads JSON from
    /// standard input). A dataset may list its cases or name a JSONL or CSV file,
    /// `{"path": "qa.jsonl"}`, relative to the experiment file (see
    /// examples/questions.yaml).
    pub file: PathBuf,
    /// Print the full result as JSON (run id, status, aggregates, per-case records).
    #[arg(long)]
    pub json: bool,
    /// Also print span names and statuses and every lifecycle event.
    #[arg(long)]
    pub trace: bool,
    /// Validate the experiment and print the estimate of its model calls, tokens and
    /// cost (JSON with `--json`) without running it, storing it or calling any model.
    #[arg(long)]
    pub dry_run: bool,
    /// Cases executed at once (overrides the definition's `concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Keep the run in this database (`sqlite://file.db`, `postgres://...`) instead of
    /// the definition's `storage` (default: in memory). With a database, running the
    /// same file again finds the finished run, and an interrupted one resumes.
    #[arg(long)]
    pub database: Option<String>,
    /// Without declared providers, `openai` (with `OPENAI_API_KEY`, when set) and a
    /// keyless `ollama` at http://localhost:11434/v1 are available.
    #[command(flatten)]
    pub outbound: OutboundArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Counts events for the progress bar and keeps them for `--trace`.
struct CliSubscriber {
    bar: ProgressBar,
    events: Mutex<Vec<RunEvent>>,
    keep: bool,
}

impl LifecycleSubscriber for CliSubscriber {
    fn on_event(&self, event: &RunEvent) {
        match &event.kind {
            EventKind::RunStarted { total_cases, .. } => self.bar.set_length(*total_cases),
            EventKind::Progress { progress }
            | EventKind::RunCompleted { progress }
            | EventKind::RunCancelled { progress } => self.bar.set_position(progress.finished()),
            EventKind::CaseCompleted { .. } | EventKind::CaseFailed { .. } => self.bar.inc(1),
            _ => {}
        }
        if self.keep
            && let Ok(mut events) = self.events.lock()
        {
            events.push(event.clone());
        }
    }
}

pub(super) async fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let mut body = super::definition::read_definition(&args.file)?;
    if let (Some(n), Some(map)) = (args.concurrency, body.as_object_mut()) {
        map.insert("concurrency".into(), json!(n));
    }
    // The CLI runs on the user's machine: the local egress policy, and the implicit
    // providers unless some are declared.
    let declared = args.outbound.providers()?;
    let outbound = themis::components::Outbound {
        providers: if declared.is_empty() {
            themis::components::implicit_providers()
        } else {
            declared
        },
        prices: args.outbound.prices()?,
        ..themis::components::Outbound::local()
    };
    outbound.validate()?;
    let egress = outbound.egress.clone();
    let sandboxes = themis::sandbox::Sandboxes::build(&args.sandbox.config()?, egress.clone())?;
    let mcp_servers = themis::components::McpServers::new(
        args.outbound.mcp_servers()?,
        egress.clone(),
        themis::observe::NoMeter::shared(),
    )?;
    let registry = Arc::new(
        Registry::builtin_with(outbound)
            .with_sandboxes(Arc::new(sandboxes))
            .with_mcp_servers(Arc::new(mcp_servers)),
    );
    let parse = |body: &Value| {
        themis::engine::parse_experiment(body, &registry).map_err(|errors| invalid(&errors))
    };
    // Checked before dataset files are read: they go into the store the definition chooses.
    let probe = parse(&super::definition::without_files(&body))?;
    let base = match args.file.parent() {
        Some(dir) if args.file.as_os_str() != "-" => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if args.dry_run {
        // Dataset files are read into a store of this process only: nothing is kept.
        let engine = Engine::new(
            Arc::new(themis::store::MemoryStore::new()),
            registry.clone(),
            EngineConfig::default(),
        );
        super::definition::upload_file_datasets(&engine, &mut body, &base).await?;
        let request = parse(&body)?;
        let estimate = engine
            .dry_run(&request, Vec::new())
            .await
            .map_err(|e| match e {
                themis::engine::EngineError::Invalid(errors) => invalid(&errors),
                e => e.into(),
            })?;
        print_estimate(&estimate, args.json);
        return Ok(ExitCode::SUCCESS);
    }
    let database = args.database.clone().or_else(|| {
        probe
            .runtime
            .storage
            .as_ref()
            .and_then(|storage| match storage.store.as_str() {
                "sqlite" => Some(format!(
                    "sqlite://{}",
                    storage.path.as_deref().unwrap_or("themis.db")
                )),
                _ => None,
            })
    });
    let store: Arc<dyn Store> = match &database {
        Some(url) => themis::store::connect(url).await?,
        None => Arc::new(themis::store::MemoryStore::new()),
    };
    let mut config = EngineConfig::default();
    if let Some(sealer) = super::config::sealer_from_env()? {
        config.sealer = Arc::new(sealer);
    }
    // The run's own tracing and webhooks, as the service would (webhook secrets only
    // where `--webhook-secret` binds them, checked at submit); `--trace` records the
    // spans here instead.
    let telemetry = Arc::new(
        Telemetry::new(egress, None).with_webhook_secrets(args.outbound.webhook_secrets()?),
    );
    let engine = Engine::instrumented(store.clone(), registry.clone(), config, telemetry.clone());
    super::definition::upload_file_datasets(&engine, &mut body, &base).await?;
    let request = parse(&body)?;
    let outcome = engine.submit(&request).await.map_err(|e| match e {
        themis::engine::EngineError::Invalid(errors) => invalid(&errors),
        e => e.into(),
    })?;
    // Only a database keeps runs between invocations: say when this one was there.
    let reused = match &outcome {
        CreateOutcome::Existing(found) => Some(found.status),
        CreateOutcome::Created(_) => None,
    };
    let run_id = outcome.into_record().run_id;

    let bar = if std::io::stderr().is_terminal() && !args.json {
        ProgressBar::new(request.experiment.work_items())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} cases ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let subscriber = Arc::new(CliSubscriber {
        bar: bar.clone(),
        events: Mutex::new(Vec::new()),
        keep: args.trace,
    });
    let recording = Arc::new(RecordingTracer::new());
    let mut observers = telemetry.observers(
        &run_id,
        ObservationRequest {
            tracing: request.runtime.tracing.as_ref().filter(|_| !args.trace),
            subscribers: &request.runtime.subscribers,
            traceparent: None,
        },
    );
    if args.trace {
        observers.tracer = recording.clone();
    }
    observers.subscribers.push(subscriber.clone());

    let control = RunControl::default();
    let cancel = control.cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let record = engine.execute(&run_id, observers, control).await?;
    ctrl_c.abort();
    // Spans and webhook events of the run reach their destinations before we exit.
    telemetry
        .wait_for_exports(std::time::Duration::from_secs(20))
        .await;
    bar.finish_and_clear();

    let events = subscriber
        .events
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    if args.json {
        let mut cases = Vec::new();
        let mut query = CaseQuery {
            limit: 1_000,
            ..CaseQuery::default()
        };
        loop {
            let page = store.case_records(&run_id, &query).await?;
            let Some(last) = page.last() else { break };
            query.after_index = Some(last.key.case_index);
            cases.extend(page);
        }
        let mut output = json!({
            "run_id": record.run_id,
            "status": record.status,
            "progress": record.progress,
            "duration_ms": duration_ms(&record),
            "reused": reused.is_some(),
            "aggregates": record.aggregates.metrics,
            "usage": record.usage,
            "error": record.error,
            "cases": cases,
        });
        if args.trace {
            output["spans"] = json!(recording
                .spans()
                .iter()
                .map(|s| json!({"name": s.name, "status": s.status.map(|s| s.as_str()), "error": s.error}))
                .collect::<Vec<_>>());
            output["events"] = json!(events);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&output).unwrap_or_default()
        );
    } else {
        match (reused, &database) {
            (Some(status), Some(url)) if status.is_terminal() => println!(
                "Reused run {run_id} from {url}: it had finished ({}), so nothing was executed again.",
                status.as_str()
            ),
            (Some(_), Some(url)) => {
                println!("Resumed run {run_id} from {url}: its finished cases were kept.")
            }
            _ => {}
        }
        let common_error = if record.progress.failed > 0 {
            most_common_error(store.as_ref(), &run_id).await?
        } else {
            None
        };
        print!("{}", summary(&record, common_error.as_ref()));
        if args.trace {
            println!("\nSpans:");
            for span in recording.spans() {
                let status = span.status.map_or("open", |s| s.as_str());
                println!(
                    "  {:<10} {status}{}",
                    span.name,
                    span.error.map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            println!("\nEvents:");
            for event in &events {
                println!("  {:>4} {}", event.seq, event.event_type());
            }
        }
    }
    let all_failed = record.progress.completed == 0 && record.progress.failed > 0;
    Ok(match record.status {
        RunStatus::Completed if !all_failed => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// A definition's problems, one per line with its path.
fn invalid(errors: &[themis::model::FieldError]) -> CliError {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("  {}: {}", display_path(&e.path), e.message))
        .collect();
    input(format!("invalid experiment:\n{}", lines.join("\n")))
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(document)" } else { path }
}

/// A dry run's estimate: its JSON, or a few lines for a person.
fn print_estimate(estimate: &themis::engine::DryRun, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(estimate).unwrap_or_default()
        );
        return;
    }
    let total = &estimate.total;
    println!(
        "valid: {} cases ({} per seed × {} seeds), {} model calls ({} generation, {} judging)",
        estimate.cases,
        estimate.cases / estimate.seeds.max(1),
        estimate.seeds,
        total.calls,
        estimate.generation.calls,
        estimate.judging.calls
    );
    println!(
        "tokens: {} prompt, up to {} completion",
        total.prompt_tokens, total.completion_tokens
    );
    println!(
        "cost: ${:.4} to ${:.4}",
        total.cost_low_usd, total.cost_high_usd
    );
    for assumption in &estimate.assumptions {
        println!("  - {assumption}");
    }
}
