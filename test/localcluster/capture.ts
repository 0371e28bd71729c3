/** Captures of the local cluster's underlay for the suites that read what crossed it. */
import type { ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { FABRIC_BRIDGE, FABRIC_NETNS } from "../../src/localcluster/plan.js";
import { pcapRecords, startTcpdump, type TcpdumpOptions } from "../../src/localcluster/verify.js";
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

/**
 * Starts tcpdump on the fabric bridge (the underlay every node shares) writing `pcap`, as
 * `podcrypt verify` does (src/localcluster/verify.ts startTcpdump), and resolves once it listens.
 * The process is in `children` from its spawn until stopped; the caller kills what is left there in
 * its cleanup hooks. The function it resolves with stops the capture (SIGINT: tcpdump writes out
 * what it holds) and returns its records in capture order: the time in ms and the frame bytes;
 * with `remove` it deletes the capture file once read (else it stays for the caller to remove).
 */
export async function tcpdumpFabric(
  pcap: string,
  children: Set<ChildProcess>,
  o: Omit<TcpdumpOptions, "spawned"> & { readonly remove?: boolean } = {},
): Promise<() => Promise<Array<{ at: number; data: Buffer }>>> {
  const t = await startTcpdump(FABRIC_NETNS, FABRIC_BRIDGE, pcap, { ...o, spawned: (c) => children.add(c) });
  return async () => {
    await stopCapture(t);
    children.delete(t);
    const records = pcapRecords(readFileSync(pcap));
    if (o.remove === true) rmSync(pcap, { force: true });
    return records;
  };
}
