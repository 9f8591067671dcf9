// How the run's metrics and judges agree with the people who reviewed its cases
// (GET /runs/{id}/agreement): per component n, kappa, weighted kappa, Pearson and
// Spearman with 95% CIs, the confusion matrix, and the reviewers' agreement.

import {call, runPath} from './api.js';
import {fill, h, table} from './dom.js';
import {num} from './format.js';

/** `0.500 [0.120, 0.820]`, or `–` when undefined. */
export function estimate(e) {
  if (!e) return '–';
  return `${num(e.value)}${e.ci95 ? ` [${num(e.ci95[0])}, ${num(e.ci95[1])}]` : ''}`;
}

function scaleText(scale) {
  if (scale.kind === 'ordinal') return `ordinal ${scale.min}–${scale.max}`;
  return scale.kind === 'binary' ? 'labels 0/1' : 'continuous 0–1';
}

function reviewersText(r) {
  if (r.count < 2) return `${r.count} reviewer${r.count === 1 ? '' : 's'}`;
  const stat = r.krippendorff_alpha ? `α ${estimate(r.krippendorff_alpha)}`
    : r.kappa ? `κ ${estimate(r.kappa)}` : r.pearson ? `r ${estimate(r.pearson)}` : 'not enough shared cases';
  return `${r.count} reviewers, ${r.shared_cases} shared cases: ${stat}`;
}

function confusionTable(component) {
  const c = component.confusion;
  if (!c || !component.n) return null;
  return h('div', {class: 'confusion'},
    h('p', {class: 'small'}, `${component.id}: rows are the people's label, columns the ${component.kind}'s.`),
    table(['people \\ ' + component.kind, ...c.labels.map(String)],
      c.matrix.map((row, i) => [String(c.labels[i]), ...row.map(String)]),
      {class: 'confusion-table', 'data-component': component.id}));
}

/** The agreement of `runId` drawn into `el`; resolves to the response. */
export async function renderAgreement(el, runId, signal) {
  const a = await call(`${runPath(runId)}/agreement`, {signal});
  if (!a.reviewed_cases) {
    fill(el, h('p', {class: 'muted', id: 'agreement-empty'}, 'Nobody has reviewed a case of this run yet. ',
      h('a', {href: `#/runs/${runId}/review`}, 'Review cases →')));
    return a;
  }
  fill(el,
    h('p', {}, `${a.reviewed_cases} reviewed cases by ${a.reviewers.join(', ')}.`,
      a.reviews_run_id !== a.run_id ? ` Reviews of the generations of ${a.reviews_run_id}.` : '',
      a.truncated ? ' Only the first 100,000 reviews are counted.' : ''),
    table(['Metric / judge', 'Scale', 'n', 'κ [95% CI]', 'Weighted κ', 'Pearson r', 'Spearman ρ', 'Between reviewers'],
      a.components.map((c) => h('tr', {'data-component': c.id},
        h('th', {scope: 'row'}, c.id), h('td', {}, scaleText(c.scale)), h('td', {class: 'num'}, String(c.n)),
        h('td', {class: 'num kappa'}, estimate(c.kappa)), h('td', {class: 'num'}, estimate(c.weighted_kappa)),
        h('td', {class: 'num'}, estimate(c.pearson)), h('td', {class: 'num'}, estimate(c.spearman)),
        h('td', {class: 'small'}, reviewersText(c.reviewers)))),
      {id: 'agreement-table'}),
    a.components.map(confusionTable));
  return a;
}
