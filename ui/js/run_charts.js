// A run's charts: the distribution of each metric's and judge's scores (from the first
// page of results), each one's mean per dataset with its 95% CI, and once the run has
// finished, its timeline from the events.

import {call, runPath, withQuery} from './api.js';
import {histogram, intervals} from './charts.js';
import {fill, h} from './dom.js';
import {renderTimeline} from './timeline.js';

/** Records read for the score distributions. */
const SAMPLE = 1000;

/** Every recorded score of `records` by metric or judge id. */
export function scoresById(records) {
  const out = new Map();
  const add = (id, score) => {
    if (typeof score !== 'number') return;
    if (!out.has(id)) out.set(id, []);
    out.get(id).push(score);
  };
  for (const r of records) {
    for (const sc of r.scores ?? []) add(sc.metric_id, sc.score);
    for (const j of r.judgments ?? []) add(j.judge_id, j.score);
  }
  return out;
}

const slug = (id) => id.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** Draws the charts of `run` into `el` (the timeline only when `finished`). */
export async function renderRunCharts(el, run, {signal, finished}) {
  const distributions = h('div', {class: 'chart-grid', id: 'score-distributions'}, h('p', {class: 'muted'}, 'Loading scores…'));
  const means = h('div', {class: 'chart-grid', id: 'dataset-means'});
  const timeline = h('div', {id: 'run-timeline'}, finished ? h('p', {class: 'muted'}, 'Loading events…') : h('p', {class: 'muted'}, 'Drawn when the run has finished.'));
  fill(el, h('h3', {}, 'Score distributions'), distributions, h('h3', {}, 'Means per dataset'), means, h('h3', {}, 'Timeline'), timeline);

  for (const [id, agg] of Object.entries(run.aggregates ?? {})) {
    const rows = Object.entries(agg.by_dataset ?? {}).map(([dataset, sm]) => ({
      label: dataset, value: sm.mean, lo: sm.ci95?.[0], hi: sm.ci95?.[1], n: sm.n,
    }));
    if (rows.length) {
      means.append(intervals({id: `means-${slug(id)}`, title: `${id}: mean per dataset with 95% CI`, rows, xLabel: 'mean score', domain: [0, 1]}));
    }
  }
  if (!means.childElementCount) means.append(h('p', {class: 'muted'}, 'No scores yet.'));

  const page = await call(withQuery(`${runPath(run.run_id)}/results`, {limit: SAMPLE}), {signal});
  const scores = scoresById(page.results);
  fill(distributions, scores.size ? [...scores].map(([id, values]) => histogram({
    id: `dist-${slug(id)}`, title: `${id}: score distribution${page.next_cursor ? ` (first ${SAMPLE} cases)` : ''}`, values,
  })) : h('p', {class: 'muted'}, 'No scores yet.'));

  if (finished) {
    try {
      await renderTimeline(timeline, run.run_id, signal);
    } catch (e) {
      if (!signal.aborted) fill(timeline, h('p', {class: 'error'}, `The events could not be read: ${e.message}`));
    }
  }
}
