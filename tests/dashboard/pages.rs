//! The dashboard in a real browser: the `themis` binary serves `/ui/` with API keys, and
//! headless Chromium (through chromedriver) enters the key, lists runs, watches a run
//! progress live, cancels one and rejudges another, filters and pages results, opens a
//! case with its judge's rationale and compares two runs, with no console error along
//! the way; on a phone-sized window nothing overflows and the keyboard alone reaches and
//! opens a run. Another test severs a run page's event stream and sees it resume.
//!
//! Screenshots of the pages go to `$THEMIS_SCREENSHOTS` (the docs' come from
//! `THEMIS_SCREENSHOTS=docs/images cargo test --test dashboard`), else to the target folder.

use crate::common;

use std::time::Duration;

use common::browser::Browser;
use common::json_of;
use common::stream_proxy::StreamProxy;
use serde_json::{Value, json};

use super::service::{Service, screenshots};

const KEY: &str = "dashboard-test-key";

/// `n` arithmetic cases over two datasets, answered by the demo generator (some wrong,
/// some failing, all deterministic by seed) and judged by keywords from the expected
/// answer, so every case has a rationale.
fn experiment(n: usize, wrong_rate: f64, delay_ms: u64, concurrency: u64) -> Value {
    let dataset = |id: &str, range: std::ops::Range<usize>| {
        let cases: Vec<Value> = range
            .map(|i| {
                json!({
                    "case_id": format!("{id}-{i}"),
                    "input": {"question": format!("{} + {}", i, i % 7)},
                    "expected_output": {"answer": (i + i % 7).to_string()},
                })
            })
            .collect();
        json!({"dataset_id": id, "cases": cases})
    };
    json!({
        "generation": {"generator": {"name": "builtin/demo_generator",
            "params": {"wrong_rate": wrong_rate, "error_rate": 0.05, "delay_ms": delay_ms}}},
        "evaluation": {
            "metrics": ["builtin/exact_match"],
            "judges": [{"name": "builtin/rubric_keywords", "params": {"from_expected": true}}],
        },
        "datasets": [dataset("arith", 0..n / 2), dataset("sums", n / 2..n)],
        "seeds": [1],
        "concurrency": concurrency,
    })
}

impl Service {
    pub(super) async fn wait_finished(&self, run_id: &str) -> Value {
        for _ in 0..1_200 {
            let (_, run) = self.get_any(&format!("/runs/{run_id}")).await;
            if ["completed", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or(""))
            {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run_id} did not finish within 60 s");
    }
}

/// Console entries that are errors (exceptions, failed loads, `console.error`).
fn errors(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "ERROR")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let service = Service::start(&[], Some(KEY));
    let base = service.base.clone();
    // More runs than a page of the runs list (25), older than the rest.
    let mut fillers = Vec::new();
    for i in 0..26 {
        let filler = service.post("/runs", &experiment(2 + i, 0.0, 0, 2)).await;
        fillers.push(filler["run_id"].as_str().unwrap().to_owned());
    }
    // A finished run with failures, a rejudge of it, and a second run to compare with.
    // The two compared runs carry names and tags.
    let labelled = |mut body: Value, name: &str, tags: &[&str]| {
        body["name"] = json!(name);
        body["tags"] = json!(tags);
        body["metadata"] = json!({"prompt": name});
        body
    };
    let a = service
        .post(
            "/runs",
            &labelled(experiment(120, 0.3, 0, 8), "baseline", &["nightly"]),
        )
        .await;
    let a = a["run_id"].as_str().unwrap().to_owned();
    service.wait_finished(&a).await;
    let rejudge = service
        .post(
            &format!("/runs/{a}/rejudge"),
            &json!({"metrics": ["builtin/exact_match", "builtin/token_f1"], "parsers": ["builtin/json_identity"]}),
        )
        .await;
    let rejudge = rejudge["run_id"].as_str().unwrap().to_owned();
    let b = service
        .post(
            "/runs",
            &labelled(
                experiment(120, 0.6, 0, 8),
                "candidate",
                &["nightly", "prompt-v2"],
            ),
        )
        .await;
    let b = b["run_id"].as_str().unwrap().to_owned();
    service.wait_finished(&rejudge).await;
    service.wait_finished(&b).await;

    let shots = screenshots();
    let mut browser = Browser::start(1360, 900).await;

    // The key is asked for before any API call; a wrong one is refused with a message.
    browser.goto(&format!("{base}/ui/")).await;
    let key_input = browser.wait_for("#key-input").await;
    key_input.send_keys("not-the-key").await.unwrap();
    browser.click("#key-submit").await;
    browser
        .expect(
            "the wrong key is refused with a message",
            "return !document.getElementById('key-error').hidden",
        )
        .await;
    // That refusal is the one failed request (a 401) the browser may log.
    for entry in errors(&browser.console().await) {
        let message = entry["message"].as_str().unwrap_or("");
        assert!(message.contains("401"), "unexpected console error: {entry}");
    }
    let key_input = browser.wait_for("#key-input").await;
    key_input.send_keys(KEY).await.unwrap();
    browser.click_to_view("#key-submit").await;

    // Runs list: newest first, the rejudge grouped under its run.
    browser.wait_for("#runs-table").await;
    let rows = browser
        .eval("return [...document.querySelectorAll('#runs-table tbody tr')].map(r => [r.dataset.runId, r.classList.contains('child')])")
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows[0], json!([b, false]), "newest first: {rows:?}");
    let a_row = rows.iter().position(|r| r[0] == a).expect("run a listed");
    assert_eq!(rows[a_row + 1], json!([rejudge, true]), "rejudge under a");
    assert!(
        browser
            .text("#runs-table")
            .await
            .contains("builtin/exact_match"),
        "metric means shown"
    );
    browser.screenshot(&shots, "dashboard-runs.png").await;

    // The runs list pages with the API's cursor (25 experiments a page) and back.
    let experiments = "return [...document.querySelectorAll('#runs-table tbody tr:not(.child)')].map(r => r.dataset.runId)";
    let first_page = browser.eval(experiments).await;
    assert_eq!(first_page.as_array().unwrap().len(), 25, "{first_page}");
    browser.click_to_view("#older").await;
    let second_page = browser.eval(experiments).await;
    assert_eq!(
        second_page,
        json!(fillers[..3].iter().rev().collect::<Vec<_>>()),
        "the oldest runs on page 2"
    );
    browser.click_to_view(".pager a:not(#older)").await;
    assert_eq!(
        browser.eval(experiments).await,
        first_page,
        "back to page 1"
    );
    // Filters: by kind (rejudges alone), then by status.
    browser.select_to_view("#filter-kind", "rejudge").await;
    let kinds = browser
        .eval("return [...document.querySelectorAll('#runs-table tbody tr')].map(r => r.dataset.runId)")
        .await;
    assert_eq!(kinds, json!([rejudge]), "only the rejudge");
    browser.select_to_view("#filter-status", "failed").await;
    browser
        .expect(
            "no failed rejudge",
            "return document.getElementById('runs-table') === null && document.getElementById('runs-body').textContent.includes('No runs match')",
        )
        .await;

    // Names and tags show in the list; a tag links to the runs that have it.
    browser.goto(&format!("{base}/ui/#/runs")).await;
    browser.wait_view().await;
    let b_row = format!("#runs-table tr[data-run-id=\"{b}\"]");
    assert_eq!(
        browser.text(&format!("{b_row} .run-name")).await,
        "candidate"
    );
    assert_eq!(
        browser
            .text(&format!("{b_row} .tags"))
            .await
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["nightly", "prompt-v2"]
    );
    browser
        .click_to_view(&format!("{b_row} .tag[href*=\"prompt-v2\"]"))
        .await;
    let tagged = browser
        .eval("return [...document.querySelectorAll('#runs-table tbody tr')].map(r => r.dataset.runId)")
        .await;
    assert_eq!(tagged, json!([b]), "only the run tagged prompt-v2");
    browser.click_to_view("#filter-tag a").await;
    browser
        .wait_for(&format!("#runs-table tr[data-run-id=\"{a}\"]"))
        .await;
    // A run's page shows its name, tags and metadata.
    browser.goto(&format!("{base}/ui/#/runs/{a}")).await;
    browser.wait_view().await;
    assert_eq!(browser.text("#run-name").await, "baseline");
    assert_eq!(browser.text("#run-tags").await, "nightly");
    assert_eq!(
        browser.text("#run-metadata").await,
        r#"{"prompt":"baseline"}"#
    );

    // The runs list follows an executing run without a reload (it reads the page again
    // while a run on it executes): drawn unfinished, it turns completed, 40 / 40.
    let watched = service.post("/runs", &experiment(40, 0.0, 100, 1)).await;
    let watched = watched["run_id"].as_str().unwrap().to_owned();
    browser.goto(&format!("{base}/ui/#/runs")).await;
    browser.wait_view().await;
    browser
        .eval("window.__sameDocument = true; return null")
        .await;
    let row = format!("document.querySelector('#runs-table tr[data-run-id=\"{watched}\"]')");
    let first = browser
        .eval(&format!(
            "return {row}.querySelector('.progress-text').textContent"
        ))
        .await;
    assert_ne!(first, json!("40 / 40"), "drawn before it finished");
    browser
        .wait_until(
            Duration::from_secs(20),
            "the runs list shows it completed, in the same document",
            &format!("return {row}?.dataset.status === 'completed' && {row}.querySelector('.progress-text').textContent === '40 / 40' && window.__sameDocument === true"),
        )
        .await;

    // A run progresses live: the page is not reloaded (a marker set now survives) while
    // the progress shown advances, fed by the event stream.
    let slow = service.post("/runs", &experiment(40, 0.2, 150, 2)).await;
    let slow = slow["run_id"].as_str().unwrap().to_owned();
    browser.goto(&format!("{base}/ui/#/runs/{slow}")).await;
    browser.wait_view().await;
    browser
        .eval("window.__sameDocument = true; return null")
        .await;
    browser
        .expect(
            "the event stream is live",
            "return document.getElementById('stream-state')?.dataset.state === 'live'",
        )
        .await;
    let first = browser.text("#progress-done").await;
    browser
        .wait_until(
            Duration::from_secs(20),
            "progress advances without a reload",
            &format!(
                "return window.__sameDocument === true && document.getElementById('progress-done').textContent !== {first:?} && !document.getElementById('progress-done').textContent.startsWith('0 ')"
            ),
        )
        .await;
    browser
        .expect(
            "events appear in the log",
            "return document.querySelectorAll('#event-log li').length > 3",
        )
        .await;
    assert_ne!(browser.text("#throughput").await, "–", "throughput shown");
    browser
        .wait_until(
            Duration::from_secs(20),
            "aggregates appear while the run executes",
            "return document.getElementById('aggregates-table') !== null && parseInt(document.getElementById('progress-done').textContent) >= 10",
        )
        .await;
    browser.screenshot(&shots, "dashboard-run.png").await;
    browser
        .wait_until(
            Duration::from_secs(30),
            "the run finishes on screen",
            "return document.querySelector('#run-status .badge')?.textContent === 'completed' && window.__sameDocument === true",
        )
        .await;

    // Cancel asks for a confirmation, then the run shows as cancelled.
    let doomed = service.post("/runs", &experiment(60, 0.0, 200, 1)).await;
    let doomed = doomed["run_id"].as_str().unwrap().to_owned();
    browser.goto(&format!("{base}/ui/#/runs/{doomed}")).await;
    browser.wait_view().await;
    browser.click("#cancel").await;
    assert_eq!(browser.text("#cancel").await, "Confirm cancel");
    browser.click("#cancel").await;
    browser
        .expect(
            "the run shows as cancelled",
            "return document.querySelector('#run-status .badge')?.textContent === 'cancelled'",
        )
        .await;

    // Rejudge from a finished run's page, pre-filled with its evaluation.
    browser.goto(&format!("{base}/ui/#/runs/{b}")).await;
    browser.wait_view().await;
    browser.click("#rejudge summary").await;
    browser
        .expect(
            "the rejudge form holds the run's evaluation",
            "return document.getElementById('rejudge-body').value.includes('builtin/rubric_keywords')",
        )
        .await;
    browser.click_to_view("#rejudge-submit").await;
    browser
        .expect(
            "the new rejudge run opens",
            &format!("return !location.hash.includes('{b}') && document.getElementById('run-header').textContent.includes('rejudge') && document.getElementById('run-header').textContent.includes('{}')", &b[..12]),
        )
        .await;

    // Results: a page of 50, the next page, then the filters.
    browser.goto(&format!("{base}/ui/#/runs/{a}/results")).await;
    browser.wait_view().await;
    assert_eq!(case_indices(&browser).await, (0..50).collect::<Vec<u64>>());
    browser.screenshot(&shots, "dashboard-results.png").await;
    browser.click_to_view("#next-page").await;
    assert_eq!(
        case_indices(&browser).await,
        (50..100).collect::<Vec<u64>>()
    );
    browser.wait_for("#prev-page").await;
    let rows = "const rows = [...document.querySelectorAll('#results-table tbody tr')];";
    browser.click_to_view("#filter-failed").await;
    browser
        .expect(
            "only failed cases are listed, from the first page",
            &format!("{rows} return !location.hash.includes('cursor') && rows.length > 0 && rows.every(r => r.dataset.status === 'failed')"),
        )
        .await;
    browser.click_to_view("#filter-failed").await;
    browser.select_to_view("#filter-dataset", "sums").await;
    browser
        .expect(
            "only the chosen dataset is listed",
            &format!("{rows} return rows.length === 50 && rows.every(r => r.children[1].textContent === 'sums')"),
        )
        .await;
    let below = browser.wait_for("#filter-below").await;
    below.send_keys("0.5").await.unwrap();
    browser.click_to_view("#apply-below").await;
    browser
        .expect(
            "only cases of the dataset scoring below 0.5 on exact_match are listed",
            &format!("{rows} return location.hash.includes('score_below=0.5') && rows.length > 0 && rows.every(r => Number(r.children[5].textContent) < 0.5 && r.children[1].textContent === 'sums')"),
        )
        .await;

    // A case: input, candidates, and the judge's rationale.
    browser.click_to_view("#results-table tbody tr a").await;
    let rationale = browser.text("#judgments .rationale").await;
    assert!(
        rationale.contains("found") && rationale.contains("keywords"),
        "rationale shown: {rationale}"
    );
    assert!(
        browser.text("main").await.contains("question"),
        "input shown"
    );
    let page = browser.text("main").await;
    for heading in [
        "Expected output",
        "Scores",
        "Judgments",
        "Parsed",
        "Candidates",
        "Reduced",
        "Stage timings",
    ] {
        assert!(page.contains(heading), "{heading} in the case view");
    }
    assert!(
        browser.text("#stages-table").await.contains("generation"),
        "stage timings listed"
    );
    browser.screenshot(&shots, "dashboard-case.png").await;
    // A failed case names its stage.
    let failed = service
        .get(&format!("/runs/{a}/results?failed_only=true&limit=1"))
        .await;
    let index = failed["results"][0]["case_index"].as_u64().unwrap();
    browser
        .goto(&format!("{base}/ui/#/runs/{a}/cases/{index}"))
        .await;
    browser.wait_view().await;
    let error = browser.text("#case-error").await;
    assert!(error.starts_with("Failed at generation"), "{error}");

    // Compare: paired statistics of b against a, and the regressed cases.
    browser
        .goto(&format!("{base}/ui/#/compare?baseline={a}&candidate={b}"))
        .await;
    browser.wait_view().await;
    let table = browser.text("#compare-table").await;
    assert!(table.contains("builtin/exact_match"), "{table}");
    // From the comparison endpoint: the overall row has a delta, its interval and a
    // p-value with its test; b answers more wrongly than a, so it regressed.
    let overall = browser
        .eval("const r = [...document.querySelectorAll('#compare-table tr.overall')].find(r => r.cells[0].textContent === 'builtin/exact_match'); return [...r.cells].map(c => c.textContent)")
        .await;
    let cells: Vec<&str> = overall
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(cells[5].starts_with('-'), "delta: {cells:?}");
    assert!(
        cells[6].starts_with('[') && cells[6].contains(','),
        "CI: {cells:?}"
    );
    assert!(
        cells[7] == "<0.0001" || (cells[7].len() == 6 && cells[7].parse::<f64>().is_ok()),
        "p: {cells:?}"
    );
    assert_eq!(cells[8], "mcnemar_exact", "test: {cells:?}");
    // Regressed cases, each with the baseline's and the candidate's output side by side.
    browser.wait_for("#changed-cases .card").await;
    let sides = browser
        .eval("return [...document.querySelectorAll('#changed-cases .card .side-by-side')].map(s => [...s.children].map(c => c.querySelector('h4').textContent))")
        .await;
    let sides = sides.as_array().unwrap();
    assert!(!sides.is_empty());
    assert!(
        sides.iter().all(|s| s == &json!(["Baseline", "Candidate"])),
        "{sides:?}"
    );
    browser.screenshot(&shots, "dashboard-compare.png").await;

    // The runs list on a phone.
    browser.resize(390, 844).await;
    browser.goto(&format!("{base}/ui/#/runs")).await;
    browser.wait_view().await;
    browser.wait_for("#runs-table").await;
    browser.screenshot(&shots, "dashboard-phone.png").await;
    // Nothing wider than the phone: wide tables scroll inside their own box.
    let no_overflow = "return document.documentElement.scrollWidth <= window.innerWidth && document.body.scrollWidth <= window.innerWidth";
    browser
        .expect("the runs page fits 390 px", no_overflow)
        .await;
    browser.goto(&format!("{base}/ui/#/runs/{a}")).await;
    browser.wait_view().await;
    browser
        .expect("a run's page fits 390 px", no_overflow)
        .await;

    // Keyboard only: Tab walks the controls, each showing a visible focus ring, until a
    // run's link; Enter opens that run.
    browser.goto(&format!("{base}/ui/#/runs")).await;
    browser.wait_view().await;
    let mut reached = None;
    for _ in 0..60 {
        let focused = browser
            .client
            .active_element()
            .await
            .expect("active element");
        focused.send_keys("\u{e004}").await.expect("pressing Tab");
        let state = browser
            .eval(
                "const e = document.activeElement; const s = getComputedStyle(e); \
                 return [e.tagName, e.matches(':focus-visible') && s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2, \
                 e.matches('#runs-table a[href^=\"#/runs/run_\"]') ? e.getAttribute('href') : null]",
            )
            .await;
        assert_eq!(state[1], json!(true), "focus is visible on {state}");
        if let Some(href) = state[2].as_str() {
            reached = Some(href.to_owned());
            break;
        }
    }
    let href = reached.expect("Tab reaches a run's link");
    let focused = browser
        .client
        .active_element()
        .await
        .expect("active element");
    focused.send_keys("\u{e007}").await.expect("pressing Enter");
    browser
        .expect(
            "Enter on a run's link opens it",
            &format!("return location.hash === {href:?} && document.getElementById('run-header') !== null"),
        )
        .await;

    // The key went only into headers: in no URL the page is at or fetched.
    let urls = browser
        .eval(
            "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]",
        )
        .await;
    assert!(urls.as_array().unwrap().len() > 10, "{urls}");
    assert!(!urls.to_string().contains(KEY), "{urls}");

    let console = browser.console().await;
    assert!(
        errors(&console).is_empty(),
        "console errors: {:#?}",
        errors(&console)
    );

    // The server goes away: the next view says so in a banner instead of failing silently.
    drop(service);
    browser
        .eval("location.hash = '#/runs?status=completed'; return null")
        .await;
    browser
        .expect(
            "the unreachable server is announced",
            "const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('Cannot reach')",
        )
        .await;
    browser.close().await;
}

/// A run's page through a network that drops its event stream twice mid-run: the page
/// resumes with `Last-Event-ID` each time, without a reload, and ends with no gap: the
/// progress reaches the total, and every event from the first one it showed to the
/// terminal one arrived exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_resumes_its_event_stream_without_a_gap() {
    let service = Service::start(&[], Some(KEY));
    let proxy = StreamProxy::start(&service.base).await;
    let base = proxy.base.clone();
    // Slow enough (60 cases one at a time, 150 ms each) to be cut twice mid-run.
    let run = service.post("/runs", &experiment(60, 0.2, 150, 1)).await;
    let run = run["run_id"].as_str().unwrap().to_owned();

    let browser = Browser::start(1360, 900).await;
    browser.goto(&format!("{base}/ui/")).await;
    browser
        .wait_for("#key-input")
        .await
        .send_keys(KEY)
        .await
        .unwrap();
    browser.click_to_view("#key-submit").await;
    browser.goto(&format!("{base}/ui/#/runs/{run}")).await;
    browser.wait_view().await;
    browser
        .eval("window.__sameDocument = true; return null")
        .await;
    let received = "Number(document.getElementById('events-received').dataset.count ?? 0)";
    let live = "document.getElementById('stream-state')?.dataset.state === 'live'";
    // Each cut comes after some events arrived live on the stream it cuts.
    for (cut, at_least) in [(1, 15), (2, 60)] {
        browser
            .wait_until(
                Duration::from_secs(20),
                &format!("live with {at_least} events received before cut {cut}"),
                &format!("return {live} && {received} >= {at_least}"),
            )
            .await;
        proxy.sever();
        // The page asks again, resuming after the last event it received.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while proxy.resumes().len() <= cut {
            assert!(
                std::time::Instant::now() < deadline,
                "no reconnect after cut {cut}: {:?}",
                proxy.resumes()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    browser
        .wait_until(
            Duration::from_secs(30),
            "the run finishes on screen, in the same document",
            "return document.querySelector('#run-status .badge')?.textContent === 'completed' && window.__sameDocument === true",
        )
        .await;
    let finished = service.wait_finished(&run).await;
    let last = finished["last_event_seq"].as_u64().unwrap();
    let total = finished["progress"]["total"].as_u64().unwrap();
    assert_eq!(total, 60);
    browser
        .expect(
            "the progress shown reaches the total",
            "return document.getElementById('progress-done').textContent === '60 / 60'",
        )
        .await;

    // Resumes carried the last event received, further on each time.
    let resumes = proxy.resumes();
    let resumed: Vec<u64> = resumes[1..]
        .iter()
        .map(|r| r.expect("a Last-Event-ID"))
        .collect();
    assert!(resumed.len() >= 2, "{resumes:?}");
    assert!(
        resumed.windows(2).all(|w| w[0] < w[1]) && resumed[0] > resumes[0].unwrap_or(0),
        "each resume starts further on: {resumes:?}"
    );
    // Every event from the first shown to the terminal one arrived once: the count spans
    // them exactly, and the log's tail holds consecutive ids ending at the last.
    let received = browser
        .eval("const r = document.getElementById('events-received').dataset; return [Number(r.first), Number(r.count)]")
        .await;
    let (first, count) = (received[0].as_u64().unwrap(), received[1].as_u64().unwrap());
    assert_eq!(
        count,
        last - first + 1,
        "events {first}..={last}, {count} received"
    );
    let ids = browser
        .eval("return [...document.querySelectorAll('#event-log li .mono')].map(s => Number(s.textContent.slice(1)))")
        .await;
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (last + 1 - ids.len() as u64..=last).rev().collect();
    assert_eq!(ids, expected, "the log tail has no hole");

    // The cut streams may be logged as failed loads; nothing else may be.
    for entry in errors(&browser.console().await) {
        let message = entry["message"].as_str().unwrap_or("");
        assert!(
            message.contains("/events"),
            "unexpected console error: {entry}"
        );
    }
    browser.close().await;
}

/// The case indices of the rows of the results table, in order.
async fn case_indices(browser: &Browser) -> Vec<u64> {
    let rows = browser
        .eval("return [...document.querySelectorAll('#results-table tbody tr')].map(r => Number(r.dataset.caseIndex))")
        .await;
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_u64().expect("a case index"))
        .collect()
}

/// The dashboard's files are public (they hold no data) while the API keeps its key;
/// each file has its content type, a strict Content-Security-Policy and an ETag.
#[tokio::test]
async fn assets_are_public_cached_and_locked_down() {
    let server = common::TestServer::start_with(
        "sqlite::memory:",
        themis::components::Registry::builtin(),
        vec![KEY.to_owned()],
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let index = client.get(server.url("/ui/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let page = index.text().await.unwrap();
    assert!(
        page.contains(r#"<meta name="themis-auth" content="key">"#),
        "the page says a key is needed"
    );
    assert!(!page.contains("<script>"), "no inline script");

    let etag = headers["etag"].clone();
    let again = client
        .get(server.url("/ui/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    for (path, content_type) in [
        ("/ui/js/main.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
    }
    let (status, body) = json_of(client.get(server.url("/ui/nope.js")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let root = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 308);
    assert_eq!(root.headers()["location"], "/ui/");

    // The API behind the dashboard still needs the key.
    let (status, _) = json_of(client.get(server.url("/runs")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    server.stop().await;
}
