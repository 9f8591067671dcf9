// Building DOM without innerHTML: every string from the server (outputs, rationales,
// case ids) is inserted as text, so nothing it contains can run as markup or script.

/** `h('a', {href: '#/runs', class: 'x', onclick: fn}, 'text', child)`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'value' && 'value' in el) {
      el.value = value;
    } else if (name === 'checked' || name === 'selected' || name === 'disabled') {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes as they are, other values as text; null/false skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A `<pre>` of a JSON value, cut after `limit` characters with a button for the rest. */
export function jsonBlock(value, limit = 4000) {
  const text = value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  const pre = h('pre', {class: 'json'}, text.length > limit ? text.slice(0, limit) + '…' : text);
  if (text.length <= limit) return pre;
  const more = h('button', {type: 'button', class: 'link'}, `Show all ${text.length.toLocaleString()} characters`);
  more.addEventListener('click', () => { pre.textContent = text; more.remove(); });
  return h('div', {}, pre, more);
}

/** A table with a header row; `rows` are arrays of cells (nodes or text). */
export function table(headers, rows, attrs = {}) {
  return h('div', {class: 'scroll'},
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((title) => h('th', {scope: 'col'}, title)))),
      h('tbody', {}, rows.map((cells) => Array.isArray(cells)
        ? h('tr', {}, cells.map((cell) => h('td', {}, cell)))
        : cells))));
}

/** A labelled section. */
export function section(title, ...children) {
  const id = 's-' + title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return h('section', {'aria-labelledby': id}, h('h2', {id}, title), ...children);
}

/** A progress bar: completed and failed shares of the total, with an accessible value. */
export function progressBar(progress) {
  const total = progress?.total ?? 0;
  const done = (progress?.completed ?? 0) + (progress?.failed ?? 0);
  const pct = (n) => (total > 0 ? (100 * n) / total : 0);
  const ok = h('span', {class: 'ok'});
  const bad = h('span', {class: 'bad'});
  // Widths through the CSSOM: the Content-Security-Policy forbids inline style attributes.
  ok.style.width = `${pct(progress?.completed ?? 0)}%`;
  bad.style.width = `${pct(progress?.failed ?? 0)}%`;
  return h('div', {
    class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total,
    'aria-valuenow': done, 'aria-label': `${done} of ${total} cases done`,
  }, ok, bad);
}

/** A status badge. */
export function badge(status) {
  return h('span', {class: `badge ${status}`}, status);
}
