// Sigil's public REST API, called like any other client: a Bearer session token from
// sign-in, JSON bodies, problem JSON ({type, title, status, detail, code, errors?}) on errors.

const SESSION_KEY = 'sigil.session';

/** An API error in plain words: `message` is the server's `detail`; `errors` lists each refused value as `field: message`. */
export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `The server answered with status ${status}.`);
    this.name = 'ApiError';
    this.status = status;
    this.code = problem.code || '';
    this.title = problem.title || '';
    // Each refused value as "field: message" (the request as a whole has no field).
    this.errors = Array.isArray(problem.errors)
      ? problem.errors.map((e) => (e && typeof e === 'object' ? (e.field ? `${e.field}: ${e.message}` : e.message) : String(e)))
      : [];
  }
}

/** Thrown when the person closes a dialog that an action was waiting for. */
export class Cancelled extends Error {
  constructor() { super('cancelled'); this.name = 'Cancelled'; }
}

export const session = {
  get() {
    try { return JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null'); } catch { return null; }
  },
  set(value) { sessionStorage.setItem(SESSION_KEY, JSON.stringify(value)); },
  clear() { sessionStorage.removeItem(SESSION_KEY); },
};

/** Who is signed in (GET /users/me), filled in by the app. */
export const current = { me: null };

let unauthorizedHandler = () => {};
let confirmHandler = async () => { throw new Cancelled(); };

/** Called with the error when the session is refused (401): expired, revoked or invalid. */
export function onUnauthorized(fn) { unauthorizedHandler = fn; }
/** Called to ask for the password when a token change needs it; resolves once confirmed. */
export function onConfirmationNeeded(fn) { confirmHandler = fn; }

export async function request(method, path, { body, query, auth = true } = {}) {
  let url = `/api/v1${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const headers = { accept: 'application/json' };
  const token = auth ? session.get()?.token : null;
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError({ code: 'network_error', detail: 'The server could not be reached. Check the connection and try again.' }, 0);
  }
  const text = resp.status === 204 ? '' : await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) {
    const problem = data && typeof data === 'object' ? data : { detail: `The server answered ${resp.status} ${resp.statusText}.` };
    const err = new ApiError(problem, resp.status);
    if (resp.status === 401 && token) unauthorizedHandler(err);
    throw err;
  }
  return data;
}

export const api = {
  get: (path, query) => request('GET', path, { query }),
  post: (path, body, query) => request('POST', path, { body, query }),
  patch: (path, body) => request('PATCH', path, { body }),
  put: (path, body) => request('PUT', path, { body }),
  del: (path, query) => request('DELETE', path, { query }),
};

/** Whether the signed-in credential may call a method id (scope ∩ role, from /users/me). */
export function can(methodId) {
  return Boolean(current.me?.methods?.includes(methodId));
}

/** Whether a token change needs the password first, known in advance from /users/me. */
export function confirmationNeeded() {
  const me = current.me;
  if (!me?.password_confirmation_required) return false;
  const until = me.confirmed_until ? Date.parse(me.confirmed_until) : 0;
  return !(until > Date.now() + 5000);
}

/**
 * Runs a token change; asks for the password first when /users/me said so, and again
 * (then retries once) when the server answers 403 password_confirmation_required.
 */
export async function withConfirmation(action) {
  if (confirmationNeeded()) await confirmHandler();
  try {
    return await action();
  } catch (err) {
    if (err instanceof ApiError && err.code === 'password_confirmation_required') {
      if (current.me) current.me.confirmed_until = null;
      await confirmHandler();
      return action();
    }
    throw err;
  }
}

/** Every page of a list endpoint: each answers {items, total, offset, limit}; 200 is the largest page. */
export async function listAll(path, query = {}, pageSize = 200) {
  const items = [];
  for (let offset = 0; ; offset += pageSize) {
    const page = await api.get(path, { ...query, offset, limit: pageSize });
    items.push(...page.items);
    if (page.items.length === 0 || items.length >= page.total) return items;
  }
}
