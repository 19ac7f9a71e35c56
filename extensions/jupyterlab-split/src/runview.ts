// A main-area panel with one run's output, following its event log live in a bounded window (window.ts).
import { MainAreaWidget } from '@jupyterlab/apputils';
import * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Poll } from '@lumino/polling';
import { Panel, Widget } from '@lumino/widgets';

import { api, EventsAnswer } from './api';
import { button, el, stateBadge } from './dom';
import { RunStates } from './logic';
import { OutputWindow } from './window';

export class RunView extends Panel {
  constructor(
    readonly runId: string,
    rendermime: IRenderMimeRegistry,
    private readonly _states: () => Promise<RunStates>,
    intervalMs: number,
    private readonly _cancel: () => void,
    private readonly _interrupt: () => void
  ) {
    super();
    this.addClass('jp-split-runview');
    this._status = new Widget({ node: el('div', { class: 'jp-split-runview-status' }, 'loading...') });
    this._outputs = new OutputArea({ model: new OutputAreaModel({ trusted: false }), rendermime });
    this.addWidget(this._status);
    this.addWidget(this._outputs);
    this._poll = new Poll({
      factory: () => this._fetch(),
      frequency: { interval: intervalMs, backoff: true, max: 30_000 },
      name: `jupyter-split:run:${runId}`,
      standby: 'when-hidden'
    });
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  /**
   * Bring the panel up to date. It opens on the log's tail (`tail=window`: the server reads back from
   * the end, so a week's log is not sent to draw its last screen), then asks for the records after the
   * last one it has; a panel that fell more than a window behind (hidden for a day) opens on the tail
   * again. Every record is folded into a bounded `OutputWindow`, so neither the page nor the DOM grows
   * with the log.
   */
  private async _fetch(): Promise<void> {
    const states = await this._states();
    let opened = !this._window;
    let answer = opened ? await this._openOnTail() : await api.events(this.runId, this._seq);
    // One answer holds a bounded batch: ask again at once while the log has more than was sent.
    for (;;) {
      const { run, events, window: shape } = answer;
      if (!opened && run.last_seq - this._seq > shape.lines) {
        answer = await this._openOnTail();
        opened = true;
        continue;
      }
      opened = false;
      for (const event of events) {
        this._window!.add(event);
        this._seq = Math.max(this._seq, event.seq);
      }
      this._draw();
      if (events.length === 0 || this._seq >= run.last_seq) {
        break;
      }
      answer = await api.events(this.runId, this._seq);
    }
    const run = answer.run;
    // `run.state` is what the log's end says: once it has ended and every record is here, stop asking.
    // Drawn again only when the state changes, so the buttons keep their focus across polls.
    if (this._status.node.dataset.state !== run.state) {
      // Interrupt while a cell runs (a queued one is not the session's running cell: the signal would miss it)
      const interrupt =
        run.state === 'running'
          ? button('Interrupt', `Interrupt run ${run.run_id}: a KeyboardInterrupt in its cell`, this._interrupt, 'jp-split-interrupt')
          : null;
      const cancel = states.isActive(run.state)
        ? button('Cancel', `Cancel run ${run.run_id}`, this._cancel, 'jp-split-cancel')
        : null;
      this._status.node.replaceChildren(
        `${run.run_id} on ${run.site}: `,
        stateBadge(states, run.state),
        interrupt || cancel ? el('span', { class: 'jp-split-runview-actions' }, interrupt, cancel) : ''
      );
      this._status.node.dataset.state = run.state;
    }
    if (states.isTerminal(run.state) && this._seq >= run.last_seq) {
      this._poll.dispose();
    }
  }

  /** The log's last records, into a new window that says how many records came before them. */
  private async _openOnTail(): Promise<EventsAnswer> {
    const answer = await api.tail(this.runId);
    const first = answer.events[0]?.seq ?? 1;
    this._window = new OutputWindow(answer.window, this.runId, Math.max(0, first - 1));
    this._seq = 0;
    return answer;
  }

  /** Draw what the window changed: the tail and updated displays in place, new outputs at the end. */
  private _draw(): void {
    const window = this._window!;
    const changes = window.takeChanges();
    const model = this._outputs.model;
    const outputs = window.outputs;
    if (changes.cleared || this._fresh !== window) {
      model.clear();
      this._fresh = window;
      changes.addFrom = 0;
      changes.set = [];
    }
    for (const at of changes.set) {
      model.set(at, outputs[at] as unknown as nbformat.IOutput);
    }
    for (let at = changes.addFrom; at < outputs.length; at++) {
      model.add(outputs[at] as unknown as nbformat.IOutput);
    }
  }

  private _seq = 0;
  private _window: OutputWindow | null = null;
  private _fresh: OutputWindow | null = null; // the window the OutputArea shows
  private _status: Widget;
  private _outputs: OutputArea;
  private _poll: Poll;
}

export function runPanel(
  runId: string,
  rendermime: IRenderMimeRegistry,
  states: () => Promise<RunStates>,
  intervalMs: number,
  cancel: () => void,
  interrupt: () => void
): MainAreaWidget<RunView> {
  const content = new RunView(runId, rendermime, states, intervalMs, cancel, interrupt);
  const panel = new MainAreaWidget({ content });
  panel.id = `jupyter-split-run-${runId}`;
  panel.title.label = `Run ${runId}`;
  panel.title.closable = true;
  return panel;
}
