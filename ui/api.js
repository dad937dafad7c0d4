// The server's REST API, as the page uses it: base URL, token, XSRF and errors in plain words.

const baseUrl = document.querySelector('meta[name="jupyter-base-url"]').content;
const token = new URLSearchParams(window.location.search).get('token');

/** How far the server's clock is ahead of ours (ms), from the Date header of its answers. */
let clockSkew = 0;

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The server's idea of now, in ms: ages and idle times are measured on its clock. */
export function serverNow() {
  return Date.now() + clockSkew;
}

function cookie(name) {
  const entry = document.cookie.split('; ').find(c => c.startsWith(`${name}=`));
  return entry ? decodeURIComponent(entry.slice(name.length + 1)) : null;
}

function headers() {
  const result = { Accept: 'application/json' };
  if (token) result.Authorization = `token ${token}`;
  const xsrf = cookie('_xsrf');
  if (xsrf) result['X-XSRFToken'] = xsrf;
  return result;
}

async function serverMessage(response) {
  try {
    const body = await response.json();
    return body.message || body.reason || '';
  } catch {
    return '';
  }
}

function noteClock(response, sentAt) {
  const date = Date.parse(response.headers.get('Date') || '');
  if (Number.isNaN(date)) return;
  const skew = date - (sentAt + Date.now()) / 2;
  // The header has a one-second resolution: ignore what it cannot tell apart.
  clockSkew = Math.abs(skew) > 2000 ? skew : 0;
}

/**
 * jupyter_server counts requests to its own routes as the user's activity, which would keep
 * an abandoned server from being culled while this page polls; ours never count.
 */
const NOT_ACTIVITY = { no_track_activity: 1 };

async function request(method, path, params = {}) {
  const url = new URL(baseUrl + path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== '' && value !== null && value !== undefined)
      url.searchParams.set(key, value);
  }
  const sentAt = Date.now();
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: headers(),
      credentials: 'same-origin',
      cache: 'no-store'
    });
  } catch {
    throw new ApiError(
      0,
      'The server did not answer. It may be restarting; the page keeps trying.'
    );
  }
  noteClock(response, sentAt);
  if (!response.ok)
    throw new ApiError(response.status, await serverMessage(response));
  return response.status === 204 ? null : response.json();
}

export const api = {
  comms: filters => request('GET', 'api/comms', filters),
  summary: () => request('GET', 'api/comms/summary'),
  kernels: () => request('GET', 'api/kernels', NOT_ACTIVITY),
  sessions: () => request('GET', 'api/sessions', NOT_ACTIVITY),
  closeComm: commId =>
    request('DELETE', `api/comms/${encodeURIComponent(commId)}`),
  closeMatching: filters => request('DELETE', 'api/comms', filters)
};

/** Parallel DELETEs for a selection: enough to be quick, few enough not to flood the server. */
const CONCURRENCY = 4;

/**
 * Close `comms` one by one, a few at a time, stopping at the first failure that is not a
 * 404 (a comm that closed meanwhile). `settled(comm)` is called for each one closed or gone.
 * @returns {Promise<{closed: number, gone: number, failure: Error | null}>}
 */
export async function closeEach(comms, settled) {
  const queue = [...comms];
  let closed = 0;
  let gone = 0;
  let failure = null;
  const worker = async () => {
    while (queue.length && !failure) {
      const comm = queue.shift();
      try {
        await api.closeComm(comm.comm_id);
        closed += 1;
      } catch (error) {
        if (error.status !== 404) {
          failure = error;
          break;
        }
        gone += 1;
      }
      settled(comm);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { closed, gone, failure };
}

/** The websocket URL of the server's event stream (the token rides along: no headers there). */
export function eventsUrl() {
  const url = new URL(`${baseUrl}api/events/subscribe`, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) url.searchParams.set('token', token);
  return url.href;
}

/** What went wrong, for people: `doing` is what the page tried ("close comms", "list comms"). */
export function plainWords(error, doing) {
  if (!(error instanceof ApiError))
    return `Could not ${doing}: ${error.message}`;
  const detail = error.message ? ` (the server said: ${error.message})` : '';
  switch (error.status) {
    case 0:
      return error.message;
    case 401:
      return 'You are not logged in any more. Reload the page to log in again.';
    case 403:
      if (/xsrf/i.test(error.message))
        return "The page's security token expired. Reload the page and try again.";
      return doing.startsWith('close')
        ? 'You may look but not close: this server does not let your account close comms.'
        : `You are not allowed to ${doing} on this server.`;
    case 404:
      return `Could not ${doing}: it is already gone.`;
    default:
      return error.status >= 500
        ? `The server failed to ${doing}${detail}.`
        : `Could not ${doing}${detail}.`;
  }
}
