// A run's server-sent events read with fetch() and a stream reader: EventSource cannot
// send the Authorization header. After a dropped connection the stream is opened again
// with `Last-Event-ID` (the last sequence number seen), so no event is missed or repeated.

import {authHeaders, connection, runPath, sleep} from './api.js';

const TERMINAL = new Set(['run_completed', 'run_failed', 'run_cancelled']);

/**
 * Follows the events of `runId` after `after` until the run's terminal event, `signal`
 * aborts, or `stillRunning()` (asked after a stream ends without one) says no.
 * `onEvent({id, type, data})` gets each event once, in order; `onState(state)` gets
 * `connecting`, `live`, `reconnecting`, `finished` or `unauthorized`.
 */
export async function followEvents(runId, {after = 0, signal, onEvent, onState, stillRunning}) {
  let last = after;
  let delay = 500;
  while (!signal.aborted) {
    let finished = false;
    onState('connecting');
    try {
      const headers = {accept: 'text/event-stream', ...authHeaders()};
      if (last > 0) headers['last-event-id'] = String(last);
      const response = await fetch(`${runPath(runId)}/events`, {headers, signal, cache: 'no-store'});
      if (response.status === 401) {
        connection.dispatchEvent(new CustomEvent('unauthorized'));
        onState('unauthorized');
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      onState('live');
      delay = 500;
      for await (const frame of frames(response.body)) {
        const event = parseFrame(frame);
        if (!event || event.id <= last) continue;
        last = event.id;
        onEvent(event);
        if (TERMINAL.has(event.type)) finished = true;
      }
    } catch {
      if (signal.aborted) return;
    }
    if (finished || !(await stillRunning().catch(() => true))) {
      onState('finished');
      return;
    }
    onState('reconnecting');
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10_000);
  }
}

/** The text of each frame (the block before a blank line) of an event stream body. */
export async function* frames(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        yield buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** `{id, type, data}` of a frame, or null for a comment (keep-alive) or a frame without data. */
export function parseFrame(frame) {
  let id = null;
  let type = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') id = Number(value);
    else if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (id === null || Number.isNaN(id) || data.length === 0) return null;
  try {
    return {id, type, data: JSON.parse(data.join('\n'))};
  } catch {
    return null;
  }
}
