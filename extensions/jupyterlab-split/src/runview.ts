// A main-area panel with one run's full output, following its event log live.
import { MainAreaWidget } from '@jupyterlab/apputils';
import * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Poll } from '@lumino/polling';
import { stopIcon } from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { api, Run, RunEvent } from './api';
import { button, el, stateBadge } from './dom';
import { eventToOutput, RunStates } from './logic';

export class RunView extends Panel {
  constructor(
    readonly runId: string,
    rendermime: IRenderMimeRegistry,
    private readonly _states: () => Promise<RunStates>,
    intervalMs: number,
    private readonly _cancel: () => void
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

  private async _fetch(): Promise<void> {
    const states = await this._states();
    // The event log is the truth: asking from the last seq seen never loses or doubles a record.
    // One answer holds a bounded batch: ask again at once while the log has more than was sent.
    let run: Run;
    let events: RunEvent[];
    do {
      ({ run, events } = await api.events(this.runId, this._seq));
      for (const event of events) {
        const output = eventToOutput(event);
        if (output) {
          this._outputs.model.add(output as unknown as nbformat.IOutput);
        }
        this._seq = event.seq;
      }
    } while (events.length > 0 && this._seq < run.last_seq);
    // `run.state` is what the log's end says: once it has ended and every record is here, stop asking.
    // Drawn again only when the state changes, so the cancel button keeps its focus across polls.
    if (this._status.node.dataset.state !== run.state) {
      const cancel = states.isActive(run.state)
        ? button(stopIcon, `Cancel run ${run.run_id}`, this._cancel, 'jp-split-cancel')
        : null;
      this._status.node.replaceChildren(`${run.run_id} on ${run.site}: `, stateBadge(states, run.state), cancel ?? '');
      this._status.node.dataset.state = run.state;
    }
    if (states.isTerminal(run.state) && this._seq >= run.last_seq) {
      this._poll.dispose();
    }
  }

  private _seq = 0;
  private _status: Widget;
  private _outputs: OutputArea;
  private _poll: Poll;
}

export function runPanel(
  runId: string,
  rendermime: IRenderMimeRegistry,
  states: () => Promise<RunStates>,
  intervalMs: number,
  cancel: () => void
): MainAreaWidget<RunView> {
  const content = new RunView(runId, rendermime, states, intervalMs, cancel);
  const panel = new MainAreaWidget({ content });
  panel.id = `jupyter-split-run-${runId}`;
  panel.title.label = `Run ${runId}`;
  panel.title.closable = true;
  return panel;
}
