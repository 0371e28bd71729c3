// TunContinuation: the segments of a TUN super-segment left in the device when a batch ran out of
// slots are read on the next turns (both data paths use it), one continuation queued at a time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TunContinuation } from "./tun-udp.js";

/**
 * A device holding `left` segments of a super-segment read earlier: a batch takes up to `slots`
 * of them, as TunDevice.readBatch does with its scratch buffer.
 */
class SplitDevice {
  batches: number[] = [];
  constructor(
    private left: number,
    private readonly slots: number,
  ) {}
  pending(): boolean {
    return this.left > 0;
  }
  read(): void {
    const n = Math.min(this.left, this.slots);
    this.left -= n;
    this.batches.push(n);
  }
}

test("reads the rest of a super-segment on the next turns until the device holds none", async () => {
  const dev = new SplitDevice(46 + 40, 16);
  let wakeups = 0;
  const done = new Promise<void>((resolve) => {
    const c = new TunContinuation(() => wakeup());
    // A data path's readiness handler: one batch, then the continuation check.
    const wakeup = (): void => {
      wakeups++;
      dev.read();
      c.after(dev);
      // A second wake-up before the queued one (the fd readable again) queues nothing more.
      c.after(dev);
      if (!dev.pending()) resolve();
    };
    wakeup();
  });
  await done;
  assert.deepEqual(dev.batches, [16, 16, 16, 16, 16, 6]);
  assert.equal(wakeups, 6);
});

test("queues nothing when the device holds no segments", async () => {
  let resumed = 0;
  const c = new TunContinuation(() => resumed++);
  c.after({ pending: () => false });
  await new Promise((r) => setImmediate(r));
  assert.equal(resumed, 0);
});

test("queues one continuation however often it is asked before it runs", async () => {
  let resumed = 0;
  const c = new TunContinuation(() => resumed++);
  const dev = { pending: () => true };
  c.after(dev);
  c.after(dev);
  c.after(dev);
  await new Promise((r) => setImmediate(r));
  assert.equal(resumed, 1);
  // Once it ran, the next check may queue again.
  c.after(dev);
  await new Promise((r) => setImmediate(r));
  assert.equal(resumed, 2);
});
