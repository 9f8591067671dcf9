// The comparison's charts: a forest plot of the deltas with their 95% CIs (each metric
// overall and per dataset) and, for one metric, each paired case's baseline score
// against its candidate score.

import {call, runPath, withQuery} from './api.js';
import {intervals, scatter} from './charts.js';
import {fill, h} from './dom.js';

/** Records read per run for the paired scatter. */
const SAMPLE = 1000;

/** Forest-plot rows of a comparison report. */
export function forestRows(report) {
  const rows = [];
  for (const [metric, comparison] of Object.entries(report.metrics)) {
    const row = (label, c, cls) => ({label, value: c.delta, lo: c.delta_ci95?.[0], hi: c.delta_ci95?.[1], n: c.n_paired, cls});
    rows.push(row(metric, comparison.overall, 'overall'));
    for (const [dataset, c] of Object.entries(comparison.by_dataset)) rows.push(row(`  ${dataset}`, c));
  }
  return rows.filter((r) => Number.isFinite(r.value));
}

const key = (r) => `${r.dataset_id}\u0000${r.case_id}\u0000${r.seed}`;

function scoreOf(record, id) {
  const s = record.scores?.find((x) => x.metric_id === id) ?? record.judgments?.find((x) => x.judge_id === id);
  return typeof s?.score === 'number' ? s.score : null;
}

/** Draws the charts of `report` (candidate against baseline) into `el`. */
export async function renderCompareCharts(el, report, {baseline, candidate, signal}) {
  const metric = Object.keys(report.metrics)[0];
  const scatterArea = h('div', {id: 'paired-scatter'}, h('p', {class: 'muted'}, 'Loading paired scores…'));
  fill(el, h('div', {class: 'chart-grid'},
    intervals({id: 'forest-plot', title: 'Δ (candidate − baseline) with 95% CI', rows: forestRows(report), xLabel: 'Δ mean score', zero: true}),
    scatterArea));
  if (!metric) {
    fill(scatterArea, h('p', {class: 'muted'}, 'No metric in common.'));
    return;
  }
  const [base, cand] = await Promise.all([baseline, candidate].map((id) =>
    call(withQuery(`${runPath(id)}/results`, {limit: SAMPLE}), {signal})));
  const byKey = new Map(base.results.map((r) => [key(r), r]));
  const points = [];
  for (const r of cand.results) {
    const b = byKey.get(key(r));
    if (!b) continue;
    const x = scoreOf(b, metric);
    const y = scoreOf(r, metric);
    if (x !== null && y !== null) points.push({x, y});
  }
  fill(scatterArea, scatter({
    id: 'paired-scatter-chart', title: `${metric}: baseline vs candidate, per case${base.next_cursor || cand.next_cursor ? ` (first ${SAMPLE})` : ''}`,
    points, xLabel: 'baseline', yLabel: 'candidate',
  }));
}
