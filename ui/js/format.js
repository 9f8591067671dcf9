// Number, time and id formatting shared by the views.

export function num(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  return Number(x).toFixed(digits);
}

/** A p-value as every report shows it: four decimals, `<0.0001` below that. */
export function pValue(p) {
  if (p === null || p === undefined || Number.isNaN(p)) return '–';
  return p < 1e-4 ? '<0.0001' : Number(p).toFixed(4);
}

/** `0.812 [0.780, 0.845]` from a summary with `mean` and `ci95`. */
export function meanWithCi(summary) {
  if (!summary || summary.mean === null || summary.mean === undefined) return '–';
  const ci = summary.ci95 ? ` [${num(summary.ci95[0])}, ${num(summary.ci95[1])}]` : '';
  return `${num(summary.mean)}${ci}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - 60 * m)} s`;
  const hours = Math.floor(m / 60);
  return `${hours} h ${m - 60 * hours} min`;
}

export function cost(usd) {
  if (!usd) return '–';
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function count(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

export function time(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** `run_95a79ed7…`: enough to tell runs apart in a table. */
export function shortId(runId) {
  return runId && runId.length > 14 ? `${runId.slice(0, 12)}…` : runId;
}

/** A one-line preview of any JSON value. */
export function preview(value, max = 80) {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
