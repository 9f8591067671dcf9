// One case: its input, expected output and metadata; every candidate; the reduced and
// parsed values; scores; judgments with their rationales; the error and its stage; and
// how long each stage took.

import {call, runPath} from './api.js';
import {badge, fill, h, jsonBlock, section, table} from './dom.js';
import {count, duration, num, shortId} from './format.js';
import {transcriptView} from './transcript.js';

export async function caseView(main, {params: [runId, index], signal}) {
  const caseIndex = Number(index);
  const {record, case: source} = await call(`${runPath(runId)}/cases/${caseIndex}`, {signal});
  const base = `#/runs/${runId}`;
  fill(main,
    h('p', {class: 'crumbs'}, h('a', {href: '#/runs'}, 'Runs'), ' / ',
      h('a', {href: base, class: 'mono'}, shortId(runId)), ' / ', h('a', {href: `${base}/results`}, 'results'), ` / case ${caseIndex}`),
    h('h1', {}, 'Case ', h('span', {class: 'mono'}, `${record.dataset_id}/${record.case_id}`)),
    h('dl', {class: 'facts inline'},
      h('dt', {}, 'Status'), h('dd', {id: 'case-status'}, badge(record.status)),
      h('dt', {}, 'Index'), h('dd', {}, caseIndex),
      h('dt', {}, 'Seed'), h('dd', {class: 'mono'}, record.seed),
      h('dt', {}, 'Requests'), h('dd', {}, count(record.usage?.requests)),
      h('dt', {}, 'Tokens'), h('dd', {}, `${count(record.usage?.prompt_tokens)} + ${count(record.usage?.completion_tokens)}`)),
    h('nav', {class: 'pager', 'aria-label': 'Cases'},
      caseIndex > 0 ? h('a', {class: 'button', href: `${base}/cases/${caseIndex - 1}`}, '← Previous case') : null,
      h('a', {class: 'button', href: `${base}/cases/${caseIndex + 1}`}, 'Next case →')),
    record.error ? h('p', {class: 'error', id: 'case-error'}, h('strong', {}, `Failed at ${record.error.stage}: `), record.error.message) : null,
    h('div', {class: 'grid2'},
      section('Input', source ? jsonBlock(source.input) : h('p', {class: 'muted'}, 'The definition holding this case is not available.')),
      section('Expected output', source ? jsonBlock(source.expected_output) : '–')),
    h('div', {class: 'grid2'},
      section('Scores', record.scores.length
        ? table(['Metric', 'Score', 'Error'], record.scores.map((s) => [s.metric_id, num(s.score), s.error ?? '']))
        : h('p', {class: 'muted'}, 'No scores.'),
      record.scores.some((s) => s.details) ? h('details', {}, h('summary', {}, 'Score details'),
        record.scores.filter((s) => s.details).map((s) => [h('h3', {}, s.metric_id), jsonBlock(s.details, 1500)])) : null),
      section('Judgments', record.judgments.length
        ? h('div', {id: 'judgments'}, record.judgments.map(judgment))
        : h('p', {class: 'muted'}, 'No judgments.'))),
    section('Parsed', record.parsed !== undefined && record.parsed !== null ? jsonBlock(record.parsed) : h('p', {class: 'muted'}, 'No parsed value.'),
      record.parse_steps.length
        ? table(['Parser', 'Output', 'Error'], record.parse_steps.map((step) => [step.parser_id, jsonBlock(step.output, 2000), step.error ?? '']))
        : null),
    section('Candidates', candidates(record.candidates)),
    section('Reduced', record.reduced
      ? [h('p', {class: 'small'}, `From ${record.reduced.candidate_id} (of ${record.reduced.source_candidate_ids.join(', ')})`),
        jsonBlock(record.reduced.output), record.reduced.details ? jsonBlock(record.reduced.details) : null]
      : h('p', {class: 'muted'}, 'Not reduced.')),
    source?.metadata ? section('Metadata', jsonBlock(source.metadata)) : null,
    section('Stage timings', table(['Stage', 'Duration', 'Error'], record.stages.map((stage) => [
      stage.stage, duration(stage.duration_ms), stage.error ?? '']), {id: 'stages-table'})));
}

function candidates(list) {
  if (!list.length) return h('p', {class: 'muted'}, 'No candidates.');
  return list.map((c) => h('article', {class: 'card'},
    h('h3', {}, `Candidate ${c.candidate_index}`, ' ', h('span', {class: 'mono small muted'}, c.candidate_id)),
    h('dl', {class: 'facts inline small'},
      h('dt', {}, 'Seed'), h('dd', {class: 'mono'}, c.seed),
      h('dt', {}, 'Finish'), h('dd', {}, c.finish_reason ?? '–'),
      h('dt', {}, 'Duration'), h('dd', {}, duration(c.duration_ms)),
      h('dt', {}, 'Tokens'), h('dd', {}, `${count(c.usage?.prompt_tokens)} + ${count(c.usage?.completion_tokens)}`)),
    c.error ? h('p', {class: 'error'}, c.error) : null,
    jsonBlock(c.output, 3000),
    c.transcript ? transcriptView(c.transcript) : null,
    c.raw_text && c.raw_text !== c.output ? h('details', {}, h('summary', {}, 'Raw text'), jsonBlock(c.raw_text, 10_000)) : null));
}

function judgment(j) {
  return h('article', {class: 'card judgment'},
    h('h3', {}, j.judge_id, ' ',
      j.passed === true ? badge('passed') : j.passed === false ? badge('failed') : null, ' ',
      h('span', {class: 'muted'}, `score ${num(j.score)}`)),
    j.rationale ? h('blockquote', {class: 'rationale'}, j.rationale) : null,
    j.error ? h('p', {class: 'error'}, j.error) : null,
    j.details ? h('details', {}, h('summary', {}, 'Details'), jsonBlock(j.details, 6000)) : null);
}
