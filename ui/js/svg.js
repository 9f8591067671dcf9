// SVG building for the charts: elements in the SVG namespace, linear scales with round
// ticks, and the accessible frame every chart sits in (a focusable figure whose <title>
// and <desc> say what it shows, and a table of the same numbers as its text alternative).

import {h, table} from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
let ids = 0;

/** `s('rect', {x: 1, class: 'bar'}, child)`: an SVG element; strings become text. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A linear map from `[d0, d1]` to `[r0, r1]`; a zero-width domain maps to the middle. */
export function scale([d0, d1], [r0, r1]) {
  const span = d1 - d0;
  const f = (v) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0));
  f.domain = [d0, d1];
  return f;
}

/** About `n` round tick values covering `[lo, hi]`. */
export function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

/** A tick label: short, without float noise. */
export function tickText(v) {
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return String(Number(v.toPrecision(3)));
}

/** Chart size in viewBox units: narrow enough that 12-unit text stays readable at 390 px. */
export const W = 400;

/**
 * The accessible frame of a chart: `<figure>` with a caption, the focusable `<svg
 * role="img">` named by its title and described by `summary`, and the numbers as a table
 * (the text alternative, collapsed). `id` names the figure; `data` is `{headers, rows}`.
 */
export function figure({id, title, summary, height, body, data}) {
  const n = ++ids;
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${height}`, role: 'img', tabindex: 0, class: 'chart',
    'aria-labelledby': `chart-title-${n}`, 'aria-describedby': `chart-desc-${n}`,
  },
  s('title', {id: `chart-title-${n}`}, title),
  s('desc', {id: `chart-desc-${n}`}, summary),
  body);
  return h('figure', {class: 'chart-figure', id},
    h('figcaption', {}, title),
    svg,
    h('p', {class: 'small muted chart-summary'}, summary),
    h('details', {class: 'chart-data'}, h('summary', {}, 'The numbers'),
      table(data.headers, data.rows)));
}

/** Axis lines, ticks and labels of a plot area `{left, right, top, bottom}`. */
export function axes(area, x, y, {xLabel, yLabel, xTicks, yTicks}) {
  const parts = [s('line', {class: 'axis', x1: area.left, x2: area.right, y1: area.bottom, y2: area.bottom})];
  for (const v of xTicks ?? []) {
    const px = x(v);
    parts.push(s('line', {class: 'tick', x1: px, x2: px, y1: area.bottom, y2: area.bottom + 4}),
      s('text', {class: 'tick-label', x: px, y: area.bottom + 16, 'text-anchor': 'middle'}, tickText(v)));
  }
  if (y) {
    parts.push(s('line', {class: 'axis', x1: area.left, x2: area.left, y1: area.top, y2: area.bottom}));
    for (const v of yTicks ?? []) {
      const py = y(v);
      parts.push(s('line', {class: 'grid', x1: area.left, x2: area.right, y1: py, y2: py}),
        s('text', {class: 'tick-label', x: area.left - 5, y: py + 4, 'text-anchor': 'end'}, tickText(v)));
    }
  }
  if (xLabel) parts.push(s('text', {class: 'axis-label', x: (area.left + area.right) / 2, y: area.bottom + 32, 'text-anchor': 'middle'}, xLabel));
  if (yLabel) {
    parts.push(s('text', {class: 'axis-label', x: 12, y: (area.top + area.bottom) / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 12 ${(area.top + area.bottom) / 2})`}, yLabel));
  }
  return parts;
}
