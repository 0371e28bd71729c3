/**
 * The kernel half of `podcrypt status` for the local cluster: what a node's kernel WireGuard
 * interfaces and XFRM states hold, read in the node's namespace with the tools a person would use
 * (`wg show all dump`, `ip -s xfrm state`, `ip -j route`), so status agrees with `wg show` and
 * `ip xfrm state` by construction.
 */
import { formatSpi } from "../esp/sa.js";
import { keyIdForEpoch, keyIdOfSpi } from "../keys/derive.js";
import type { Node } from "../model/index.js";
import { ProcessKernelCommands, type KernelCommands } from "../platform/netlink/kernel-commands.js";
import { WireguardKernelReconciler } from "../dataplane/wireguard-kernel/reconciler.js";
import { XFRM_IF_ID_BASE, XFRM_REQID_BASE } from "../dataplane/xfrm/generations.js";
import { XfrmReconciler } from "../dataplane/xfrm/reconciler.js";
import { wireguardPeerRow, type PeerStatus } from "./peer-status.js";
import { nodeWgIfname, type PlannedNode } from "./plan.js";

/** One row per peer of the node's kernel WireGuard generation interfaces. */
export async function kernelWireguardRows(
  pn: PlannedNode,
  nodes: readonly Node[],
  kernel: KernelCommands = new ProcessKernelCommands(),
): Promise<PeerStatus[]> {
  const devices = await new WireguardKernelReconciler(kernel, { netns: pn.netns }).readDevices();
  const rows: PeerStatus[] = [];
  for (const slot of [0, 1]) {
    const ifname = nodeWgIfname(pn.index, slot);
    for (const p of devices.get(ifname)?.peers ?? [])
      rows.push(wireguardPeerRow(nodes, ifname, { ...p, latestHandshakeMs: p.latestHandshake * 1000 }));
  }
  return rows;
}

interface IpRoute {
  dst: string;
  dev?: string;
}

/**
 * One row per peer and key ID of the node's kernel XFRM states (podcrypt's reqids only): the SA
 * pair with bytes and packets each way; `active` when the node's routes to that peer's pods go
 * through the interface of the SA's `if_id`. The epoch is the newest of the node's key epochs with
 * that key ID, as for the userspace ESP data plane.
 */
export async function kernelXfrmRows(
  pn: PlannedNode,
  plan: readonly PlannedNode[],
  self: Node | undefined,
  kernel: KernelCommands = new ProcessKernelCommands(),
): Promise<PeerStatus[]> {
  const states = (await new XfrmReconciler(kernel, { netns: pn.netns }).readStates()).filter(
    (s) => s.reqid >= XFRM_REQID_BASE && s.reqid <= XFRM_REQID_BASE + 0xffff && s.ifId !== undefined,
  );
  if (states.length === 0) return [];
  const routes = JSON.parse(
    (await kernel.ip(pn.netns, ["-j", "route", "show", "table", "main"])) || "[]",
  ) as IpRoute[];
  const devOf = new Map(routes.map((r) => [r.dst, r.dev]));
  const byAddress = new Map(plan.map((n) => [n.underlayIPv4, n]));
  const epochs = Object.keys(self?.publicKeys ?? {}).map(Number);
  const rows = new Map<string, PeerStatus>();
  for (const s of states) {
    const outbound = s.src === pn.underlayIPv4;
    const remote = outbound ? s.dst : s.src;
    const peer = byAddress.get(remote);
    const keyId = keyIdOfSpi(s.spi);
    const ifname = nodeWgIfname(pn.index, s.ifId! - XFRM_IF_ID_BASE);
    const k = `${peer?.name ?? remote}|${keyId}`;
    let row = rows.get(k);
    if (row === undefined) {
      const epoch = epochs.filter((e) => keyIdForEpoch(e) === keyId).sort((a, b) => b - a)[0];
      row = {
        node: peer?.name ?? "?",
        state: "connecting",
        keyId,
        txBytes: 0,
        rxBytes: 0,
        txPackets: 0,
        rxPackets: 0,
        epoch: epoch ?? -1,
        ifname,
        endpoint: `${remote}:${s.encap?.dport ?? 4500}`,
        active: false,
      };
      rows.set(k, row);
    }
    if (outbound) {
      row.spiOut = formatSpi(s.spi);
      row.txBytes += s.bytes ?? 0;
      row.txPackets = (row.txPackets ?? 0) + (s.packets ?? 0);
      row.active = peer !== undefined && devOf.get(peer.podCIDR) === ifname;
    } else {
      row.spiIn = formatSpi(s.spi);
      row.rxBytes += s.bytes ?? 0;
      row.rxPackets = (row.rxPackets ?? 0) + (s.packets ?? 0);
    }
    if (row.spiIn !== undefined && row.spiOut !== undefined) row.state = "established";
  }
  return [...rows.values()];
}
