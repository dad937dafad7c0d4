/**
 * The status bar item: how many comms the current notebook's (or console's) kernel has
 * open, like "3 comms". Clicking it, or Enter on it, shows the Comms panel.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { CommsModel, plural } from './model';

/** What the item needs to know about the shell: its current widget, and when it changes. */
export interface ICurrentWidget {
  readonly currentWidget: Widget | null;
  readonly currentChanged: ISignal<unknown, unknown>;
}

export class CommsStatus extends Widget {
  constructor(
    private readonly _model: CommsModel,
    private readonly _shell: ICurrentWidget,
    showPanel: () => void
  ) {
    super();
    this.addClass('jp-CommsStatus');
    this.node.tabIndex = 0;
    this.node.setAttribute('role', 'button');
    this.node.title =
      'Open comms of this kernel: click to show the Comms panel';
    this.node.addEventListener('click', showPanel);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        showPanel();
      }
    });
    _model.changed.connect(this._update, this);
    _shell.currentChanged.connect(this._follow, this);
    this._follow();
  }

  /** Emitted when the item starts or stops having something to say. */
  get activeChanged(): ISignal<this, void> {
    return this._activeChanged;
  }

  get active(): boolean {
    return this._count !== null;
  }

  dispose(): void {
    this._model.changed.disconnect(this._update, this);
    this._shell.currentChanged.disconnect(this._follow, this);
    this._session?.kernelChanged.disconnect(this._update, this);
    super.dispose();
  }

  /** Watch the session of the widget that became current (its kernel can change). */
  private _follow(): void {
    this._session?.kernelChanged.disconnect(this._update, this);
    const widget = this._shell.currentWidget as
      (Widget & { sessionContext?: unknown }) | null;
    const session = widget?.sessionContext as ISessionContext | undefined;
    this._session = session?.kernelChanged ? session : null;
    this._session?.kernelChanged.connect(this._update, this);
    this._update();
  }

  private _update(): void {
    const kernelId = this._session?.session?.kernel?.id;
    const count = kernelId ? (this._model.openCount(kernelId) ?? 0) : null;
    const wasActive = this.active;
    this._count = this._model.state === 'ready' ? count : null;
    this.node.textContent =
      this._count === null ? '' : plural(this._count, 'comm');
    if (wasActive !== this.active) {
      this._activeChanged.emit();
    }
  }

  private _session: ISessionContext | null = null;
  private _count: number | null = null;
  private _activeChanged = new Signal<this, void>(this);
}
