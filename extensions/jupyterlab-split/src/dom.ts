// A tiny element builder: the sidebar is plain DOM, re-rendered on each model change.
import { LabIcon } from '@jupyterlab/ui-components';

import { RunStates } from './logic';

type Child = Node | string | null | undefined | false;

export function el(
  tag: string,
  attrs: Record<string, string | undefined> = {},
  ...children: Child[]
): HTMLElement {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined) {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child) {
      node.append(child);
    }
  }
  return node;
}

export function button(content: string | LabIcon, title: string, onClick: () => void, cls = ''): HTMLElement {
  const face = typeof content === 'string' ? content : content.element({ tag: 'span', className: 'jp-split-icon' });
  const node = el('button', { class: `jp-split-button ${cls}`.trim(), title, 'aria-label': title, type: 'button' }, face);
  node.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return node;
}

/** A run state's badge, coloured by the style the server gives the state. */
export function stateBadge(states: RunStates, state: string): HTMLElement {
  return el('span', { class: states.badgeClass(state), title: states.meaning(state) }, state);
}

/**
 * Make `target`'s children look like `source`'s, keeping every element whose tag and
 * attributes did not change: a button under the pointer survives a refresh, so clicks
 * that straddle a poll are not lost.
 */
export function patchChildren(target: Node, source: Node): void {
  const next = Array.from(source.childNodes);
  while (target.childNodes.length > next.length) {
    target.lastChild!.remove();
  }
  next.forEach((fresh, i) => {
    const old = target.childNodes[i];
    if (!old) {
      target.appendChild(fresh);
    } else if (old.nodeType === Node.TEXT_NODE && fresh.nodeType === Node.TEXT_NODE) {
      if (old.nodeValue !== fresh.nodeValue) {
        old.nodeValue = fresh.nodeValue;
      }
    } else if (sameShell(old, fresh)) {
      patchChildren(old, fresh);
    } else {
      target.replaceChild(fresh, old);
    }
  });
}

function sameShell(a: Node, b: Node): boolean {
  if (!(a instanceof Element) || !(b instanceof Element) || a.tagName !== b.tagName) {
    return false;
  }
  if (a.attributes.length !== b.attributes.length) {
    return false;
  }
  return Array.from(b.attributes).every(attr => a.getAttribute(attr.name) === attr.value);
}

/** Give `select` the options `values` (after one for "any"), keeping its choice; untouched when they are the same. */
export function setOptions(select: HTMLSelectElement, any: string, values: string[]): void {
  const wanted = ['', ...values];
  const have = Array.from(select.options).map(o => o.value);
  if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) {
    return;
  }
  const chosen = select.value;
  select.replaceChildren(...wanted.map(v => el('option', { value: v }, v || any)));
  select.value = wanted.includes(chosen) ? chosen : '';
}
