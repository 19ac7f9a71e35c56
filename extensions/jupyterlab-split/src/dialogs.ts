// Messages from the server keep their line breaks: a residency refusal is a short report, not a sentence.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { el } from './dom';

export async function showMessage(title: string, text: string, kind: 'info' | 'error'): Promise<void> {
  const body = new Widget({ node: el('pre', { class: `jp-split-message jp-split-message-${kind}` }, text) });
  await showDialog({ title, body, buttons: [Dialog.okButton({ label: 'Close' })] });
}
