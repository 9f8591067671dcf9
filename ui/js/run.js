// One run: status, progress, throughput and ETA live over its event stream; aggregates
// with CIs overall and per dataset; usage and cost; rejudges and retries; the definition
// (loaded on request: it holds the datasets); cancel and rejudge; the event log's tail.

import {call, runPath, withQuery} from './api.js';
import {badge, fill, h, jsonBlock, progressBar, section, table} from './dom.js';
import {TERMINAL, cost, count, duration, meanWithCi, num, preview, shortId, time} from './format.js';
import {followEvents} from './sse.js';
import {renderAgreement} from './agreement.js';
import {renderRunCharts} from './run_charts.js';
import {tagList} from './runs.js';

/** Events kept in the log tail (and asked for when the page opens). */
const TAIL = 50;
/** Progress samples older than this are dropped from the throughput estimate. */
const RATE_WINDOW_MS = 15_000;

export async function runView(main, {params: [runId], signal, ready}) {
  let run = await call(runPath(runId), {signal});
  const parts = {
    header: h('div', {id: 'run-header'}),
    progress: h('div', {id: 'run-progress'}),
    actions: h('div', {id: 'run-actions', class: 'actions'}),
    aggregates: h('div', {id: 'run-aggregates'}),
    usage: h('div', {id: 'run-usage'}),
    charts: h('div', {id: 'run-charts'}),
    agreement: h('div', {id: 'run-agreement'}),
    children: h('div', {id: 'run-children'}),
    log: h('ol', {id: 'event-log', class: 'event-log', reversed: true}),
    stream: h('span', {id: 'stream-state', class: 'muted small'}),
    received: h('span', {id: 'events-received', class: 'muted small'}, '0'),
  };
  fill(main,
    h('p', {class: 'crumbs'}, h('a', {href: '#/runs'}, 'Runs'), ' / ', h('span', {class: 'mono'}, shortId(runId))),
    parts.header, parts.progress, parts.actions,
    section('Aggregates', parts.aggregates),
    section('Charts', parts.charts),
    section('Agreement with reviewers', parts.agreement),
    section('Usage and cost', parts.usage),
    section('Rejudges and retries', parts.children),
    definitionSection(runId),
    section('Events', h('p', {}, 'Latest first. Stream: ', parts.stream, ' · received since opened: ', parts.received), parts.log));

  const samples = [];
  const events = [];
  const sample = (progress) => {
    const now = Date.now();
    samples.push([now, progress.completed + progress.failed]);
    while (samples.length > 2 && now - samples[0][0] > RATE_WINDOW_MS) samples.shift();
  };
  let actionsFor = null;
  const renderAll = () => {
    renderHeader(parts.header, run);
    renderProgress(parts.progress, run, samples);
    // Actions are drawn again only when the status changes (a half-confirmed cancel or a
    // rejudge being typed survives the refreshes).
    if (actionsFor !== run.status) {
      actionsFor = run.status;
      renderActions(parts.actions, run, refresh);
    }
    renderAggregates(parts.aggregates, run);
    renderUsage(parts.usage, run);
  };
  // A refresh of the summary at most once a second while events arrive.
  let refreshing = null;
  let again = false;
  async function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        run = await call(runPath(runId), {signal});
        sample(run.progress);
        renderAll();
      } catch {
        // The banner reports an unreachable server or a refused key; the next event or
        // the stream's end refreshes again.
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      refreshing = null;
      if (again && !signal.aborted) {
        again = false;
        refresh();
      }
    })();
    return refreshing;
  }
  sample(run.progress);
  renderAll();
  renderChildren(parts.children, runId, signal);
  const drawExtras = () => Promise.all([
    renderRunCharts(parts.charts, run, {signal, finished: TERMINAL.has(run.status)}),
    renderAgreement(parts.agreement, runId, signal),
  ]).catch((e) => {
    if (!signal.aborted) fill(parts.charts, h('p', {class: 'error'}, e.message));
  });
  await drawExtras();
  const drewFinished = TERMINAL.has(run.status);
  ready();

  let pending = false;
  let received = 0;
  const renderLog = () => {
    pending = false;
    fill(parts.log, events.slice().reverse().map(eventItem));
  };
  await followEvents(runId, {
    after: Math.max(0, run.last_event_seq - TAIL),
    signal,
    stillRunning: async () => {
      run = await call(runPath(runId), {signal});
      renderAll();
      return !TERMINAL.has(run.status);
    },
    onState: (state) => {
      parts.stream.textContent = state;
      parts.stream.dataset.state = state;
    },
    onEvent: (event) => {
      // How many arrived, from which one: with the log's ids, shows that a resumed
      // stream left no hole (the count spans first..last exactly).
      received += 1;
      parts.received.textContent = count(received);
      parts.received.dataset.count = String(received);
      parts.received.dataset.first ??= String(event.id);
      events.push(event);
      if (events.length > TAIL) events.shift();
      if (!pending) {
        pending = true;
        requestAnimationFrame(renderLog);
      }
      const progress = event.data.progress;
      if (progress) {
        run.progress = progress;
        sample(progress);
        renderProgress(parts.progress, run, samples);
      }
      if (event.type === 'progress' || event.type.startsWith('run_')) refresh();
    },
  });
  if (!signal.aborted) {
    renderLog();
    await refresh();
    renderChildren(parts.children, runId, signal);
    if (!drewFinished) drawExtras();
  }
}

function renderHeader(el, run) {
  fill(el,
    h('h1', {}, 'Run ', run.name ? [h('span', {class: 'run-name', id: 'run-name'}, run.name), ' '] : null,
      h('span', {class: 'mono'}, run.run_id)),
    h('dl', {class: 'facts inline'},
      run.tags?.length ? [h('dt', {}, 'Tags'), h('dd', {id: 'run-tags'}, tagList(run.tags))] : null,
      run.metadata ? [h('dt', {}, 'Metadata'), h('dd', {id: 'run-metadata', class: 'mono small'}, JSON.stringify(run.metadata))] : null,
      h('dt', {}, 'Status'), h('dd', {id: 'run-status'}, badge(run.status), run.cancel_requested && !TERMINAL.has(run.status) ? ' (cancel requested)' : null),
      h('dt', {}, 'Kind'), h('dd', {}, run.kind),
      run.parent_run_id ? [h('dt', {}, 'Evaluates'), h('dd', {}, h('a', {href: `#/runs/${run.parent_run_id}`, class: 'mono'}, shortId(run.parent_run_id)))] : null,
      h('dt', {}, 'Created'), h('dd', {}, time(run.created_at)),
      h('dt', {}, 'Started'), h('dd', {}, time(run.started_at)),
      h('dt', {}, 'Finished'), h('dd', {}, time(run.finished_at))),
    run.error ? h('p', {class: 'error'}, run.error) : null);
}

function renderProgress(el, run, samples) {
  const {completed, failed, total} = run.progress;
  const done = completed + failed;
  let rate = null;
  if (samples.length >= 2) {
    const [t0, d0] = samples[0];
    const [t1, d1] = samples[samples.length - 1];
    if (t1 > t0 && d1 > d0) rate = ((d1 - d0) * 1000) / (t1 - t0);
  }
  if (rate === null && run.started_at && done > 0) {
    const elapsed = (run.finished_at ? new Date(run.finished_at) : new Date()) - new Date(run.started_at);
    if (elapsed > 0) rate = (done * 1000) / elapsed;
  }
  const remaining = total - done;
  const eta = TERMINAL.has(run.status) ? 'done' : rate && remaining > 0 ? duration((remaining / rate) * 1000) : '–';
  // A running run's duration is the clock's, not the last summary's.
  const elapsed = run.started_at && !run.finished_at ? Date.now() - new Date(run.started_at) : run.duration_ms;
  fill(el,
    progressBar(run.progress),
    h('dl', {class: 'facts inline'},
      h('dt', {}, 'Done'), h('dd', {id: 'progress-done'}, `${count(done)} / ${count(total)}`),
      h('dt', {}, 'Completed'), h('dd', {}, count(completed)),
      h('dt', {}, 'Failed'), h('dd', {}, count(failed)),
      h('dt', {}, 'Duration'), h('dd', {id: 'duration'}, duration(elapsed)),
      h('dt', {}, 'Throughput'), h('dd', {id: 'throughput'}, rate ? `${num(rate, 1)} cases/s` : '–'),
      h('dt', {}, 'ETA'), h('dd', {id: 'eta'}, eta),
      // Present while this instance runs the run below the concurrency it asked for.
      run.concurrency ? [
        h('dt', {}, 'Concurrency'),
        h('dd', {id: 'concurrency', title: run.concurrency.reason},
          `${count(run.concurrency.effective)} of ${count(run.concurrency.requested)} asked: ${run.concurrency.reason}`)] : null));
}

function renderActions(el, run, refresh) {
  const base = `#/runs/${run.run_id}`;
  const cancel = TERMINAL.has(run.status) ? null : cancelButton(run, refresh);
  fill(el,
    h('a', {class: 'button primary', href: `${base}/results`, id: 'results-link'}, 'Results'),
    h('a', {class: 'button', href: `${base}/review`, id: 'review-link'}, 'Review cases'),
    h('a', {class: 'button', href: `#/compare?candidate=${run.run_id}${run.parent_run_id ? `&baseline=${run.parent_run_id}` : ''}`}, 'Compare…'),
    TERMINAL.has(run.status) ? rejudgeForm(run) : null,
    cancel);
}

/** Two steps, so a stray click or key press does not cancel a run. */
function cancelButton(run, refresh) {
  const button = h('button', {type: 'button', class: 'danger', id: 'cancel'}, 'Cancel run');
  const message = h('span', {class: 'small', role: 'status'});
  button.addEventListener('click', async () => {
    if (button.dataset.armed !== 'yes') {
      button.dataset.armed = 'yes';
      button.textContent = 'Confirm cancel';
      return;
    }
    button.disabled = true;
    try {
      await call(`${runPath(run.run_id)}/cancel`, {method: 'POST'});
      message.textContent = 'Cancel requested.';
      refresh();
    } catch (e) {
      message.textContent = `Cancel failed: ${e.message}`;
      button.disabled = false;
    }
  });
  return h('span', {}, button, ' ', message);
}

/** A rejudge: a new evaluation config over this run's stored generations. */
function rejudgeForm(run) {
  const area = h('textarea', {id: 'rejudge-body', rows: 6, spellcheck: 'false', 'aria-label': 'Evaluation config (JSON)'});
  const message = h('p', {class: 'small', role: 'status'});
  const form = h('form', {class: 'rejudge'},
    h('p', {class: 'small'}, 'New parsers, metrics and judges over the stored generations (no generator calls). Pre-filled with this run’s evaluation.'),
    area,
    h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', id: 'rejudge-submit'}, 'Start rejudge')),
    message);
  const details = h('details', {class: 'inline-form', id: 'rejudge'}, h('summary', {class: 'button'}, 'Rejudge…'), form);
  details.addEventListener('toggle', async () => {
    if (!details.open || area.value) return;
    try {
      const full = await call(withQuery(runPath(run.run_id), {include: 'definition'}));
      area.value = JSON.stringify(full.definition?.evaluation ?? {metrics: Object.keys(run.aggregates)}, null, 2);
    } catch {
      area.value = JSON.stringify({metrics: Object.keys(run.aggregates)}, null, 2);
    }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let body;
    try {
      body = JSON.parse(area.value);
    } catch (e) {
      message.textContent = `Not JSON: ${e.message}`;
      return;
    }
    try {
      const created = await call(`${runPath(run.run_id)}/rejudge`, {method: 'POST', body});
      window.location.hash = `#/runs/${created.run_id}`;
    } catch (e) {
      const details = e.details?.map((d) => `${d.path}: ${d.message}`).join('; ');
      message.textContent = `Rejudge refused: ${e.message}${details ? ` (${details})` : ''}`;
    }
  });
  return details;
}

function renderAggregates(el, run) {
  const entries = Object.entries(run.aggregates ?? {});
  if (!entries.length) {
    fill(el, h('p', {class: 'muted'}, 'No scores yet.'));
    return;
  }
  const rows = [];
  for (const [id, agg] of entries) {
    rows.push(h('tr', {class: 'overall'},
      h('th', {scope: 'row'}, id), h('td', {}, 'all'), h('td', {class: 'num'}, count(agg.n)),
      h('td', {class: 'num'}, count(agg.failures)), h('td', {class: 'num'}, meanWithCi(agg))));
    for (const [dataset, summary] of Object.entries(agg.by_dataset ?? {})) {
      rows.push(h('tr', {},
        h('td', {}, ''), h('td', {}, dataset), h('td', {class: 'num'}, count(summary.n)),
        h('td', {class: 'num'}, count(summary.failures)), h('td', {class: 'num'}, meanWithCi(summary))));
    }
  }
  fill(el, table(['Metric / judge', 'Dataset', 'n', 'Failures', 'Mean [95% CI]'], rows, {id: 'aggregates-table'}));
}

function renderUsage(el, run) {
  const usage = run.usage ?? {};
  const spend = run.spend ?? {};
  const facts = h('dl', {class: 'facts inline'},
    h('dt', {}, 'Requests'), h('dd', {}, count(usage.requests)),
    h('dt', {}, 'Prompt tokens'), h('dd', {}, count(usage.prompt_tokens)),
    h('dt', {}, 'Completion tokens'), h('dd', {}, count(usage.completion_tokens)),
    h('dt', {}, 'Cost'), h('dd', {id: 'run-cost'}, cost(usage.cost_usd)),
    usage.price_source ? [h('dt', {}, 'Priced by'), h('dd', {id: 'run-price-source'}, usage.price_source)] : null,
    spend.budget_usd ? [
      h('dt', {}, 'Budget'), h('dd', {id: 'run-budget'}, `${cost(spend.cost_usd) === '–' ? '$0' : cost(spend.cost_usd)} of ${cost(spend.budget_usd)}`
        + (spend.reserved_usd ? ` (${cost(spend.reserved_usd)} reserved for cases in flight)` : '')),
    ] : null);
  // Generation apart from judging, overall and per dataset, once anything was priced.
  const split = (part) => [cost(part?.generation?.cost_usd), cost(part?.judging?.cost_usd), cost(part?.cost_usd)];
  const rows = spend.cost_usd > 0 ? [
    h('tr', {}, h('th', {scope: 'row'}, 'All datasets'), ...split(spend).map((c) => h('td', {class: 'num'}, c))),
    ...Object.entries(spend.by_dataset ?? {}).map(([dataset, part]) =>
      h('tr', {}, h('td', {}, dataset), ...split(part).map((c) => h('td', {class: 'num'}, c)))),
  ] : [];
  const exhausted = run.error?.startsWith('budget exhausted')
    ? h('p', {class: 'error', id: 'run-budget-exhausted'}, 'Stopped by its budget: retry it with a budget_usd for the rest to run the cases not started.')
    : null;
  fill(el, facts, exhausted,
    rows.length ? table(['Dataset', 'Generation', 'Judging', 'Total'], rows, {id: 'spend-table'}) : null);
}

async function renderChildren(el, runId, signal) {
  try {
    const page = await call(withQuery('/runs', {parent_run_id: runId, limit: 20}), {signal});
    fill(el, page.runs.length
      ? h('ul', {class: 'plain'}, page.runs.map((child) => h('li', {},
        h('a', {href: `#/runs/${child.run_id}`, class: 'mono'}, shortId(child.run_id)), ' ', child.kind, ' ', badge(child.status),
        ' ', Object.entries(child.aggregates ?? {}).slice(0, 2).map(([id, s]) => `${id} ${meanWithCi(s)}`).join('; '))))
      : h('p', {class: 'muted'}, 'None.'));
  } catch (e) {
    if (!signal.aborted) fill(el, h('p', {class: 'error'}, e.message));
  }
}

/** The stored definition, fetched when opened; long case lists are cut for display. */
function definitionSection(runId) {
  const body = h('div', {}, h('p', {class: 'muted'}, 'Loading…'));
  const details = h('details', {id: 'definition'}, h('summary', {}, h('h2', {class: 'inline'}, 'Definition')), body);
  details.addEventListener('toggle', async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = 'yes';
    try {
      const full = await call(withQuery(runPath(runId), {include: 'definition'}));
      const definition = structuredClone(full.definition ?? {});
      for (const dataset of definition.datasets ?? []) {
        const cases = dataset.cases ?? [];
        if (cases.length > 3) dataset.cases = [...cases.slice(0, 3), `… and ${cases.length - 3} more cases`];
      }
      fill(body, jsonBlock(definition, 20_000), h('h3', {}, 'Runtime options'), jsonBlock(full.runtime ?? {}));
    } catch (e) {
      fill(body, h('p', {class: 'error'}, e.message));
    }
  });
  return details;
}

function eventItem(event) {
  const d = event.data;
  const what = [d.dataset_id && d.case_id ? `${d.dataset_id}/${d.case_id}` : null,
    d.metric_id, d.parser_id, d.stage, d.error_message ?? d.error, d.reason,
    d.progress ? `${d.progress.completed + d.progress.failed}/${d.progress.total}` : null,
    d.total_cases !== undefined ? `${d.total_cases} cases` : null,
    d.score !== undefined ? `score ${num(d.score)}` : null].filter((x) => x !== null && x !== undefined);
  const failed = event.type.endsWith('_failed');
  return h('li', {class: failed ? 'failed' : null},
    h('span', {class: 'mono small'}, `#${event.id}`), ' ',
    h('span', {class: 'small muted'}, d.occurred_at ? new Date(d.occurred_at).toLocaleTimeString() : ''), ' ',
    h('strong', {}, event.type), ' ', preview(what.join(' · '), 160));
}
