// The sessions pane: each site's session (state, the run it executes, the cells queued on it, uptime,
// memory) with restart and stop, each after a confirmation.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { refreshIcon, stopIcon } from '@jupyterlab/ui-components';

import { api, Session } from './api';
import { showMessage } from './dialogs';
import { button, el } from './dom';
import { SplitModel } from './model';
import { list, listRow, Pane } from './pane';
import { sessionRunText, sessionRunTitle, sessionText } from './sitelogic';

/** A session's badge takes a run state's style (style/base.css): busy reads as running, warm as done; gone is plain. */
const SESSION_STYLE: Record<string, string> = { busy: 'active', warm: 'ok', starting: 'warn' };

/** The sessions pane: a row per site's session, with restart and stop. */
export class SessionsPane extends Pane {
  constructor(private readonly _model: SplitModel) {
    super('sessions', 'Sessions');
  }

  protected render(): { items: HTMLElement[]; count: number | null } {
    const sessions = Array.from(this._model.sessions.values());
    if (!sessions.length) {
      return { items: [el('div', { class: 'jp-split-empty' }, 'Asking each site for its session...')], count: null };
    }
    const keys = sessions.map(s => s.site);
    const rows = sessions.map(s => this._session(s, this.isTabStop(s.site, keys)));
    return { items: [list('Sessions', rows)], count: sessions.filter(s => s.state !== 'gone').length };
  }

  private _session(s: Session, stop: boolean): HTMLElement {
    const now = Date.now() / 1000;
    const actions = s.supported
      ? [
          button(refreshIcon, `Restart the session on ${s.site}`, () => void act(s, 'restart', this._model), 'jp-split-restart'),
          s.state !== 'gone' ? button(stopIcon, `Stop the session on ${s.site}`, () => void act(s, 'stop', this._model), 'jp-split-stop') : null
        ]
      : [];
    const info = s.supported ? sessionText(s, now) : `${s.executor}: each cell runs as a job of its own, no session`;
    return listRow(
      s.site,
      stop,
      `Session on ${s.site}: ${s.state}${s.running ? `, running ${s.running.run_id}` : ''}, ${s.queue.length} queued`,
      { class: 'jp-split-session', 'data-site': s.site, 'data-state': s.state, 'data-queued': String(s.queue.length) },
      el(
        'div',
        { class: 'jp-split-row' },
        el('span', { class: `jp-split-state${s.state in SESSION_STYLE ? ` jp-split-state-${SESSION_STYLE[s.state]}` : ''}` }, s.state),
        el('b', {}, s.site),
        el('span', { class: 'jp-split-elapsed' }, info),
        el('span', { class: 'jp-split-actions' }, ...actions)
      ),
      s.running
        ? el('div', { class: 'jp-split-detail jp-split-running', title: sessionRunTitle(s.running) }, `running ${sessionRunText(s.running)}`)
        : null,
      s.queue.length
        ? el(
            'ol',
            { class: 'jp-split-queue', 'aria-label': `Cells queued on ${s.site}` },
            ...s.queue.map(q =>
              el(
                'li',
                { class: 'jp-split-detail', title: sessionRunTitle(q), 'data-run-id': q.run_id, 'data-notebook': q.notebook ?? undefined },
                `queued ${sessionRunText(q)}`
              )
            )
          )
        : null,
      ...s.errors.map(text => el('div', { class: 'jp-split-error', role: 'status' }, text))
    );
  }
}

/** Stop or restart a site's session once the user confirmed: what it executes and what is queued is cancelled. */
async function act(s: Session, action: 'stop' | 'restart', model: SplitModel): Promise<void> {
  const lost = [s.running, ...s.queue].filter(Boolean).length;
  const verb = action === 'stop' ? 'Stop' : 'Restart';
  const answer = await showDialog({
    title: `${verb} the session on ${s.site}`,
    body:
      `${verb} the session on ${s.site}? Its variables are lost` +
      (lost ? `, and ${lost} run${lost === 1 ? '' : 's'} (the cell it executes and those queued) end cancelled.` : '.'),
    buttons: [Dialog.cancelButton({ label: 'Keep it' }), Dialog.warnButton({ label: verb })]
  });
  if (!answer.button.accept) {
    return;
  }
  try {
    await api.session(s.site, action);
  } catch (reason) {
    await showMessage(`Could not ${action} the session on ${s.site}`, String((reason as Error).message ?? reason), 'error');
  }
  await model.refresh();
}
