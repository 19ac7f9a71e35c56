// A fake of the server as SplitModel sees it, for the model's and the border pane's tests.
import { afterEach } from '@jest/globals';

import { ModelSource, SplitModel } from '../src/model';
import { Border, Leases, Run, SiteLease } from '../src/types';

export function run(created: number, site = 'abroad'): Run {
  return {
    run_id: `r-${created}`, site, state: 'succeeded', mode: 'detached', name: null, created, updated: created,
    last_seq: 1, last_line: ''
  };
}

function lease(site: string, runs: SiteLease['runs']): SiteLease {
  return {
    site, configured: true, hours: 12.5, month_hours: 2, left: 87.5, cost: 31.25, month_cost: 5, currency: 'USD',
    days_left: 20, runs_counted: runs.length, runs,
    lease: { gpu_hours: 100, monthly: false, price_per_gpu_hour: 2.5, currency: 'USD', ends: null }
  };
}

export const BORDER: Border = {
  policy: {
    home: { site: 'home', jurisdiction: 'CN' }, sites: [], resident: [], allow_export: [], metrics_abroad: null,
    scan: { enabled: false, depth: 0 }, source: 'jupyter_split.toml', audit_log: 'audit.jsonl'
  } as unknown as Border['policy'],
  entries: [],
  total: 9,
  counts: { refused: 7, allowed: 2 }, // of the filtered page: the last seven days
  today: { refused: 3, declassified: 1 }
};

/**
 * The server as the model sees it (GETs answered with `{body, changed}`): an answer per path, or per path
 * before its query; `changed` is what each GET reports (a 304 reports false), and every path asked is kept.
 */
export class FakeServer implements ModelSource {
  answers: Record<string, unknown> = {
    runs: { runs: [run(3), run(2)], next: 2 },
    sites: { experiment: { name: 'x', home: 'home', default_remote: 'abroad' }, sites: [] },
    lease: {
      sites: [
        lease('abroad', [
          { run_id: 'r-3', state: 'succeeded', cards: 2, hours: 1.5, cost: 3.75, source: 'index' },
          { run_id: 'r-2', state: 'succeeded', cards: 0, hours: 0, cost: 0, source: 'default' }
        ]),
        lease('home', [])
      ],
      experiment: { name: 'x', hours: 12.5, cost: { USD: 31.25 } }
    } as Leases,
    checkpoints: { checkpoints: [], errors: {} },
    wandb: { runs: [] },
    accelerators: { interval: 10, sites: [] },
    border: BORDER,
    sessions: { sites: [] },
    transfers: { transfers: [] }
  };
  changed = true;
  asked: string[] = [];

  async get<T>(path: string): Promise<{ body: T; changed: boolean }> {
    this.asked.push(path);
    const body = this.answers[path] ?? this.answers[path.split('?')[0]];
    return { body: body as T, changed: this.changed };
  }

  async states() {
    return { states: [{ name: 'succeeded', terminal: true, style: 'ok', meaning: 'done' }] };
  }
}

const models: SplitModel[] = [];

/** A model over `server` that never polls by itself (Poll.NEVER: no timer left behind): the tests ask with `refresh`. */
export function modelOf(server: ModelSource): SplitModel {
  const model = new SplitModel(Infinity, () => true, server);
  models.push(model);
  return model;
}

afterEach(() => {
  models.splice(0).forEach(m => m.dispose());
});

