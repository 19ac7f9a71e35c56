// Typed calls to the jupyter_split server extension (jupyter_split/server/routes.py).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { RunStateInfo } from './logic';
import { AuditEntry, EventsAnswer, Run, Sessions, TransferCheck, TransferView } from './types';

export * from './types';

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
  const response = await send(path, init);
  return (await readBody(response)) as T;
}

async function send(path: string, init: RequestInit): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'jupyter-split', path);
  return ServerConnection.makeRequest(url, init, settings);
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new SplitAPIError(body.message || response.statusText, response.status);
  }
  return body;
}

/**
 * The polled GETs: each sends the ETag of its last answer as If-None-Match, and a 304 (nothing
 * changed) gives back that answer with `changed: false`, so the caller keeps its state untouched.
 */
export class Revalidator {
  async get<T>(path: string): Promise<{ body: T; changed: boolean }> {
    const kept = this._kept.get(path);
    const headers: Record<string, string> = kept ? { 'If-None-Match': kept.etag } : {};
    const response = await send(path, { headers });
    if (response.status === 304 && kept) {
      return { body: kept.body as T, changed: false };
    }
    const body = (await readBody(response)) as T;
    const etag = response.headers.get('ETag');
    if (etag) {
      this._kept.set(path, { etag, body });
    } else {
      this._kept.delete(path);
    }
    return { body, changed: true };
  }

  /** Forget every kept answer: the next poll of each path gets a full one. */
  clear(): void {
    this._kept.clear();
  }

  private _kept = new Map<string, { etag: string; body: unknown }>();
}

export const api = {
  session: (site: string, action: 'stop' | 'restart') =>
    requestAPI<{ site: string; stopped: boolean; cancelled: { run_id: string; state: string }[]; message: string }>(
      `sessions/${encodeURIComponent(site)}/${action}`,
      { method: 'POST' }
    ),
  check: (site: string, name: string, toSite: string) =>
    requestAPI<TransferCheck>('checkpoints/check', {
      method: 'POST',
      body: JSON.stringify({ site, name, to_site: toSite })
    }),
  declassify: (item: string, reason: string) =>
    requestAPI<{ ok: boolean; entry: AuditEntry }>('border/declassify', {
      method: 'POST',
      body: JSON.stringify({ item, reason, confirm: true })
    }),
  states: () => requestAPI<{ states: RunStateInfo[] }>('states'),
  /** A page of the runs `query` (`runQuery`) finds, created before `before` (the last `created` of the page before). */
  runs: (query: string, before: number) =>
    requestAPI<{ runs: Run[]; next: number | null }>(`runs?${query ? `${query}&` : ''}before=${encodeURIComponent(String(before))}`),
  events: (runId: string, after: number) =>
    requestAPI<EventsAnswer>(`runs/${encodeURIComponent(runId)}/events?after=${after}`),
  /** The log's last records holding as many lines as the panel's window keeps, read back from its end. */
  tail: (runId: string) => requestAPI<EventsAnswer>(`runs/${encodeURIComponent(runId)}/events?tail=window`),
  cancel: (runId: string) =>
    requestAPI<{ run_id: string; state: string }>(`runs/${encodeURIComponent(runId)}/cancel`, {
      method: 'POST'
    }),
  /** A KeyboardInterrupt in the run's cell: it ends `interrupted`, and its session lives on. */
  interrupt: (runId: string) =>
    requestAPI<{ run_id: string; state: string }>(`runs/${encodeURIComponent(runId)}/interrupt`, {
      method: 'POST'
    }),
  /** The run as its log's end says (state, site, mode), with its last record. */
  run: (runId: string) => requestAPI<EventsAnswer>(`runs/${encodeURIComponent(runId)}/events?tail=1`).then(a => a.run),
  /** One site's session as it is now: what it executes and what waits on it. */
  sessionOf: (site: string) =>
    requestAPI<Sessions>(`sessions?site=${encodeURIComponent(site)}`).then(answer => answer.sites[0] ?? null),
  startTransfer: (site: string, name: string, toSite: string) =>
    requestAPI<TransferView>('transfers', {
      method: 'POST',
      body: JSON.stringify({ site, name, to_site: toSite })
    }),
  cancelTransfer: (id: string) => requestAPI<TransferView>(`transfers/${encodeURIComponent(id)}/cancel`, { method: 'POST' })
};
