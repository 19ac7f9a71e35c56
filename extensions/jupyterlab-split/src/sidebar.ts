// The left sidebar: sites, runs, checkpoints and W&B runs, from the shared model.
import { addBelowIcon, refreshIcon, stopIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { Checkpoint, Run, Site, WandbRun } from './api';
import { CommandIDs } from './commandids';
import { button, el, patchChildren, stateBadge } from './dom';
import { formatBytes, runElapsed, siteExtras, transferTarget } from './logic';
import { SplitModel } from './model';

export class SplitSidebar extends Widget {
  constructor(
    private readonly _model: SplitModel,
    private readonly _commands: CommandRegistry
  ) {
    super();
    this.id = 'jupyter-split-sidebar';
    this.addClass('jp-split-sidebar');
    this.title.caption = 'jupyter_split: sites and runs';
    _model.changed.connect(this._render, this);
    // Elapsed times of active runs move even when no poll brings news.
    this._clock = window.setInterval(() => this.isVisible && this._render(), 1000);
    this._render();
  }

  dispose(): void {
    window.clearInterval(this._clock);
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    const m = this._model;
    const header = el(
      'div',
      { class: 'jp-split-header' },
      el('span', { class: 'jp-split-title' }, m.experiment ? `Experiment ${m.experiment.name}` : 'jupyter_split'),
      button(refreshIcon, 'Refresh now', () => void this._commands.execute(CommandIDs.refresh))
    );
    const error = m.error ? el('div', { class: 'jp-split-error', role: 'alert' }, m.error) : null;
    const fresh = el(
      'div',
      {},
      header,
      error,
      section('Sites', 'sites', m.sites.map(site => this._site(site)), 'Loading sites...'),
      section('Runs', 'runs', m.runs.map(run => this._run(run)), 'No runs yet: run a cell with %%on SITE.'),
      section(
        'Checkpoints',
        'checkpoints',
        [
          ...Object.entries(m.checkpointErrors).map(([site, why]) =>
            el('li', { class: 'jp-split-error', 'data-site': site }, why)
          ),
          ...m.checkpoints.map(ckpt => this._checkpoint(ckpt))
        ],
        'No published checkpoints: save one with jupyter_split.ckpt.save or %split push.'
      ),
      section(
        'W&B',
        'wandb',
        m.wandbRuns.map(run => wandbRow(run)),
        'No W&B runs of this experiment yet: run a cell with --wandb.'
      )
    );
    patchChildren(this.node, fresh);
  }

  private _site(site: Site): HTMLElement {
    const status = site.reachable
      ? `reachable${typeof site.latency_ms === 'number' ? ` · ${Math.round(site.latency_ms)} ms` : ''}`
      : `unreachable${site.error ? `: ${site.error}` : ''}`;
    const extras = siteExtras(site);
    return el(
      'li',
      { class: 'jp-split-site', 'data-site': site.name, 'data-reachable': String(site.reachable) },
      el(
        'div',
        { class: 'jp-split-row' },
        el('span', { class: `jp-split-dot ${site.reachable ? 'jp-mod-ok' : 'jp-mod-bad'}` }),
        el('b', {}, site.name),
        site.home ? el('span', { class: 'jp-split-badge', title: 'the home site' }, 'home') : null,
        el('span', { class: 'jp-split-badge', title: 'jurisdiction' }, site.jurisdiction)
      ),
      el('div', { class: 'jp-split-detail' }, `${site.executor} · ${site.accelerator} · ${status}`),
      ...extras.map(line => el('div', { class: 'jp-split-detail' }, line))
    );
  }

  private _run(run: Run): HTMLElement {
    const states = this._model.runStates;
    const active = states.isActive(run.state);
    const commands = this._commands;
    const args = { runId: run.run_id };
    const row = el(
      'li',
      { class: 'jp-split-run', 'data-run-id': run.run_id, 'data-state': run.state, title: 'Open the full output' },
      el(
        'div',
        { class: 'jp-split-row' },
        stateBadge(states, run.state),
        el('b', {}, run.site),
        el('span', { class: 'jp-split-elapsed' }, runElapsed(run, Date.now() / 1000, states)),
        el(
          'span',
          { class: 'jp-split-actions' },
          button(addBelowIcon, 'Insert %split attach for this run below the active cell', () => void commands.execute(CommandIDs.insertAttach, args)),
          active
            ? button(stopIcon, 'Cancel this run', () => void commands.execute(CommandIDs.cancelRun, args), 'jp-split-cancel')
            : null
        )
      ),
      el('div', { class: 'jp-split-detail jp-split-id' }, run.name ? `${run.name} · ${run.run_id}` : run.run_id),
      run.last_line ? el('div', { class: 'jp-split-lastline' }, run.last_line) : null
    );
    row.addEventListener('click', () => void commands.execute(CommandIDs.openRun, args));
    return row;
  }

  private _checkpoint(ckpt: Checkpoint): HTMLElement {
    const experiment = this._model.experiment;
    const target = experiment ? transferTarget(ckpt.site, experiment) : null;
    return el(
      'li',
      { class: 'jp-split-checkpoint', 'data-url': ckpt.url },
      el(
        'div',
        { class: 'jp-split-row' },
        el('b', {}, ckpt.name),
        ckpt.residency ? el('span', { class: 'jp-split-badge jp-split-resident', title: 'must stay in' }, ckpt.residency) : null,
        el(
          'span',
          { class: 'jp-split-actions' },
          target
            ? button(
                `${target === experiment?.home ? 'pull' : 'push'} → ${target}`,
                `Copy to ${target} through the residency guard`,
                () =>
                  void this._commands.execute(CommandIDs.transferCheckpoint, {
                    site: ckpt.site,
                    name: ckpt.name,
                    toSite: target
                  }),
                'jp-split-transfer'
              )
            : null
        )
      ),
      el('div', { class: 'jp-split-detail' }, `${ckpt.site} · ${formatBytes(ckpt.bytes)} · ${ckpt.files} file${ckpt.files === 1 ? '' : 's'}`),
      ckpt.lineage.length ? el('div', { class: 'jp-split-detail' }, `from ${ckpt.lineage.join(', ')}`) : null
    );
  }

  private _clock: number;
}

function section(title: string, key: string, items: HTMLElement[], empty: string): HTMLElement {
  return el(
    'section',
    { class: 'jp-split-section', 'data-section': key },
    el('h3', {}, title),
    items.length ? el('ul', {}, ...items) : el('div', { class: 'jp-split-empty' }, empty)
  );
}

function wandbRow(run: WandbRun): HTMLElement {
  const name = run.url
    ? el('a', { href: run.url, target: '_blank', rel: 'noopener noreferrer' }, run.name)
    : el('b', {}, run.name);
  return el(
    'li',
    { class: 'jp-split-wandb', 'data-wandb-id': run.id },
    el(
      'div',
      { class: 'jp-split-row' },
      name,
      run.mode === 'offline' ? el('span', { class: 'jp-split-badge jp-split-offline' }, 'offline') : null
    ),
    el('div', { class: 'jp-split-detail' }, [run.site, run.job_type, run.state, metricsText(run.metrics)].filter(Boolean).join(' · '))
  );
}

function metricsText(metrics: Record<string, unknown>): string {
  return Object.entries(metrics)
    .slice(0, 3)
    .map(([key, value]) => `${key}=${typeof value === 'number' ? Number(value.toPrecision(4)) : String(value)}`)
    .join(', ');
}
