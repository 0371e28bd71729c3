import { run } from "../../platform/netns/netns.js";
import type { DesiredStrict } from "../types.js";

/** nftables table that holds podcrypt's fail-closed rules. */
export const NFT_TABLE = "podcrypt";

/**
 * The ruleset of DESIGN.md section 4 as nft text. Pod traffic between this node and the others
 * may cross the underlay only inside the tunnel (whose packets are UDP between node addresses,
 * so they never match): anything else matching the pod CIDRs on the underlay interface is
 * dropped and counted.
 */
export function strictRuleset(s: DesiredStrict): string {
  const set = (cidrs: string[]): string => `{ ${cidrs.join(", ")} }`;
  const v4 = (cidrs: string[]): string[] => cidrs.filter((c) => !c.includes(":"));
  const local = v4(s.localPodCidrs);
  const remote = v4(s.remotePodCidrs);
  const rules: string[] = [];
  if (s.dropOutbound && local.length > 0 && remote.length > 0) {
    rules.push(
      `  chain out { type filter hook postrouting priority 0; policy accept;`,
      `    oifname "${s.underlayIf}" ip saddr ${set(local)} ip daddr ${set(remote)} counter drop comment "podcrypt: plaintext out"`,
      "  }",
    );
  }
  if (s.dropInbound && local.length > 0 && remote.length > 0) {
    rules.push(
      `  chain in { type filter hook prerouting priority 0; policy accept;`,
      `    iifname "${s.underlayIf}" ip saddr ${set(remote)} ip daddr ${set(local)} counter drop comment "podcrypt: plaintext in"`,
      "  }",
    );
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
