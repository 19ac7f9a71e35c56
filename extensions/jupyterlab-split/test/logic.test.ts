import { describe, expect, it } from '@jest/globals';

import {
  attachCode,
  cellSite,
  countActive,
  eventToOutput,
  formatBytes,
  formatElapsed,
  RunStateInfo,
  RunStates,
  runElapsed,
  setSiteLine,
  siteExtras,
  transferTarget
} from '../src/logic';

// As GET /jupyter-split/states serves them (jupyter_split/runs/events.py), in part.
const SERVED: RunStateInfo[] = [
  { name: 'queued', terminal: false, style: 'active', meaning: 'waiting' },
  { name: 'running', terminal: false, style: 'active', meaning: 'executing' },
  { name: 'preempted', terminal: false, style: 'warn', meaning: 'about to be preempted' },
  { name: 'succeeded', terminal: true, style: 'ok', meaning: 'finished' },
  { name: 'failed', terminal: true, style: 'bad', meaning: 'raised' },
  { name: 'cancelled', terminal: true, style: 'warn', meaning: 'cancelled' },
  { name: 'interrupted', terminal: true, style: 'warn', meaning: 'interrupted' }
];
const states = new RunStates(SERVED);

describe('setSiteLine', () => {
  it('puts %%on SITE above plain code', () => {
    expect(setSiteLine('x = 1\nprint(x)', 'home')).toBe('%%on home\nx = 1\nprint(x)');
  });

  it('fills an empty cell', () => {
    expect(setSiteLine('', 'abroad')).toBe('%%on abroad\n');
  });

  it('replaces the site of an %%on line and keeps its options', () => {
    expect(setSiteLine('%%on abroad --in a,b --detach\nfit()', 'home')).toBe('%%on home --in a,b --detach\nfit()');
  });

  it('turns %%remote_gpu SITE into %%on with the same options', () => {
    expect(setSiteLine('%%remote_gpu sg --gpus 2\nfit()', 'home')).toBe('%%on home --gpus 2\nfit()');
  });

  it('keeps the options of a %%remote_gpu line without a site', () => {
    expect(setSiteLine('%%remote_gpu --gpus 8 --nodes 2\nfit()', 'sg')).toBe('%%on sg --gpus 8 --nodes 2\nfit()');
  });

  it('does not mistake another cell magic for a site line', () => {
    expect(setSiteLine('%%time\nfit()', 'home')).toBe('%%on home\n%%time\nfit()');
  });

  it('leaves a line that only starts like %%on alone', () => {
    expect(setSiteLine('%%onward\n1', 'home')).toBe('%%on home\n%%onward\n1');
  });

  it('rewrites a one-line cell', () => {
    expect(setSiteLine('%%on abroad', 'home')).toBe('%%on home');
  });
});

describe('cellSite', () => {
  it.each([
    ['%%on home\n1', 'home'],
    ['%%remote_gpu sg --gpus 2\n1', 'sg'],
    ['%%remote_gpu --gpus 2\n1', null],
    ['print(1)', null]
  ])('%j targets %j', (source, site) => {
    expect(cellSite(source)).toBe(site);
  });
});

describe('formatting', () => {
  it.each([
    [0, '0s'],
    [59.9, '59s'],
    [61, '1m 01s'],
    [3600, '1h 00m'],
    [7322, '2h 02m'],
    [-5, '0s']
  ])('%s seconds read %s', (seconds, text) => {
    expect(formatElapsed(seconds)).toBe(text);
  });

  it('counts an active run to now and an ended one to its last update', () => {
    expect(runElapsed({ state: 'running', created: 100, updated: 110 }, 190, states)).toBe('1m 30s');
    expect(runElapsed({ state: 'succeeded', created: 100, updated: 110 }, 190, states)).toBe('10s');
    expect(runElapsed({ state: 'interrupted', created: 100, updated: 110 }, 190, states)).toBe('10s');
  });

  it.each([
    [999, '999 B'],
    [1500, '1.5 KB'],
    [25_000_000, '25 MB'],
    [3.2e9, '3.2 GB']
  ])('%s bytes read %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('run states from the server', () => {
  it('ends a run only in a state the server calls terminal, interrupted included', () => {
    expect(SERVED.filter(s => states.isTerminal(s.name)).map(s => s.name)).toEqual([
      'succeeded',
      'failed',
      'cancelled',
      'interrupted'
    ]);
    expect(states.isActive('preempted')).toBe(true);
  });

  it('follows a state it was not told of, and knows none before the server answers', () => {
    expect(states.isTerminal('rebooting')).toBe(false);
    expect(new RunStates([]).isTerminal('succeeded')).toBe(false);
  });

  it('gives each badge the style the server names', () => {
    expect(states.badgeClass('interrupted')).toBe('jp-split-state jp-split-state-warn');
    expect(states.badgeClass('succeeded')).toBe('jp-split-state jp-split-state-ok');
    expect(states.badgeClass('queued')).toBe('jp-split-state jp-split-state-active');
    expect(states.badgeClass('rebooting')).toBe('jp-split-state');
    expect(states.meaning('failed')).toBe('raised');
    expect(states.meaning('rebooting')).toBe('rebooting');
  });

  it('counts only runs in progress', () => {
    const runs = ['running', 'queued', 'succeeded', 'failed', 'interrupted', 'cancelled', 'preempted'];
    expect(countActive(runs.map(state => ({ state })), states)).toBe(3);
  });
});

describe('attachCode', () => {
  it('loads the magics before attaching, so a fresh kernel can run it', () => {
    expect(attachCode('demo-home-1')).toBe('%load_ext jupyter_split\n%split attach demo-home-1');
  });
});

describe('eventToOutput', () => {
  it('maps stream, display, result and error records to nbformat outputs', () => {
    expect(eventToOutput({ seq: 1, type: 'stream', name: 'stdout', text: 'hi\n' })).toEqual({
      output_type: 'stream',
      name: 'stdout',
      text: 'hi\n'
    });
    expect(eventToOutput({ type: 'display', data: { 'text/plain': 'x' } })).toEqual({
      output_type: 'display_data',
      data: { 'text/plain': 'x' },
      metadata: {}
    });
    expect(eventToOutput({ type: 'result', data: { 'text/plain': '2' }, execution_count: 3 })).toMatchObject({
      output_type: 'execute_result',
      execution_count: 3
    });
    expect(eventToOutput({ type: 'error', ename: 'ValueError', evalue: 'bad', traceback: ['t'] })).toEqual({
      output_type: 'error',
      ename: 'ValueError',
      evalue: 'bad',
      traceback: ['t']
    });
  });

  it('skips records that are not output', () => {
    expect(eventToOutput({ type: 'status', state: 'running' })).toBeNull();
    expect(eventToOutput({ type: 'progress', done: 1, total: 2 })).toBeNull();
  });
});

describe('transferTarget', () => {
  const experiment = { home: 'home', default_remote: 'abroad' };
  it('sends home checkpoints abroad and everything else home', () => {
    expect(transferTarget('home', experiment)).toBe('abroad');
    expect(transferTarget('abroad', experiment)).toBe('home');
    expect(transferTarget('sg2', experiment)).toBe('home');
  });
});

describe('siteExtras', () => {
  it('reads the host, Slurm partitions, Ray and GPUs', () => {
    expect(
      siteExtras({ host: 'login1', slurm: ['gpu* up 4 idle', 'debug down 1 drain'], ray: '2.40.0', gpus: 8 })
    ).toEqual(['host login1', 'queues: gpu* 4×idle, debug (down) 1×drain', 'Ray 2.40.0', 'GPUs 8']);
  });

  it('passes on why sinfo failed, and says nothing of what it was not told', () => {
    expect(siteExtras({ slurm: 'sinfo failed: no controller' })).toEqual(['sinfo failed: no controller']);
    expect(siteExtras({})).toEqual([]);
  });
});
