/**
 * Every close goes through a JupyterLab dialog first: a force-close cannot be undone (the
 * kernel runs its close callbacks, and a widget's view goes away in every open notebook).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IComm } from './api';
import {
  CommsModel,
  IKernelGroup,
  kernelLabel,
  plural,
  widgetName
} from './model';

/** What every close dialog says the close does. */
const CONSEQUENCE =
  'The kernel and every connected frontend are told the comm closed; a widget stops working and its view goes away.';

async function confirm<T>(
  title: string,
  body: string | Dialog.IBodyWidget<T>,
  label: string
) {
  return showDialog<T>({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
}

/**
 * Close one comm; `label` names its notebook (or kernel) in the dialog. A widget with
 * `dependents` (models only it references: its layout, its style, a box's children) can
 * take them along, or they stay open, left behind, as `widget.close()` leaves them.
 */
export async function closeOne(
  model: CommsModel,
  comm: IComm,
  label: string,
  dependents = 0
) {
  const what = widgetName(comm) ?? comm.target_name ?? 'no target';
  const body = `A ${what} comm of ${label}. ${CONSEQUENCE}`;
  const title = `Close comm ${comm.comm_id}?`;
  if (!dependents) {
    const { button } = await confirm(title, body, 'Close comm');
    if (button.accept) {
      await model.closeComms([comm.comm_id]);
    }
    return;
  }
  const { button, value } = await confirm<boolean>(
    title,
    new DependentsBody(body, dependents),
    'Close comm'
  );
  if (button.accept) {
    await model.closeWidget(comm.comm_id, value === true);
  }
}

/** The close dialog of a widget with dependents: a checkbox to close them too. */
class DependentsBody extends Widget implements Dialog.IBodyWidget<boolean> {
  constructor(text: string, dependents: number) {
    super();
    const note = document.createElement('p');
    note.textContent = text;
    this.node.appendChild(note);
    const label = document.createElement('label');
    label.className = 'jp-CommsPanel-cascade';
    this._box.type = 'checkbox';
    label.appendChild(this._box);
    label.append(
      ` Close with ${plural(dependents, 'dependent')} (the models only this widget uses; left open, they are left behind)`
    );
    this.node.appendChild(label);
  }

  getValue(): boolean {
    return this._box.checked;
  }

  private _box = document.createElement('input');
}

/** Finish a kernel's left-behind widget models (and what they leave behind in turn). */
export async function finishLeftBehind(model: CommsModel, group: IKernelGroup) {
  const n = plural(group.leftBehind, 'left-behind model');
  const { button } = await showDialog({
    title: `Finish ${n} of ${kernelLabel(group)}?`,
    body: 'Widget models no open widget uses any more, and the ones they alone use. The kernel runs their close callbacks and every frontend disposes of them.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Finish' })]
  });
  if (button.accept) {
    await model.finishLeftBehind(group.kernelId);
  }
}

export async function closeSelected(model: CommsModel) {
  const ids = [...model.selected];
  if (!ids.length) {
    return;
  }
  const { button } = await confirm(
    `Close ${plural(ids.length, 'selected comm')}?`,
    CONSEQUENCE,
    'Close selected'
  );
  if (button.accept) {
    await model.closeComms(ids);
  }
}

export async function closeTarget(
  model: CommsModel,
  group: IKernelGroup,
  target: string
) {
  const { button } = await confirm(
    `Close the ${target} comms of ${kernelLabel(group)}?`,
    `Every open ${target} comm of this kernel, also those not loaded in the panel. ${CONSEQUENCE}`,
    'Close comms'
  );
  if (button.accept) {
    await model.closeWhere({ kernel_id: group.kernelId, target_name: target });
  }
}

/** The idle dialog's body: how many minutes without a message either way count as idle. */
class IdleBody extends Widget implements Dialog.IBodyWidget<number> {
  constructor() {
    super();
    const label = document.createElement('label');
    label.textContent =
      'Close every open comm of every kernel idle for at least (minutes) ';
    this._input.type = 'number';
    this._input.min = '0';
    this._input.step = 'any';
    this._input.value = '60';
    this._input.className = 'jp-mod-styled jp-CommsPanel-idleInput';
    this._input.setAttribute('aria-label', 'Idle minutes');
    label.appendChild(this._input);
    this.node.appendChild(label);
    const note = document.createElement('p');
    note.textContent = CONSEQUENCE;
    this.node.appendChild(note);
  }

  getValue(): number {
    return Number(this._input.value);
  }

  protected onAfterAttach(): void {
    this._input.select();
  }

  private _input = document.createElement('input');
}

export async function closeIdle(model: CommsModel) {
  const { button, value } = await confirm<number>(
    'Close idle comms?',
    new IdleBody(),
    'Close idle'
  );
  if (!button.accept) {
    return;
  }
  if (value === null || !(value > 0)) {
    model.notify(
      'Nothing closed: give the idle time in minutes, more than 0.',
      true
    );
    return;
  }
  await model.closeWhere({ min_idle: String(Math.round(value * 60)) });
}
