/**
 * The real Agent and Controller classes together over the memory datastore (one client per
 * "process"), each agent with a stateful FakeDataplane: the phased protocol of docs/design.md#keys-and-rotation
 * end to end, with short timings.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import type { Controller } from "../../src/controller/controller.js";
import type { PhaseTiming } from "../../src/protocol/index.js";
import { FakeFabric, fakeErrno } from "../support/fake-dataplane/index.js";
import { MemoryDatastore } from "../support/memory-datastore/index.js";
import type { Datastore } from "../../src/datastore/types.js";
import { findAcknowledgement, type Phase } from "../../src/model/index.js";
import {
  converged,
  idleAt,
  publishedKeys,
  readCluster,
  requestRotation,
  simController,
  simNode,
  simPodCidr,
  updateCluster,
  waitUntil,
  type SimNode,
} from "../support/sim.js";

const TIMING: PhaseTiming = { phaseTimeoutMs: 5_000, retireGraceMs: 300, livenessMs: 15_000 };
const AGENT = { heartbeatMs: 500, resyncMs: 2_000 };

/** Everything a test started, stopped afterwards whatever happened. */
let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  cleanups = [];
});

interface Lab {
  root: MemoryDatastore;
  fabric: FakeFabric;
  nodes: SimNode[];
  addNode(index: number): Promise<SimNode>;
  startController(
    identity: string,
    timing?: PhaseTiming,
    ttl?: number,
  ): Promise<{ c: Controller; store: Datastore }>;
}

function lab(): Lab {
  const root = new MemoryDatastore({ sweepIntervalMs: 50 });
  cleanups.push(() => root.close());
  const fabric = new FakeFabric();
  const nodes: SimNode[] = [];
  return {
    root,
    fabric,
    nodes,
    async addNode(index) {
      const store = root.connect({ sweepIntervalMs: 50 });
      const n = simNode(store, index, { ...AGENT, fabric });
      nodes.push(n);
      cleanups.push(async () => {
        await n.agent.stop();
        await store.close();
      });
      await n.agent.start();
      return n;
    },
    async startController(identity, timing = TIMING, ttl = 5) {
      const store = root.connect({ sweepIntervalMs: 50 });
      const c = simController(store, identity, timing, ttl);
      cleanups.push(async () => {
        await c.stop(false);
        await store.close();
      });
      await c.start();
      return { c, store };
    },
  };
}

async function allConverged(l: Lab, epoch: number, nodes = l.nodes): Promise<boolean> {
  const keys = await publishedKeys(l.root);
  return nodes.every((n) => converged(n, epoch, nodes, keys));
}

async function settle(l: Lab, epoch: number, timeoutMs = 10_000): Promise<void> {
  await waitUntil(
    async () => idleAt(await readCluster(l.root), epoch),
    timeoutMs,
    `cluster idle at epoch ${epoch}`,
  );
  await waitUntil(() => allConverged(l, epoch), timeoutMs, `every node converged at epoch ${epoch}`);
}

const dedupe = <T>(xs: T[]): T[] => xs.filter((x, i) => i === 0 || x !== xs[i - 1]);

describe("agent + controller over the memory datastore (fake data planes)", () => {
  it("a rotation runs prepare → switch → retire across 5 agents, make before break on every node", async () => {
    const l = lab();
    await l.startController("controller-1");
    for (let i = 1; i <= 5; i++) await l.addNode(i);
    await settle(l, 1);

    // What each data plane held after every change, and every phase the cluster went through.
    const trace = new Map<string, Array<{ epochs: string; devs: string[] }>>();
    for (const n of l.nodes) {
      const t: Array<{ epochs: string; devs: string[] }> = [];
      trace.set(n.name, t);
      n.backend.onChange(() =>
        t.push({
          epochs: n.backend.epochs().join(","),
          devs: [...new Set(n.backend.routes().map((r) => (r.kind === "tunnel" ? r.dev : r.kind)))],
        }),
      );
    }
    const phases: Phase[] = [];
    const clusters = l.root.collection("clusterencryptions");
    const w = await clusters.watch((await clusters.list()).revision, {
      event: (e) =>
        void (e.type === "ADDED" || e.type === "MODIFIED" ? phases.push(e.object.value.phase) : 0),
      gone: () => {},
    });
    cleanups.push(() => w.close());

    await requestRotation(l.root);
    await settle(l, 2);

    assert.deepEqual(dedupe(phases).slice(phases.indexOf("prepare")), [
      "prepare",
      "switch",
      "retire",
      "idle",
    ]);
    const c = (await readCluster(l.root))!;
    assert.deepEqual(c.timeouts, [], "no node timed out");
    const keys = await publishedKeys(l.root);
    for (const n of l.nodes) {
      const me = (await l.root.collection("nodes").get(n.name))!.value;
      for (const ph of ["prepare", "switch", "retire"] as const)
        assert.ok(findAcknowledgement(me, 2, ph), `${n.name} acknowledged ${ph}@2`);
      // Make before break: epoch 2 was added next to 1, then 1 removed; routes only ever
      // pointed into an installed generation, never to a blackhole.
      const t = trace.get(n.name)!;
      assert.deepEqual(dedupe(t.map((s) => s.epochs)), ["1,2", "2"], `${n.name} generations`);
      for (const s of t) {
        const ifnames = s.epochs.split(",").map((e) => `podcrypt${Number(e) % 2}`);
        for (const d of s.devs)
          assert.ok(ifnames.includes(d), `${n.name}: route via ${d} while holding ${s.epochs}`);
      }
      assert.deepEqual(
        n.backend.routes().map((r) => r.kind === "tunnel" && r.dev),
        [...Array(4).fill("podcrypt0")],
      );
      // The generation uses the very key the node published; the old private key is gone.
      assert.equal(n.backend.generation(2)!.publicKey, keys.get(`${n.name}/2`));
      assert.deepEqual(n.keys.epochs(), [2]);
      assert.ok(n.keys.retired.includes(1));
      assert.equal(n.backend.strict?.dropOutbound, true, "strict mode held throughout");
    }
  });

  it("a WireGuard peer moves to the new generation only once its session is up; the run waits for it", async () => {
    const l = lab();
    await l.startController("controller-1");
    for (let i = 1; i <= 3; i++) await l.addNode(i);
    await settle(l, 1);
    const [a, b, c] = l.nodes as [SimNode, SimNode, SimNode];
    // Handshakes between node-0001 and node-0002 are lost (a collision, a peer not listening yet).
    l.fabric.block(a.name, b.name);
    await requestRotation(l.root);
    await waitUntil(async () => (await readCluster(l.root))?.phase === "switch", 5_000, "switch");
    const dev = (n: SimNode, peer: number): string | undefined => {
      const r = n.backend.route(simPodCidr(peer));
      return r?.kind === "tunnel" ? r.dev : r?.kind;
    };
    // Each of the pair keeps the other on the old generation; node-0003 moved to the new one.
    await waitUntil(async () => dev(a, 3) === "podcrypt0" && dev(c, 1) === "podcrypt0", 5_000, "c switched");
    assert.equal(dev(a, 2), "podcrypt1");
    assert.equal(dev(b, 1), "podcrypt1");
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await readCluster(l.root))?.phase, "switch", "the run waits for the blocked pair");
    const me = (await l.root.collection("nodes").get(a.name))!.value;
    assert.equal(findAcknowledgement(me, 2, "switch"), undefined, "node-0001 has not switched");

    l.fabric.unblock(a.name, b.name);
    await settle(l, 2);
    assert.deepEqual((await readCluster(l.root))!.timeouts, [], "nobody timed out");
    assert.equal(dev(a, 2), "podcrypt0");
    assert.equal(dev(b, 1), "podcrypt0");
  });

  it("a node that joins mid-prepare catches up and the run finishes without timeouts", async () => {
    const l = lab();
    await l.startController("controller-1");
    for (let i = 1; i <= 5; i++) await l.addNode(i);
    await settle(l, 1);
    // Hold prepare open: node-0001's data plane fails every pass until told to recover.
    const slow = l.nodes[0]!;
    slow.backend.failAlways(fakeErrno("EBUSY"));
    await waitUntil(
      async () => ((await l.root.collection("nodes").get(slow.name))?.value.status?.errors ?? []).length > 0,
      5_000,
      "node-0001 reporting its data-plane error in status",
    );
    await requestRotation(l.root);
    await waitUntil(async () => (await readCluster(l.root))?.phase === "prepare", 5_000, "prepare");

    const joiner = await l.addNode(6);
    await waitUntil(
      async () => {
        const n = (await l.root.collection("nodes").get(joiner.name))?.value;
        return n !== undefined && findAcknowledgement(n, 2, "prepare") !== undefined;
      },
      5_000,
      "the joiner acknowledging prepare@2",
    );
    assert.equal(
      (await readCluster(l.root))?.phase,
      "prepare",
      "still in prepare when the joiner acknowledged",
    );
    assert.deepEqual(joiner.backend.epochs(), [1, 2], "the joiner installed both generations");
    slow.backend.recover();

    await settle(l, 2);
    assert.deepEqual((await readCluster(l.root))!.timeouts, []);
    assert.equal(l.nodes.length, 6);
    for (const n of l.nodes) assert.equal(n.backend.generation(2)!.peers.size, 5, `${n.name} peers`);
    assert.ok(slow.backend.stats.fullResyncs >= 1, "the failed node resynced fully after recovering");
  });

  it("a silent node times out in each phase, is reported, and does not stall the rotation", async () => {
    const l = lab();
    const timing = { ...TIMING, phaseTimeoutMs: 1_500 };
    await l.startController("controller-1", timing);
    for (let i = 1; i <= 5; i++) await l.addNode(i);
    await settle(l, 1);
    const silent = l.nodes[4]!;
    silent.backend.failAlways(fakeErrno("ETIMEDOUT"));

    const started = Date.now();
    await requestRotation(l.root);
    await waitUntil(async () => idleAt(await readCluster(l.root), 2), 15_000, "rotation to finish");
    const took = Date.now() - started;
    const c = (await readCluster(l.root))!;
    assert.deepEqual(
      c.timeouts.map((t) => `${t.node}:${t.phase}@${t.epoch}`),
      ["prepare", "switch", "retire"].map((p) => `${silent.name}:${p}@2`),
    );
    // The silent node never switched, so its data plane still uses epoch 1: it is recorded as
    // lagging, and the healthy nodes move to epoch 2 among themselves while keeping epoch 1 for it
    // (cutting it off would lose all its traffic).
    assert.deepEqual(
      c.lagging.map((g) => `${g.node}@${g.epoch}`),
      [`${silent.name}@1`],
    );
    const healthy = l.nodes.slice(0, 4);
    await waitUntil(
      async () => {
        const keys = await publishedKeys(l.root);
        return healthy.every(
          (n) =>
            healthy.every((p) => p === n || n.backend.hasPeer(p.name, 2, keys.get(`${p.name}/2`))) &&
            n.backend.hasPeer(silent.name, 1, keys.get(`${silent.name}/1`)),
        );
      },
      5_000,
      "healthy nodes on epoch 2 among themselves, keeping epoch 1 for the lagging silent node",
    );
    const me = (await l.root.collection("nodes").get(silent.name))!.value;
    assert.match(me.status?.errors[0] ?? "", /ETIMEDOUT/, "the node itself reports why");

    // Once its data plane recovers, it catches up to the finished run.
    silent.backend.recover();
    await waitUntil(() => allConverged(l, 2), 10_000, "the silent node catching up");
    process.stdout.write(
      `# rotation with one silent node: ${took} ms (phase timeout ${timing.phaseTimeoutMs} ms)\n`,
    );
  });

  it("a node whose switch was acknowledged after the run went on without it catches up", async () => {
    const l = lab();
    const timing = { ...TIMING, phaseTimeoutMs: 1_500 };
    await l.startController("controller-1", timing);
    for (let i = 1; i <= 4; i++) await l.addNode(i);
    await settle(l, 1);
    const late = l.nodes[3]!;
    // Its pass of the switch (the first to route through epoch 2's interface) answers late: the
    // controller times it out in switch, retires without it (lagging) and only then gets the
    // switch acknowledgement of that pass, from before the switch time the controller gives its
    // pairs once idle.
    const { held, release } = late.backend.holdWhen((d) =>
      d.routes.some((r) => r.kind === "tunnel" && r.dev === "podcrypt0"),
    );
    await requestRotation(l.root);
    await held;
    await waitUntil(
      async () => {
        const c = await readCluster(l.root);
        return c?.phase === "retire" && c.lagging.some((g) => g.node === late.name);
      },
      10_000,
      "the run to retire with the late node lagging",
    );
    release();
    await waitUntil(async () => idleAt(await readCluster(l.root), 2), 10_000, "rotation to finish");
    const acked = async () => (await l.root.collection("nodes").get(late.name))!.value;
    assert.ok(findAcknowledgement(await acked(), 2, "switch"), "the late switch acknowledgement was written");
    // It catches up: acknowledges the switch again after its switch time, and every node retires
    // epoch 1 (without that it stayed lagging for maxNodeLag, an hour).
    await waitUntil(
      async () => (await readCluster(l.root))!.lagging.length === 0,
      10_000,
      "the late node to catch up",
    );
    await waitUntil(() => allConverged(l, 2), 10_000, "every node on epoch 2 alone");
  });

  it("IPsec: SAs running out of sequence numbers make their node ask, and the cluster rotates early", async () => {
    const l = lab();
    await l.startController("controller-1");
    for (let i = 1; i <= 3; i++) await l.addNode(i);
    await settle(l, 1);
    await updateCluster(l.root, (c) => ({ ...c, mode: "ipsec" }));
    await waitUntil(async () => idleAt(await readCluster(l.root), 2), 10_000, "the switch to ipsec");
    const before = (await readCluster(l.root))!;
    assert.equal(before.applied?.mode, "ipsec");
    l.nodes[1]!.backend.exhaustSequence(before.epoch);
    await waitUntil(
      async () => idleAt(await readCluster(l.root), before.epoch + 1),
      10_000,
      "an early rotation to the next epoch",
    );
    const me = (await l.root.collection("nodes").get(l.nodes[1]!.name))!.value;
    assert.equal(me.status?.rotationWanted?.epoch, before.epoch);
    assert.match(me.status?.rotationWanted?.reason ?? "", /sequence numbers/);
    // The new epoch's SAs are fresh: nothing more is asked for.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await readCluster(l.root))!.epoch, before.epoch + 1);
  });

  it("two controllers: the leader crashes (no resign) and the standby takes over and drives a rotation", async () => {
    const l = lab();
    const ttl = 2;
    const a = await l.startController("controller-a", TIMING, ttl);
    await waitUntil(() => a.c.isLeader, 5_000, "controller-a leading");
    const b = await l.startController("controller-b", TIMING, ttl);
    for (let i = 1; i <= 3; i++) await l.addNode(i);
    await settle(l, 1);
    assert.equal(b.c.isLeader, false);
    assert.equal(await l.root.leader("podcrypt-controller"), "controller-a");

    // A crash: the process's connection goes away without resigning; the lease runs out.
    const crashed = Date.now();
    await a.store.close();
    await waitUntil(() => b.c.isLeader, (ttl + 3) * 1000, "controller-b to take over", 5);
    const takeoverMs = Date.now() - crashed;
    assert.equal(await l.root.leader("podcrypt-controller"), "controller-b");
    assert.equal(a.c.isLeader, false);

    await requestRotation(l.root);
    await settle(l, 2);
    process.stdout.write(`# controller takeover after a crash: ${takeoverMs} ms (lease TTL ${ttl} s)\n`);
  });
});
