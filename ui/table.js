// The comm table: filter, sort, group by kernel, paginate, render. Only textContent and
// attributes carry data into the DOM, never markup.

import { serverNow } from './api.js';
import {
  ago,
  bytes,
  duration,
  kernelLabel,
  parseTime,
  plural,
  widgetModule,
  widgetName
} from './format.js';

const PAGE_SIZE = 100;
const CLOSED_SHOWN = 50;

/** Sortable columns: `value` gives the sort key of a comm at server time `now`. */
const COLUMNS = [
  { key: 'target', label: 'Target', value: c => c.target_name ?? '' },
  { key: 'model', label: 'Model', value: c => widgetName(c) ?? '' },
  { key: 'origin', label: 'Origin', value: c => c.origin },
  { key: 'comm_id', label: 'Comm id', value: c => c.comm_id },
  {
    key: 'age',
    label: 'Age',
    numeric: true,
    value: (c, now) => now - c.openedMs,
    show: duration
  },
  {
    key: 'idle',
    label: 'Idle',
    numeric: true,
    value: (c, now) => now - c.activeMs,
    show: duration
  },
  {
    key: 'msgs_to',
    label: 'Msgs to kernel',
    numeric: true,
    value: c => c.messages.to_kernel
  },
  {
    key: 'msgs_from',
    label: 'Msgs from kernel',
    numeric: true,
    value: c => c.messages.from_kernel
  },
  {
    key: 'bytes_to',
    label: 'Bytes to kernel',
    numeric: true,
    value: c => c.bytes.to_kernel,
    show: bytes
  },
  {
    key: 'bytes_from',
    label: 'Bytes from kernel',
    numeric: true,
    value: c => c.bytes.from_kernel,
    show: bytes
  }
];

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function fillOptions(select, allLabel, options) {
  // Rebuilt only on change, so a refresh does not close a drop-down someone has open.
  const signature = JSON.stringify(options);
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  const current = select.value;
  select.replaceChildren(el('option', { value: '', text: allLabel }));
  for (const [value, label] of options)
    select.append(el('option', { value, text: label }));
  // A filter whose kernel or target went away stays selected (and matches nothing).
  if (current && !options.some(([value]) => value === current)) {
    select.append(el('option', { value: current, text: `${current} (gone)` }));
  }
  select.value = current;
}

export class CommTable {
  /** @param {{onClose: (comm) => void, onSelection: () => void}} callbacks */
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.comms = [];
    this.kernels = new Map();
    this.loaded = false;
    this.readOnly = false;
    this.sort = { key: 'idle', descending: true };
    this.page = 0;
    this.pageRows = [];
    this.selected = new Set();
    this.byId = new Map();

    this.body = document.querySelector('#comms tbody');
    this.kernelFilter = document.getElementById('filter-kernel');
    this.targetFilter = document.getElementById('filter-target');
    this.statusFilter = document.getElementById('filter-status');
    /** kernel id -> its summary tally (left_behind, comm_activity) */
    this.tallies = {};
    this.textFilter = document.getElementById('filter-text');
    this.selectPage = document.getElementById('select-page');
    this.buildHeader();

    const refilter = () => {
      this.page = 0;
      this.render();
    };
    this.kernelFilter.addEventListener('change', refilter);
    this.targetFilter.addEventListener('change', refilter);
    this.statusFilter.addEventListener('change', refilter);
    this.refilter = refilter;
    this.textFilter.addEventListener('input', refilter);
    document.getElementById('clear-filters').addEventListener('click', () => {
      this.kernelFilter.value =
        this.targetFilter.value =
        this.statusFilter.value =
        this.textFilter.value =
          '';
      refilter();
    });
    document
      .getElementById('prev-page')
      .addEventListener('click', () => this.turn(-1));
    document
      .getElementById('next-page')
      .addEventListener('click', () => this.turn(1));
    this.selectPage.addEventListener('change', () => {
      for (const comm of this.pageRows) {
        if (this.selectPage.checked) this.selected.add(comm.comm_id);
        else this.selected.delete(comm.comm_id);
      }
      this.render();
      this.callbacks.onSelection();
    });
  }

  buildHeader() {
    const row = document.querySelector('#comms thead tr');
    for (const column of COLUMNS) {
      const button = el('button', { type: 'button', text: column.label });
      button.addEventListener('click', () => {
        const same = this.sort.key === column.key;
        this.sort = {
          key: column.key,
          descending: same ? !this.sort.descending : !!column.numeric
        };
        this.render();
      });
      row.append(
        el(
          'th',
          {
            scope: 'col',
            'data-key': column.key,
            class: column.numeric ? 'num' : ''
          },
          button
        )
      );
    }
    row.append(
      el(
        'th',
        { scope: 'col' },
        el('span', { class: 'visually-hidden', text: 'Actions' })
      )
    );
  }

  /** Show only the left-behind models of one kernel (its badge in the group row). */
  showLeftBehind(kernelId) {
    this.kernelFilter.value = kernelId;
    this.statusFilter.value = 'left_behind';
    this.refilter();
  }

  setData(comms, kernels, tallies = {}) {
    this.tallies = tallies;
    for (const comm of comms) {
      comm.openedMs = parseTime(comm.opened_at);
      comm.activeMs = parseTime(comm.last_activity);
    }
    this.comms = comms;
    this.kernels = kernels;
    this.byId = new Map(comms.map(c => [c.comm_id, c]));
    for (const id of this.selected)
      if (!this.byId.has(id)) this.selected.delete(id);
    this.loaded = true;
    fillOptions(
      this.kernelFilter,
      'All kernels',
      [...new Set([...kernels.keys(), ...comms.map(c => c.kernel_id)])]
        .map(id => [id, kernelLabel(kernels, id)])
        .sort((a, b) => a[1].localeCompare(b[1]))
    );
    fillOptions(
      this.targetFilter,
      'All targets',
      [...new Set(comms.map(c => c.target_name ?? ''))]
        .sort()
        .map(t => [t, t || '(no target)'])
    );
  }

  /** The server-side filters the user picked (the free text has no server equivalent). */
  get filters() {
    return {
      kernel_id: this.kernelFilter.value,
      target_name: this.targetFilter.value,
      status: this.statusFilter.value
    };
  }

  get selection() {
    return [...this.selected].map(id => this.byId.get(id));
  }

  clearSelection() {
    this.selected.clear();
  }

  turn(delta) {
    this.page += delta;
    this.render();
    document.getElementById('comms').scrollIntoView({ block: 'start' });
  }

  visible(now) {
    const { kernel_id: kernelId, target_name: target, status } = this.filters;
    const text = this.textFilter.value.trim().toLowerCase();
    const matches = c =>
      (!kernelId || c.kernel_id === kernelId) &&
      (!target || (c.target_name ?? '') === target) &&
      (status !== 'left_behind' || c.widget?.left_behind) &&
      (!text ||
        [
          c.target_name,
          c.origin,
          c.comm_id,
          c.kernel_id,
          c.session_id,
          widgetName(c),
          kernelLabel(this.kernels, c.kernel_id)
        ].some(v => v && v.toLowerCase().includes(text)));
    const column = COLUMNS.find(c => c.key === this.sort.key);
    const sign = this.sort.descending ? -1 : 1;
    const keyed = this.comms
      .filter(matches)
      .map(c => [c, column.value(c, now)]);
    const compare = column.numeric
      ? (a, b) => a - b
      : (a, b) => a.localeCompare(b);
    // Grouped by kernel (by label), sorted within each group.
    const labels = new Map(
      this.comms.map(c => [c.kernel_id, kernelLabel(this.kernels, c.kernel_id)])
    );
    keyed.sort(
      ([a, ka], [b, kb]) =>
        labels.get(a.kernel_id).localeCompare(labels.get(b.kernel_id)) ||
        sign * compare(ka, kb) ||
        a.comm_id.localeCompare(b.comm_id)
    );
    return keyed.map(([c]) => c);
  }

  render() {
    const now = serverNow();
    const focusKey = document.activeElement?.dataset?.focusKey;
    const rows = this.visible(now);
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    this.pageRows = rows.slice(
      this.page * PAGE_SIZE,
      (this.page + 1) * PAGE_SIZE
    );

    const counts = new Map();
    for (const c of rows)
      counts.set(c.kernel_id, (counts.get(c.kernel_id) || 0) + 1);
    const fragment = document.createDocumentFragment();
    let group = null;
    for (const comm of this.pageRows) {
      if (comm.kernel_id !== group) {
        group = comm.kernel_id;
        fragment.append(this.groupRow(group, counts.get(group)));
      }
      fragment.append(this.commRow(comm, now));
    }
    this.body.replaceChildren(fragment);

    for (const th of document.querySelectorAll('#comms th[data-key]')) {
      if (th.dataset.key === this.sort.key)
        th.setAttribute(
          'aria-sort',
          this.sort.descending ? 'descending' : 'ascending'
        );
      else th.removeAttribute('aria-sort');
    }
    const selectedOnPage = this.pageRows.filter(c =>
      this.selected.has(c.comm_id)
    ).length;
    this.selectPage.checked =
      selectedOnPage > 0 && selectedOnPage === this.pageRows.length;
    this.selectPage.indeterminate =
      selectedOnPage > 0 && selectedOnPage < this.pageRows.length;
    this.selectPage.disabled = this.readOnly || this.pageRows.length === 0;

    const first = this.page * PAGE_SIZE;
    document.getElementById('page-info').textContent = rows.length
      ? `${first + 1}–${first + this.pageRows.length} of ${rows.length}`
      : '';
    document.getElementById('prev-page').disabled = this.page === 0;
    document.getElementById('next-page').disabled = this.page >= pages - 1;
    document.getElementById('pager').hidden = pages === 1;
    document.getElementById('comms').hidden = rows.length === 0;
    document.getElementById('loading').hidden = this.loaded;
    document.getElementById('empty').hidden =
      !this.loaded || this.comms.length > 0;
    document.getElementById('no-match').hidden =
      this.comms.length === 0 || rows.length > 0;

    if (focusKey)
      document
        .querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)
        ?.focus();
  }

  groupRow(kernelId, count) {
    const kernel = this.kernels.get(kernelId);
    const cell = el('th', {
      scope: 'colgroup',
      colspan: String(COLUMNS.length + 2)
    });
    // The notebook first, then the kernel's name; a kernel of no notebook by its name.
    const notebooks = kernel?.paths?.length > 0;
    const label =
      kernel && !notebooks ? kernel.name : kernelLabel(this.kernels, kernelId);
    cell.append(
      el('span', { class: 'kernel-name', title: label, text: label })
    );
    if (notebooks) cell.append(el('span', { text: kernel.name }));
    cell.append(
      el('code', {
        class: 'kernel-id',
        title: kernelId,
        text: kernelId.slice(0, 8)
      })
    );
    const state = kernel ? kernel.execution_state : 'gone';
    cell.append(el('span', { class: `state state-${state}`, text: state }));
    if (kernel) {
      cell.append(
        el('span', { text: plural(kernel.connections ?? 0, 'connection') })
      );
    }
    cell.append(el('span', { text: plural(count, 'comm') }));
    const tally = this.tallies[kernelId];
    if (tally?.left_behind) {
      const badge = el('button', {
        type: 'button',
        class: 'left-behind small',
        title: 'Widget models no open widget uses any more: show only these',
        text: `${tally.left_behind} left behind`
      });
      badge.addEventListener('click', () => this.showLeftBehind(kernelId));
      cell.append(badge);
    }
    const activity = tally?.comm_activity;
    if (activity && (activity.user || activity.kernel)) {
      const now = serverNow();
      cell.append(
        el('span', {
          class: 'activity',
          title:
            'When a user last touched a comm of this kernel, and when the kernel last sent one on its own (a timer, a thread: not activity for the culler)',
          text: `user ${ago(activity.user, now)} · kernel on its own ${ago(activity.kernel, now)}`
        })
      );
    }
    return el('tr', { class: 'kernel' }, cell);
  }

  commRow(comm, now) {
    const label = `${comm.target_name ?? '(no target)'} ${comm.comm_id.slice(0, 8)}`;
    const box = el('input', {
      type: 'checkbox',
      'aria-label': `Select comm ${label}`,
      'data-focus-key': `select:${comm.comm_id}`
    });
    box.checked = this.selected.has(comm.comm_id);
    box.disabled = this.readOnly;
    box.addEventListener('change', () => {
      if (box.checked) this.selected.add(comm.comm_id);
      else this.selected.delete(comm.comm_id);
      this.render();
      this.callbacks.onSelection();
    });
    const close = el('button', {
      type: 'button',
      class: 'danger small',
      'aria-label': `Close comm ${label}`,
      'data-focus-key': `close:${comm.comm_id}`,
      text: 'Close'
    });
    close.disabled = this.readOnly;
    close.addEventListener('click', () => this.callbacks.onClose(comm));

    const row = el('tr', { 'data-comm-id': comm.comm_id }, el('td', {}, box));
    for (const column of COLUMNS) {
      if (column.key === 'target') {
        row.append(targetCell(comm.target_name));
        continue;
      }
      if (column.key === 'model') {
        row.append(modelCell(comm));
        continue;
      }
      const value = column.value(comm, now);
      const td = el('td', { class: column.numeric ? 'num' : '' });
      if (column.key === 'comm_id')
        td.append(
          el('code', { title: comm.comm_id, text: comm.comm_id.slice(0, 8) })
        );
      else td.textContent = column.show ? column.show(value) : String(value);
      if (column.key === 'age') td.title = comm.opened_at;
      if (column.key === 'idle') td.title = comm.last_activity;
      row.append(td);
    }
    row.append(el('td', {}, close));
    return row;
  }
}

/**
 * Comms a frontend opens for its own bookkeeping, not for anything a user made: ipywidgets'
 * control comm, opened and closed by every frontend that connects to a kernel.
 */
const INTERNAL_TARGETS = new Set(['jupyter.widget.control']);

/**
 * The recently closed comms, newest first, with who or what closed them; frontend-internal
 * ones only when `showInternal`.
 */
export function renderClosed(allClosed, kernels, showInternal) {
  const now = serverNow();
  const closed = showInternal
    ? allClosed
    : allClosed.filter(c => !INTERNAL_TARGETS.has(c.target_name));
  const hidden = allClosed.length - closed.length;
  const body = document.querySelector('#closed tbody');
  const newest = closed
    .map(c => [c, parseTime(c.closed_at)])
    .sort((a, b) => b[1] - a[1])
    .slice(0, CLOSED_SHOWN);
  body.replaceChildren(
    ...newest.map(([c, closedMs]) =>
      el(
        'tr',
        { 'data-comm-id': c.comm_id },
        targetCell(c.target_name),
        el(
          'td',
          {},
          el('code', { title: c.comm_id, text: c.comm_id.slice(0, 8) })
        ),
        el('td', { text: kernelLabel(kernels, c.kernel_id) }),
        el('td', {
          title: c.closed_at ?? '',
          text: `${duration(now - closedMs)} ago`
        }),
        el('td', { text: c.close_reason ?? '' }),
        closedByCell(c)
      )
    )
  );
  document.getElementById('closed').hidden = closed.length === 0;
  document.getElementById('closed-none').hidden = closed.length > 0;
  document.getElementById('closed-none').textContent = allClosed.length
    ? `Only frontend-internal comms have closed (${hidden}).`
    : 'Nothing has closed since the server started.';
  const notes = [];
  if (closed.length > CLOSED_SHOWN)
    notes.push(`newest ${CLOSED_SHOWN} of ${closed.length}`);
  if (hidden) notes.push(`${hidden} frontend-internal hidden`);
  document.getElementById('closed-count').textContent = notes.length
    ? `(${notes.join(', ')})`
    : '';
}

/**
 * A widget model's cell: its name (module@version on hover) and, when no open widget uses
 * it any more, a "left behind" mark; empty for comms that are not widgets.
 */
export function modelCell(comm) {
  const name = widgetName(comm);
  if (!name) return el('td', { class: 'model' });
  return el(
    'td',
    { class: 'model', title: widgetModule(comm) || name },
    el('span', { text: name }),
    ...(comm.widget.left_behind
      ? [el('span', { class: 'left-behind', text: 'left behind' })]
      : [])
  );
}

/** A target name on one line, cut with an ellipsis when narrow (the full name on hover). */
export function targetCell(target) {
  return target === null
    ? el('td', {}, el('em', { text: '(no target)' }))
    : el('td', { class: 'target', title: target, text: target });
}

/** The closing person's name, their username on hover; or what closed it ("—"). */
function closedByCell(comm) {
  if (!comm.closed_by) return el('td', { text: '—' });
  const name = comm.closed_by_name || comm.closed_by;
  return el('td', { title: comm.closed_by, text: name });
}
