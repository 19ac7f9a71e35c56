// Pure helpers of the border pane: its filters as GET border's query, and today's counts in words. No DOM.

/** What the border pane shows of the audit log; '' (null for the decision) is any. */
export interface BorderFilter {
  decision: 'allowed' | 'refused' | 'declassified' | null;
  site: string;
  /** A kind of transfer (copy, variable, cell, declassify, ...), as the audit log names it. */
  kind: string;
  /**
   * The days shown, today among them (1: today, 7: the last seven days); 0 is all time. Kept as a
   * number of days, not a date, so that "today" is still today after midnight.
   */
  days: number;
}

export const NO_FILTER: BorderFilter = { decision: null, site: '', kind: '', days: 0 };

/** The choices of the date filter: days (see `BorderFilter.days`) and their words. */
export const PERIODS: { days: number; label: string }[] = [
  { days: 0, label: 'any time' },
  { days: 1, label: 'today' },
  { days: 7, label: 'last 7 days' },
  { days: 30, label: 'last 30 days' },
  { days: 365, label: 'last 365 days' }
];

/**
 * The start of a day in the page's time zone, as ISO 8601 with its UTC offset
 * (`2026-12-07T00:00:00+08:00`): the server reads a bare date as UTC, so the page says which midnight
 * it means, and "today" and "since" are the user's days wherever the server runs.
 */
export function localMidnight(day: Date): string {
  const date = new Date(day.getFullYear(), day.getMonth(), day.getDate());
  const two = (n: number) => String(n).padStart(2, '0');
  const offset = -date.getTimezoneOffset(); // minutes east of UTC at that midnight
  const sign = offset < 0 ? '-' : '+';
  const zone = `${sign}${two(Math.floor(Math.abs(offset) / 60))}:${two(Math.abs(offset) % 60)}`;
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}T00:00:00${zone}`;
}

/** The midnight that begins the last `days` days to `now` (today the last of them), as `localMidnight`. */
export function periodStart(now: Date, days: number): string {
  return localMidnight(new Date(now.getFullYear(), now.getMonth(), now.getDate() - (days - 1)));
}

/** The query of GET border for `filter`, with when the page's today began (`now`'s midnight). */
export function borderQuery(filter: BorderFilter, now: Date): string {
  const params = new URLSearchParams();
  if (filter.decision) {
    params.set('decision', filter.decision);
  }
  if (filter.site) {
    params.set('site', filter.site);
  }
  if (filter.kind) {
    params.set('kind', filter.kind);
  }
  if (filter.days > 0) {
    params.set('since', periodStart(now, filter.days));
  }
  params.set('today', localMidnight(now));
  return params.toString();
}

/** Whether any filter but the decision is on (the counts are then of what passes them). */
export function narrowed(filter: BorderFilter): boolean {
  return Boolean(filter.site || filter.kind || filter.days);
}

/** Today's refusals and declassifications, at a glance: "today: 2 refused · 1 declassified". */
export function todayText(today: Record<string, number> | undefined): string {
  const refused = today?.refused ?? 0;
  const declassified = today?.declassified ?? 0;
  return `today: ${refused} refused · ${declassified} declassified`;
}
