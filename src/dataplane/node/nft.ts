import { run } from "../../platform/netns/netns.js";
import type { DesiredStrict, SelectorMatch } from "../types.js";

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
 * One nft rule per address family matching `matches` by `side` address and port: `daddr . proto .
 * dport` for traffic to the pods, `saddr . proto . sport` for their replies, each after `prefix`
 * (e.g. an interface match). Empty when none.
 */
function selectorRules(
  matches: readonly SelectorMatch[],
  side: "to" | "from",
  action: string,
  prefix = "",
): string[] {
  const rules: string[] = [];
  for (const family of ["ip", "ip6"] as const) {
    const elements = matches.flatMap((m) =>
      m.podIPs
        .filter((ip) => ip.includes(":") === (family === "ip6"))
        .map((ip) => `${ip} . ${m.protocol} . ${m.port}`),
    );
    if (elements.length === 0) continue;
    const [addr, port] = side === "to" ? ["daddr", "dport"] : ["saddr", "sport"];
    rules.push(
      `    ${prefix}${family} ${addr} . meta l4proto . th ${port} { ${[...new Set(elements)].join(", ")} } ${action}`,
    );
  }
  return rules;
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
 */
export function strictRuleset(s: DesiredStrict): string {
  const set = (cidrs: string[]): string => `{ ${cidrs.join(", ")} }`;
  const v4 = (cidrs: string[]): string[] => cidrs.filter((c) => !c.includes(":"));
  const local = v4(s.localPodCidrs);
  const remote = v4(s.remotePodCidrs);
  const chain = (name: string, hook: string, priority: string, body: string[]): string[] =>
    body.length === 0
      ? []
      : [`  chain ${name} { type filter hook ${hook} priority ${priority}; policy accept;`, ...body, "  }"];
  const rules: string[] = [];
  const sel = s.selection;
  if (sel !== undefined) {
    const mark = `meta mark set meta mark | ${hex(SELECT_MARK)} counter`;
    const byLocal = (l: boolean) => sel.encrypt.filter((m) => m.local === l);
    rules.push(
      ...chain("select", "prerouting", "mangle", [
        ...selectorRules(byLocal(false), "to", mark),
        ...selectorRules(byLocal(true), "from", mark),
      ]),
    );
    if (s.dropOutbound)
      rules.push(
        ...chain("out", "postrouting", "0", [
          `    oifname "${s.underlayIf}" meta mark & ${hex(SELECT_MARK)} != 0 ${NOT_IPSEC} counter drop comment "podcrypt: plaintext out"`,
        ]),
      );
    if (s.dropInbound) {
      const iif = `iifname "${s.underlayIf}" `;
      const drop = `counter drop comment "podcrypt: plaintext in"`;
      const expect = (l: boolean) => sel.expectEncrypted.filter((m) => m.local === l);
      rules.push(
        ...chain("in", "prerouting", "0", [
          ...selectorRules(expect(true), "to", drop, iif),
          ...selectorRules(expect(false), "from", drop, iif),
        ]),
      );
    }
  } else {
    if (s.dropOutbound && local.length > 0 && remote.length > 0) {
      rules.push(
        ...chain("out", "postrouting", "0", [
          `    oifname "${s.underlayIf}" ip saddr ${set(local)} ip daddr ${set(remote)} ${NOT_IPSEC} counter drop comment "podcrypt: plaintext out"`,
        ]),
      );
    }
    if (s.dropInbound && local.length > 0 && remote.length > 0) {
      rules.push(
        ...chain("in", "prerouting", "0", [
          `    iifname "${s.underlayIf}" ip saddr ${set(remote)} ip daddr ${set(local)} counter drop comment "podcrypt: plaintext in"`,
        ]),
      );
    }
  }
  // Create-then-delete makes the replacement one atomic transaction whether or not the table exists.
  return [
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    ...rules,
    `}`,
    "",
  ].join("\n");
}

/** Applies the strict ruleset atomically (`nft -f`), skipping it when unchanged since the last call. */
export class StrictReconciler {
  private applied: string | undefined;
  private current: DesiredStrict | undefined;

  async reconcile(s: DesiredStrict): Promise<boolean> {
    const text = strictRuleset(s);
    if (text === this.applied) return false;
    this.applied = undefined;
    await run("nft", ["-f", "-"], { input: text });
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
    return this.reconcile({
      ...s,
      dropOutbound: s.dropOutbound && cur.dropOutbound,
      dropInbound: s.dropInbound && cur.dropInbound,
    });
  }

  /** Forces a full re-apply on the next pass (after a failure elsewhere). */
  invalidate(): void {
    this.applied = undefined;
  }
}

/** Drop counters of the strict rules: packets each rule dropped. */
export async function strictCounters(): Promise<{ out: number; in: number }> {
  const out = await run("nft", ["-j", "list", "table", "inet", NFT_TABLE]).catch(() => "");
  const res = { out: 0, in: 0 };
  if (out === "") return res;
  const doc = JSON.parse(out) as {
    nftables: Array<{ rule?: { chain: string; expr: Array<{ counter?: { packets: number } }> } }>;
  };
  for (const item of doc.nftables) {
    const r = item.rule;
    if (r === undefined) continue;
    const packets = r.expr.find((e) => e.counter !== undefined)?.counter?.packets ?? 0;
    if (r.chain === "out") res.out += packets;
    if (r.chain === "in") res.in += packets;
  }
  return res;
}
