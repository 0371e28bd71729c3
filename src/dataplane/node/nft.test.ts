import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DesiredStrict } from "../types.js";
import {
  parseStrictTable,
  SELECT_MARK,
  StrictReconciler,
  strictReplacement,
  strictRuleset,
  type InstalledStrict,
} from "./nft.js";

const base: DesiredStrict = {
  dropOutbound: true,
  dropInbound: true,
  underlayIf: "eth0",
  localPodCidrs: ["10.244.1.0/24"],
  remotePodCidrs: ["10.244.2.0/24", "10.244.3.0/24"],
};

const ruleLines = (text: string): string[] =>
  text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^(ip|ip6|oifname|iifname) /.test(l));

describe("strictRuleset", () => {
  it("replaces the table's rules and chains in one transaction, adds the counters missing, keeps the rest", () => {
    const table = strictRuleset({ ...base, peers: [{ node: "node-b", podCidrs: ["10.244.2.0/24"] }] });
    assert.match(table, /^table inet podcrypt \{\n/);
    const installed = {
      chains: [
        { name: "out", handle: 4 },
        { name: "out.node-b", handle: 7 },
      ],
      counters: ["out", "out.node-b", "out.node-gone"],
    };
    assert.equal(
      strictReplacement(table, installed),
      [
        "table inet podcrypt {}",
        "flush table inet podcrypt",
        "delete chain inet podcrypt handle 4",
        "delete chain inet podcrypt handle 7",
        "add counter inet podcrypt in",
        "add counter inet podcrypt in.node-b",
        table,
      ].join("\n"),
    );
    // Nothing in it deletes the table or a counter: the counters keep what they counted.
    assert.doesNotMatch(strictReplacement(table, installed), /delete (table|counter)/);
  });

  it("encrypting all traffic: drops pod-to-pod plaintext on the underlay both ways", () => {
    assert.deepEqual(ruleLines(strictRuleset(base)), [
      'oifname "eth0" ip saddr { 10.244.1.0/24 } ip daddr { 10.244.2.0/24, 10.244.3.0/24 } rt ipsec missing counter name "out" drop comment "podcrypt: plaintext out"',
      'iifname "eth0" ip saddr { 10.244.2.0/24, 10.244.3.0/24 } ip daddr { 10.244.1.0/24 } counter name "in" drop comment "podcrypt: plaintext in"',
    ]);
    assert.deepEqual(ruleLines(strictRuleset({ ...base, dropOutbound: false, dropInbound: false })), []);
  });

  it("dual-stack pods: drops plaintext of both families both ways, each family against its own", () => {
    const text = strictRuleset({
      ...base,
      localPodCidrs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
      remotePodCidrs: ["10.244.2.0/24", "fd00:10:244:2::/64"],
    });
    assert.deepEqual(ruleLines(text), [
      'oifname "eth0" ip saddr { 10.244.1.0/24 } ip daddr { 10.244.2.0/24 } rt ipsec missing counter name "out" drop comment "podcrypt: plaintext out"',
      'oifname "eth0" ip6 saddr { fd00:10:244:1::/64 } ip6 daddr { fd00:10:244:2::/64 } rt ipsec missing counter name "out" drop comment "podcrypt: plaintext out"',
      'iifname "eth0" ip saddr { 10.244.2.0/24 } ip daddr { 10.244.1.0/24 } counter name "in" drop comment "podcrypt: plaintext in"',
      'iifname "eth0" ip6 saddr { fd00:10:244:2::/64 } ip6 daddr { fd00:10:244:1::/64 } counter name "in" drop comment "podcrypt: plaintext in"',
    ]);
    // IPv6-only pods are guarded as well (before, only IPv4 CIDRs made rules).
    const v6only = strictRuleset({
      ...base,
      localPodCidrs: ["fd00:10:244:1::/64"],
      remotePodCidrs: ["fd00:10:244:2::/64"],
    });
    assert.equal(ruleLines(v6only).length, 2);
    assert.ok(ruleLines(v6only).every((l) => l.includes("ip6 saddr")));
  });

  it("selective: marks selected traffic both ways, drops it in plaintext, per address family", () => {
    const text = strictRuleset({
      ...base,
      selection: {
        encrypt: [
          { protocol: "udp", port: 53, podIPs: ["10.244.2.5", "fd00::5"], local: false },
          { protocol: "tcp", port: 80, podIPs: ["10.244.1.7"], local: true },
        ],
        expectEncrypted: [{ protocol: "udp", port: 53, podIPs: ["10.244.2.5"], local: false }],
      },
    });
    const mark = `meta mark set meta mark | 0x${SELECT_MARK.toString(16).padStart(8, "0")} counter`;
    assert.deepEqual(ruleLines(text), [
      `ip daddr . meta l4proto . th dport { 10.244.2.5 . udp . 53 } ${mark}`,
      `ip6 daddr . meta l4proto . th dport { fd00::5 . udp . 53 } ${mark}`,
      `ip saddr . meta l4proto . th sport { 10.244.1.7 . tcp . 80 } ${mark}`,
      'oifname "eth0" meta mark & 0x00100000 != 0 rt ipsec missing counter name "out" drop comment "podcrypt: plaintext out"',
      'iifname "eth0" ip saddr . meta l4proto . th sport { 10.244.2.5 . udp . 53 } counter name "in" drop comment "podcrypt: plaintext in"',
    ]);
    assert.match(text, /chain select \{ type filter hook prerouting priority mangle;/);
  });

  it("selective: the node's own sources (the probe endpoint) are marked on output, to remote selected pods only", () => {
    const text = strictRuleset({
      ...base,
      dropOutbound: false,
      dropInbound: false,
      selection: {
        encrypt: [
          { protocol: "udp", port: 53, podIPs: ["10.244.2.5", "fd00::5"], local: false },
          { protocol: "tcp", port: 80, podIPs: ["10.244.1.7"], local: true },
        ],
        expectEncrypted: [],
        localSources: ["10.244.1.1"],
      },
    });
    const mark = `meta mark set meta mark | 0x${SELECT_MARK.toString(16).padStart(8, "0")} counter`;
    assert.deepEqual(ruleLines(text), [
      `ip daddr . meta l4proto . th dport { 10.244.2.5 . udp . 53 } ${mark}`,
      `ip6 daddr . meta l4proto . th dport { fd00::5 . udp . 53 } ${mark}`,
      `ip saddr . meta l4proto . th sport { 10.244.1.7 . tcp . 80 } ${mark}`,
      `ip saddr { 10.244.1.1 } ip daddr . meta l4proto . th dport { 10.244.2.5 . udp . 53 } ${mark}`,
    ]);
    // A route chain: the mark re-routes the packet into the selected table.
    assert.match(text, /chain select-local \{ type route hook output priority mangle;/);
    const none = strictRuleset({
      ...base,
      selection: { encrypt: [], expectEncrypted: [], localSources: ["10.244.1.1"] },
    });
    assert.doesNotMatch(none, /select-local/);
  });

  it("selective with nothing selected: no marks, no drops of pod traffic", () => {
    const text = strictRuleset({ ...base, selection: { encrypt: [], expectEncrypted: [] } });
    assert.deepEqual(
      ruleLines(text).filter((l) => !l.startsWith("oifname")),
      [],
    );
  });
});

describe("strict drops per peer", () => {
  const peers = [
    { node: "node-b", podCidrs: ["10.244.2.0/24", "fd00:2::/64"] },
    { node: "node-c", podCidrs: ["10.244.3.0/24"] },
  ];

  it("sends each drop through its peer's counting chain, the rest to the shared drop rule", () => {
    const text = strictRuleset({ ...base, peers });
    const out =
      'oifname "eth0" ip saddr { 10.244.1.0/24 } ip daddr { 10.244.2.0/24, 10.244.3.0/24 } rt ipsec missing';
    const inn = 'iifname "eth0" ip saddr { 10.244.2.0/24, 10.244.3.0/24 } ip daddr { 10.244.1.0/24 }';
    assert.deepEqual(ruleLines(text), [
      `${out} ip daddr vmap { 10.244.2.0/24 : goto out.node-b, 10.244.3.0/24 : goto out.node-c }`,
      `${out} counter name "out" drop comment "podcrypt: plaintext out"`,
      `${inn} ip saddr vmap { 10.244.2.0/24 : goto in.node-b, 10.244.3.0/24 : goto in.node-c }`,
      `${inn} counter name "in" drop comment "podcrypt: plaintext in"`,
    ]);
    for (const chain of ["out.node-b", "out.node-c", "in.node-b", "in.node-c"])
      assert.match(
        text,
        new RegExp(`chain ${chain.replace(".", "\\.")} \\{\\n    counter name "${chain}" drop comment`),
      );
    // No drops, no counting chains.
    assert.doesNotMatch(
      strictRuleset({ ...base, peers, dropOutbound: false, dropInbound: false }),
      /chain out\./,
    );
  });

  it("leaves a CIDR overlapping another peer's to the shared rule (nft refuses overlapping intervals)", () => {
    const text = strictRuleset({
      ...base,
      peers: [...peers, { node: "node-d", podCidrs: ["10.244.2.128/25", "10.244.4.0/24"] }],
    });
    assert.match(
      text,
      /ip daddr vmap \{ 10\.244\.2\.0\/24 : goto out\.node-b, 10\.244\.3\.0\/24 : goto out\.node-c, 10\.244\.4\.0\/24 : goto out\.node-d \}/,
    );
  });

  it("selective: dispatches per address family on the remote pod address", () => {
    const text = strictRuleset({
      ...base,
      peers,
      selection: {
        encrypt: [{ protocol: "udp", port: 53, podIPs: ["10.244.2.5"], local: false }],
        expectEncrypted: [{ protocol: "udp", port: 53, podIPs: ["10.244.2.5", "fd00:2::5"], local: false }],
      },
    });
    const lines = ruleLines(text);
    assert.ok(
      lines.includes(
        'oifname "eth0" meta mark & 0x00100000 != 0 rt ipsec missing ip6 daddr vmap { fd00:2::/64 : goto out.node-b }',
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.includes(
        'iifname "eth0" ip6 saddr . meta l4proto . th sport { fd00:2::5 . udp . 53 } ip6 saddr vmap { fd00:2::/64 : goto in.node-b }',
      ),
      lines.join("\n"),
    );
  });

  it("reads the table's chains and its named drop counters from nft's JSON", () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: "1.0.6" } },
        { table: { family: "inet", name: "podcrypt", handle: 2 } },
        {
          counter: {
            family: "inet",
            table: "podcrypt",
            name: "out.node-b",
            handle: 3,
            packets: 7,
            bytes: 700,
          },
        },
        {
          counter: {
            family: "inet",
            table: "podcrypt",
            name: "in.node-b",
            handle: 4,
            packets: 2,
            bytes: 200,
          },
        },
        { counter: { family: "inet", table: "podcrypt", name: "out", handle: 5, packets: 1, bytes: 100 } },
        { chain: { family: "inet", table: "podcrypt", name: "out.node-b", handle: 6 } },
        { chain: { family: "inet", table: "podcrypt", name: "select", handle: 8, hook: "prerouting" } },
        {
          rule: {
            family: "inet",
            table: "podcrypt",
            chain: "out.node-b",
            handle: 9,
            expr: [{ counter: "out.node-b" }, { drop: null }],
          },
        },
      ],
    });
    assert.deepEqual(parseStrictTable(json), {
      chains: [
        { name: "out.node-b", handle: 6 },
        { name: "select", handle: 8 },
      ],
      counters: ["out.node-b", "in.node-b", "out"],
      counted: [
        { peer: "node-b", direction: "out", packets: 7 },
        { peer: "node-b", direction: "in", packets: 2 },
        { peer: "", direction: "out", packets: 1 },
      ],
    });
  });

  it("replaces the table it reads, only when the ruleset changed or a pass failed; reports its counters", async () => {
    const installed: InstalledStrict = {
      chains: [{ name: "out", handle: 11 }],
      counters: ["out.node-c", "in.node-b"],
      counted: [
        { peer: "node-c", direction: "out", packets: 3 },
        { peer: "node-b", direction: "in", packets: 5 },
      ],
    };
    const applied: string[] = [];
    const r = new StrictReconciler({ read: async () => installed, apply: async (t) => void applied.push(t) });
    assert.equal(await r.reconcile({ ...base, peers }), true);
    assert.equal(applied.length, 1);
    // The table as read goes into the replacement: its chains deleted, its counters kept.
    assert.equal(applied[0], strictReplacement(strictRuleset({ ...base, peers }), installed));
    assert.match(applied[0]!, /\ndelete chain inet podcrypt handle 11\nadd counter inet podcrypt in\n/);
    assert.equal(await r.reconcile({ ...base, peers }), false, "unchanged: not re-applied");
    r.invalidate();
    assert.equal(await r.reconcile({ ...base, peers }), true, "after a failure: re-applied");
    assert.deepEqual(await r.drops(), [
      { peer: "node-b", direction: "in", packets: 5 },
      { peer: "node-c", direction: "out", packets: 3 },
    ]);
  });
});

describe("strict host mode", () => {
  const peers = [
    { node: "node-b", podCidrs: ["10.244.2.0/24"] },
    { node: "node-c", podCidrs: ["10.244.3.0/24"] },
  ];
  const host = {
    dropOutbound: true,
    dropInbound: true,
    peers: [
      { node: "node-b", addresses: ["172.30.0.12/32", "fd30::12/128"] },
      { node: "node-c", addresses: ["172.30.0.13/32"] },
    ],
    exclude: [
      { protocol: "udp" as const, dport: 51820 },
      { protocol: "tcp" as const, dport: 2379 },
      { to: "10.9.0.0/16" },
    ],
  };
  const chainBody = (text: string, name: string): string[] => {
    const start = text.indexOf(`  chain ${name} {`);
    assert.notEqual(start, -1, `chain ${name}`);
    return text
      .slice(start)
      .split("\n")
      .slice(1, text.slice(start).split("\n").indexOf("  }"))
      .map((l) => l.trim());
  };

  it("sends plaintext to and from the peers' host addresses, of both families, through chains that let the exclusions pass", () => {
    const text = strictRuleset({ ...base, peers, host });
    assert.deepEqual(
      ruleLines(text).filter((l) => l.includes("jump host-")),
      [
        'oifname "eth0" ip daddr { 172.30.0.12/32, 172.30.0.13/32 } rt ipsec missing jump host-out',
        'oifname "eth0" ip6 daddr { fd30::12/128 } rt ipsec missing jump host-out',
        'iifname "eth0" ip saddr { 172.30.0.12/32, 172.30.0.13/32 } jump host-in',
        'iifname "eth0" ip6 saddr { fd30::12/128 } jump host-in',
      ],
    );
    const passes = [
      // Each exclusion as written and mirrored (the answer to it), in both directions.
      "meta l4proto udp th dport 51820 return",
      "meta l4proto udp th sport 51820 return",
      "meta l4proto tcp th dport 2379 return",
      "meta l4proto tcp th sport 2379 return",
      "ip daddr 10.9.0.0/16 return",
      "ip saddr 10.9.0.0/16 return",
      "meta l4proto esp return",
      "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } return",
    ];
    assert.deepEqual(chainBody(text, "host-out"), [
      ...passes,
      "ip daddr vmap { 172.30.0.12/32 : goto out.node-b, 172.30.0.13/32 : goto out.node-c }",
      "ip6 daddr vmap { fd30::12/128 : goto out.node-b }",
      'counter name "out" drop comment "podcrypt: plaintext out"',
    ]);
    assert.deepEqual(chainBody(text, "host-in"), [
      ...passes,
      "ip saddr vmap { 172.30.0.12/32 : goto in.node-b, 172.30.0.13/32 : goto in.node-c }",
      "ip6 saddr vmap { fd30::12/128 : goto in.node-b }",
      'counter name "in" drop comment "podcrypt: plaintext in"',
    ]);
  });

  it("drops host traffic in the directions it is told, whatever the pods' drops; no peers known, nothing guarded", () => {
    const off = strictRuleset({ ...base, peers, host: { ...host, dropOutbound: false, dropInbound: false } });
    assert.doesNotMatch(off, /host-(out|in)/);
    const inOnly = strictRuleset({ ...base, peers, host: { ...host, dropOutbound: false } });
    assert.doesNotMatch(inOnly, /host-out/);
    assert.match(inOnly, /jump host-in/);
    const hostOnly = strictRuleset({ ...base, peers, dropOutbound: false, dropInbound: false, host });
    assert.deepEqual(
      ruleLines(hostOnly)
        .filter((l) => l.includes("jump"))
        .map((l) => l.replace(/ \{.*\}/, "")),
      [
        'oifname "eth0" ip daddr rt ipsec missing jump host-out',
        'oifname "eth0" ip6 daddr rt ipsec missing jump host-out',
        'iifname "eth0" ip saddr jump host-in',
        'iifname "eth0" ip6 saddr jump host-in',
      ],
    );
    assert.doesNotMatch(strictRuleset({ ...base, host: { ...host, peers: [] } }), /host-/);
  });

  it("relax keeps strict host mode off until the pass that routes host traffic, and lifts it at once", async () => {
    const applied: string[] = [];
    const r = new StrictReconciler({
      read: async () => ({ chains: [], counters: [], counted: [] }),
      apply: async (t) => void applied.push(t),
    });
    await r.reconcile({ ...base, peers });
    await r.relax({ ...base, peers, host });
    assert.doesNotMatch(applied.at(-1)!, /host-(out|in)/, "coming on: not before the routes move");
    await r.reconcile({ ...base, peers, host });
    assert.match(applied.at(-1)!, /jump host-out/);
    await r.relax({ ...base, peers, host: { ...host, dropInbound: false } });
    assert.doesNotMatch(applied.at(-1)!, /host-in/, "inbound going off: at once");
    assert.match(applied.at(-1)!, /jump host-out/);
    await r.relax({ ...base, peers });
    assert.doesNotMatch(applied.at(-1)!, /host-out/, "going off: at once");
  });
});
