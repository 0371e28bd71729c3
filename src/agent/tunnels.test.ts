import assert from "node:assert/strict";
import { test } from "node:test";
import type { ObservedPeer } from "../dataplane/types.js";
import { nodeSchema, type Node } from "../model/index.js";
import { allUp, TunnelTracker, UNANSWERED_MS } from "./tunnels.js";

const node = (name: string, ipv6 = false): Node =>
  nodeSchema.parse({ name, underlay: ipv6 ? { ipv6: "fd00::2" } : { ipv4: "192.0.2.2" } });

const wg = (name: string, tx: number, rx: number, handshake = 1): ObservedPeer => ({
  node: name,
  epoch: 1,
  ifname: "podcrypt1",
  endpoint: "192.0.2.2:51820",
  txBytes: tx,
  rxBytes: rx,
  ...(handshake > 0 ? { latestHandshake: handshake } : {}),
});

test("tunnels: pending before a handshake, up after, failing once sending goes unanswered", () => {
  const t = new TunnelTracker();
  const peers = [node("b"), node("c")];
  let now = 1_000_000;
  const states = (observed: ObservedPeer[]) => {
    const r = t.observe(observed, peers, now);
    now += 5000;
    return r.families;
  };
  assert.deepEqual(states([wg("b", 0, 0, 0)]), [
    { family: "ipv4", upCount: 0, pending: ["b", "c"], failing: [] },
  ]);
  // Up peers are counted, not named: the report does not grow with the peers that are up.
  assert.deepEqual(states([wg("b", 100, 100), wg("c", 10, 10)]), [
    { family: "ipv4", upCount: 2, pending: [], failing: [] },
  ]);
  // b stops answering: 15 s of sending without receiving.
  const seq = [200, 300, 400, 500];
  const seen = seq.map((tx) => states([wg("b", tx, 100), wg("c", 10, 10)])[0]!.failing);
  assert.deepEqual(seen, [[], [], [], ["b"]]);
  // An answer again: up.
  assert.deepEqual(states([wg("b", 600, 200), wg("c", 10, 10)]), [
    { family: "ipv4", upCount: 2, pending: [], failing: [] },
  ]);
});

test("tunnels: an idle tunnel stays up; counters that go back (a new daemon) start afresh", () => {
  const t = new TunnelTracker();
  const peers = [node("b")];
  let now = 0;
  for (let i = 0; i < 10; i++, now += 5000) assert.ok(allUp(t.observe([wg("b", 50, 50)], peers, now)));
  // Restarted daemon: counters from 0, then sending without answer for less than the limit.
  assert.ok(allUp(t.observe([wg("b", 10, 0)], peers, (now += 5000))));
  const since = (now += 5000);
  assert.ok(allUp(t.observe([wg("b", 20, 0)], peers, since)));
  assert.ok(allUp(t.observe([wg("b", 30, 0)], peers, since + UNANSWERED_MS - 1)));
  assert.ok(!allUp(t.observe([wg("b", 40, 0)], peers, since + UNANSWERED_MS)));
});

test("tunnels: IPsec needs both SAs; families from the endpoint or the peer's underlay", () => {
  const t = new TunnelTracker();
  const esp = (spiOut?: string): ObservedPeer => ({
    node: "b",
    epoch: 1,
    ifname: "pc1we",
    spiIn: "0x00000001",
    ...(spiOut === undefined ? {} : { spiOut }),
    endpoint: "[fd00::2]:4500",
    txBytes: 0,
    rxBytes: 0,
  });
  const peers = [node("b", true), node("c", true)];
  assert.deepEqual(t.observe([esp()], peers, 0).families, [
    { family: "ipv6", upCount: 0, pending: ["b", "c"], failing: [] },
  ]);
  assert.deepEqual(t.observe([esp("0x00000002")], peers, 5000).families, [
    { family: "ipv6", upCount: 1, pending: ["c"], failing: [] },
  ]);
  assert.deepEqual(t.observe([], [node("d")], 10000).families, [
    { family: "ipv4", upCount: 0, pending: ["d"], failing: [] },
  ]);
});

test("tunnels: the published report names only the peers not up, and validates in a Node's status", () => {
  const many = Array.from({ length: 1000 }, (_, i) => `n${String(i).padStart(4, "0")}`);
  const t = new TunnelTracker();
  const report = t.observe(
    many.map((n) => ({ ...wg(n, 10, 10), node: n })),
    [...many.map((n) => node(n)), node("late")],
    0,
  );
  assert.deepEqual(report.families, [{ family: "ipv4", upCount: 1000, pending: ["late"], failing: [] }]);
  assert.ok(JSON.stringify(report).length < 200, `${JSON.stringify(report).length} bytes for 1001 peers`);
  const parsed = nodeSchema.parse({
    name: "a",
    underlay: { ipv4: "192.0.2.1" },
    status: { tunnels: report },
  });
  assert.deepEqual(parsed.status?.tunnels, report);
  // A record an earlier agent wrote (up peers by name, no count) still validates.
  const old = { at: report.at, families: [{ family: "ipv4", up: ["b"], pending: ["c"] }] };
  const oldParsed = nodeSchema.parse({
    name: "a",
    underlay: { ipv4: "192.0.2.1" },
    status: { tunnels: old },
  });
  assert.deepEqual(oldParsed.status?.tunnels?.families, [
    { family: "ipv4", up: ["b"], pending: ["c"], failing: [] },
  ]);
  assert.throws(
    () =>
      nodeSchema.parse({
        name: "a",
        underlay: { ipv4: "192.0.2.1" },
        status: { tunnels: { ...report, families: [{ family: "ipv4", upCount: -1 }] } },
      }),
    /upCount/,
  );
});
