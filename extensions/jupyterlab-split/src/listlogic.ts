// Pure helpers of the runs and border panes: filters and the words of an audit record. No DOM.
import { formatBytes, formatElapsed } from './logic';
import { AuditEntry, TransferView } from './types';

/** What the runs pane shows: runs of one site and one state (empty: any) whose name or id holds `text`. */
export interface RunFilter {
  text: string;
  site: string;
  state: string;
  /** The notebook a run came from (as Jupyter names it); '' for any. */
  notebook: string;
}

/** The runs that pass `filter`, in their order. */
export function filterRuns<
  R extends { run_id: string; site: string; state: string; name: string | null; notebook?: string | null }
>(runs: R[], filter: RunFilter): R[] {
  const text = filter.text.trim().toLowerCase();
  return runs.filter(
    run =>
      (!filter.site || run.site === filter.site) &&
      (!filter.state || run.state === filter.state) &&
      (!filter.notebook || run.notebook === filter.notebook) &&
      (!text || run.run_id.toLowerCase().includes(text) || (run.name ?? '').toLowerCase().includes(text))
  );
}

/** The query of GET runs that asks the server for `filter` over the whole run index; '' for no filter. */
export function runQuery(filter: RunFilter): string {
  const params = new URLSearchParams();
  for (const [key, value] of [
    ['site', filter.site],
    ['state', filter.state],
    ['q', filter.text.trim()],
    ['notebook', filter.notebook]
  ]) {
    if (value) {
      params.set(key, value);
    }
  }
  return params.toString();
}

/** The distinct values of `pick` over `rows`, sorted: the options of a filter. */
export function choices<R>(rows: R[], pick: (row: R) => string): string[] {
  return Array.from(new Set(rows.map(pick))).sort();
}

/** An audit record's labels, as a list or a map of label to origin, in words. */
export function labelText(labels: AuditEntry['labels']): string {
  if (!labels) {
    return '';
  }
  return Array.isArray(labels) ? labels.join(', ') : Object.keys(labels).join(', ');
}

/** An audit record in words: what went (or would have gone) where, and when. */
export function entryText(entry: AuditEntry): { what: string; where: string; when: string } {
  const what = entry.item ?? entry.src ?? '(unnamed)';
  const to = entry.to_site ?? entry.to_jurisdiction ?? entry.dest;
  const from = entry.from_site;
  const where = [from && to ? `${from} → ${to}` : to ? `→ ${to}` : '', entry.kind ?? '', labelText(entry.labels)]
    .filter(Boolean)
    .join(' · ');
  const when = entry.time ? entry.time.replace('T', ' ').replace(/\+00:00$/, ' UTC') : '';
  return { what, where, when };
}

/** Whether the border pane offers to declassify this record: a refusal that names what to approve. */
export function canDeclassify(entry: AuditEntry): boolean {
  return entry.decision === 'refused' && Boolean(entry.item);
}

/** The guard's refusal of a transfer in one line: the labels that keep it home, else the first line of its reason. */
export function refusalSummary(check: { reasons: string[]; message: string; labels: string[] }, target: string): string {
  if (check.labels.length) {
    return `not to ${target}: residency label${check.labels.length > 1 ? 's' : ''} ${check.labels.join(', ')} must stay`;
  }
  const first = (check.reasons[0] ?? check.message).trim().split('\n', 1)[0];
  return `not to ${target}: ${first || 'the guard refuses'}`;
}

/**
 * `text` with each site's storage URL written `SITE:path`, as the verbs take it (`%split push home:ckpts/x
 * abroad:ckpts/x`): a path under a site's storage reads by its site, however long the URL.
 */
export function siteUrls(text: string, sites: { name: string; storage: string | null }[]): string {
  let out = text;
  for (const site of sites) {
    if (site.storage) {
      out = out.split(`${site.storage.replace(/\/+$/, '')}/`).join(`${site.name}:`);
    }
  }
  return out;
}

/** The last part of a path: a config file by its name (the whole path is the tooltip's). */
export function baseName(path: string): string {
  return path.split('/').filter(Boolean).pop() ?? path;
}

/** The newest transfer of checkpoint `name` from `site`, if this server ran one. */
export function latestTransfer(transfers: TransferView[], site: string, name: string): TransferView | undefined {
  return transfers.find(t => t.site === site && t.name === name);
}

/** A transfer's progress in words: bytes done of all, rate and time left while it runs. */
export function transferText(t: TransferView): string {
  if (t.state !== 'running' && !t.bytes_total) {
    return 'nothing left to send'; // every file was there already (staged by an earlier copy, or the same)
  }
  const parts = [`${formatBytes(t.bytes_done)} of ${formatBytes(t.bytes_total)}`];
  if (t.files_total > 1) {
    parts.push(`${t.files_done} of ${t.files_total} files`);
  }
  if (t.state === 'running') {
    parts.push(`${formatBytes(Math.round(t.rate))}/s`);
    if (t.cancelling) {
      parts.push('cancelling...');
    } else if (t.eta_s !== null) {
      parts.push(`${formatElapsed(Math.ceil(t.eta_s))} left`);
    }
  }
  return parts.join(' · ');
}
