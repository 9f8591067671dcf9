// Compare two runs: pick a baseline and a candidate, see the paired comparison (deltas,
// CIs, p-values per metric, overall and per dataset) and the regressed cases side by side.

import {ApiError, call, runPath, withQuery} from './api.js';
import {fill, h, jsonBlock, section, table} from './dom.js';
import {cost, count, num, pValue, shortId} from './format.js';
import {renderCompareCharts} from './compare_charts.js';

const CASES_PAGE = 10;

export async function compareView(main, {query, signal, navigate}) {
  const baseline = query.get('baseline') ?? '';
  const candidate = query.get('candidate') ?? '';
  const filter = query.get('filter') ?? 'regressed';
  const cursor = query.get('cursor') ?? '';
  const recent = await call('/runs?limit=50', {signal});
  const choices = (selected, id) => {
    const ids = new Set(recent.runs.map((r) => r.run_id));
    const options = recent.runs.map((r) => h('option', {value: r.run_id, selected: r.run_id === selected},
      `${shortId(r.run_id)} · ${r.kind} · ${r.status} · ${new Date(r.created_at).toLocaleString()}`));
    if (selected && !ids.has(selected)) options.unshift(h('option', {value: selected, selected: true}, selected));
    return h('select', {id}, h('option', {value: ''}, 'Choose a run'), options);
  };
  const baseSelect = choices(baseline, 'baseline');
  const candSelect = choices(candidate, 'candidate');
  const form = h('form', {class: 'filters', 'aria-label': 'Runs to compare', onsubmit: (e) => {
    e.preventDefault();
    navigate('/compare', {baseline: baseSelect.value, candidate: candSelect.value});
  }},
  h('label', {}, 'Baseline ', baseSelect), h('label', {}, 'Candidate ', candSelect),
  h('button', {type: 'submit', class: 'primary', id: 'compare-submit'}, 'Compare'));
  const body = h('div', {id: 'compare-body'});
  fill(main, h('h1', {}, 'Compare runs'), form, body);
  if (!baseline || !candidate) {
    fill(body, h('p', {class: 'muted'}, 'Pick a baseline and a candidate run. Cases pair by dataset, case id and seed.'));
    return;
  }
  fill(body, h('p', {class: 'muted'}, 'Comparing…'));
  let report;
  try {
    report = await call(withQuery(`${runPath(candidate)}/compare`, {baseline}), {signal});
  } catch (e) {
    // Runs with nothing in common (422) or an unknown run (404): say so under the form.
    if (!(e instanceof ApiError)) throw e;
    fill(body, h('p', {class: 'error', id: 'compare-error'}, e.message));
    return;
  }
  const rows = [];
  for (const [metric, comparison] of Object.entries(report.metrics)) {
    rows.push(comparisonRow(metric, 'all', comparison.overall, 'overall'));
    for (const [dataset, c] of Object.entries(comparison.by_dataset)) rows.push(comparisonRow('', dataset, c));
  }
  const cases = h('div', {id: 'changed-cases'}, h('p', {class: 'muted'}, 'Loading cases…'));
  const charts = h('div', {id: 'compare-charts'});
  fill(body,
    report.note ? h('p', {class: 'note'}, report.note) : null,
    h('p', {}, `${count(report.n_paired_cases)} paired cases; ${count(report.unpaired_baseline)} only in the baseline, ${count(report.unpaired_candidate)} only in the candidate.`),
    costLine(report.cost),
    table(['Metric / judge', 'Dataset', 'n', 'Baseline', 'Candidate', 'Δ', 'Δ 95% CI', 'p', 'Test', 'W / L / T'], rows, {id: 'compare-table'}),
    section('Charts', charts),
    report.only_in_baseline.length ? h('p', {class: 'small'}, `Only in the baseline: ${report.only_in_baseline.join(', ')}`) : null,
    report.only_in_candidate.length ? h('p', {class: 'small'}, `Only in the candidate: ${report.only_in_candidate.join(', ')}`) : null,
    section('Cases',
      h('p', {}, ['regressed', 'improved', 'changed'].map((f) => [
        f === filter ? h('strong', {'aria-current': 'true'}, f) : h('a', {href: `#/compare?${new URLSearchParams({baseline, candidate, filter: f})}`}, f), ' ']).flat()),
      cases));
  await renderCompareCharts(charts, report, {baseline, candidate, signal});
  const page = await call(withQuery(`${runPath(candidate)}/compare/cases`, {baseline, filter, cursor, limit: CASES_PAGE}), {signal});
  fill(cases,
    page.cases.length ? page.cases.map((c) => changedCase(c, baseline, candidate)) : h('p', {class: 'muted'}, `No ${filter} cases.`),
    page.next_cursor ? h('a', {class: 'button', href: `#/compare?${new URLSearchParams({baseline, candidate, filter, cursor: page.next_cursor})}`}, 'More →') : null);
}

function comparisonRow(metric, dataset, c, cls) {
  const regressed = c.delta !== null && c.delta < 0 && c.p_value !== null && c.p_value < 0.05;
  const improved = c.delta !== null && c.delta > 0 && c.p_value !== null && c.p_value < 0.05;
  return h('tr', {class: [cls, regressed ? 'worse' : improved ? 'better' : ''].filter(Boolean).join(' ')},
    metric ? h('th', {scope: 'row'}, metric) : h('td', {}, ''), h('td', {}, dataset), h('td', {class: 'num'}, count(c.n_paired)),
    h('td', {class: 'num'}, num(c.baseline_mean)), h('td', {class: 'num'}, num(c.candidate_mean)),
    h('td', {class: 'num'}, c.delta === null ? '–' : `${c.delta > 0 ? '+' : ''}${num(c.delta)}`),
    h('td', {class: 'num'}, c.delta_ci95 ? `[${num(c.delta_ci95[0])}, ${num(c.delta_ci95[1])}]` : '–'),
    h('td', {class: 'num'}, pValue(c.p_value)),
    h('td', {class: 'small'}, c.test ?? '–'),
    h('td', {class: 'num'}, `${c.wins} / ${c.losses} / ${c.ties}`));
}

function changedCase(c, baseline, candidate) {
  const changes = Object.entries(c.changes).map(([id, ch]) => `${id}: ${num(ch.baseline)} → ${num(ch.candidate)}`).join('; ');
  return h('article', {class: 'card'},
    h('h3', {}, `${c.dataset_id}/${c.case_id}`, ' ', h('span', {class: 'small muted'}, `seed ${c.seed}`)),
    h('p', {class: 'small'}, changes),
    h('div', {class: 'side-by-side'},
      h('div', {}, h('h4', {}, h('a', {href: `#/runs/${baseline}/cases/${c.baseline.case_index}`}, 'Baseline')),
        c.baseline.error ? h('p', {class: 'error'}, c.baseline.error) : null, jsonBlock(c.baseline.parsed ?? c.baseline.output, 1500)),
      h('div', {}, h('h4', {}, h('a', {href: `#/runs/${candidate}/cases/${c.candidate.case_index}`}, 'Candidate')),
        c.candidate.error ? h('p', {class: 'error'}, c.candidate.error) : null, jsonBlock(c.candidate.parsed ?? c.candidate.output, 1500))));
}

// What each run spent and the difference, beside the score deltas (nothing when
// neither run spent).
function costLine(c) {
  if (!c || !(c.baseline_usd > 0 || c.candidate_usd > 0)) return null;
  const delta = (d) => `${d < 0 ? '−' : '+'}$${Math.abs(d).toFixed(4)}`;
  return h('p', {id: 'compare-cost'},
    `Cost: ${cost(c.candidate_usd)} (candidate) vs ${cost(c.baseline_usd)} (baseline), ${delta(c.delta_usd)}`
    + ` (generation ${delta(c.generation.delta_usd)}, judging ${delta(c.judging.delta_usd)}).`);
}
