//! Renders comparisons for people (a Markdown table for pull requests, a plain table
//! for terminals) and decides what counts as a regression for CI.

use std::fmt::Write;

use super::compare::{CompareReport, Comparison};
use super::compare_cases::RunsTable;

fn num(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.4}"))
}

fn signed(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:+.4}"))
}

fn interval(value: Option<[f64; 2]>) -> String {
    value.map_or("–".into(), |[lo, hi]| format!("[{lo:+.4}, {hi:+.4}]"))
}

/// A p-value as every report shows it: four decimals, `<0.0001` below that.
pub fn format_p_value(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if v < 1e-4 => "<0.0001".into(),
        Some(v) => format!("{v:.4}"),
    }
}

/// Client-chosen text (metric, judge and dataset ids) as one line of Markdown that shows
/// as written: line breaks and other control characters become spaces (a cell or heading
/// cannot end early or start a block), and every character that formats, links or opens
/// HTML mid-line is backslash-escaped (`|` cannot split a cell, `<` cannot open a tag,
/// `[`, `*`, `` ` `` cannot link or format).
pub(crate) fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = ' ';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied().unwrap_or(' ');
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.push(' ');
        } else if c == '_' && previous.is_alphanumeric() && next.is_alphanumeric() {
            // Within a word `_` never emphasises (`exact_match` stays as it reads).
            out.push(c);
        } else if matches!(
            c,
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!' | '~' | '&'
        ) {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
        previous = c;
    }
    out
}

const HEADER: [&str; 10] = [
    "metric",
    "dataset",
    "n",
    "baseline",
    "candidate",
    "delta",
    "95% CI",
    "p",
    "test",
    "W/L/T",
];

/// The rows of a report: each metric overall (`dataset` = `all`), then per dataset.
fn rows(report: &CompareReport) -> Vec<[String; 10]> {
    let row = |metric: &str, dataset: &str, c: &Comparison| {
        let s = &c.stats;
        [
            metric.to_owned(),
            dataset.to_owned(),
            s.n_paired.to_string(),
            num(s.baseline_mean),
            num(s.candidate_mean),
            signed(s.delta),
            interval(s.delta_ci95),
            format_p_value(s.p_value),
            s.test.map_or("–", |t| t.as_str()).to_owned(),
            format!("{}/{}/{}", s.wins, s.losses, s.ties),
        ]
    };
    let mut out = Vec::new();
    for (metric, m) in &report.metrics {
        out.push(row(metric, "all", &m.overall));
        if m.by_dataset.len() > 1 {
            for (dataset, c) in &m.by_dataset {
                out.push(row(metric, dataset, c));
            }
        }
    }
    out
}

fn footer(report: &CompareReport) -> String {
    let mut text = format!(
        "{} paired cases; unpaired: {} only in baseline, {} only in candidate.",
        report.n_paired_cases, report.unpaired_baseline, report.unpaired_candidate
    );
    if let Some(note) = &report.note {
        let _ = write!(text, " Partial: {note}.");
    }
    if let Some(cost) = report.cost.sentence() {
        let _ = write!(text, " {cost}");
    }
    text
}

/// A Markdown table ready to paste into a pull request.
pub fn render_markdown(report: &CompareReport) -> String {
    let mut out = format!(
        "**{}** (candidate) vs **{}** (baseline)\n\n",
        report.candidate.run_id, report.baseline.run_id
    );
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for mut r in rows(report) {
        // The metric and dataset are the client's text; the rest are our numbers.
        for cell in &mut r[..2] {
            *cell = markdown_text(cell);
        }
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    let _ = writeln!(out, "\n{}", footer(report));
    out
}

/// An aligned plain-text table for terminals.
pub fn render_table(report: &CompareReport) -> String {
    let header: [String; 10] = HEADER.map(str::to_owned);
    let body = rows(report);
    let mut widths = [0usize; 10];
    for r in std::iter::once(&header).chain(&body) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "candidate {}\nbaseline  {}\n\n",
        report.candidate.run_id, report.baseline.run_id
    );
    for r in std::iter::once(&header).chain(&body) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let _ = writeln!(out, "\n{}", footer(report));
    out
}

/// A Markdown table of several runs: means with CIs, and deltas against the first.
pub(crate) fn render_runs_markdown(table: &RunsTable) -> String {
    let mut out = String::new();
    for (metric, t) in &table.metrics {
        let _ = writeln!(out, "### {}\n", markdown_text(metric));
        let _ = writeln!(
            out,
            "| run | n | mean | 95% CI | delta vs first | 95% CI | p (Holm) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (i, run) in t.runs.iter().enumerate() {
            let versus = (i > 0)
                .then(|| t.versus_first.iter().find(|v| v.run_id == run.run_id))
                .flatten();
            let ci = run
                .ci95
                .map_or("–".into(), |[lo, hi]| format!("[{lo:.4}, {hi:.4}]"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                run.run_id,
                run.n,
                num(run.mean),
                ci,
                versus.map_or("–".into(), |v| signed(v.delta)),
                versus.map_or("–".into(), |v| interval(v.delta_ci95)),
                versus.map_or("–".into(), |v| format_p_value(v.p_value_holm)),
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}.", table.correction);
    if let Some(note) = &table.note {
        let _ = writeln!(out, "Partial: {note}.");
    }
    out
}

/// A metric whose overall delta fell by more than the threshold with a p-value below alpha.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub metric: String,
    pub delta: f64,
    pub p_value: f64,
}

/// Overall metrics with `delta < -max_drop` and `p_value < alpha`.
pub fn regressions(report: &CompareReport, max_drop: f64, alpha: f64) -> Vec<Regression> {
    report
        .metrics
        .iter()
        .filter_map(|(metric, m)| {
            let delta = m.overall.stats.delta?;
            let p_value = m.overall.stats.p_value?;
            (delta < -max_drop && p_value < alpha).then(|| Regression {
                metric: metric.clone(),
                delta,
                p_value,
            })
        })
        .collect()
}

#[cfg(test)]
mod markdown_tests {
    use super::markdown_text;

    #[test]
    fn client_text_cannot_break_a_line_a_cell_or_format() {
        assert_eq!(markdown_text("builtin/exact_match"), "builtin/exact_match");
        assert_eq!(
            markdown_text("m\n\n# Approved\r\n| a | b |"),
            "m  \\# Approved  \\| a \\| b \\|"
        );
        assert_eq!(
            markdown_text("<img src=x> [x](y) `c` *b* _i_ ~s~ !"),
            "\\<img src=x\\> \\[x\\](y) \\`c\\` \\*b\\* \\_i\\_ \\~s\\~ \\!"
        );
        assert_eq!(markdown_text("a\u{2028}b\u{85}c\\"), "a b c\\\\");
    }
}
