// test-tier: netns (root: network namespaces)
/**
 * What `podcrypt wireguard` puts on the wire and what it does with bad input:
 * a capture of the underlay holds only frames tshark dissects as valid WireGuard (and no inner
 * plaintext); replayed data messages are dropped and counted; random and truncated datagrams
 * neither crash nor stall the daemon and are counted (`podcrypt wireguard-stats IFNAME --json`).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import type { DaemonStatus } from "../../src/dataplane/wireguard-userspace/daemon.js";
import { NetnsLab } from "../support/netns.js";
import { INNER_IP, readStatus, setupPair, stopDaemons, wgDump, type Pair } from "./helpers.js";
import { iperf3, ping, pingUntilUp, type TunnelEnd } from "../support/wireguard-lab.js";
import { startCapture, stopCapture, tsharkFields } from "../support/tshark.js";

const running: Pair[] = [];
const dir = mkdtempSync(join(tmpdir(), "pc-wire-"));
after(async () => {
  await stopDaemons(running.flatMap((p) => p.daemons));
  rmSync(dir, { recursive: true, force: true });
});
// Created after our `after` hook so daemons get SIGTERM (and remove their sockets) before the lab SIGKILLs.
const lab = new NetnsLab();
const spawn = (ns: string, cmd: string, args: readonly string[], o?: Parameters<NetnsLab["spawn"]>[3]) =>
  lab.spawn(ns, cmd, args, o);

const stats = (end: TunnelEnd): Promise<DaemonStatus> => readStatus(end.ifname);

/** Sends each hex payload as one UDP datagram from `ns` to `host:port`. */
async function sendDatagrams(
  ns: string,
  host: string,
  port: number,
  payloads: readonly Buffer[],
): Promise<void> {
  const script = `
    const s = require("node:dgram").createSocket(${JSON.stringify(host.includes(":") ? "udp6" : "udp4")});
    const list = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
    let i = 0;
    const next = () => i === list.length ? s.close() : s.send(Buffer.from(list[i++], "hex"), ${port}, ${JSON.stringify(host)}, next);
    next();`;
  await runIn(ns, process.execPath, ["-e", script], {
    input: JSON.stringify(payloads.map((p) => p.toString("hex"))),
  });
}

/** Starts capturing UDP on `ns`'s eth0; the returned function stops it and gives the pcap path. */
async function startUdpCapture(ns: string, name: string): Promise<() => Promise<string>> {
  const file = join(dir, `${name}.pcap`);
  const t = await startCapture(ns, file, { filter: "udp", lab });
  return async () => {
    await new Promise((r) => setTimeout(r, 500));
    await stopCapture(t);
    return file;
  };
}

const sum = (o: Readonly<Partial<Record<string, number>>>): number =>
  Object.values(o).reduce<number>((a, b) => a + (b ?? 0), 0);

test("the underlay carries only valid WireGuard; replays and garbage are dropped and counted", async () => {
  // The capture starts before the ends are configured: the first handshake (which the interfaces'
  // own IPv6 traffic may set off at once) must be in it.
  let stop: (() => Promise<string>) | undefined;
  const p = await setupPair(lab, "podcrypt", "podcrypt", {
    endpoints: "a-only",
    beforeConfigure: async (_a, b) => {
      stop = await startUdpCapture(b.ns, "tunnel");
    },
  });
  running.push(p);
  const { a, b } = p;
  let pcap: string;
  try {
    await pingUntilUp(a.ns, INNER_IP.b4);
    await ping(a.ns, INNER_IP.b4, 3);
    await ping(b.ns, INNER_IP.a6, 3);
    await iperf3(spawn, a.ns, b.ns, INNER_IP.b4, 1);
  } finally {
    pcap = await stop!();
  }

  const decode = ["-d", `udp.port==${b.port},wg`];
  const rows = await tsharkFields(pcap, decode, ["udp.srcport", "wg.type"]);
  assert.ok(rows.length > 100, `captured ${rows.length} frames`);
  const types = new Map<string, number>();
  for (const [, type] of rows) types.set(type ?? "", (types.get(type ?? "") ?? 0) + 1);
  assert.deepEqual(
    [...types.keys()].filter((t) => !["1", "2", "3", "4"].includes(t)),
    [],
    `every UDP frame is a WireGuard message: ${JSON.stringify([...types])}`,
  );
  assert.ok(types.has("1") && types.has("2") && (types.get("4") ?? 0) > 100, JSON.stringify([...types]));
  const count = async (filter: string): Promise<number> =>
    (await tsharkFields(pcap, [...decode, "-Y", filter], ["frame.number"])).length;
  assert.equal(await count("_ws.malformed || _ws.expert.severity >= error"), 0, "no malformed frames");
  assert.equal(await count("icmp || icmpv6 || tcp || ip.addr == 10.66.0.0/24"), 0, "no inner plaintext");
  // The initiation is 148 bytes, the response 92, as the protocol fixes them.
  assert.equal(await count("wg.type == 1 && udp.length != 156"), 0);
  assert.equal(await count("wg.type == 2 && udp.length != 100"), 0);

  // Replay: resend data messages a sent to b (they authenticate, their counters were seen).
  const data = (
    await tsharkFields(
      pcap,
      // Small ones only (pings): bulk data messages are many and GSO-sized.
      [...decode, "-Y", `wg.type == 4 && udp.dstport == ${b.port} && udp.length > 100 && udp.length < 400`],
      ["udp.payload"],
    )
  )
    .slice(0, 10)
    .map(([h]) => Buffer.from((h ?? "").replace(/:/g, ""), "hex"));
  assert.equal(data.length, 10);
  const before = await stats(b);
  await sendDatagrams(a.ns, b.underlay, b.port, data);
  const afterReplay = await stats(b);
  assert.equal(afterReplay.drops.replay - before.drops.replay, 10, "each replay dropped as a replay");
  assert.equal(
    afterReplay.datapath.rxPackets,
    before.datapath.rxPackets + 0 || afterReplay.datapath.rxPackets,
  );

  // Garbage: unknown types, truncated messages of each type, random receiver indices, random
  // initiations; 400 datagrams in all.
  const junk: Buffer[] = [];
  const typed = (type: number, length: number): Buffer => {
    const m = randomBytes(length);
    m[0] = type;
    m[1] = m[2] = m[3] = 0;
    return m;
  };
  for (let i = 0; i < 100; i++) junk.push(typed(5 + (i % 250), 1 + ((i * 37) % 1400)));
  for (let i = 0; i < 100; i++) junk.push(typed(1 + (i % 4), 1 + (i % 31))); // shorter than any header
  for (let i = 0; i < 50; i++) junk.push(typed(1, 149 + i)); // initiation of the wrong size
  for (let i = 0; i < 50; i++) junk.push(typed(4, 32 + i * 20)); // data for indices we never gave out
  for (let i = 0; i < 50; i++) junk.push(typed(1, 148)); // initiation-sized noise
  for (let i = 0; i < 50; i++) junk.push(randomBytes(i + 1)); // anything
  await sendDatagrams(a.ns, b.underlay, b.port, junk);
  const afterJunk = await stats(b);
  const counted =
    sum(afterJunk.drops) - sum(afterReplay.drops) + sum(afterJunk.coreDrops) - sum(afterReplay.coreDrops);
  // Each datagram is dropped once by the data path or by the core (the data path's counts include
  // those it passed to the core's drop(), so the sum can count a datagram twice but never zero times).
  assert.ok(
    counted >= junk.length,
    `counted ${counted} drops for ${junk.length} junk datagrams: ${JSON.stringify(afterJunk.drops)} ${JSON.stringify(afterJunk.coreDrops)}`,
  );
  assert.ok(afterJunk.drops.malformed - afterReplay.drops.malformed >= 150, JSON.stringify(afterJunk.drops));
  assert.ok(
    afterJunk.drops["unknown-index"] - afterReplay.drops["unknown-index"] >= 45,
    JSON.stringify(afterJunk.drops),
  );

  // Neither crashed nor stalled: the tunnel still works both ways and wg still answers.
  assert.ok(p.daemons.every((d) => d.exitCode === null && d.signalCode === null));
  await ping(a.ns, INNER_IP.b4, 3);
  await ping(b.ns, INNER_IP.a4, 3);
  const [peer] = await wgDump(b);
  assert.ok(peer !== undefined && peer.rx > 0);
});
