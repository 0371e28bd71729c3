/** Captures of the local cluster's underlay for the suites that read what crossed it. */
import { spawn, type ChildProcess } from "node:child_process";
import { FABRIC_BRIDGE, FABRIC_NETNS } from "../../src/localcluster/plan.js";
import { tsharkCapturing } from "../support/tshark.js";

/**
 * Starts tshark on the fabric bridge (the underlay every node shares), ESP in UDP only, writing
 * `pcap`; resolves once it captures. The process is added to `children`, which the caller kills in
 * its cleanup hooks.
 */
export async function startEspCapture(pcap: string, children: Set<ChildProcess>): Promise<ChildProcess> {
  const t = spawn(
    "ip",
    ["netns", "exec", FABRIC_NETNS, "tshark", "-n", "-i", FABRIC_BRIDGE, "-f", "udp port 4500", "-w", pcap],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  children.add(t);
  await tsharkCapturing(t);
  return t;
}
