// The runs pane: filters by site, state, notebook and name, answered by the server over the whole run
// index; one row per run, focusable, with its actions.
import { Clipboard } from '@jupyterlab/apputils';
import { addBelowIcon, copyIcon, stopIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';

import { Run } from './api';
import { CommandIDs } from './commandids';
import { button, el, setOptions, stateBadge } from './dom';
import { choices, filterRuns, RunFilter, runQuery } from './listlogic';
import { runElapsed } from './logic';
import { SplitModel } from './model';
import { list, listRow, Pane } from './pane';
import { RUNS_PAGE } from './runpages';

/** The runs pane: filters (name or id, site, state, notebook) over every run, a focusable row per run. */
export class RunsPane extends Pane {
  constructor(
    private readonly _model: SplitModel,
    private readonly _commands: CommandRegistry
  ) {
    const text = el('input', {
      class: 'jp-split-filter',
      type: 'search',
      placeholder: 'name or run id',
      'aria-label': 'Show runs whose name or id holds'
    }) as HTMLInputElement;
    const site = el('select', { class: 'jp-split-filter', 'aria-label': 'Show runs of site' }) as HTMLSelectElement;
    const state = el('select', { class: 'jp-split-filter', 'aria-label': 'Show runs in state' }) as HTMLSelectElement;
    const notebook = el('select', {
      class: 'jp-split-filter',
      'aria-label': 'Show runs started from notebook'
    }) as HTMLSelectElement;
    super(
      'runs',
      'Runs',
      el('div', { class: 'jp-split-filters', role: 'search', 'aria-label': 'Filter runs' }, text, site, state, notebook)
    );
    this._text = text;
    this._site = site;
    this._state = state;
    this._notebook = notebook;
    for (const control of [text, site, state, notebook]) {
      control.addEventListener('input', () => this._filtered(control === text));
    }
  }

  get filter(): RunFilter {
    return { text: this._text.value, site: this._site.value, state: this._state.value, notebook: this._notebook.value };
  }

  /** Show what the filters keep of the runs at hand now, and ask the server for every run they find
   * (typing waits for a pause: one request per word, not per key). */
  private _filtered(typing: boolean): void {
    this.update();
    window.clearTimeout(this._typing);
    this._typing = window.setTimeout(() => this._model.setRunQuery(runQuery(this.filter)), typing ? 300 : 0);
  }

  protected render(): { items: (HTMLElement | null)[]; count: number | null } {
    const m = this._model;
    setOptions(this._site, 'every site', m.sites.length ? m.sites.map(s => s.name) : choices(m.runs, r => r.site));
    setOptions(this._state, 'any state', m.runStates.names.length ? m.runStates.names : choices(m.runs, r => r.state));
    const found = m.filteredRuns;
    const notebooks = [...m.runs, ...(found ?? [])].filter(r => r.notebook).map(r => r.notebook as string);
    setOptions(this._notebook, 'any notebook', choices(notebooks, n => n));
    if (!m.runs.length) {
      return { items: [el('div', { class: 'jp-split-empty' }, 'No runs yet: run a cell with %%on SITE.')], count: 0 };
    }
    // the server's pages for the filters, once the first came; meanwhile the newest runs, filtered here
    const pages = m.pages;
    const first = m.firstPage();
    const waiting = pages.query !== '' && found === null;
    const served = waiting ? m.runs : pages.rows(first);
    const shown = filterRuns(served, this.filter);
    const keys = shown.map(r => r.run_id);
    const rows = shown.map(run => this._run(run, this.isTabStop(run.run_id, keys)));
    const older = waiting ? null : pages.next(first);
    const paged = pages.from > 0 || older !== null || served.length > first.runs.length;
    const from = pages.from * RUNS_PAGE + 1;
    const span = `runs ${from.toLocaleString()}–${(from + served.length - 1).toLocaleString()}`;
    const note =
      found && !waiting
        ? paged
          ? `${span} of those the filters find in the whole run index, newest first`
          : `${shown.length} run${shown.length === 1 ? '' : 's'} found in the whole run index`
        : shown.length < served.length
          ? `${shown.length} of ${served.length} runs shown`
          : paged
            ? `${span[0].toUpperCase()}${span.slice(1)}, newest first`
            : null;
    return {
      items: [
        // always there (hidden on the newest page), so the rows below keep their place and are not drawn anew
        el(
          'div',
          { class: 'jp-split-pager', role: 'group', 'aria-label': 'Newer runs', hidden: pages.from > 0 ? undefined : '' },
          pages.from > 0 ? this._pageButton('Show newer runs', 'newer', () => void pages.newer()) : null,
          pages.from > 0 ? this._pageButton('Show the newest runs', 'newest', () => pages.newest()) : null
        ),
        rows.length ? list('Runs', rows) : el('div', { class: 'jp-split-empty' }, 'No run passes the filters.'),
        note ? el('div', { class: 'jp-split-detail', role: 'status' }, note) : null,
        pages.error ? el('div', { class: 'jp-split-error', role: 'alert' }, pages.error) : null,
        older !== null
          ? el(
              'div',
              { class: 'jp-split-pager', role: 'group', 'aria-label': 'Older runs' },
              // the first page as it is at the click: a kept button's handler is the one of the render that drew it
              this._pageButton(pages.busy ? 'Loading older runs...' : 'Show older runs', 'older', () =>
                void pages.older(m.firstPage())
              )
            )
          : null
      ],
      count: m.runs.length
    };
  }

  /** A button that moves along the pages, its focus kept across renders (`data-focus`). */
  private _pageButton(label: string, key: string, go: () => void): HTMLElement {
    const node = button(label, label, go, `jp-split-page-${key}`);
    node.dataset.focus = `page:${key}`;
    if (this._model.pages.busy) {
      node.setAttribute('aria-disabled', 'true'); // not `disabled`: the focus stays on it while the page comes
    }
    return node;
  }

  private _run(run: Run, stop: boolean): HTMLElement {
    const states = this._model.runStates;
    const active = states.isActive(run.state);
    const commands = this._commands;
    const args = { runId: run.run_id };
    const failed = states.badgeClass(run.state).endsWith('-bad');
    const cost = this._model.runCost(run);
    const row = listRow(
      run.run_id,
      stop,
      `Run ${run.name ? `${run.name} ` : ''}${run.run_id} on ${run.site}, ${run.state}: Enter opens its output`,
      { class: 'jp-split-run', 'data-run-id': run.run_id, 'data-state': run.state, title: `${run.run_id}: open the full output` },
      el(
        'div',
        { class: 'jp-split-row' },
        stateBadge(states, run.state),
        el('b', {}, run.site),
        el('span', { class: 'jp-split-elapsed' }, runElapsed(run, Date.now() / 1000, states)),
        el(
          'span',
          { class: 'jp-split-actions' },
          button(copyIcon, `Copy the run id ${run.run_id}`, () => Clipboard.copyToSystem(run.run_id), 'jp-split-copy'),
          button(addBelowIcon, 'Insert %split attach for this run below the active cell', () =>
            void commands.execute(CommandIDs.insertAttach, args)
          ),
          active
            ? button(stopIcon, 'Cancel this run', () => void commands.execute(CommandIDs.cancelRun, args), 'jp-split-cancel')
            : null
        )
      ),
      el('div', { class: 'jp-split-detail jp-split-id', title: run.run_id }, run.name ? `${run.name} · ${run.run_id}` : run.run_id),
      cost ? el('div', { class: 'jp-split-detail jp-split-cost' }, cost) : null,
      run.last_line
        ? el('div', { class: `jp-split-lastline${failed ? ' jp-mod-error' : ''}`, title: run.last_line }, run.last_line)
        : null
    );
    row.addEventListener('click', () => void commands.execute(CommandIDs.openRun, args));
    return row;
  }

  private _text: HTMLInputElement;
  private _site: HTMLSelectElement;
  private _state: HTMLSelectElement;
  private _notebook: HTMLSelectElement;
  private _typing = 0;
}
