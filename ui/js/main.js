// The dashboard's shell: hash routes, the API key dialog and the connection banner.
// Each view renders into <main> and stops its polling and streams when the route changes.

import {ApiError, Unreachable, call, connection, forgetKey, keyRequired, storeKey, storedKey} from './api.js';
import {fill, h} from './dom.js';
import {runsView} from './runs.js';
import {runView} from './run.js';
import {resultsView} from './results.js';
import {caseView} from './case.js';
import {compareView} from './compare.js';
import {reviewView} from './review.js';

const ROUTES = [
  [/^\/runs\/?$/, runsView, 'runs'],
  [/^\/runs\/(run_[0-9a-f]+)\/?$/, runView, 'runs'],
  [/^\/runs\/(run_[0-9a-f]+)\/results\/?$/, resultsView, 'runs'],
  [/^\/runs\/(run_[0-9a-f]+)\/cases\/(\d+)\/?$/, caseView, 'runs'],
  [/^\/runs\/(run_[0-9a-f]+)\/review\/?$/, reviewView, 'runs'],
  [/^\/compare\/?$/, compareView, 'compare'],
];

const main = document.getElementById('main');
let current = null;

/** `#/path?query` as `{path, query}`. */
function location() {
  const raw = window.location.hash.replace(/^#/, '') || '/runs';
  const [path, query = ''] = raw.split('?');
  return {path, query: new URLSearchParams(query)};
}

/** Goes to `path` with `query` (an object; empty values left out), as a new history entry. */
export function navigate(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '' && value !== false) params.set(name, String(value));
  }
  const text = params.toString();
  window.location.hash = text ? `${path}?${text}` : path;
}

async function render() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const {path, query} = location();
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.toggleAttribute('aria-current', route?.[2] === link.dataset.nav);
  }
  if (!route) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', {href: '#/runs'}, 'See the runs.')));
    return;
  }
  if (keyRequired && !storedKey()) {
    fill(main, h('p', {class: 'muted'}, 'This server needs an API key.'));
    askForKey();
    return;
  }
  const [pattern, view] = route;
  const params = path.match(pattern).slice(1);
  // Busy until the view has drawn its data (live views keep running after that).
  main.setAttribute('aria-busy', 'true');
  const hash = window.location.hash;
  const ready = () => {
    if (controller.signal.aborted) return;
    main.removeAttribute('aria-busy');
    main.dataset.route = hash;
  };
  try {
    await view(main, {params, query, signal: controller.signal, navigate, ready});
    ready();
  } catch (e) {
    ready();
    if (controller.signal.aborted) return;
    showError(e);
  }
}

/** What a view shows when its first load fails. */
export function showError(e) {
  if (e instanceof Unreachable) {
    fill(main, h('h1', {}, 'Server unreachable'), h('p', {}, e.message));
  } else if (e instanceof ApiError) {
    fill(main,
      h('h1', {}, e.status === 404 ? 'Not found' : `Error ${e.status}`),
      h('p', {class: 'error'}, e.message),
      e.details.length ? h('ul', {}, e.details.map((d) => h('li', {}, `${d.path}: ${d.message}`))) : null,
      h('p', {}, h('a', {href: '#/runs'}, 'Back to the runs')));
  } else {
    fill(main, h('h1', {}, 'Something went wrong'), h('p', {class: 'error'}, String(e?.message ?? e)));
  }
}

// The API key dialog.
const dialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');
const keyError = document.getElementById('key-error');
const keyButton = document.getElementById('key-button');

function askForKey(message) {
  keyError.hidden = !message;
  keyError.textContent = message ?? '';
  keyInput.value = '';
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
}

document.getElementById('key-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  storeKey(key, document.getElementById('key-remember').checked);
  try {
    await call('/runs?limit=1');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      forgetKey();
      askForKey('The server did not accept this key.');
      return;
    }
  }
  dialog.close();
  render();
});
document.getElementById('key-forget').addEventListener('click', () => {
  forgetKey();
  askForKey();
});
dialog.addEventListener('cancel', (event) => {
  // Without a key there is nothing to show: the dialog stays until one is given.
  if (keyRequired && !storedKey()) event.preventDefault();
});
keyButton.hidden = !keyRequired;
keyButton.addEventListener('click', () => askForKey());
connection.addEventListener('unauthorized', () => askForKey(storedKey() ? 'The server did not accept the key.' : undefined));

// The banner when the server cannot be reached; it checks every 5 s and reloads the view.
const banner = document.getElementById('banner');
let probe = null;
function probeAgain() {
  clearTimeout(probe);
  probe = setTimeout(async () => {
    try {
      const response = await fetch('/healthz', {cache: 'no-store'});
      if (response.ok) {
        banner.hidden = true;
        probe = null;
        render();
        return;
      }
    } catch {
      // still down
    }
    probeAgain();
  }, 5000);
}
connection.addEventListener('unreachable', () => {
  document.getElementById('banner-text').textContent =
    `Cannot reach the Themis server at ${window.location.origin}. Retrying every 5 s…`;
  banner.hidden = false;
  if (!probe) probeAgain();
});
connection.addEventListener('reachable', () => {
  banner.hidden = true;
  clearTimeout(probe);
  probe = null;
});
document.getElementById('banner-retry').addEventListener('click', () => render());

window.addEventListener('hashchange', render);
render();
