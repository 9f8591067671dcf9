// The runs list: newest first, filters by status and kind, paging with the API's cursor,
// each experiment's rejudges and retries grouped under it, and live progress (the page
// is read again every 2 s while one of its runs is executing).

import {call, sleep, withQuery} from './api.js';
import {badge, fill, h, progressBar} from './dom.js';
import {TERMINAL, cost, count, duration, meanWithCi, shortId, time} from './format.js';
import {bars} from './charts.js';

const PAGE = 25;
const STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'];
const KINDS = [['experiment', 'Experiments (grouped)'], ['', 'All kinds'], ['rejudge', 'Rejudges'], ['retry', 'Retries']];
/** Metrics shown per run in the table; the run page has all of them. */
const METRICS_SHOWN = 2;

export async function runsView(main, {query, signal, navigate, ready}) {
  const status = query.get('status') ?? '';
  const kind = query.has('kind') ? query.get('kind') : 'experiment';
  const cursor = query.get('cursor') ?? '';
  // A tag chosen by clicking one (`#/runs?tag=nightly`): lists every kind with it.
  const tag = query.get('tag') ?? '';
  // Cursors of the pages before this one, so "Newer" can go back.
  const back = query.get('back') ? query.get('back').split(' ').map((c) => (c === '-' ? '' : c)) : [];
  const grouped = kind === 'experiment';

  const filters = h('form', {class: 'filters', 'aria-label': 'Filter runs', onsubmit: (e) => e.preventDefault()},
    h('label', {}, 'Status ', h('select', {id: 'filter-status', onchange: (e) => navigate('/runs', {status: e.target.value, kind, tag})},
      h('option', {value: ''}, 'Any'), STATUSES.map((s) => h('option', {value: s, selected: s === status}, s)))),
    h('label', {}, 'Kind ', h('select', {id: 'filter-kind', onchange: (e) => navigate('/runs', {status, kind: e.target.value || 'all', tag})},
      KINDS.map(([value, label]) => h('option', {value, selected: value === (kind === 'all' ? '' : kind)}, label)))),
    tag ? h('span', {id: 'filter-tag'}, 'Tag ', h('span', {class: 'tag'}, tag), ' ', h('a', {href: pageLink({status, kind, tag: '', cursor: '', back: []})}, 'any tag')) : null);
  const body = h('div', {id: 'runs-body'}, h('p', {class: 'muted'}, 'Loading runs…'));
  const pager = h('nav', {class: 'pager', 'aria-label': 'Pages'});
  const spend = h('div', {id: 'runs-spend'});
  fill(main, h('h1', {}, 'Runs'), filters, body, pager, spend);

  const listQuery = {status, kind: kind === 'all' ? '' : kind, tag, cursor, limit: PAGE};
  for (;;) {
    const page = await call(withQuery('/runs', listQuery), {signal});
    const children = grouped ? await childrenOf(page.runs, signal) : new Map();
    fill(body, page.runs.length
      ? runsTable(page.runs, children, grouped)
      : h('p', {class: 'muted'}, 'No runs match. Start one with POST /runs.'));
    fill(pager,
      back.length || cursor
        ? h('a', {class: 'button', href: pageLink({status, kind, tag, cursor: back.at(-1) ?? '', back: back.slice(0, -1)})}, '← Newer')
        : null,
      page.next_cursor
        ? h('a', {class: 'button', id: 'older', href: pageLink({status, kind, tag, cursor: page.next_cursor, back: [...back, cursor]})}, 'Older →')
        : null);
    const costly = [...page.runs, ...[...children.values()].flat()].filter((r) => r.usage?.cost_usd > 0);
    fill(spend, costly.length ? bars({
      id: 'spend-chart', title: 'Spend per run on this page', xLabel: 'USD', format: cost,
      rows: costly.map((r) => ({label: shortId(r.run_id), value: r.usage.cost_usd})),
    }) : null);
    ready();
    const live = page.runs.some((r) => !TERMINAL.has(r.status))
      || [...children.values()].flat().some((r) => !TERMINAL.has(r.status));
    if (!live) return;
    await sleep(2000, signal);
    if (signal.aborted) return;
  }
}

function pageLink({status, kind, tag, cursor, back}) {
  const params = new URLSearchParams();
  if (status) params.set('status', status);
  if (kind !== 'experiment') params.set('kind', kind);
  if (tag) params.set('tag', tag);
  if (cursor) params.set('cursor', cursor);
  // The first page has no cursor: '-' keeps its place in the list.
  if (back.length) params.set('back', back.map((c) => c || '-').join(' '));
  return `#/runs?${params}`;
}

/** The rejudges and retries of each run on the page (one small query per run). */
async function childrenOf(runs, signal) {
  const lists = await Promise.all(runs.map((run) =>
    call(withQuery('/runs', {parent_run_id: run.run_id, limit: 10}), {signal})
      .then((page) => [run.run_id, page.runs])));
  return new Map(lists);
}

function runsTable(runs, children, grouped) {
  const rows = [];
  for (const run of runs) {
    rows.push(runRow(run, false));
    for (const child of children.get(run.run_id) ?? []) rows.push(runRow(child, true));
  }
  const headers = ['Run', 'Kind', 'Status', 'Progress', 'Duration', 'Cases', 'Failures', 'Cost', 'Metrics (mean [95% CI])', 'Created'];
  return h('div', {class: 'scroll'},
    h('table', {class: 'runs', id: 'runs-table', 'aria-describedby': grouped ? 'grouping-note' : null},
      h('thead', {}, h('tr', {}, headers.map((title) => h('th', {scope: 'col'}, title)))),
      h('tbody', {}, rows)),
    grouped ? h('p', {class: 'muted small', id: 'grouping-note'}, 'Rejudges and retries are listed under the run they evaluate (↳).') : null);
}

function runRow(run, child) {
  const metrics = Object.entries(run.aggregates ?? {}).slice(0, METRICS_SHOWN);
  const done = run.progress.completed + run.progress.failed;
  const cell = (label, attrs, ...content) => h('td', {...attrs, 'data-label': label}, ...content);
  return h('tr', {class: child ? 'child' : null, dataset: {runId: run.run_id, status: run.status}},
    h('th', {scope: 'row'}, child ? h('span', {'aria-hidden': 'true'}, '↳ ') : null,
      run.name ? h('a', {href: `#/runs/${run.run_id}`, class: 'run-name', title: run.run_id}, run.name) : null,
      run.name ? ' ' : null,
      h('a', {href: `#/runs/${run.run_id}`, class: 'mono', title: run.run_id}, shortId(run.run_id)),
      tagList(run.tags)),
    cell('Kind', {}, run.kind),
    cell('Status', {}, badge(run.status)),
    cell('Progress', {class: 'progress-cell'}, progressBar(run.progress),
      h('span', {class: 'small progress-text'}, `${count(done)} / ${count(run.progress.total)}`)),
    cell('Duration', {}, duration(run.duration_ms)),
    cell('Cases', {class: 'num'}, count(run.progress.total)),
    cell('Failures', {class: 'num'}, count(run.progress.failed)),
    cell('Cost', {class: 'num'}, cost(run.usage?.cost_usd)),
    cell('Metrics', {class: 'metrics'}, metrics.length
      ? h('ul', {class: 'plain'}, metrics.map(([id, summary]) => h('li', {}, h('span', {class: 'metric-id'}, id), ' ', meanWithCi(summary))))
      : '–'),
    cell('Created', {class: 'small'}, time(run.created_at)));
}

/** A run's tags, each a link to the runs that have it. */
export function tagList(tags) {
  if (!tags?.length) return null;
  return h('span', {class: 'tags'}, tags.map((tag) =>
    h('a', {class: 'tag', href: `#/runs?${new URLSearchParams({kind: 'all', tag})}`}, tag)));
}
