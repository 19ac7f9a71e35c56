// The checkpoints pane: published checkpoints per site; a transfer button the guard's dry run enables or refuses.
import { stopIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';

import { showMessage } from './dialogs';
import { api, Checkpoint, TransferView } from './api';
import { CommandIDs } from './commandids';
import { button, el } from './dom';
import { latestTransfer, refusalSummary, transferText } from './listlogic';
import { formatBytes, transferTarget } from './logic';
import { SplitModel } from './model';
import { list, listRow, Pane } from './pane';

/** The checkpoints pane: each published checkpoint, its guarded transfer button and its copies' progress. */
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
    const copy = latestTransfer(this._model.transfers, ckpt.site, ckpt.name);
    const moving = copy?.state === 'running';
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
      if (!check?.allowed || moving) {
        action.setAttribute('disabled', ''); // one copy of a checkpoint at a time
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
      refusal,
      copy ? transferView(copy, this._model) : null
    );
  }
}

/** A copy of the checkpoint: while it runs, a progress bar, its bytes, rate and time left, and a cancel button; then how it ended. */
function transferView(t: TransferView, model: SplitModel): HTMLElement {
  const what = `Copy of ${t.name} to ${t.to_site}`;
  if (t.state !== 'running') {
    const first = t.message.split('\n', 1)[0];
    return el(
      'div',
      { class: `jp-split-transfer-state${t.state === 'succeeded' ? '' : ' jp-mod-error'}`, 'data-transfer': t.id, 'data-state': t.state, role: 'status', title: t.message },
      t.state === 'succeeded' ? `copied to ${t.to_site} · ${transferText(t)}` : `${t.state}: ${first}`
    );
  }
  const text = transferText(t);
  return el(
    'div',
    { class: 'jp-split-row jp-split-progress', 'data-transfer': t.id, 'data-state': t.state },
    el('progress', { max: String(Math.max(t.bytes_total, 1)), value: String(t.bytes_done), 'aria-label': what, 'aria-valuetext': text }),
    el('span', { class: 'jp-split-detail', 'aria-live': 'polite' }, text),
    t.cancelling ? null : button(stopIcon, `Cancel the ${what.toLowerCase()}`, () => void cancel(t, model), 'jp-split-cancel-transfer')
  );
}

async function cancel(t: TransferView, model: SplitModel): Promise<void> {
  try {
    await api.cancelTransfer(t.id);
  } catch (reason) {
    await showMessage(`Could not cancel the copy of ${t.name}`, String((reason as Error).message ?? reason), 'error');
  }
  await model.refresh();
}
