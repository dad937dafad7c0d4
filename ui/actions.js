// Closing comms: one, a selection, or every comm idle past a limit; always confirmed first.

import { api, closeEach, plainWords } from './api.js';
import { kernelLabel, plural } from './format.js';

const count = n => plural(n, 'comm');

/**
 * Finishing left-behind models can leave behind those they referenced (a closed box's
 * children, then their layouts): "Finish" repeats up to this many rounds.
 */
const FINISH_ROUNDS = 10;

export class Actions {
  /**
   * @param {import("./table.js").CommTable} table
   * @param {() => void} changed called after comms were closed (to refresh now)
   */
  constructor(table, changed) {
    this.table = table;
    this.changed = changed;
    this.busy = false;
    this.dialog = document.getElementById('confirm');
    this.notice = document.getElementById('notice');
    this.closeSelectedButton = document.getElementById('close-selected');
    this.idleMinutes = document.getElementById('idle-minutes');
    this.closeSelectedButton.addEventListener('click', () =>
      this.closeSelected()
    );
    this.finishButton = document.getElementById('finish-left-behind');
    this.finishButton.addEventListener('click', () => this.finishLeftBehind());
    document.getElementById('close-idle').addEventListener('submit', event => {
      event.preventDefault();
      this.closeIdle();
    });
  }

  /** Keep the "Close selected" button in step with the selection. */
  selectionChanged() {
    const n = this.table.selected.size;
    this.closeSelectedButton.textContent = n
      ? `Close ${count(n)} selected…`
      : 'Close selected…';
    this.closeSelectedButton.disabled = n === 0 || this.table.readOnly;
  }

  /** The "Finish left-behind" button is live while the server counts some. */
  leftBehindChanged(total) {
    this.leftBehind = total;
    this.finishButton.disabled = !total || this.table.readOnly;
  }

  notify(text, isError = false) {
    this.notice.textContent = text;
    this.notice.classList.toggle('error', isError);
    this.notice.hidden = false;
  }

  confirm(question, okLabel) {
    document.getElementById('confirm-text').textContent = question;
    document.getElementById('confirm-ok').textContent = okLabel;
    this.dialog.returnValue = '';
    this.dialog.showModal();
    return new Promise(resolve => {
      this.dialog.addEventListener(
        'close',
        () => resolve(this.dialog.returnValue === 'ok'),
        { once: true }
      );
    });
  }

  /** A refusal to close (not an expired XSRF token) makes the page read-only. */
  failed(error, doing) {
    if (error.status === 403 && !/xsrf/i.test(error.message)) {
      this.table.readOnly = true;
      document.getElementById('close-idle-button').disabled = true;
      this.finishButton.disabled = true;
      this.table.render();
      this.selectionChanged();
    }
    this.notify(plainWords(error, doing), true);
  }

  async guarded(action) {
    if (this.busy) return;
    this.busy = true;
    try {
      await action();
    } finally {
      this.busy = false;
    }
  }

  closeOne(comm) {
    const question =
      `Close 1 comm: target “${comm.target_name ?? '(no target)'}”, id ${comm.comm_id}, ` +
      `on ${kernelLabel(this.table.kernels, comm.kernel_id)}?`;
    return this.guarded(() => this.confirmAndClose([comm], question));
  }

  closeSelected() {
    const comms = this.table.selection;
    const kernels = new Set(comms.map(c => c.kernel_id)).size;
    const question = `Close ${count(comms.length)} on ${plural(kernels, 'kernel')}?`;
    return this.guarded(() => this.confirmAndClose(comms, question));
  }

  async confirmAndClose(comms, question) {
    if (
      !(await this.confirm(
        `${question} Kernels run the close callbacks, connected frontends drop the comms.`,
        `Close ${count(comms.length)}`
      ))
    )
      return;
    const { closed, gone, failure } = await closeEach(comms, comm =>
      this.table.selected.delete(comm.comm_id)
    );
    this.selectionChanged();
    if (failure) this.failed(failure, 'close comms');
    else
      this.notify(
        `Closed ${count(closed)}.${gone ? ` ${count(gone)} had already closed.` : ''}`
      );
    if (closed || gone) this.changed();
  }

  /**
   * Close the left-behind widget models (of the kernel filtered on, or all), and the ones
   * that leaves behind in turn (a box's children, then their layouts), until none is left.
   */
  finishLeftBehind() {
    return this.guarded(async () => {
      const kernelId = this.table.filters.kernel_id;
      const filters = { status: 'left_behind', kernel_id: kernelId };
      const scope = kernelId
        ? ` of ${kernelLabel(this.table.kernels, kernelId)}`
        : '';
      let matching;
      try {
        matching = await api.comms(filters);
      } catch (error) {
        this.failed(error, 'count the left-behind models');
        return;
      }
      if (!matching.length) {
        this.notify(`No widget model is left behind${scope}.`);
        return;
      }
      const n = plural(matching.length, 'left-behind model');
      if (
        !(await this.confirm(
          `Finish ${n}${scope}, and the models only they use? Kernels run the close callbacks, connected frontends dispose of the models.`,
          'Finish'
        ))
      )
        return;
      let finished = 0;
      try {
        for (let round = 0; round < FINISH_ROUNDS; round++) {
          const closed = await api.closeMatching(filters);
          if (!closed.length) break;
          finished += closed.length;
        }
        this.notify(
          `Finished ${plural(finished, 'left-behind model')}${scope}.`
        );
      } catch (error) {
        this.failed(error, 'finish left-behind models');
      }
      this.changed();
    });
  }

  closeIdle() {
    return this.guarded(async () => {
      const minutes = Number(this.idleMinutes.value);
      if (this.idleMinutes.value === '' || !(minutes >= 0)) {
        this.notify(
          'Enter how many minutes a comm must have been idle: a number, 0 or more.',
          true
        );
        return;
      }
      const filters = { min_idle: minutes * 60, ...this.table.filters };
      const scope =
        (filters.kernel_id
          ? ` on ${kernelLabel(this.table.kernels, filters.kernel_id)}`
          : '') +
        (filters.target_name ? ` with target “${filters.target_name}”` : '') +
        (filters.status === 'left_behind' ? ', left behind' : '');
      const idle = `idle longer than ${minutes} ${minutes === 1 ? 'minute' : 'minutes'}${scope}`;
      let matching;
      try {
        matching = await api.comms(filters);
      } catch (error) {
        this.failed(error, 'count the idle comms');
        return;
      }
      if (matching.length === 0) {
        this.notify(`No comm is ${idle}.`);
        return;
      }
      if (
        !(await this.confirm(
          `Close ${count(matching.length)} ${idle}?`,
          `Close ${count(matching.length)}`
        ))
      )
        return;
      try {
        const closed = await api.closeMatching(filters);
        this.notify(`Closed ${count(closed.length)} ${idle}.`);
        this.changed();
      } catch (error) {
        this.failed(error, 'close comms');
      }
    });
  }
}
