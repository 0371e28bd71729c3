/**
 * UDP traffic for namespace tests: a receiver that counts datagrams by size while something runs,
 * and a sender that blasts datagrams as fast as its socket takes them (so a data plane reads full
 * batches), optionally setting an interface's MTU right before. Both are node processes in the
 * namespace; nothing leaves it.
 */
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { runIn } from "../../src/platform/netns/netns.js";
import type { NetnsLab } from "./netns.js";

/** The UDP port both use. */
export const BLAST_PORT = 9911;

/**
 * Counts UDP datagrams of each size arriving at `ns`:BLAST_PORT while `during` runs; returns
 * size -> count. The receiver is a node process in the namespace, stopped after `during`.
 */
export async function receiveDuring(
  lab: NetnsLab,
  ns: string,
  during: () => Promise<void>,
): Promise<Map<number, number>> {
  const code = `
    const dgram = require("node:dgram");
    const counts = {};
    const s = dgram.createSocket({ type: "udp4", recvBufferSize: 32 << 20 });
    s.on("message", (m) => (counts[m.length] = (counts[m.length] ?? 0) + 1));
    s.bind(${BLAST_PORT}, () => process.stdout.write("ready\\n"));
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
 * Sends `count` UDP datagrams of `size` payload bytes from `ns` to `host`:BLAST_PORT as fast as the
 * socket takes them, so the daemon reads full batches. With `mtu`, the sending process first sets
 * that MTU on `ifname` and blasts right after it, before the daemon's periodic MTU check runs.
 */
export async function blast(
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
      for (let i = 0; i < ${count}; i++) s.send(payload, ${BLAST_PORT}, "${host}", () => { if (--pending === 0) s.close(); });
    });`;
  await runIn(ns, process.execPath, ["-e", code], { timeoutMs: 60_000 });
}

/**
 * Sends `count` 64-byte datagrams from `ns` to `host`:BLAST_PORT at a steady rate, `perTick` every
 * 10 ms (`perTick` 10 is 1000 datagrams/s), for the tests that count loss across an event.
 */
export async function paced(ns: string, host: string, count: number, perTick: number): Promise<void> {
  const code = `
    const s = require("node:dgram").createSocket("udp4");
    let i = 0;
    const t = setInterval(() => {
      for (let k = 0; k < ${perTick} && i < ${count}; k++, i++) {
        const b = Buffer.alloc(64); b.writeUInt32BE(i); s.send(b, ${BLAST_PORT}, "${host}");
      }
      if (i >= ${count}) { clearInterval(t); setTimeout(() => s.close(), 200); }
    }, 10);`;
  await runIn(ns, process.execPath, ["-e", code], { timeoutMs: 120_000 });
}

/** What {@link sequenceReceiver} counted from one source address. */
export interface SequenceCount {
  /** Distinct sequence numbers received. */
  received: number;
  /** Datagrams received more than once. */
  duplicates: number;
}

type SpawnIn = (ns: string, cmd: string, args: string[], o: SpawnOptions) => ChildProcess;

/** Starts `code` in `ns` and resolves once it printed "ready"; `stop()` sends SIGTERM and returns its last line. */
async function started(spawn: SpawnIn, ns: string, code: string): Promise<() => Promise<string>> {
  const child = spawn(ns, process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready")) resolve();
    });
    child.once("exit", (c) => reject(new Error(`traffic process in ${ns} exited ${c}`)));
  });
  return async () => {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
    return out.trim().split("\n").pop()!;
  };
}

/**
 * A receiver in `ns` on BLAST_PORT (IPv4 and IPv6) counting, per source address, the distinct
 * sequence numbers that {@link sequencedSender}s sent it. `stop()` ends it (after the senders
 * stopped) and returns source -> counts. `spawn` starts the process, which the caller kills if the
 * test fails before `stop()`.
 */
export async function sequenceReceiver(
  spawn: SpawnIn,
  ns: string,
): Promise<() => Promise<Map<string, SequenceCount>>> {
  const code = `
    const seen = new Map();
    const s = require("node:dgram").createSocket({ type: "udp6", recvBufferSize: 8 << 20 });
    s.on("message", (m, r) => {
      if (m.length < 4) return;
      const from = r.address.startsWith("::ffff:") ? r.address.slice(7) : r.address;
      let x = seen.get(from);
      if (x === undefined) seen.set(from, (x = { set: new Set(), duplicates: 0 }));
      const seq = m.readUInt32BE(0);
      if (x.set.has(seq)) x.duplicates++; else x.set.add(seq);
    });
    s.bind(${BLAST_PORT}, () => process.stdout.write("ready\\n"));
    process.on("SIGTERM", () => {
      const out = {};
      for (const [a, x] of seen) out[a] = { received: x.set.size, duplicates: x.duplicates };
      process.stdout.write(JSON.stringify(out) + "\\n");
      process.exit(0);
    });`;
  const stop = await started(spawn, ns, code);
  return async () => new Map(Object.entries(JSON.parse(await stop()) as Record<string, SequenceCount>));
}

/** What a {@link sequencedSender} sent to one target. */
export interface SequenceSent {
  sent: number;
  /** Sends the socket refused (no route, say): counted in `sent`, so they show up as lost. */
  errors: number;
}

/**
 * A sender in `ns` of 64-byte datagrams to each of `targets` (IPv4 or IPv6 addresses) at
 * BLAST_PORT, one per target every 10 ms (100 per second each) until stopped: a sequence number of
 * that target (4 bytes, big endian) and then `marker`, so that a capture can tell whether they
 * crossed in plaintext. `stop()` returns target -> what was sent.
 */
export async function sequencedSender(
  spawn: SpawnIn,
  ns: string,
  targets: readonly string[],
  marker: string,
): Promise<() => Promise<Map<string, SequenceSent>>> {
  const code = `
    const dgram = require("node:dgram");
    const sockets = { udp4: dgram.createSocket("udp4"), udp6: dgram.createSocket("udp6") };
    const targets = ${JSON.stringify(targets)}.map((t) => ({ t, sent: 0, errors: 0 }));
    const tick = setInterval(() => {
      for (const x of targets) {
        const b = Buffer.alloc(64); b.writeUInt32BE(x.sent++); b.write(${JSON.stringify(marker)}, 4);
        sockets[x.t.includes(":") ? "udp6" : "udp4"].send(b, ${BLAST_PORT}, x.t, (e) => { if (e) x.errors++; });
      }
    }, 10);
    process.stdout.write("ready\\n");
    process.on("SIGTERM", () => {
      clearInterval(tick);
      // What is still queued on the sockets goes out before the counts are reported.
      setTimeout(() => {
        process.stdout.write(JSON.stringify(Object.fromEntries(targets.map((x) => [x.t, { sent: x.sent, errors: x.errors }]))) + "\\n");
        process.exit(0);
      }, 200);
    });`;
  const stop = await started(spawn, ns, code);
  return async () => new Map(Object.entries(JSON.parse(await stop()) as Record<string, SequenceSent>));
}
