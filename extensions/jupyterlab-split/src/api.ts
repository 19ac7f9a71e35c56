// Typed calls to the jupyter_split server extension (jupyter_split/server/routes.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { RunStateInfo } from './logic';

export interface Site {
  name: string;
  executor: string;
  jurisdiction: string;
  accelerator: string;
  storage: string | null;
  home: boolean;
  reachable: boolean;
  latency_ms: number | null;
  error?: string;
  host?: string;
  /** Slurm sites: `sinfo` lines (partition, availability, nodes, state), or why sinfo failed. */
  slurm?: string[] | string;
  /** Ray sites: the cluster's Ray version. */
  ray?: string;
  gpus?: string | number;
}

export interface Experiment {
  name: string;
  home: string;
  default_remote: string;
}

export interface Run {
  run_id: string;
  site: string;
  state: string;
  mode: string;
  name: string | null;
  created: number;
  updated: number;
  /** The run's state and last output line as its event log says, up to record `last_seq`. */
  last_seq: number;
  last_line: string;
}

export interface RunEvent {
  seq: number;
  type: string;
  [key: string]: unknown;
}

export interface Checkpoint {
  site: string;
  url: string;
  name: string;
  bytes: number;
  files: number;
  residency: string | null;
  lineage: string[];
  run_id: string | null;
  created_ts: number;
}

export interface WandbRun {
  site: string;
  id: string;
  name: string;
  job_type: string;
  mode: string;
  url: string | null;
  state: string;
  split_run: string;
  metrics: Record<string, unknown>;
}

export interface TransferReport {
  ok: boolean;
  message: string;
  files_sent: number;
  bytes_sent: number;
  files_skipped: number;
  published: boolean;
}

/** Thrown for any non-2xx answer; `message` is the server's own explanation. */
export class SplitAPIError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'jupyter-split', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new SplitAPIError(body.message || response.statusText, response.status);
  }
  return body as T;
}

export const api = {
  states: () => requestAPI<{ states: RunStateInfo[] }>('states'),
  sites: () => requestAPI<{ experiment: Experiment; sites: Site[] }>('sites'),
  runs: () => requestAPI<{ runs: Run[] }>('runs'),
  events: (runId: string, after: number) =>
    requestAPI<{ run: Run; events: RunEvent[] }>(
      `runs/${encodeURIComponent(runId)}/events?after=${after}`
    ),
  cancel: (runId: string) =>
    requestAPI<{ run_id: string; state: string }>(`runs/${encodeURIComponent(runId)}/cancel`, {
      method: 'POST'
    }),
  checkpoints: () => requestAPI<{ checkpoints: Checkpoint[]; errors: Record<string, string> }>('checkpoints'),
  transfer: (site: string, name: string, toSite: string) =>
    requestAPI<TransferReport>('checkpoints/transfer', {
      method: 'POST',
      body: JSON.stringify({ site, name, to_site: toSite })
    }),
  wandb: () => requestAPI<{ runs: WandbRun[] }>('wandb')
};
