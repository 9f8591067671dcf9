//! `themis compare BASELINE CANDIDATE`: the paired comparison of two runs, from a server
//! (`--server`) or straight from a database (`--database`), with an exit code for CI.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::error::{CliError, input};

use themis::engine::{
    CompareReport, EngineError, RunRef, compare_runs, format_p_value, regressions, render_markdown,
    render_table, resolve_run,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The run compared against (the "before"): its id, or a name only it has.
    pub baseline: String,
    /// The run under test (the "after"), by id or name; deltas are candidate − baseline.
    pub candidate: String,
    /// A Themis server to ask (`http://localhost:8080`).
    #[arg(long, env = "THEMIS_SERVER", conflicts_with = "database")]
    pub server: Option<String>,
    /// Bearer key for `--server`.
    #[arg(long, env = "THEMIS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A database to read both runs from directly (`sqlite://themis.db`, `postgres://...`).
    #[arg(long)]
    pub database: Option<String>,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,
    /// Exit with 1 when a metric regressed: its delta is below `-max_drop` with a
    /// p-value below `alpha`.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// How far a metric's mean may drop before it counts as a regression.
    #[arg(long, default_value_t = 0.0)]
    pub max_drop: f64,
    /// Significance level for a regression.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
}

fn run_ref(raw: &str, what: &str) -> Result<RunRef, CliError> {
    RunRef::parse(raw).map_err(|e| input(format!("{what}: {e}")))
}

/// The id or name as written (a name may hold any character; the URL escapes it).
fn as_text(reference: &RunRef) -> String {
    match reference {
        RunRef::Id(id) => id.to_string(),
        RunRef::Name(name) => name.clone(),
    }
}

/// The report and, from a server, its JSON exactly as served.
async fn from_server(
    server: &str,
    api_key: Option<&str>,
    baseline: &RunRef,
    candidate: &RunRef,
) -> Result<(CompareReport, String), CliError> {
    let mut url =
        reqwest::Url::parse(server).map_err(|e| input(format!("--server {server}: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| input(format!("--server {server}: not a base URL")))?
        .pop_if_empty()
        .extend(["runs", &as_text(candidate), "compare"]);
    url.query_pairs_mut()
        .append_pair("baseline", &as_text(baseline));
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| CliError::Server(super::unreachable(server, &e)))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| CliError::Server(format!("reading the answer of {server}: {e}")))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let mut message = format!("{server} answered {status}: {message}");
        // An ambiguous name: the runs it could mean.
        for detail in serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["details"].as_array().cloned())
            .unwrap_or_default()
        {
            let is_run = detail["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("runs["));
            if let (true, Some(run)) = (is_run, detail["message"].as_str()) {
                message.push_str(&format!("\n  {run}"));
            }
        }
        return Err(CliError::Server(message));
    }
    let report = serde_json::from_str(&body)
        .map_err(|e| CliError::Server(format!("{server} sent an unexpected comparison: {e}")))?;
    Ok((report, body))
}

async fn from_database(
    database: &str,
    baseline: &RunRef,
    candidate: &RunRef,
) -> Result<(CompareReport, String), CliError> {
    let store = themis::store::connect(database)
        .await
        .map_err(|source| CliError::Open {
            database: database.to_owned(),
            source,
        })?;
    let resolve = async |reference: &RunRef, what: &str| {
        resolve_run(store.as_ref(), reference)
            .await
            .map_err(|e| match e {
                EngineError::AmbiguousName { ref runs, .. } => {
                    let ids: Vec<String> = runs.iter().map(|r| format!("  {r}")).collect();
                    input(format!("{what}: {e}:\n{}", ids.join("\n")))
                }
                e => input(format!("{what}: {e}")),
            })
    };
    let baseline = resolve(baseline, "BASELINE").await?;
    let candidate = resolve(candidate, "CANDIDATE").await?;
    let report = compare_runs(store.as_ref(), &baseline, &candidate).await?;
    let json = serde_json::to_string(&report).map_err(CliError::Json)?;
    Ok((report, json))
}

/// Exit code: 0 compared (no regression), 1 regression with `--fail-on-regression`,
/// 2 the comparison could not be made.
pub async fn compare(args: CompareArgs) -> Result<ExitCode, CliError> {
    let baseline = run_ref(&args.baseline, "BASELINE")?;
    let candidate = run_ref(&args.candidate, "CANDIDATE")?;
    if !(args.max_drop >= 0.0 && args.max_drop.is_finite()) {
        return Err(input("--max-drop must be a number >= 0"));
    }
    if !(args.alpha > 0.0 && args.alpha <= 1.0) {
        return Err(input("--alpha must be in (0, 1]"));
    }
    let (report, json) = match (&args.server, &args.database) {
        (Some(server), _) => {
            from_server(server, args.api_key.as_deref(), &baseline, &candidate).await?
        }
        (None, Some(database)) => from_database(database, &baseline, &candidate).await?,
        (None, None) => return Err(input("give --server URL or --database URL")),
    };
    match args.format {
        CompareFormat::Json => println!("{json}"),
        CompareFormat::Markdown => print!("{}", render_markdown(&report)),
        CompareFormat::Table => print!("{}", render_table(&report)),
    }
    if args.fail_on_regression {
        let found = regressions(&report, args.max_drop, args.alpha);
        if !found.is_empty() {
            for r in &found {
                eprintln!(
                    "regression: {} delta {:+.4} (p = {})",
                    r.metric,
                    r.delta,
                    format_p_value(Some(r.p_value))
                );
            }
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
