/**
 * Every close goes through a JupyterLab dialog first: a force-close cannot be undone (the
 * kernel runs its close callbacks, and a widget's view goes away in every open notebook).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IComm } from './api';
import { CommsModel, IKernelGroup, kernelLabel, plural } from './model';

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

/** Close one comm; `label` names its notebook (or kernel) in the dialog. */
export async function closeOne(model: CommsModel, comm: IComm, label: string) {
  const target = comm.target_name ?? 'no target';
  const { button } = await confirm(
    `Close comm ${comm.comm_id}?`,
    `A ${target} comm of ${label}. ${CONSEQUENCE}`,
    'Close comm'
  );
  if (button.accept) {
    await model.closeComms([comm.comm_id]);
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
