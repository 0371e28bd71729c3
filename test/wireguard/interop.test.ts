// test-tier: netns (root: network namespaces)
/**
 * `podcrypt wireguard` against Debian's wireguard-go and against itself:
 * ping and iperf3 TCP both ways, handshake started by either side, IPv4 and IPv6 underlay, IPv4 and
 * IPv6 inside, all configured with the real `wg`.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { NetnsLab } from "../support/netns.js";
import { INNER_IP, setupPair, stopDaemons, wgDump, type Pair } from "./helpers.js";
import { iperf3, ping, pingUntilUp, type Impl } from "../support/wireguard-lab.js";

const running: Pair[] = [];
after(() => stopDaemons(running.flatMap((p) => p.daemons)));
// Created after our `after` hook so daemons get SIGTERM (and remove their sockets) before the lab SIGKILLs.
const lab = new NetnsLab();

const spawn = (ns: string, cmd: string, args: readonly string[], o?: Parameters<NetnsLab["spawn"]>[3]) =>
  lab.spawn(ns, cmd, args, o);

async function exercise(p: Pair, initiator: "a" | "b"): Promise<void> {
  const [from, to] = initiator === "a" ? [p.a, p.b] : [p.b, p.a];
  const target4 = initiator === "a" ? INNER_IP.b4 : INNER_IP.a4;
  const target6 = initiator === "a" ? INNER_IP.b6 : INNER_IP.a6;
  await pingUntilUp(from.ns, target4);
  // IPv4 and IPv6 inside, both directions.
  assert.ok((await ping(from.ns, target4, 3)) > 0);
  assert.ok((await ping(from.ns, target6, 3)) > 0);
  assert.ok((await ping(to.ns, initiator === "a" ? INNER_IP.a4 : INNER_IP.b4, 3)) > 0);
  assert.ok((await ping(to.ns, initiator === "a" ? INNER_IP.a6 : INNER_IP.b6, 3)) > 0);
  // TCP both ways (the server sends with -R).
  const forward = await iperf3(spawn, p.a.ns, p.b.ns, INNER_IP.b4, 2);
  const reverse = await iperf3(spawn, p.a.ns, p.b.ns, INNER_IP.b4, 2, true);
  const over6 = await iperf3(spawn, p.b.ns, p.a.ns, INNER_IP.a6, 1);
  assert.ok(forward > 1 && reverse > 1 && over6 > 1, `iperf3 ${forward} / ${reverse} / ${over6} Mbit/s`);
  // Both ends agree that a handshake happened and bytes flowed.
  for (const end of [p.a, p.b]) {
    const [peer] = await wgDump(end);
    assert.ok(peer !== undefined);
    assert.ok(peer.latestHandshake > 0, `${end.impl} latest handshake`);
    assert.ok(peer.rx > 1_000_000 && peer.tx > 1_000_000, `${end.impl} transfer ${peer.rx}/${peer.tx}`);
  }
}

const cases: Array<{ a: Impl; b: Impl; ipv6: boolean; initiator: "a" | "b" }> = [
  { a: "podcrypt", b: "wireguard-go", ipv6: false, initiator: "a" },
  { a: "podcrypt", b: "wireguard-go", ipv6: true, initiator: "b" },
  { a: "wireguard-go", b: "podcrypt", ipv6: false, initiator: "a" },
  { a: "podcrypt", b: "wireguard-go", ipv6: true, initiator: "a" },
  { a: "podcrypt", b: "podcrypt", ipv6: false, initiator: "a" },
  { a: "podcrypt", b: "podcrypt", ipv6: true, initiator: "b" },
];

for (const c of cases) {
  test(`${c.a} <-> ${c.b}, IPv${c.ipv6 ? 6 : 4} underlay, ${c.initiator === "a" ? c.a : c.b} (${c.initiator}) starts`, async () => {
    // Only the initiator knows the other's endpoint: the responder learns it from the handshake.
    const p = await setupPair(lab, c.a, c.b, {
      ipv6: c.ipv6,
      endpoints: c.initiator === "a" ? "a-only" : "b-only",
    });
    running.push(p);
    try {
      await exercise(p, c.initiator);
    } finally {
      await stopDaemons(p.daemons);
    }
  });
}
