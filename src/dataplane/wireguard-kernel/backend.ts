import type { Logger } from "../../log/logger.js";
import { ProcessKernelCommands, type KernelCommands } from "../../platform/netlink/kernel-commands.js";
import { RPF_ADDRESS, looseRpFilter, type SysctlSetter } from "../node/rpf.js";
import type { GenerationBackend, GenerationContext } from "../composite/types.js";
import { PEER_KEEPALIVE_S, type DesiredGeneration, type ObservedPeer } from "../types.js";
import { WireguardKernelReconciler } from "./reconciler.js";
import type { WgKernelDesired } from "./types.js";

export interface KernelWireguardOptions {
  logger: Logger;
  /** Prefix of the generation interfaces (`<prefix>0`, `<prefix>1`): WireGuard interfaces so named are ours. */
  ifPrefix: string;
  /** Default: Debian's `ip` and `wg`, spawned. */
  kernel?: KernelCommands;
  /** Network namespace to act in (tests); default the process's own. */
  netns?: string;
  /** Sets a sysctl of this namespace (default: writes /proc/sys; skipped with `netns`). */
  sysctl?: SysctlSetter;
}

interface Installed {
  epoch: number;
  /** publicKey -> node */
  peers: Map<string, string>;
}

/**
 * The kernel WireGuard data plane (a {@link GenerationBackend} under the node's CompositeBackend,
 * which owns routes and strict rules): one kernel WireGuard interface per key generation, named
 * like the generation (`gen.ifname`) and configured by diff (`wg syncconf`, which keeps the
 * sessions of unchanged peers). Interfaces outlive the agent.
 */
export class KernelWireguardBackend implements GenerationBackend {
  readonly kind = "wireguard-kernel";
  private readonly reconciler: WireguardKernelReconciler;
  private readonly installed = new Map<string, Installed>();

  constructor(private readonly o: KernelWireguardOptions) {
    const prefix = o.ifPrefix;
    this.reconciler = new WireguardKernelReconciler(o.kernel ?? new ProcessKernelCommands(), {
      ...(o.netns === undefined ? {} : { netns: o.netns }),
      owns: (n) => n.length === prefix.length + 1 && n.startsWith(prefix) && /[01]$/.test(n),
    });
  }

  private desired(generations: DesiredGeneration[], ctx: GenerationContext): WgKernelDesired {
    return {
      interfaces: generations.map((g) => ({
        ifname: g.ifname,
        privateKey: ctx.privateKey(g.epoch).toString("base64"),
        listenPort: g.listenPort,
        mtu: ctx.mtu,
        hostAddresses: [RPF_ADDRESS],
        peers: g.peers.map((p) => ({
          publicKey: p.publicKey,
          endpoint: p.endpoint,
          allowedIps: p.allowedIps,
          // A new generation's sessions come up before traffic is switched to it (agent/desired.ts).
          persistentKeepalive: PEER_KEEPALIVE_S,
        })),
      })),
    };
  }

  /** Each generation runs on its own interface, `gen.ifname`; other interfaces stay. */
  async applyGenerations(
    generations: DesiredGeneration[],
    ctx: GenerationContext,
  ): Promise<Map<string, string>> {
    const r = await this.reconciler.reconcile(this.desired(generations, ctx), false);
    for (const g of generations)
      this.installed.set(g.ifname, {
        epoch: g.epoch,
        peers: new Map(g.peers.map((p) => [p.publicKey, p.node])),
      });
    for (const ifname of this.sysctlTargets(generations, r.created))
      await looseRpFilter(ifname, this.o.sysctl);
    if (r.changed)
      this.o.logger.info(
        {
          generations: generations.map((g) => ({ ifname: g.ifname, epoch: g.epoch, peers: g.peers.length })),
          ipLines: r.plan.ipLines.length,
          syncconf: r.plan.syncconf.map((s) => s.ifname),
        },
        "configured kernel WireGuard",
      );
    return new Map(generations.map((g) => [g.ifname, g.ifname]));
  }

  /**
   * Loose reverse-path filtering on the generation interfaces (with {@link RPF_ADDRESS}): during a
   * rotation a peer may still send on the old generation while this node routes to it through the
   * new one. In another namespace (tests) only with an injected `sysctl`.
   */
  private sysctlTargets(generations: DesiredGeneration[], created: string[]): string[] {
    if (this.o.netns !== undefined && this.o.sysctl === undefined) return [];
    return this.o.netns === undefined ? generations.map((g) => g.ifname) : created;
  }

  /** Deletes the interface of every generation not in `generations`. */
  async retireGenerations(generations: DesiredGeneration[], ctx: GenerationContext): Promise<void> {
    // Routes and strict rules moved since applyGenerations; links and WireGuard devices did not.
    const r = await this.reconciler.reconcile(this.desired(generations, ctx), true, { reuseRead: true });
    const keep = new Set(generations.map((g) => g.ifname));
    for (const k of [...this.installed.keys()]) if (!keep.has(k)) this.installed.delete(k);
    const removed = r.plan.ipLines.filter((l) => l.startsWith("link del")).length;
    if (removed > 0) this.o.logger.info({ removed, keep: [...keep] }, "retired generations");
  }

  /** Per peer of every generation interface: key, endpoint, counters and the latest handshake. */
  async observe(): Promise<ObservedPeer[]> {
    const devices = await this.reconciler.readDevices();
    const out: ObservedPeer[] = [];
    for (const [ifname, inst] of this.installed) {
      const dev = devices.get(ifname);
      if (dev === undefined) continue;
      for (const p of dev.peers) {
        out.push({
          node: inst.peers.get(p.publicKey) ?? "?",
          epoch: inst.epoch,
          ifname,
          publicKey: p.publicKey,
          ...(p.endpoint === undefined ? {} : { endpoint: p.endpoint }),
          txBytes: p.txBytes,
          rxBytes: p.rxBytes,
          ...(p.latestHandshake === 0 ? {} : { latestHandshake: p.latestHandshake * 1000 }),
        });
      }
    }
    return out;
  }

  async close(): Promise<void> {
    // Interfaces stay: traffic must not depend on the agent process.
  }
}
