import { describe, expect, it } from '@jest/globals';

import {
  canDeclassify,
  choices,
  entryText,
  filterRuns,
  labelText,
  latestTransfer,
  refusalSummary,
  runQuery,
  siteUrls,
  baseName,
  transferText
} from '../src/listlogic';
import { checkKey } from '../src/logic';
import {
  acceleratorText,
  cardFigures,
  cardGroups,
  experimentUseText,
  leaseText,
  leaseTone,
  nodeText,
  rayText,
  runCostText,
  sessionRunText,
  sessionRunTitle,
  sessionText,
  siteBadges,
  vendorsFound
} from '../src/sitelogic';
import { AuditEntry, Card, Node, Session, SiteLease, SiteReading, TransferView } from '../src/types';

// As GET /jupyter-split/accelerators answers them (jupyter_split/accelerators/base.py Card), in part.
function card(over: Partial<Card>): Card {
  return {
    vendor: 'nvidia', model: 'NVIDIA H100 80GB HBM3', index: 0, utilisation: 7, memory_used: 1024, memory_total: 81559,
    memory_percent: 1.3, temperature: 40, power: 80.5, uuid: null, run: null, tool: 'nvidia-smi', ...over
  };
}

const node: Node = {
  node: 'gpu01', cpu: { percent: 51.2, count: 2 }, memory: { total: 24105, used: 800 }, tools: ['nvidia-smi', 'hy-smi'], errors: [],
  cards: [
    card({ index: 0, run: 'r-1' }),
    card({ index: 1, utilisation: 17 }),
    card({ vendor: 'hygon', model: 'Hygon DCU', tool: 'hy-smi', memory_used: null, memory_total: null, memory_percent: 3, power: null })
  ]
};
const reading: SiteReading = { site: 'sg', executor: 'ssh', accelerator: 'auto', time: 0, age: 0, nodes: [node], errors: [] };

function lease(over: Partial<SiteLease>, terms: Partial<SiteLease['lease']> = {}): SiteLease {
  return {
    site: 'sg', configured: true, hours: 12.5, month_hours: 2, left: 87.5, cost: 31.25, month_cost: 5, currency: 'USD',
    days_left: 20, runs_counted: 3, runs: [], ...over,
    lease: { gpu_hours: 100, monthly: false, price_per_gpu_hour: 2.5, currency: 'USD', ends: '2026-12-26', ...terms }
  };
}

describe('siteBadges', () => {
  const experiment = { name: 'x', home: 'home', default_remote: 'sg' };

  it('does not repeat the name of the home site named home', () => {
    const badges = siteBadges({ name: 'home', jurisdiction: 'CN', home: true }, experiment);
    expect(badges.map(b => b.text)).toEqual(['CN']);
    expect(badges[0].title).toBe('jurisdiction CN, the home site');
  });

  it('marks a home site of another name, and the site %%remote_gpu goes to', () => {
    expect(siteBadges({ name: 'beijing', jurisdiction: 'CN', home: true }, experiment).map(b => b.text)).toEqual(['home', 'CN']);
    expect(siteBadges({ name: 'sg', jurisdiction: 'SG', home: false }, experiment).map(b => b.kind)).toEqual(['remote', 'jurisdiction']);
  });
});

describe('accelerators in words', () => {
  it('says what auto found, or nothing yet', () => {
    expect(vendorsFound(reading)).toEqual(['nvidia', 'hygon']);
    expect(acceleratorText('auto', reading)).toBe('auto: nvidia, hygon');
    expect(acceleratorText('auto', undefined)).toBe('auto');
    expect(acceleratorText('npu', reading)).toBe('npu');
    expect(acceleratorText('auto', { ...reading, nodes: [{ ...node, cards: [] }] })).toBe('auto: no accelerator found, cpu');
  });

  it('groups cards by model with their mean use and how many a run holds', () => {
    expect(cardGroups(node).map(g => g.text)).toEqual(['2 × NVIDIA H100 80GB HBM3 · 12% busy · 1 held', '1 × Hygon DCU · 7% busy']);
  });

  it('gives only the figures a tool gives', () => {
    expect(cardFigures(node.cards[0])).toEqual({ label: '#0 NVIDIA H100 80GB HBM3', figures: ['7%', '1.0/79.6 GiB', '40°C', '81 W'] });
    expect(cardFigures(node.cards[2]).figures).toEqual(['7%', 'memory 3%', '40°C']);
    expect(cardFigures(card({ utilisation: null, temperature: null, power: null, memory_used: null, memory_percent: null })).figures).toEqual([]);
  });

  it('describes the host', () => {
    expect(nodeText(node)).toBe('gpu01 · CPU 51% of 2 · memory 0.8/23.5 GiB');
    expect(nodeText({ ...node, node: null, cpu: {}, memory: {} })).toBe('unknown host');
    expect(nodeText({ ...node, role: 'login', cpu: {}, memory: {} })).toBe('gpu01 (login node)');
    expect(nodeText({ ...node, role: 'compute', job: '42', run: 'r-1', cpu: {}, memory: {} })).toBe('gpu01 (job 42, run r-1)');
  });
});

describe('leaseText', () => {
  it('says what is left, used, spent and when it ends', () => {
    expect(leaseText(lease({}))).toBe('lease: 87.5 GPU-h left of 100 GPU-h · 12.5 GPU-h used (2 GPU-h this month) · 31.25 USD · ends in 20 d');
  });

  it('counts a monthly lease by the month', () => {
    expect(leaseText(lease({}, { monthly: true }))).toBe('lease: 87.5 GPU-h left of 100 GPU-h this month · 2 GPU-h used · 5.00 USD · ends in 20 d');
  });

  it('says an overrun and an ended lease', () => {
    expect(leaseText(lease({ left: -3, days_left: -2 }))).toContain('0 GPU-h left of 100 GPU-h · 3 GPU-h over');
    expect(leaseText(lease({ left: -3, days_left: -2 }))).toContain('ended 2 d ago');
  });

  it('says when no lease is configured', () => {
    const none = lease({ configured: false, left: null, cost: null, days_left: null }, { gpu_hours: null, price_per_gpu_hour: null });
    expect(leaseText(none)).toBe('lease: no lease configured · 12.5 GPU-h used (2 GPU-h this month)');
    expect(leaseText(undefined)).toBe('');
  });

  it('has a tone for a lease nearly or wholly spent', () => {
    expect(leaseTone(lease({}))).toBe('ok');
    expect(leaseTone(lease({ left: 5 }))).toBe('warn');
    expect(leaseTone(lease({ left: 0 }))).toBe('bad');
    expect(leaseTone(lease({ left: null }))).toBeNull();
  });
});

describe('runs filter', () => {
  const runs = [
    { run_id: 'x-home-1', site: 'home', state: 'succeeded', name: 'tune' },
    { run_id: 'x-sg-2', site: 'sg', state: 'failed', name: null },
    { run_id: 'x-sg-3', site: 'sg', state: 'running', name: 'Pretrain' }
  ];

  it('filters by site, state and a part of the name or id, case aside', () => {
    expect(filterRuns(runs, { text: '', site: '', state: '', notebook: '' })).toHaveLength(3);
    expect(filterRuns(runs, { text: '', site: 'sg', state: '', notebook: '' }).map(r => r.run_id)).toEqual(['x-sg-2', 'x-sg-3']);
    expect(filterRuns(runs, { text: 'pretrain', site: '', state: '', notebook: '' }).map(r => r.run_id)).toEqual(['x-sg-3']);
    expect(filterRuns(runs, { text: ' SG-2 ', site: 'sg', state: 'failed', notebook: '' }).map(r => r.run_id)).toEqual(['x-sg-2']);
    expect(filterRuns(runs, { text: '', site: 'home', state: 'failed', notebook: '' })).toEqual([]);
  });

  it('offers each value once, sorted', () => {
    expect(choices(runs, r => r.site)).toEqual(['home', 'sg']);
  });

  it('keeps the runs of one notebook', () => {
    const from = [...runs.map(r => ({ ...r, notebook: null })), { ...runs[0], run_id: 'x-home-4', notebook: 'work/a b.ipynb' }];
    const filter = { text: '', site: '', state: '', notebook: 'work/a b.ipynb' };
    expect(filterRuns(from, filter).map(r => r.run_id)).toEqual(['x-home-4']);
  });

  it('asks the server for the filters set, and for nothing when none is', () => {
    expect(runQuery({ text: '  ', site: '', state: '', notebook: '' })).toBe('');
    expect(runQuery({ text: ' Pre&train ', site: 'sg', state: 'failed', notebook: 'work/a b.ipynb' })).toBe(
      'site=sg&state=failed&q=Pre%26train&notebook=work%2Fa+b.ipynb'
    );
  });
});

describe('audit entries', () => {
  const refused: AuditEntry = {
    time: '2026-12-06T10:00:00+00:00', ts: 1, user: 'alice', kind: 'copy', item: 'file:///data/ckpt/tuned', src: null,
    dest: 'file:///sg/ckpt/tuned', bytes: 10, from_site: 'home', to_site: 'sg', to_jurisdiction: 'SG', labels: ['CN'],
    decision: 'refused', reason: 'label CN must stay in CN', run_id: null
  };

  it('says what, where and when', () => {
    expect(entryText(refused)).toEqual({ what: 'file:///data/ckpt/tuned', where: 'home → sg · copy · CN', when: '2026-12-06 10:00:00 UTC' });
    expect(labelText({ CN: 'file:///data/pii/a.csv' })).toBe('CN');
  });

  it('offers declassify on a refusal that names its item only', () => {
    expect(canDeclassify(refused)).toBe(true);
    expect(canDeclassify({ ...refused, decision: 'allowed' })).toBe(false);
    expect(canDeclassify({ ...refused, item: null })).toBe(false);
  });
});

describe('checkKey', () => {
  it('changes with the checkpoint, the destination and the audit log', () => {
    const ckpt = { site: 'home', name: 'c', created_ts: 1 };
    const key = checkKey(ckpt, 'sg', 't1');
    expect(checkKey({ ...ckpt }, 'sg', 't1')).toBe(key);
    expect(new Set([checkKey({ ...ckpt, created_ts: 2 }, 'sg', 't1'), checkKey(ckpt, 'x', 't1'), checkKey(ckpt, 'sg', 't2'), key]).size).toBe(4);
  });
});

describe('refusalSummary', () => {
  it('names the labels that keep a checkpoint home, else the first line of the reason', () => {
    expect(refusalSummary({ reasons: ['long\nstory'], message: '', labels: ['CN'] }, 'sg')).toBe('not to sg: residency label CN must stay');
    expect(refusalSummary({ reasons: ['a phone number found\nin x.csv'], message: '', labels: [] }, 'sg')).toBe('not to sg: a phone number found');
    expect(refusalSummary({ reasons: [], message: '', labels: [] }, 'sg')).toBe('not to sg: the guard refuses');
  });
});

describe('siteUrls', () => {
  const sites = [{ name: 'home', storage: 'file:///data/ckpt/' }, { name: 'sg', storage: 's3://sg-bucket/ckpt' }, { name: 'x', storage: null }];

  it('writes a path under a site\'s storage as SITE:path, anywhere in a text', () => {
    expect(siteUrls('refused to copy file:///data/ckpt/tuned to s3://sg-bucket/ckpt/tuned', sites)).toBe('refused to copy home:tuned to sg:tuned');
    expect(siteUrls('file:///data/other/x', sites)).toBe('file:///data/other/x');
    expect(baseName('/etc/split/jupyter_split.toml')).toBe('jupyter_split.toml');
    expect(baseName('built-in default')).toBe('built-in default');
  });
});

describe('transfers', () => {
  const base: TransferView = {
    id: 'a', site: 'sg', name: 'ckpts/big', to_site: 'home', state: 'running', message: '', started: 0, ended: null,
    cancelling: false, bytes_total: 6_000_000, bytes_done: 1_500_000, rate: 2_000_000, eta_s: 2.25,
    files_total: 1, files_done: 0
  };

  it('says bytes, rate and time left while it runs, bytes once it ended', () => {
    expect(transferText(base)).toBe('1.5 MB of 6.0 MB · 2.0 MB/s · 3s left');
    expect(transferText({ ...base, cancelling: true })).toBe('1.5 MB of 6.0 MB · 2.0 MB/s · cancelling...');
    expect(transferText({ ...base, eta_s: null })).toBe('1.5 MB of 6.0 MB · 2.0 MB/s');
    expect(transferText({ ...base, state: 'succeeded', bytes_done: 6_000_000 })).toBe('6.0 MB of 6.0 MB');
    expect(transferText({ ...base, state: 'succeeded', bytes_done: 0, bytes_total: 0 })).toBe('nothing left to send');
    expect(transferText({ ...base, files_total: 20, files_done: 5 })).toBe(
      '1.5 MB of 6.0 MB · 5 of 20 files · 2.0 MB/s · 3s left'
    );
  });

  it('finds the newest copy of a checkpoint from its site', () => {
    const list = [{ ...base, id: 'new' }, { ...base, id: 'old' }, { ...base, id: 'other', site: 'home' }];
    expect(latestTransfer(list, 'sg', 'ckpts/big')?.id).toBe('new');
    expect(latestTransfer(list, 'home', 'ckpts/x')).toBeUndefined();
  });
});

describe('sessions', () => {
  const session: Session = {
    site: 'home', executor: 'local', supported: true, state: 'busy', session: 's1', pid: 42, started: 1000,
    memory: 52_000_000, running: null, queue: [], errors: []
  };

  it('says pid, uptime and memory where known', () => {
    expect(sessionText(session, 1062)).toBe('pid 42 · up 1m 02s · 52 MB');
    expect(sessionText({ ...session, pid: null, started: null, memory: null }, 0)).toBe('');
  });

  it('names a cell by its run, its count and its first line', () => {
    const run = { run_id: 'r-1', name: null, state: 'queued', created: 0, count: 3, cell: "print('x')" };
    expect(sessionRunText(run)).toBe("r-1 [3]: print('x')");
    expect(sessionRunText({ ...run, name: 'tune', count: null, cell: '' })).toBe('tune');
  });

  it('says the notebook a cell came from by its name, in full on hover', () => {
    const run = { run_id: 'r-1', name: null, state: 'queued', created: 0, count: 3, cell: "print('x')", notebook: 'work/b/train.ipynb' };
    expect(sessionRunText(run)).toBe("r-1 [3] from train.ipynb: print('x')");
    expect(sessionRunTitle(run)).toBe('r-1, from work/b/train.ipynb');
    expect(sessionRunTitle({ ...run, notebook: null })).toBe('r-1');
  });
});

describe('rayText', () => {
  it('says each resource used of total, sorted, and how many nodes are alive', () => {
    const ray = {
      nodes: [{ node: 'a', state: 'ALIVE' }, { node: 'b', state: 'DEAD' }],
      resources: { GPU: { used: 1, total: 4 }, CPU: { used: 0.5, total: 2 } },
      errors: []
    };
    expect(rayText(ray)).toBe('CPU 0.5/2 · GPU 1/4 · 1 of 2 nodes alive');
    expect(rayText({ ...ray, nodes: [ray.nodes[0]], resources: { CPU: { used: null, total: 2 } } })).toBe('CPU 2 · 1 of 1 node alive');
  });
});

describe('runCostText', () => {
  it('says the cards a run held, its accelerator-hours and its cost where a price is set', () => {
    expect(runCostText({ cards: 2, hours: 0.5, cost: 1.25 }, 'USD')).toBe('2 cards · 0.5 GPU-h · 1.25 USD');
    expect(runCostText({ cards: 1, hours: 12.345, cost: null }, null)).toBe('1 card · 12.3 GPU-h');
  });
});

describe('experimentUseText', () => {
  it('says the hours and each currency\'s cost', () => {
    expect(experimentUseText({ hours: 12.345, cost: { USD: 31.25, EUR: 2 } })).toBe('12.3 GPU-h · 31.25 USD · 2.00 EUR');
    expect(experimentUseText({ hours: 0, cost: {} })).toBe('0 GPU-h');
  });
});
