import { describe, expect, it } from '@jest/globals';

import { FakeServer, modelOf } from './fakeserver';
import { borderQuery, localMidnight, narrowed, NO_FILTER, periodStart, todayText } from '../src/borderlogic';

// Whatever time zone the tests run in: the string names the page's own midnight, offset and all.
const NOW = new Date(2026, 11, 7, 15, 30); // 7 December 2026, 15:30 on the page's clock

describe('localMidnight', () => {
  it("names the page's midnight with its UTC offset, so the server reads the user's day", () => {
    const text = localMidnight(NOW);
    expect(text).toMatch(/^2026-12-07T00:00:00[+-]\d{2}:\d{2}$/);
    expect(Date.parse(text)).toBe(new Date(2026, 11, 7).getTime());
  });

  it('starts a period of days with today the last of them', () => {
    expect(periodStart(NOW, 1)).toBe(localMidnight(NOW));
    expect(Date.parse(periodStart(NOW, 7))).toBe(new Date(2026, 11, 1).getTime());
    expect(Date.parse(periodStart(NOW, 30))).toBe(new Date(2026, 10, 8).getTime()); // across a month
  });
});

describe('borderQuery', () => {
  it("always says when today began; the filters only where they are on", () => {
    const query = new URLSearchParams(borderQuery(NO_FILTER, NOW));
    expect(Array.from(query.keys())).toEqual(['today']);
    expect(query.get('today')).toBe(localMidnight(NOW));
  });

  it('asks for the decision, site, kind and first day', () => {
    const query = new URLSearchParams(
      borderQuery({ decision: 'refused', site: 'abroad', kind: 'copy', days: 7 }, NOW)
    );
    expect(query.get('decision')).toBe('refused');
    expect(query.get('site')).toBe('abroad');
    expect(query.get('kind')).toBe('copy');
    expect(query.get('since')).toBe(periodStart(NOW, 7));
    // an offset's "+" travels encoded, not as a space
    expect(borderQuery({ ...NO_FILTER, days: 1 }, NOW)).not.toMatch(/T00:00:00\+/);
  });

  it('tells a narrowed filter from a decision alone', () => {
    expect(narrowed({ ...NO_FILTER, decision: 'refused' })).toBe(false);
    expect(narrowed({ ...NO_FILTER, site: 'home' })).toBe(true);
    expect(narrowed({ ...NO_FILTER, days: 1 })).toBe(true);
  });
});

describe('todayText', () => {
  it("says today's refusals and declassifications, none before the first answer", () => {
    expect(todayText({ allowed: 4, refused: 2, declassified: 1 })).toBe('today: 2 refused · 1 declassified');
    expect(todayText(undefined)).toBe('today: 0 refused · 0 declassified');
  });
});

describe("the border pane's heading", () => {
  it("counts today's refusals, as the today line does, not the filtered page's", async () => {
    const model = modelOf(new FakeServer());
    expect(model.refusedToday).toBeNull(); // before the first answer
    await model.refresh();
    expect(model.refusedToday).toBe(3);
  });
});
