// The sites pane: each site's reach, roles and jurisdiction, its accelerators per node (the run on each card), its lease.
import { Card, Node, Site, SiteReading } from './api';
import { el } from './dom';
import { SplitModel } from './model';
import { siteExtras } from './logic';
import { list, listRow, Pane } from './pane';
import { acceleratorText, Badge, cardFigures, cardGroups, leaseText, leaseTone, nodeText, rayText, siteBadges } from './sitelogic';

/** The sites pane: a row per site with its roles, reach, lease and each node's cards. */
export class SitesPane extends Pane {
  constructor(private readonly _model: SplitModel) {
    super('sites', 'Sites');
  }

  protected render(): { items: HTMLElement[]; count: number | null } {
    const sites = this._model.sites;
    if (!sites.length) {
      return { items: [el('div', { class: 'jp-split-empty' }, 'Loading sites...')], count: null };
    }
    const keys = sites.map(s => s.name);
    const rows = sites.map(site => this._site(site, this.isTabStop(site.name, keys)));
    return { items: [list('Sites', rows)], count: sites.length };
  }

  private _site(site: Site, stop: boolean): HTMLElement {
    const m = this._model;
    const reading = m.readings.get(site.name);
    const lease = m.leases.get(site.name);
    const status = site.reachable
      ? `reachable${typeof site.latency_ms === 'number' ? ` · ${Math.round(site.latency_ms)} ms` : ''}`
      : `unreachable${site.error ? `: ${site.error}` : ''}`;
    const badges = siteBadges(site, m.experiment);
    const tone = leaseTone(lease);
    const label = [site.name, ...badges.map(b => b.title), status].join(', ');
    return listRow(
      site.name,
      stop,
      label,
      {
        class: 'jp-split-site',
        'data-site': site.name,
        'data-reachable': String(site.reachable),
        'data-home': String(site.home),
        'data-remote': String(m.experiment?.default_remote === site.name)
      },
      el(
        'div',
        { class: 'jp-split-row jp-split-site-head' },
        el('span', { class: `jp-split-dot ${site.reachable ? 'jp-mod-ok' : 'jp-mod-bad'}`, 'aria-hidden': 'true' }),
        el('b', { class: 'jp-split-name', title: site.home ? 'the home site' : undefined }, site.name),
        ...badges.map(badge)
      ),
      el('div', { class: 'jp-split-detail' }, `${site.executor} · ${acceleratorText(site.accelerator, reading)} · ${status}`),
      // the host's name is the first node's own line once the cards were read
      ...siteExtras(site)
        .filter(line => !reading?.nodes.some(n => line === `host ${n.node}`))
        .map(line => el('div', { class: 'jp-split-detail' }, line)),
      lease && (lease.configured || lease.hours > 0)
        ? el('div', { class: `jp-split-lease${tone ? ` jp-split-tone-${tone}` : ''}`, 'data-lease': tone ?? 'none' }, leaseText(lease))
        : null,
      reading ? readingView(reading) : el('div', { class: 'jp-split-detail' }, 'accelerators: reading...')
    );
  }
}

function badge(b: Badge): HTMLElement {
  return el('span', { class: `jp-split-badge jp-split-badge-${b.kind}`, title: b.title, 'aria-label': b.title }, b.text);
}

function readingView(reading: SiteReading): HTMLElement {
  const errors = [...reading.errors, ...reading.nodes.flatMap(n => n.errors), ...(reading.slurm?.errors ?? []), ...(reading.ray?.errors ?? [])];
  return el(
    'div',
    { class: 'jp-split-reading' },
    ...reading.nodes.map(nodeView),
    reading.slurm ? slurmView(reading.slurm) : null,
    reading.ray ? el('div', { class: 'jp-split-detail jp-split-ray' }, `Ray: ${rayText(reading.ray)}`) : null,
    ...errors.map(text => el('div', { class: 'jp-split-error', role: 'status' }, text))
  );
}

function nodeView(node: Node): HTMLElement {
  const groups = cardGroups(node);
  return el(
    'div',
    { class: 'jp-split-node', 'data-node': node.node ?? '', 'data-role': node.role ?? 'host', 'data-job': node.job },
    el('div', { class: 'jp-split-detail' }, nodeText(node)),
    node.cards.length
      ? el('div', { class: 'jp-split-detail jp-split-groups' }, groups.map(g => g.text).join('; '))
      : el('div', { class: 'jp-split-detail' }, 'no accelerator cards found (cpu)'),
    node.cards.length ? el('ul', { class: 'jp-split-cards', role: 'list', 'aria-label': `Accelerators of ${node.node ?? 'the host'}` }, ...node.cards.map(cardRow)) : null
  );
}

function cardRow(card: Card): HTMLElement {
  const { label, figures } = cardFigures(card);
  return el(
    'li',
    { class: 'jp-split-card', 'data-vendor': card.vendor, 'data-index': String(card.index), 'data-run': card.run ?? '' },
    el('span', { class: 'jp-split-card-model', title: `${card.vendor}, read with ${card.tool}` }, label),
    el('span', { class: 'jp-split-card-figures' }, figures.join(' · ')),
    el('span', { class: 'jp-split-card-run', title: card.run ?? 'no run of this experiment holds it' }, card.run ? `run ${card.run}` : 'free')
  );
}

function slurmView(slurm: NonNullable<SiteReading['slurm']>): HTMLElement {
  const nodes = slurm.nodes.map(n => `${n.node} ${n.state} ${n.cpus_allocated}/${n.cpus_total} CPUs${n.gres && n.gres !== '(null)' ? ` ${n.gres}` : ''}`);
  const jobs = slurm.jobs.map(j => `job ${j.job_id} ${j.state}${j.run ? ` (${j.run})` : ''} ${j.elapsed}`);
  return el(
    'div',
    { class: 'jp-split-slurm' },
    nodes.length ? el('div', { class: 'jp-split-detail' }, `Slurm nodes: ${nodes.join('; ')}`) : null,
    jobs.length ? el('div', { class: 'jp-split-detail' }, `jobs: ${jobs.join('; ')}`) : null
  );
}
