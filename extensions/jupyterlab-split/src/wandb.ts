// The W&B pane: the experiment's W&B runs on every site.
import { WandbRun } from './api';
import { el } from './dom';
import { SplitModel } from './model';
import { list, listRow, Pane } from './pane';

/** The W&B pane: the experiment's W&B runs on every site. */
export class WandbPane extends Pane {
  constructor(private readonly _model: SplitModel) {
    super('wandb', 'W&B');
  }

  protected render(): { items: HTMLElement[]; count: number | null } {
    const runs = this._model.wandbRuns;
    if (!runs.length) {
      return { items: [el('div', { class: 'jp-split-empty' }, 'No W&B runs of this experiment yet: run a cell with --wandb.')], count: 0 };
    }
    const keys = runs.map(r => `${r.site}:${r.id}`);
    return { items: [list('W&B runs', runs.map((run, i) => wandbRow(run, this.isTabStop(keys[i], keys))))], count: runs.length };
  }
}

function wandbRow(run: WandbRun, stop: boolean): HTMLElement {
  const name = run.url
    ? el('a', { href: run.url, target: '_blank', rel: 'noopener noreferrer', tabindex: '-1' }, run.name)
    : el('b', {}, run.name);
  return listRow(
    `${run.site}:${run.id}`,
    stop,
    `W&B run ${run.name} on ${run.site}, ${run.mode}, ${run.state}`,
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
