// The status bar item: how many runs are in progress.
import { Widget } from '@lumino/widgets';

import { countActive } from './logic';
import { SplitModel } from './model';

export class RunsStatus extends Widget {
  constructor(
    private readonly _model: SplitModel,
    onClick: () => void
  ) {
    super();
    this.addClass('jp-split-status');
    this.addClass('jp-StatusBar-TextItem');
    this.node.title = 'jupyter_split runs in progress (click for the sidebar)';
    // A button to the keyboard and to a screen reader too: Tab reaches it, Enter or Space opens the sidebar.
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.addEventListener('click', onClick);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onClick();
      }
    });
    _model.changed.connect(this._update, this);
    this._update();
  }

  dispose(): void {
    this._model.changed.disconnect(this._update, this);
    super.dispose();
  }

  private _update(): void {
    const active = countActive(this._model.runs, this._model.runStates);
    this.node.textContent = `split: ${active} running`;
    this.node.setAttribute('aria-label', `jupyter_split: ${active} run${active === 1 ? '' : 's'} in progress; open the sidebar`);
    this.node.dataset.active = String(active);
  }
}
