import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { LeaseExpiredError, UnavailableError } from "./errors.js";
import { LeaseLivenessHold } from "./liveness.js";
import type { Lease } from "./types.js";

/**
 * A store's leases and one node's liveness record, as etcd keeps them: a lease lives while it is
 * renewed, the record is attached to the lease it was last written with and goes when that lease
 * ends. Each grant's record write applies and its answer returns after delays set per grant, so
 * a test can make writes apply in one order and their answers come back in another.
 */
class LeaseTable {
  private nextId = 1;
  private readonly alive = new Set<string>();
  private readonly renewed = new Set<string>();
  /** The lease the record is attached to; undefined: no record (the node is not live). */
  record: string | undefined;
  grants = 0;
  /** Per coming grant: ms until its record write applies, ms until its answer returns. */
  readonly timings: Array<[apply: number, answer: number]> = [];
  /** Keep-alives that fail as an unreachable store would, before the lease is looked at. */
  unavailable = 0;

  readonly grant = async (): Promise<Lease> => {
    const id = String(this.nextId++);
    this.grants++;
    this.alive.add(id);
    const [apply, answer] = this.timings.shift() ?? [0, 0];
    await sleep(apply);
    this.record = id;
    await sleep(answer - apply);
    return this.lease(id);
  };

  /** A TTL passes: every lease not renewed since the last call ends, with the record on it. */
  expireUnrenewed(): void {
    for (const id of [...this.alive])
      if (!this.renewed.has(id)) {
        this.alive.delete(id);
        if (this.record === id) this.record = undefined;
      }
    this.renewed.clear();
  }

  private lease(id: string): Lease {
    return {
      id,
      ttlSeconds: 15,
      keepAlive: async () => {
        if (this.unavailable > 0) {
          this.unavailable--;
          throw new UnavailableError("etcd: no answer");
        }
        if (!this.alive.has(id)) throw new LeaseExpiredError(id);
        this.renewed.add(id);
      },
      revoke: async () => {
        this.alive.delete(id);
        if (this.record === id) this.record = undefined;
      },
      release: () => {},
      onLost: () => () => {},
    };
  }
}

describe("LeaseLivenessHold", () => {
  it("renews the lease the record is on, TTL after TTL", async () => {
    const t = new LeaseTable();
    const hold = await LeaseLivenessHold.start("node-1", t.grant);
    for (let i = 0; i < 3; i++) {
      await hold.renew();
      t.expireUnrenewed();
      assert.equal(t.record, "1");
    }
    assert.equal(t.grants, 1);
  });

  it("after its lease ended, writes the record again on a new lease", async () => {
    const t = new LeaseTable();
    const hold = await LeaseLivenessHold.start("node-1", t.grant);
    t.expireUnrenewed();
    assert.equal(t.record, undefined);
    await hold.renew();
    assert.equal(t.record, "2");
    await hold.renew();
    t.expireUnrenewed();
    assert.equal(t.record, "2");
  });

  it("renewals asked for together after the lease ended grant one lease, and the record stays on the one renewed", async () => {
    const t = new LeaseTable();
    const hold = await LeaseLivenessHold.start("node-1", t.grant);
    t.expireUnrenewed();
    // Were both to grant: the first's write applies first but its answer comes last, so the hold
    // would keep the first lease and the record would sit on the second, renewed by no one.
    t.timings.push([1, 30], [5, 10]);
    await Promise.all([hold.renew(), hold.renew(), hold.renew()]);
    for (let i = 0; i < 3; i++) {
      await hold.renew();
      t.expireUnrenewed();
      assert.notEqual(
        t.record,
        undefined,
        `the record went after ${i + 1} TTL(s): its lease was not the one renewed`,
      );
    }
    assert.equal(t.grants, 2, "one grant for the renewals asked for together");
  });

  it("a failed renewal fails every caller that joined it, and the next one tries again", async () => {
    const t = new LeaseTable();
    const hold = await LeaseLivenessHold.start("node-1", t.grant);
    t.unavailable = 1;
    const joined = await Promise.allSettled([hold.renew(), hold.renew()]);
    assert.deepEqual(
      joined.map((r) => r.status),
      ["rejected", "rejected"],
    );
    await hold.renew();
    t.expireUnrenewed();
    assert.equal(t.record, "1");
  });

  it("once released, renews nothing and leaves the lease to run out", async () => {
    const t = new LeaseTable();
    const hold = await LeaseLivenessHold.start("node-1", t.grant);
    hold.release();
    await hold.renew();
    t.expireUnrenewed();
    assert.equal(t.record, undefined);
    assert.equal(t.grants, 1);
  });
});
