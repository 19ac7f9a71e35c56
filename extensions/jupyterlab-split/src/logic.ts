// Pure helpers behind the widgets: no DOM, no JupyterLab imports, tested with jest.

/** A run state as the server defines it (RUN_STATES in jupyter_split/protocol.py, GET states). */
export interface RunStateInfo {
  name: string;
  terminal: boolean;
  /** The badge's colour: active, ok, bad or warn (style/base.css). */
  style: string;
  meaning: string;
}

/**
 * The server's run states. The sidebar keeps no list of its own: a state the server did not
 * name counts as in progress (it is followed on, never given up early) and gets a plain badge.
 */
export class RunStates {
  constructor(list: RunStateInfo[]) {
    this._byName = new Map(list.map(state => [state.name, state]));
  }

  isTerminal(state: string): boolean {
    return this._byName.get(state)?.terminal ?? false;
  }

  isActive(state: string): boolean {
    return !this.isTerminal(state);
  }

  /** Every state's name, in the server's order (a filter's choices). */
  get names(): string[] {
    return Array.from(this._byName.keys());
  }

  /** The classes of a state's badge: `jp-split-state` and one per style. */
  badgeClass(state: string): string {
    const style = this._byName.get(state)?.style;
    return style ? `jp-split-state jp-split-state-${style}` : 'jp-split-state';
  }

  meaning(state: string): string {
    return this._byName.get(state)?.meaning ?? state;
  }

  private _byName: Map<string, RunStateInfo>;
}

/** A cell magic line choosing the site: `%%on SITE ...` or `%%remote_gpu [SITE] ...`. */
const SITE_LINE = /^%%(on|remote_gpu)\b(.*)$/;

/**
 * Point a cell at `site`: rewrite its `%%on`/`%%remote_gpu` first line, keeping the
 * options after the site, or put a `%%on SITE` line above the code.
 */
export function setSiteLine(source: string, site: string): string {
  const newline = source.indexOf('\n');
  const first = newline === -1 ? source : source.slice(0, newline);
  const rest = newline === -1 ? '' : source.slice(newline);
  const match = SITE_LINE.exec(first.trimEnd());
  if (!match) {
    return source ? `%%on ${site}\n${source}` : `%%on ${site}\n`;
  }
  const words = match[2].trim().split(/\s+/).filter(Boolean);
  // `%%remote_gpu --gpus 2` has no site word; `%%on` always has one.
  const hasSite = words.length > 0 && !words[0].startsWith('-');
  const options = hasSite ? words.slice(1) : words;
  return [`%%on`, site, ...options].join(' ') + rest;
}

/** The site a cell currently targets, if its first line names one. */
export function cellSite(source: string): string | null {
  const first = source.split('\n', 1)[0].trimEnd();
  const match = SITE_LINE.exec(first);
  if (!match) {
    return null;
  }
  const word = match[2].trim().split(/\s+/)[0];
  return word && !word.startsWith('-') ? word : null;
}

export function formatElapsed(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  }
  const h = Math.floor(s / 3600);
  return `${h}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Elapsed time of a run: to now while active, to its last update once it has ended. */
export function runElapsed(
  run: { state: string; created: number; updated: number },
  nowSeconds: number,
  states: RunStates
): string {
  const end = states.isActive(run.state) ? nowSeconds : run.updated;
  return formatElapsed(end - run.created);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function countActive(runs: { state: string }[], states: RunStates): number {
  return runs.filter(r => states.isActive(r.state)).length;
}

/** A cell that replays a run; it loads the magics itself, so it works in a fresh kernel too. */
export function attachCode(runId: string): string {
  return `%load_ext jupyter_split\n%split attach ${runId}`;
}

/** The nbformat output an event-log record becomes, or null for records that are not output. */
export function eventToOutput(event: { type: string; [key: string]: unknown }): Record<string, unknown> | null {
  switch (event.type) {
    case 'stream':
      return { output_type: 'stream', name: event.name, text: event.text };
    case 'display':
      return { output_type: 'display_data', data: event.data, metadata: event.metadata ?? {} };
    case 'result':
      return {
        output_type: 'execute_result',
        data: event.data,
        metadata: event.metadata ?? {},
        execution_count: event.execution_count ?? null
      };
    case 'error':
      return {
        output_type: 'error',
        ename: event.ename,
        evalue: event.evalue,
        traceback: event.traceback ?? []
      };
    default:
      return null;
  }
}

/** The site a checkpoint would go to from its own: home goes to the default remote and back. */
export function transferTarget(from: string, experiment: { home: string; default_remote: string }): string {
  return from === experiment.home ? experiment.default_remote : experiment.home;
}

/** What an executor told about a site beyond reachability: host, Slurm queues, Ray, GPUs. */
export function siteExtras(site: {
  host?: string;
  slurm?: string[] | string;
  ray?: string;
  gpus?: string | number;
}): string[] {
  const extras: string[] = [];
  if (site.host) {
    extras.push(`host ${site.host}`);
  }
  if (Array.isArray(site.slurm)) {
    const queues = site.slurm.map(line => {
      const [partition, avail, nodes, state] = line.trim().split(/\s+/);
      return `${partition} ${avail === 'up' ? '' : `(${avail}) `}${nodes}×${state}`;
    });
    extras.push(`queues: ${queues.join(', ')}`);
  } else if (site.slurm) {
    extras.push(site.slurm);
  }
  if (site.ray) {
    extras.push(`Ray ${site.ray}`);
  }
  if (site.gpus !== undefined) {
    extras.push(`GPUs ${site.gpus}`);
  }
  return extras;
}

/** What a guard's dry run depends on: the checkpoint (as published), where it goes, and the audit log's state. */
export function checkKey(ckpt: { site: string; name: string; created_ts: number }, toSite: string, borderTag: string): string {
  return JSON.stringify([ckpt.site, ckpt.name, ckpt.created_ts, toSite, borderTag]);
}
