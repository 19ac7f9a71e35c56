// The data the sidebar and status bar show, polled from the server with backoff.
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { api, Checkpoint, Experiment, Run, Site, WandbRun } from './api';
import { ACTIVE_STATES, foldEvents, RunView } from './logic';

/** Sites are probed (an SSH round trip, a squeue) far less often than runs are listed. */
const SITE_EVERY = 10;

export class SplitModel {
  experiment: Experiment | null = null;
  sites: Site[] = [];
  runs: Run[] = [];
  checkpoints: Checkpoint[] = [];
  /** Sites whose storage could not be listed, and why. */
  checkpointErrors: Record<string, string> = {};
  wandbRuns: WandbRun[] = [];
  error: string | null = null;

  constructor(intervalMs: number) {
    this._poll = new Poll({
      auto: true,
      factory: () => this._tick(),
      frequency: { interval: intervalMs, backoff: true, max: 60_000 },
      name: 'jupyter-split:model',
      standby: 'when-hidden'
    });
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  set intervalMs(value: number) {
    this._poll.frequency = { ...this._poll.frequency, interval: value };
  }

  /** Fetch everything now, sites included. */
  async refresh(): Promise<void> {
    this._ticks = 0;
    await this._poll.refresh();
    await this._poll.tick;
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _tick(): Promise<void> {
    const withSites = this._ticks % SITE_EVERY === 0;
    this._ticks += 1;
    try {
      const [runs, sites, checkpoints, wandb] = await Promise.all([
        api.runs(),
        withSites ? api.sites() : null,
        withSites ? api.checkpoints() : null,
        withSites ? api.wandb() : null
      ]);
      this.runs = await this._freshen(runs.runs);
      if (sites) {
        this.experiment = sites.experiment;
        this.sites = sites.sites;
      }
      if (checkpoints) {
        this.checkpoints = checkpoints.checkpoints;
        this.checkpointErrors = checkpoints.errors;
      }
      if (wandb) {
        this.wandbRuns = wandb.runs;
      }
      this.error = null;
    } catch (reason) {
      this.error = reason instanceof Error ? reason.message : String(reason);
      this._changed.emit();
      // Rejecting makes the Poll back off until the server answers again.
      throw reason;
    }
    this._changed.emit();
  }

  /** Runs the index still calls active, brought up to date from their own event logs. */
  private async _freshen(runs: Run[]): Promise<Run[]> {
    const views = new Map<string, RunView>();
    await Promise.all(
      runs
        .filter(run => ACTIVE_STATES.has(run.state))
        .map(async run => {
          const known = this._views.get(run.run_id) ?? { seq: 0, state: run.state, last_line: run.last_line };
          const { events } = await api.events(run.run_id, known.seq);
          views.set(run.run_id, foldEvents(known, events));
        })
    );
    this._views = views;
    return runs.map(run => {
      const view = views.get(run.run_id);
      return view ? { ...run, state: view.state, last_line: view.last_line } : run;
    });
  }

  private _views = new Map<string, RunView>();
  private _poll: Poll;
  private _ticks = 0;
  private _changed = new Signal<this, void>(this);
}
