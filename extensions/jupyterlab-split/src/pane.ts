// One collapsible section of the sidebar: a heading button, optional controls, and a body patched on each change.
import { ISignal, Signal } from '@lumino/signaling';

import { el, patchChildren } from './dom';

type Child = Node | string | null | undefined | false;

let serial = 0;

/**
 * A pane. Its heading, its controls (filters, kept across renders so typing keeps its focus) and its
 * body are its own; `update` patches the body from `render()`. Rows marked `data-row` form one
 * keyboard stop: the list keeps one row in the tab order (arrows, Home and End move between rows),
 * and that row's buttons follow it; the rest are reached by the arrows, so a long list is one Tab.
 */
export abstract class Pane {
  readonly node: HTMLElement;

  constructor(
    readonly key: string,
    readonly title: string,
    controls: HTMLElement | null = null
  ) {
    const id = `jp-split-pane-${key}-${++serial}`;
    this._toggle = el('button', {
      class: 'jp-split-toggle',
      type: 'button',
      'aria-expanded': 'true',
      'aria-controls': `${id}-body`,
      id: `${id}-head`
    });
    this._toggle.addEventListener('click', () => this.setCollapsed(!this._collapsed));
    this._count = el('span', { class: 'jp-split-count' });
    this._toggle.append(el('span', { class: 'jp-split-caret', 'aria-hidden': 'true' }), title, this._count);
    this.body = el('div', { class: 'jp-split-body', id: `${id}-body` });
    this._controls = controls;
    this.node = el(
      'section',
      { class: 'jp-split-section', 'data-section': key, role: 'region', 'aria-labelledby': `${id}-head` },
      el('h3', {}, this._toggle),
      controls,
      this.body
    );
    this.body.addEventListener('keydown', event => this._onKey(event));
    this.body.addEventListener('focusin', event => this._onFocus(event));
  }

  get collapsed(): boolean {
    return this._collapsed;
  }

  setCollapsed(collapsed: boolean): void {
    this._collapsed = collapsed;
    this._toggle.setAttribute('aria-expanded', String(!collapsed));
    this.node.classList.toggle('jp-mod-collapsed', collapsed);
    this.body.hidden = collapsed;
    if (this._controls) {
      this._controls.hidden = collapsed;
    }
    if (!collapsed) {
      this.update();
    }
    this._toggled.emit(collapsed);
  }

  /** Emits when the pane is folded (true) or opened (false). */
  get toggled(): ISignal<this, boolean> {
    return this._toggled;
  }

  /** Patch the body from `render()`, giving the focus back to the same row or button where a change replaced it. */
  update(): void {
    const { items, count } = this.render();
    this._count.textContent = count === null ? '' : ` (${count})`;
    if (this._collapsed) {
      return;
    }
    const focused = document.activeElement;
    const key = focused instanceof HTMLElement && this.body.contains(focused) ? focusKey(focused) : null;
    patchChildren(this.body, el('div', {}, ...items));
    if (key && !this.body.contains(document.activeElement)) {
      this.body.querySelector<HTMLElement>(`[data-focus="${CSS.escape(key)}"]`)?.focus();
    }
  }

  /** The body's children and the count the heading shows (null: none). */
  protected abstract render(): { items: Child[]; count: number | null };

  /** Whether `row` (its `data-row`) is the list's tab stop: the row last focused, else the first. */
  protected isTabStop(row: string, rows: string[]): boolean {
    const active = this._active !== null && rows.includes(this._active) ? this._active : rows[0];
    return row === active;
  }

  private _onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement;
    const rows = Array.from(this.body.querySelectorAll<HTMLElement>('[data-row]'));
    const row = target.closest<HTMLElement>('[data-row]');
    if (!row || !rows.length) {
      return;
    }
    const at = rows.indexOf(row);
    const next = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1 }[event.key];
    if (next !== undefined && rows[next]) {
      event.preventDefault();
      rows[next].focus();
    } else if ((event.key === 'Enter' || event.key === ' ') && target === row) {
      event.preventDefault();
      row.click();
    }
  }

  private _onFocus(event: FocusEvent): void {
    const row = (event.target as HTMLElement).closest<HTMLElement>('[data-row]');
    if (!row || row.dataset.row === this._active) {
      return;
    }
    this._active = row.dataset.row ?? null;
    // Move the tab stop in place (the next render draws the same), so nothing is replaced under the focus.
    for (const other of Array.from(this.body.querySelectorAll<HTMLElement>('[data-row]'))) {
      setTabStop(other, other === row);
    }
  }

  protected body: HTMLElement;
  private _toggle: HTMLElement;
  private _count: HTMLElement;
  private _controls: HTMLElement | null;
  private _collapsed = false;
  private _active: string | null = null;
  private _toggled = new Signal<this, boolean>(this);
}

/** A row's tab stop and its buttons': in the tab order (0) or reached by the arrows only (-1). */
export function setTabStop(row: HTMLElement, stop: boolean): void {
  row.tabIndex = stop ? 0 : -1;
  row.querySelectorAll<HTMLElement>('button').forEach(button => (button.tabIndex = stop ? 0 : -1));
}

/**
 * A row of a pane's list (`li`, role listitem): `key` names it for the keyboard and the focus, `label`
 * is what a screen reader says of it, `stop` whether it is the list's tab stop.
 */
export function listRow(
  key: string,
  stop: boolean,
  label: string,
  attrs: Record<string, string | undefined>,
  ...children: Child[]
): HTMLElement {
  const row = el('li', { ...attrs, 'data-row': key, 'data-focus': `row:${key}`, role: 'listitem', 'aria-label': label }, ...children);
  setTabStop(row, stop);
  return row;
}

/** A list of rows (`ul`, role list) named by `label`. */
export function list(label: string, rows: HTMLElement[]): HTMLElement {
  return el('ul', { role: 'list', 'aria-label': label }, ...rows);
}

function focusKey(node: HTMLElement): string | null {
  const own = node.closest<HTMLElement>('[data-focus]');
  return own?.dataset.focus ?? null;
}
