// test-tier: netns (root: network namespaces)
/**
 * `podcrypt wireguard` when its interface's MTU is raised from outside under traffic. The daemon
 * starts at 1420; the test raises the TUN MTU beyond what the daemon adopts (9000) and sends UDP
 * datagrams longer than the start MTU. Before the read buffers stopped depending on the MTU, reads
 * cut such packets to the start MTU's slot and the peer dropped them as malformed. Now they are
 * forwarded whole, and the daemon stays up. All traffic stays in the two namespaces it makes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { blast, receiveDuring } from "../support/udp-blast.js";
import { INNER_IP, setupPair, stopDaemons, type Pair } from "./helpers.js";
import { pingUntilUp } from "../support/wireguard-lab.js";

const lab = new NetnsLab();
let p!: Pair;
after(async () => {
  if ((p as Pair | undefined) !== undefined) await stopDaemons(p.daemons);
});

before(async () => {
  p = await setupPair(lab, "podcrypt", "podcrypt");
  await pingUntilUp(p.a.ns, INNER_IP.b4);
  for (const e of [p.a, p.b]) {
    await runIn(e.ns, "ip", ["link", "set", "eth0", "mtu", "9600"]);
    await runIn(e.ns, "ip", ["link", "set", e.ifname, "txqueuelen", "10000"]);
  }
});

describe("podcrypt wireguard when the interface MTU is raised under traffic", () => {
  it("forwards packets longer than the MTU it started with, whole, and keeps running", async () => {
    await runIn(p.b.ns, "ip", ["link", "set", p.b.ifname, "mtu", "9500"]);
    const got = await receiveDuring(lab, p.b.ns, async () => {
      await blast(p.a.ns, INNER_IP.b4, 1000, 256);
      await blast(p.a.ns, INNER_IP.b4, 3000, 512, { ifname: p.a.ifname, mtu: 9500 });
      await blast(p.a.ns, INNER_IP.b4, 8900, 256);
    });
    for (const d of p.daemons) assert.equal(d.exitCode, null, "daemon alive");
    assert.equal(
      [...got.keys()].filter((k) => ![1000, 3000, 8900].includes(k)).length,
      0,
      JSON.stringify([...got]),
    );
    assert.ok((got.get(3000) ?? 0) >= 512 * 0.9, `3000-byte datagrams received: ${got.get(3000) ?? 0}`);
    assert.ok((got.get(8900) ?? 0) >= 256 * 0.9, `8900-byte datagrams received: ${got.get(8900) ?? 0}`);
  });
});
