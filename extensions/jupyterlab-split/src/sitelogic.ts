// Pure helpers of the sites pane: a site's roles, its accelerators and its lease in words. No DOM.
import { baseName } from './listlogic';
import { formatBytes, formatElapsed } from './logic';
import { Card, Experiment, Node, Session, SessionRun, SiteLease, SiteReading } from './types';

/** A badge of a site's row: its text, what it means (the tooltip and the accessible name) and its kind. */
export interface Badge {
  text: string;
  title: string;
  kind: 'jurisdiction' | 'home' | 'remote';
}

/**
 * A site's badges: its jurisdiction, and its roles in the experiment (the home site, the site
 * `%%remote_gpu` goes to without a site), both from the server. A role whose word is the site's
 * own name is not repeated: the home site named `home` reads "home CN", not "home home CN".
 */
export function siteBadges(site: { name: string; jurisdiction: string; home: boolean }, experiment: Experiment | null): Badge[] {
  const badges: Badge[] = [];
  if (site.home && site.name !== 'home') {
    badges.push({ text: 'home', title: 'the home site', kind: 'home' });
  }
  if (experiment && experiment.default_remote === site.name) {
    badges.push({ text: '%%remote_gpu', title: 'where %%remote_gpu runs a cell that names no site', kind: 'remote' });
  }
  const where = site.home ? `jurisdiction ${site.jurisdiction}, the home site` : `jurisdiction ${site.jurisdiction}`;
  badges.push({ text: site.jurisdiction, title: where, kind: 'jurisdiction' });
  return badges;
}

/** The vendors whose cards a reading found, in order of first appearance. */
export function vendorsFound(reading: SiteReading | undefined): string[] {
  const vendors: string[] = [];
  for (const node of reading?.nodes ?? []) {
    for (const card of node.cards) {
      if (!vendors.includes(card.vendor)) {
        vendors.push(card.vendor);
      }
    }
  }
  return vendors;
}

/** The accelerator as configured, and for `auto` what the site's tools found (or that none was read yet). */
export function acceleratorText(configured: string, reading: SiteReading | undefined): string {
  if (configured !== 'auto') {
    return configured;
  }
  if (!reading) {
    return 'auto';
  }
  const vendors = vendorsFound(reading);
  return `auto: ${vendors.length ? vendors.join(', ') : 'no accelerator found, cpu'}`;
}

/** Cards grouped by model: "2 × NVIDIA H100 80GB HBM3 · 12% busy", one line per model. */
export function cardGroups(node: Node): { model: string; vendor: string; count: number; text: string }[] {
  const groups = new Map<string, Card[]>();
  for (const card of node.cards) {
    const key = `${card.vendor}\u0000${card.model}`;
    groups.set(key, [...(groups.get(key) ?? []), card]);
  }
  return Array.from(groups.values()).map(cards => {
    const busy = cards.map(c => c.utilisation).filter((u): u is number => u !== null);
    const mean = busy.length ? `${Math.round(busy.reduce((a, b) => a + b, 0) / busy.length)}% busy` : 'use not given';
    const held = cards.filter(c => c.run).length;
    const parts = [`${cards.length} × ${cards[0].model}`, mean, held ? `${held} held` : ''];
    return { model: cards[0].model, vendor: cards[0].vendor, count: cards.length, text: parts.filter(Boolean).join(' · ') };
  });
}

/** MiB as GiB with one decimal, as `jupyter-split top` writes them. */
export function gib(mib: number): string {
  return (mib / 1024).toFixed(1);
}

/** One card in words: index and model, then each figure its tool gives (none is made up). */
export function cardFigures(card: Card): { label: string; figures: string[] } {
  const figures: string[] = [];
  if (card.utilisation !== null) {
    figures.push(`${Math.round(card.utilisation)}%`);
  }
  if (card.memory_used !== null && card.memory_total !== null) {
    figures.push(`${gib(card.memory_used)}/${gib(card.memory_total)} GiB`);
  } else if (card.memory_percent !== null) {
    figures.push(`memory ${Math.round(card.memory_percent)}%`);
  }
  if (card.temperature !== null) {
    figures.push(`${Math.round(card.temperature)}°C`);
  }
  if (card.power !== null) {
    figures.push(`${Math.round(card.power)} W`);
  }
  return { label: `#${card.index} ${card.model}`, figures };
}

/** A node's host in words: name, CPU use and count, memory used/total. */
export function nodeText(node: Node): string {
  const name = node.node ?? 'unknown host';
  const role =
    node.role === 'login' ? ' (login node)' : node.role === 'compute' ? ` (job ${node.job}${node.run ? `, run ${node.run}` : ''})` : '';
  const parts = [name + role];
  const { percent, count } = node.cpu;
  if (percent !== undefined && percent !== null) {
    parts.push(`CPU ${Math.round(percent)}%${count ? ` of ${count}` : ''}`);
  }
  if (node.memory.total) {
    parts.push(`memory ${gib(node.memory.used ?? 0)}/${gib(node.memory.total)} GiB`);
  }
  return parts.join(' · ');
}

function hours(value: number): string {
  return `${Number(value.toFixed(value < 10 ? 2 : 1))} GPU-h`;
}

function money(value: number, currency: string | null): string {
  return `${value.toFixed(2)}${currency ? ` ${currency}` : ''}`;
}

/** A site's lease in one line: what is left of it (or that none is configured), what was used and what it cost. */
export function leaseText(lease: SiteLease | undefined): string {
  if (!lease) {
    return '';
  }
  const used = lease.lease.monthly ? lease.month_hours : lease.hours;
  const parts: string[] = [];
  if (lease.left !== null && lease.lease.gpu_hours !== null) {
    parts.push(`${hours(Math.max(0, lease.left))} left of ${hours(lease.lease.gpu_hours)}${lease.lease.monthly ? ' this month' : ''}`);
    if (lease.left < 0) {
      parts.push(`${hours(-lease.left)} over`);
    }
  } else {
    parts.push(lease.configured ? 'no hours leased' : 'no lease configured');
  }
  parts.push(`${hours(used)} used${lease.lease.monthly ? '' : ` (${hours(lease.month_hours)} this month)`}`);
  if (lease.cost !== null) {
    parts.push(money(lease.lease.monthly ? lease.month_cost ?? 0 : lease.cost, lease.currency));
  }
  if (lease.days_left !== null) {
    parts.push(lease.days_left >= 0 ? `ends in ${lease.days_left} d` : `ended ${-lease.days_left} d ago`);
  }
  return `lease: ${parts.join(' · ')}`;
}

/** Whether a lease is spent (nothing left) or nearly (under a tenth left): the row says so in its tone. */
export function leaseTone(lease: SiteLease | undefined): 'ok' | 'warn' | 'bad' | null {
  if (!lease || lease.left === null || !lease.lease.gpu_hours) {
    return null;
  }
  if (lease.left <= 0) {
    return 'bad';
  }
  return lease.left < lease.lease.gpu_hours / 10 ? 'warn' : 'ok';
}

/** A session's process in words: pid, uptime (to `now`, seconds) and memory, each where known. */
export function sessionText(session: Session, now: number): string {
  const parts: string[] = [];
  if (session.pid !== null) {
    parts.push(`pid ${session.pid}`);
  }
  if (session.started !== null) {
    parts.push(`up ${formatElapsed(now - session.started)}`);
  }
  if (session.memory !== null) {
    parts.push(formatBytes(session.memory));
  }
  return parts.join(' · ');
}

/**
 * A cell given to a session in one line: its run (name or id), its execution count, the notebook it came
 * from (by its file name: two notebooks queue on one session) and its first line.
 */
export function sessionRunText(run: SessionRun): string {
  const count = run.count !== null ? ` [${run.count}]` : '';
  const notebook = run.notebook ? ` from ${baseName(run.notebook)}` : '';
  return `${run.name ?? run.run_id}${count}${notebook}${run.cell ? `: ${run.cell}` : ''}`;
}

/** A session's cell on hover: its run id, and the notebook it came from in full. */
export function sessionRunTitle(run: SessionRun): string {
  return run.notebook ? `${run.run_id}, from ${run.notebook}` : run.run_id;
}

/**
 * What the Cancel confirmation says cancelling does to `run` (`Split.cancel`): a run of its own has its
 * runner (or job) ended; a cell still queued on a site's session is taken out of the queue (the session,
 * the cell it executes and the rest of the queue go on); a cell the session runs ends that session, as
 * Stop in the sessions pane does, since the signal goes to the session's runner: its variables are lost,
 * every cell queued on it ends cancelled, and the next cell on the site starts a fresh session. `session`
 * is the site's session as last reported (null where it is not known: the words stay general).
 */
export function cancelText(run: { run_id: string; site: string; mode: string; state: string }, session: Session | null): string {
  const kept = 'Its output so far stays in the event log.';
  if (run.mode !== 'session') {
    return `Cancel ${run.run_id}? Its runner on ${run.site} is stopped (SIGTERM, then SIGKILL after 10 s if it goes on). ${kept}`;
  }
  if (run.state === 'queued' || run.state === 'submitted') {
    return (
      `Cancel ${run.run_id}? It waits in the queue of the session on ${run.site}: it is taken out and never runs; ` +
      'the session, its variables, the cell it executes and the other queued cells go on. (Should it start ' +
      'meanwhile, cancelling ends the session instead, as for a running cell.)'
    );
  }
  const running = session?.running && session.running.run_id !== run.run_id ? session.running.run_id : null;
  const queued = session ? session.queue.filter(r => r.run_id !== run.run_id).length : null;
  const also = [
    running ? `the cell it executes (${running}) ends cancelled too` : null,
    queued === null
      ? 'every cell queued on it ends cancelled'
      : queued
        ? `${queued} cell${queued === 1 ? '' : 's'} queued on it end${queued === 1 ? 's' : ''} cancelled`
        : null
  ].filter(Boolean);
  const where = run.state === 'running' ? 'runs in' : 'waits on';
  return (
    `Cancel ${run.run_id}? It ${where} the session on ${run.site}, and cancelling ends that session, as Stop in ` +
    `the sessions pane does: its variables are lost${also.length ? `, ${also.join(', and ')}` : ''}; the next cell ` +
    `on ${run.site} starts a fresh session. ${kept}` +
    (run.state === 'running' ? ' To stop this cell alone and keep the session, interrupt it instead.' : '')
  );
}

/** A Ray cluster's resources in one line: "CPU 1/2 · GPU 0/4 · 1 node alive" (used where reported). */
export function rayText(ray: NonNullable<SiteReading['ray']>): string {
  const resources = Object.entries(ray.resources)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, r]) => `${name} ${r.used === null ? '' : `${Number(r.used.toFixed(2))}/`}${Number(r.total.toFixed(2))}`);
  const alive = ray.nodes.filter(n => n.state === 'ALIVE').length;
  return [...resources, `${alive} of ${ray.nodes.length} node${ray.nodes.length === 1 ? '' : 's'} alive`].join(' · ');
}

/** What a run used of its site's lease: "2 cards · 0.5 GPU-h · 1.25 USD" (a cost where a price is set). */
export function runCostText(row: { cards: number; hours: number; cost: number | null }, currency: string | null): string {
  const parts = [`${row.cards} card${row.cards === 1 ? '' : 's'}`, hours(row.hours)];
  if (row.cost !== null) {
    parts.push(money(row.cost, currency));
  }
  return parts.join(' · ');
}

/** The experiment's use of every lease in one line: accelerator-hours, and the cost per currency. */
export function experimentUseText(use: { hours: number; cost: Record<string, number> }): string {
  const costs = Object.entries(use.cost).map(([currency, value]) => money(value, currency === '?' ? null : currency));
  return [hours(use.hours), ...costs].join(' · ');
}
