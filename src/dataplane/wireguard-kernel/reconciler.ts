import { PodcryptError } from "../../errors/index.js";
import type { KernelCommands } from "../../platform/netlink/kernel-commands.js";
import { parseWgDump } from "../../platform/netlink/wg-dump.js";
import {
  normaliseDesired,
  parseLinks,
  planWireguard,
  type WgKernelPlan,
  type WgKernelSnapshot,
} from "./plan.js";
import type { WgKernelDesired } from "./types.js";

/** Options of {@link WireguardKernelReconciler}. */
export interface WireguardKernelOptions {
  /** Network namespace to act in (default: the process's own). */
  netns?: string;
  /** Which interface names are the backend's (default: those starting with "podcrypt"). */
  owns?: (ifname: string) => boolean;
}

/** What one pass did. */
export interface ReconcileResult {
  /** false when what was installed already matched. */
  changed: boolean;
  /** The commands applied (`ip -batch` lines and interfaces given to `wg syncconf`). Key material. */
  plan: WgKernelPlan;
  /** Interfaces this pass created. */
  created: string[];
}

/**
 * The kernel WireGuard backend's reconciler: the only code that changes kernel WireGuard
 * interfaces. Each pass reads what it owns (`ip -j -d addr show`, `wg show all dump`: two
 * processes, whatever the peer count), diffs it against the desired state and applies only the
 * difference (one `ip -batch`, one `wg syncconf` per changed interface with the configuration on
 * stdin): nothing when they match, so sessions and counters survive; whatever was removed or
 * altered behind its back is restored. Since no pass trusts what an earlier one believed, a failed
 * pass needs no bookkeeping: the next pass is a full resync from a fresh read.
 */
export class WireguardKernelReconciler {
  private readonly netns: string | undefined;
  private readonly owns: (ifname: string) => boolean;
  private lastOk = false;
  /** What the last pass read, when it changed nothing (so it is still what is installed). */
  private unchanged: WgKernelSnapshot | undefined;

  constructor(
    private readonly kernel: KernelCommands,
    options: WireguardKernelOptions = {},
  ) {
    this.netns = options.netns;
    this.owns = options.owns ?? ((n) => n.startsWith("podcrypt"));
  }

  /** True when the last pass applied everything. */
  get inSync(): boolean {
    return this.lastOk;
  }

  /**
   * Makes the kernel's interfaces of `desired` match it; with `prune`, also deletes the owned
   * WireGuard interfaces `desired` does not list. With `reuseRead`, a pass right after one without
   * `reuseRead` that changed nothing plans from that pass's read instead of reading again (one node
   * pass applies, moves routes, then retires: two reads of the same state otherwise).
   */
  async reconcile(
    desired: WgKernelDesired,
    prune = false,
    options: { reuseRead?: boolean } = {},
  ): Promise<ReconcileResult> {
    this.lastOk = false;
    const want = normaliseDesired(desired, this.owns);
    const reused = options.reuseRead === true ? this.unchanged : undefined;
    this.unchanged = undefined;
    const snapshot = reused ?? (await this.read());
    const plan = planWireguard(want, snapshot, { owns: this.owns, prune });
    try {
      await this.kernel.ipBatch(this.netns, plan.ipLines);
      for (const s of plan.syncconf) await this.kernel.wgSyncconf(this.netns, s.ifname, s.config);
    } catch (cause) {
      throw new PodcryptError("ERECONCILE", "kernel WireGuard reconcile failed; the next pass resyncs", {
        cause,
        context: {
          netns: this.netns,
          ipLines: plan.ipLines.length,
          syncconf: plan.syncconf.map((s) => s.ifname),
        },
      });
    }
    this.lastOk = true;
    if (plan.ipLines.length + plan.syncconf.length === 0 && options.reuseRead !== true)
      this.unchanged = snapshot;
    const created = want.map((w) => w.ifname).filter((n) => snapshot.links.get(n)?.kind !== "wireguard");
    return { changed: plan.ipLines.length + plan.syncconf.length > 0, plan, created };
  }

  /** Reads the namespace's links and WireGuard devices (with counters and handshakes). */
  async read(): Promise<WgKernelSnapshot> {
    const [links, dump] = await Promise.all([
      this.kernel.ip(this.netns, ["-j", "-d", "addr", "show"]),
      this.kernel.wg(this.netns, ["show", "all", "dump"]),
    ]);
    return { links: parseLinks(links), devices: parseWgDump(dump) };
  }

  /** Reads only the WireGuard devices (`wg show all dump`: one process), for status. */
  async readDevices(): Promise<WgKernelSnapshot["devices"]> {
    return parseWgDump(await this.kernel.wg(this.netns, ["show", "all", "dump"]));
  }
}
