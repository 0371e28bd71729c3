import { PodcryptError } from "../../errors/index.js";
import type { KernelCommands } from "../../platform/netlink/kernel-commands.js";
import {
  parseXfrmPolicies,
  parseXfrmStates,
  type InstalledXfrmPolicy,
  type InstalledXfrmState,
} from "../../platform/netlink/xfrm-text.js";
import { normaliseXfrm, planXfrm, type ReqidRange } from "./plan.js";
import type { XfrmDesired } from "./types.js";

/** Options of {@link XfrmReconciler}. */
export interface XfrmReconcilerOptions {
  /** Network namespace to act in (default: the process's own). */
  netns?: string;
  /** The reqids podcrypt owns (default 0x50430000..0x5043ffff, "PC"); nothing else is touched. */
  owned?: ReqidRange;
}

export const DEFAULT_OWNED_REQIDS: ReqidRange = { min: 0x50430000, max: 0x5043ffff };

/** What is installed, as read in one pass (states carry byte and packet counters). */
export interface XfrmSnapshot {
  states: InstalledXfrmState[];
  policies: InstalledXfrmPolicy[];
}

/**
 * The kernel XFRM backend's reconciler: the only code that changes XFRM states and policies. Each
 * pass reads all states (`ip -s xfrm state`) and policies, diffs against the desired set and
 * applies the difference in one `ip -batch`: nothing when they match, and whatever was deleted or
 * altered behind its back is restored. No pass relies on an earlier one, so the pass after a
 * failure is a full resync from a fresh read.
 *
 * Receiving ESP in UDP (`encap`) also needs a UDP socket on the port marked UDP_ENCAP_ESPINUDP:
 * the kernel decapsulates only on such a socket. Holding it is the caller's job (see
 * test/vm/kernel-helpers.ts `holdEspInUdpSocket`).
 */
export class XfrmReconciler {
  private readonly netns: string | undefined;
  private readonly owned: ReqidRange;
  private lastOk = false;

  constructor(
    private readonly kernel: KernelCommands,
    options: XfrmReconcilerOptions = {},
  ) {
    this.netns = options.netns;
    this.owned = options.owned ?? DEFAULT_OWNED_REQIDS;
  }

  /** True when the last pass applied everything. */
  get inSync(): boolean {
    return this.lastOk;
  }

  /** Makes the kernel match `desired`; returns the lines applied (empty: nothing changed). */
  async reconcile(desired: XfrmDesired): Promise<{ changed: boolean; lines: number }> {
    this.lastOk = false;
    const want = normaliseXfrm(desired, this.owned);
    const lines = planXfrm(want, await this.read(), this.owned);
    try {
      await this.kernel.ipBatch(this.netns, lines);
    } catch (cause) {
      throw new PodcryptError("ERECONCILE", "kernel XFRM reconcile failed; the next pass resyncs", {
        cause,
        context: { netns: this.netns, lines: lines.length },
      });
    }
    this.lastOk = true;
    return { changed: lines.length > 0, lines: lines.length };
  }

  /** Reads every state (with counters) and policy in the namespace. */
  async read(): Promise<XfrmSnapshot> {
    const [states, policies] = await Promise.all([
      this.kernel.ip(this.netns, ["-s", "xfrm", "state", "list"]),
      this.kernel.ip(this.netns, ["xfrm", "policy", "list"]),
    ]);
    return { states: parseXfrmStates(states), policies: parseXfrmPolicies(policies) };
  }
}
