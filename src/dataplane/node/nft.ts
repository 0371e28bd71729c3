import { cidrContains } from "../../platform/netlink/addr.js";
import { run, runIn } from "../../platform/netns/netns.js";
import type { DesiredStrict, HostExclusion, SelectorMatch } from "../types.js";

/** nftables table that holds podcrypt's fail-closed rules and its selective-encryption marks. */
export const NFT_TABLE = "podcrypt";

/**
 * The packet mark of selected traffic (selective encryption): set in prerouting, looked up by the
 * `ip rule` that sends marked packets to the `selected` routing table. One bit, so marks of other
 * components (kube-proxy 0x4000/0x8000, Calico's upper bits) are left alone.
 */
export const SELECT_MARK = 0x00100000;

/**
 * Outbound drops match only packets the kernel will not encrypt. Kernel XFRM (route-based, in
 * tunnel mode) passes a pod's packet through POSTROUTING *before* ESP, with the underlay as its
 * output device (the device of the IPsec bundle's route): without this, strict mode dropped all
 * kernel-IPsec traffic between pods. `rt ipsec missing`: the packet's route has no XFRM bundle.
 */
const NOT_IPSEC = "rt ipsec missing";

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`;

/**
 * One nft match per address family for `matches` by `side` address and port: `daddr . proto .
 * dport` for traffic to the pods, `saddr . proto . sport` for their replies, each after `prefix`
 * (e.g. an interface match). Empty when none.
 */
function selectorMatches(
  matches: readonly SelectorMatch[],
  side: "to" | "from",
  prefix = "",
): Array<{ family: "ip" | "ip6"; match: string }> {
  const out: Array<{ family: "ip" | "ip6"; match: string }> = [];
  for (const family of ["ip", "ip6"] as const) {
    const elements = matches.flatMap((m) =>
      m.podIPs
        .filter((ip) => ip.includes(":") === (family === "ip6"))
        .map((ip) => `${ip} . ${m.protocol} . ${m.port}`),
    );
    if (elements.length === 0) continue;
    const [addr, port] = side === "to" ? ["daddr", "dport"] : ["saddr", "sport"];
    out.push({
      family,
      match: `${prefix}${family} ${addr} . meta l4proto . th ${port} { ${[...new Set(elements)].join(", ")} }`,
    });
  }
  return out;
}

/** Which way a strict drop goes: `out`, sent in plaintext (dropped instead); `in`, arrived from a peer in plaintext. */
export type StrictDirection = "out" | "in";

const DROP_COMMENT: Record<StrictDirection, string> = {
  out: "podcrypt: plaintext out",
  in: "podcrypt: plaintext in",
};

/**
 * The chain that counts and drops one peer's plaintext in one direction (`out.NODE`, `in.NODE`),
 * or undefined when the name would not fit nft's 255 characters (its packets then fall to the
 * shared drop rule, counted without a peer). Node names are DNS-1123 subdomains, which nft takes
 * as unquoted identifiers after the prefix.
 */
function peerChain(direction: StrictDirection, node: string): string | undefined {
  const name = `${direction}.${node}`;
  return name.length <= 255 ? name : undefined;
}

/**
 * The verdict map that sends a packet to its peer's counting chain by the remote pod address
 * (`daddr` going out, `saddr` coming in), for `family`; "" when no peer has a CIDR of it.
 */
function peerDispatch(
  peers: ReadonlyArray<{ node: string; cidrs: readonly string[] }>,
  direction: StrictDirection,
  family: "ip" | "ip6",
): string {
  // A verdict map's intervals must not overlap (nft refuses the whole ruleset): a CIDR that
  // overlaps one taken already is left to the shared drop rule.
  const taken: string[] = [];
  const elements = peers.flatMap((p) => {
    const chain = peerChain(direction, p.node);
    if (chain === undefined) return [];
    return p.cidrs
      .filter((c) => c.includes(":") === (family === "ip6"))
      .filter((c) => {
        if (taken.some((t) => cidrContains(t, c) || cidrContains(c, t))) return false;
        taken.push(c);
        return true;
      })
      .map((c) => `${c} : goto ${chain}`);
  });
  if (elements.length === 0) return "";
  return `${family} ${direction === "out" ? "daddr" : "saddr"} vmap { ${elements.join(", ")} }`;
}

/**
 * The node's ruleset as nft text (docs/design.md#strict-mode and #selective-encryption), replaced as one transaction.
 *
 * Encrypting all pod traffic: pod traffic between this node and the others may cross the underlay
 * only inside the tunnel (whose packets are UDP between node addresses, so they never match):
 * anything else matching the pod CIDRs on the underlay interface is dropped and counted.
 *
 * Selective: chain `select` marks the selected traffic ({@link SELECT_MARK}) so policy routing
 * sends it into the tunnel; strict mode drops marked packets leaving through the underlay, and
 * selected traffic arriving from it in plaintext.
 *
 * Strict host mode (`s.host`, docs/design.md#host-encryption): plaintext to and from the peers'
 * host addresses on the underlay goes through chains `host-out` and `host-in`, which let pass what
 * host encryption leaves outside the tunnels and drop the rest, counted against the peer.
 */
export function strictRuleset(s: DesiredStrict): string {
  const set = (cidrs: readonly string[]): string => `{ ${cidrs.join(", ")} }`;
  const families = ["ip", "ip6"] as const;
  const ofFamily = (cidrs: readonly string[], f: "ip" | "ip6"): string[] =>
    cidrs.filter((c) => c.includes(":") === (f === "ip6"));
  const podPeers = (s.peers ?? []).map((p) => ({ node: p.node, cidrs: p.podCidrs }));
  const hostPeers = (s.host?.peers ?? []).map((p) => ({ node: p.node, cidrs: p.addresses }));
  const chain = (name: string, hook: string, priority: string, body: string[], type = "filter"): string[] =>
    body.length === 0
      ? []
      : [`  chain ${name} { type ${type} hook ${hook} priority ${priority}; policy accept;`, ...body, "  }"];
  // Packets matching `match` are dropped: first through their peer's counting chain (a verdict
  // map on the remote address), the rest (no peer owns the address) by the shared rule.
  const drops = (
    direction: StrictDirection,
    match: string,
    families: ReadonlyArray<"ip" | "ip6">,
    peers: ReadonlyArray<{ node: string; cidrs: readonly string[] }> = podPeers,
  ): string[] => [
    ...families.flatMap((f) => {
      const d = peerDispatch(peers, direction, f);
      return d === "" ? [] : [`    ${match}${match === "" ? "" : " "}${d}`];
    }),
    `    ${match}${match === "" ? "" : " "}${countDrop(direction)}`,
  ];
  const rules: string[] = [];
  const used = new Set<StrictDirection>();
  // The base chains' rules: pod traffic's drops, then the jumps to the host chains.
  const outBody: string[] = [];
  const inBody: string[] = [];
  const sel = s.selection;
  if (sel !== undefined) {
    const mark = `meta mark set meta mark | ${hex(SELECT_MARK)} counter`;
    const byLocal = (l: boolean) => sel.encrypt.filter((m) => m.local === l);
    rules.push(
      ...chain(
        "select",
        "prerouting",
        "mangle",
        [...selectorMatches(byLocal(false), "to"), ...selectorMatches(byLocal(true), "from")].map(
          (m) => `    ${m.match} ${mark}`,
        ),
      ),
    );
    // The node's own sources (the probe endpoint) are marked on output; a route chain, so the
    // mark re-routes the packet into the selected table.
    const sources = (sel.localSources ?? []).filter((a) => !a.includes(":"));
    rules.push(
      ...chain(
        "select-local",
        "output",
        "mangle",
        sources.length === 0
          ? []
          : selectorMatches(byLocal(false), "to")
              .filter((m) => m.family === "ip")
              .map((m) => `    ip saddr { ${sources.join(", ")} } ${m.match} ${mark}`),
        "route",
      ),
    );
    if (s.dropOutbound)
      outBody.push(
        ...drops("out", `oifname "${s.underlayIf}" meta mark & ${hex(SELECT_MARK)} != 0 ${NOT_IPSEC}`, [
          "ip",
          "ip6",
        ]),
      );
    if (s.dropInbound) {
      const iif = `iifname "${s.underlayIf}" `;
      const expect = (l: boolean) => sel.expectEncrypted.filter((m) => m.local === l);
      const body = [
        ...selectorMatches(expect(true), "to", iif),
        ...selectorMatches(expect(false), "from", iif),
      ];
      inBody.push(...body.flatMap((m) => drops("in", m.match, [m.family])));
    }
  } else {
    // Per family: a pair of families (an IPv4 pod to an IPv6 one) never routes, so each family's
    // local pods are matched against the same family's remote pods only.
    const byFamily = families.flatMap((f) => {
      const local = ofFamily(s.localPodCidrs, f);
      const remote = ofFamily(s.remotePodCidrs, f);
      return local.length > 0 && remote.length > 0 ? [{ f, local, remote }] : [];
    });
    if (s.dropOutbound)
      outBody.push(
        ...byFamily.flatMap(({ f, local, remote }) =>
          drops(
            "out",
            `oifname "${s.underlayIf}" ${f} saddr ${set(local)} ${f} daddr ${set(remote)} ${NOT_IPSEC}`,
            [f],
          ),
        ),
      );
    if (s.dropInbound)
      inBody.push(
        ...byFamily.flatMap(({ f, local, remote }) =>
          drops("in", `iifname "${s.underlayIf}" ${f} saddr ${set(remote)} ${f} daddr ${set(local)}`, [f]),
        ),
      );
  }
  if (outBody.length > 0) used.add("out");
  if (inBody.length > 0) used.add("in");
  // Strict host mode: plaintext to or from a peer's host address, except what stays outside the
  // tunnels (which returns to the base chain, and so passes), goes to the peer's counting chain.
  const hostChains: string[] = [];
  if (s.host !== undefined) {
    const passes = hostPasses(s.host.exclude);
    const hostFamilies = families.filter((f) => hostPeers.some((p) => ofFamily(p.cidrs, f).length > 0));
    const addrs = (f: "ip" | "ip6") => set([...new Set(hostPeers.flatMap((p) => ofFamily(p.cidrs, f)))]);
    for (const [direction, body, name, match] of [
      [
        "out",
        outBody,
        "host-out",
        (f: "ip" | "ip6") => `oifname "${s.underlayIf}" ${f} daddr ${addrs(f)} ${NOT_IPSEC}`,
      ],
      ["in", inBody, "host-in", (f: "ip" | "ip6") => `iifname "${s.underlayIf}" ${f} saddr ${addrs(f)}`],
    ] as const) {
      if (!(direction === "out" ? s.host.dropOutbound : s.host.dropInbound) || hostFamilies.length === 0)
        continue;
      used.add(direction);
      body.push(...hostFamilies.map((f) => `    ${match(f)} jump ${name}`));
      hostChains.push(
        `  chain ${name} {`,
        ...passes.map((p) => `    ${p} return`),
        ...drops(direction, "", hostFamilies, hostPeers),
        "  }",
      );
    }
  }
  rules.push(...chain("out", "postrouting", "0", outBody), ...chain("in", "prerouting", "0", inBody));
  // The peers' counting chains, defined before the rules that jump to them.
  const names = [...new Set([...podPeers, ...hostPeers].map((p) => p.node))];
  const peerChains = [...used].flatMap((direction) =>
    names.flatMap((node) => {
      const name = peerChain(direction, node);
      return name === undefined ? [] : [`  chain ${name} {`, `    ${countDrop(direction, name)}`, "  }"];
    }),
  );
  return [`table inet ${NFT_TABLE} {`, ...peerChains, ...hostChains, ...rules, `}`, ""].join("\n");
}

/**
 * The rule end that counts a drop in the named counter `counter` (the direction's shared one, or a
 * peer's, named as its chain) and drops it. Named counters live in the table apart from its rules,
 * so replacing the rules keeps what they counted ({@link strictReplacement} adds the missing ones).
 */
function countDrop(direction: StrictDirection, counter: string = direction): string {
  return `counter name "${counter}" drop comment "${DROP_COMMENT[direction]}"`;
}

/**
 * The transaction that replaces the table's rules and chains with `table` ({@link strictRuleset})
 * and keeps its counters, `installed` being the table as it is: it creates the table if it is not
 * there, flushes its rules, deletes its chains (by handle, whatever their names), adds the
 * counters the new rules name that are not there yet, and defines the table anew. One `nft -f`:
 * the kernel applies all of it or nothing, and no packet meets the table half replaced. Counters
 * are never deleted nor declared again, so no drop goes uncounted while a pass re-applies the
 * table, and an agent that starts again continues from what the table counted.
 */
export function strictReplacement(
  table: string,
  installed: Pick<InstalledStrict, "chains" | "counters">,
): string {
  const have = new Set(installed.counters);
  const named = new Set([...table.matchAll(/counter name "([^"]+)"/g)].map((m) => m[1]!));
  return [
    `table inet ${NFT_TABLE} {}`,
    `flush table inet ${NFT_TABLE}`,
    ...installed.chains.map((c) => `delete chain inet ${NFT_TABLE} handle ${c.handle}`),
    ...[...named]
      .filter((n) => !have.has(n))
      .sort()
      .map((n) => `add counter inet ${NFT_TABLE} ${n}`),
    table,
  ].join("\n");
}

/**
 * The matches of what strict host mode lets pass (each ends a rule with `return`): what host
 * encryption leaves outside the tunnels, `exclude`, each both as written (this node's request, or
 * the peer's with the same exclusion) and mirrored (the answer to it: addresses and ports
 * swapped), then ESP (kernel IPsec's own packets; they are encrypted) and IPv6 neighbour
 * discovery, without which no IPv6 host address on the underlay would resolve.
 */
function hostPasses(exclude: readonly HostExclusion[]): string[] {
  const one = (e: HostExclusion): string => {
    const parts: string[] = [];
    const addr = (cidr: string | undefined, side: "saddr" | "daddr") => {
      if (cidr !== undefined) parts.push(`${cidr.includes(":") ? "ip6" : "ip"} ${side} ${cidr}`);
    };
    addr(e.from, "saddr");
    addr(e.to, "daddr");
    if (e.sport !== undefined || e.dport !== undefined || e.protocol !== undefined)
      parts.push(`meta l4proto ${e.protocol ?? "{ tcp, udp, sctp }"}`);
    if (e.sport !== undefined) parts.push(`th sport ${e.sport}`);
    if (e.dport !== undefined) parts.push(`th dport ${e.dport}`);
    return parts.join(" ");
  };
  const mirror = (e: HostExclusion): HostExclusion => ({
    ...(e.protocol === undefined ? {} : { protocol: e.protocol }),
    ...(e.to === undefined ? {} : { from: e.to }),
    ...(e.from === undefined ? {} : { to: e.from }),
    ...(e.dport === undefined ? {} : { sport: e.dport }),
    ...(e.sport === undefined ? {} : { dport: e.sport }),
  });
  const matches = exclude.flatMap((e) => [one(e), one(mirror(e))]).filter((m) => m !== "");
  return [
    ...new Set(matches),
    "meta l4proto esp",
    "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect }",
  ];
}

/** Applies the strict ruleset atomically (`nft -f`), skipping it when unchanged since the last call. */
export class StrictReconciler {
  private applied: string | undefined;
  private current: DesiredStrict | undefined;
  /** Serializes replacing the table with reading it: a replacement needs the chains it deletes. */
  private lock: Promise<unknown> = Promise.resolve();

  /** `nft` reads the installed table and applies a transaction (default: the `nft` tool). */
  constructor(private readonly nft: StrictNft = nftTool()) {}

  async reconcile(s: DesiredStrict): Promise<boolean> {
    const table = strictRuleset(s);
    if (table === this.applied) return false;
    this.applied = undefined;
    await this.locked(async () => this.nft.apply(strictReplacement(table, await this.nft.read())));
    this.applied = table;
    this.current = s;
    return true;
  }

  /**
   * Applies only the part of `s` that lifts drops: call before moving routes, and `reconcile(s)`
   * after. A drop that goes away must go before traffic is routed in plaintext; a drop that comes
   * must wait until the routes send through the tunnel, or the packets in between are lost.
   */
  async relax(s: DesiredStrict): Promise<boolean> {
    const cur = this.current;
    if (cur === undefined) return this.reconcile(s);
    const { host, ...rest } = s;
    return this.reconcile({
      ...rest,
      dropOutbound: s.dropOutbound && cur.dropOutbound,
      dropInbound: s.dropInbound && cur.dropInbound,
      ...(host === undefined
        ? {}
        : {
            host: {
              ...host,
              dropOutbound: host.dropOutbound && cur.host?.dropOutbound === true,
              dropInbound: host.dropInbound && cur.host?.dropInbound === true,
            },
          }),
    });
  }

  /** Forces a full re-apply on the next pass (after a failure elsewhere). */
  invalidate(): void {
    this.applied = undefined;
  }

  /**
   * Packets strict mode dropped, per peer and direction, since the table was created (by this
   * agent or an earlier one): monotonic, as replacing the table keeps its counters.
   */
  async drops(): Promise<StrictDrop[]> {
    const { counted } = await this.locked(() => this.nft.read());
    return [...counted].sort(
      (a, b) => a.peer.localeCompare(b.peer) || a.direction.localeCompare(b.direction),
    );
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }
}

/** Packets strict mode dropped in one direction for one peer (`peer` "" when no peer owns the address). */
export interface StrictDrop {
  peer: string;
  direction: StrictDirection;
  packets: number;
}

/** The table as installed: what a replacement deletes, and what its counters hold. */
export interface InstalledStrict {
  /** Its chains, by name and handle (none when the table is not there). */
  chains: Array<{ name: string; handle: number }>;
  /** The names of its counters. */
  counters: string[];
  /** Its drop counters, per peer from the `out.NODE`/`in.NODE` counters, the rest from `out` and `in`. */
  counted: StrictDrop[];
}

/** What the reconciler needs of nftables: the installed table, and applying a transaction. */
export interface StrictNft {
  read(): Promise<InstalledStrict>;
  apply(text: string): Promise<unknown>;
}

/**
 * The `nft` tool, in network namespace `netns` (default: the caller's). Its `read` lists the table
 * (`nft -j list table inet podcrypt`), empty when the table is not there.
 */
export function nftTool(netns?: string): StrictNft {
  const nft = (args: readonly string[], o: { input?: string } = {}): Promise<string> =>
    netns === undefined ? run("nft", args, o) : runIn(netns, "nft", args, o);
  return {
    read: async () => {
      const text = await nft(["-j", "list", "table", "inet", NFT_TABLE]).catch(() => "");
      return text === "" ? { chains: [], counters: [], counted: [] } : parseStrictTable(text);
    },
    apply: (text) => nft(["-f", "-"], { input: text }),
  };
}

/** The chains and drop counters of `nft -j list table inet podcrypt` output (see {@link nftTool}). */
export function parseStrictTable(text: string): InstalledStrict {
  const doc = JSON.parse(text) as {
    nftables: Array<{
      chain?: { name: string; handle: number };
      counter?: { name: string; packets: number };
    }>;
  };
  const chains: InstalledStrict["chains"] = [];
  const counters: string[] = [];
  const counted: StrictDrop[] = [];
  for (const item of doc.nftables) {
    if (item.chain !== undefined) chains.push({ name: item.chain.name, handle: item.chain.handle });
    const c = item.counter;
    if (c === undefined) continue;
    counters.push(c.name);
    const m = /^(out|in)(?:\.(.+))?$/.exec(c.name);
    if (m !== null)
      counted.push({ peer: m[2] ?? "", direction: m[1] as StrictDirection, packets: c.packets });
  }
  return { chains, counters, counted };
}
