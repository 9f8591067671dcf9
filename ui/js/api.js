// The JSON API as the dashboard calls it: the key in the Authorization header (never in
// a URL), errors in the API's shape, and the connection state for the banner.

const KEY = 'themis.apiKey';

/** Whether the server said (in index.html) that its API needs a key. */
export const keyRequired =
  document.querySelector('meta[name="themis-auth"]')?.getAttribute('content') === 'key';

export function storedKey() {
  return sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
}

/** Keeps the key for this tab, or in this browser when `remember` is set. */
export function storeKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

export function authHeaders() {
  const key = storedKey();
  return key ? {authorization: `Bearer ${key}`} : {};
}

/** Connection news for the shell: `unreachable`, `reachable`, `unauthorized`. */
export const connection = new EventTarget();

function announce(type, detail) {
  connection.dispatchEvent(new CustomEvent(type, {detail}));
}

/** An error answer of the API: `{error: {code, message, details}}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? 'http_error';
    this.details = error.details ?? [];
  }
}

/** The server could not be reached at all. */
export class Unreachable extends Error {}

/** `GET`/`POST` a path of the API; resolves to the parsed JSON body. */
export async function call(path, {method = 'GET', body, signal, headers: extra = {}} = {}) {
  const headers = {accept: 'application/json', ...authHeaders(), ...extra};
  const init = {method, headers, signal, cache: 'no-cache'};
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (signal?.aborted) throw e;
    announce('unreachable');
    throw new Unreachable('The Themis server cannot be reached.');
  }
  announce('reachable');
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.status === 401) announce('unauthorized');
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/** Builds `path?query` from an object, leaving out empty values. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '' && value !== false) query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const runPath = (runId) => `/runs/${encodeURIComponent(runId)}`;

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, {once: true});
  });
}
