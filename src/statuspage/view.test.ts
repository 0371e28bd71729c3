import assert from "node:assert/strict";
import { test } from "node:test";
import { clusterEncryptionSchema, nodeSchema, type Node, type NodeInput } from "../model/index.js";
import { renderStatusView } from "./text.js";
import { statusView } from "./view.js";

const NOW = Date.parse("2026-01-01T00:00:30Z");
const at = (s: number) => new Date(Date.parse("2026-01-01T00:00:00Z") + s * 1000).toISOString();

const node = (name: string, extra: Partial<NodeInput> = {}): Node =>
  nodeSchema.parse({
    name,
    underlay: { ipv4: "192.0.2.1" },
    backend: "wireguard-userspace",
    heartbeat: at(28),
    publicKeys: { "2": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" },
    ...extra,
  });

/** The nodes' `heartbeat` fields stand for the renewals of their liveness records here. */
const heartbeatsOf = (nodes: readonly Node[]): Map<string, string> =>
  new Map(
    nodes.flatMap((n) => (n.heartbeat === undefined ? [] : [[n.name, n.heartbeat] as [string, string]])),
  );

/** A report as agents write it: the up peers counted, the others named. */
const tunnels = (up: string[], pending: string[] = [], failing: string[] = []) => ({
  status: {
    errors: [],
    tunnels: { at: at(28), families: [{ family: "ipv4" as const, upCount: up.length, pending, failing }] },
  },
});

const on = clusterEncryptionSchema.parse({
  name: "default",
  applied: { enabled: true, mode: "wireguard" },
  epoch: 2,
  lastCompletedAt: at(10),
  phaseStartedAt: { prepare: at(1), switch: at(4), retire: at(7) },
});

test("status view: each ordered pair from the reporting node's tunnels; silence and dead agents fail", () => {
  const nodes = [
    node("a", { ...tunnels(["b"], [], ["c"]) }),
    node("b", { ...tunnels(["a"], ["c"]) }),
    node("c"),
    node("d", { heartbeat: at(0), ...tunnels(["a", "b", "c"]) }),
  ];
  const v = statusView(on, nodes, heartbeatsOf(nodes), NOW);
  const state = (from: string, to: string) => v.pairs.find((p) => p.from === from && p.to === to)?.state;
  assert.equal(v.pairs.length, 12);
  assert.equal(state("a", "b"), "encrypted");
  assert.equal(state("a", "c"), "failing");
  assert.equal(state("b", "c"), "pending");
  assert.equal(state("c", "a"), "pending", "c has not reported its tunnels");
  assert.equal(state("d", "a"), "failing", "d's heartbeat is 30 s old");
  assert.equal(state("a", "d"), "failing");
  assert.deepEqual(v.summary, { encrypted: 2, pending: 3, "plaintext-allowed": 0, failing: 7 });
  assert.deepEqual(v.families, ["ipv4"]);
  assert.equal(v.nodes.find((n) => n.name === "d")?.live, false);
  const text = renderStatusView(v);
  assert.match(text, /a → c \(ipv4\) failing: a sends to c and gets no answer/);
  assert.match(text, /^a {6}- {6}enc {4}FAIL {3}FAIL/m);
});

test("status view: up peers by count need a report covering every live peer; earlier agents' names still read", () => {
  // a judged b and c; a fourth node joined since (d): which of the three a counts as up it
  // cannot tell, so none counts as reported until a's next judgement covers d.
  const stale = [node("a", tunnels(["b"], ["c"])), node("b"), node("c"), node("d")];
  const v = statusView(on, stale, heartbeatsOf(stale), NOW);
  const state = (from: string, to: string) => v.pairs.find((p) => p.from === from && p.to === to);
  assert.deepEqual(
    ["b", "c", "d"].map((to) => [to, state("a", to)?.state, state("a", to)?.reason]),
    [
      ["b", "pending", "not reported yet"],
      ["c", "pending", "no handshake or SA pair yet"],
      ["d", "pending", "not reported yet"],
    ],
  );
  // Covered again: b, c and d are two up and one pending; a dead node does not count.
  const fresh = [
    node("a", tunnels(["b", "d"], ["c"])),
    node("b"),
    node("c"),
    node("d"),
    node("e", { heartbeat: at(0) }),
  ];
  const w = statusView(on, fresh, heartbeatsOf(fresh), NOW);
  assert.deepEqual(
    w.pairs.filter((p) => p.from === "a").map((p) => [p.to, p.state]),
    [
      ["b", "encrypted"],
      ["c", "pending"],
      ["d", "encrypted"],
      ["e", "failing"],
    ],
  );
  // A record of an earlier agent: the up peers by name, whatever the count.
  const old = {
    status: {
      errors: [],
      tunnels: { at: at(28), families: [{ family: "ipv4" as const, up: ["b"], pending: [], failing: [] }] },
    },
  };
  const legacy = [node("a", old), node("b"), node("c")];
  const x = statusView(on, legacy, heartbeatsOf(legacy), NOW);
  assert.deepEqual(
    x.pairs.filter((p) => p.from === "a").map((p) => [p.to, p.state, p.reason]),
    [
      ["b", "encrypted", undefined],
      ["c", "pending", "not reported yet"],
    ],
  );
  // Up peers in both families: each peer's is the one a's tunnel to it uses (IPv4 when the
  // peer has it, a being an IPv4 node), an IPv6-only peer's is IPv6.
  const both = {
    status: {
      errors: [],
      tunnels: {
        at: at(28),
        families: [
          { family: "ipv4" as const, upCount: 1, pending: [], failing: [] },
          { family: "ipv6" as const, upCount: 1, pending: [], failing: [] },
        ],
      },
    },
  };
  const mixed = [
    node("a", both),
    node("b", { underlay: { ipv4: "192.0.2.2", ipv6: "fd00::2" } }),
    node("c", { underlay: { ipv6: "fd00::3" } }),
  ];
  const y = statusView(on, mixed, heartbeatsOf(mixed), NOW);
  assert.deepEqual(
    y.pairs.filter((p) => p.from === "a").map((p) => [p.to, p.family, p.state]),
    [
      ["b", "ipv4", "encrypted"],
      ["c", "ipv6", "encrypted"],
    ],
  );
});

test("status view: encryption off allows plaintext; an IPv6 tunnel is its own family", () => {
  const off = clusterEncryptionSchema.parse({
    name: "default",
    enabled: false,
    applied: { enabled: false, mode: "wireguard" },
  });
  const offNodes = [node("a"), node("b")];
  const v = statusView(off, offNodes, heartbeatsOf(offNodes), NOW);
  assert.deepEqual(
    v.pairs.map((p) => p.state),
    ["plaintext-allowed", "plaintext-allowed"],
  );
  const six = {
    status: {
      errors: [],
      tunnels: { at: at(28), families: [{ family: "ipv6" as const, upCount: 1, pending: [], failing: [] }] },
    },
  };
  const sixNodes = [node("a", six), node("b", tunnels(["a"]))];
  const w = statusView(on, sixNodes, heartbeatsOf(sixNodes), NOW);
  assert.deepEqual(w.families, ["ipv4", "ipv6"]);
  assert.deepEqual(
    w.pairs.map((p) => [p.from, p.family, p.state]),
    [
      ["a", "ipv6", "encrypted"],
      ["b", "ipv4", "encrypted"],
    ],
  );
});

test("status view: the rotation timeline from acknowledgements and the run's phase times, newest first", () => {
  const acks = (node: number) =>
    [1, 2].flatMap((e) =>
      (["prepare", "switch", "retire"] as const).map((phase, i) => ({
        epoch: e,
        phase,
        at: at(e * 10 + i * 3 + node),
      })),
    );
  const running = clusterEncryptionSchema.parse({
    ...on,
    phase: "prepare",
    target: { epoch: 3, enabled: true, mode: "wireguard" },
    phaseStartedAt: { prepare: at(25) },
  });
  const runningNodes = [
    node("a", { acknowledgements: acks(0) }),
    node("b", { acknowledgements: acks(1), status: { errors: [], daemonRestarts: { count: 2 } } }),
  ];
  const v = statusView(running, runningNodes, heartbeatsOf(runningNodes), NOW);
  assert.deepEqual(
    v.rotations.map((r) => [r.epoch, r.running, r.prepare.acks, r.retire.acks]),
    [
      [3, true, 0, 0],
      [2, false, 2, 2],
      [1, false, 2, 2],
    ],
  );
  assert.equal(v.rotations[0]!.prepare.started, at(25));
  assert.deepEqual([v.rotations[1]!.switch.firstAck, v.rotations[1]!.switch.lastAck], [at(23), at(24)]);
  assert.deepEqual(
    v.nodes.map((n) => n.counters["daemonRestarts"]),
    [0, 2],
  );
});

test("status view: host encryption cluster-wide and per node (applied, routes, peers; not applied; not reported)", () => {
  const host = clusterEncryptionSchema.parse({ ...on, hostEncryption: true });
  const report = (applied: boolean, peers: string[]) => ({
    status: { errors: [], hostEncryption: { applied, routes: peers.length, peers } },
  });
  const nodes = [node("a", report(true, ["b"])), node("b", report(false, [])), node("c")];
  const v = statusView(host, nodes, heartbeatsOf(nodes), NOW);
  assert.equal(v.cluster.hostEncryption, true);
  assert.deepEqual(
    v.nodes.map((n) => n.hostEncryption),
    [{ applied: true, routes: 1, peers: ["b"] }, { applied: false, routes: 0, peers: [] }, undefined],
  );
  const text = renderStatusView(v);
  assert.match(text, /^podcrypt at .* · strict · host encryption · epoch 2/m);
  assert.match(text, /^ {2}a: .* · host encryption: 1 route \(to b\)$/m);
  assert.match(text, /^ {2}b: .* · host encryption NOT APPLIED$/m);
  assert.match(text, /^ {2}c: .* · host encryption not reported yet$/m);
  // Off, and no node applies it any more: neither the header nor the nodes mention it.
  const off = statusView(on, [node("a", report(false, []))], new Map(), NOW);
  assert.equal(off.cluster.hostEncryption, false);
  assert.doesNotMatch(renderStatusView(off), /host encryption/);
});
