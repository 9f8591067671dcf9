//! Human review and charts in a real browser (headless Chromium): the runs list draws the
//! spend of the run with a cost (a priced fake provider); the run page draws its
//! score distributions, per-dataset means with CIs and timeline as SVG with the numbers
//! the API gives; the review queue opens on the case that most needs a person and is
//! worked through by keyboard alone (scores, save, skip), its reviews reach the API and
//! the agreement panel; compare draws the forest plot and the paired scatter; nothing
//! overflows a 390 px phone.
//!
//! Screenshots go to `$THEMIS_SCREENSHOTS` (the docs' come from
//! `THEMIS_SCREENSHOTS=docs/images cargo test --test dashboard review::`), else to the
//! target folder.

use crate::common;

use std::time::Duration;

use common::browser::Browser;
use common::fake_provider::FakeProvider;
use serde_json::{Value, json};

use super::service::{Service, screenshots};

const EXACT: &str = "builtin/exact_match";
const KEYWORDS: &str = "builtin/rubric_keywords";

/// `n` sums over two datasets, answered by the demo generator (some wrong, some failing)
/// and judged by keywords from the expected answer.
fn experiment(n: usize, wrong_rate: f64) -> Value {
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
            "params": {"wrong_rate": wrong_rate, "error_rate": 0.05, "delay_ms": 0}}},
        "evaluation": {
            "metrics": [EXACT],
            "judges": [
                {"name": KEYWORDS, "params": {"from_expected": true}},
                // Half its keywords in most outputs: unsure, and at odds with the other judge.
                {"id": "mentions", "name": KEYWORDS, "params": {"keywords": ["answer", "1"]}},
            ],
        },
        "datasets": [dataset("arith", 0..n / 2), dataset("sums", n / 2..n)],
        "seeds": [1],
        "concurrency": 4,
    })
}

impl Service {
    async fn run(&self, body: &Value) -> String {
        let created = self.post("/runs", body).await;
        let run = created["run_id"].as_str().unwrap().to_owned();
        for _ in 0..1_200 {
            let status = self.get(&format!("/runs/{run}")).await["status"].clone();
            if status == "completed" {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run} did not finish");
    }
}

fn score(record: &Value, id: &str) -> Option<f64> {
    let metric = record["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric_id"] == id);
    let judge = record["judgments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge_id"] == id);
    metric.or(judge).and_then(|s| s["score"].as_f64())
}

/// What the queue puts first: the largest need (a judge's distance from a sure verdict,
/// the judges' spread, a judge's distance from the metric), the lowest index among equals.
fn neediest(records: &[Value]) -> (u64, f64) {
    let mut best = (u64::MAX, -1.0);
    for record in records {
        let index = record["case_index"].as_u64().unwrap();
        let judges: Vec<f64> = [KEYWORDS, "mentions"]
            .iter()
            .filter_map(|id| score(record, id))
            .collect();
        let mut need: f64 = 0.0;
        for judge in &judges {
            need = need.max(1.0 - (2.0 * judge - 1.0).abs());
            if let Some(metric) = score(record, EXACT) {
                need = need.max((judge - metric).abs());
            }
        }
        if judges.len() == 2 {
            need = need.max((judges[0] - judges[1]).abs());
        }
        if need > best.1 + 1e-12 || ((need - best.1).abs() < 1e-12 && index < best.0) {
            best = (index, need);
        }
    }
    best
}

/// Presses `keys` with the focus on the page, not on a field.
async fn press(browser: &Browser, keys: &str) {
    browser
        .eval("document.getElementById('main').focus(); return true")
        .await;
    browser
        .wait_for("#main")
        .await
        .send_keys(keys)
        .await
        .unwrap_or_else(|e| panic!("pressing {keys:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_and_the_review_queue_in_a_real_browser() {
    let provider = FakeProvider::fixed("{\"answer\": \"1\"}", Duration::ZERO).await;
    let service = Service::start(
        &[
            "--provider",
            &format!("name=fake,base_url={}", provider.base_url),
        ],
        None,
    );
    let base = service.base.clone();
    let a = service.run(&experiment(60, 0.3)).await;
    let b = service.run(&experiment(60, 0.6)).await;
    // A run with a cost: a priced provider (one prompt and one completion token a
    // request, $1 and $2 per token).
    let priced = service
        .run(&json!({
            "generation": {"generator": {"name": "openai/chat", "params": {
                "provider": "fake", "model": "m", "prompt": "{{ input }}", "output": "json",
                "price": {"prompt_per_1k": 1000.0, "completion_per_1k": 2000.0}}}},
            "evaluation": {"metrics": [EXACT]},
            "datasets": [{"dataset_id": "d", "cases": [
                {"case_id": "a", "input": "x", "expected_output": {"answer": "1"}},
                {"case_id": "b", "input": "y", "expected_output": {"answer": "2"}}]}],
            "seeds": [1],
        }))
        .await;
    let run = service.get(&format!("/runs/{a}")).await;
    let results = service.get(&format!("/runs/{a}/results?limit=1000")).await;
    let records = results["results"].as_array().unwrap().clone();
    let shots = screenshots();
    let mut browser = Browser::start(1280, 900).await;

    // The runs list: spend per run, for the run with a cost only.
    browser.goto(&format!("{base}/ui/#/runs")).await;
    browser.wait_view().await;
    // A server without keys asks for none: the key button stays out of sight.
    let key_button = browser
        .eval("return getComputedStyle(document.getElementById('key-button')).display")
        .await;
    assert_eq!(key_button, json!("none"), "no API key button without keys");
    let spend = browser
        .eval("return [...document.querySelectorAll('#spend-chart g.hbar')].map(g => [g.dataset.label, Number(g.dataset.value)])")
        .await;
    let cost = service.get(&format!("/runs/{priced}")).await["usage"]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!((cost - 6.0).abs() < 1e-9, "two requests at $3: {cost}");
    let spend = spend.as_array().unwrap();
    assert_eq!(spend.len(), 1, "only the run with a cost: {spend:?}");
    assert_eq!(spend[0][0], format!("{}…", &priced[..12]));
    assert!((spend[0][1].as_f64().unwrap() - cost).abs() < 1e-9);

    // The run page's charts carry the API's numbers.
    browser.goto(&format!("{base}/ui/#/runs/{a}")).await;
    browser.wait_view().await;
    browser
        .expect("the means and distributions are drawn", "return !!document.querySelector('#dist-builtin-exact-match svg') && !!document.querySelector('#means-builtin-exact-match svg')")
        .await;
    let drawn = browser
        .eval("return [...document.querySelectorAll('#means-builtin-exact-match g.interval')].map(g => [g.dataset.label, Number(g.dataset.value), Number(g.dataset.lo), Number(g.dataset.hi)])")
        .await;
    let by_dataset = run["aggregates"][EXACT]["by_dataset"].as_object().unwrap();
    assert_eq!(drawn.as_array().unwrap().len(), by_dataset.len());
    for row in drawn.as_array().unwrap() {
        let summary = &by_dataset[row[0].as_str().unwrap()];
        assert!(
            (row[1].as_f64().unwrap() - summary["mean"].as_f64().unwrap()).abs() < 1e-9,
            "{row}"
        );
        assert!(
            (row[2].as_f64().unwrap() - summary["ci95"][0].as_f64().unwrap()).abs() < 1e-9,
            "{row}"
        );
        assert!(
            (row[3].as_f64().unwrap() - summary["ci95"][1].as_f64().unwrap()).abs() < 1e-9,
            "{row}"
        );
    }
    let counts = browser
        .eval("return [...document.querySelectorAll('#dist-builtin-exact-match rect.col')].map(r => Number(r.dataset.count))")
        .await;
    let counts: Vec<u64> = counts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    let exact: Vec<f64> = records.iter().filter_map(|r| score(r, EXACT)).collect();
    assert_eq!(counts.len(), 10);
    assert_eq!(
        counts[0],
        exact.iter().filter(|s| **s == 0.0).count() as u64
    );
    assert_eq!(
        counts[9],
        exact.iter().filter(|s| **s == 1.0).count() as u64
    );
    assert_eq!(counts.iter().sum::<u64>(), exact.len() as u64);
    // Accessible: a named, described, focusable image with its numbers as a table.
    let accessible = browser
        .eval("const svg = document.querySelector('#dist-builtin-exact-match svg'); return [svg.getAttribute('role'), svg.getAttribute('tabindex'), document.getElementById(svg.getAttribute('aria-labelledby')).textContent, document.getElementById(svg.getAttribute('aria-describedby')).textContent.length > 0, document.querySelectorAll('#dist-builtin-exact-match details table tbody tr').length]")
        .await;
    assert_eq!(accessible[0], "img");
    assert_eq!(accessible[1], "0");
    assert!(accessible[2].as_str().unwrap().contains(EXACT));
    assert_eq!(accessible[3], true);
    assert_eq!(accessible[4], 10);
    // The timeline: every finished case counted once across the buckets.
    browser
        .expect(
            "the timeline is drawn",
            "return !!document.querySelector('#chart-throughput g.series')",
        )
        .await;
    let finished = browser
        .eval("const width = Number(document.querySelector('#run-timeline p').textContent.match(/buckets of (\\d+) s/)[1]); const points = JSON.parse(document.querySelector('#chart-throughput g.series').dataset.points); return Math.round(points.reduce((a, p) => a + p[1] * width, 0))")
        .await;
    assert_eq!(
        finished, run["progress"]["total"],
        "cases per second times the bucket width"
    );
    assert!(
        browser
            .eval("return document.querySelectorAll('#chart-latency g.series').length")
            .await
            == 2
    );
    assert!(
        browser
            .text("#run-agreement")
            .await
            .contains("Nobody has reviewed"),
        "no reviews yet"
    );
    browser
        .eval("document.getElementById('run-charts').scrollIntoView(); return true")
        .await;
    browser.screenshot(&shots, "dashboard-charts.png").await;

    // The queue opens on the neediest case, with its verdicts, and progress at zero.
    browser.goto(&format!("{base}/ui/#/runs/{a}/review")).await;
    browser.wait_view().await;
    let card = browser.wait_for(".review-card").await;
    let (first, need) = neediest(&records);
    assert!(
        need >= 0.25,
        "the data has a case that needs a person ({need})"
    );
    assert_eq!(
        card.attr("data-case-index").await.unwrap(),
        Some(first.to_string())
    );
    assert_eq!(browser.text("#reviewed-count").await, "0");
    assert!(browser.text(".review-card").await.contains(KEYWORDS));
    let name = browser.wait_for("#reviewer-name").await;
    name.send_keys("ana\t").await.unwrap();

    // By keyboard: 1 for exact_match, c to the judge, 7 for 0.7, Enter to save.
    press(&browser, "1c7").await;
    browser
        .expect("the keys chose the values", "return document.querySelector('.review-component[data-index=\"0\"] input[value=\"1\"]').checked && document.querySelector('.review-component[data-index=\"1\"]').classList.contains('active')")
        .await;
    press(&browser, "\u{e007}").await;
    browser
        .expect(
            "the review was saved",
            "return !!document.getElementById('review-status').dataset.saved",
        )
        .await;
    browser
        .expect(
            "progress counts it",
            "return document.getElementById('reviewed-count').textContent === '1'",
        )
        .await;
    let history = service
        .get(&format!("/runs/{a}/cases/{first}/reviews"))
        .await;
    let saved = &history["reviews"][0];
    assert_eq!(saved["reviewer"], "ana");
    assert_eq!(saved["scores"], json!({EXACT: 1.0, KEYWORDS: 0.7}));
    // The next case comes up; n skips it, 0 and Enter review the one after.
    let second = browser
        .wait_for(".review-card")
        .await
        .attr("data-case-index")
        .await
        .unwrap();
    assert_ne!(second, Some(first.to_string()));
    press(&browser, "n").await;
    browser
        .expect(
            "n skips to another case",
            &format!(
                "const c = document.querySelector('.review-card'); return !!c && c.dataset.caseIndex !== '{}'",
                second.clone().unwrap()
            ),
        )
        .await;
    browser.screenshot(&shots, "dashboard-review.png").await;
    press(&browser, "0\u{e007}").await;
    browser
        .expect(
            "the second review counts",
            "return document.getElementById('reviewed-count').textContent === '2'",
        )
        .await;

    // The agreement panel shows both reviewed cases.
    browser.goto(&format!("{base}/ui/#/runs/{a}")).await;
    browser.wait_view().await;
    browser
        .expect(
            "the agreement table is drawn",
            "return !!document.querySelector('#agreement-table')",
        )
        .await;
    let n = browser
        .eval(&format!("return document.querySelector('#agreement-table tr[data-component=\"{EXACT}\"] td:nth-of-type(2)').textContent"))
        .await;
    assert_eq!(n, "2");
    let agreement = service.get(&format!("/runs/{a}/agreement")).await;
    assert_eq!(agreement["components"][0]["n"], 2);

    // Compare: the forest plot's first row is the overall delta, the scatter pairs cases.
    browser
        .goto(&format!("{base}/ui/#/compare?baseline={b}&candidate={a}"))
        .await;
    browser.wait_view().await;
    browser
        .expect("the compare charts are drawn", "return !!document.querySelector('#paired-scatter-chart svg') && !!document.querySelector('#forest-plot svg')")
        .await;
    let report = service
        .get(&format!("/runs/{a}/compare?baseline={b}"))
        .await;
    let overall = &report["metrics"][EXACT]["overall"];
    let row = browser
        .eval(&format!("const g = document.querySelector('#forest-plot g.interval[data-label=\"{EXACT}\"]'); return [Number(g.dataset.value), Number(g.dataset.lo), Number(g.dataset.hi)]"))
        .await;
    assert!((row[0].as_f64().unwrap() - overall["delta"].as_f64().unwrap()).abs() < 1e-9);
    assert!((row[1].as_f64().unwrap() - overall["delta_ci95"][0].as_f64().unwrap()).abs() < 1e-9);
    let pairs = browser
        .eval("return [...document.querySelectorAll('#paired-scatter-chart circle.point')].reduce((a, c) => a + Number(c.dataset.n), 0)")
        .await;
    let other = service.get(&format!("/runs/{b}/results?limit=1000")).await;
    let both = records
        .iter()
        .filter(|r| score(r, EXACT).is_some())
        .filter(|r| {
            other["results"].as_array().unwrap().iter().any(|o| {
                o["case_id"] == r["case_id"]
                    && o["dataset_id"] == r["dataset_id"]
                    && score(o, EXACT).is_some()
            })
        })
        .count();
    assert_eq!(pairs, both);
    browser
        .screenshot(&shots, "dashboard-compare-charts.png")
        .await;

    // A phone: the charts and the queue fit 390 px.
    browser.resize(390, 844).await;
    for route in [format!("#/runs/{a}"), format!("#/runs/{a}/review")] {
        browser.goto(&format!("{base}/ui/{route}")).await;
        browser.wait_view().await;
        browser
            .expect(
                "the page fits the phone's width",
                "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            )
            .await;
    }
    browser
        .screenshot(&shots, "dashboard-review-phone.png")
        .await;
    let errors: Vec<Value> = browser
        .console()
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.close().await;
}
