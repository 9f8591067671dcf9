// An agent's transcript as a conversation: each turn the assistant's text, then its tool
// calls, each collapsible with its arguments and the result the model got back; usage
// and latency per turn; how the loop ended. Tool output is untrusted text: it is shown
// as text (dom.js never parses markup).

import {badge, h, jsonBlock} from './dom.js';
import {count, duration} from './format.js';

const ENDINGS = {
  answered: 'The model answered.',
  max_turns: 'Stopped: max_turns reached.',
  max_tool_calls: 'Stopped: max_tool_calls reached.',
  token_limit: 'Stopped: token_limit reached.',
  time_limit: 'Stopped: time_limit_s reached.',
  cost_limit: 'Stopped: cost_limit_usd reached.',
};

export function transcriptView(transcript) {
  const turns = transcript.turns ?? [];
  const ended = transcript.outcome === 'answered' ? 'passed' : 'failed';
  return h('section', {class: 'transcript', 'aria-label': 'Transcript'},
    h('h4', {}, `Transcript, ${turns.length} turn${turns.length === 1 ? '' : 's'} `,
      h('span', {class: `badge ${ended}`, 'data-outcome': transcript.outcome}, transcript.outcome)),
    turns.map(turn),
    h('p', {class: 'small muted transcript-end'}, ENDINGS[transcript.outcome] ?? transcript.outcome));
}

function turn(t, i) {
  const results = new Map((t.tool_results ?? []).map((r) => [r.tool_call_id, r]));
  return h('div', {class: 'turn', 'data-turn': i},
    h('p', {class: 'small muted'}, `Turn ${i + 1} · ${duration(t.latency_ms)} · `,
      `${count(t.usage?.prompt_tokens)} + ${count(t.usage?.completion_tokens)} tokens`,
      t.usage && t.usage.requests === 0 ? ' · from the cache' : ''),
    t.content ? h('div', {class: 'message assistant'}, h('strong', {}, 'assistant'), ' ', t.content) : null,
    (t.tool_calls ?? []).map((call) => toolCall(call, results.get(call.id))));
}

function toolCall(call, result) {
  return h('details', {class: 'tool-call'},
    h('summary', {},
      h('span', {class: 'mono'}, `${call.name}(…)`), ' ',
      result?.is_error ? badge('failed') : null, ' ',
      h('span', {class: 'small muted'}, result ? `${result.source ?? ''} · ${duration(result.duration_ms)}` : 'not run')),
    h('p', {class: 'small muted'}, 'Arguments'),
    jsonBlock(call.arguments, 4000),
    h('p', {class: 'small muted'}, result?.is_error ? 'Error' : 'Result'),
    result ? h('pre', {class: 'json tool-result'}, result.content) : h('p', {class: 'muted'}, 'The loop ended before this call ran.'));
}
