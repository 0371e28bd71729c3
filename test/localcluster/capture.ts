/** Captures of the local cluster's underlay for the suites that read what crossed it. */
import type { ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { FABRIC_BRIDGE, FABRIC_NETNS } from "../../src/localcluster/plan.js";
import { pcapRecords } from "../../src/localcluster/verify.js";
import { spawnIn } from "../../src/platform/netns/netns.js";
import { startCapture, stopCapture } from "../support/tshark.js";

/**
 * Starts tshark on the fabric bridge (the underlay every node shares), ESP in UDP only, writing
 * `pcap`; resolves once it captures. The process is added to `children`, which the caller kills in
 * its cleanup hooks.
 */
export function startEspCapture(pcap: string, children: Set<ChildProcess>): Promise<ChildProcess> {
  return startCapture(FABRIC_NETNS, pcap, {
    iface: FABRIC_BRIDGE,
    filter: "udp port 4500",
    lab: {
      spawn: (...a) => {
        const t = spawnIn(...a);
        children.add(t);
        return t;
      },
    },
  });
}

/** What {@link tcpdumpFabric} captures and what it leaves behind. */
export interface FabricTcpdumpOptions {
  /** A capture filter (pcap-filter syntax), such as "net 10.244.0.0/16"; default none: every frame. */
  readonly filter?: string;
  /** The bytes kept of each frame (tcpdump -s); default 0, the whole frame. */
  readonly snaplen?: number;
  /** Deletes the capture file once read; default false (it stays for the caller to remove). */
  readonly remove?: boolean;
}

/**
 * Starts tcpdump on the fabric bridge (the underlay every node shares) writing `pcap`, without
 * name resolution, each frame written as it comes; resolves once it listens (it rejects with what
 * tcpdump printed when it exits first or does not listen within 60 s). The process is in
 * `children` until stopped; the caller kills what is left there in its cleanup hooks. The function
 * it resolves with stops the capture (SIGINT: tcpdump writes out what it holds) and returns its
 * records in capture order: the time in ms and the frame bytes.
 */
export async function tcpdumpFabric(
  pcap: string,
  children: Set<ChildProcess>,
  o: FabricTcpdumpOptions = {},
): Promise<() => Promise<Array<{ at: number; data: Buffer }>>> {
  const args = ["-n", "-U", "-s", String(o.snaplen ?? 0), "-i", FABRIC_BRIDGE, "-w", pcap];
  const t = spawnIn(FABRIC_NETNS, "tcpdump", o.filter === undefined ? args : [...args, o.filter], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.add(t);
  await new Promise<void>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 60_000);
    t.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (err.includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    t.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited with ${code}: ${err}`));
    });
  });
  return async () => {
    await stopCapture(t);
    children.delete(t);
    const records = pcapRecords(readFileSync(pcap));
    if (o.remove === true) rmSync(pcap, { force: true });
    return records;
  };
}
