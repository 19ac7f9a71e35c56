import { describe, expect, it } from '@jest/globals';

import { FakeServer, modelOf, run } from './fakeserver';

describe('SplitModel', () => {
  it("keeps each site's lease by name and says what a run used of it", async () => {
    const model = modelOf(new FakeServer());
    await model.refresh();
    expect(Array.from(model.leases.keys())).toEqual(['abroad', 'home']);
    expect(model.experimentUse).toEqual({ name: 'x', hours: 12.5, cost: { USD: 31.25 } });
    expect(model.runCost({ run_id: 'r-3', site: 'abroad' })).toBe('2 cards · 1.5 GPU-h · 3.75 USD');
    // a run on no card, one the lease does not list, a site without a lease: nothing to say
    expect(model.runCost({ run_id: 'r-2', site: 'abroad' })).toBe('');
    expect(model.runCost({ run_id: 'r-9', site: 'abroad' })).toBe('');
    expect(model.runCost({ run_id: 'r-3', site: 'nowhere' })).toBe('');
  });

  it('keeps the newest page of runs with its cursor, and the filtered page apart', async () => {
    const server = new FakeServer();
    server.answers['runs?site=home'] = { runs: [run(1, 'home')], next: null };
    const model = modelOf(server);
    await model.refresh();
    expect(model.runs.map(r => r.run_id)).toEqual(['r-3', 'r-2']);
    expect(model.firstPage()).toEqual({ runs: model.runs, next: 2 });
    model.setRunQuery('site=home');
    await model.refresh();
    expect(server.asked).toContain('runs?site=home');
    expect(model.firstPage()).toEqual({ runs: [run(1, 'home')], next: null });
    expect(model.runs.map(r => r.run_id)).toEqual(['r-3', 'r-2']); // the status bar's runs stay the newest
    model.setRunQuery('');
    expect(model.firstPage().runs).toBe(model.runs);
  });

  it('tells the panes of a change only when an answer changed', async () => {
    const server = new FakeServer();
    const model = modelOf(server);
    let told = 0;
    model.changed.connect(() => (told += 1));
    await model.refresh();
    expect(told).toBeGreaterThan(0);
    server.changed = false; // every GET a 304: what the model keeps stands
    told = 0;
    await model.refresh();
    expect(told).toBe(0);
    expect(model.leases.get('abroad')?.hours).toBe(12.5);
  });
});
