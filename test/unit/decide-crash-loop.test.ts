/**
 * decide(): a standby whose postgres dies at every start is restarted in place a few times, then
 * rewound (re-cloned if rewind is impossible) instead of being restarted forever; a leader in the
 * same situation releases the lead after the TTL (rule C1), which other tests cover.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CRASHES_BEFORE_REJOIN, decide } from '../../src/ha/decide.js';
import { memberRecord, observation, primaryRecord, reachable, stopped } from '../builders/observation-builder.js';

const dcs = reachable({ leader: 'node2', members: [primaryRecord({ name: 'node2' }), memberRecord({ name: 'node1' })] });

void describe('decide: a standby that keeps failing to start', () => {
  void it('restarts it in place while it has crashed fewer than CRASHES_BEFORE_REJOIN times', () => {
    for (let crashes = 0; crashes < CRASHES_BEFORE_REJOIN; crashes += 1) {
      const d = decide(observation({ dcs, pg: stopped({ crashed: true }), consecutiveCrashes: crashes }));
      assert.deepEqual(d.actions, [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }], `after ${crashes} crashes`);
    }
  });

  void it('rejoins the leader (rewind, else re-clone) once it crashed CRASHES_BEFORE_REJOIN times in a row', () => {
    const d = decide(observation({ dcs, pg: stopped({ crashed: true }), consecutiveCrashes: CRASHES_BEFORE_REJOIN }));
    assert.deepEqual(d.actions, [{ kind: 'rejoin', leader: 'node2' }]);
    assert.match(d.summary, /failed to start 3 times/);
  });

  void it('does not count a clean stop as a failed start', () => {
    const d = decide(observation({ dcs, pg: stopped({ crashed: false }), consecutiveCrashes: CRASHES_BEFORE_REJOIN }));
    assert.deepEqual(d.actions, [{ kind: 'start-postgres', mode: 'standby', upstream: 'node2' }]);
  });
});
