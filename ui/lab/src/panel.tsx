/**
 * The Comms panel of the left sidebar: this server's live comms by notebook, then kernel.
 *
 * Everything shown is text React escapes (comm ids, targets and paths come from kernels
 * and users); no markup is built from strings. Every control is a native button or
 * checkbox, so the panel works from the keyboard, and the close controls exist only for a
 * user the server lets close comms.
 */
import {
  caretDownIcon,
  caretRightIcon,
  closeIcon,
  consoleIcon,
  LabIcon,
  notebookIcon,
  ReactWidget,
  refreshIcon,
  UseSignal
} from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  closeIdle,
  closeOne,
  closeSelected,
  closeTarget,
  finishLeftBehind
} from './actions';
import { ICommActivity, IComm, IEachWay } from './api';
import {
  CommsModel,
  commTree,
  dependents,
  duration,
  ICommNode,
  IKernelGroup,
  kernelLabel,
  PAGE_SIZE,
  plural,
  widgetName
} from './model';

export const commsIcon = new LabIcon({
  name: 'jupyter-comm-ext:comms',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M7 4 2 9l5 5v-3.5h9v-3H7zm10 6v3.5H8v3h9V20l5-5z"/>' +
    '</svg>'
});

export class CommsPanel extends ReactWidget {
  constructor(
    private readonly _model: CommsModel,
    private readonly _openPath: (path: string) => void
  ) {
    super();
    this.id = 'jupyter-comm-ext:panel';
    this.title.icon = commsIcon;
    this.title.caption = 'Comms';
    this.addClass('jp-CommsPanel');
  }

  protected onAfterShow(): void {
    this._model.showRows = true;
  }

  protected onAfterHide(): void {
    this._model.showRows = false;
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this._model.changed}>
        {() => <CommsView model={this._model} openPath={this._openPath} />}
      </UseSignal>
    );
  }
}

interface IViewProps {
  model: CommsModel;
  openPath: (path: string) => void;
}

function CommsView({ model, openPath }: IViewProps): JSX.Element {
  if (model.state === 'disabled') {
    return (
      <div className="jp-CommsPanel-empty" role="status">
        <p>The comms server extension is not enabled on this server.</p>
        <p>
          Install <code>jupyter_comm_ext</code> where the server runs, or enable
          it with <code>jupyter server extension enable jupyter_comm_ext</code>,
          then restart the server.
        </p>
      </div>
    );
  }
  const summary = model.summary;
  return (
    <>
      <div className="jp-CommsPanel-toolbar">
        <h2 className="jp-CommsPanel-heading">Comms</h2>
        <button
          className="jp-CommsPanel-iconButton"
          aria-label="Refresh comms"
          title="Refresh comms"
          onClick={() => void model.refresh()}
        >
          <refreshIcon.react tag="span" />
        </button>
      </div>
      {model.canClose && (
        <div className="jp-CommsPanel-actions">
          <button
            className="jp-mod-styled jp-CommsPanel-textButton"
            disabled={model.selected.size === 0}
            onClick={() => void closeSelected(model)}
          >
            Close selected ({model.selected.size})
          </button>
          <button
            className="jp-mod-styled jp-CommsPanel-textButton"
            onClick={() => void closeIdle(model)}
          >
            Close idle…
          </button>
        </div>
      )}
      {summary && (
        <p className="jp-CommsPanel-summary">
          {plural(summary.open, 'open comm')}
          {summary.orphaned > 0 &&
            `, ${summary.orphaned.toLocaleString()} orphaned`}
          {summary.left_behind > 0 &&
            `, ${summary.left_behind.toLocaleString()} left behind`}
          {` · ${summary.closed.toLocaleString()} in closed history`}
        </p>
      )}
      {model.notice && (
        <div
          className={`jp-CommsPanel-notice${model.notice.error ? ' jp-mod-error' : ''}`}
          role={model.notice.error ? 'alert' : 'status'}
        >
          <span>{model.notice.text}</span>
          <button
            className="jp-CommsPanel-iconButton"
            aria-label="Dismiss message"
            title="Dismiss message"
            onClick={() => model.dismissNotice()}
          >
            <closeIcon.react tag="span" />
          </button>
        </div>
      )}
      {model.error && (
        <div className="jp-CommsPanel-notice jp-mod-error" role="alert">
          Could not refresh: {model.error}
        </div>
      )}
      {model.state === 'loading' && (
        <p className="jp-CommsPanel-empty">Loading comms…</p>
      )}
      {model.state === 'ready' && !model.kernels.length && (
        <p className="jp-CommsPanel-empty">No kernels are running.</p>
      )}
      <div className="jp-CommsPanel-kernels">
        {model.kernels.map(group => (
          <KernelGroup
            key={group.kernelId}
            group={group}
            model={model}
            openPath={openPath}
          />
        ))}
      </div>
    </>
  );
}

function KernelGroup({
  group,
  model,
  openPath
}: IViewProps & { group: IKernelGroup }): JSX.Element {
  const label = kernelLabel(group);
  const expanded = !model.collapsed.has(group.kernelId);
  const Caret = expanded ? caretDownIcon : caretRightIcon;
  const live = group.open + group.orphaned;
  const now = Date.now();
  const tree = commTree(group.comms);
  const rows = (nodes: ICommNode[]) => (
    <ul className="jp-CommsPanel-comms">
      {nodes.map(node => (
        <CommRow
          key={`${node.depth} ${node.key} ${node.comm.comm_id}`}
          node={node}
          label={label}
          model={model}
          selected={model.selected.has(node.comm.comm_id)}
          canClose={model.canClose}
          dependents={
            node.comm.widget?.references.length
              ? dependents(node.comm, group.comms)
              : 0
          }
          age={since(node.comm.opened_at, now)}
          idle={since(node.comm.last_activity, now)}
        />
      ))}
    </ul>
  );
  return (
    <section className="jp-CommsPanel-kernel" data-kernel-id={group.kernelId}>
      <div className="jp-CommsPanel-kernelHeader">
        <button
          className="jp-CommsPanel-iconButton"
          aria-expanded={expanded}
          aria-label={`${expanded ? 'Collapse' : 'Expand'} the comms of ${label}`}
          title={`${expanded ? 'Collapse' : 'Expand'} the comms of ${label}`}
          onClick={() => model.toggleCollapsed(group.kernelId)}
        >
          <Caret.react tag="span" />
        </button>
        <div className="jp-CommsPanel-kernelName">
          {group.sessions.length ? (
            group.sessions.map(session => (
              <button
                key={session.path}
                className="jp-CommsPanel-open"
                title={`Open ${session.path}`}
                onClick={() => openPath(session.path)}
              >
                {session.type === 'console' ? (
                  <consoleIcon.react
                    tag="span"
                    className="jp-CommsPanel-sessionIcon"
                  />
                ) : (
                  <notebookIcon.react
                    tag="span"
                    className="jp-CommsPanel-sessionIcon"
                  />
                )}
                <span className="jp-CommsPanel-path">{session.path}</span>
              </button>
            ))
          ) : (
            <span className="jp-CommsPanel-sessionless">{label}</span>
          )}
        </div>
        <span className="jp-CommsPanel-count">
          {group.open.toLocaleString()}
          {group.orphaned > 0 &&
            ` + ${group.orphaned.toLocaleString()} orphaned`}
        </span>
      </div>
      <div
        className="jp-CommsPanel-kernelInfo"
        title={`Kernel ${group.kernelId}`}
      >
        {group.sessions.length
          ? `${group.kernelName || 'kernel'} · ${group.kernelId.slice(0, 8)}`
          : 'no notebook or console'}
      </div>
      {group.activity && <Activity activity={group.activity} now={now} />}
      {expanded && live === 0 && (
        <p className="jp-CommsPanel-none">No open comms.</p>
      )}
      {expanded && model.canClose && (
        <TargetButtons group={group} model={model} />
      )}
      {expanded && tree.live.length > 0 && rows(tree.live)}
      {expanded && group.leftBehind > 0 && (
        <div
          className="jp-CommsPanel-leftBehind"
          role="group"
          aria-label={`Left behind in ${label}`}
        >
          <div className="jp-CommsPanel-leftBehindHeader">
            <span
              className="jp-CommsPanel-leftBehindTitle"
              title="Widget models no open widget uses any more (a closed widget's layout and style): they stay in the kernel and in every frontend until finished"
            >
              Left behind
            </span>
            <span className="jp-CommsPanel-count">
              {group.leftBehind.toLocaleString()}
            </span>
            {model.canClose && (
              <button
                className="jp-mod-styled jp-CommsPanel-textButton"
                onClick={() => void finishLeftBehind(model, group)}
              >
                Finish {group.leftBehind.toLocaleString()} left-behind
              </button>
            )}
          </div>
          {tree.leftBehind.length > 0 && rows(tree.leftBehind)}
        </div>
      )}
      {expanded && group.more && (
        <button
          className="jp-mod-styled jp-CommsPanel-textButton jp-CommsPanel-more"
          onClick={() => model.showMore(group.kernelId)}
        >
          Show {PAGE_SIZE} more (
          {`${group.comms.length.toLocaleString()} of ${live.toLocaleString()} shown`}
          )
        </button>
      )}
    </section>
  );
}

/** One close button per target among the loaded rows: "close this notebook's widgets". */
function TargetButtons({
  group,
  model
}: {
  group: IKernelGroup;
  model: CommsModel;
}) {
  const counts = new Map<string, number>();
  for (const comm of group.comms) {
    if (comm.target_name !== null && comm.status === 'open') {
      counts.set(comm.target_name, (counts.get(comm.target_name) ?? 0) + 1);
    }
  }
  if (!counts.size) {
    return null;
  }
  const label = kernelLabel(group);
  return (
    <div className="jp-CommsPanel-targets">
      {[...counts].map(([target, n]) => (
        <button
          key={target}
          className="jp-CommsPanel-target"
          aria-label={`Close the ${target} comms of ${label}`}
          title={`Close the ${target} comms of ${label}`}
          onClick={() => void closeTarget(model, group, target)}
        >
          <span className="jp-CommsPanel-targetLabel">Close {target}</span>
          {`\u00a0(${n.toLocaleString()}${group.more ? '+' : ''})`}
        </button>
      ))}
    </div>
  );
}

interface IRowProps {
  node: ICommNode;
  /** The kernel's label, for the close dialog. */
  label: string;
  model: CommsModel;
  selected: boolean;
  canClose: boolean;
  /** How many loaded models only this widget references (closed with it on request). */
  dependents: number;
  age: string;
  idle: string;
}

/**
 * One comm. Memoised on what it shows: a poll brings fresh objects for every row, and
 * re-rendering a thousand unchanged rows every two seconds is what froze the page (one
 * long task per poll, up to 470 ms, measured with bench/lab_panel.py).
 */
const CommRow = React.memo(function CommRow(props: IRowProps): JSX.Element {
  const { node, label, model, selected, canClose, dependents, age, idle } =
    props;
  const { comm, key, depth } = node;
  const id = comm.comm_id;
  const name = widgetName(comm);
  const times = `by ${comm.origin} · age\u00a0${age} · idle\u00a0${idle}`;
  const flows = `${traffic('↑', comm.messages, comm.bytes, 'to_kernel')} · ${traffic('↓', comm.messages, comm.bytes, 'from_kernel')}`;
  return (
    <li
      className={`jp-CommsPanel-comm jp-mod-${comm.status}${depth ? ' jp-mod-dependent' : ''}`}
      style={
        depth ? { paddingLeft: `calc(12px + ${depth} * 16px)` } : undefined
      }
      data-comm-id={id}
      title={depth ? `Comm ${id}\n${times}\n${flows}` : `Comm ${id}`}
    >
      {canClose && (
        <input
          type="checkbox"
          className="jp-CommsPanel-select"
          aria-label={`Select comm ${id}`}
          checked={selected}
          onChange={() => model.toggleSelected(id)}
        />
      )}
      <div className="jp-CommsPanel-commText">
        <div className="jp-CommsPanel-commLine">
          {key && <span className="jp-CommsPanel-refKey">{key}</span>}
          {name ? (
            <span
              className="jp-CommsPanel-targetName jp-CommsPanel-widgetName"
              title={widgetTitle(comm)}
            >
              {name}
            </span>
          ) : (
            <span
              className="jp-CommsPanel-targetName"
              title={comm.target_name ?? undefined}
            >
              {comm.target_name ?? '(no target)'}
            </span>
          )}
          {comm.status !== 'open' && (
            <span className="jp-CommsPanel-status">{comm.status}</span>
          )}
          <code className="jp-CommsPanel-id">{id.slice(0, 8)}</code>
        </div>
        {/* a nested model is one line: its times and traffic are in its tooltip */}
        {!depth && (
          <>
            <div
              className="jp-CommsPanel-commLine jp-CommsPanel-times"
              title="Who opened it, how long ago, and how long since its last message"
            >
              {times}
            </div>
            <div
              className="jp-CommsPanel-commLine jp-CommsPanel-traffic"
              title="Messages and bytes to the kernel (↑) and from the kernel (↓)"
            >
              {flows}
            </div>
          </>
        )}
      </div>
      {canClose && (
        <button
          className="jp-CommsPanel-iconButton"
          aria-label={`Close comm ${id}`}
          title={`Close comm ${id}`}
          onClick={() => void closeOne(model, comm, label, dependents)}
        >
          <closeIcon.react tag="span" />
        </button>
      )}
    </li>
  );
}, sameRow);

function sameRow(a: IRowProps, b: IRowProps): boolean {
  const [x, y] = [a.node.comm, b.node.comm];
  return (
    a.node.key === b.node.key &&
    a.node.depth === b.node.depth &&
    a.dependents === b.dependents &&
    widgetName(x) === widgetName(y) &&
    a.label === b.label &&
    a.model === b.model &&
    a.selected === b.selected &&
    a.canClose === b.canClose &&
    a.age === b.age &&
    a.idle === b.idle &&
    x.comm_id === y.comm_id &&
    x.status === y.status &&
    x.target_name === y.target_name &&
    x.origin === y.origin &&
    x.messages.to_kernel === y.messages.to_kernel &&
    x.messages.from_kernel === y.messages.from_kernel &&
    x.bytes.to_kernel === y.bytes.to_kernel &&
    x.bytes.from_kernel === y.bytes.from_kernel
  );
}

/** "@jupyter-widgets/controls@2.0.0 · jupyter.widget": where the widget's class comes from. */
function widgetTitle(comm: IComm): string {
  const widget = comm.widget!;
  const module = widget.model_module
    ? `${widget.model_module}${widget.model_module_version ? `@${widget.model_module_version}` : ''}`
    : widget.model_name;
  return `${module} · ${comm.target_name ?? 'no target'}`;
}

/**
 * When a user last touched a comm of this kernel, and when the kernel last sent one on its
 * own: what tells an admin why the kernel is (or is not) idle for the culler.
 */
function Activity({
  activity,
  now
}: {
  activity: ICommActivity;
  now: number;
}): JSX.Element | null {
  if (!activity.user && !activity.kernel) {
    return null;
  }
  const when = (iso: string | null) =>
    iso ? `${since(iso, now)} ago` : 'never';
  return (
    <div
      className="jp-CommsPanel-activity"
      title="When a user last touched a widget of this kernel (user activity), and when the kernel last sent a comm message on its own, from a timer or a thread (not activity: it does not keep the kernel from being culled)"
    >
      {`User ${when(activity.user)} · kernel on its own ${when(activity.kernel)}`}
    </div>
  );
}

function traffic(
  arrow: string,
  messages: IEachWay,
  bytes: IEachWay,
  way: keyof IEachWay
) {
  return `${arrow} ${plural(messages[way], 'msg')}, ${size(bytes[way])}`;
}

/** How long since an ISO timestamp, in the pages' one format: "3 s", "4 min", "2 h 5 min". */
function since(iso: string, now: number): string {
  return duration(now - Date.parse(iso));
}

function size(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  if (bytes < 1024 * 1024) {
    return `${(bytes / 1024).toFixed(1)} KB`;
  }
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
