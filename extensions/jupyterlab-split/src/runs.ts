// The runs pane: filters by site, state and name; one row per run, focusable, with its actions.
import { Clipboard } from '@jupyterlab/apputils';
import { addBelowIcon, copyIcon, stopIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';

import { Run } from './api';
import { CommandIDs } from './commandids';
import { button, el, stateBadge } from './dom';
import { choices, filterRuns, RunFilter } from './listlogic';
import { runElapsed } from './logic';
import { SplitModel } from './model';
import { list, listRow, Pane } from './pane';

/** The runs pane: filters (name or id, site, state) over the newest runs, a focusable row per run. */
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
    super('runs', 'Runs', el('div', { class: 'jp-split-filters', role: 'search', 'aria-label': 'Filter runs' }, text, site, state));
    this._text = text;
    this._site = site;
    this._state = state;
    for (const control of [text, site, state]) {
      control.addEventListener('input', () => this.update());
    }
  }

  get filter(): RunFilter {
    return { text: this._text.value, site: this._site.value, state: this._state.value };
  }

  protected render(): { items: (HTMLElement | null)[]; count: number | null } {
    const m = this._model;
    setOptions(this._site, 'every site', m.sites.length ? m.sites.map(s => s.name) : choices(m.runs, r => r.site));
    setOptions(this._state, 'any state', choices(m.runs, r => r.state));
    if (!m.runs.length) {
      return { items: [el('div', { class: 'jp-split-empty' }, 'No runs yet: run a cell with %%on SITE.')], count: 0 };
    }
    const shown = filterRuns(m.runs, this.filter);
    const keys = shown.map(r => r.run_id);
    const rows = shown.map(run => this._run(run, this.isTabStop(run.run_id, keys)));
    return {
      items: [
        rows.length ? list('Runs', rows) : el('div', { class: 'jp-split-empty' }, 'No run passes the filters.'),
        shown.length < m.runs.length
          ? el('div', { class: 'jp-split-detail', role: 'status' }, `${shown.length} of ${m.runs.length} runs shown`)
          : null
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
}

/** Give `select` the options `values` (after one for "any"), keeping its choice; untouched when they are the same. */
function setOptions(select: HTMLSelectElement, any: string, values: string[]): void {
  const wanted = ['', ...values];
  const have = Array.from(select.options).map(o => o.value);
  if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) {
    return;
  }
  const chosen = select.value;
  select.replaceChildren(...wanted.map(v => el('option', { value: v }, v || any)));
  select.value = wanted.includes(chosen) ? chosen : '';
}
