/**
 * jupyter-comm-ext: the comms of this server inside JupyterLab and Notebook 7 (a sidebar
 * panel, a status bar item, two commands). It talks only to jupyter_comm_ext's REST routes
 * and the server's event stream, through the same ServerConnection settings as the rest of
 * JupyterLab.
 *
 * Every token is optional, as a host may lack what it stands for: Voilà has no status bar
 * (package.json bundles a fallback copy of @jupyterlab/statusbar, whose token no host
 * provides, so loading this module never needs the host to share that package).
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';

import { closeIdle } from './actions';
import { CommsAPI } from './api';
import { CommsModel } from './model';
import { commsIcon, CommsPanel } from './panel';
import { CommsStatus } from './status';

const COMMAND_SHOW = 'jupyter-comm-ext:show';
const COMMAND_CLOSE_IDLE = 'jupyter-comm-ext:close-idle';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-comm-ext:plugin',
  description:
    'A Comms panel, a status bar item and commands for the comms of this server.',
  autoStart: true,
  optional: [ILabShell, ILayoutRestorer, ICommandPalette, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null
  ) => {
    if (app.name === 'Voila') {
      // A notebook shown as a dashboard: no sidebar for the panel (its shell would log a
      // warning) and, standalone, no comms routes on its server.
      return;
    }
    const services = app.serviceManager;
    const model = new CommsModel(
      new CommsAPI(services.serverSettings),
      services.events
    );
    const panel = new CommsPanel(model, path => {
      void app.commands.execute('docmanager:open', { path });
    });
    app.shell.add(panel, 'left', { rank: 850 });
    restorer?.add(panel, panel.id);
    const showPanel = () => app.shell.activateById(panel.id);

    app.commands.addCommand(COMMAND_SHOW, {
      label: 'Show comms panel',
      icon: commsIcon,
      execute: showPanel
    });
    app.commands.addCommand(COMMAND_CLOSE_IDLE, {
      label: 'Close idle comms…',
      isEnabled: () => model.canClose,
      execute: async () => {
        showPanel(); // the outcome (or a 403) shows there
        await closeIdle(model);
      }
    });
    for (const command of [COMMAND_SHOW, COMMAND_CLOSE_IDLE]) {
      palette?.addItem({ command, category: 'Comms' });
    }

    if (statusBar && labShell) {
      const item = new CommsStatus(model, labShell, showPanel);
      statusBar.registerStatusItem('jupyter-comm-ext:status', {
        item,
        align: 'left',
        rank: 5,
        isActive: () => item.active,
        activeStateChanged: item.activeChanged
      });
    }
    model.start();
  }
};

export default plugin;
