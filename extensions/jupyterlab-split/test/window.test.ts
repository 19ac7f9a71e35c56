import { describe, expect, it } from '@jest/globals';

import { headCut, leftOutNote, OutputWindow, shortLine } from '../src/window';

const RUN = 'demo-home-20260101-000000-abcdef';
const SHAPE = { lines: 10, long_line: 40 };

function lines(from: number, to: number): string {
  let text = '';
  for (let i = from; i < to; i++) {
    text += `line ${i}\n`;
  }
  return text;
}

function stream(seq: number, text: string, name = 'stdout') {
  return { seq, type: 'stream', name, text };
}

function bar(seq: number, percent: number, update: boolean) {
  return {
    seq,
    type: 'display',
    data: { 'text/plain': `${percent}%|###| ${percent}/100` },
    metadata: {},
    transient: { display_id: 'split-live-1' },
    live: true,
    ...(update ? { update: true } : {})
  };
}

/** All the text the window shows, as the panel's OutputArea would. */
function shown(window: OutputWindow): string {
  return window.outputs
    .map(o => (o.output_type === 'stream' ? String(o.text) : String((o.data as Record<string, string>)?.['text/plain'] ?? '')))
    .join('');
}

describe('headCut', () => {
  it('cuts after the lines that fit, or not at all', () => {
    expect(headCut('a\nb\nc\n', 2, 0, 40)).toBe(4);
    expect(headCut('a\nb\n', 2, 0, 40)).toBeNull(); // the last newline at the end: all of it fits
    expect(headCut('a\nb', 5, 0, 40)).toBeNull();
    expect(headCut('a\n', 0, 0, 40)).toBe(0);
  });

  it('cuts before a line that grows past long_line, counting what the open line holds', () => {
    expect(headCut('ab\n' + 'x'.repeat(50) + '\n', 10, 0, 40)).toBe(3);
    expect(headCut('xxxxx', 10, 38, 40)).toBe(0);
  });
});

describe('shortLine and leftOutNote', () => {
  it('cuts a long line and says by how much', () => {
    expect(shortLine('x'.repeat(45), 40)).toBe(`${'x'.repeat(40)}… (5 more characters)`);
    expect(shortLine('short', 40)).toBe('short');
    expect(shortLine('x'.repeat(40), 40, 1000)).toBe(`${'x'.repeat(40)}… (1,000 more characters)`);
  });

  it('names the lines and records left out and the logs command', () => {
    expect(leftOutNote(RUN, 0, 0)).toBe('');
    expect(leftOutNote(RUN, 19_990, 0)).toBe(
      `… 19,990 lines left out here: \`%split logs ${RUN}\` (\`jupyter-split logs ${RUN}\` in a terminal) shows them all\n`
    );
    expect(leftOutNote(RUN, 0, 1234)).toContain('… 1,234 earlier records left out here');
    expect(leftOutNote(RUN, 5, 1234)).toContain('… 1,234 earlier records and 5 lines left out here');
  });
});

describe('OutputWindow', () => {
  it('shows a short run as printed', () => {
    const window = new OutputWindow(SHAPE, RUN);
    window.add(stream(1, 'a\n'));
    window.add(stream(2, 'b\n'));
    window.add({ seq: 3, type: 'result', data: { 'text/plain': '42' }, execution_count: 1 });
    window.add({ seq: 4, type: 'status', state: 'succeeded', final: true });
    expect(window.outputs).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'a\nb\n' },
      { output_type: 'execute_result', data: { 'text/plain': '42' }, metadata: {}, execution_count: 1 }
    ]);
    expect(window.leftOut).toBe(0);
  });

  it('keeps the first half and the last lines of a long run, never more than the window', () => {
    const window = new OutputWindow(SHAPE, RUN);
    window.add(stream(1, lines(0, 7)));
    for (let seq = 2; seq < 2000; seq++) {
      window.add(stream(seq, lines(seq * 10, seq * 10 + 10)));
    }
    const text = shown(window);
    expect(text.startsWith(lines(0, 5))).toBe(true);
    expect(text.endsWith(lines(19_995, 20_000))).toBe(true);
    const total = 7 + 1998 * 10;
    expect(window.leftOut).toBe(total - 10);
    expect(text).toContain(`… ${(total - 10).toLocaleString('en-US')} lines left out here: \`%split logs ${RUN}\``);
    expect(window.heldLines).toBe(10);
    expect(text.split('\n').length - 1).toBe(11); // the window's lines and the note
  });

  it('folds a record of many lines without holding them (one batch of a fast printer)', () => {
    const window = new OutputWindow(SHAPE, RUN);
    window.add(stream(1, lines(0, 100_000)));
    expect(window.leftOut).toBe(100_000 - 10);
    expect(shown(window).endsWith(lines(99_995, 100_000))).toBe(true);
  });

  it('updates a progress bar in place by its display_id: one bar, its last state', () => {
    const window = new OutputWindow(SHAPE, RUN);
    window.add(stream(1, 'training\n'));
    window.add(bar(2, 0, false));
    for (let p = 1; p <= 100; p++) {
      window.add(bar(2 + p, p, true));
    }
    const bars = window.outputs.filter(o => o.output_type === 'display_data');
    expect(bars).toEqual([{ output_type: 'display_data', data: { 'text/plain': '100%|###| 100/100' }, metadata: {} }]);
  });

  it('shows an update of a display it never got (opened on the tail) once, then updates it', () => {
    const window = new OutputWindow(SHAPE, RUN, 500);
    window.add(bar(501, 40, true));
    window.add(bar(502, 41, true));
    expect(window.outputs.filter(o => o.output_type === 'display_data' && String((o.data as any)['text/plain']).includes('%|'))).toHaveLength(1);
    expect(shown(window)).toContain('… 500 earlier records left out here');
  });

  it('opened on the tail, holds the whole window as last lines under the note', () => {
    const window = new OutputWindow(SHAPE, RUN, 3);
    window.add(stream(4, lines(0, 25)));
    expect(window.outputs).toHaveLength(1);
    expect(shown(window)).toBe(leftOutNote(RUN, 15, 3) + lines(15, 25));
  });

  it('never drops the result, an error or rich output, and cuts long lines', () => {
    const window = new OutputWindow(SHAPE, RUN);
    window.add(stream(1, lines(0, 50)));
    window.add({ seq: 2, type: 'display', data: { 'image/png': 'iVBOR' }, metadata: {} });
    window.add(stream(3, 'y'.repeat(100) + '\n' + lines(50, 100)));
    window.add({ seq: 4, type: 'error', ename: 'ValueError', evalue: 'boom', traceback: ['tb'] });
    const kinds = window.outputs.map(o => o.output_type);
    expect(kinds).toEqual(['stream', 'display_data', 'display_data', 'error']);
    expect(window.outputs[2]).toEqual({ output_type: 'display_data', data: { 'image/png': 'iVBOR' }, metadata: {} });
    window.add(stream(5, 'z'.repeat(100) + '\n'));
    expect(shown(window)).toContain(`${'z'.repeat(40)}… (60 more characters)\n`);
  });

  it('says what to redraw: the tail in place, new outputs once, everything after a clear', () => {
    const window = new OutputWindow(SHAPE, RUN);
    window.add(stream(1, lines(0, 3)));
    expect(window.takeChanges()).toEqual({ cleared: false, set: [], addFrom: 0 });
    window.add(stream(2, lines(3, 30))); // the head's stream grows (drawn again), the tail is new
    expect(window.takeChanges()).toEqual({ cleared: false, set: [0], addFrom: 1 });
    window.add(stream(3, lines(30, 31)));
    expect(window.takeChanges()).toEqual({ cleared: false, set: [1], addFrom: 2 });
    window.add({ seq: 4, type: 'clear', wait: true });
    expect(window.outputs).toHaveLength(2); // held until the next output
    window.add(stream(5, 'fresh\n'));
    expect(window.takeChanges()).toEqual({ cleared: true, set: [], addFrom: 0 });
    expect(shown(window)).toBe('fresh\n');
  });
});
