import { randomBytes } from "node:crypto";
import type { KernelCommands } from "../../platform/netlink/kernel-commands.js";

/** Whether this node can run kernel WireGuard, and why not. */
export interface KernelSupport {
  ok: boolean;
  /** When not: what failed, for the agent's error and log. */
  reason?: string;
}

/**
 * Probes kernel WireGuard the only reliable way: by creating a throw-away interface of type
 * wireguard and deleting it again, in one `ip -batch` (the kernel loads the module on demand when
 * it can). Nothing else on the node is touched.
 */
export async function probeKernelWireguard(kernel: KernelCommands, netns?: string): Promise<KernelSupport> {
  const name = `pcprobe${randomBytes(3).toString("hex")}`;
  try {
    await kernel.ipBatch(netns, [`link add dev ${name} type wireguard`, `link del dev ${name}`]);
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `cannot create a WireGuard interface (${(e as Error).message})` };
  }
}
