import { PodcryptError } from "../../errors/index.js";
import { canonicalIp } from "../../platform/netlink/addr.js";
import type { KernelCommands } from "../../platform/netlink/kernel-commands.js";
import { parseWgDump } from "../../platform/netlink/wg-dump.js";
import {
  normaliseDesired,
  planWireguard,
  type InstalledRoute,
  type InstalledWgLink,
  type WgKernelPlan,
  type WgKernelSnapshot,
} from "./plan.js";
import type { WgKernelDesired } from "./types.js";

/** Options of {@link WireguardKernelReconciler}. */
export interface WireguardKernelOptions {
  /** Network namespace to act in (default: the process's own). */
  netns?: string;
  /** Interfaces whose name starts with this are the backend's (default "podcrypt"). */
  prefix?: string;
  /** rtnetlink `proto` of the routes the backend installs, so it finds its own (default 77). */
  routeProto?: number;
}

/** What one pass did. */
export interface ReconcileResult {
  /** false when what was installed already matched. */
  changed: boolean;
  /** The commands applied (`ip -batch` lines and interfaces given to `wg syncconf`). */
  plan: WgKernelPlan;
}

const JSON_ROUTE_TABLES: Record<string, number> = { main: 254, local: 255, default: 253 };

/**
 * The kernel WireGuard backend's reconciler: the only code that changes kernel WireGuard
 * interfaces. Each pass reads everything it owns (links, addresses, routes, `wg show all dump`),
 * diffs it against the desired state and applies only the difference: nothing when they match, so
 * sessions and counters survive; whatever was removed or altered behind its back is restored.
 * Since no pass trusts what an earlier one believed, a failed pass needs no bookkeeping: the next
 * pass is a full resync from a fresh read. `inSync` reports whether the last pass succeeded.
 */
export class WireguardKernelReconciler {
  private readonly netns: string | undefined;
  private readonly prefix: string;
  private readonly routeProto: number;
  private lastOk = false;

  constructor(
    private readonly kernel: KernelCommands,
    options: WireguardKernelOptions = {},
  ) {
    this.netns = options.netns;
    this.prefix = options.prefix ?? "podcrypt";
    this.routeProto = options.routeProto ?? 77;
  }

  /** True when the last pass applied everything. */
  get inSync(): boolean {
    return this.lastOk;
  }

  /** Makes the kernel match `desired`; see the class comment. */
  async reconcile(desired: WgKernelDesired): Promise<ReconcileResult> {
    this.lastOk = false;
    const want = normaliseDesired(desired, this.prefix);
    const snapshot = await this.read();
    const plan = planWireguard(want, snapshot, this.prefix, this.routeProto);
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
    return { changed: plan.ipLines.length + plan.syncconf.length > 0, plan };
  }

  /** Reads the backend's interfaces, addresses, routes and WireGuard devices (with counters). */
  async read(): Promise<WgKernelSnapshot> {
    const [addrJson, routes4, routes6, dump] = await Promise.all([
      this.kernel.ip(this.netns, ["-j", "-d", "address", "show"]),
      this.kernel.ip(this.netns, [
        "-j",
        "-4",
        "route",
        "show",
        "table",
        "all",
        "proto",
        String(this.routeProto),
      ]),
      this.kernel.ip(this.netns, [
        "-j",
        "-6",
        "route",
        "show",
        "table",
        "all",
        "proto",
        String(this.routeProto),
      ]),
      this.kernel.wg(this.netns, ["show", "all", "dump"]),
    ]);
    const links = new Map<string, InstalledWgLink>();
    for (const l of parseJsonArray<IpAddrLink>(addrJson)) {
      if (l.linkinfo?.info_kind !== "wireguard") continue;
      links.set(l.ifname, {
        ifname: l.ifname,
        mtu: l.mtu,
        up: (l.flags ?? []).includes("UP"),
        addresses: (l.addr_info ?? [])
          .filter((a) => a.scope !== "link" && a.scope !== "host")
          .map((a) => `${canonicalIp(a.local)}/${a.prefixlen}`),
      });
    }
    const installedRoutes: InstalledRoute[] = [];
    for (const [text, any] of [
      [routes4, "0.0.0.0/0"],
      [routes6, "::/0"],
    ] as const) {
      for (const r of parseJsonArray<IpRoute>(text)) {
        if (r.dev === undefined) continue;
        const dst =
          r.dst === "default" ? any : r.dst.includes("/") ? r.dst : `${r.dst}/${any === "::/0" ? 128 : 32}`;
        const table = r.table === undefined ? 254 : (JSON_ROUTE_TABLES[r.table] ?? Number(r.table));
        installedRoutes.push({ dst, dev: r.dev, table });
      }
    }
    return { links, devices: parseWgDump(dump), routes: installedRoutes };
  }
}

interface IpAddrLink {
  ifname: string;
  mtu: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: { local: string; prefixlen: number; scope?: string }[];
}

interface IpRoute {
  dst: string;
  dev?: string;
  table?: string;
}

function parseJsonArray<T>(text: string): T[] {
  const t = text.trim();
  return t === "" ? [] : (JSON.parse(t) as T[]);
}
