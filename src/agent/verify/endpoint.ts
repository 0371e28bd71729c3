import { createSocket, type Socket } from "node:dgram";
import { isIP } from "node:net";
import { canonicalIp, cidrRange } from "../../platform/netlink/addr.js";
import { run } from "../../platform/netns/netns.js";
import { PROBE_SOCKET_BUFFER } from "../../localcluster/probe.js";

/**
 * Every agent's probe endpoint (what `verify --via-agents` probes, as Cilium's health endpoint):
 * the first host address of the node's first IPv4 pod CIDR (`10.244.1.0/24` → `10.244.1.1`), so
 * traffic between two nodes' endpoints is pod traffic and takes the pod path through the tunnels
 * (and strict mode's drops). The address goes on a dummy interface {@link PROBE_IFNAME} as a /32
 * (on `lo` when the kernel has no dummy driver) unless the node already has it (bridge CNIs give it to their bridge as the pods' gateway): an
 * address that is local either way answers the same. The agent answers UDP echo (RFC 862) on
 * {@link PROBE_PORT} of that address only.
 */
export const PROBE_IFNAME = "podcrypt-probe";
/** The echo port of the probe endpoint (RFC 862's). */
export const PROBE_PORT = 7;

/** The probe endpoint address of a node with `podCidrs`; undefined when it has no IPv4 pod CIDR. Pure. */
export function probeEndpointAddress(podCidrs: readonly string[]): string | undefined {
  const v4 = podCidrs.find((c) => !c.includes(":"));
  if (v4 === undefined) return undefined;
  const [base, bits] = v4.split("/") as [string, string];
  if (Number(bits) > 30) return undefined;
  const n = base.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const mask = Number(bits) === 0 ? 0 : (0xffffffff << (32 - Number(bits))) >>> 0;
  const first = ((n & mask) >>> 0) + 1;
  return [24, 16, 8, 0].map((s) => (first >>> s) & 255).join(".");
}

/**
 * The IPv6 probe endpoint of a node with `podCidrs` (dual-stack or IPv6 pods): the first address
 * after the network address of its first IPv6 pod CIDR (`fd00:10:244:1::/64` → `fd00:10:244:1::1`);
 * undefined when it has none (or one of a single address). Pure.
 */
export function probeEndpointAddress6(podCidrs: readonly string[]): string | undefined {
  const v6 = podCidrs.find((c) => c.includes(":"));
  if (v6 === undefined) return undefined;
  const { first, last } = cidrRange(v6);
  if (last - first < 2n) return undefined;
  const n = first + 1n;
  return canonicalIp(
    Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(":"),
  );
}

/** Puts `address` on the node (see {@link PROBE_IFNAME}) unless it is local already. */
export async function ensureProbeAddress(address: string): Promise<void> {
  const v6 = address.includes(":");
  const local = JSON.parse(await run("ip", [v6 ? "-6" : "-4", "-j", "addr", "show"])) as Array<{
    addr_info?: Array<{ local?: string }>;
  }>;
  if (local.some((l) => (l.addr_info ?? []).some((a) => a.local === address))) return;
  const links = JSON.parse(await run("ip", ["-j", "link", "show"])) as Array<{ ifname: string }>;
  const dummy = [
    ...(links.some((l) => l.ifname === PROBE_IFNAME) ? [] : [`link add ${PROBE_IFNAME} type dummy`]),
    // IPv6: no duplicate address detection, or the address stays tentative and cannot be bound.
    v6
      ? `addr replace ${address}/128 dev ${PROBE_IFNAME} nodad`
      : `addr replace ${address}/32 dev ${PROBE_IFNAME}`,
    `link set ${PROBE_IFNAME} up`,
  ];
  try {
    await run("ip", ["-batch", "-"], { input: dummy.join("\n") + "\n" });
  } catch {
    // A kernel without the dummy driver: loopback holds a /32 (/128) just as well. IPv6 needs
    // `nodad` here too: even on loopback, or with accept_dad 0, an address added without it is
    // tentative until the kernel's address work runs, and a bind in that window fails with
    // EADDRNOTAVAIL (about one bind in five on a busy machine), leaving the node without its IPv6
    // endpoint for the agent's whole life.
    await run("ip", [
      "addr",
      "replace",
      `${address}/${v6 ? 128 : 32}`,
      "dev",
      "lo",
      ...(v6 ? ["nodad"] : []),
    ]);
  }
}

/**
 * Serves UDP echo on `address`:{@link PROBE_PORT}; resolves with the socket once bound, rejects
 * with the bind's error (the socket closed). It never answers a datagram from port 7 itself, so
 * two echo services (ours or any other) can never be made to answer each other in a loop by a
 * forged source. Without `accept` it answers every other datagram (the agent's probe endpoint, for
 * the agent's lifetime); with `accept` (host encryption's node-to-node checks on the node's host
 * address, open only for one verify run) only what `accept` takes (the run's markers from the
 * run's nodes).
 */
export async function serveProbeEcho(
  address: string,
  accept?: (message: Buffer, from: string) => boolean,
): Promise<Socket> {
  const s = createSocket({
    type: isIP(address) === 6 ? "udp6" : "udp4",
    recvBufferSize: PROBE_SOCKET_BUFFER,
  });
  s.on("message", (msg, rinfo) => {
    if (rinfo.port !== PROBE_PORT && (accept === undefined || accept(msg, rinfo.address)))
      s.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (e: Error): void => {
      // dgram leaves the socket's descriptor open when a bind fails.
      s.close(() => reject(e));
    };
    s.once("error", failed);
    s.bind(PROBE_PORT, address, () => {
      s.off("error", failed);
      resolve();
    });
  });
  s.on("error", () => undefined);
  return s;
}
