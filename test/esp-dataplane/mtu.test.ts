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
import { NetnsLab } from "../helpers/netns.js";
import { espPair, installEpoch, status, type EspPair } from "./lab.js";

const lab = new NetnsLab();
let p!: EspPair;
after(() => (p as EspPair | undefined)?.dispose());

const PORT = 9911;

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

/**
 * Counts UDP datagrams of each size arriving at `ns`:PORT while `during` runs; returns
 * size -> count. The receiver is a node process in the namespace, stopped after `during`.
 */
async function receiveDuring(ns: string, during: () => Promise<void>): Promise<Map<number, number>> {
  const code = `
    const dgram = require("node:dgram");
    const counts = {};
    const s = dgram.createSocket({ type: "udp4", recvBufferSize: 32 << 20 });
    s.on("message", (m) => (counts[m.length] = (counts[m.length] ?? 0) + 1));
    s.bind(${PORT}, () => process.stdout.write("ready\\n"));
    process.on("SIGTERM", () => { process.stdout.write(JSON.stringify(counts) + "\\n"); process.exit(0); });`;
  const child = lab.spawn(ns, process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready")) resolve();
    });
    child.once("exit", (c) => reject(new Error(`receiver exited ${c}`)));
  });
  await ready;
  try {
    await during();
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  const line = out.trim().split("\n").pop()!;
  return new Map(Object.entries(JSON.parse(line) as Record<string, number>).map(([k, v]) => [Number(k), v]));
}

/**
 * Sends `count` UDP datagrams of `size` payload bytes from `ns` to `host`:PORT as fast as the
 * socket takes them, so the daemon reads full batches. With `mtu`, the sending process first sets
 * that MTU on `ifname` and blasts right after it, before the daemon's periodic MTU check runs.
 */
async function blast(
  ns: string,
  host: string,
  size: number,
  count: number,
  mtu?: { ifname: string; mtu: number },
): Promise<void> {
  const code = `
    const dgram = require("node:dgram");
    const { execFileSync } = require("node:child_process");
    const s = dgram.createSocket({ type: "udp4", sendBufferSize: 32 << 20 });
    s.bind(0, () => {
      const payload = Buffer.alloc(${size}, 0x5a);
      ${mtu === undefined ? "" : `execFileSync("ip", ["link", "set", "${mtu.ifname}", "mtu", "${mtu.mtu}"]);`}
      let pending = ${count};
      for (let i = 0; i < ${count}; i++) s.send(payload, ${PORT}, "${host}", () => { if (--pending === 0) s.close(); });
    });`;
  await runIn(ns, process.execPath, ["-e", code], { timeoutMs: 60_000 });
}

describe("podcrypt esp when the interface MTU is raised under traffic", () => {
  it("keeps running and forwards packets longer than the MTU it started with", async () => {
    const before = await status(p.a);
    assert.equal(before.mtu, 1420);
    // 3000-byte UDP payloads: 3028-byte inner packets, more than twice the start MTU's buffers.
    const got = await receiveDuring(p.b.ns, async () => {
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
    const got = await receiveDuring(p.b.ns, async () => {
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
