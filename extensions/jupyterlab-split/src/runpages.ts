// The runs beyond the newest page: pages asked for by `before` (the `created` of the last run of the page
// before), a bounded window of them in the pane. No DOM.
import { Run } from './types';

/** One answer of GET runs: its runs, and the `before` of the page after it (null: no older run). */
export interface RunPage {
  runs: Run[];
  next: number | null;
}

/** Runs in a page: what GET runs answers when it is given no `limit`. */
export const RUNS_PAGE = 50;

/** Pages the pane holds at once, the newest (polled) one included: 4 pages of 50 are 200 rows at most. */
export const MAX_PAGES = 4;

/**
 * Which pages of the run list the pane shows. Page 0 is the newest, the one the model polls (its ETag
 * revalidates it); older pages are asked for once each as the user goes back ("older"), then again only
 * when the first page changed while they show, so an active run among them moves on and a run that came
 * first pushes its neighbours on. At most `maxPages` pages show: going further back drops the newest
 * shown, going forward ("newer") the oldest, so the DOM holds a bounded number of rows at any index size.
 * Each page is asked by its cursor, so it costs the server what the first one does however far back it lies.
 */
export class RunPager {
  constructor(
    private readonly _fetch: (query: string, before: number) => Promise<RunPage>,
    private readonly _changed: () => void = () => undefined,
    readonly maxPages = MAX_PAGES
  ) {}

  /** The number of the first page shown (0: the newest). */
  get from(): number {
    return this._from;
  }

  /** Whether a page the user asked for is on its way. */
  get busy(): boolean {
    return this._asking > 0;
  }

  /** Why the last page asked for did not come; null once one came. */
  error: string | null = null;

  /** The filter query (`runQuery`) the pages are of. */
  get query(): string {
    return this._query;
  }

  /** The runs shown, newest first: the first page's (when it shows) then each older page's. */
  rows(first: RunPage): Run[] {
    return [...(this._from === 0 ? first.runs : []), ...this._pages.flatMap(p => p.runs)];
  }

  /** The `before` of the page after the last one shown; null where no run is older. */
  next(first: RunPage): number | null {
    const last = this._pages.length ? this._pages[this._pages.length - 1] : this._from === 0 ? first : null;
    return last ? last.next : null;
  }

  /** Show the page after the last one shown, dropping the first one shown past `maxPages`. */
  async older(first: RunPage): Promise<void> {
    const before = this.next(first);
    if (before === null || this.busy) {
      return;
    }
    const page = await this._ask(before);
    if (page === null) {
      return;
    }
    this._cursors[this._from + this._shown()] = before;
    this._pages.push(page);
    if (this._shown() > this.maxPages) {
      if (this._from > 0) {
        this._pages.shift();
      }
      this._from += 1;
    }
    this._changed();
  }

  /** Show the page before the first one shown (the newest: the polled one), dropping the last one past `maxPages`. */
  async newer(): Promise<void> {
    if (this._from === 0 || this.busy) {
      return;
    }
    const target = this._from - 1;
    if (target > 0) {
      const page = await this._ask(this._cursors[target]);
      if (page === null) {
        return;
      }
      this._pages.unshift(page);
    }
    this._from = target;
    if (this._shown() > this.maxPages) {
      this._pages.pop();
    }
    this._changed();
  }

  /** Back to the newest page alone. */
  newest(): void {
    this._gen += 1; // an answer on its way is for what no longer shows
    const had = this._from !== 0 || this._pages.length > 0;
    this._from = 0;
    this._pages = [];
    if (had) {
      this._changed();
    }
  }

  /** The pages of another filter query: back to its newest page. */
  setQuery(query: string): void {
    if (query !== this._query) {
      this._query = query;
      this._cursors = [];
      this.newest();
    }
  }

  /**
   * The first page changed (a run came, or changed): ask the older pages shown again, each from the one
   * before it, so none holds a stale row and no run falls between the first page and the next.
   */
  async refresh(first: RunPage): Promise<void> {
    if (!this._pages.length || this.busy) {
      return; // a page on its way brings what it asked; the next change asks them all again
    }
    const gen = ++this._gen;
    const pages: RunPage[] = [];
    let before = this._from === 0 ? first.next : this._cursors[this._from];
    const number = this._from === 0 ? 1 : this._from;
    for (let i = 0; i < this._pages.length && before !== null; i++) {
      let page: RunPage;
      try {
        page = await this._fetch(this._query, before);
      } catch {
        return; // what shows stays; the next change asks again
      }
      if (gen !== this._gen) {
        return; // the user moved meanwhile (or another refresh began): theirs is what shows
      }
      this._cursors[number + i] = before;
      pages.push(page);
      before = page.next;
    }
    this._pages = pages;
    if (this._from > 0 && !pages.length) {
      this.newest(); // the runs shown are gone (pruned): the newest show instead
      return;
    }
    this._changed();
  }

  /** One page from `before`; null where the pages changed meanwhile (another query, newest). */
  private async _ask(before: number): Promise<RunPage | null> {
    const gen = ++this._gen;
    this._asking += 1;
    this._changed();
    try {
      const page = await this._fetch(this._query, before);
      this.error = null;
      return gen === this._gen ? page : null;
    } catch (reason) {
      this.error = `older runs could not be read: ${reason instanceof Error ? reason.message : String(reason)}`;
      return null;
    } finally {
      this._asking -= 1;
      this._changed(); // drawn again with or without the page: the button says it is no longer loading
    }
  }

  /** How many pages show. */
  private _shown(): number {
    return this._pages.length + (this._from === 0 ? 1 : 0);
  }

  private _query = '';
  private _from = 0;
  private _pages: RunPage[] = [];
  /** The `before` each page was asked with, by its number (page 0 has none). */
  private _cursors: number[] = [];
  private _gen = 0;
  private _asking = 0;
}
