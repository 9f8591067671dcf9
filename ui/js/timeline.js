// A finished run's timeline from its events: cases finished per second, the provider's
// latency (a case's start to its first generation, p50 and p95 per bucket) and errors
// (failed cases and generations, provider retries) per bucket. The stream replays every
// stored event and ends; at most MAX_EVENTS are read.

import {authHeaders, runPath} from './api.js';
import {lines} from './charts.js';
import {h} from './dom.js';
import {frames, parseFrame} from './sse.js';

const MAX_EVENTS = 50_000;
/** About this many buckets across the run. */
const BUCKETS = 30;

/** The events of a finished run, at most MAX_EVENTS (and whether there were more). */
async function readEvents(runId, signal) {
  const controller = new AbortController();
  signal.addEventListener('abort', () => controller.abort(), {once: true});
  const response = await fetch(`${runPath(runId)}/events`, {
    headers: {accept: 'text/event-stream', ...authHeaders()}, signal: controller.signal, cache: 'no-store',
  });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
  const events = [];
  try {
    for await (const frame of frames(response.body)) {
      const event = parseFrame(frame);
      if (!event) continue;
      events.push(event);
      if (events.length >= MAX_EVENTS) {
        controller.abort();
        return {events, cut: true};
      }
      if (event.type === 'run_completed' || event.type === 'run_failed' || event.type === 'run_cancelled') break;
    }
  } catch (e) {
    if (!controller.signal.aborted) throw e;
  }
  controller.abort();
  return {events, cut: false};
}

/** The `q` quantile of sorted `values` (nearest rank). */
export function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Buckets of the events: `{width, rate, p50, p95, errors}` series of `[seconds, value]`. */
export function timelineOf(events) {
  const at = (e) => Date.parse(e.data.occurred_at);
  const timed = events.filter((e) => Number.isFinite(at(e)));
  if (!timed.length) return null;
  const start = Math.min(...timed.map(at));
  const end = Math.max(...timed.map(at));
  const width = Math.max(1, Math.ceil((end - start) / 1000 / BUCKETS));
  const n = Math.floor((end - start) / 1000 / width) + 1;
  const done = new Array(n).fill(0);
  const errors = new Array(n).fill(0);
  const latencies = Array.from({length: n}, () => []);
  const started = new Map();
  for (const e of timed) {
    const b = Math.floor((at(e) - start) / 1000 / width);
    const caseIndex = e.data.case_index;
    if (e.type === 'case_started') started.set(caseIndex, at(e));
    if (e.type === 'case_completed' || e.type === 'case_failed') done[b] += 1;
    if (e.type === 'case_failed' || e.type === 'generation_failed' || e.type === 'provider_retry') errors[b] += 1;
    if (e.type === 'generation_completed' && started.has(caseIndex)) {
      latencies[b].push(at(e) - started.get(caseIndex));
      started.delete(caseIndex);
    }
  }
  const series = (values) => values.map((v, i) => [i * width, v]).filter((p) => p[1] !== null);
  const sorted = latencies.map((l) => l.sort((a, b) => a - b));
  return {
    width,
    rate: series(done.map((d) => d / width)),
    p50: series(sorted.map((l) => quantile(l, 0.5))),
    p95: series(sorted.map((l) => quantile(l, 0.95))),
    errors: series(errors),
  };
}

/** The timeline charts of a finished run into `el`. */
export async function renderTimeline(el, runId, signal) {
  const {events, cut} = await readEvents(runId, signal);
  const t = timelineOf(events);
  if (!t) {
    el.replaceChildren(h('p', {class: 'muted'}, 'No events to draw.'));
    return;
  }
  el.replaceChildren(
    h('p', {class: 'small muted'}, `${events.length.toLocaleString('en-US')} events${cut ? ' (the first ones only)' : ''} in buckets of ${t.width} s.`),
    h('div', {class: 'chart-grid'},
      lines({id: 'chart-throughput', title: 'Cases finished per second', yLabel: 'cases/s', series: [{name: 'cases/s', cls: 's1', points: t.rate}]}),
      lines({id: 'chart-latency', title: 'Provider latency (case start to generation)', yLabel: 'ms', unit: ' ms',
        series: [{name: 'p50', cls: 's1', points: t.p50}, {name: 'p95', cls: 's2', points: t.p95}]}),
      lines({id: 'chart-errors', title: 'Errors per bucket', yLabel: 'errors', series: [{name: 'errors', cls: 'bad', points: t.errors}]})));
}
