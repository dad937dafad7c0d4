// The admin page: loads comms, kernels and closed comms, and wires the parts together.

import { Actions } from './actions.js';
import { api, plainWords } from './api.js';
import { plural } from './format.js';
import { Live } from './live.js';
import { CommTable, renderClosed } from './table.js';

const STATUS_TEXT = {
  live: 'Live',
  polling: 'Polling (event stream unavailable)',
  offline: 'Server unreachable, retrying'
};

const table = new CommTable({
  onClose: comm => actions.closeOne(comm),
  onSelection: () => actions.selectionChanged()
});
const actions = new Actions(table, () => live.request());
const live = new Live(refresh, status => {
  const badge = document.getElementById('live-status');
  badge.textContent = STATUS_TEXT[status];
  badge.className = `badge ${status}`;
});
const loadError = document.getElementById('load-error');

const showInternal = document.getElementById('show-internal');
let lastClosed = [];
let lastKernels = new Map();

async function refresh() {
  let open, closed, summary, kernelList, sessions;
  try {
    [open, closed, summary, kernelList, sessions] = await Promise.all([
      api.comms(),
      api.comms({ status: 'closed' }),
      api.summary(),
      // Kernels and sessions only decorate the table (names, notebooks, states,
      // connections): do without them if refused.
      api.kernels().catch(decoration),
      api.sessions().catch(decoration)
    ]);
  } catch (error) {
    loadError.textContent = plainWords(error, 'list comms');
    loadError.hidden = false;
    throw error;
  }
  loadError.hidden = true;
  const kernels = new Map(kernelList.map(k => [k.id, { ...k, paths: [] }]));
  for (const session of sessions) {
    kernels.get(session.kernel?.id)?.paths.push(session.path);
  }
  table.setData(open, kernels, summary.by_kernel);
  table.render();
  actions.selectionChanged();
  actions.leftBehindChanged(summary.left_behind);
  [lastClosed, lastKernels] = [closed, kernels];
  renderClosed(closed, kernels, showInternal.checked);
  const withComms = new Set(open.map(c => c.kernel_id)).size;
  const where = open.length ? ` on ${plural(withComms, 'kernel')}` : '';
  const sum = way => open.reduce((n, c) => n + c.messages[way], 0);
  const messages = open.length
    ? ` · messages of open comms: ${sum('to_kernel')} to kernels, ${sum('from_kernel')} from`
    : '';
  document.getElementById('summary').textContent =
    `${open.length ? plural(open.length, 'open comm') : 'No open comms'}${where}` +
    `${summary.left_behind ? ` · ${summary.left_behind} left behind` : ''}${messages} · ` +
    `${plural(kernels.size, 'kernel')} running · updated ${new Date().toLocaleTimeString()}`;
}

/** An unreachable server fails the refresh; any other refusal leaves the list empty. */
function decoration(error) {
  return error.status === 0 ? Promise.reject(error) : [];
}

showInternal.addEventListener('change', () =>
  renderClosed(lastClosed, lastKernels, showInternal.checked)
);

document.addEventListener('keydown', event => {
  const typing = event.target.closest('input, select, textarea, dialog');
  if (event.key === '/' && !typing) {
    event.preventDefault();
    document.getElementById('filter-text').focus();
  }
});

live.start();
