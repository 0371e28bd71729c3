import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { systemClock } from "../clock.js";
import type { Collection, LivenessHold } from "../datastore/types.js";
import { createLogger } from "../log/logger.js";
import {
  CLUSTER_ENCRYPTION_NAME,
  parseResource,
  type ClusterEncryption,
  type ResourceKind,
} from "../model/index.js";
import { MemoryDatastore } from "../../test/support/memory-datastore/index.js";
import { waitUntil } from "../../test/support/wait.js";
import { Controller } from "./controller.js";

const KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

describe("controller taking over", () => {
  const holds: LivenessHold[] = [];
  const store = new MemoryDatastore();
  const controllers: Controller[] = [];
  after(async () => {
    for (const c of controllers) await c.stop();
    for (const h of holds) h.release();
    await store.close();
  });

  it("judges a phase only on the nodes it mirrored: a standby taking over mid-prepare waits for them", async () => {
    // A run to epoch 2 in prepare, as a standby finds it when it takes over (its leader gone in a
    // datastore outage): node-1 and node-2 acknowledged prepare, node-3 (live) has not yet.
    const at = new Date().toISOString();
    const prepare: ClusterEncryption = {
      ...parseResource("clusterencryptions", { name: CLUSTER_ENCRYPTION_NAME }),
      epoch: 1,
      applied: { enabled: true, mode: "wireguard" },
      lastCompletedAt: at,
      phase: "prepare",
      target: { epoch: 2, enabled: true, mode: "wireguard" },
      phaseStartedAt: { prepare: at },
    };
    await store.collection("clusterencryptions").create(prepare);
    for (const [i, name] of ["node-1", "node-2", "node-3"].entries()) {
      // node-3's liveness lease lapsed in the outage: its agent is not back yet.
      if (name !== "node-3") holds.push(await store.holdLiveness(name, 15));
      await store.collection("nodes").create({
        name,
        underlay: { ipv4: `192.0.2.${11 + i}` },
        podCIDRs: [`10.244.${i}.0/24`],
        publicKeys: { "1": KEY, "2": KEY },
        acknowledgements: name === "node-3" ? [] : [{ epoch: 2, phase: "prepare", at }],
      });
    }
    // The standby's first list of the nodes answers late (a datastore just back, or many nodes):
    // its liveness follower has already woken the loop by then.
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const nodesLate = (nodes: Collection<"nodes">): Collection<"nodes"> =>
      new Proxy(nodes, {
        get: (t, p) =>
          p === "list" ? async () => answered.then(() => t.list()) : (Reflect.get(t, p, t) as unknown),
      });
    const late = new Proxy(store, {
      get: (t, p) => {
        if (p === "collection")
          return (kind: ResourceKind) =>
            kind === "nodes" ? nodesLate(t.collection("nodes")) : t.collection(kind);
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const controller = new Controller({
      store: late,
      identity: "standby",
      clock: systemClock,
      logger: createLogger("controller", { level: "silent" }),
      policyStatus: false,
    });
    controllers.push(controller);
    const started = controller.start();
    await waitUntil(
      () => controller.isLeader && controller.health().lastStepOkAt !== undefined,
      10_000,
      "the standby to lead and step",
    );
    const first = controller.health().lastStepOkAt!;
    // node-3's agent is back (a new liveness lease) while the standby still reads the nodes: the
    // change wakes its loop for another step.
    await new Promise((r) => setTimeout(r, 5));
    holds.push(await store.holdLiveness("node-3", 15));
    await waitUntil(() => controller.health().lastStepOkAt! > first, 10_000, "another step");
    const read = async (): Promise<ClusterEncryption> =>
      (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))!.value;
    assert.equal((await read()).phase, "prepare", "the run moved on before the nodes were even read");
    answer();
    await started;
    // node-3 acknowledges now; only then may the run move on.
    const node3 = (await store.collection("nodes").get("node-3"))!;
    const ackedAt = new Date().toISOString();
    assert.equal((await read()).phase, "prepare", "the run moved on before node-3 acknowledged prepare");
    await store
      .collection("nodes")
      .update(
        { ...node3.value, acknowledgements: [{ epoch: 2, phase: "prepare", at: ackedAt }] },
        { revision: node3.revision },
      );
    await waitUntil(async () => (await read()).phase === "switch", 10_000, "the run to move on to switch");
    const c = await read();
    assert.ok(
      Date.parse(c.phaseStartedAt.switch!) >= Date.parse(ackedAt),
      `switch began ${c.phaseStartedAt.switch}, before node-3 acknowledged prepare at ${ackedAt}`,
    );
    assert.deepEqual(c.timeouts, []);
  });
});
