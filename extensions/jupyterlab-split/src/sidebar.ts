// The left sidebar: one pane per concern (sites, sessions, runs, checkpoints, border, W&B), from the shared model.
import { refreshIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { BorderPane } from './border';
import { CheckpointsPane } from './checkpoints';
import { CommandIDs } from './commandids';
import { button, el } from './dom';
import { Feed, SplitModel } from './model';
import { Pane } from './pane';
import { RunsPane } from './runs';
import { SessionsPane } from './sessions';
import { experimentUseText } from './sitelogic';
import { SitesPane } from './sites';
import { WandbPane } from './wandb';

/** The panes that show each feed (a feed not named here is every pane's: the sites, the experiment). */
const FEED_PANES: Partial<Record<Feed, string[]>> = {
  accelerators: ['sites'],
  sessions: ['sessions'],
  storage: ['checkpoints', 'wandb'],
  transfers: ['checkpoints'],
  border: ['border', 'checkpoints'] // a declassification changes what the guard says of a transfer
};

/** The sidebar: its header (the experiment, its use, refresh), an error line, and the panes in focus order. */
export class SplitSidebar extends Widget {
  constructor(
    private readonly _model: SplitModel,
    commands: CommandRegistry
  ) {
    super();
    this.id = 'jupyter-split-sidebar';
    this.addClass('jp-split-sidebar');
    this.title.caption = 'jupyter_split: sites, runs and the border';
    this.node.setAttribute('role', 'complementary');
    this.node.setAttribute('aria-label', 'jupyter_split');
    this._title = el('h2', { class: 'jp-split-title' }, 'jupyter_split');
    this._use = el('div', { class: 'jp-split-detail jp-split-use', title: 'accelerator-hours and cost of the experiment on every site' });
    this._error = el('div', { class: 'jp-split-error', role: 'alert', hidden: '' });
    this._panes = [
      new SitesPane(_model),
      new SessionsPane(_model),
      new RunsPane(_model, commands),
      new CheckpointsPane(_model, commands),
      new BorderPane(_model),
      new WandbPane(_model)
    ];
    // Top to bottom is the focus order: the header's refresh, then each pane's heading, filters and list.
    this.node.append(
      el('div', { class: 'jp-split-header' }, this._title, button(refreshIcon, 'Refresh now', () => void commands.execute(CommandIDs.refresh))),
      this._use,
      this._error,
      ...this._panes.map(p => p.node)
    );
    _model.changed.connect(this._render, this);
    // A pane opened asks at once for what it shows (its feed stood by while it was folded).
    for (const pane of this._panes) {
      pane.toggled.connect((_, collapsed) => collapsed || void _model.refresh());
    }
    // Elapsed times of active runs move even when no poll brings news.
    this._clock = window.setInterval(() => this.isVisible && this._render(), 1000);
    this._render();
  }

  pane(key: string): Pane | undefined {
    return this._panes.find(p => p.key === key);
  }

  /** Whether anyone looks at what `feed` brings: the sidebar shows, and a pane that shows it is open. */
  wants(feed: Feed): boolean {
    if (!this.isVisible) {
      return false;
    }
    const panes = FEED_PANES[feed];
    return !panes || panes.some(key => this.pane(key)?.collapsed === false);
  }

  dispose(): void {
    window.clearInterval(this._clock);
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    // The sidebar's feeds stand by while it is hidden: bring them up to date as soon as it shows.
    void this._model.refresh();
  }

  private _render(): void {
    const m = this._model;
    const title = m.experiment ? `Experiment ${m.experiment.name}` : 'jupyter_split';
    if (this._title.textContent !== title) {
      this._title.textContent = title;
    }
    const use = m.experimentUse ? `used: ${experimentUseText(m.experimentUse)}` : '';
    if (this._use.textContent !== use) {
      this._use.textContent = use;
    }
    const error = m.error ?? '';
    if (this._error.textContent !== error) {
      this._error.textContent = error;
    }
    this._error.hidden = !error;
    for (const pane of this._panes) {
      pane.update();
    }
  }

  private _title: HTMLElement;
  private _use: HTMLElement;
  private _error: HTMLElement;
  private _panes: Pane[];
  private _clock: number;
}
