// The data the sidebar and status bar show, polled from the server with backoff.
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  Accelerators,
  api,
  Border,
  Checkpoint,
  Experiment,
  Leases,
  Revalidator,
  Run,
  Session,
  Sessions,
  Site,
  SiteLease,
  SiteReading,
  TransferCheck,
  TransferView,
  WandbRun
} from './api';
import { BorderFilter, borderQuery, NO_FILTER } from './borderlogic';
import { checkKey, RunStateInfo, RunStates } from './logic';
import { RunPage, RunPager } from './runpages';
import { runCostText } from './sitelogic';

/**
 * Each feed of the model, and how many refresh intervals apart it is asked for. Sites are probed
 * (an SSH round trip, an sinfo) far less often than runs, on a poll of their own, so a slow site
 * never holds the rest back; a session is asked of its runner (a look at each queued run's log):
 * half as often as runs. `sidebar`: asked for only while the sidebar shows (and the pane that
 * shows it is open); the runs also feed the status bar.
 */
const FEEDS = {
  runs: { every: 1, sidebar: false },
  sites: { every: 10, sidebar: true },
  storage: { every: 1, sidebar: true },
  accelerators: { every: 1, sidebar: true },
  border: { every: 1, sidebar: true },
  sessions: { every: 2, sidebar: true },
  transfers: { every: 1, sidebar: true }
};
const MAX_BACKOFF_MS = 60_000;

/** One of the model's polls (`FEEDS`). */
export type Feed = keyof typeof FEEDS;

/** The decisions the border pane filters on (the server's DECISIONS); null shows them all. */
export type Decision = 'allowed' | 'refused' | 'declassified' | null;

/** What the model asks of the server: the polled GETs, each revalidated with its ETag, and the run states. */
export interface ModelSource {
  /** The answer at `path`; `changed: false` where the server said it is the one kept (a 304). */
  get<T>(path: string): Promise<{ body: T; changed: boolean }>;
  states(): Promise<{ states: RunStateInfo[] }>;
}

/** The server extension itself: GETs through a `Revalidator`. */
function serverSource(): ModelSource {
  const kept = new Revalidator();
  return { get: path => kept.get(path), states: () => api.states() };
}

/** What the sidebar and the status bar show, one poll per feed, each revalidated with its ETag. */
export class SplitModel {
  experiment: Experiment | null = null;
  sites: Site[] = [];
  /** The server's run states; none known until the first runs poll answers. */
  runStates = new RunStates([]);
  /** Each with its state and last line as the server read them from its event log. */
  runs: Run[] = [];
  /** The runs the runs pane's filters find in the whole run index; null while no filter is set. */
  filteredRuns: Run[] | null = null;
  /** The `before` of the page after `runs` (after `filteredRuns`: `filteredNext`); null where none is older. */
  runsNext: number | null = null;
  filteredNext: number | null = null;
  /** The older pages of runs the runs pane shows below the first (`firstPage`), asked for as the user goes back. */
  readonly pages = new RunPager(
    (query, before) => api.runs(query, before),
    () => this._changed.emit()
  );
  checkpoints: Checkpoint[] = [];
  /** Sites whose storage could not be listed, and why. */
  checkpointErrors: Record<string, string> = {};
  wandbRuns: WandbRun[] = [];
  /** Each site's accelerators as last read, by site name. */
  readings = new Map<string, SiteReading>();
  /** Each site's lease beside its use, by site name. */
  leases = new Map<string, SiteLease>();
  /** The experiment's accelerator-hours on every site, and its cost per currency. */
  experimentUse: Leases['experiment'] | null = null;
  border: Border | null = null;
  /** The copies this server runs or ran, the newest first. */
  transfers: TransferView[] = [];
  /** Each site's session, by site name (none until the first answer). */
  sessions = new Map<string, Session>();
  /** What the border pane shows of the audit log: one decision, site, kind and first day (NO_FILTER: all). */
  borderFilter: BorderFilter = NO_FILTER;

  /**
   * `wanted(feed)` says whether anyone looks at what `feed` brings: the sidebar's feeds are asked for
   * only then (the run count in the status bar is polled while the page is visible). `source`: the
   * server (another in tests).
   */
  constructor(
    intervalMs: number,
    private readonly _wanted: (feed: Feed) => boolean = () => true,
    source: ModelSource = serverSource()
  ) {
    this._intervalMs = intervalMs;
    this._api = source;
    const fetch: Record<Feed, () => Promise<boolean>> = {
      runs: () => this._fetchRuns(),
      sites: () => this._fetchSites(),
      storage: () => this._fetchStorage(),
      accelerators: () => this._fetchAccelerators(),
      border: () => this._fetchBorder(),
      sessions: () => this._fetchSessions(),
      transfers: () => this._fetchTransfers()
    };
    this._polls = Object.fromEntries(
      (Object.keys(FEEDS) as Feed[]).map(feed => [feed, this._poll(feed, intervalMs * FEEDS[feed].every, fetch[feed])])
    ) as Record<Feed, Poll>;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** What the last failed request said, if the server is not answering as it should. */
  get error(): string | null {
    return Object.values(this._errors).find(Boolean) ?? null;
  }

  set intervalMs(value: number) {
    this._intervalMs = value;
    for (const feed of Object.keys(FEEDS) as Feed[]) {
      this._setInterval(feed, value * FEEDS[feed].every);
    }
    this._setInterval('accelerators', Math.max(value, this._readingEveryMs));
  }

  /**
   * The border pane's heading: how many decisions the border refused today, as the pane's today line
   * counts them (the server's `today`, whatever decision the list shows); null before the first answer.
   */
  get refusedToday(): number | null {
    return this.border ? (this.border.today?.refused ?? 0) : null;
  }

  /** What run `runId` used of its site's lease, in words; '' where the lease answer does not list it. */
  runCost(run: { run_id: string; site: string }): string {
    const lease = this.leases.get(run.site);
    const row = lease?.runs.find(r => r.run_id === run.run_id);
    return row && lease && row.cards > 0 ? runCostText(row, lease.currency) : '';
  }

  /** Fetch everything now. */
  async refresh(): Promise<void> {
    const polls = Object.values(this._polls);
    await Promise.all(polls.map(p => p.refresh()));
    await Promise.all(polls.map(p => p.tick));
  }

  /** The decision the border pane shows (null: all). */
  get decision(): Decision {
    return this.borderFilter.decision;
  }

  /** Show the border entries of `decision` (null: all), asked of the server at once. */
  async setDecision(decision: Decision): Promise<void> {
    await this.setBorderFilter({ decision });
  }

  /** Change some of the border pane's filters; the server is asked at once. */
  async setBorderFilter(change: Partial<BorderFilter>): Promise<void> {
    this.borderFilter = { ...this.borderFilter, ...change };
    this._changed.emit();
    await this._polls.border.refresh();
  }

  /**
   * The guard's dry run for copying `ckpt` to `toSite`: undefined until it answered. Asked once per
   * checkpoint, destination and state of the audit log (a declassification may change the answer).
   */
  check(ckpt: Checkpoint, toSite: string): TransferCheck | undefined {
    const key = checkKey(ckpt, toSite, this._borderTag);
    const known = this._checks.get(key);
    if (known !== undefined || this._asking.has(key)) {
      return known ?? undefined;
    }
    this._asking.add(key);
    api
      .check(ckpt.site, ckpt.name, toSite)
      .catch(reason => ({ allowed: false, reasons: [String((reason as Error).message ?? reason)], message: '', labels: [] }))
      .then(answer => {
        this._checks.set(key, answer);
        this._asking.delete(key);
        this._changed.emit();
      });
    return undefined;
  }

  /** The server's run states, asked once (again only after a failed answer). */
  states(): Promise<RunStates> {
    if (!this._states) {
      const asked = this._api.states().then(({ states }) => new RunStates(states));
      asked.catch(() => (this._states = null));
      this._states = asked;
    }
    return this._states;
  }

  dispose(): void {
    Object.values(this._polls).forEach(p => p.dispose());
    Signal.clearData(this);
  }

  private _setInterval(name: Feed, interval: number): void {
    const poll = this._polls[name];
    if (poll.frequency.interval !== interval) {
      poll.frequency = { ...poll.frequency, interval };
    }
  }

  private _poll(name: Feed, intervalMs: number, fetch: () => Promise<boolean>): Poll {
    return new Poll({
      factory: async () => {
        let changed = false;
        try {
          changed = await fetch();
          changed = changed || this._errors[name] !== null;
          this._errors[name] = null;
        } catch (reason) {
          this._errors[name] = reason instanceof Error ? reason.message : String(reason);
          changed = true;
          // Rejecting makes the Poll back off until the server answers again.
          throw reason;
        } finally {
          if (changed) {
            this._changed.emit();
          }
        }
      },
      frequency: { interval: intervalMs, backoff: true, max: MAX_BACKOFF_MS },
      name: `jupyter-split:${name}`,
      // Standby while the page is hidden; the sidebar's own feeds also while nobody looks at them.
      standby: FEEDS[name].sidebar ? () => (this._wanted(name) ? 'when-hidden' : true) : 'when-hidden'
    });
  }

  /** Ask the server for the runs `query` (`runQuery`) finds in the whole index, at once and at each poll. */
  setRunQuery(query: string): void {
    if (query !== this._runQuery) {
      this._runQuery = query;
      // another query's answer is no first page of this one's: its older pages would be of neither
      this.filteredRuns = null;
      this.filteredNext = null;
      this.pages.setQuery(query);
      void this._polls.runs.refresh();
    }
  }

  /** The first page of the runs the pane shows, the one the poll keeps fresh: the filters' answer, or the newest. */
  firstPage(): RunPage {
    if (this._runQuery) {
      return { runs: this.filteredRuns ?? [], next: this.filteredRuns ? this.filteredNext : null };
    }
    return { runs: this.runs, next: this.runsNext };
  }

  private async _fetchRuns(): Promise<boolean> {
    const query = this._runQuery;
    const [states, runs, found] = await Promise.all([
      this.states(),
      this._api.get<RunPage>('runs'),
      query ? this._api.get<RunPage>(`runs?${query}`) : Promise.resolve(null)
    ]);
    const changed = runs.changed || states !== this.runStates || (found !== null && found.changed);
    this.runStates = states;
    this.runs = runs.body.runs;
    this.runsNext = runs.body.next ?? null;
    if (query === this._runQuery) {
      this.filteredRuns = found ? found.body.runs : null;
      this.filteredNext = found ? (found.body.next ?? null) : null;
      if (changed) {
        void this.pages.refresh(this.firstPage()); // the older pages shown move on with the first
      }
    }
    return changed;
  }

  private async _fetchSites(): Promise<boolean> {
    const [sites, leases] = await Promise.all([
      this._api.get<{ experiment: Experiment; sites: Site[] }>('sites'),
      this._api.get<Leases>('lease')
    ]);
    this.experiment = sites.body.experiment;
    this.sites = sites.body.sites;
    this.leases = new Map(leases.body.sites.map(s => [s.site, s]));
    this.experimentUse = leases.body.experiment;
    return sites.changed || leases.changed;
  }

  private async _fetchStorage(): Promise<boolean> {
    const [checkpoints, wandb] = await Promise.all([
      this._api.get<{ checkpoints: Checkpoint[]; errors: Record<string, string> }>('checkpoints'),
      this._api.get<{ runs: WandbRun[] }>('wandb')
    ]);
    this.checkpoints = checkpoints.body.checkpoints;
    this.checkpointErrors = checkpoints.body.errors;
    this.wandbRuns = wandb.body.runs;
    return checkpoints.changed || wandb.changed;
  }

  private async _fetchAccelerators(): Promise<boolean> {
    const { body, changed } = await this._api.get<Accelerators>('accelerators');
    this.readings = new Map(body.sites.map(s => [s.site, s]));
    // The server reads a site no more than once its interval: asking faster only gets the same reading.
    this._readingEveryMs = body.interval * 1000;
    this._setInterval('accelerators', Math.max(this._intervalMs, this._readingEveryMs));
    return changed;
  }

  private async _fetchTransfers(): Promise<boolean> {
    const { body, changed } = await this._api.get<{ transfers: TransferView[] }>('transfers');
    const before = new Map(this.transfers.map(t => [t.id, t.state]));
    // one that ended since the last answer (or before it was ever seen running: a small copy is quick)
    const ended = body.transfers.some(t => t.state !== 'running' && before.get(t.id) !== t.state);
    this.transfers = body.transfers;
    if (ended) {
      void this._polls.storage.refresh(); // a copy ended: the checkpoints it published show at once
    }
    return changed;
  }

  private async _fetchSessions(): Promise<boolean> {
    const { body, changed } = await this._api.get<Sessions>('sessions');
    this.sessions = new Map(body.sites.map(s => [s.site, s]));
    return changed;
  }

  private async _fetchBorder(): Promise<boolean> {
    const filter = this.borderFilter;
    // today's start goes with each poll: past midnight, the counts of today start again from 0
    const { body, changed } = await this._api.get<Border>(`border?${borderQuery(filter, new Date())}`);
    if (filter !== this.borderFilter) {
      return false; // the filter changed meanwhile: its own request brings its answer
    }
    this.border = body;
    if (changed) {
      // the audit log moved on: a declassification may change what the guard says of a transfer
      this._borderTag = `${body.total}:${Object.values(body.counts).join(',')}`;
    }
    return changed;
  }

  private _api: ModelSource;
  private _runQuery = '';
  private _intervalMs: number;
  private _readingEveryMs = 0;
  private _borderTag = '';
  private _checks = new Map<string, TransferCheck>();
  private _asking = new Set<string>();
  private _states: Promise<RunStates> | null = null;
  private _errors: Partial<Record<Feed, string | null>> = {};
  private _polls: Record<Feed, Poll>;
  private _changed = new Signal<this, void>(this);
}
