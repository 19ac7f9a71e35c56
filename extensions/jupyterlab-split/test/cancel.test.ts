import { describe, expect, it } from '@jest/globals';

import { cancelText } from '../src/sitelogic';
import { Session, SessionRun } from '../src/types';

function cell(run_id: string, state: string): SessionRun {
  return { run_id, name: null, state, created: 0, count: null, cell: 'print(1)' };
}

const session: Session = {
  site: 'home', executor: 'local', supported: true, state: 'busy', session: 's1', pid: 42, started: 1000,
  memory: 52_000_000, running: cell('r-1', 'running'), queue: [cell('r-2', 'queued'), cell('r-3', 'queued')], errors: []
};

describe('cancelText', () => {
  it('says a run of its own has its runner stopped', () => {
    expect(cancelText({ run_id: 'r-9', site: 'sg', mode: 'detached', state: 'running' }, null)).toBe(
      'Cancel r-9? Its runner on sg is stopped (SIGTERM, then SIGKILL after 10 s if it goes on). ' +
        'Its output so far stays in the event log.'
    );
  });

  it("says cancelling a session's running cell ends the session, its variables and the cells queued on it", () => {
    expect(cancelText({ run_id: 'r-1', site: 'home', mode: 'session', state: 'running' }, session)).toBe(
      'Cancel r-1? It runs in the session on home, and cancelling ends that session, as Stop in the sessions pane ' +
        'does: its variables are lost, 2 cells queued on it end cancelled; the next cell on home starts a fresh ' +
        'session. Its output so far stays in the event log. To stop this cell alone and keep the session, ' +
        'interrupt it instead.'
    );
  });

  it('says a queued cell is taken out of the queue and the session goes on', () => {
    const text = cancelText({ run_id: 'r-3', site: 'home', mode: 'session', state: 'queued' }, session);
    expect(text).toBe(
      'Cancel r-3? It waits in the queue of the session on home: it is taken out and never runs; the session, ' +
        'its variables, the cell it executes and the other queued cells go on. (Should it start meanwhile, ' +
        'cancelling ends the session instead, as for a running cell.)'
    );
    expect(text).not.toContain('interrupt it instead');
  });

  it('stays general where the session is not known, and says nothing of a queue that is empty', () => {
    expect(cancelText({ run_id: 'r-1', site: 'home', mode: 'session', state: 'running' }, null)).toContain(
      'its variables are lost, every cell queued on it ends cancelled;'
    );
    const alone = { ...session, queue: [] };
    expect(cancelText({ run_id: 'r-1', site: 'home', mode: 'session', state: 'running' }, alone)).toContain(
      'its variables are lost; the next cell'
    );
  });
});
