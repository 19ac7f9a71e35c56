// The data the sidebar and status bar show, polled from the server with backoff.
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { api, Checkpoint, Experiment, Run, Site, WandbRun } from './api';
import { ACTIVE_STATES, foldEvents, RunView } from './logic';

/**
 * Sites are probed (an SSH round trip, an sinfo) and storage is listed far less often
 * than runs; on their own poll, so a slow site never holds the run list back.
 */
const WORLD_EVERY = 10;
const MAX_BACKOFF_MS = 60_000;

export class SplitModel {
  experiment: Experiment | null = null;
  sites: Site[] = [];
  runs: Run[] = [];
  checkpoints: Checkpoint[] = [];
  /** Sites whose storage could not be listed, and why. */
  checkpointErrors: Record<string, string> = {};
  wandbRuns: WandbRun[] = [];

  constructor(intervalMs: number) {
    this._runsPoll = this._poll('runs', intervalMs, () => this._fetchRuns());
    this._worldPoll = this._poll('world', intervalMs * WORLD_EVERY, () => this._fetchWorld());
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** What the last failed request said, if the server is not answering as it should. */
  get error(): string | null {
    return this._errors.runs ?? this._errors.world ?? null;
  }

  set intervalMs(value: number) {
    this._runsPoll.frequency = { ...this._runsPoll.frequency, interval: value };
    this._worldPoll.frequency = { ...this._worldPoll.frequency, interval: value * WORLD_EVERY };
  }

  /** Fetch everything now. */
  async refresh(): Promise<void> {
    await Promise.all([this._runsPoll.refresh(), this._worldPoll.refresh()]);
    await Promise.all([this._runsPoll.tick, this._worldPoll.tick]);
  }

  dispose(): void {
    this._runsPoll.dispose();
    this._worldPoll.dispose();
    Signal.clearData(this);
  }

  private _poll(name: 'runs' | 'world', intervalMs: number, fetch: () => Promise<void>): Poll {
    return new Poll({
      factory: async () => {
        try {
          await fetch();
          this._errors[name] = null;
        } catch (reason) {
          this._errors[name] = reason instanceof Error ? reason.message : String(reason);
          // Rejecting makes the Poll back off until the server answers again.
          throw reason;
        } finally {
          this._changed.emit();
        }
      },
      frequency: { interval: intervalMs, backoff: true, max: MAX_BACKOFF_MS },
      name: `jupyter-split:${name}`,
      standby: 'when-hidden'
    });
  }

  private async _fetchRuns(): Promise<void> {
    const { runs } = await api.runs();
    this.runs = await this._freshen(runs);
  }

  private async _fetchWorld(): Promise<void> {
    const [sites, checkpoints, wandb] = await Promise.all([api.sites(), api.checkpoints(), api.wandb()]);
    this.experiment = sites.experiment;
    this.sites = sites.sites;
    this.checkpoints = checkpoints.checkpoints;
    this.checkpointErrors = checkpoints.errors;
    this.wandbRuns = wandb.runs;
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
  private _errors: Record<'runs' | 'world', string | null> = { runs: null, world: null };
  private _runsPoll: Poll;
  private _worldPoll: Poll;
  private _changed = new Signal<this, void>(this);
}
