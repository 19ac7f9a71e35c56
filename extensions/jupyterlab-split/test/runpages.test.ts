import { describe, expect, it } from '@jest/globals';

import { RunPage, RunPager } from '../src/runpages';
import { Run } from '../src/types';

function run(created: number, site = created % 2 ? 'abroad' : 'home'): Run {
  return {
    run_id: `r-${created}`, site, state: 'succeeded', mode: 'detached', name: null, created, updated: created,
    last_seq: 1, last_line: ''
  };
}

/** A run index of runs created at 1..count, answered as GET runs does: newest first, pages of `size`. */
class Index {
  constructor(count: number, readonly size = 50) {
    this.runs = Array.from({ length: count }, (_, i) => run(count - i));
  }

  page(query: string, before: number | null): RunPage {
    this.asked.push({ query, before });
    const kept = this.runs.filter(r => (before === null || r.created < before) && (!query || query === `site=${r.site}`));
    const runs = kept.slice(0, this.size);
    return { runs, next: kept.length > this.size ? runs[runs.length - 1].created : null };
  }

  pager(maxPages = 4): RunPager {
    return new RunPager(async (query, before) => this.page(query, before), () => (this.changes += 1), maxPages);
  }

  runs: Run[];
  asked: { query: string; before: number | null }[] = [];
  changes = 0;
}

const created = (runs: Run[]) => runs.map(r => r.created);
const range = (from: number, to: number) => Array.from({ length: from - to + 1 }, (_, i) => from - i);

describe('RunPager', () => {
  it('goes back page by page from the last row, a page asked by its cursor', async () => {
    const index = new Index(1000);
    const pager = index.pager();
    const first = index.page('', null);
    expect(created(pager.rows(first))).toEqual(range(1000, 951));
    await pager.older(first);
    expect(index.asked[1]).toEqual({ query: '', before: 951 });
    expect(created(pager.rows(first))).toEqual(range(1000, 901));
    expect(pager.next(first)).toBe(901);
    expect(index.changes).toBeGreaterThan(0);
  });

  it('holds at most maxPages pages: further back drops the newest shown, newer the oldest', async () => {
    const index = new Index(1000);
    const pager = index.pager(4);
    const first = index.page('', null);
    for (let i = 0; i < 5; i++) {
      await pager.older(first);
    }
    expect(pager.from).toBe(2);
    expect(created(pager.rows(first))).toEqual(range(900, 701)); // pages 2 to 5: 200 rows
    await pager.newer();
    expect(pager.from).toBe(1);
    expect(created(pager.rows(first))).toEqual(range(950, 751));
    expect(index.asked[index.asked.length - 1].before).toBe(951); // page 1 asked again by its own cursor
    await pager.newer();
    expect(pager.from).toBe(0);
    expect(created(pager.rows(first))).toEqual(range(1000, 801)); // the polled page first again
    await pager.newer(); // nothing newer than the newest
    expect(pager.from).toBe(0);
    await pager.older(first);
    await pager.older(first);
    pager.newest();
    expect(created(pager.rows(first))).toEqual(range(1000, 951));
  });

  it('ends at the oldest run', async () => {
    const index = new Index(120);
    const pager = index.pager();
    const first = index.page('', null);
    await pager.older(first);
    await pager.older(first);
    expect(created(pager.rows(first))).toEqual(range(120, 1));
    expect(pager.next(first)).toBeNull();
    const asked = index.asked.length;
    await pager.older(first);
    expect(index.asked.length).toBe(asked);
  });

  it('asks the older pages again from the first when it changed: no run falls between them', async () => {
    const index = new Index(200);
    const pager = index.pager();
    let first = index.page('', null);
    await pager.older(first);
    index.runs.unshift(run(201)); // a new run: the first page's last run moves to the second page
    first = index.page('', null);
    await pager.refresh(first);
    expect(created(pager.rows(first))).toEqual(range(201, 102));
  });

  it('pages the filters asked, and drops a page of a query no longer asked', async () => {
    const index = new Index(400);
    const pager = index.pager();
    pager.setQuery('site=home');
    const first = index.page('site=home', null);
    let answer: (page: RunPage) => void = () => undefined;
    const slow = new RunPager(
      () => new Promise<RunPage>(resolve => (answer = resolve)),
      () => undefined
    );
    await pager.older(first);
    expect(pager.rows(first).every(r => r.site === 'home')).toBe(true);
    expect(created(pager.rows(first))).toEqual(range(400, 202).filter(c => c % 2 === 0));

    slow.setQuery('site=home');
    const going = slow.older(first);
    expect(slow.busy).toBe(true);
    slow.setQuery('site=abroad'); // the filter changed while the page was on its way
    answer(index.page('site=home', 302));
    await going;
    expect(slow.busy).toBe(false);
    expect(slow.rows({ runs: [], next: null })).toEqual([]);
  });

  it('says why a page did not come, and keeps what shows', async () => {
    const pager = new RunPager(() => Promise.reject(new Error('502 site not reachable')));
    const first = { runs: [run(2)], next: 2 };
    await pager.older(first);
    expect(pager.error).toBe('older runs could not be read: 502 site not reachable');
    expect(pager.rows(first)).toEqual(first.runs);
    expect(pager.busy).toBe(false);
  });
});
