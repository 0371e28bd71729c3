import { run } from "../../platform/netns/netns.js";
import type { DesiredRoute } from "../types.js";

/** The routing table podcrypt programs (main: the local cluster's nodes have no other routes). */
interface IpRoute {
  dst: string;
  type?: string;
  gateway?: string;
  dev?: string;
}

function normalise(dst: string): string {
  return dst.includes("/") ? dst : `${dst}/${dst.includes(":") ? 128 : 32}`;
}

function same(want: DesiredRoute, have: IpRoute): boolean {
  switch (want.kind) {
    case "blackhole":
      return have.type === "blackhole";
    case "tunnel":
      return have.type !== "blackhole" && have.dev === want.dev && have.gateway === undefined;
    case "plain":
      return have.type !== "blackhole" && have.dev === want.dev && have.gateway === want.via;
  }
}

function command(r: DesiredRoute): string {
  switch (r.kind) {
    case "blackhole":
      return `route replace blackhole ${r.dst}`;
    case "tunnel":
      return `route replace ${r.dst} dev ${r.dev}`;
    case "plain":
      return `route replace ${r.dst} via ${r.via} dev ${r.dev}`;
  }
}

/**
 * Routes to other nodes' pod CIDRs: reads the installed ones (`ip -j route`), replaces what
 * differs and deletes routes inside `managed` (the cluster pod CIDRs) that are no longer wanted,
 * in one `ip -batch` process. `ip route replace` swaps a route atomically, so moving traffic from
 * one generation's interface to the next loses nothing. Returns the number of changes.
 */
export async function reconcileRoutes(
  desired: DesiredRoute[],
  managed: (dst: string) => boolean,
): Promise<number> {
  const installed = JSON.parse(
    (await run("ip", ["-j", "route", "show", "table", "main"])) || "[]",
  ) as IpRoute[];
  const byDst = new Map(installed.map((r) => [normalise(r.dst), r]));
  const commands: string[] = [];
  const wanted = new Set<string>();
  for (const r of desired) {
    wanted.add(r.dst);
    const have = byDst.get(r.dst);
    if (have === undefined || !same(r, have)) commands.push(command(r));
  }
  for (const [dst, r] of byDst) {
    if (!wanted.has(dst) && managed(dst) && r.dev?.startsWith("pcp") !== true)
      commands.push(`route del ${dst}${r.type === "blackhole" ? " type blackhole" : ""}`);
  }
  if (commands.length > 0) await run("ip", ["-batch", "-"], { input: commands.join("\n") + "\n" });
  return commands.length;
}
