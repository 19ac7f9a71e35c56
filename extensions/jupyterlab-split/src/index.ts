// jupyter_split's JupyterLab plugin: the sidebar, the run panels, the cell command, the status item.
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Clipboard, Dialog, ICommandPalette, InputDialog, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { api } from './api';
import { CommandIDs } from './commandids';
import { showMessage } from './dialogs';
import { attachCode, cellSite, setSiteLine } from './logic';
import { SplitModel } from './model';
import { runPanel } from './runview';
import { cancelText } from './sitelogic';
import { SplitSidebar } from './sidebar';
import { RunsStatus } from './statusbar';
import splitSvg from '../style/icons/split.svg';

const PLUGIN_ID = 'jupyterlab-split:plugin';

export const splitIcon = new LabIcon({ name: 'jupyterlab-split:split', svgstr: splitSvg });

interface Settings {
  refreshInterval: number;
  defaultSite: string;
}

function readSettings(settings: ISettingRegistry.ISettings | null): Settings {
  return {
    refreshInterval: (settings?.composite.refreshInterval as number | undefined) ?? 2,
    defaultSite: (settings?.composite.defaultSite as string | undefined) ?? ''
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Sites, runs, checkpoints and W&B runs of jupyter_split in a sidebar.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ILayoutRestorer, ICommandPalette, IStatusBar, ISettingRegistry],
  activate: async (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    registry: ISettingRegistry | null
  ) => {
    const settings = registry ? await registry.load(PLUGIN_ID).catch(() => null) : null;
    let current = readSettings(settings);
    // The sidebar's own feeds (sites, accelerators, storage, the border) are asked for only while it shows.
    let sidebar: SplitSidebar | null = null;
    const model = new SplitModel(current.refreshInterval * 1000, feed => sidebar?.wants(feed) ?? false);
    settings?.changed.connect(() => {
      current = readSettings(settings);
      model.intervalMs = current.refreshInterval * 1000;
    });

    sidebar = new SplitSidebar(model, app.commands);
    sidebar.title.icon = splitIcon;
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, sidebar.id);

    const { commands } = app;
    commands.addCommand(CommandIDs.openSidebar, {
      label: 'Show the jupyter_split sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh jupyter_split sites and runs',
      execute: () => model.refresh()
    });

    commands.addCommand(CommandIDs.runCellOnSite, {
      label: 'Run cell on site...',
      caption: 'Pick a site, point the cell at it with %%on SITE, and run it',
      icon: splitIcon,
      isEnabled: () => tracker.activeCell?.model.type === 'code',
      execute: async args => {
        const panel = tracker.currentWidget;
        const cell = tracker.activeCell;
        if (!panel || !cell || cell.model.type !== 'code') {
          return;
        }
        if (!model.sites.length) {
          await model.refresh();
        }
        const names = model.sites.map(s => s.name);
        const source = cell.model.sharedModel.getSource();
        let site = args.site as string | undefined;
        if (!site) {
          const preferred = cellSite(source) || current.defaultSite || model.experiment?.default_remote || names[0];
          const choice = await InputDialog.getItem({
            title: 'Run cell on site',
            items: names,
            current: Math.max(0, names.indexOf(preferred ?? ''))
          });
          if (!choice.button.accept || !choice.value) {
            return;
          }
          site = choice.value;
        }
        cell.model.sharedModel.setSource(setSiteLine(source, site));
        // The magics must be loaded in the kernel; loading twice is a no-op.
        const kernel = panel.sessionContext.session?.kernel;
        if (kernel) {
          const reply = await kernel.requestExecute({ code: '%load_ext jupyter_split', silent: true, store_history: false }).done;
          if (reply.content.status === 'error') {
            await showMessage(
              'jupyter_split is not importable in this kernel',
              `${reply.content.ename}: ${reply.content.evalue}\nInstall jupyter_split in the kernel's environment.`,
              'error'
            );
            return;
          }
        }
        await NotebookActions.run(panel.content, panel.sessionContext);
        void model.refresh();
      }
    });

    commands.addCommand(CommandIDs.openRun, {
      label: args => `Open run ${args.runId ?? ''}`,
      execute: args => {
        const runId = args.runId as string;
        const existing = Array.from(app.shell.widgets('main')).find(w => w.id === `jupyter-split-run-${runId}`);
        if (existing) {
          app.shell.activateById(existing.id);
          return;
        }
        const cancel = () => void commands.execute(CommandIDs.cancelRun, { runId });
        const interrupt = () => void commands.execute(CommandIDs.interruptRun, { runId });
        const panel = runPanel(runId, rendermime, () => model.states(), current.refreshInterval * 1000, cancel, interrupt);
        app.shell.add(panel, 'main', { mode: 'split-right' });
      }
    });

    commands.addCommand(CommandIDs.cancelRun, {
      label: args => `Cancel run ${args.runId ?? ''}`,
      execute: async args => {
        const runId = args.runId as string;
        // What cancelling does depends on how the run runs: asked now, so the words hold at the click
        const run = await api.run(runId).catch(() => null);
        const session = run?.mode === 'session' ? await api.sessionOf(run.site).catch(() => null) : null;
        const answer = await showDialog({
          title: run?.mode === 'session' ? 'Cancel run and end its session' : 'Cancel run',
          body: run ? cancelText(run, session) : `Cancel ${runId}? Its output so far stays in the event log.`,
          buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Cancel run' })]
        });
        if (!answer.button.accept) {
          return;
        }
        try {
          await api.cancel(runId);
        } catch (reason) {
          await showMessage(`Could not cancel ${runId}`, String((reason as Error).message ?? reason), 'error');
        }
        await model.refresh();
      }
    });

    commands.addCommand(CommandIDs.interruptRun, {
      label: args => `Interrupt run ${args.runId ?? ''}`,
      caption: "A KeyboardInterrupt in the run's cell, as a notebook's stop button sends: its session lives on",
      execute: async args => {
        const runId = args.runId as string;
        try {
          await api.interrupt(runId);
        } catch (reason) {
          await showMessage(`Could not interrupt ${runId}`, String((reason as Error).message ?? reason), 'error');
        }
        await model.refresh();
      }
    });

    commands.addCommand(CommandIDs.insertAttach, {
      label: args => `Insert %split attach ${args.runId ?? ''}`,
      execute: args => {
        const code = attachCode(args.runId as string);
        const panel = tracker.currentWidget;
        if (!panel) {
          Clipboard.copyToSystem(code);
          return;
        }
        NotebookActions.insertBelow(panel.content);
        panel.content.activeCell?.model.sharedModel.setSource(code);
        app.shell.activateById(panel.id);
      }
    });

    commands.addCommand(CommandIDs.transferCheckpoint, {
      label: args => `Copy checkpoint to ${args.toSite ?? 'site'}`,
      execute: async args => {
        const toSite = args.toSite as string;
        try {
          // The copy runs on the server; its row in the checkpoints pane shows its progress and a cancel button.
          await api.startTransfer(args.site as string, args.name as string, toSite);
        } catch (reason) {
          await showMessage(`Not copied to ${toSite}`, String((reason as Error).message ?? reason), 'error');
        }
        await model.refresh();
      }
    });

    if (palette) {
      const category = 'jupyter_split';
      for (const command of [CommandIDs.openSidebar, CommandIDs.refresh, CommandIDs.runCellOnSite]) {
        palette.addItem({ command, category });
      }
    }

    if (statusBar) {
      statusBar.registerStatusItem('jupyterlab-split:runs', {
        item: new RunsStatus(model, () => app.shell.activateById(sidebar.id)),
        align: 'left',
        rank: 4
      });
    }
  }
};

export default plugin;
