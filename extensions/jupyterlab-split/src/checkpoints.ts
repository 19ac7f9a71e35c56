// The checkpoints pane: published checkpoints per site; a transfer button the guard's dry run enables or refuses.
import { CommandRegistry } from '@lumino/commands';

import { Checkpoint } from './api';
import { CommandIDs } from './commandids';
import { button, el } from './dom';
import { refusalSummary } from './listlogic';
import { formatBytes, transferTarget } from './logic';
import { SplitModel } from './model';
import { list, listRow, Pane } from './pane';

export class CheckpointsPane extends Pane {
  constructor(
    private readonly _model: SplitModel,
    private readonly _commands: CommandRegistry
  ) {
    super('checkpoints', 'Checkpoints');
  }

  protected render(): { items: HTMLElement[]; count: number | null } {
    const m = this._model;
    const errors = Object.entries(m.checkpointErrors).map(([site, why]) =>
      el('div', { class: 'jp-split-error', 'data-site': site, role: 'status' }, why)
    );
    if (!m.checkpoints.length) {
      const empty = 'No published checkpoints: save one with jupyter_split.ckpt.save or %split push.';
      return { items: [...errors, el('div', { class: 'jp-split-empty' }, empty)], count: 0 };
    }
    const keys = m.checkpoints.map(c => c.url);
    const rows = m.checkpoints.map(ckpt => this._checkpoint(ckpt, this.isTabStop(ckpt.url, keys)));
    return { items: [...errors, list('Checkpoints', rows)], count: m.checkpoints.length };
  }

  private _checkpoint(ckpt: Checkpoint, stop: boolean): HTMLElement {
    const experiment = this._model.experiment;
    const target = experiment ? transferTarget(ckpt.site, experiment) : null;
    const check = target ? this._model.check(ckpt, target) : undefined;
    let action: HTMLElement | null = null;
    let refusal: HTMLElement | null = null;
    if (target) {
      const verb = `${target === experiment?.home ? 'pull' : 'push'} → ${target}`;
      const title = !check
        ? `Asking the residency guard whether ${ckpt.name} may go to ${target}...`
        : check.allowed
          ? `Copy to ${target} through the residency guard`
          : `The guard would refuse: ${check.reasons.join(' ')}`;
      action = button(
        verb,
        title,
        () =>
          void this._commands.execute(CommandIDs.transferCheckpoint, { site: ckpt.site, name: ckpt.name, toSite: target }),
        'jp-split-transfer'
      );
      action.dataset.check = !check ? 'asking' : check.allowed ? 'allowed' : 'refused';
      if (!check?.allowed) {
        action.setAttribute('disabled', '');
      }
      if (check && !check.allowed) {
        refusal = el(
          'div',
          { class: 'jp-split-refusal', role: 'note', title: check.message || check.reasons.join('\n') },
          refusalSummary(check, target)
        );
      }
    }
    const label = `Checkpoint ${ckpt.name} on ${ckpt.site}${ckpt.residency ? `, must stay in ${ckpt.residency}` : ''}`;
    return listRow(
      ckpt.url,
      stop,
      label,
      { class: 'jp-split-checkpoint', 'data-url': ckpt.url },
      el(
        'div',
        { class: 'jp-split-row' },
        el('b', {}, ckpt.name),
        ckpt.residency
          ? el('span', { class: 'jp-split-badge jp-split-resident', title: `must stay in ${ckpt.residency}` }, ckpt.residency)
          : null,
        el('span', { class: 'jp-split-actions' }, action)
      ),
      el('div', { class: 'jp-split-detail' }, `${ckpt.site} · ${formatBytes(ckpt.bytes)} · ${ckpt.files} file${ckpt.files === 1 ? '' : 's'}`),
      ckpt.lineage.length ? el('div', { class: 'jp-split-detail' }, `from ${ckpt.lineage.join(', ')}`) : null,
      refusal
    );
  }
}
