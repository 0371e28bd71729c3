import { networkInterfaces } from "node:os";
import { PodcryptError } from "../../errors/index.js";
import { run } from "../../platform/netns/netns.js";
import { setSysctl } from "../../platform/sysctl/sysctl.js";

/**
 * The host-scoped address every generation's tunnel interface carries, so that reverse-path
 * filtering passes what arrives on it. During a rotation (or a mode switch) the two ends of a pair
 * move their routes to the new generation at different moments: for a while one end's packets
 * arrive on the new generation's interface while this node still routes back to their sender
 * through the old one, or the other way round. Loose rp_filter (2, which the data planes set on
 * their interfaces; the kernel takes the larger of `all` and the interface's value, so it holds
 * whatever a distribution sets) accepts that only when the receiving interface has an IPv4
 * address: on one without any, Linux drops the packet as strict mode would
 * (`__fib_validate_source`), silently but for the IPReversePathFilter counter. Kernel WireGuard lost
 * every datagram between the two switches of a pair that way (up to 3 s in the test VM). Packets
 * of kernel XFRM carry a security path and skip the check. Host scope: never chosen as a source
 * address; from 169.254.0.0/16 (link-local), so it meets no cluster or underlay range.
 */
export const RPF_ADDRESS = "169.254.51.82/32";

/** Sets a sysctl, by path components (platform/sysctl's `setSysctl`, or a test's). */
export type SysctlSetter = (path: readonly string[], value: string) => Promise<void>;

/**
 * Loose reverse-path filtering (`net.ipv4.conf.<ifname>.rp_filter` 2), what podcrypt sets on its
 * tunnels and the underlay, through `set` (default: this process's namespace).
 */
export function looseRpFilter(ifname: string, set: SysctlSetter = setSysctl): Promise<void> {
  return set(["net", "ipv4", "conf", ifname, "rp_filter"], "2");
}

/**
 * Loose reverse-path filtering with {@link RPF_ADDRESS} on a tunnel interface of this process's
 * namespace (the userspace data planes' TUN devices; kernel WireGuard's reconciler installs the
 * address in its own batch). Reads only when both are in place: the address through getifaddrs,
 * the sysctl from /proc; otherwise one `ip` process.
 */
export async function ensureTunnelRpf(ifname: string): Promise<void> {
  const address = RPF_ADDRESS.split("/")[0];
  if (!(networkInterfaces()[ifname] ?? []).some((a) => a.family === "IPv4" && a.address === address))
    await run("ip", ["addr", "replace", RPF_ADDRESS, "dev", ifname, "scope", "host"]);
  await looseRpFilter(ifname);
}

/**
 * Loose reverse-path filtering on the underlay interface of this process's namespace (see
 * NodePorts.loosenUnderlay): one read of /proc when it is so already. Throws PodcryptError
 * EUNDERLAY when the interface does not exist, since strict mode's rules name it too.
 */
export async function loosenUnderlay(ifname: string): Promise<void> {
  try {
    await looseRpFilter(ifname);
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === "ENOENT";
    throw new PodcryptError(
      "EUNDERLAY",
      missing
        ? `underlay interface ${ifname} does not exist (set the agent's underlay interface)`
        : `cannot set rp_filter of underlay interface ${ifname}: ${(cause as Error).message}`,
      { cause, context: { ifname } },
    );
  }
}
