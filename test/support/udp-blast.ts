/**
 * UDP traffic for namespace tests: a receiver that counts datagrams by size while something runs,
 * and a sender that blasts datagrams as fast as its socket takes them (so a data plane reads full
 * batches), optionally setting an interface's MTU right before. Both are node processes in the
 * namespace; nothing leaves it.
 */
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
