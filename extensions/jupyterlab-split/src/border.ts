// The border pane: the residency policy in force, the audit log's last decisions (filtered, counted), declassify.
import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { api, AuditEntry, PolicyView } from './api';
import { showMessage } from './dialogs';
import { narrowed, PERIODS, todayText } from './borderlogic';
import { button, el, setOptions } from './dom';
import { baseName, canDeclassify, entryText, labelText, siteUrls } from './listlogic';
import { Decision, SplitModel } from './model';
import { list, listRow, Pane } from './pane';

/** The filter buttons, in order: the server's decisions (GET border counts them), and all. */
const FILTERS: { decision: Decision; label: string }[] = [
  { decision: null, label: 'All' },
  { decision: 'refused', label: 'Refused' },
  { decision: 'declassified', label: 'Declassified' },
  { decision: 'allowed', label: 'Allowed' }
];

/** A decision's badge takes a run state's style (style/base.css): refused reads as failed, declassified as a warning. */
const DECISION_STYLE: Record<string, string> = { refused: 'bad', declassified: 'warn', allowed: 'ok' };

/**
 * The border pane: the policy in force, what the border refused and declassified today, and the audit
 * log's newest decisions, filtered by decision, site, kind and period (the server filters the whole
 * log), with the count of each decision; declassify from a refusal.
 */
export class BorderPane extends Pane {
  constructor(private readonly _model: SplitModel) {
    const group = el('div', { class: 'jp-split-filters', role: 'group', 'aria-label': 'Show border decisions' });
    const site = el('select', { class: 'jp-split-filter', 'aria-label': 'Show decisions of site' }) as HTMLSelectElement;
    const kind = el('select', { class: 'jp-split-filter', 'aria-label': 'Show decisions of kind' }) as HTMLSelectElement;
    const days = el(
      'select',
      { class: 'jp-split-filter', 'aria-label': 'Show decisions of' },
      ...PERIODS.map(p => el('option', { value: String(p.days) }, p.label))
    ) as HTMLSelectElement;
    const more = el('div', { class: 'jp-split-filters', role: 'search', 'aria-label': 'Filter border decisions' }, site, kind, days);
    super('border', 'Border', el('div', { class: 'jp-split-border-filters' }, group, more));
    this._buttons = FILTERS.map(({ decision, label }) => {
      const node = button(label, `Show ${decision ?? 'every decision'}`, () => void _model.setDecision(decision), 'jp-split-decision');
      node.dataset.decision = decision ?? 'all';
      group.append(node);
      return node;
    });
    site.addEventListener('change', () => void _model.setBorderFilter({ site: site.value }));
    kind.addEventListener('change', () => void _model.setBorderFilter({ kind: kind.value }));
    days.addEventListener('change', () => void _model.setBorderFilter({ days: Number(days.value) }));
    this._site = site;
    this._kind = kind;
  }

  protected render(): { items: (HTMLElement | null)[]; count: number | null } {
    const border = this._model.border;
    const filter = this._model.borderFilter;
    const counts = border?.counts ?? {};
    const all = Object.values(counts).reduce((a, b) => a + b, 0);
    FILTERS.forEach(({ decision, label }, i) => {
      const node = this._buttons[i];
      const text = `${label} ${decision ? counts[decision] ?? 0 : all}`;
      if (node.textContent !== text) {
        node.textContent = text;
      }
      node.setAttribute('aria-pressed', String(filter.decision === decision));
    });
    // the site filter offers every site of the policy; the kind filter, the kinds the audit log holds
    setOptions(this._site, 'every site', border ? border.policy.sites.map(s => s.name) : []);
    setOptions(this._kind, 'any kind', Array.from(new Set([...(border?.kinds ?? []), ...(filter.kind ? [filter.kind] : [])])).sort());
    if (!border) {
      return { items: [el('div', { class: 'jp-split-empty' }, 'Loading the policy...')], count: null };
    }
    const keys = border.entries.map(entryKey);
    const rows = border.entries.map(entry => this._entry(entry, this.isTabStop(entryKey(entry), keys)));
    const shown = filter.decision ? `${filter.decision} ` : '';
    return {
      items: [
        todayView(border.today, narrowed(filter)),
        policyView(border.policy),
        rows.length
          ? list('Border decisions', rows)
          : el('div', { class: 'jp-split-empty' }, `No ${shown}decision${narrowed(filter) ? ' passes the filters' : ' in the audit log yet'}.`),
        border.total > border.entries.length
          ? el('div', { class: 'jp-split-detail' }, `the newest ${border.entries.length} of ${border.total}`)
          : null
      ],
      count: this._model.refusedToday // today's refusals, as the today line says: not the filtered page's
    };
  }

  private _entry(entry: AuditEntry, stop: boolean): HTMLElement {
    const short = (text: string) => siteUrls(text, this._model.sites);
    const { where, when } = entryText(entry);
    const what = short(entryText(entry).what);
    const decision = entry.decision ?? 'unknown';
    return listRow(
      entryKey(entry),
      stop,
      `${decision}: ${what}, ${where}, ${when}`,
      { class: 'jp-split-entry', 'data-decision': decision, 'data-item': entry.item ?? '' },
      el(
        'div',
        { class: 'jp-split-row' },
        el('span', { class: `jp-split-state jp-split-state-${DECISION_STYLE[decision] ?? 'warn'}` }, decision),
        el('b', { class: 'jp-split-what', title: entry.item ?? what }, what),
        el(
          'span',
          { class: 'jp-split-actions' },
          canDeclassify(entry)
            ? button('declassify...', `Declassify ${what}: approve its export, with a reason`, () => void declassify(entry, what, this._model), 'jp-split-declassify')
            : null
        )
      ),
      el('div', { class: 'jp-split-detail' }, [where, when, entry.user].filter(Boolean).join(' · ')),
      entry.reason ? el('div', { class: 'jp-split-reason', title: entry.reason }, short(entry.reason)) : null,
      ...(entry.findings ?? []).slice(0, 3).map(f => el('div', { class: 'jp-split-detail' }, short(`found ${f.kind}: ${f.masked} in ${f.file}`)))
    );
  }

  private _buttons: HTMLElement[];
  private _site: HTMLSelectElement;
  private _kind: HTMLSelectElement;
}

/** What the border refused and declassified today (the page's day), at a glance above the rest. */
function todayView(today: Record<string, number> | undefined, filtered: boolean): HTMLElement {
  const badge = (decision: string, style: string) => {
    const n = today?.[decision] ?? 0;
    // coloured only when there is something to see: a day without refusals reads plain
    return el('span', { class: n ? `jp-split-state jp-split-state-${style}` : 'jp-split-state', 'data-decision': decision }, `${n} ${decision}`);
  };
  return el(
    'div',
    { class: 'jp-split-today', role: 'status', 'aria-label': todayText(today) + (filtered ? ', of the filtered decisions' : '') },
    el('span', { class: 'jp-split-key' }, filtered ? 'today, filtered: ' : 'today: '),
    badge('refused', 'bad'),
    ' ',
    badge('declassified', 'warn')
  );
}

function entryKey(entry: AuditEntry): string {
  return `${entry.ts ?? entry.time}:${entry.decision}:${entry.item}`;
}

function policyView(policy: PolicyView): HTMLElement {
  const abroad = policy.metrics_abroad === null ? 'every metric' : policy.metrics_abroad.join(', ') || 'none';
  const line = (name: string, value: string) =>
    el('div', { class: 'jp-split-policy-line' }, el('span', { class: 'jp-split-key' }, `${name}: `), value);
  return el(
    'div',
    { class: 'jp-split-policy', 'aria-label': 'The residency policy in force' },
    line('home', `${policy.home.site} (${policy.home.jurisdiction})`),
    line('sites', policy.sites.map(s => `${s.name} ${s.jurisdiction}`).join(', ')),
    line('resident', policy.resident.join(', ') || 'none'),
    line('allowed to leave', policy.allow_export.join(', ') || 'nothing beyond unlabelled data'),
    line('metrics abroad', abroad),
    line('content scan', policy.scan.enabled ? `on, depth ${policy.scan.depth}` : 'off'),
    el('div', { class: 'jp-split-detail', title: `${policy.source}; audit log ${policy.audit_log}` }, `from ${baseName(policy.source)}`)
  );
}

/** Ask for the reason and a confirmation, then declassify `entry.item`: the server writes the audit line. */
async function declassify(entry: AuditEntry, shown: string, model: SplitModel): Promise<void> {
  const item = entry.item ?? '';
  const reason = el('input', {
    class: 'jp-split-reason-input',
    type: 'text',
    required: '',
    'aria-required': 'true',
    'aria-label': 'Reason: who approved this export, and the approval reference',
    placeholder: 'approved by ..., reference ...'
  }) as HTMLInputElement;
  const body = new Widget({
    node: el(
      'div',
      { class: 'jp-split-declassify-body' },
      el('p', { title: item }, `Declassify ${shown}? It may then leave ${labelText(entry.labels) || 'its jurisdiction'}; the approval is written to the audit log.`),
      el('label', {}, 'Reason (required)', reason)
    )
  });
  const dialog = new Dialog({
    title: 'Declassify',
    body,
    focusNodeSelector: '.jp-split-reason-input',
    buttons: [Dialog.cancelButton({ label: 'Keep it refused' }), Dialog.warnButton({ label: 'Declassify' })]
  });
  const accept = () => dialog.node.querySelector<HTMLButtonElement>('.jp-mod-warn');
  const sync = () => {
    const ok = Boolean(reason.value.trim());
    accept()?.toggleAttribute('disabled', !ok);
  };
  reason.addEventListener('input', sync);
  requestAnimationFrame(sync);
  const answer = await dialog.launch();
  const why = reason.value.trim();
  dialog.dispose();
  // Enter in the field accepts the dialog even while its button is disabled: without a reason, nothing is done.
  if (!answer.button.accept || !why) {
    return;
  }
  try {
    await api.declassify(item, why);
  } catch (reason) {
    await showMessage(`Not declassified: ${item}`, String((reason as Error).message ?? reason), 'error');
  }
  await model.refresh();
}

