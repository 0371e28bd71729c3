import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type ClusterEncryption, type Node, type Phase } from "../model/index.js";
import {
  COALESCE_MS,
  KEY_BATCH_MS,
  MAX_COALESCE_MS,
  MAX_RESYNC_MS,
  RECHECK_MS,
  RESYNC_MS,
  coalesceDelay,
  decideAfterReconcile,
  livenessWakes,
  needsSessions,
  planKeys,
  resyncDelay,
  stillAwaited,
  wakeFor,
  type AfterReconcileDecision,
  type KeyPlan,
  type Wake,
} from "./decide.js";
import { desiredState, type AgentSettings } from "./desired.js";

const SETTINGS: AgentSettings = {
  node: "node-1",
  ifPrefix: "podcrypt",
  wireguardPort: 51820,
  underlayIf: "eth0",
  mtu: 1420,
};
const AT = "2026-12-01T00:00:00.000Z";
const KEY = (c: string): string => Buffer.alloc(32, c).toString("base64");

function node(
  i: number,
  keys: Record<string, string>,
  more: {
    acks?: Array<[number, Phase, string?]>;
    saInstance?: string;
    heartbeat?: string;
    status?: object;
  } = {},
): Node {
  return parseResource("nodes", {
    name: `node-${i}`,
    underlay: { ipv4: `172.30.0.${10 + i}` },
    podCIDRs: [`10.244.${i}.0/24`],
    publicKeys: keys,
    saInstance: more.saInstance ?? `${i}`.padStart(32, "0"),
    ...(more.heartbeat === undefined ? {} : { heartbeat: more.heartbeat }),
    ...(more.status === undefined ? {} : { status: more.status }),
    acknowledgements: (more.acks ?? []).map(([epoch, phase, at]) => ({ epoch, phase, at: at ?? AT })),
  });
}

/** A cluster in `phase` of a run from epoch 4 to epoch 5 (`mode` both sides), or idle at epoch 4. */
function cluster(
  phase: Phase,
  mode: "wireguard" | "ipsec" = "wireguard",
  over: object = {},
): ClusterEncryption {
  return parseResource("clusterencryptions", {
    name: "default",
    enabled: true,
    mode,
    applied: { enabled: true, mode },
    epoch: 4,
    phase,
    lastCompletedAt: AT,
    ...(phase === "idle"
      ? {}
      : { target: { epoch: 5, enabled: true, mode }, phaseStartedAt: { prepare: AT } }),
    ...over,
  });
}

/** Node 3 missed the rotation to epoch 5 (its agent was down); `switchAt` once the others switched. */
function lagging(switchAt?: string): ClusterEncryption {
  return cluster("idle", "wireguard", {
    epoch: 5,
    lagging: [
      {
        node: "node-3",
        epoch: 4,
        since: AT,
        until: "2026-12-01T01:00:00.000Z",
        ...(switchAt ? { switchAt } : {}),
      },
    ],
  });
}

const K4 = { "4": KEY("a") };
const K45 = { "4": KEY("a"), "5": KEY("b") };

describe("wakeFor: how soon a Node change needs a pass", () => {
  type WakeCase = [string, Node | undefined, Node | undefined, ClusterEncryption, string[], Wake, string?];
  const cases: WakeCase[] = [
    ["a new node", undefined, node(2, K4), cluster("idle"), [], "now"],
    ["a deleted node", node(2, K4), undefined, cluster("idle"), [], "now"],
    [
      "a peer's new SA instance",
      node(2, K4),
      node(2, K4, { saInstance: "f".repeat(32) }),
      cluster("idle"),
      [],
      "urgent",
    ],
    [
      "this node's own new SA instance (its write coming back)",
      node(1, K4),
      node(1, K4, { saInstance: "f".repeat(32) }),
      cluster("idle"),
      [],
      "now",
    ],
    ["a heartbeat only", node(2, K4), node(2, K4, { heartbeat: AT }), cluster("idle"), [], "none"],
    // A peer's status that no pass reads: its tunnel report (after a join every node's changes
    // twice, each an event at every agent), errors, MTU, drops, gate wish.
    ...(["idle", "prepare", "switch", "retire"] as const).map((phase): WakeCase => [
      `a peer's tunnel report, errors, MTU and gate wish in ${phase}`,
      node(2, K45, {
        status: { errors: [], tunnels: { at: AT, families: [{ family: "ipv4", pending: ["node-9"] }] } },
      }),
      node(2, K45, {
        status: {
          errors: ["boom"],
          mtu: 1380,
          workloadGate: "open",
          plaintextDrops: [{ peer: "node-1", direction: "in", packets: 3 }],
          tunnels: { at: AT, families: [{ family: "ipv4", upCount: 9 }] },
        },
      }),
      cluster(phase),
      [],
      "none",
    ]),
    [
      "a peer's selector set hash (a pass installs what it selects)",
      node(2, K4, { status: { errors: [], selection: "0".repeat(16) } }),
      node(2, K4, { status: { errors: [], selection: "1".repeat(16) } }),
      cluster("idle"),
      [],
      "now",
    ],
    ["this node's own key", node(1, K4), node(1, K45), cluster("prepare"), [], "none"],
    [
      "an awaited key, others still awaited",
      node(2, K4),
      node(2, K45),
      cluster("prepare"),
      ["node-2", "node-3"],
      "batch",
      "node-2",
    ],
    ["the last awaited key", node(2, K4), node(2, K45), cluster("prepare"), ["node-2"], "now", "node-2"],
    ["a key not awaited", node(2, K4), node(2, K45), cluster("prepare"), ["node-3"], "batch"],
    ["a key before the phase's first pass", node(2, K4), node(2, K45), cluster("prepare"), [], "batch"],
    [
      "a peer's new key for the target epoch",
      node(2, K45),
      node(2, { ...K45, "5": KEY("n") }),
      cluster("prepare"),
      [],
      "now",
    ],
    [
      "a key of an epoch no generation uses",
      node(2, K4),
      node(2, { ...K4, "9": KEY("z") }),
      cluster("idle"),
      [],
      "none",
    ],
    [
      "a peer's prepare acknowledgement in switch",
      node(2, K45),
      node(2, K45, { acks: [[5, "prepare"]] }),
      cluster("switch"),
      [],
      "now",
    ],
    [
      "a peer's prepare acknowledgement in prepare",
      node(2, K45),
      node(2, K45, { acks: [[5, "prepare"]] }),
      cluster("prepare"),
      [],
      "none",
    ],
  ];
  for (const [what, a, b, c, awaiting, wake, keyArrived] of cases)
    it(what, () => {
      const got = wakeFor(a, b, { self: "node-1", cluster: c, awaitingKeys: new Set(awaiting) });
      assert.deepEqual(got, keyArrived === undefined ? { wake } : { wake, keyArrived });
    });
});

describe("planKeys: when a pass writes this node's public keys", () => {
  const cases: Array<[string, Node | undefined, number[], Record<string, string>, KeyPlan]> = [
    ["no record yet", undefined, [4], K4, { write: "now", replaced: [] }],
    ["a new epoch's key", node(1, K4), [4, 5], K45, { write: "now", replaced: [] }],
    [
      "a key that differs (key file lost)",
      node(1, K4),
      [4],
      { "4": KEY("x") },
      { write: "now", replaced: [4] },
    ],
    [
      "a retired key to prune",
      node(1, K45),
      [5],
      { "5": KEY("b") },
      { write: "with-acknowledgement", replaced: [] },
    ],
    ["as published", node(1, K45), [4, 5], K45, { write: "none", replaced: [] }],
  ];
  for (const [what, self, needed, keys, plan] of cases)
    it(what, () => assert.deepEqual(planKeys(self, needed, keys), plan));
});

describe("needsSessions: when the desired state reads the data plane's sessions", () => {
  const cases: Array<[string, ClusterEncryption, boolean]> = [
    ["idle", cluster("idle"), false],
    ["a WireGuard run's prepare", cluster("prepare"), false],
    ["a WireGuard run's switch", cluster("switch"), true],
    ["an IPsec run's switch", cluster("switch", "ipsec"), false],
    ["idle, a lagging node not yet switched", lagging(), false],
    ["idle, a lagging node switched", lagging("2026-12-01T00:10:00.000Z"), true],
  ];
  for (const [what, c, want] of cases) it(what, () => assert.equal(needsSessions(c), want));
});

describe("decideAfterReconcile: the acknowledgement to write and when to look again", () => {
  const up = (): boolean => true;
  const down = (): boolean => false;
  const switchAt = "2026-12-01T00:10:00.000Z";
  type Case = [
    string,
    ClusterEncryption,
    string,
    Node[],
    Node | undefined,
    () => boolean,
    AfterReconcileDecision,
  ];
  /** Node 3 lagging, the others having switched its pairs (`switchAt`), its record `me`. */
  const laggingSwitched = (
    what: string,
    me: Node,
    sessionsUp: () => boolean,
    want: AfterReconcileDecision,
  ): Case => [
    `idle, this node lagging and the others switched, ${what}`,
    lagging(switchAt),
    "node-3",
    [node(1, K45), node(2, K45)],
    me,
    sessionsUp,
    want,
  ];
  const peers = [node(2, K45, { acks: [[5, "prepare"]] })];
  const cases: Case[] = [
    [
      "prepare, every live peer's key held",
      cluster("prepare"),
      "node-1",
      [node(2, K45)],
      node(1, K45),
      down,
      { awaitingKeys: new Set(), acknowledge: { epoch: 5, phase: "prepare" } },
    ],
    [
      "prepare, a peer's key missing",
      cluster("prepare"),
      "node-1",
      [node(2, K4)],
      node(1, K45),
      down,
      { awaitingKeys: new Set(["node-2"]) },
    ],
    [
      "prepare, acknowledged already",
      cluster("prepare"),
      "node-1",
      [node(2, K45)],
      node(1, K45, { acks: [[5, "prepare"]] }),
      down,
      { awaitingKeys: new Set() },
    ],
    [
      "switch, a prepared peer's session not up yet",
      cluster("switch"),
      "node-1",
      peers,
      node(1, K45),
      down,
      { awaitingKeys: new Set(), recheckInMs: RECHECK_MS },
    ],
    [
      "switch, every session up",
      cluster("switch"),
      "node-1",
      peers,
      node(1, K45),
      up,
      { awaitingKeys: new Set(), acknowledge: { epoch: 5, phase: "switch" } },
    ],
    [
      "switch, a live peer that never prepared (timed out): acknowledged, not looked at again for it",
      cluster("switch"),
      "node-1",
      [...peers, node(3, K4)],
      node(1, K45),
      up,
      { awaitingKeys: new Set(), acknowledge: { epoch: 5, phase: "switch" } },
    ],
    [
      "switch, a prepared peer's session down, another that never prepared",
      cluster("switch"),
      "node-1",
      [...peers, node(3, K45)],
      node(1, K45),
      down,
      { awaitingKeys: new Set(), recheckInMs: RECHECK_MS },
    ],
    [
      "retire",
      cluster("retire"),
      "node-1",
      peers,
      node(1, K45),
      up,
      { awaitingKeys: new Set(), acknowledge: { epoch: 5, phase: "retire" } },
    ],
    ["idle, nothing to catch up", cluster("idle"), "node-1", [node(2, K4)], node(1, K4), up, {}],
    [
      "idle, this node lagging, prepared for the current epoch",
      lagging(),
      "node-3",
      [node(1, K45), node(2, K45)],
      node(3, K45),
      up,
      { acknowledge: { epoch: 5, phase: "prepare" } },
    ],
    laggingSwitched("its sessions not up", node(3, K45), down, { recheckInMs: RECHECK_MS }),
    laggingSwitched("its sessions up", node(3, K45), up, {
      acknowledge: { epoch: 5, phase: "switch", notBefore: switchAt },
    }),
    // Its switch of the run came after the controller had moved on without it: the controller
    // counts only a switch from the switch time on, so the node acknowledges again.
    laggingSwitched(
      "its switch acknowledged before that",
      node(3, K45, {
        acks: [
          [5, "prepare"],
          [5, "switch"],
        ],
      }),
      up,
      { acknowledge: { epoch: 5, phase: "switch", notBefore: switchAt } },
    ),
    laggingSwitched(
      "its switch acknowledged since",
      node(3, K45, {
        acks: [
          [5, "prepare"],
          [5, "switch", "2026-12-01T00:10:01.000Z"],
        ],
      }),
      up,
      {},
    ),
  ];
  for (const [what, c, self, live, me, sessionsUp, want] of cases)
    it(what, () => {
      const desired = desiredState(
        { ...SETTINGS, node: self },
        c,
        [...live, ...(me ? [me] : [])],
        sessionsUp,
      );
      const got = decideAfterReconcile({ cluster: c, self, me, live, desired, takeover: needsSessions(c) });
      assert.deepEqual(got, want);
    });
  it("a liveness change wakes a pass wherever what it decides depends on the live peers", () => {
    let depends = 0;
    for (const [what, c, self, live, me, sessionsUp] of cases) {
      const desired = desiredState(
        { ...SETTINGS, node: self },
        c,
        [...live, ...(me ? [me] : [])],
        sessionsUp,
      );
      const decide = (l: Node[]) =>
        decideAfterReconcile({ cluster: c, self, me, live: l, desired, takeover: needsSessions(c) });
      // Every peer gone (its lease ran out) or every peer there: the same decision, or a pass.
      if (JSON.stringify(decide([])) === JSON.stringify(decide(live))) continue;
      depends++;
      assert.ok(livenessWakes(c, self), what);
    }
    assert.ok(depends >= 3, `${depends} cases depend on liveness`);
  });
});

describe("livenessWakes: whether a node starting or ceasing to be live needs a pass", () => {
  const cases: Array<[string, ClusterEncryption | undefined, string, boolean]> = [
    ["no cluster yet", undefined, "node-1", false],
    ["idle: desired state does not depend on liveness", cluster("idle"), "node-1", false],
    ["idle, another node lagging", lagging(), "node-1", false],
    ["idle, this node lagging (its catch-up waits for the live peers)", lagging(), "node-3", true],
    [
      "idle, selective (every live node's selector set)",
      cluster("idle", "wireguard", { encryption: "selective" }),
      "node-1",
      true,
    ],
    ...(["prepare", "switch", "retire"] as const).map(
      (phase): [string, ClusterEncryption, string, boolean] => [
        `${phase}: the peers it waits for`,
        cluster(phase),
        "node-1",
        true,
      ],
    ),
  ];
  for (const [what, c, self, want] of cases) it(what, () => assert.equal(livenessWakes(c, self), want));
});

describe("stillAwaited: the keys a pass found missing, less those that arrived during it", () => {
  const now = (...ns: Node[]): Map<string, Node> => new Map(ns.map((n) => [n.name, n]));
  const cases: Array<[string, string[], Map<string, Node>, string[], boolean]> = [
    ["none arrived", ["node-2", "node-3"], now(node(2, K4), node(3, K4)), ["node-2", "node-3"], false],
    ["one of two arrived", ["node-2", "node-3"], now(node(2, K45), node(3, K4)), ["node-3"], false],
    ["the last ones arrived: a pass is due", ["node-2", "node-3"], now(node(2, K45), node(3, K45)), [], true],
    ["a peer gone meanwhile is still awaited (liveness decides)", ["node-2"], now(), ["node-2"], false],
    ["nothing was awaited", [], now(node(2, K45)), [], false],
  ];
  for (const [name, awaiting, nodes, left, complete] of cases)
    it(name, () =>
      assert.deepEqual(stillAwaited(new Set(awaiting), 5, nodes), { awaiting: new Set(left), complete }),
    );
});

describe("coalesceDelay", () => {
  const cases: Array<[number, number, number]> = [
    [COALESCE_MS, 0, COALESCE_MS],
    [COALESCE_MS, 100, 200],
    [COALESCE_MS, 10_000, MAX_COALESCE_MS],
    [KEY_BATCH_MS, 0, MAX_COALESCE_MS],
  ];
  for (const [least, lastPass, want] of cases)
    it(`least ${least} ms, last pass ${lastPass} ms: ${want} ms`, () =>
      assert.equal(coalesceDelay(least, lastPass), want));
});

describe("resyncDelay", () => {
  const cases: Array<[number, number, boolean, number]> = [
    [RESYNC_MS, 0, false, RESYNC_MS],
    [RESYNC_MS, 50, false, RESYNC_MS],
    [RESYNC_MS, 15_000, false, 150_000],
    [RESYNC_MS, 15_000, true, RESYNC_MS],
    [RESYNC_MS, 120_000, false, MAX_RESYNC_MS],
    [MAX_RESYNC_MS * 2, 120_000, false, MAX_RESYNC_MS * 2],
  ];
  for (const [least, lastPass, inPhase, want] of cases)
    it(`least ${least} ms, last pass ${lastPass} ms${inPhase ? ", in a phase" : ""}: ${want} ms`, () =>
      assert.equal(resyncDelay(least, lastPass, inPhase), want));
});
