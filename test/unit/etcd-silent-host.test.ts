/**
 * SilentHostSkipper (src/dcs/etcd-dcs.ts): the per-member policy that makes the etcd3 pool pass
 * over a member that recently let a call run into its deadline or refused it, while another member
 * has not; a member is never passed over when every member is (an etcd-wide stall skips nobody).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GRPCDeadlineExceededError, GRPCUnavailableError, EtcdLeaseInvalidError } from 'etcd3';
import { SilentHostSkipper } from '../../src/dcs/etcd-dcs.js';
import { FakeClock } from '../../src/shared/clock.js';

const A = 'https://10.0.0.1:2379';
const B = 'https://10.0.0.2:2379';
const C = 'https://10.0.0.3:2379';

function setup(): { clock: FakeClock; skipper: SilentHostSkipper } {
  const clock = new FakeClock();
  const skipper = new SilentHostSkipper(clock, 10_000);
  for (const host of [A, B, C]) skipper.policyFor(host);
  return { clock, skipper };
}

void describe('SilentHostSkipper', () => {
  void it('passes over a member after a deadline or an unavailable error, until the skip time ends', () => {
    const { clock, skipper } = setup();
    assert.equal(skipper.skips(A), false);
    skipper.record(A, new GRPCDeadlineExceededError('Deadline exceeded'));
    assert.equal(skipper.skips(A), true);
    assert.equal(skipper.skips(B), false);
    clock.advance(9_999);
    assert.equal(skipper.skips(A), true);
    clock.advance(1);
    assert.equal(skipper.skips(A), false, 'tried again once the skip time is over');
    skipper.record(B, new GRPCUnavailableError('connection refused'));
    assert.equal(skipper.skips(B), true);
  });

  void it('does not pass over a member for answers that are not silence, and forgets it after a success', () => {
    const { skipper } = setup();
    skipper.record(A, new EtcdLeaseInvalidError('lease not found'));
    assert.equal(skipper.skips(A), false, 'etcd answered: the member is alive');
    skipper.record(A, new GRPCDeadlineExceededError('Deadline exceeded'));
    skipper.record(A, null);
    assert.equal(skipper.skips(A), false);
  });

  void it('passes over nobody when every member is being passed over', () => {
    const { skipper } = setup();
    for (const host of [A, B]) skipper.record(host, new GRPCDeadlineExceededError('Deadline exceeded'));
    assert.equal(skipper.skips(A), true);
    assert.equal(skipper.skips(C), false);
    skipper.record(C, new GRPCDeadlineExceededError('Deadline exceeded'));
    assert.deepEqual([A, B, C].map((h) => skipper.skips(h)), [false, false, false]);
  });

  void it('refuses a call to a passed-over member before running it (the pool then tries the next one)', async () => {
    const clock = new FakeClock();
    const skipper = new SilentHostSkipper(clock, 10_000);
    const a = skipper.policyFor(A);
    const b = skipper.policyFor(B);
    await assert.rejects(a.execute(() => Promise.reject(new GRPCDeadlineExceededError('Deadline exceeded'))), GRPCDeadlineExceededError);
    let ran = false;
    await assert.rejects(
      a.execute(() => {
        ran = true;
        return 1;
      }),
      (error: unknown) => error instanceof Error && /did not answer recently/.test(error.message),
    );
    assert.equal(ran, false);
    assert.equal(await b.execute(() => 2), 2);
  });
});
