import { PodcryptError } from "../../errors/index.js";
import { run } from "../../platform/netns/netns.js";
import type { DesiredHost, DesiredRoute, HostExclusion, HostFamily } from "../types.js";
import { SELECT_MARK } from "./nft.js";

/**
 * The routing table of selected traffic (selective encryption): packets carrying
 * {@link SELECT_MARK} look it up first (rule priority {@link SELECTED_RULE_PRIORITY}); what it
 * does not route falls through to the main table.
 */
export const SELECTED_TABLE = 5040;
export const SELECTED_RULE_PRIORITY = 5040;

/**
 * Host encryption (docs/design.md#host-encryption): the table of the routes that send peers' host
 * addresses into the tunnels, looked up by every packet (rule priority {@link HOST_RULE_PRIORITY})
 * except what the rules of priority {@link HOST_EXCLUDE_PRIORITY} send to the main table first.
 */
export const HOST_TABLE = 5041;
export const HOST_EXCLUDE_PRIORITY = 5030;
export const HOST_RULE_PRIORITY = 5031;

interface IpRoute {
  dst: string;
  /** Absent for the main table. */
  table?: string;
  type?: string;
  gateway?: string;
  /** A gateway of the other family (an IPv4 route via an IPv6 next hop). */
  via?: { family?: string; host?: string };
  dev?: string;
  prefsrc?: string;
}

/** A rule as `ip -j rule show` (IPv4) or `ip -6 -j rule show` prints it (the fields podcrypt's rules use). */
export interface IpRule {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  src?: string;
  srclen?: number;
  dst?: string;
  dstlen?: number;
  ipproto?: string;
  sport?: number | string;
  dport?: number | string;
}

function normalise(dst: string): string {
  return dst.includes("/") ? dst : `${dst}/${dst.includes(":") ? 128 : 32}`;
}

function same(want: DesiredRoute, have: IpRoute): boolean {
  switch (want.kind) {
    case "blackhole":
      return have.type === "blackhole";
    case "tunnel":
      return (
        have.type !== "blackhole" &&
        have.dev === want.dev &&
        have.gateway === undefined &&
        have.prefsrc === want.src
      );
    case "plain":
      return (
        have.type !== "blackhole" && have.dev === want.dev && (have.gateway ?? have.via?.host) === want.via
      );
  }
}

function command(r: DesiredRoute): string {
  const table =
    r.table === "selected" ? ` table ${SELECTED_TABLE}` : r.table === "host" ? ` table ${HOST_TABLE}` : "";
  switch (r.kind) {
    case "blackhole":
      return `route replace blackhole ${r.dst}${table}`;
    case "tunnel":
      return `route replace ${r.dst} dev ${r.dev}${r.src === undefined ? "" : ` src ${r.src}`}${table}`;
    case "plain": {
      // An IPv4 route through an IPv6 next hop (IPv4 pods over an IPv6-only underlay) names its family.
      const via = r.via.includes(":") && !r.dst.includes(":") ? `inet6 ${r.via}` : r.via;
      return `route replace ${r.dst} via ${via} dev ${r.dev}${table}`;
    }
  }
}

const markArg = `0x${SELECT_MARK.toString(16)}/0x${SELECT_MARK.toString(16)}`;

function isSelectedRule(r: IpRule): boolean {
  return r.priority === SELECTED_RULE_PRIORITY && r.table === String(SELECTED_TABLE);
}

/** The selector of an `ip rule` (`from`, `to`, `ipproto`, ports), the same text for a wanted and a read rule. */
function selectorOf(x: {
  from?: string | undefined;
  to?: string | undefined;
  protocol?: string | undefined;
  sport?: number | string | undefined;
  dport?: number | string | undefined;
}): string {
  const parts: string[] = [];
  if (x.from !== undefined) parts.push(`from ${x.from}`);
  if (x.to !== undefined) parts.push(`to ${x.to}`);
  if (x.protocol !== undefined) parts.push(`ipproto ${x.protocol}`);
  if (x.sport !== undefined) parts.push(`sport ${x.sport}`);
  if (x.dport !== undefined) parts.push(`dport ${x.dport}`);
  return parts.join(" ");
}

const cidrOf = (addr: string | undefined, len: number | undefined): string | undefined =>
  addr === undefined || addr === "all" ? undefined : `${addr}/${len ?? (addr.includes(":") ? 128 : 32)}`;

/** The selector of an installed rule, as {@link selectorOf} writes a wanted one. */
function installedSelector(r: IpRule): string {
  return selectorOf({
    from: cidrOf(r.src, r.srclen),
    to: cidrOf(r.dst, r.dstlen),
    protocol: r.ipproto,
    sport: r.sport,
    dport: r.dport,
  });
}

/** The selector of a wanted exclusion (CIDRs normalised to carry their length). */
function exclusionSelector(e: HostExclusion): string {
  return selectorOf({
    from: e.from === undefined ? undefined : normalise(e.from),
    to: e.to === undefined ? undefined : normalise(e.to),
    protocol: e.protocol,
    sport: e.sport,
    dport: e.dport,
  });
}

/** Whether exclusion `e` belongs to `family`'s rules: one by CIDR to its CIDR's family only, one by port to both. */
function inFamily(e: HostExclusion, family: HostFamily): boolean {
  const cidr = e.to ?? e.from;
  return cidr === undefined || cidr.includes(":") === (family === "ipv6");
}

/**
 * The commands that keep the rule of marked packets (selective encryption: `fwmark` of
 * {@link SELECT_MARK} looks up the selected table) in `rules`, the installed rules of one family
 * (`ip rule` or `ip -6 rule`, which the commands are for): exactly one when `want`, none otherwise.
 */
export function selectedRuleCommands(rules: readonly IpRule[], want: boolean): string[] {
  const have = rules.filter(isSelectedRule);
  const ok = have.length === 1 && have[0]!.fwmark === `0x${SELECT_MARK.toString(16)}`;
  const out: string[] = [];
  if (!want || !ok)
    for (let i = 0; i < have.length; i++) out.push(`rule del priority ${SELECTED_RULE_PRIORITY}`);
  if (want && !ok)
    out.push(`rule add priority ${SELECTED_RULE_PRIORITY} fwmark ${markArg} lookup ${SELECTED_TABLE}`);
  return out;
}

/**
 * The commands that bring host encryption's rules of `family` (`rules` are the installed ones of
 * that family: `ip rule` or `ip -6 rule`, which the commands are for) to `host` (none at all when
 * undefined or `host` does not cover the family): the exclusions to the main table first, then the
 * rule of the host table. When anything differs the host table's rule goes first and comes back
 * last, so the tunnels' own datagrams are never routed into a tunnel, not even between two commands.
 */
export function hostRuleCommands(
  rules: readonly IpRule[],
  host: DesiredHost | undefined,
  family: HostFamily = "ipv4",
): string[] {
  if (host !== undefined && !host.families.includes(family)) host = undefined;
  const haveExcl = rules
    .filter((r) => r.priority === HOST_EXCLUDE_PRIORITY && r.table === "main")
    .map(installedSelector)
    .sort();
  const haveHost = rules.filter((r) => r.priority === HOST_RULE_PRIORITY);
  const wantExcl =
    host === undefined
      ? []
      : [...new Set(host.exclude.filter((e) => inFamily(e, family)).map(exclusionSelector))].sort();
  const hostOk =
    host === undefined
      ? haveHost.length === 0
      : haveHost.length === 1 &&
        haveHost[0]!.table === String(HOST_TABLE) &&
        installedSelector(haveHost[0]!) === "";
  const exclOk =
    haveExcl.length === wantExcl.length &&
    haveExcl.every((x, i) => x === wantExcl[i]) &&
    rules.filter((r) => r.priority === HOST_EXCLUDE_PRIORITY).length === haveExcl.length;
  if (hostOk && exclOk) return [];
  const out: string[] = haveHost.map(() => `rule del priority ${HOST_RULE_PRIORITY}`);
  if (!exclOk) {
    for (const r of rules)
      if (r.priority === HOST_EXCLUDE_PRIORITY) out.push(`rule del priority ${HOST_EXCLUDE_PRIORITY}`);
    for (const x of wantExcl) out.push(`rule add priority ${HOST_EXCLUDE_PRIORITY} ${x} lookup main`);
  }
  if (host !== undefined) out.push(`rule add priority ${HOST_RULE_PRIORITY} lookup ${HOST_TABLE}`);
  return out;
}

/**
 * Routes to other nodes' pod CIDRs: reads the installed ones (the main table, podcrypt's `selected`
 * and `host` tables and the rules, in one `ip -j -batch` process), replaces what differs and
 * deletes routes that are no longer wanted (in main only those `managed` accepts, the cluster pod
 * CIDRs; in podcrypt's tables all), keeps the `ip rule` of marked packets of each family exactly
 * when some route of that family wants the selected table and host encryption's rules exactly when
 * `host` is given (of each family it covers), all in one `ip -batch` process (IPv6 rules in one of
 * their own: see below). `ip route replace` swaps a route atomically, so moving traffic from one
 * generation's interface to the next loses nothing. Returns the number of changes.
 */
export async function reconcileRoutes(
  desired: DesiredRoute[],
  managed: (dst: string) => boolean,
  host?: DesiredHost,
): Promise<number> {
  // Both reads in one process (each prints one line of JSON; neither fails on a missing table): a
  // pass runs every few seconds on every node, and a process start is what costs there. `table
  // all` names the table of every route outside main, and without a family lists both families'
  // routes (pod CIDRs of dual-stack nodes); `rule show` lists the IPv4 rules.
  const lines = (await run("ip", ["-j", "-batch", "-"], { input: "route show table all\nrule show\n" }))
    .split("\n")
    .filter((l) => l !== "");
  if (lines.length !== 2)
    throw new PodcryptError("ECOMMAND", `ip -j -batch printed ${lines.length} lines for 2 reads`, {
      context: { lines: lines.length },
    });
  const [routesJson, rulesJson] = lines as [string, string];
  const routes = JSON.parse(routesJson) as IpRoute[];
  const inTable = (...names: Array<string | undefined>): Map<string, IpRoute> =>
    new Map(routes.filter((r) => names.includes(r.table)).map((r) => [normalise(r.dst), r]));
  const tables = {
    main: inTable(undefined, "main"),
    selected: inTable(String(SELECTED_TABLE)),
    host: inTable(String(HOST_TABLE)),
  };
  const commands: string[] = [];
  const wanted = { main: new Set<string>(), selected: new Set<string>(), host: new Set<string>() };
  for (const r of desired) {
    const t = r.table ?? "main";
    wanted[t].add(r.dst);
    const have = tables[t].get(r.dst);
    if (have === undefined || !same(r, have)) commands.push(command(r));
  }
  for (const [dst, r] of tables.main) {
    if (!wanted.main.has(dst) && managed(dst) && r.dev?.startsWith("pcp") !== true)
      commands.push(`route del ${r.type === "blackhole" ? "blackhole " : ""}${dst}`);
  }
  // podcrypt's own tables hold only what it wants there.
  for (const [t, id] of [
    ["selected", SELECTED_TABLE],
    ["host", HOST_TABLE],
  ] as const) {
    for (const [dst, r] of tables[t])
      if (!wanted[t].has(dst))
        commands.push(`route del ${r.type === "blackhole" ? "blackhole " : ""}${dst} table ${id}`);
  }
  const allRules = JSON.parse(rulesJson) as IpRule[];
  commands.push(...hostRuleCommands(allRules, host, "ipv4"));
  // The rule of marked packets, per family: each wanted while the selected table routes that
  // family's pod CIDRs. The rule is added after the routes it leads to exist (the batch runs in
  // order): a marked packet the rule sends to a table without its route would leave in plaintext.
  const isV6 = (dst: string): boolean => dst.includes(":");
  const want6 = [...wanted.selected].some(isV6);
  commands.push(
    ...selectedRuleCommands(
      allRules,
      [...wanted.selected].some((d) => !isV6(d)),
    ),
  );
  // IPv6 rules are another family's list (`ip -6 rule`), which a batch of the default family can
  // neither read nor write: read in a process of its own, only when the selected table routes
  // IPv6 pods, host encryption covers IPv6, or either table still holds IPv6 routes (rules left
  // behind without them route nothing), so a node with neither starts no more processes than
  // before. The selected rule is removed before its routes go and added after they came. Host
  // encryption's rules change before the routes, which is safe both ways: the rules of a table
  // that holds no route yet route nothing, and when host encryption goes off its rules go before
  // its routes.
  let before6: string[] = [];
  let after6: string[] = [];
  if (
    want6 ||
    host?.families.includes("ipv6") === true ||
    [...tables.selected.keys(), ...tables.host.keys()].some(isV6)
  ) {
    const rules6 = JSON.parse(await run("ip", ["-6", "-j", "rule", "show"])) as IpRule[];
    const selected6 = selectedRuleCommands(rules6, want6);
    before6 = [...hostRuleCommands(rules6, host, "ipv6"), ...(want6 ? [] : selected6)];
    after6 = want6 ? selected6 : [];
  }
  const batch6 = async (c: readonly string[]): Promise<void> => {
    if (c.length > 0) await run("ip", ["-6", "-batch", "-"], { input: c.join("\n") + "\n" });
  };
  await batch6(before6);
  if (commands.length > 0) await run("ip", ["-batch", "-"], { input: commands.join("\n") + "\n" });
  await batch6(after6);
  return commands.length + before6.length + after6.length;
}
