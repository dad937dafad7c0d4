/**
 * What the panel and the status bar show: the server's comms grouped by kernel, each kernel
 * named by the notebooks and consoles that use it, kept live.
 *
 * Live means two sources. The server's event stream (`/api/events/subscribe`) says at once
 * when a comm opens or closes; it says nothing when a comm only carries messages (that would
 * be one event per slider step), so the counts come from polling as well. Polling is cheap
 * by construction: the summary is a few counters per kernel, and the panel asks only for
 * the first page of each expanded kernel's comms, so 10,000 comms cost the same as 100.
 */
import { Event } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import {
  CommsAPI,
  CommsError,
  IComm,
  ICommActivity,
  IKernelSummary,
  ISummary
} from './api';

/** The comm event schema of jupyter_comm_ext. */
export const COMM_SCHEMA =
  'https://events.jupyter.org/jupyter_comm_ext/comm/v1';

/**
 * How often counts are refreshed. Comm messages emit no event, so this is how stale a
 * message count may be; each poll is one small request plus one per expanded kernel.
 */
const POLL_MS = 2000;

/** Events come in bursts (a widget opens several comms): one refresh per burst. */
const EVENT_DELAY_MS = 150;

/** Rows fetched and rendered per kernel at first, and added by each "Show more". */
export const PAGE_SIZE = 50;

/**
 * Finishing left-behind models can leave behind the models they referenced in turn (a
 * closed box's children, then their layouts): "Finish" repeats up to this many rounds.
 */
const FINISH_ROUNDS = 10;

/** A notebook or console (a session) using a kernel. */
export interface ISessionRef {
  path: string;
  name: string;
  type: string;
}

/** One kernel with its live comms, as far as they are loaded. */
export interface IKernelGroup {
  kernelId: string;
  kernelName: string;
  sessions: ISessionRef[];
  open: number;
  orphaned: number;
  /** Open widget models left behind (counted in `open`). */
  leftBehind: number;
  /** When a user last touched a comm of this kernel, and when the kernel last sent alone. */
  activity: ICommActivity | null;
  /** The loaded rows: open ones first, then orphans, each in the server's order. */
  comms: IComm[];
  /** The server has more rows than `comms` holds. */
  more: boolean;
}

/** The outcome of the last close, shown until the next one. */
export interface INotice {
  text: string;
  error: boolean;
}

export class CommsModel {
  constructor(
    readonly api: CommsAPI,
    events: Event.IManager | null
  ) {
    events?.stream.connect(this._onEvent, this);
  }

  /** Emitted after every refresh and every change of selection, expansion or notice. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** `loading` until the first answer, `disabled` when the server side answers 404. */
  state: 'loading' | 'ready' | 'disabled' = 'loading';
  /** Why the last refresh failed (the previous data stays on screen), or null. */
  error: string | null = null;
  notice: INotice | null = null;
  summary: ISummary | null = null;
  kernels: IKernelGroup[] = [];
  /** Whether this user may close comms; the panel shows no close control otherwise. */
  canClose = false;
  readonly selected = new Set<string>();
  readonly collapsed = new Set<string>();

  /**
   * Whether rows are wanted (the panel is visible). The status bar item needs the summary
   * only, so a hidden panel costs one request per poll.
   */
  get showRows(): boolean {
    return this._showRows;
  }
  set showRows(value: boolean) {
    if (value !== this._showRows) {
      this._showRows = value;
      if (value) {
        this.refreshSoon(0);
      }
    }
  }

  /** Open comms of one kernel, or null while unknown (no answer yet, or no such kernel). */
  openCount(kernelId: string): number | null {
    return this.summary?.by_kernel[kernelId]?.open ?? null;
  }

  /** Begin polling; the first refresh runs now. */
  start(): void {
    void this.refresh();
  }

  /** Refresh after `delay` ms, replacing any refresh already scheduled. */
  refreshSoon(delay: number): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this.refresh(), delay);
  }

  /** Refresh now; a call during a refresh makes one more run after it, not a second one. */
  async refresh(): Promise<void> {
    if (this._running) {
      this._again = true;
      return this._running;
    }
    window.clearTimeout(this._timer);
    this._running = (async () => {
      do {
        this._again = false;
        await this._load();
      } while (this._again);
    })();
    try {
      await this._running;
    } finally {
      this._running = null;
      if (this.state !== 'disabled') {
        this.refreshSoon(POLL_MS);
      }
    }
  }

  toggleSelected(commId: string): void {
    if (!this.selected.delete(commId)) {
      this.selected.add(commId);
    }
    this._changed.emit();
  }

  toggleCollapsed(kernelId: string): void {
    if (!this.collapsed.delete(kernelId)) {
      this.collapsed.add(kernelId);
    }
    this._changed.emit();
    this.refreshSoon(0);
  }

  /** Load `PAGE_SIZE` more rows of a kernel. */
  showMore(kernelId: string): void {
    this._limits.set(kernelId, this._limit(kernelId) + PAGE_SIZE);
    this.refreshSoon(0);
  }

  /** Force-close the given comms one by one; says how many closed and why others did not. */
  async closeComms(commIds: string[]): Promise<void> {
    const failures: string[] = [];
    for (const commId of commIds) {
      try {
        await this.api.close(commId);
      } catch (error) {
        failures.push(`${commId.slice(0, 8)}: ${messageOf(error)}`);
      }
      this.selected.delete(commId);
    }
    const closed = commIds.length - failures.length;
    this.notify(
      [`Closed ${plural(closed, 'comm')}.`, ...failures].join(' '),
      failures.length > 0
    );
  }

  /** Force-close a widget and, with `cascade`, every model only it references. */
  async closeWidget(commId: string, cascade: boolean): Promise<void> {
    try {
      const closed = await this.api.close(commId, cascade);
      this.selected.delete(commId);
      this.notify(
        `Closed ${plural(Math.max(1, closed.length), 'comm')}.`,
        false
      );
    } catch (error) {
      this.notify(`Nothing closed: ${messageOf(error)}`, true);
    }
  }

  /**
   * Finish a kernel's left-behind widget models, and the ones finishing them leaves behind
   * in turn (a box's children, then their layouts and styles), until none is left.
   */
  async finishLeftBehind(kernelId: string): Promise<void> {
    const filters = { status: 'left_behind', kernel_id: kernelId };
    let finished = 0;
    try {
      for (let round = 0; round < FINISH_ROUNDS; round++) {
        const closed = await this.api.closeWhere(filters);
        if (!closed.length) {
          break;
        }
        finished += closed.length;
      }
      this.notify(`Finished ${plural(finished, 'left-behind model')}.`, false);
    } catch (error) {
      this.notify(
        `Finished ${plural(finished, 'left-behind model')}, then: ${messageOf(error)}`,
        true
      );
    }
  }

  /** Force-close every open comm matching the filters (kernel, target, idle time). */
  async closeWhere(filters: Record<string, string>): Promise<void> {
    try {
      const closed = await this.api.closeWhere(filters);
      this.notify(`Closed ${plural(closed.length, 'comm')}.`, false);
    } catch (error) {
      this.notify(`Nothing closed: ${messageOf(error)}`, true);
    }
  }

  /** Show the outcome of a close (and refresh, so the panel shows what is left). */
  notify(text: string, error: boolean): void {
    this.notice = { text, error };
    this._rows.clear();
    if (error) {
      console.warn(`Comms: ${text}`);
    }
    this._changed.emit();
    void this.refresh();
  }

  dismissNotice(): void {
    this.notice = null;
    this._changed.emit();
  }

  private _onEvent(_: Event.IManager, event: Event.Emission): void {
    if (event.schema_id === COMM_SCHEMA) {
      this._dirty.add(String(event.kernel_id));
      this.refreshSoon(EVENT_DELAY_MS);
    }
  }

  private _limit(kernelId: string): number {
    return this._limits.get(kernelId) ?? PAGE_SIZE;
  }

  private async _load(): Promise<void> {
    if (document.hidden) {
      return; // nobody looks: the next poll after the tab shows again catches up
    }
    try {
      const summary = await this.api.summary();
      if (!this._permissionsKnown) {
        this.canClose = await this.api.canClose();
        this._permissionsKnown = true;
      }
      const [sessions, kernels] = await Promise.all([
        this.api.sessions(),
        this.api.kernels()
      ]);
      const groups = new Map<string, IKernelGroup>();
      const group = (kernelId: string, kernelName: string): IKernelGroup => {
        let found = groups.get(kernelId);
        if (!found) {
          const counts = summary.by_kernel[kernelId];
          found = {
            kernelId,
            kernelName,
            sessions: [],
            open: counts?.open ?? 0,
            orphaned: counts?.orphaned ?? 0,
            leftBehind: counts?.left_behind ?? 0,
            activity: counts?.comm_activity ?? null,
            comms: [],
            more: false
          };
          groups.set(kernelId, found);
        }
        return found;
      };
      for (const session of sessions) {
        if (session.kernel) {
          group(session.kernel.id, session.kernel.name).sessions.push({
            path: session.path,
            name: session.name,
            type: session.type
          });
        }
      }
      for (const kernel of kernels) {
        group(kernel.id, kernel.name);
      }
      for (const kernelId of Object.keys(summary.by_kernel)) {
        group(kernelId, '');
      }
      if (this._showRows) {
        const dirty = new Set(this._dirty);
        await Promise.all(
          [...groups.values()].map(g =>
            this._loadRows(g, summary.by_kernel[g.kernelId])
          )
        );
        dirty.forEach(kernelId => this._dirty.delete(kernelId));
      }
      for (const kernelId of this._rows.keys()) {
        if (!groups.has(kernelId)) {
          this._rows.delete(kernelId); // the kernel is gone
        }
      }
      this.summary = summary;
      this.kernels = [...groups.values()].sort(byLabel);
      this.state = 'ready';
      this.error = null;
      this._pruneSelection();
    } catch (error) {
      if (error instanceof CommsError && error.notEnabled) {
        this.state = 'disabled';
      } else {
        this.error = messageOf(error);
        console.warn(`Comms: refresh failed: ${this.error}`);
      }
    }
    this._changed.emit();
  }

  /**
   * Fill in a kernel's rows: fetched again only when its counters in the summary moved (a
   * comm opened or closed, or carried a message; each changes `messages`), an event named
   * the kernel, or more rows were asked for. Otherwise the rows of the last fetch are
   * still right, so a poll of idle kernels costs the summary and nothing per kernel.
   */
  private async _loadRows(
    group: IKernelGroup,
    counts: IKernelSummary | undefined
  ) {
    if (
      this.collapsed.has(group.kernelId) ||
      group.open + group.orphaned === 0
    ) {
      this._rows.delete(group.kernelId);
      return;
    }
    const limit = this._limit(group.kernelId);
    const key = `${limit} ${JSON.stringify(counts)}`;
    const cached = this._rows.get(group.kernelId);
    if (cached && cached.key === key && !this._dirty.has(group.kernelId)) {
      group.comms = cached.comms;
      group.more = cached.more;
      return;
    }
    const open = await this.api.page(group.kernelId, 'open', limit);
    group.comms = open.comms;
    group.more = open.more;
    const room = limit - open.comms.length;
    if (group.orphaned > 0 && room > 0) {
      const orphaned = await this.api.page(group.kernelId, 'orphaned', room);
      group.comms = group.comms.concat(orphaned.comms);
      group.more ||= orphaned.more;
    } else if (group.orphaned > 0) {
      group.more = true;
    }
    this._rows.set(group.kernelId, {
      key,
      comms: group.comms,
      more: group.more
    });
  }

  /** A selected comm that closed (or scrolled out of the loaded pages) is not selected. */
  private _pruneSelection(): void {
    const loaded = new Set(
      this.kernels.flatMap(g => g.comms.map(c => c.comm_id))
    );
    for (const commId of [...this.selected]) {
      if (!loaded.has(commId)) {
        this.selected.delete(commId);
      }
    }
  }

  private _changed = new Signal<this, void>(this);
  private _showRows = false;
  private _limits = new Map<string, number>();
  /** Each kernel's last fetched rows, and the summary counters they were fetched at. */
  private _rows = new Map<
    string,
    { key: string; comms: IComm[]; more: boolean }
  >();
  /** Kernels an event named since their rows were last fetched. */
  private _dirty = new Set<string>();
  private _timer = 0;
  private _running: Promise<void> | null = null;
  private _again = false;
  private _permissionsKnown = false;
}

/** A comm in a kernel's tree: a widget's dependents under it, under the key that holds them. */
export interface ICommNode {
  comm: IComm;
  /** The state key of the parent that references it (`layout`, `children`); '' at the top. */
  key: string;
  depth: number;
}

/**
 * A kernel's loaded rows as two flat trees, in display order: the live comms (each widget
 * followed by the models it references, indented), and the left-behind widget models
 * (with what they still reference). A model two widgets share shows under both.
 */
export function commTree(comms: IComm[]): {
  live: ICommNode[];
  leftBehind: ICommNode[];
} {
  const byId = new Map(comms.map(c => [c.comm_id, c]));
  const referenced = new Set<string>();
  for (const comm of comms) {
    for (const ref of comm.widget?.references ?? []) {
      if (ref.comm_id !== comm.comm_id && byId.has(ref.comm_id)) {
        referenced.add(ref.comm_id);
      }
    }
  }
  const reached = new Set<string>();
  const walk = (
    comm: IComm,
    key: string,
    depth: number,
    path: Set<string>,
    into: ICommNode[]
  ) => {
    into.push({ comm, key, depth });
    reached.add(comm.comm_id);
    path.add(comm.comm_id);
    const seen = new Set<string>();
    for (const ref of comm.widget?.references ?? []) {
      const child = byId.get(ref.comm_id);
      if (child && !path.has(ref.comm_id) && !seen.has(ref.comm_id)) {
        seen.add(ref.comm_id);
        walk(child, ref.key, depth + 1, path, into);
      }
    }
    path.delete(comm.comm_id);
  };
  const live: ICommNode[] = [];
  const leftBehind: ICommNode[] = [];
  for (const comm of comms) {
    if (!referenced.has(comm.comm_id)) {
      walk(
        comm,
        '',
        0,
        new Set(),
        comm.widget?.left_behind ? leftBehind : live
      );
    }
  }
  // models that only reference each other in a cycle: at the top, not lost
  for (const comm of comms) {
    if (!reached.has(comm.comm_id)) {
      walk(
        comm,
        '',
        0,
        new Set(),
        comm.widget?.left_behind ? leftBehind : live
      );
    }
  }
  return { live, leftBehind };
}

/**
 * How many loaded models a cascading close of `root` would close with it: those it
 * references, transitively, that no open widget outside that set references (as the
 * server decides for `?cascade=1`).
 */
export function dependents(root: IComm, comms: IComm[]): number {
  const byId = new Map(comms.map(c => [c.comm_id, c]));
  const closing = new Set([root.comm_id]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const id of [...closing]) {
      for (const ref of byId.get(id)?.widget?.references ?? []) {
        const child = byId.get(ref.comm_id)?.widget;
        if (
          child &&
          !closing.has(ref.comm_id) &&
          child.referenced_by.every(by => closing.has(by))
        ) {
          closing.add(ref.comm_id);
          grew = true;
        }
      }
    }
  }
  return closing.size - 1;
}

/** A widget's public class name: `IntSlider` for `IntSliderModel`. */
export function widgetName(comm: IComm): string | null {
  const name = comm.widget?.model_name;
  return name ? name.replace(/Model$/, '') || name : null;
}

/**
 * A kernel's label: its first notebook's path; a kernel of no session by its name and
 * short id ("python3 · 5b7a1c2d"), as the admin page names it.
 */
export function kernelLabel(group: IKernelGroup): string {
  return (
    group.sessions[0]?.path ??
    `${group.kernelName} · ${group.kernelId.slice(0, 8)}`
  );
}

/** Kernels of notebooks and consoles first, by path; then the ones of no session. */
function byLabel(a: IKernelGroup, b: IKernelGroup): number {
  const sessionless = Number(!a.sessions.length) - Number(!b.sessions.length);
  return sessionless || kernelLabel(a).localeCompare(kernelLabel(b));
}

export function plural(n: number, word: string): string {
  return `${n.toLocaleString()} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * "3 s", "4 min", "2 h 5 min", "3 d 4 h": the two largest units, the second left out when
 * it is 0; the admin and Hub pages (ui/format.js) write durations the same way. A
 * non-breaking space keeps each number with its unit.
 */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const parts: [number, string][] =
    s < 60
      ? [[s, 's']]
      : s < 3600
        ? [[Math.floor(s / 60), 'min']]
        : s < 86400
          ? [
              [Math.floor(s / 3600), 'h'],
              [Math.floor((s % 3600) / 60), 'min']
            ]
          : [
              [Math.floor(s / 86400), 'd'],
              [Math.floor((s % 86400) / 3600), 'h']
            ];
  return parts
    .filter(([n], i) => i === 0 || n > 0)
    .map(([n, unit]) => `${n}\u00a0${unit}`)
    .join(' ');
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
