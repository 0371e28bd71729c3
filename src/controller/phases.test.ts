import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type ClusterEncryption, type Node } from "../model/index.js";
import { DEFAULT_TIMING } from "../protocol/index.js";
import { decide as decideLive } from "./phases.js";

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

/**
 * Liveness in these tests: a node's `heartbeat` field stands for the last renewal of its liveness
 * lease (the stores keep that outside the Node); live while within DEFAULT_TIMING.livenessMs.
 */
function decide(
  c: ClusterEncryption,
  nodes: Node[],
  now: number,
  timing = DEFAULT_TIMING,
  sight?: { since: number; lostAt: number },
): ReturnType<typeof decideLive> {
  const liveAt = (t: number) =>
    new Set(
      nodes
        .filter((n) => n.heartbeat !== undefined && t - Date.parse(n.heartbeat) <= timing.livenessMs)
        .map((n) => n.name),
    );
  return decideLive(
    c,
    nodes,
    liveAt(now),
    now,
    timing,
    sight === undefined ? undefined : { ...sight, liveAtLoss: liveAt(sight.lostAt) },
  );
}

/** A run to epoch 2 whose prepare began at T0 (the outage tests' starting point). */
const preparingAtT0 = (): ClusterEncryption =>
  cluster({
    epoch: 1,
    applied: { enabled: true, mode: "wireguard" },
    lastCompletedAt: iso(T0 - 60_000),
    phase: "prepare",
    target: { epoch: 2, enabled: true, mode: "wireguard" },
    phaseStartedAt: { prepare: iso(T0) },
  });

describe("controller phases", () => {
  it("initialises a new cluster as applied, epoch 1", () => {
    const d = decide(cluster(), [], T0);
    assert.equal(d.next?.epoch, 1);
    assert.deepEqual(d.next?.applied, { enabled: true, mode: "wireguard", host: false });
    assert.equal(d.next?.phase, "idle");
  });

  it("switches host encryption on and off by a run: the target carries it, the end of the run applies it", () => {
    const applied = { enabled: true, mode: "wireguard" as const, host: false };
    let c = cluster({ epoch: 1, applied, lastCompletedAt: iso(T0), hostEncryption: true });
    let d = decide(c, [node("a", T0)], T0);
    assert.equal(d.reason, "host-change");
    assert.deepEqual(d.next?.target, { epoch: 2, enabled: true, mode: "wireguard", host: true });
    c = d.next!;
    const acked = (phases: Array<"prepare" | "switch">, now: number) =>
      node(
        "a",
        now,
        phases.map((p) => [2, p, now - 10]),
      );
    d = decide(c, [acked(["prepare"], T0 + 1000)], T0 + 1000);
    c = d.next!;
    assert.equal(c.phase, "switch");
    d = decide(c, [acked(["prepare", "switch"], T0 + 2000)], T0 + 2000 + DEFAULT_TIMING.retireGraceMs);
    c = d.next!;
    assert.equal(c.phase, "retire");
    assert.equal(c.applied?.host, false, "applied only at the end of the run");
    d = decide(c, [node("a", T0 + 5000, [[2, "retire", T0 + 4900]])], T0 + 5000);
    assert.deepEqual(d.next?.applied, { enabled: true, mode: "wireguard", host: true });
    assert.equal(d.next?.target, undefined);
    // Done: no further run; switched off again, another.
    assert.equal(decide(d.next!, [node("a", T0 + 6000)], T0 + 6000).next, undefined);
    const off = decide({ ...d.next!, hostEncryption: false }, [node("a", T0 + 7000)], T0 + 7000);
    assert.equal(off.reason, "host-change");
    assert.equal(off.next?.target?.host, false);
  });

  it("host encryption changed during a run: that run keeps its target, the next one switches it", () => {
    const c = cluster({
      ...preparingAtT0(),
      applied: { enabled: true, mode: "wireguard", host: false },
      hostEncryption: true,
    });
    const acks: Array<[number, "prepare" | "switch" | "retire", number]> = [
      [2, "prepare", T0 + 100],
      [2, "switch", T0 + 200],
      [2, "retire", T0 + 300],
    ];
    const retiring = {
      ...c,
      phase: "retire" as const,
      phaseStartedAt: { prepare: iso(T0), retire: iso(T0 + 250) },
    };
    const end = decide(retiring, [node("a", T0 + 400, acks)], T0 + 400).next!;
    assert.deepEqual(end.applied, { enabled: true, mode: "wireguard", host: false });
    const next = decide(end, [node("a", T0 + 500, acks)], T0 + 500);
    assert.equal(next.reason, "host-change");
    assert.equal(next.next?.target?.host, true);
  });

  it("a disabled cluster starts no run for host encryption: enable's run takes it along", () => {
    const c = cluster({
      enabled: false,
      epoch: 1,
      applied: { enabled: false, mode: "wireguard", host: false },
      lastCompletedAt: iso(T0),
      hostEncryption: true,
    });
    assert.equal(decide(c, [node("a", T0)], T0).next, undefined);
    const d = decide({ ...c, enabled: true }, [node("a", T0)], T0);
    assert.equal(d.reason, "enable");
    assert.deepEqual(d.next?.target, { epoch: 2, enabled: true, mode: "wireguard", host: true });
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

  it("a datastore outage in a phase neither times nodes out nor leaves them behind", () => {
    // prepare began at T0; the datastore went away at T0 + 1 s and answers again at T0 + 35 s.
    const c = preparingAtT0();
    const back = T0 + 35_000;
    const sight = { since: back, lostAt: T0 + 1000 };
    // Nobody could write meanwhile: node a acknowledged before, b had not yet.
    const stale = [node("a", T0 + 500, [[2, "prepare", T0 + 400]]), node("b", T0 + 500)];
    // Judged by the clock alone, b is dead and the run goes on without it (what happened before).
    assert.equal(decide(c, stale, back + 100).next?.phase, "switch");
    // With the outage known, b is waited for, and not timed out.
    let d = decide(c, stale, back + 100, DEFAULT_TIMING, sight);
    assert.equal(d.next, undefined);
    assert.equal(d.recheckInMs, DEFAULT_TIMING.phaseTimeoutMs - 100);
    // b reports again and acknowledges: the run goes on with it.
    const b = node("b", back + 8000, [[2, "prepare", back + 8000]]);
    d = decide(c, [stale[0]!, b], back + 8000, DEFAULT_TIMING, sight);
    assert.equal(d.next?.phase, "switch");
    assert.deepEqual(d.next?.timeouts, []);
    // A node that does not report again within the window is not waited for after it.
    d = decide(c, stale, back + DEFAULT_TIMING.phaseTimeoutMs, DEFAULT_TIMING, sight);
    assert.equal(d.next?.phase, "switch");
    // A node already dead when the datastore went away is not waited for at all.
    const dead = node("b", T0 - 60_000);
    assert.equal(decide(c, [stale[0]!, dead], back + 100, DEFAULT_TIMING, sight).next?.phase, "switch");
  });

  it("a leader that never saw the nodes waits for every node with a record during its first window", () => {
    // A standby took over as the datastore came back; b's liveness record lapsed in the outage.
    const c = preparingAtT0();
    const back = T0 + 35_000;
    const nodes = [node("a", back + 200, [[2, "prepare", back + 200]]), node("b", T0 + 500)];
    const live = new Set(["a"]);
    const newLeader = { since: back, lostAt: back - 300_000 };
    // Without a window b is not live and the run goes on without it (the failure this prevents).
    assert.equal(decideLive(c, nodes, live, back + 300, DEFAULT_TIMING).next?.phase, "switch");
    let d = decideLive(c, nodes, live, back + 300, DEFAULT_TIMING, newLeader);
    assert.equal(d.next, undefined, "b is waited for");
    assert.equal(d.recheckInMs, DEFAULT_TIMING.phaseTimeoutMs - 300);
    // Once the window has passed, a node still without a liveness record is not waited for.
    d = decideLive(c, nodes, live, back + DEFAULT_TIMING.phaseTimeoutMs, DEFAULT_TIMING, newLeader);
    assert.equal(d.next?.phase, "switch");
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

  describe("a node that missed a rotation (its agent down)", () => {
    const G = DEFAULT_TIMING.retireGraceMs;
    const keyed = (n: Node, ...epochs: number[]): Node => ({
      ...n,
      publicKeys: Object.fromEntries(epochs.map((e) => [String(e), `k${e}-${n.name}`])),
    });
    const switching = cluster({
      epoch: 1,
      phase: "switch",
      target: { epoch: 2, enabled: true, mode: "wireguard" },
      applied: { enabled: true, mode: "wireguard" },
      phaseStartedAt: { prepare: iso(T0), switch: iso(T0 + 1000) },
      lastCompletedAt: iso(T0 - 1),
    });
    const t = T0 + 1000 + G;
    const dead = keyed(node("dead", T0 - DEFAULT_TIMING.livenessMs - 1), 1);
    const a = keyed(
      node("a", t, [
        [2, "prepare", T0 + 10],
        [2, "switch", T0 + 1000],
      ]),
      1,
      2,
    );

    it("is kept at its epoch from retire on, bounded by maxNodeLag; a node without a key is not", () => {
      const fresh = node("fresh", T0 - DEFAULT_TIMING.livenessMs - 1);
      const d = decide({ ...switching, maxNodeLag: "10m" }, [a, dead, fresh], t);
      assert.equal(d.next?.phase, "retire");
      assert.deepEqual(d.next?.lagging, [
        { node: "dead", epoch: 1, since: iso(T0), until: iso(t + 600_000) },
      ]);
      const retired = {
        ...a,
        acknowledgements: [...a.acknowledgements, { epoch: 2, phase: "retire" as const, at: iso(t) }],
      };
      const done = decide(d.next!, [retired, dead], t + 1);
      assert.equal(done.next?.phase, "idle");
      assert.equal(done.next?.epoch, 2);
      assert.deepEqual(done.next?.lagging, d.next?.lagging, "the lag outlives the run");
    });

    it("is not kept by an enable, disable or mode change", () => {
      const change = { ...switching, target: { epoch: 2, enabled: true, mode: "ipsec" as const } };
      assert.deepEqual(decide(change, [a, dead], t).next?.lagging, []);
      const off = { ...switching, target: { epoch: 2, enabled: false, mode: "wireguard" as const } };
      assert.deepEqual(decide(off, [a, dead], t).next?.lagging, []);
    });

    const idle = cluster({
      epoch: 2,
      applied: { enabled: true, mode: "wireguard" },
      lastCompletedAt: iso(T0 + 5000),
      lagging: [{ node: "dead", epoch: 1, since: iso(T0), until: iso(T0 + 3_600_000) }],
    });

    it("defers the next run (same slot) while it lags, and reports why", () => {
      const wanted = { ...idle, rotateRequestedAt: iso(T0 + 6000) };
      const d = decide(wanted, [a, dead], T0 + 7000);
      assert.equal(d.next, undefined);
      assert.match(d.deferred ?? "", /rotation-requested waits for dead/);
      assert.ok((d.recheckInMs ?? 0) >= 1000);
      // Once the bound expired the lag ends (its pairs are cut off until its agent returns), and
      // the deferred run starts at the next look.
      const expired = decide(wanted, [a, dead], T0 + 3_600_000);
      assert.deepEqual(expired.next?.lagging, []);
      assert.match(expired.reason ?? "", /expired/);
      assert.equal(decide(expired.next!, [a, dead], T0 + 3_600_001).next?.phase, "prepare");
    });

    it("catches up: prepare acknowledged, switch a grace later, lag ends a grace after its switch", () => {
      const back = (acks: Array<[number, "prepare" | "switch", number]>, at: number): Node =>
        keyed(node("dead", at, acks), 1, 2);
      const p = T0 + 10_000;
      // Still starting up: nothing changes.
      assert.equal(decide(idle, [a, back([], p)], p).next, undefined);
      let d = decide(idle, [a, back([[2, "prepare", p]], p)], p + 1);
      assert.equal(d.next, undefined, "peers get a grace period to install its new key");
      d = decide(idle, [a, back([[2, "prepare", p]], p + G)], p + G);
      assert.equal(d.next?.lagging[0]?.switchAt, iso(p + G));
      const sw = d.next!;
      const s = p + G + 500;
      assert.equal(
        decide(
          sw,
          [
            a,
            back(
              [
                [2, "prepare", p],
                [2, "switch", s],
              ],
              s,
            ),
          ],
          s,
        ).next,
        undefined,
      );
      d = decide(
        sw,
        [
          a,
          back(
            [
              [2, "prepare", p],
              [2, "switch", s],
            ],
            s + G,
          ),
        ],
        s + G,
      );
      assert.deepEqual(d.next?.lagging, []);
      assert.match(d.reason ?? "", /dead caught up with epoch 2/);
    });

    it("ends the lag of a node that is gone", () => {
      assert.deepEqual(decide(idle, [a], T0 + 7000).next?.lagging, []);
    });
  });
});
