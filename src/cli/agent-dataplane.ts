/**
 * The agent's choice of data plane per mode (`--dataplane auto|kernel|userspace`,
 * docs/design.md#data-planes), and the composite backend built from it. Detection is per node: each agent probes its
 * own kernel, so a cluster whose nodes differ runs kernel where it can and userspace elsewhere,
 * encrypted end to end either way (the data planes are wire-compatible).
 */
import { CompositeBackend } from "../dataplane/composite/backend.js";
import type { GenerationBackend } from "../dataplane/composite/types.js";
import { UserspaceEspBackend } from "../dataplane/esp-userspace/backend.js";
import type { DataplaneBackend, DesiredNodeState } from "../dataplane/types.js";
import { KernelWireguardBackend } from "../dataplane/wireguard-kernel/backend.js";
import { probeKernelWireguard, type KernelSupport } from "../dataplane/wireguard-kernel/detect.js";
import { UserspaceWireguardBackend } from "../dataplane/wireguard-userspace/backend.js";
import { KernelXfrmBackend } from "../dataplane/xfrm/backend.js";
import { probeKernelXfrm } from "../dataplane/xfrm/detect.js";
import { PodcryptError } from "../errors/index.js";
import type { Logger } from "../log/logger.js";
import type { EncryptionMode } from "../model/index.js";
import { cidrContains } from "../platform/netlink/addr.js";
import type { KernelCommands } from "../platform/netlink/kernel-commands.js";

export type DataplaneRequest = "auto" | "kernel" | "userspace";
export type DataplaneChoice = Record<EncryptionMode, "kernel" | "userspace">;

/** What this node's kernel can do, per mode (the Node's `capabilities`). */
export interface KernelCapabilities {
  wireguard: KernelSupport;
  ipsec: KernelSupport;
}

/** Probes both kernel data planes (two `ip -batch` processes, run side by side). */
export async function detectKernel(kernel: KernelCommands, underlayIf: string): Promise<KernelCapabilities> {
  const [wireguard, ipsec] = await Promise.all([
    probeKernelWireguard(kernel),
    probeKernelXfrm(kernel, underlayIf).catch((e: unknown): KernelSupport => ({
      ok: false,
      reason: (e as Error).message,
    })),
  ]);
  return { wireguard, ipsec };
}

/**
 * Picks the data plane of each mode: `userspace` always userspace; `kernel` kernel for both modes
 * or an error naming what the kernel lacks (a node must be able to run either mode: the cluster
 * may switch); `auto` kernel where the probe succeeded, userspace elsewhere.
 */
export function chooseDataplanes(request: DataplaneRequest, caps: KernelCapabilities): DataplaneChoice {
  if (request === "userspace") return { wireguard: "userspace", ipsec: "userspace" };
  if (request === "kernel") {
    const missing = (
      [
        ["WireGuard", caps.wireguard, "modprobe wireguard"],
        ["XFRM (IPsec)", caps.ipsec, "modprobe esp4 xfrm_user xfrm_interface"],
      ] as const
    ).filter(([, s]) => !s.ok);
    if (missing.length > 0) {
      throw new PodcryptError(
        "EDATAPLANE",
        `--dataplane kernel: this node's kernel cannot run ${missing.map(([n]) => n).join(" or ")}: ` +
          missing.map(([n, s, fix]) => `${n}: ${s.reason ?? "unavailable"} (try \`${fix}\`)`).join("; ") +
          "; or run the agent with --dataplane auto or userspace",
        { context: { missing: missing.map(([n]) => n) } },
      );
    }
    return { wireguard: "kernel", ipsec: "kernel" };
  }
  return {
    wireguard: caps.wireguard.ok ? "kernel" : "userspace",
    ipsec: caps.ipsec.ok ? "kernel" : "userspace",
  };
}

export interface NodeDataplaneOptions {
  node: string;
  logger: Logger;
  choice: DataplaneChoice;
  underlayIp: string;
  underlayIf: string;
  ifPrefix: string;
  /** This node's pod CIDRs: routes inside them are never the agent's. */
  podCidrs: readonly string[];
  /** The cluster's pod CIDRs (`--cluster-cidr`): routes inside them are the agent's. */
  clusterCidrs: readonly string[];
  wireguardDaemon: "podcrypt" | "wireguard-go";
  /** Userspace ESP: packets an outbound SA sends before it asks for an early rotation (default: 3/4 of 2^32). */
  espRekeyAfterPackets?: number;
  /** A userspace data-plane daemon died (its interface): reconcile at once to replace it. */
  onDaemonDeath?: (ifname: string) => void;
}

/**
 * Which route destinations the agent manages (may prune): those inside the cluster's pod CIDRs, and
 * every other node's pod CIDR it has been asked to route (remembered, so a node that leaves has its
 * routes removed), but never this node's own pods.
 */
export class ManagedRoutes {
  private readonly seen = new Set<string>();

  constructor(
    private readonly own: readonly string[],
    private readonly cluster: readonly string[],
  ) {}

  learn(desired: DesiredNodeState): void {
    for (const c of desired.strict.remotePodCidrs) this.seen.add(c);
  }

  has = (dst: string): boolean => {
    try {
      if (this.own.some((c) => cidrContains(c, dst))) return false;
      return this.seen.has(dst) || this.cluster.some((c) => cidrContains(c, dst));
    } catch {
      return false; // not a CIDR: not ours
    }
  };
}

/** The node's backend: the composite over the chosen data plane of each mode. */
export function nodeBackend(o: NodeDataplaneOptions): DataplaneBackend {
  const wireguard: GenerationBackend =
    o.choice.wireguard === "kernel"
      ? new KernelWireguardBackend({ logger: o.logger, ifPrefix: o.ifPrefix })
      : new UserspaceWireguardBackend({
          logger: o.logger,
          daemon: o.wireguardDaemon,
          ...(o.onDaemonDeath === undefined ? {} : { onDaemonDeath: o.onDaemonDeath }),
        });
  const ipsec: GenerationBackend =
    o.choice.ipsec === "kernel"
      ? new KernelXfrmBackend({
          logger: o.logger,
          node: o.node,
          localAddress: o.underlayIp,
          underlayIf: o.underlayIf,
          ifPrefix: o.ifPrefix,
        })
      : new UserspaceEspBackend({
          logger: o.logger,
          node: o.node,
          localAddress: o.underlayIp,
          ifname: `${o.ifPrefix}e`.slice(0, 15),
          ...(o.espRekeyAfterPackets === undefined ? {} : { rekeyAfterPackets: o.espRekeyAfterPackets }),
          ...(o.onDaemonDeath === undefined ? {} : { onDaemonDeath: o.onDaemonDeath }),
        });
  const managed = new ManagedRoutes(o.podCidrs, o.clusterCidrs);
  const composite = new CompositeBackend({ backends: { wireguard, ipsec }, managedRoute: managed.has });
  return {
    get kind() {
      return composite.kind;
    },
    reconcile: async (desired, privateKey) => {
      managed.learn(desired);
      await composite.reconcile(desired, privateKey);
    },
    observe: () => composite.observe(),
    close: () => composite.close(),
    saInstance: () => composite.saInstance(),
    strictDrops: () => composite.strictDrops(),
    handOverDaemons: () => composite.handOverDaemons(),
  };
}
