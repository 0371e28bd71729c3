import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type ClusterEncryption, type Node } from "../model/index.js";
import { decide, DEFAULT_TIMING } from "./phases.js";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const iso = (ms: number): string => new Date(ms).toISOString();

function cluster(over: Partial<ClusterEncryption> = {}): ClusterEncryption {
  return { ...parseResource("clusterencryptions", { name: "default" }), ...over };
}
function node(
  name: string,
  now: number,
  acks: Array<[number, "prepare" | "switch" | "retire", number]> = [],
): Node {
  return parseResource("nodes", {
    name,
    underlay: { ipv4: "172.30.0.11" },
    heartbeat: iso(now),
    acknowledgements: acks.map(([epoch, phase, at]) => ({ epoch, phase, at: iso(at) })),
  });
}

describe("controller phases", () => {
  it("initialises a new cluster as applied, epoch 1", () => {
    const d = decide(cluster(), [], T0);
    assert.equal(d.next?.epoch, 1);
    assert.deepEqual(d.next?.applied, { enabled: true, mode: "wireguard" });
    assert.equal(d.next?.phase, "idle");
  });

  it("runs a requested rotation through prepare, switch, grace, retire", () => {
    let c = cluster({ epoch: 1, applied: { enabled: true, mode: "wireguard" }, lastCompletedAt: iso(T0) });
    c = { ...c, rotateRequestedAt: iso(T0 + 1000) };
    let d = decide(c, [node("a", T0 + 2000)], T0 + 2000);
    assert.equal(d.next?.phase, "prepare");
    assert.deepEqual(d.next?.target, { epoch: 2, enabled: true, mode: "wireguard" });
    c = d.next!;
    // Nothing moves until every live node acknowledged.
    d = decide(c, [node("a", T0 + 2500), node("b", T0 + 2500, [[2, "prepare", T0 + 2400]])], T0 + 2500);
    assert.equal(d.next, undefined);
    assert.ok((d.recheckInMs ?? 0) > 0);
    const acked = [
      node("a", T0 + 3000, [[2, "prepare", T0 + 2900]]),
      node("b", T0 + 3000, [[2, "prepare", T0 + 2400]]),
    ];
    d = decide(c, acked, T0 + 3000);
    assert.equal(d.next?.phase, "switch");
    c = d.next!;
    const switched = [
      node("a", T0 + 3500, [[2, "switch", T0 + 3400]]),
      node("b", T0 + 3500, [[2, "switch", T0 + 3450]]),
    ];
    d = decide(c, switched, T0 + 3500);
    assert.equal(d.next, undefined, "grace period holds retire back");
    d = decide(c, switched, T0 + 3450 + DEFAULT_TIMING.retireGraceMs);
    assert.equal(d.next?.phase, "retire");
    c = d.next!;
    d = decide(
      c,
      [node("a", T0 + 9000, [[2, "retire", T0 + 8000]]), node("b", T0 + 9000, [[2, "retire", T0 + 8000]])],
      T0 + 9000,
    );
    assert.equal(d.next?.phase, "idle");
    assert.equal(d.next?.epoch, 2);
    assert.equal(d.next?.target, undefined);
    // The request is satisfied: no new run.
    assert.equal(decide(d.next!, [], T0 + 10_000).next, undefined);
  });

  it("starts enable and disable runs when the desired state differs from the applied one", () => {
    const off = cluster({
      epoch: 3,
      enabled: true,
      applied: { enabled: false, mode: "wireguard" },
      lastCompletedAt: iso(T0),
    });
    assert.deepEqual(decide(off, [], T0).next?.target, { epoch: 4, enabled: true, mode: "wireguard" });
    assert.equal(decide(off, [], T0).reason, "enable");
    const on = cluster({
      epoch: 3,
      enabled: false,
      applied: { enabled: true, mode: "wireguard" },
      lastCompletedAt: iso(T0),
    });
    assert.equal(decide(on, [], T0).reason, "disable");
    const ipsec = cluster({
      epoch: 3,
      mode: "ipsec",
      applied: { enabled: true, mode: "wireguard" },
      lastCompletedAt: iso(T0),
    });
    assert.equal(decide(ipsec, [], T0).reason, "mode-change");
  });

  it("rotates early when a live node's SAs of the current epoch run out of sequence numbers", () => {
    const c = cluster({
      epoch: 3,
      applied: { enabled: true, mode: "ipsec" },
      mode: "ipsec",
      lastCompletedAt: iso(T0),
    });
    const wanting = (epoch: number, heartbeat = T0 + 1000): Node => ({
      ...node("a", heartbeat),
      status: { errors: [], rotationWanted: { epoch, reason: "ESP sequence numbers", at: iso(T0 + 900) } },
    });
    const d = decide(c, [wanting(3)], T0 + 1000);
    assert.equal(d.next?.phase, "prepare");
    assert.equal(d.reason, "rotation-early");
    assert.equal(d.next?.target?.epoch, 4);
    // A request about an epoch already left, or from a node no longer live, starts nothing.
    assert.equal(decide(c, [wanting(2)], T0 + 1000).next, undefined);
    assert.equal(decide(c, [wanting(3, T0 - 60_000)], T0 + 1000).next, undefined);
  });

  it("rotates on schedule", () => {
    const c = cluster({
      epoch: 1,
      rotationInterval: "1h",
      applied: { enabled: true, mode: "wireguard" },
      lastCompletedAt: iso(T0),
    });
    assert.equal(decide(c, [], T0 + 3_599_000).next, undefined);
    assert.equal(decide(c, [], T0 + 3_600_000).reason, "rotation-scheduled");
  });

  it("times out a silent live node, records it, and does not stall", () => {
    const c = cluster({
      epoch: 1,
      phase: "prepare",
      target: { epoch: 2, enabled: true, mode: "wireguard" },
      applied: { enabled: true, mode: "wireguard" },
      phaseStartedAt: { prepare: iso(T0) },
      lastCompletedAt: iso(T0 - 1),
    });
    const t = T0 + DEFAULT_TIMING.phaseTimeoutMs;
    const nodes = [node("a", t, [[2, "prepare", T0 + 10]]), node("silent", t)];
    const d = decide(c, nodes, t);
    assert.deepEqual(d.timedOut, ["silent"]);
    assert.equal(d.next?.timeouts.length, 1);
    const d2 = decide(d.next!, nodes, t + 1);
    assert.equal(d2.next?.phase, "switch");
  });

  it("does not wait for nodes whose heartbeat stopped", () => {
    const c = cluster({
      epoch: 1,
      phase: "prepare",
      target: { epoch: 2, enabled: true, mode: "wireguard" },
      applied: { enabled: true, mode: "wireguard" },
      phaseStartedAt: { prepare: iso(T0) },
      lastCompletedAt: iso(T0 - 1),
    });
    const dead = node("dead", T0 - DEFAULT_TIMING.livenessMs - 1000);
    assert.equal(
      decide(c, [node("a", T0 + 5, [[2, "prepare", T0 + 5]]), dead], T0 + 5).next?.phase,
      "switch",
    );
  });
});
