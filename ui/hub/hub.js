// The Hub page: one row of totals per running server first (500 users are 500 rows, not
// 50,000), a server's comms grouped by kernel when opened, and closing one comm, a
// selection, or every idle comm, always confirmed. Requests go to the service's API
// through the admin page's client (../api.js); only textContent and attributes carry data
// into the DOM, never markup.

import { api, closeEach, plainWords, serverNow } from '../api.js';
import { bytes, duration, parseTime, plural } from '../format.js';
import { el, modelCell, targetCell } from '../table.js';

const baseUrl = document.querySelector('meta[name="jupyter-base-url"]').content;
const POLL_MS = 30000;

const $ = id => document.getElementById(id);
const keyOf = s => `${s.user}/${s.server_name}`;
const serverLabel = s => `${s.user}/${s.server_name || '(default)'}`;

/** How long ago a server timestamp was, e.g. "4 min". */
const ago = iso => duration(serverNow() - parseTime(iso));

/**
 * When a user last touched a comm on a server (the newest of its kernels'), or null: what
 * moves the server's activity, unlike what a kernel sends on its own.
 */
function lastUserActivity(summary) {
  const times = Object.values(summary.by_kernel)
    .map(k => k.comm_activity?.user)
    .filter(Boolean);
  return times.length
    ? times.reduce((a, b) => (parseTime(a) > parseTime(b) ? a : b))
    : null;
}

/** GET of a route ../api.js does not know (api/summary, api/kernels). The Hub's login
 * cookie counts on a fetch() only with the page's XSRF token, even for a GET. */
async function getJson(path, params = {}) {
  const url = new URL(`${baseUrl}${path}`, window.location.origin);
  for (const [key, value] of Object.entries(params))
    if (value) url.searchParams.set(key, value);
  const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
  const headers = { Accept: 'application/json' };
  if (xsrf)
    headers['X-XSRFToken'] = decodeURIComponent(xsrf.slice('_xsrf='.length));
  const response = await fetch(url, {
    headers,
    credentials: 'same-origin',
    cache: 'no-store'
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.message || response.statusText);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

const state = {
  servers: [],
  /** server key -> {comms, error} for the servers opened */
  open: new Map(),
  /** comm_id -> comm, across servers */
  selected: new Map(),
  readOnly: false,
  busy: false
};

function filters() {
  return {
    user: $('filter-user').value.trim(),
    target_name: $('filter-target').value.trim()
  };
}

function notify(text, isError = false) {
  $('notice').textContent = text;
  $('notice').classList.toggle('error', isError);
  $('notice').hidden = false;
}

/** The servers that did not answer, in one line (they never fail the page). */
function reportUnreachable(servers) {
  const failed = servers.filter(s => s.status !== 'ok');
  $('unreachable').hidden = failed.length === 0;
  $('unreachable').textContent = failed.length
    ? `${plural(failed.length, 'server')} did not answer: ` +
      failed
        .map(
          s =>
            `${serverLabel(s)} (${s.status === 'no-extension' ? 'no comms extension' : s.message})`
        )
        .join('; ')
    : '';
}

async function loadComms(server) {
  const { target_name } = filters();
  try {
    // By user, then by server here: ../api.js leaves out empty values, the default server's name.
    const [answer, kernels] = await Promise.all([
      api.comms({ user: server.user, target_name }),
      // Notebook names only label the groups: do without them if they do not come.
      getJson('api/kernels', { user: server.user }).catch(() => ({
        kernels: []
      }))
    ]);
    const answered = answer.servers.find(s => keyOf(s) === keyOf(server));
    state.open.set(keyOf(server), {
      comms: answer.comms.filter(c => c.server_name === server.server_name),
      kernels: new Map(
        kernels.kernels
          .filter(k => keyOf(k) === keyOf(server))
          .map(k => [k.kernel_id, k])
      ),
      error:
        answered && answered.status !== 'ok'
          ? answered.message || answered.status
          : null
    });
  } catch (error) {
    state.open.set(keyOf(server), {
      comms: [],
      kernels: new Map(),
      error: plainWords(error, 'list its comms')
    });
  }
}

async function refresh() {
  let answer;
  try {
    answer = await getJson('api/summary', { user: filters().user });
  } catch (error) {
    $('load-error').textContent = plainWords(error, 'list the servers');
    $('load-error').hidden = false;
    return;
  }
  $('load-error').hidden = true;
  state.servers = answer.servers.sort(
    (a, b) =>
      (b.summary?.open ?? -1) - (a.summary?.open ?? -1) ||
      keyOf(a).localeCompare(keyOf(b))
  );
  const running = new Set(state.servers.map(keyOf));
  for (const key of state.open.keys())
    if (!running.has(key)) state.open.delete(key);
  await Promise.all(
    state.servers.filter(s => state.open.has(keyOf(s))).map(loadComms)
  );
  const totals = answer.totals;
  $('summary').textContent =
    `${plural(totals.open, 'open comm')} · ${plural(totals.orphaned, 'orphan')} · ` +
    `${totals.left_behind ?? 0} left behind · ` +
    `${plural(totals.kernels, 'kernel')} on ${plural(state.servers.length, 'server')} · ` +
    `updated ${new Date().toLocaleTimeString()}`;
  reportUnreachable(state.servers);
  render();
}

function render() {
  const body = document.querySelector('#servers tbody');
  const rows = [];
  for (const server of state.servers) {
    rows.push(serverRow(server));
    if (state.open.has(keyOf(server)))
      rows.push(detailRow(server, state.open.get(keyOf(server))));
  }
  body.replaceChildren(...rows);
  $('loading').hidden = true;
  $('servers').hidden = state.servers.length === 0;
  $('none').hidden = state.servers.length > 0;
  const n = state.selected.size;
  $('close-selected').textContent = n
    ? `Close ${plural(n, 'comm')} selected…`
    : 'Close selected…';
  $('close-selected').disabled = n === 0 || state.readOnly;
  $('close-idle-button').disabled = state.readOnly;
}

function serverRow(server) {
  const s = server.summary;
  const opened = state.open.has(keyOf(server));
  const toggle = el('button', {
    type: 'button',
    class: 'small',
    'aria-expanded': String(opened),
    'aria-label': `${opened ? 'Hide' : 'Show'} comms of ${serverLabel(server)}`,
    text: opened ? '▾' : '▸'
  });
  toggle.disabled = server.status !== 'ok';
  toggle.addEventListener('click', async () => {
    if (state.open.has(keyOf(server))) state.open.delete(keyOf(server));
    else await loadComms(server);
    render();
    document
      .querySelector(
        `tr.server[data-server="${CSS.escape(keyOf(server))}"] button`
      )
      ?.focus();
  });
  const status =
    server.status === 'ok'
      ? 'ok'
      : server.status === 'no-extension'
        ? 'no extension'
        : `error: ${server.message}`;
  const touched = s && lastUserActivity(s);
  const cells = s
    ? [
        s.open,
        s.orphaned,
        s.left_behind ?? 0,
        Object.keys(s.by_kernel).length,
        `${s.messages.to_kernel} / ${s.messages.from_kernel}`,
        `${bytes(s.bytes.to_kernel)} / ${bytes(s.bytes.from_kernel)}`,
        touched ? `${ago(touched)} ago` : 'never'
      ]
    : ['', '', '', '', '', '', ''];
  // the server's activity as the Hub has it: what the Hub's idle culler goes by
  cells.push(server.last_activity ? `${ago(server.last_activity)} ago` : '');
  const row = el(
    'tr',
    {
      class: `server${server.status === 'ok' ? '' : ' failed'}`,
      'data-server': keyOf(server)
    },
    el('td', {}, toggle),
    el('td', { text: server.user }),
    server.server_name
      ? el('td', { text: server.server_name })
      : el('td', {}, el('em', { text: '(default)' })),
    el(
      'td',
      {},
      el('span', { class: `status-${server.status}`, text: status })
    ),
    ...cells.map(value => el('td', { class: 'num', text: String(value) }))
  );
  const [userCell, hubCell] = [...row.children].slice(-2);
  if (touched) userCell.title = touched;
  if (server.last_activity) hubCell.title = server.last_activity;
  return row;
}

/** A kernel's left-behind count and comm activity, for its group row. */
function kernelActivity(tally) {
  const parts = [];
  if (tally?.left_behind)
    parts.push(
      el('span', {
        class: 'left-behind',
        text: `${tally.left_behind} left behind`
      })
    );
  const activity = tally?.comm_activity;
  if (activity && (activity.user || activity.kernel)) {
    const when = iso => (iso ? `${ago(iso)} ago` : 'never');
    parts.push(
      el('span', {
        class: 'activity',
        title:
          'When a user last touched a comm of this kernel, and when the kernel last sent one on its own (a timer, a thread: not activity for the culler)',
        text: `user ${when(activity.user)} · kernel on its own ${when(activity.kernel)}`
      })
    );
  }
  return parts;
}

function detailRow(server, { comms, kernels, error }) {
  const summary = server.summary;
  const cell = el('td', { colspan: '12' });
  if (error) cell.append(el('p', { class: 'error', text: error }));
  if (!comms.length && !error)
    cell.append(el('p', { text: 'No open comm matches on this server.' }));
  if (comms.length) {
    const table = el('table', {
      'aria-label': `Comms of ${serverLabel(server)}`
    });
    table.append(
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ...[
            '',
            'Target',
            'Model',
            'Comm id',
            'Origin',
            'Age',
            'Idle',
            'Msgs to / from',
            ''
          ].map(label => el('th', { scope: 'col', text: label }))
        )
      )
    );
    const tbody = el('tbody');
    const byKernel = new Map();
    for (const comm of comms)
      byKernel.set(comm.kernel_id, [
        ...(byKernel.get(comm.kernel_id) || []),
        comm
      ]);
    for (const [kernelId, group] of byKernel) {
      const kernel = kernels.get(kernelId);
      const execution = kernel ? kernel.execution_state : 'gone';
      tbody.append(
        el(
          'tr',
          { class: 'kernel' },
          el(
            'th',
            { scope: 'colgroup', colspan: '9' },
            el('span', {
              class: 'kernel-name',
              text: kernel?.notebook ?? '(no notebook)'
            }),
            el('span', { text: kernel?.name ?? 'kernel' }),
            el('code', {
              class: 'kernel-id',
              title: kernelId,
              text: kernelId.slice(0, 8)
            }),
            el('span', { class: `state state-${execution}`, text: execution }),
            el('span', { text: plural(group.length, 'comm') }),
            ...kernelActivity(summary?.by_kernel[kernelId])
          )
        )
      );
      for (const comm of group) tbody.append(commRow(comm));
    }
    table.append(tbody);
    cell.append(table);
  }
  return el('tr', { class: 'detail' }, cell);
}

function commRow(comm) {
  const label = `${comm.target_name ?? '(no target)'} ${comm.comm_id.slice(0, 8)}`;
  const box = el('input', {
    type: 'checkbox',
    'aria-label': `Select comm ${label}`
  });
  box.checked = state.selected.has(comm.comm_id);
  box.disabled = state.readOnly;
  box.addEventListener('change', () => {
    if (box.checked) state.selected.set(comm.comm_id, comm);
    else state.selected.delete(comm.comm_id);
    render();
  });
  const close = el('button', {
    type: 'button',
    class: 'danger small',
    'aria-label': `Close comm ${label}`,
    text: 'Close'
  });
  close.disabled = state.readOnly;
  close.addEventListener('click', () =>
    guarded(() =>
      confirmAndClose([comm], `Close comm “${label}” of ${serverLabel(comm)}?`)
    )
  );
  return el(
    'tr',
    { 'data-comm-id': comm.comm_id },
    el('td', {}, box),
    targetCell(comm.target_name),
    modelCell(comm),
    el(
      'td',
      {},
      el('code', { title: comm.comm_id, text: comm.comm_id.slice(0, 8) })
    ),
    el('td', { text: comm.origin }),
    el('td', { title: comm.opened_at, text: ago(comm.opened_at) }),
    el('td', { title: comm.last_activity, text: ago(comm.last_activity) }),
    el('td', {
      class: 'num',
      text: `${comm.messages.to_kernel} / ${comm.messages.from_kernel}`
    }),
    el('td', {}, close)
  );
}

function confirm(question, okLabel) {
  const dialog = $('confirm');
  $('confirm-text').textContent = question;
  $('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise(resolve => {
    dialog.addEventListener(
      'close',
      () => resolve(dialog.returnValue === 'ok'),
      { once: true }
    );
  });
}

async function guarded(action) {
  if (state.busy) return;
  state.busy = true;
  try {
    await action();
  } finally {
    state.busy = false;
  }
}

/** A refusal to close (not an expired XSRF token) makes the page read-only. */
function failed(error, doing) {
  if (error.status === 403 && !/xsrf/i.test(error.message))
    state.readOnly = true;
  notify(plainWords(error, doing), true);
  render();
}

async function confirmAndClose(comms, question) {
  const note =
    "Kernels run their close callbacks, the users' open notebooks drop the comms.";
  if (
    !(await confirm(
      `${question} ${note}`,
      `Close ${plural(comms.length, 'comm')}`
    ))
  )
    return;
  const { closed, gone, failure } = await closeEach(comms, comm =>
    state.selected.delete(comm.comm_id)
  );
  if (failure) failed(failure, 'close comms');
  else
    notify(
      `Closed ${plural(closed, 'comm')}.${gone ? ` ${plural(gone, 'comm')} had already closed.` : ''}`
    );
  await refresh();
}

async function closeIdle() {
  const input = $('idle-minutes');
  const minutes = Number(input.value);
  if (input.value === '' || !(minutes >= 0)) {
    notify(
      'Enter how many minutes a comm must have been idle: a number, 0 or more.',
      true
    );
    return;
  }
  const query = { min_idle: minutes * 60, ...filters() };
  const scope =
    (query.user ? ` of ${query.user}` : ' of every user') +
    (query.target_name ? ` with target “${query.target_name}”` : '');
  const idle = `idle longer than ${plural(minutes, 'minute')}${scope}`;
  let matching;
  try {
    matching = await api.comms(query);
  } catch (error) {
    failed(error, 'count the idle comms');
    return;
  }
  if (matching.comms.length === 0) {
    notify(`No comm is ${idle}.`);
    return;
  }
  const servers = new Set(matching.comms.map(keyOf)).size;
  if (
    !(await confirm(
      `Close ${plural(matching.comms.length, 'comm')} ${idle}, on ${plural(servers, 'server')}?`,
      `Close ${plural(matching.comms.length, 'comm')}`
    ))
  )
    return;
  try {
    const answer = await api.closeMatching(query);
    notify(`Closed ${plural(answer.comms.length, 'comm')} ${idle}.`);
    reportUnreachable(answer.servers);
  } catch (error) {
    failed(error, 'close comms');
  }
  await refresh();
}

$('filters').addEventListener('submit', event => {
  event.preventDefault();
  refresh();
});
$('refresh').addEventListener('click', () => refresh());
$('close-selected').addEventListener('click', () =>
  guarded(() => {
    const comms = [...state.selected.values()];
    const servers = new Set(comms.map(keyOf)).size;
    return confirmAndClose(
      comms,
      `Close ${plural(comms.length, 'comm')} on ${plural(servers, 'server')}?`
    );
  })
);
$('close-idle').addEventListener('submit', event => {
  event.preventDefault();
  guarded(closeIdle);
});

refresh();
setInterval(() => {
  if (!state.busy && !$('confirm').open) refresh();
}, POLL_MS);
