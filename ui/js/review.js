// The review queue: a run's cases in the order they most need a person (a judge unsure
// of its verdict, judges disagreeing with each other or with a metric, then a sample of
// the rest), one at a time with the input, expected output, output and the judges'
// verdicts; the reviewer scores each metric and judge by keyboard and moves on.
//
// Keys: 0-9 score the active component (labels as they are; 0-1 scales in tenths),
// c moves to the next component, Enter saves and goes to the next case, n / → skips,
// p / ← goes back, ? shows the keys.

import {ApiError, call, keyRequired, runPath, withQuery} from './api.js';
import {fill, h, jsonBlock, section} from './dom.js';
import {num, shortId} from './format.js';

/** Most cases the queue orders (two pages of results). */
const MAX_QUEUE = 2000;
/** From this need on, a case comes before the sample. */
const NEEDS_A_PERSON = 0.25;
const NAME = 'themis.reviewer';

/** How much a record needs a person, in [0, 1], and why. */
export function need(record) {
  const metrics = (record.scores ?? []).filter((s) => typeof s.score === 'number').map((s) => s.score);
  const judges = (record.judgments ?? []).filter((j) => typeof j.score === 'number');
  const found = [['sample', 0]];
  for (const j of judges) {
    found.push(['judge unsure', 1 - Math.abs(2 * j.score - 1)]);
    const samples = j.details?.samples;
    if (Array.isArray(samples) && samples.length > 1 && new Set(samples.map((x) => x.passed)).size > 1) found.push(['judge unsure', 1]);
  }
  if (judges.length > 1) {
    const values = judges.map((j) => j.score);
    found.push(['judges disagree', Math.max(...values) - Math.min(...values)]);
  }
  for (const j of judges) for (const m of metrics) found.push(['judge vs metric', Math.abs(j.score - m)]);
  const [reason, value] = found.reduce((a, b) => (b[1] > a[1] ? b : a));
  return {value, reason: value >= NEEDS_A_PERSON ? reason : 'sample'};
}

/** A fixed pseudo-random rank, so the sample is the same on every visit. */
function shuffleRank(index) {
  let x = (index + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Records in review order: most need first, then the rest in a fixed shuffled order. */
export function queueOf(records) {
  const entries = records.map((record) => ({record, ...need(record)}));
  const urgent = entries.filter((e) => e.reason !== 'sample').sort((a, b) => b.value - a.value || a.record.case_index - b.record.case_index);
  const rest = entries.filter((e) => e.reason === 'sample').sort((a, b) => shuffleRank(a.record.case_index) - shuffleRank(b.record.case_index));
  return [...urgent, ...rest];
}

async function loadRecords(runId, signal) {
  const records = [];
  let cursor = '';
  do {
    const page = await call(withQuery(`${runPath(runId)}/results`, {limit: 1000, cursor}), {signal});
    records.push(...page.results);
    cursor = page.next_cursor ?? '';
  } while (cursor && records.length < MAX_QUEUE);
  return {records: records.slice(0, MAX_QUEUE), cut: Boolean(cursor)};
}

/** The values a key press gives a component on `scale`, by digit. */
function valueOfDigit(scale, digit) {
  if (scale.kind === 'binary') return digit <= 1 ? digit : null;
  if (scale.kind === 'ordinal') return digit >= scale.min && digit <= scale.max ? digit : null;
  return digit / 10;
}

function scaleHint(scale) {
  if (scale.kind === 'binary') return '0 or 1';
  if (scale.kind === 'ordinal') return `${scale.min}–${scale.max}`;
  return '0–1 (digits are tenths)';
}

export async function reviewView(main, {params: [runId], query, signal}) {
  const [agreement, {records, cut}] = await Promise.all([
    call(`${runPath(runId)}/agreement`, {signal}), loadRecords(runId, signal)]);
  const components = agreement.reviewable;
  const queue = queueOf(records);
  const reviewed = new Set(records.filter((r) => r.reviews?.length).map((r) => r.case_index));
  const wanted = Number(query.get('at'));
  let at = queue.findIndex((e) => e.record.case_index === wanted);
  if (at < 0) at = Math.max(0, queue.findIndex((e) => !reviewed.has(e.record.case_index)));
  let active = 0;
  const values = new Map();

  const nameInput = keyRequired ? null : h('input', {id: 'reviewer-name', value: localStorage.getItem(NAME) ?? '', size: 14,
    autocomplete: 'name', placeholder: 'anonymous', onchange: (e) => localStorage.setItem(NAME, e.target.value.trim())});
  const progress = h('div', {id: 'review-progress'});
  const caseArea = h('div', {id: 'review-case'});
  const status = h('p', {id: 'review-status', role: 'status', class: 'small'});
  const help = h('details', {id: 'review-keys'}, h('summary', {}, 'Keyboard'),
    h('ul', {class: 'small'},
      h('li', {}, h('kbd', {}, '0'), '–', h('kbd', {}, '9'), ': score the active metric or judge (labels as they are; 0–1 scales in tenths)'),
      h('li', {}, h('kbd', {}, 'c'), ': next metric or judge'),
      h('li', {}, h('kbd', {}, 'Enter'), ': save the review and go to the next case'),
      h('li', {}, h('kbd', {}, 'n'), ' or ', h('kbd', {}, '→'), ': next case without saving; ', h('kbd', {}, 'p'), ' or ', h('kbd', {}, '←'), ': previous')));
  fill(main,
    h('p', {class: 'crumbs'}, h('a', {href: '#/runs'}, 'Runs'), ' / ', h('a', {href: `#/runs/${runId}`, class: 'mono'}, shortId(runId)), ' / review'),
    h('h1', {}, 'Review queue'),
    h('p', {class: 'small muted'}, 'Cases a judge is unsure of, or where judges disagree with each other or with a metric, come first; then a fixed sample of the rest.',
      cut ? ` Only the first ${MAX_QUEUE} cases are queued.` : ''),
    nameInput ? h('p', {}, h('label', {}, 'Reviewing as ', nameInput)) : null,
    progress, help, caseArea, status);

  const drawProgress = () => {
    const done = queue.filter((e) => reviewed.has(e.record.case_index)).length;
    fill(progress,
      h('div', {class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': queue.length, 'aria-valuenow': done,
        'aria-label': `${done} of ${queue.length} cases reviewed`}, (() => {
        const ok = h('span', {class: 'ok'});
        ok.style.width = `${queue.length ? (100 * done) / queue.length : 0}%`;
        return ok;
      })()),
      h('p', {class: 'small'}, h('strong', {id: 'reviewed-count'}, String(done)), ` reviewed · `,
        h('span', {id: 'to-review-count'}, String(queue.length - done)), ' to review'));
  };

  const drawCase = async () => {
    values.clear();
    active = 0;
    if (!queue.length) {
      fill(caseArea, h('p', {class: 'muted'}, 'This run has no recorded cases.'));
      return;
    }
    const entry = queue[at];
    const index = entry.record.case_index;
    fill(caseArea, h('p', {class: 'muted'}, 'Loading the case…'));
    const detail = await call(`${runPath(runId)}/cases/${index}`, {signal});
    const record = detail.record;
    const output = record.reduced?.output ?? record.candidates?.[0]?.output ?? null;
    const inputs = components.map((c, i) => componentInput(c, i));
    fill(caseArea,
      h('article', {class: 'card review-card', 'data-case-index': index, 'data-reason': entry.reason, 'data-need': entry.value.toFixed(3)},
        h('h2', {}, `Case ${at + 1} of ${queue.length}: `, h('span', {class: 'mono'}, `${record.dataset_id}/${record.case_id}`), ' ',
          h('span', {class: `badge reason`}, entry.reason)),
        h('p', {class: 'small'}, h('a', {href: `#/runs/${runId}/cases/${index}`}, 'Open the full case'),
          detail.reviews?.length ? ` · reviewed by ${detail.reviews.map((r) => r.reviewer).join(', ')}` : ' · not reviewed yet'),
        h('div', {class: 'grid2'},
          section('Input', detail.case ? jsonBlock(detail.case.input, 3000) : h('p', {class: 'muted'}, 'Not available.')),
          section('Expected output', detail.case ? jsonBlock(detail.case.expected_output, 3000) : '–')),
        section('Output', record.error ? h('p', {class: 'error'}, `Failed at ${record.error.stage}: ${record.error.message}`) : null, jsonBlock(output, 4000)),
        section('Verdicts',
          h('ul', {class: 'plain verdicts'},
            record.scores.map((sc) => h('li', {}, h('strong', {}, sc.metric_id), ` ${num(sc.score)}`)),
            record.judgments.map((j) => h('li', {}, h('strong', {}, j.judge_id), ` ${num(j.score)}`,
              j.passed === true ? ' · passed' : j.passed === false ? ' · failed' : '',
              j.rationale ? h('blockquote', {class: 'rationale'}, j.rationale) : null)))),
        h('form', {id: 'review-form', 'aria-label': 'Your review', onsubmit: (e) => { e.preventDefault(); save(); }},
          h('fieldset', {}, h('legend', {}, 'Your review'), inputs),
          h('label', {for: 'review-comment'}, 'Comment (optional)'),
          h('textarea', {id: 'review-comment', rows: 2}),
          h('div', {class: 'actions'},
            h('button', {type: 'submit', class: 'primary', id: 'review-save'}, 'Save and next (Enter)'),
            h('button', {type: 'button', onclick: () => move(1)}, 'Skip (n)'),
            h('button', {type: 'button', onclick: () => move(-1)}, 'Previous (p)')))));
    markActive();
    drawProgress();
  };

  function componentInput(c, i) {
    const name = `review-${i}`;
    const choices = c.scale.kind === 'continuous' ? null
      : (c.scale.kind === 'binary' ? [0, 1] : Array.from({length: c.scale.max - c.scale.min + 1}, (_, k) => c.scale.min + k));
    const set = (v) => { values.set(c.id, v); markActive(); };
    return h('div', {class: 'review-component', 'data-component': c.id, 'data-index': i},
      h('span', {class: 'component-name'}, `${c.id} `, h('span', {class: 'small muted'}, `(${c.kind}, ${scaleHint(c.scale)})`)),
      choices
        ? h('span', {class: 'choices', role: 'radiogroup', 'aria-label': c.id}, choices.map((v) => h('label', {class: 'check'},
          h('input', {type: 'radio', name, value: v, onchange: () => { active = i; set(v); }}), String(v))))
        : h('input', {type: 'number', min: 0, max: 1, step: 0.05, 'aria-label': `${c.id} (0 to 1)`, class: 'score-input',
          onchange: (e) => { active = i; set(e.target.value === '' ? undefined : Number(e.target.value)); }}));
  }

  /** Shows which component the digits score, and the values chosen so far. */
  function markActive() {
    for (const el of caseArea.querySelectorAll('.review-component')) {
      const i = Number(el.dataset.index);
      el.classList.toggle('active', i === active);
      el.setAttribute('aria-current', i === active ? 'true' : 'false');
      const value = values.get(components[i].id);
      for (const radio of el.querySelectorAll('input[type=radio]')) radio.checked = Number(radio.value) === value;
      const number = el.querySelector('input[type=number]');
      if (number && document.activeElement !== number) number.value = value === undefined ? '' : String(value);
    }
  }

  function move(step) {
    if (!queue.length) return;
    at = (at + step + queue.length) % queue.length;
    status.textContent = '';
    drawCase().catch(showFailure);
  }

  async function save() {
    if (!values.size) {
      status.textContent = 'Score at least one metric or judge first (digits, or the choices above).';
      return;
    }
    const entry = queue[at];
    const comment = caseArea.querySelector('#review-comment')?.value.trim();
    const name = nameInput?.value.trim();
    try {
      const review = await call(`${runPath(runId)}/cases/${entry.record.case_index}/reviews`, {
        method: 'POST', signal,
        headers: name ? {'x-themis-reviewer': name} : {},
        body: {scores: Object.fromEntries(values), ...(comment ? {comment} : {})},
      });
      reviewed.add(entry.record.case_index);
      at = Math.min(at + 1, queue.length - 1);
      await drawCase();
      status.textContent = `Saved review ${review.review_id} of case ${entry.record.case_index} by ${review.reviewer}.`;
      status.dataset.saved = String(review.review_id);
    } catch (e) {
      if (e instanceof ApiError) {
        status.textContent = `Not saved: ${e.message}${e.details.length ? ` (${e.details.map((d) => `${d.path}: ${d.message}`).join('; ')})` : ''}`;
      } else {
        throw e;
      }
    }
  }

  function showFailure(e) {
    if (!signal.aborted) status.textContent = `Failed: ${e.message}`;
  }

  const onKey = (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLTextAreaElement || (target instanceof HTMLInputElement && ['text', 'number', 'password'].includes(target.type))) {
      if (event.key === 'Escape') target.blur();
      return;
    }
    if (!caseArea.querySelector('#review-form')) return;
    if (/^[0-9]$/.test(event.key)) {
      const c = components[active];
      const v = c ? valueOfDigit(c.scale, Number(event.key)) : null;
      if (v === null) {
        status.textContent = c ? `${event.key} is not on ${c.id}'s scale (${scaleHint(c.scale)}).` : '';
        return;
      }
      values.set(c.id, v);
      markActive();
      event.preventDefault();
    } else if (event.key === 'c') {
      active = (active + 1) % Math.max(1, components.length);
      markActive();
    } else if (event.key === 'Enter' && !(target instanceof HTMLButtonElement) && !(target instanceof HTMLAnchorElement)) {
      event.preventDefault();
      save().catch(showFailure);
    } else if (event.key === 'n' || event.key === 'ArrowRight') {
      move(1);
    } else if (event.key === 'p' || event.key === 'ArrowLeft') {
      move(-1);
    } else if (event.key === '?') {
      help.open = !help.open;
    }
  };
  document.addEventListener('keydown', onKey);
  signal.addEventListener('abort', () => document.removeEventListener('keydown', onKey), {once: true});
  await drawCase();
}
