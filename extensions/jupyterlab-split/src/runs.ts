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
    // the server's answer for the filters, once it came; meanwhile the newest runs, filtered here
    const shown = filterRuns(found ?? m.runs, this.filter);
    const keys = shown.map(r => r.run_id);
    const rows = shown.map(run => this._run(run, this.isTabStop(run.run_id, keys)));
    const note = found
      ? `${shown.length} run${shown.length === 1 ? '' : 's'} found in the whole run index (the newest 50 at most)`
      : shown.length < m.runs.length
        ? `${shown.length} of ${m.runs.length} runs shown`
        : null;
    return {
      items: [
        rows.length ? list('Runs', rows) : el('div', { class: 'jp-split-empty' }, 'No run passes the filters.'),
        note ? el('div', { class: 'jp-split-detail', role: 'status' }, note) : null
      ],
      count: m.runs.length
    };
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
