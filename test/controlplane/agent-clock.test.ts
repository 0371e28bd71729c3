/**
 * The Agent on a ManualClock: every timer it arms (coalescing, the pause after a failed pass,
 * heartbeats) runs on the clock it is given, so a test moves time instead of sleeping. One agent
 * over the memory datastore with a FakeDataplane that fails until told to recover.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { COALESCE_MS, RESYNC_SPAN, RETRY_AFTER_FAILURE_MS } from "../../src/agent/decide.js";
import { ManualClock } from "../../src/clock.js";
import { MemoryDatastore } from "../support/memory-datastore/index.js";
import type { StrictDrop } from "../../src/dataplane/node/nft.js";
import { fakeErrno, type FakeDataplane } from "../support/fake-dataplane/index.js";
import { simNode, waitUntil } from "../support/sim.js";

/** Lets pending promise chains and I/O callbacks of the memory datastore run (no time passes on the clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

/**
 * Node 1's agent on a ManualClock over `root` (heartbeat every 5 s, full resync every 60 s, not
 * started), through `store` (a connection to `root`), the cluster encrypting with WireGuard at
 * epoch 1, idle; the agent is stopped in an `after` hook.
 */
async function agentOnClock(root: MemoryDatastore, store = root.connect()) {
  await root.collection("clusterencryptions").create({
    name: "default",
    enabled: true,
    mode: "wireguard",
    applied: { enabled: true, mode: "wireguard" },
    epoch: 1,
    phase: "idle",
  });
  const clock = new ManualClock(0, Date.parse("2026-12-01T00:00:00Z"));
  const node = simNode(store, 1, { clock, heartbeatMs: 5_000, resyncMs: 60_000 });
  after(() => node.agent.stop());
  return { clock, node };
}

describe("the agent's timers run on its clock", () => {
  const root = new MemoryDatastore();
  after(() => root.close());

  it("a failed pass is retried once the clock passes the pause, not before, and its end is published", async () => {
    const { clock, node } = await agentOnClock(root);
    node.backend.failAlways(fakeErrno("EIO"));
    await node.agent.start();
    await settle();
    assert.equal(node.backend.stats.reconciles, 0, "the first pass waits for the coalescing timer");

    clock.advance(COALESCE_MS);
    await waitUntil(() => node.backend.stats.failures === 1, 10_000, "the first pass to fail");
    // Events (the agent's own writes coming back) arm coalescing timers meanwhile: no pass until the pause ends.
    clock.advance(RETRY_AFTER_FAILURE_MS - 1);
    await settle();
    assert.equal(node.backend.stats.reconciles, 1, "no pass during the pause after a failure");

    clock.advance(1);
    await waitUntil(() => node.backend.stats.failures === 2, 10_000, "the retry");
    assert.equal(node.backend.stats.reconciles, 2);

    node.backend.recover();
    clock.advance(RETRY_AFTER_FAILURE_MS);
    await waitUntil(() => node.backend.stats.reconciles === 3, 10_000, "the pass after recovery");
    // The failure stays in the node's status, marked as ended (at the clock's time).
    const clearedAt = async (): Promise<string | undefined> =>
      (await root.collection("nodes").get(node.name))?.value.status?.reconcileError?.clearedAt;
    await waitUntil(
      async () => (await clearedAt()) !== undefined,
      10_000,
      "the heartbeat that publishes the failure's end",
    );
    assert.equal(await clearedAt(), new Date(clock.wallNow()).toISOString());
    assert.equal(node.backend.stats.failures, 2);
  });
});

describe("the agent's heartbeats", () => {
  const root = new MemoryDatastore();
  after(() => root.close());

  it("never overlap: the beats due while one is under way run once, after it", async () => {
    const { clock, node } = await agentOnClock(root);
    // The data plane's drop counters answer only when let go: the beat that reads them waits.
    let calls = 0;
    let inFlight = 0;
    let most = 0;
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    const backend = node.backend as FakeDataplane & { strictDrops?: () => Promise<StrictDrop[]> };
    backend.strictDrops = async () => {
      calls++;
      most = Math.max(most, ++inFlight);
      await held;
      inFlight--;
      return [];
    };
    await node.agent.start();
    clock.advance(COALESCE_MS);
    await settle();
    clock.advance(5_000);
    await waitUntil(() => calls === 1, 10_000, "the first timed heartbeat");
    // Three more beats fall due while the first one waits (a store or data plane answering slowly).
    for (let i = 0; i < 3; i++) {
      clock.advance(5_000);
      await settle();
    }
    assert.equal(calls, 1, "no heartbeat starts while one is under way");
    letGo();
    await waitUntil(() => calls === 2, 10_000, "the heartbeat asked for meanwhile");
    await settle();
    assert.equal(calls, 2, "the beats due meanwhile ran as one");
    assert.equal(most, 1);
  });
});

describe("the agent's status during a pass", () => {
  const root = new MemoryDatastore();
  after(() => root.close());

  it("is published once the pass has ended, with its outcome; the liveness is renewed meanwhile", async () => {
    // Every renewal of the node's liveness, counted.
    const store = root.connect();
    let renewals = 0;
    const holdLiveness = store.holdLiveness.bind(store);
    store.holdLiveness = async (name, ttl) => {
      const hold = await holdLiveness(name, ttl);
      const renew = hold.renew.bind(hold);
      return { node: hold.node, release: () => hold.release(), renew: () => (renewals++, renew()) };
    };
    const { clock, node } = await agentOnClock(root, store);
    // The first pass programs the data plane, then stalls until let go and fails (as a route write
    // after the peers were set would).
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    let passes = 0;
    const reconcile = node.backend.reconcile.bind(node.backend);
    node.backend.reconcile = async (desired, privateKey) => {
      await reconcile(desired, privateKey);
      if (++passes > 1) return;
      await held;
      throw fakeErrno("EPERM");
    };
    const status = async () => (await root.collection("nodes").get(node.name))?.value.status;
    await node.agent.start();
    clock.advance(COALESCE_MS);
    await waitUntil(() => passes === 1, 10_000, "the first pass to program the data plane");
    const before = await status();
    // Two heartbeats fall due while the pass is under way.
    for (let i = 0; i < 2; i++) {
      clock.advance(5_000);
      await settle();
    }
    assert.equal(renewals, 2, "the liveness is renewed on every beat, pass or no pass");
    assert.deepEqual(await status(), before, "no status is published while a pass is under way");
    letGo();
    await waitUntil(
      async () => (await status())?.reconcileError !== undefined,
      10_000,
      "the status after the pass, with its failure",
    );
    assert.equal((await status())?.reconcileError?.code, "EPERM");
  });
});

describe("the agent's own record", () => {
  const root = new MemoryDatastore();
  after(() => root.close());

  it("changed behind the agent's back, is read again and repaired (not judged by the copy the agent last wrote)", async () => {
    const { clock, node } = await agentOnClock(root);
    await node.agent.start();
    const nodes = root.collection("nodes");
    const key = async (): Promise<string | undefined> => (await nodes.get(node.name))?.value.publicKeys["1"];
    clock.advance(COALESCE_MS);
    await waitUntil(async () => (await key()) !== undefined, 10_000, "the agent to publish its key");
    const published = await key();

    // Someone else drops the key from the record; the agent's next full pass publishes it again.
    const stored = (await nodes.get(node.name))!;
    await nodes.update({ ...stored.value, publicKeys: {} }, { revision: stored.revision });
    await settle();
    clock.advance(60_000);
    await waitUntil(async () => (await key()) !== undefined, 10_000, "the resync to publish the key again");
    assert.equal(await key(), published);
  });
});

describe("the agent's periodic resync", () => {
  const root = new MemoryDatastore();
  after(() => root.close());

  it("after a slow pass waits ten times as long as the pass took, not the usual interval", async () => {
    const { clock, node } = await agentOnClock(root);
    // Every pass takes 15 s of the clock's time (a starved or emulated machine).
    const passMs = 15_000;
    const reconcile = node.backend.reconcile.bind(node.backend);
    node.backend.reconcile = async (desired, privateKey) => {
      clock.advance(passMs);
      return reconcile(desired, privateKey);
    };
    await node.agent.start();
    clock.advance(COALESCE_MS);
    await waitUntil(() => node.backend.stats.reconciles >= 1, 10_000, "the first pass");
    // The passes that the agent's own writes ask for, until none is left.
    for (let quiet = 0; quiet < 3;) {
      const before = node.backend.stats.reconciles;
      clock.advance(1_000);
      await settle();
      quiet = node.backend.stats.reconciles === before ? quiet + 1 : 0;
    }
    const settled = node.backend.stats.reconciles;
    // The usual interval (60 s here) passes without a resync...
    clock.advance(60_000);
    await settle();
    assert.equal(node.backend.stats.reconciles, settled, "no resync at the usual interval after a slow pass");
    // ...which comes once RESYNC_SPAN times the pass's duration has gone by since it ended.
    clock.advance(RESYNC_SPAN * passMs - 60_000);
    await waitUntil(() => node.backend.stats.reconciles === settled + 1, 10_000, "the resync");
  });
});
