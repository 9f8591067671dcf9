// The dashboard's charts, drawn as SVG by hand: a histogram, intervals (means or deltas
// with their 95% CIs, one row each), a scatter of pairs, lines over time and horizontal
// bars. Each mark carries its numbers in data-* attributes and a <title> (the tooltip),
// and every chart comes with the same numbers as a table (see svg.js).

import {W, axes, figure, s, scale, tickText, ticks} from './svg.js';
import {num} from './format.js';

/** Scores in `bins` equal bins over `domain` (the last bin includes its upper end). */
export function binned(values, bins = 10, [lo, hi] = [0, 1]) {
  const counts = new Array(bins).fill(0);
  const width = (hi - lo) / bins;
  for (const v of values) {
    if (!(v >= lo && v <= hi)) continue;
    counts[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1;
  }
  return counts.map((count, i) => ({lo: lo + i * width, hi: lo + (i + 1) * width, count}));
}

/** A histogram of `values` (scores in [0, 1] unless `domain` says otherwise). */
export function histogram({id, title, values, bins = 10, domain = [0, 1], xLabel = 'score'}) {
  const height = 200;
  const area = {left: 44, right: W - 10, top: 10, bottom: height - 40};
  const data = binned(values, bins, domain);
  const max = Math.max(1, ...data.map((d) => d.count));
  const x = scale(domain, [area.left, area.right]);
  const y = scale([0, max], [area.bottom, area.top]);
  const bars = data.map((d) => s('rect', {
    class: 'col', x: x(d.lo) + 1, width: Math.max(0, x(d.hi) - x(d.lo) - 2),
    y: y(d.count), height: area.bottom - y(d.count), 'data-count': d.count, 'data-lo': d.lo, 'data-hi': d.hi,
  }, s('title', {}, `${tickText(d.lo)}–${tickText(d.hi)}: ${d.count}`)));
  const mode = data.reduce((a, b) => (b.count > a.count ? b : a), data[0]);
  return figure({
    id, title, height,
    summary: `${values.length} scores; the most common range is ${tickText(mode.lo)}–${tickText(mode.hi)} with ${mode.count}.`,
    body: [axes(area, x, y, {xLabel, yLabel: 'cases', xTicks: ticks(domain[0], domain[1], 5), yTicks: ticks(0, max, 4)}), bars],
    data: {headers: ['Range', 'Cases'], rows: data.map((d) => [`${tickText(d.lo)}–${tickText(d.hi)}`, String(d.count)])},
  });
}

/**
 * One row per `{label, value, lo, hi, n}`: a dot at the value and a whisker over its 95%
 * CI. With `zero`, a reference line at 0 (a forest plot of deltas).
 */
export function intervals({id, title, rows, xLabel, zero = false, domain}) {
  const rowHeight = 26;
  const height = 46 + rows.length * rowHeight;
  const labelWidth = 130;
  const area = {left: labelWidth, right: W - 12, top: 8, bottom: height - 38};
  const finite = rows.flatMap((r) => [r.value, r.lo, r.hi]).filter((v) => Number.isFinite(v));
  let [lo, hi] = domain ?? [Math.min(...finite, zero ? 0 : Infinity), Math.max(...finite, zero ? 0 : -Infinity)];
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi === lo) [lo, hi] = [lo - 0.5, hi + 0.5];
  const pad = domain ? 0 : (hi - lo) * 0.05;
  const x = scale([lo - pad, hi + pad], [area.left, area.right]);
  const marks = rows.map((r, i) => {
    const cy = area.top + rowHeight * i + rowHeight / 2;
    const hasCi = Number.isFinite(r.lo) && Number.isFinite(r.hi);
    const text = `${r.label}: ${num(r.value)}${hasCi ? ` [${num(r.lo)}, ${num(r.hi)}]` : ''}${r.n !== undefined ? `, n = ${r.n}` : ''}`;
    return s('g', {class: `interval${r.cls ? ` ${r.cls}` : ''}`, tabindex: 0, 'aria-label': text,
      'data-label': r.label, 'data-value': r.value, 'data-lo': hasCi ? r.lo : null, 'data-hi': hasCi ? r.hi : null},
    s('title', {}, text),
    s('text', {class: 'row-label', x: labelWidth - 6, y: cy + 4, 'text-anchor': 'end'}, r.label.length > 20 ? `${r.label.slice(0, 19)}…` : r.label),
    hasCi ? s('line', {class: 'whisker', x1: x(r.lo), x2: x(r.hi), y1: cy, y2: cy}) : null,
    hasCi ? [s('line', {class: 'whisker', x1: x(r.lo), x2: x(r.lo), y1: cy - 5, y2: cy + 5}),
      s('line', {class: 'whisker', x1: x(r.hi), x2: x(r.hi), y1: cy - 5, y2: cy + 5})] : null,
    Number.isFinite(r.value) ? s('circle', {class: 'dot', cx: x(r.value), cy, r: 4.5}) : null);
  });
  const reference = zero ? s('line', {class: 'reference', x1: x(0), x2: x(0), y1: area.top, y2: area.bottom}) : null;
  return figure({
    id, title, height,
    summary: rows.map((r) => `${r.label} ${num(r.value)}${Number.isFinite(r.lo) ? ` (95% CI ${num(r.lo)} to ${num(r.hi)})` : ''}`).join('; ') + '.',
    body: [axes(area, x, null, {xLabel, xTicks: ticks(x.domain[0], x.domain[1], 4)}), reference, marks],
    data: {headers: ['', 'Value', '95% CI', 'n'], rows: rows.map((r) => [r.label, num(r.value),
      Number.isFinite(r.lo) ? `[${num(r.lo)}, ${num(r.hi)}]` : '–', r.n === undefined ? '–' : String(r.n)])},
  });
}

/** Pairs `{x, y, label}` as points, with the line y = x (no change) across the domain. */
export function scatter({id, title, points, xLabel, yLabel, domain = [0, 1]}) {
  const height = 300;
  const area = {left: 44, right: W - 12, top: 10, bottom: height - 40};
  // Many pairs share a point (scores are often 0 or 1): one circle per position, sized by count.
  const at = new Map();
  for (const p of points) {
    const key = `${p.x}|${p.y}`;
    const entry = at.get(key) ?? {x: p.x, y: p.y, n: 0};
    entry.n += 1;
    at.set(key, entry);
  }
  const x = scale(domain, [area.left, area.right]);
  const y = scale(domain, [area.bottom, area.top]);
  const dots = [...at.values()].map((p) => s('circle', {
    class: 'point', cx: x(p.x), cy: y(p.y), r: Math.min(12, 3 + Math.sqrt(p.n) * 1.5), 'data-x': p.x, 'data-y': p.y, 'data-n': p.n,
  }, s('title', {}, `${xLabel} ${num(p.x)}, ${yLabel} ${num(p.y)}: ${p.n} case${p.n === 1 ? '' : 's'}`)));
  const above = points.filter((p) => p.y > p.x).length;
  const below = points.filter((p) => p.y < p.x).length;
  return figure({
    id, title, height,
    summary: `${points.length} paired cases: ${above} above the diagonal (higher in the candidate), ${below} below, ${points.length - above - below} on it.`,
    body: [axes(area, x, y, {xLabel, yLabel, xTicks: ticks(domain[0], domain[1], 4), yTicks: ticks(domain[0], domain[1], 4)}),
      s('line', {class: 'reference', x1: x(domain[0]), y1: y(domain[0]), x2: x(domain[1]), y2: y(domain[1])}), dots],
    data: {headers: [xLabel, yLabel, 'Cases'], rows: [...at.values()].map((p) => [num(p.x), num(p.y), String(p.n)])},
  });
}

/** Lines over `x` (seconds since the start): `series` is `[{name, cls, points: [[x, y]]}]`. */
export function lines({id, title, series, xLabel = 'seconds since start', yLabel, unit = ''}) {
  const height = 180;
  const area = {left: 48, right: W - 12, top: 10, bottom: height - 40};
  const all = series.flatMap((sr) => sr.points);
  const maxX = Math.max(1, ...all.map((p) => p[0]));
  const maxY = Math.max(1e-9, ...all.map((p) => p[1]));
  const x = scale([0, maxX], [area.left, area.right]);
  const y = scale([0, maxY], [area.bottom, area.top]);
  const paths = series.map((sr) => s('g', {class: `series ${sr.cls ?? ''}`, 'data-name': sr.name, 'data-points': JSON.stringify(sr.points)},
    s('title', {}, sr.name),
    s('polyline', {class: 'line', fill: 'none', points: sr.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ')}),
    sr.points.length <= 60 ? sr.points.map(([px, py]) => s('circle', {class: 'vertex', cx: x(px), cy: y(py), r: 2.2},
      s('title', {}, `${sr.name} at ${tickText(px)} s: ${tickText(py)}${unit}`))) : null));
  const legend = series.map((sr, i) => s('g', {class: `legend ${sr.cls ?? ''}`},
    s('line', {class: 'line', x1: area.left + 8 + i * 110, x2: area.left + 26 + i * 110, y1: area.top + 6, y2: area.top + 6}),
    s('text', {class: 'tick-label', x: area.left + 30 + i * 110, y: area.top + 10}, sr.name)));
  const peak = series.map((sr) => `${sr.name} peaks at ${tickText(Math.max(0, ...sr.points.map((p) => p[1])))}${unit}`).join('; ');
  const xs = [...new Set(all.map((p) => p[0]))].sort((a, b) => a - b);
  return figure({
    id, title, height,
    summary: `Over ${tickText(maxX)} s: ${peak}.`,
    body: [axes(area, x, y, {xLabel, yLabel, xTicks: ticks(0, maxX, 5), yTicks: ticks(0, maxY, 3)}), paths, legend],
    data: {headers: ['Second', ...series.map((sr) => sr.name)],
      rows: xs.map((t) => [tickText(t), ...series.map((sr) => {
        const p = sr.points.find((q) => q[0] === t);
        return p ? tickText(p[1]) : '–';
      })])},
  });
}

/** Horizontal bars `{label, value, href?}` with `format(value)` as their text. */
export function bars({id, title, rows, format = (v) => String(v), xLabel}) {
  const rowHeight = 24;
  const height = 44 + rows.length * rowHeight;
  const labelWidth = 120;
  const area = {left: labelWidth, right: W - 60, top: 8, bottom: height - 36};
  const max = Math.max(1e-12, ...rows.map((r) => r.value));
  const x = scale([0, max], [area.left, area.right]);
  const marks = rows.map((r, i) => {
    const top = area.top + rowHeight * i + 4;
    return s('g', {class: 'hbar', tabindex: 0, 'aria-label': `${r.label}: ${format(r.value)}`, 'data-label': r.label, 'data-value': r.value},
      s('title', {}, `${r.label}: ${format(r.value)}`),
      s('text', {class: 'row-label', x: labelWidth - 6, y: top + 12, 'text-anchor': 'end'}, r.label),
      s('rect', {class: 'col', x: area.left, y: top, height: rowHeight - 8, width: Math.max(1, x(r.value) - area.left)}),
      s('text', {class: 'tick-label', x: x(r.value) + 4, y: top + 12}, format(r.value)));
  });
  const total = rows.reduce((a, r) => a + r.value, 0);
  return figure({
    id, title, height,
    summary: `${rows.length} runs, ${format(total)} in all; the most is ${format(max)}.`,
    body: [axes(area, x, null, {xLabel, xTicks: ticks(0, max, 3)}), marks],
    data: {headers: ['', xLabel ?? 'Value'], rows: rows.map((r) => [r.label, format(r.value)])},
  });
}
