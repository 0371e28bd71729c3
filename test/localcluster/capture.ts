/** Captures of the local cluster's underlay for the suites that read what crossed it. */
import type { ChildProcess } from "node:child_process";
import { FABRIC_BRIDGE, FABRIC_NETNS } from "../../src/localcluster/plan.js";
import { spawnIn } from "../../src/platform/netns/netns.js";
import { startCapture } from "../support/tshark.js";

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
