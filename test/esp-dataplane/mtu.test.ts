// test-tier: netns (root: network namespaces)
/**
 * The userspace ESP daemon when its interface's MTU is raised from outside under traffic. The
 * daemon starts at the default MTU (1420); the test raises the TUN MTU while bursts of inner
 * packets longer than that are in flight, then beyond the largest MTU the daemon accepts. Before
 * the buffers were sized from what is read, reads were cut to the start MTU's slot, the copy into
 * the send slot was truncated, and a full batch threw a RangeError in the poll callback, which
 * killed the daemon. Now: the daemon survives, forwards every packet up to the largest MTU and
 * counts longer ones as `oversize`. All traffic stays in the two namespaces this file makes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { blast, receiveDuring } from "../support/udp-blast.js";
import { espPair, installEpoch, status, type EspPair } from "../support/esp-lab.js";

const lab = new NetnsLab();
let p!: EspPair;
after(() => (p as EspPair | undefined)?.dispose());

before(async () => {
  p = await espPair(lab, "m");
  await installEpoch(p, 1, true);
  // Jumbo underlay, so the outer datagrams of long inner packets go unfragmented; a long TUN queue,
  // so the blasts below are not lost before the daemon reads them.
  for (const e of [p.a, p.b]) {
    await runIn(e.ns, "ip", ["link", "set", "eth0", "mtu", "9600"]);
    await runIn(e.ns, "ip", ["link", "set", e.ifname, "txqueuelen", "10000"]);
  }
});

describe("podcrypt esp when the interface MTU is raised under traffic", () => {
  it("keeps running and forwards packets longer than the MTU it started with", async () => {
    const before = await status(p.a);
    assert.equal(before.mtu, 1420);
    // 3000-byte UDP payloads: 3028-byte inner packets, more than twice the start MTU's buffers.
    const got = await receiveDuring(lab, p.b.ns, async () => {
      await runIn(p.b.ns, "ip", ["link", "set", p.b.ifname, "mtu", "4000"]);
      await blast(p.a.ns, p.b.inner, 1000, 512);
      await blast(p.a.ns, p.b.inner, 3000, 1024, { ifname: p.a.ifname, mtu: 4000 });
    });
    const after1 = await status(p.a);
    assert.equal(after1.pid, before.pid, "same daemon process");
    assert.equal(p.a.daemon.exitCode, null, "daemon alive");
    assert.equal(after1.counters.callbackErrors, 0, "no exception on the packet path");
    assert.equal(after1.mtu, 4000, "the daemon follows the interface MTU");
    // Loss allowed only from socket buffers under bursts, never truncation: every long packet
    // that arrived is whole (the receiver counts by size) and nearly all arrived.
    assert.equal([...got.keys()].filter((k) => k !== 1000 && k !== 3000).length, 0, JSON.stringify([...got]));
    assert.ok((got.get(3000) ?? 0) >= 1024 * 0.9, `3000-byte datagrams received: ${got.get(3000) ?? 0}`);
  });

  it("beyond the largest MTU it accepts, forwards what fits and counts longer packets as oversize", async () => {
    // 9500 is more than the daemon's largest tunnel MTU (9000): it keeps its buffers and status.
    for (const e of [p.a, p.b]) await runIn(e.ns, "ip", ["link", "set", e.ifname, "mtu", "9500"]);
    const before = await status(p.a);
    const got = await receiveDuring(lab, p.b.ns, async () => {
      await blast(p.a.ns, p.b.inner, 8900, 512);
      await blast(p.a.ns, p.b.inner, 9200, 256);
    });
    const after1 = await status(p.a);
    assert.equal(after1.pid, before.pid, "same daemon process");
    assert.equal(p.a.daemon.exitCode, null, "daemon alive");
    assert.equal(after1.counters.callbackErrors, 0, "no exception on the packet path");
    assert.ok((got.get(8900) ?? 0) >= 512 * 0.9, `8900-byte datagrams received: ${got.get(8900) ?? 0}`);
    assert.equal(got.get(9200) ?? 0, 0, "longer than the largest MTU: not forwarded");
    assert.equal([...got.keys()].filter((k) => k !== 8900).length, 0, JSON.stringify([...got]));
    assert.ok(
      after1.drops.oversize - before.drops.oversize >= 256 * 0.9,
      `oversize ${after1.drops.oversize}`,
    );
  });
});
