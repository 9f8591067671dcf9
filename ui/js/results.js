// A run's results: a paged table of case records with filters (dataset, failed only,
// score below a threshold on one metric or judge). Pages come from the API's cursor;
// nothing beyond one page is ever loaded.

import {call, runPath, withQuery} from './api.js';
import {badge, fill, h} from './dom.js';
import {count, num, preview, shortId} from './format.js';

const PAGE = 50;

export async function resultsView(main, {params: [runId], query, signal, navigate}) {
  const filters = {
    dataset_id: query.get('dataset_id') ?? '',
    failed_only: query.get('failed_only') === 'true',
    metric: query.get('metric') ?? '',
    score_below: query.get('score_below') ?? '',
  };
  const cursor = query.get('cursor') ?? '';
  const back = query.get('back') ? query.get('back').split(' ').map((c) => (c === '-' ? '' : c)) : [];
  const run = await call(runPath(runId), {signal});
  const metrics = Object.keys(run.aggregates ?? {});
  const datasets = [...new Set(Object.values(run.aggregates ?? {}).flatMap((a) => Object.keys(a.by_dataset ?? {})))];

  const go = (changes) => navigate(`/runs/${runId}/results`, {...filters, ...changes});
  const below = h('input', {id: 'filter-below', type: 'number', step: 'any', inputmode: 'decimal', value: filters.score_below, size: 6});
  const metricSelect = h('select', {id: 'filter-metric'},
    metrics.map((m) => h('option', {value: m, selected: m === filters.metric}, m)));
  const form = h('form', {class: 'filters', 'aria-label': 'Filter results', onsubmit: (e) => {
    e.preventDefault();
    go({score_below: below.value, metric: below.value ? metricSelect.value : ''});
  }},
  h('label', {}, 'Dataset ', h('select', {id: 'filter-dataset', onchange: (e) => go({dataset_id: e.target.value})},
    h('option', {value: ''}, 'All'), datasets.map((d) => h('option', {value: d, selected: d === filters.dataset_id}, d)))),
  h('label', {class: 'check'}, h('input', {type: 'checkbox', id: 'filter-failed', checked: filters.failed_only,
    onchange: (e) => go({failed_only: e.target.checked})}), ' Failed only'),
  metrics.length ? h('span', {class: 'group'},
    h('label', {}, 'Score of ', metricSelect), ' ',
    h('label', {}, 'below ', below), ' ',
    h('button', {type: 'submit', id: 'apply-below'}, 'Apply'),
    filters.score_below ? h('button', {type: 'button', onclick: () => go({score_below: '', metric: ''})}, 'Clear') : null) : null);

  const body = h('div', {}, h('p', {class: 'muted'}, 'Loading results…'));
  const pager = h('nav', {class: 'pager', 'aria-label': 'Pages'});
  fill(main,
    h('p', {class: 'crumbs'}, h('a', {href: '#/runs'}, 'Runs'), ' / ',
      h('a', {href: `#/runs/${runId}`, class: 'mono'}, shortId(runId)), ' / results'),
    h('h1', {}, 'Results'),
    h('p', {class: 'muted'}, `${count(run.progress.completed + run.progress.failed)} of ${count(run.progress.total)} cases recorded.`),
    form, body, pager);

  const page = await call(withQuery(`${runPath(runId)}/results`, {
    ...filters, failed_only: filters.failed_only ? 'true' : '', cursor, limit: PAGE,
  }), {signal});
  const columns = metrics.slice(0, 4);
  fill(body, page.results.length
    ? h('div', {class: 'scroll'}, h('table', {id: 'results-table'},
      h('thead', {}, h('tr', {},
        ['#', 'Dataset', 'Case', 'Seed', 'Status', ...columns, 'Output', 'Error'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, page.results.map((record) => resultRow(runId, record, columns)))))
    : h('p', {class: 'muted', id: 'no-results'}, page.next_cursor
      ? 'No matching case in this stretch of the run; look further with “Next”.'
      : 'No case matches.'));
  const link = (c, b) => {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(filters)) if (value) params.set(name, String(value));
    if (c) params.set('cursor', c);
    if (b.length) params.set('back', b.map((x) => x || '-').join(' '));
    return `#/runs/${runId}/results?${params}`;
  };
  fill(pager,
    cursor ? h('a', {class: 'button', id: 'prev-page', href: link(back.at(-1) ?? '', back.slice(0, -1))}, '← Previous') : null,
    page.next_cursor ? h('a', {class: 'button', id: 'next-page', href: link(page.next_cursor, [...back, cursor])}, 'Next →') : null);
}

function resultRow(runId, record, columns) {
  const scoreOf = (id) => {
    const score = record.scores.find((s) => s.metric_id === id) ?? record.judgments.find((j) => j.judge_id === id);
    if (!score) return '';
    return score.score === null || score.score === undefined ? h('span', {class: 'error'}, 'error') : num(score.score);
  };
  const href = `#/runs/${runId}/cases/${record.case_index}`;
  return h('tr', {dataset: {caseIndex: record.case_index, status: record.status}},
    h('td', {class: 'num'}, h('a', {href, 'aria-label': `Case ${record.case_id} (index ${record.case_index})`}, record.case_index)),
    h('td', {}, record.dataset_id),
    h('th', {scope: 'row'}, h('a', {href}, record.case_id)),
    h('td', {class: 'mono small'}, record.seed),
    h('td', {}, badge(record.status)),
    columns.map((id) => h('td', {class: 'num'}, scoreOf(id))),
    h('td', {class: 'mono small'}, preview(record.parsed ?? record.reduced?.output, 60)),
    h('td', {class: 'small'}, record.error ? `${record.error.stage}: ${preview(record.error.message, 60)}` : ''));
}
