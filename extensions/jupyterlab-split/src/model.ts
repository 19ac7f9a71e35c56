// The data the sidebar and status bar show, polled from the server with backoff.
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { api, Checkpoint, Experiment, Run, Site, WandbRun } from './api';
import { RunStates } from './logic';

/**
 * Sites are probed (an SSH round trip, an sinfo) and storage is listed far less often
 * than runs; on their own poll, so a slow site never holds the run list back.
 */
const WORLD_EVERY = 10;
const MAX_BACKOFF_MS = 60_000;

export class SplitModel {
  experiment: Experiment | null = null;
  sites: Site[] = [];
  /** The server's run states; none known until the first runs poll answers. */
  runStates = new RunStates([]);
  /** Each with its state and last line as the server read them from its event log. */
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

  /** The server's run states, asked once (again only after a failed answer). */
  states(): Promise<RunStates> {
    if (!this._states) {
      const asked = api.states().then(({ states }) => new RunStates(states));
      asked.catch(() => (this._states = null));
      this._states = asked;
    }
    return this._states;
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
    const [states, { runs }] = await Promise.all([this.states(), api.runs()]);
    this.runStates = states;
    this.runs = runs;
  }

  private async _fetchWorld(): Promise<void> {
    const [sites, checkpoints, wandb] = await Promise.all([api.sites(), api.checkpoints(), api.wandb()]);
    this.experiment = sites.experiment;
    this.sites = sites.sites;
    this.checkpoints = checkpoints.checkpoints;
    this.checkpointErrors = checkpoints.errors;
    this.wandbRuns = wandb.runs;
  }

  private _states: Promise<RunStates> | null = null;
  private _errors: Record<'runs' | 'world', string | null> = { runs: null, world: null };
  private _runsPoll: Poll;
  private _worldPoll: Poll;
  private _changed = new Signal<this, void>(this);
}
