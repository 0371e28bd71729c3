import { cidrContains } from "../../platform/netlink/addr.js";
import { run } from "../../platform/netns/netns.js";
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
    `    ${match}${match === "" ? "" : " "}counter drop comment "${DROP_COMMENT[direction]}"`,
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
      return name === undefined
        ? []
        : [`  chain ${name} {`, `    counter drop comment "${DROP_COMMENT[direction]}"`, "  }"];
    }),
  );
  // Create-then-delete makes the replacement one atomic transaction whether or not the table exists.
  return [
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    ...peerChains,
    ...hostChains,
    ...rules,
    `}`,
    "",
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
  /** Drops counted by tables this reconciler replaced, so the totals never go back (`direction|peer`). */
  private readonly carried = new Map<string, StrictDrop>();
  /** Serializes replacing the table with reading its counters, so no read sees a drop twice or not at all. */
  private lock: Promise<unknown> = Promise.resolve();

  /** `nft` reads the installed table's drop counters and replaces the table (default: the `nft` tool). */
  constructor(
    private readonly nft: { read(): Promise<StrictDrop[]>; apply(text: string): Promise<unknown> } = {
      read: readStrictDrops,
      apply: (text) => run("nft", ["-f", "-"], { input: text }),
    },
  ) {}

  async reconcile(s: DesiredStrict): Promise<boolean> {
    const text = strictRuleset(s);
    if (text === this.applied) return false;
    this.applied = undefined;
    // Replacing the table zeroes its counters: keep what they counted (also a table an earlier
    // agent installed). Drops in the instant between this read and the replacement are not counted.
    await this.locked(async () => {
      const counted = await this.nft.read().catch((): StrictDrop[] => []);
      await this.nft.apply(text);
      this.carry(counted);
    });
    this.applied = text;
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
   * Packets strict mode dropped, per peer and direction, since this reconciler started (and what
   * the table held when it first replaced it): monotonic across table replacements.
   */
  async drops(): Promise<StrictDrop[]> {
    const totals = new Map<string, StrictDrop>();
    const add = (list: Iterable<StrictDrop>): void => {
      for (const d of list) {
        const key = `${d.direction}|${d.peer}`;
        const t = totals.get(key) ?? { peer: d.peer, direction: d.direction, packets: 0 };
        t.packets += d.packets;
        totals.set(key, t);
      }
    };
    await this.locked(async () => {
      add(await this.nft.read().catch((): StrictDrop[] => []));
      add(this.carried.values());
    });
    return [...totals.values()].sort(
      (a, b) => a.peer.localeCompare(b.peer) || a.direction.localeCompare(b.direction),
    );
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  private carry(list: readonly StrictDrop[]): void {
    for (const d of list) {
      const key = `${d.direction}|${d.peer}`;
      const c = this.carried.get(key) ?? { peer: d.peer, direction: d.direction, packets: 0 };
      c.packets += d.packets;
      this.carried.set(key, c);
    }
  }
}

/** Packets strict mode dropped in one direction for one peer (`peer` "" when no peer owns the address). */
export interface StrictDrop {
  peer: string;
  direction: StrictDirection;
  packets: number;
}

/**
 * The strict rules' drop counters as the installed table holds them (counted since the table was
 * last replaced): per peer from the `out.NODE`/`in.NODE` chains, the rest from the shared drop
 * rules of `out` and `in`. Empty when the table is not there.
 */
export async function readStrictDrops(): Promise<StrictDrop[]> {
  const text = await run("nft", ["-j", "list", "table", "inet", NFT_TABLE]).catch(() => "");
  return text === "" ? [] : parseStrictDrops(text);
}

/** The drop counters of `nft -j list table inet podcrypt` output (see {@link readStrictDrops}). */
export function parseStrictDrops(text: string): StrictDrop[] {
  const doc = JSON.parse(text) as {
    nftables: Array<{
      rule?: { chain: string; expr: Array<{ counter?: { packets: number }; drop?: null }> };
    }>;
  };
  const sums = new Map<string, StrictDrop>();
  for (const item of doc.nftables) {
    const r = item.rule;
    // Only drop rules: the select chain's counters count marked packets, not drops.
    if (r === undefined || !r.expr.some((e) => "drop" in e)) continue;
    const packets = r.expr.find((e) => e.counter !== undefined)?.counter?.packets ?? 0;
    // `host-out`/`host-in` (strict host mode) hold the shared drop rules of host traffic.
    const m = /^(?:host-)?(out|in)(?:\.(.+))?$/.exec(r.chain);
    if (m === null) continue;
    const direction = m[1] as StrictDirection;
    const peer = m[2] ?? "";
    const key = `${direction}|${peer}`;
    const d = sums.get(key) ?? { peer, direction, packets: 0 };
    d.packets += packets;
    sums.set(key, d);
  }
  return [...sums.values()];
}
