import { PodcryptError } from "../../errors/index.js";
import type { KernelCommands } from "../../platform/netlink/kernel-commands.js";
import { parseXfrmPolicies, parseXfrmStates } from "../../platform/netlink/xfrm-text.js";
import {
  normaliseXfrm,
  parseLinks,
  planXfrm,
  type PruneOptions,
  type ReqidRange,
  type XfrmInstalled,
} from "./plan.js";
import type { XfrmDesired } from "./types.js";

/** Options of {@link XfrmReconciler}. */
export interface XfrmReconcilerOptions {
  /** Network namespace to act in (default: the process's own). */
  netns?: string;
  /** The reqids podcrypt owns (default 0x50430000..0x5043ffff, "PC"); nothing else is touched. */
  owned?: ReqidRange;
  /** Whether an XFRM interface of that name is the backend's (removed when not desired). Default: none. */
  ownsLink?: (ifname: string) => boolean;
}

export const DEFAULT_OWNED_REQIDS: ReqidRange = { min: 0x50430000, max: 0x5043ffff };

/** What is installed, as read in one pass (states carry byte and packet counters with `counters`). */
export type XfrmSnapshot = Required<XfrmInstalled>;

/**
 * The kernel XFRM backend's reconciler: the only code that changes XFRM states, policies and
 * interfaces. Each pass reads links, states and policies, diffs against the desired set and applies
 * the difference in one `ip -batch` (keys travel on its stdin, never in argv): nothing when they
 * match, and whatever was deleted or altered behind its back is restored. No pass relies on an
 * earlier one, so the pass after a failure is a full resync from a fresh read.
 *
 * Receiving ESP in UDP (`encap`) also needs a UDP socket on the port marked UDP_ENCAP_ESPINUDP:
 * the kernel decapsulates only on such a socket (see encap.ts).
 */
export class XfrmReconciler {
  private readonly netns: string | undefined;
  private readonly owned: ReqidRange;
  private readonly ownsLink: ((ifname: string) => boolean) | undefined;
  private lastOk = false;
  /** What the last pass read, when it changed nothing (so it is still what is installed). */
  private unchanged: XfrmSnapshot | undefined;

  constructor(
    private readonly kernel: KernelCommands,
    options: XfrmReconcilerOptions = {},
  ) {
    this.netns = options.netns;
    this.owned = options.owned ?? DEFAULT_OWNED_REQIDS;
    this.ownsLink = options.ownsLink;
  }

  /** True when the last pass applied everything. */
  get inSync(): boolean {
    return this.lastOk;
  }

  /**
   * Makes the kernel match `desired`; returns the number of lines applied (0: nothing changed).
   * `prune` limits what not desired is removed (default: everything owned). With `reuseRead`, a
   * pass right after one without `reuseRead` that changed nothing plans from that pass's read
   * instead of reading again (apply, then routes, then retire: two reads of the same state).
   */
  async reconcile(
    desired: XfrmDesired,
    prune: PruneOptions["prune"] = "all",
    options: {
      reuseRead?: boolean;
      keepOutbound?: PruneOptions["keepOutbound"];
      /** What the caller just read with {@link read}: planned from instead of reading again. */
      snapshot?: XfrmSnapshot;
    } = {},
  ): Promise<{ changed: boolean; lines: number }> {
    this.lastOk = false;
    const want = normaliseXfrm(desired, this.owned);
    const reused = options.reuseRead === true ? this.unchanged : undefined;
    this.unchanged = undefined;
    const snapshot = reused ?? options.snapshot ?? (await this.read());
    const lines = planXfrm(want, snapshot, this.owned, {
      prune,
      ...(options.keepOutbound === undefined ? {} : { keepOutbound: options.keepOutbound }),
      ...(this.ownsLink === undefined ? {} : { ownsLink: this.ownsLink }),
    });
    try {
      await this.kernel.ipBatch(this.netns, lines);
    } catch (cause) {
      throw new PodcryptError("ERECONCILE", "kernel XFRM reconcile failed; the next pass resyncs", {
        cause,
        context: { netns: this.netns, lines: lines.length },
      });
    }
    this.lastOk = true;
    if (lines.length === 0 && options.reuseRead !== true) this.unchanged = snapshot;
    return { changed: lines.length > 0, lines: lines.length };
  }

  /**
   * Reads links, states and policies with two processes. `ip -batch` runs `link show` and `xfrm
   * state list` in one; `xfrm policy list` needs its own, because iproute2 closes its netlink socket
   * after an xfrm listing, so nothing after one in a batch prints.
   */
  async read(): Promise<XfrmSnapshot> {
    const [linksAndStates, policies] = await Promise.all([
      this.kernel.ip(this.netns, ["-j", "-d", "-batch", "-"], {
        input: "link show\nxfrm state list\n",
      }),
      this.kernel.ip(this.netns, ["xfrm", "policy", "list"]),
    ]);
    // `link show -j` prints its array on one line; the state text follows.
    const nl = linksAndStates.indexOf("\n");
    const json = nl < 0 ? linksAndStates : linksAndStates.slice(0, nl);
    const text = nl < 0 ? "" : linksAndStates.slice(nl + 1);
    if (!json.trimStart().startsWith("["))
      throw new PodcryptError("EPARSE", "unexpected `ip -j link show` output: no JSON array first", {
        context: { netns: this.netns },
      });
    return { links: parseLinks(json), states: parseXfrmStates(text), policies: parseXfrmPolicies(policies) };
  }

  /** Reads the states with their counters (`ip -s xfrm state`), for status. One process. */
  async readStates(): Promise<XfrmSnapshot["states"]> {
    return parseXfrmStates(await this.kernel.ip(this.netns, ["-s", "xfrm", "state", "list"]));
  }
}
