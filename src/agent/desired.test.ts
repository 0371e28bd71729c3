import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DesiredPeer, ObservedPeer } from "../dataplane/types.js";
import { parseResource, type ClusterEncryption, type Node, type Phase } from "../model/index.js";
import {
  catchUpAcknowledgement,
  DesiredMemo,
  desiredState,
  epochsNeeded,
  generationsFor,
  hostFor,
  strictHostFor,
  readyToAcknowledge,
  sessionsFrom,
  strictFor,
  type AgentSettings,
} from "./desired.js";

const SETTINGS: AgentSettings = {
  node: "node-1",
  ifPrefix: "podcrypt",
  wireguardPort: 51820,
  underlayIf: "eth0",
  mtu: 1420,
};

const KEY = (c: string): string => Buffer.alloc(32, c).toString("base64");
/** Every session up / none up. */
const ALL_UP = (): boolean => true;
const NONE_UP = (): boolean => false;

function node(
  i: number,
  keys: Record<string, string>,
  saInstance: string | null = `${i}`.padStart(32, "0"),
): Node {
  return parseResource("nodes", {
    name: `node-${i}`,
    underlay: { ipv4: `172.30.0.${10 + i}` },
    podCIDRs: [`10.244.${i}.0/24`],
    publicKeys: keys,
    ...(saInstance === null ? {} : { saInstance }),
  });
}

/** A cluster in `phase` of the run from `from` (epoch 4) to `to` (epoch 5). */
function cluster(
  phase: Phase,
  from: { enabled: boolean; mode?: "wireguard" | "ipsec" },
  to: { enabled: boolean; mode?: "wireguard" | "ipsec" } = from,
): ClusterEncryption {
  const at = "2026-12-01T00:00:00.000Z";
  return parseResource("clusterencryptions", {
    name: "default",
    enabled: to.enabled,
    mode: to.mode ?? "wireguard",
    applied: { enabled: from.enabled, mode: from.mode ?? "wireguard" },
    epoch: 4,
    phase,
    lastCompletedAt: at,
    ...(phase === "idle"
      ? {}
      : {
          target: { epoch: 5, enabled: to.enabled, mode: to.mode ?? "wireguard" },
          phaseStartedAt: { prepare: at },
        }),
  });
}

const ON = { enabled: true };
const OFF = { enabled: false };

describe("generationsFor: what a node holds and sends with in each phase", () => {
  const cases: Array<[string, ClusterEncryption, number[], number | undefined]> = [
    ["idle, on", cluster("idle", ON), [4], 4],
    ["idle, off", cluster("idle", OFF), [], undefined],
    ["rotation prepare: both, sending old", cluster("prepare", ON), [4, 5], 4],
    ["rotation switch: both, sending new", cluster("switch", ON), [4, 5], 5],
    ["rotation retire: new only", cluster("retire", ON), [5], 5],
    ["enable prepare: new, sending plaintext", cluster("prepare", OFF, ON), [5], undefined],
    ["enable switch: new, sending it", cluster("switch", OFF, ON), [5], 5],
    ["disable switch: old kept, sending plaintext", cluster("switch", ON, OFF), [4], undefined],
    ["disable retire: nothing", cluster("retire", ON, OFF), [], undefined],
  ];
  for (const [name, c, installed, sending] of cases) {
    it(name, () => {
      const g = generationsFor(c);
      assert.deepEqual(
        g.installed.map((x) => x.epoch),
        installed,
      );
      assert.equal(g.sending?.epoch, sending);
    });
  }
});

describe("strictFor: plaintext is dropped exactly when no node may send it", () => {
  const cases: Array<[string, ClusterEncryption, boolean, boolean]> = [
    ["idle on", cluster("idle", ON), true, true],
    ["idle off", cluster("idle", OFF), false, false],
    ["enable prepare: still plaintext both ways", cluster("prepare", OFF, ON), false, false],
    // This node sends encrypted; peers that have not switched yet may still send plaintext.
    ["enable switch", cluster("switch", OFF, ON), true, false],
    ["enable retire", cluster("retire", OFF, ON), true, true],
    ["disable prepare: receive plaintext from now on", cluster("prepare", ON, OFF), true, false],
    ["disable switch", cluster("switch", ON, OFF), false, false],
    ["rotation switch", cluster("switch", ON), true, true],
  ];
  for (const [name, c, out, inb] of cases) {
    it(name, () => assert.deepEqual(strictFor(c), { dropOutbound: out, dropInbound: inb }));
  }
  it("nothing is dropped when strict mode is off", () => {
    assert.deepEqual(strictFor({ ...cluster("idle", ON), strict: false }), {
      dropOutbound: false,
      dropInbound: false,
    });
  });
});

describe("desiredState", () => {
  const nodes = [
    node(1, { "4": KEY("a"), "5": KEY("b") }),
    node(2, { "4": KEY("c"), "5": KEY("d") }),
    node(3, { "4": KEY("e") }), // has not published epoch 5 yet
  ];

  it("routes through the sending generation, falling back to one that knows the peer", () => {
    const d = desiredState(SETTINGS, cluster("switch", ON), nodes, ALL_UP);
    assert.deepEqual(
      d.generations.map((g) => [g.epoch, g.ifname, g.listenPort, g.peers.map((p) => p.node)]),
      [
        [4, "podcrypt0", 51820, ["node-2", "node-3"]],
        [5, "podcrypt1", 51821, ["node-2"]],
      ],
    );
    assert.deepEqual(d.routes, [
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt1" },
      { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0" },
    ]);
    assert.deepEqual(d.strict.localPodCidrs, ["10.244.1.0/24"]);
    assert.deepEqual(d.strict.remotePodCidrs, ["10.244.2.0/24", "10.244.3.0/24"]);
  });

  it("blackholes a peer no generation knows, and routes in plaintext when off", () => {
    const retire = desiredState(SETTINGS, cluster("retire", ON), nodes, ALL_UP);
    assert.deepEqual(retire.routes[1], { dst: "10.244.3.0/24", kind: "blackhole" });
    const off = desiredState(SETTINGS, cluster("idle", OFF), nodes, ALL_UP);
    assert.deepEqual(off.generations, []);
    assert.deepEqual(off.routes[0], { dst: "10.244.2.0/24", kind: "plain", via: "172.30.0.12", dev: "eth0" });
  });

  it("dual-stack: both families' pod CIDRs routed; plaintext next hop of the CIDR's own family", () => {
    const dual = (i: number, underlay: { ipv4?: string; ipv6?: string }): Node =>
      parseResource("nodes", {
        name: `node-${i}`,
        underlay,
        podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
        publicKeys: { "4": KEY(String(i)) },
      });
    const both = [
      dual(1, { ipv4: "172.30.0.11", ipv6: "fd30::b" }),
      dual(2, { ipv4: "172.30.0.12", ipv6: "fd30::c" }),
      dual(3, { ipv6: "fd30::d" }),
      dual(4, { ipv4: "172.30.0.14" }),
    ];
    const on = desiredState(SETTINGS, cluster("idle", ON), both, ALL_UP);
    assert.deepEqual(
      on.routes.map((r) => `${r.dst} ${r.kind}`),
      both.slice(1).flatMap((n, i) => [`10.244.${i + 2}.0/24 tunnel`, `fd00:10:244:${i + 2}::/64 tunnel`]),
    );
    // The tunnel endpoint is the IPv4 address where there is one, else the IPv6 one.
    assert.deepEqual(
      on.generations[0]!.peers.map((p) => p.endpoint.address),
      ["172.30.0.12", "fd30::d", "172.30.0.14"],
    );
    // A node with only an IPv6 underlay address reaches its peers at their IPv6 addresses.
    const from3 = desiredState({ ...SETTINGS, node: "node-3" }, cluster("idle", ON), both, ALL_UP);
    assert.deepEqual(
      from3.generations[0]!.peers.map((p) => p.endpoint.address),
      ["fd30::b", "fd30::c", "172.30.0.14"],
    );
    const off = desiredState(SETTINGS, cluster("idle", OFF), both, ALL_UP);
    assert.deepEqual(
      off.routes.map((r) => (r.kind === "plain" ? `${r.dst} via ${r.via}` : `${r.dst} ${r.kind}`)),
      [
        "10.244.2.0/24 via 172.30.0.12",
        "fd00:10:244:2::/64 via fd30::c",
        // IPv4 pods over an IPv6-only underlay: an IPv6 next hop.
        "10.244.3.0/24 via fd30::d",
        "fd00:10:244:3::/64 via fd30::d",
        // IPv6 pods of a node without an IPv6 address: no plaintext route at all.
        "10.244.4.0/24 via 172.30.0.14",
      ],
    );
  });

  it("IPsec: a peer without an SA instance is in no ipsec generation (blackholed); WireGuard needs none", () => {
    const memo = new DesiredMemo();
    const without = [node(1, { "4": KEY("a") }), node(2, { "4": KEY("c") }, null)];
    const ipsec = desiredState(
      SETTINGS,
      cluster("idle", { enabled: true, mode: "ipsec" }),
      without,
      ALL_UP,
      undefined,
      memo,
    );
    assert.deepEqual(ipsec.generations[0]?.peers, []);
    assert.deepEqual(ipsec.routes, [{ dst: "10.244.2.0/24", kind: "blackhole" }]);
    assert.equal(ipsec.saInstance, "1".padStart(32, "0"), "this node's published instance");
    const wg = desiredState(SETTINGS, cluster("idle", ON), without, ALL_UP);
    assert.deepEqual(
      wg.generations[0]?.peers.map((p) => p.node),
      ["node-2"],
    );
    // Its instance published: in the generation with it (the memo notices the change).
    const withIt = [without[0]!, node(2, { "4": KEY("c") }, "ab".repeat(16))];
    const later = desiredState(
      SETTINGS,
      cluster("idle", { enabled: true, mode: "ipsec" }),
      withIt,
      ALL_UP,
      undefined,
      memo,
    );
    assert.equal(later.generations[0]?.peers[0]?.saInstance, "ab".repeat(16));
  });

  it("the memo: an unchanged peer's entries, routes and strict entry are the last pass's objects; a change makes new ones", () => {
    const memo = new DesiredMemo();
    const nodes = [node(1, { "4": KEY("a"), "5": KEY("b") }), node(2, { "4": KEY("c"), "5": KEY("d") })];
    const strict = { ...cluster("switch", ON), strict: true };
    const pass = (ns: Node[], c = strict, up = ALL_UP) => desiredState(SETTINGS, c, ns, up, undefined, memo);
    const first = pass(nodes);
    // A heartbeat's new version of the peer's record, same address, CIDRs and keys.
    const again = pass([
      nodes[0]!,
      parseResource("nodes", { ...nodes[1]!, status: { errors: [], mtu: 1400 } }),
    ]);
    for (const gi of [0, 1]) assert.equal(again.generations[gi]!.peers[0], first.generations[gi]!.peers[0]);
    assert.equal(again.routes[0], first.routes[0]);
    assert.deepEqual(first.strict.peers?.[0], { node: "node-2", podCidrs: ["10.244.2.0/24"] });
    assert.equal(again.strict.peers?.[0], first.strict.peers?.[0]);
    assert.deepEqual(again, first);
    // The session not up: the route moves back to the older generation, a route of another shape.
    const back = pass(nodes, strict, NONE_UP);
    assert.deepEqual(back.routes, [{ dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt0" }]);
    assert.equal(pass(nodes).routes[0], first.routes[0], "each shape's routes are kept");
    // Host encryption on: entries with the host address, then off again.
    const host = pass(nodes, { ...strict, hostEncryption: true });
    assert.deepEqual(host.generations[1]!.peers[0]!.allowedIps, ["10.244.2.0/24", "172.30.0.12/32"]);
    assert.deepEqual(pass(nodes).generations[1]!.peers[0]!.allowedIps, ["10.244.2.0/24"]);
    // A new address: new entries and a new strict entry.
    const moved = parseResource("nodes", { ...nodes[1]!, underlay: { ipv4: "172.30.0.99" } });
    const after = pass([nodes[0]!, moved]);
    assert.notEqual(after.strict.peers?.[0], first.strict.peers?.[0]);
    assert.equal(after.generations[1]!.peers[0]!.endpoint.address, "172.30.0.99");
  });

  it("the memo over many rotations: each rotation's entries are made once and kept while asked for", () => {
    const memo = new DesiredMemo();
    const keyOf = (epoch: number): string => KEY(String.fromCharCode(97 + (epoch % 26)));
    let previous: DesiredPeer | undefined;
    for (let epoch = 4; epoch < 40; epoch++) {
      const keys = { [epoch]: keyOf(epoch), [epoch + 1]: keyOf(epoch + 1) };
      const ns = [node(1, keys), node(2, keys)];
      const c = {
        ...cluster("prepare", ON),
        epoch,
        target: { epoch: epoch + 1, enabled: true, mode: "wireguard" as const },
      };
      const first = desiredState(SETTINGS, c, ns, ALL_UP, undefined, memo);
      const again = desiredState(SETTINGS, c, [ns[0]!, node(2, { ...keys })], ALL_UP, undefined, memo);
      assert.deepEqual(
        first.generations.map((g) => g.epoch),
        [epoch, epoch + 1],
      );
      assert.equal(again.generations[1]!.peers[0], first.generations[1]!.peers[0]);
      assert.equal(first.generations[1]!.peers[0]!.publicKey, keys[epoch + 1]);
      // The entry made as the next epoch in the rotation before is the current one's now.
      if (previous !== undefined) assert.equal(first.generations[0]!.peers[0], previous);
      previous = first.generations[1]!.peers[0];
    }
  });
});

describe("desiredState, host encryption", () => {
  const nodes = [
    node(1, { "4": KEY("a"), "5": KEY("b") }),
    node(2, { "4": KEY("c"), "5": KEY("d") }),
    node(3, { "4": KEY("e") }), // has not published epoch 5 yet
  ];
  const host = (c: ClusterEncryption): ClusterEncryption => ({ ...c, hostEncryption: true });
  const settings: AgentSettings = { ...SETTINGS, hostExclude: [{ protocol: "tcp", dport: 2379 }] };

  it("off (the default): no host address in any tunnel, no host route, no host rules", () => {
    const d = desiredState(settings, cluster("idle", ON), nodes, ALL_UP);
    assert.equal(d.host, undefined);
    assert.ok(d.routes.every((r) => r.table === undefined && !("src" in r)));
    for (const g of d.generations)
      for (const p of g.peers) assert.ok(!p.allowedIps.some((ip) => ip.startsWith("172.30.")));
  });

  it("on: every peer's host address is an allowed IP of its tunnel, routed in the host table through the generation that carries its pods", () => {
    const d = desiredState(settings, host(cluster("switch", ON)), nodes, ALL_UP);
    assert.deepEqual(
      d.generations.map((g) => g.peers.map((p) => [p.node, p.allowedIps])),
      [
        [
          ["node-2", ["10.244.2.0/24", "172.30.0.12/32"]],
          ["node-3", ["10.244.3.0/24", "172.30.0.13/32"]],
        ],
        [["node-2", ["10.244.2.0/24", "172.30.0.12/32"]]],
      ],
    );
    // The node's own packets to other nodes' pods leave from its host address, which the peers accept.
    assert.deepEqual(d.routes, [
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt1", src: "172.30.0.11" },
      { dst: "172.30.0.12/32", kind: "tunnel", dev: "podcrypt1", src: "172.30.0.11", table: "host" },
      { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11" },
      { dst: "172.30.0.13/32", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11", table: "host" },
    ]);
  });

  it("on: the tunnels' own UDP ports (both WireGuard slots, every peer's port, ESP in UDP) and the agent's exclusions stay outside", () => {
    const d = desiredState({ ...settings, wireguardPort: 40000 }, host(cluster("idle", ON)), nodes, ALL_UP);
    assert.deepEqual(d.host?.exclude, [
      { protocol: "udp", dport: 4500 },
      { protocol: "udp", sport: 4500 },
      { protocol: "udp", dport: 40000 },
      { protocol: "udp", sport: 40000 },
      { protocol: "udp", dport: 40001 },
      { protocol: "udp", sport: 40001 },
      { protocol: "udp", dport: 9 },
      { protocol: "tcp", dport: 2379 },
    ]);
  });

  it("a peer with no tunnel yet, and encryption not sending (enable prepare), keep host traffic in plaintext: strict mode does not cover it", () => {
    const retire = desiredState(settings, host(cluster("retire", ON)), nodes, ALL_UP);
    assert.deepEqual(
      retire.routes.filter((r) => r.dst.startsWith("172.30.")),
      [{ dst: "172.30.0.12/32", kind: "tunnel", dev: "podcrypt1", src: "172.30.0.11", table: "host" }],
    );
    assert.deepEqual(retire.routes[2], { dst: "10.244.3.0/24", kind: "blackhole" });
    const prepare = desiredState(settings, host(cluster("prepare", OFF, ON)), nodes, ALL_UP);
    assert.deepEqual(
      prepare.routes.filter((r) => r.table === "host"),
      [],
    );
    // The receive side is ready already: the new generation accepts the peers' host addresses.
    assert.deepEqual(prepare.generations[0]!.peers[0]!.allowedIps, ["10.244.2.0/24", "172.30.0.12/32"]);
  });

  /** A rotation at `phase` that switches host encryption from `from` to `to`. */
  const switching = (phase: Phase, from: boolean, to: boolean): ClusterEncryption => {
    const c = cluster(phase, ON);
    return {
      ...c,
      hostEncryption: to,
      applied: { enabled: true, mode: "wireguard", host: from },
      ...(c.target === undefined ? {} : { target: { ...c.target, host: to } }),
    };
  };

  it("switched by a run, make before break: every node accepts before any routes into a tunnel, and stops routing before any stops accepting", () => {
    const table = (from: boolean, to: boolean) =>
      (["idle", "prepare", "switch", "retire"] as const).map((p) => {
        const h = hostFor(switching(p, from, to));
        return `${p} ${h.accept ? "accept" : "-"} ${h.route ? "route" : "-"}`;
      });
    assert.deepEqual(table(false, true), [
      "idle - -",
      "prepare accept -",
      "switch accept route",
      "retire accept route",
    ]);
    assert.deepEqual(table(true, false), [
      "idle accept route",
      "prepare accept route",
      "switch accept -",
      "retire - -",
    ]);
    // A rotation with it on, and one that does not touch it (no `host` in the target).
    assert.ok(table(true, true).every((l) => l.endsWith("accept route")));
    assert.deepEqual(hostFor(host(cluster("switch", ON))), { accept: true, route: true });
    assert.deepEqual(hostFor(cluster("switch", ON)), { accept: false, route: false });
  });

  it("switched on: prepare installs the receive side only (no host route, no source address, no rules); switch routes through the new generation", () => {
    const hostIps = (d: ReturnType<typeof desiredState>) =>
      d.generations.map((g) => g.peers.map((p) => p.allowedIps.filter((ip) => ip.startsWith("172.30."))));
    const idle = desiredState(settings, switching("idle", false, true), nodes, ALL_UP);
    assert.deepEqual(hostIps(idle), [[[], []]], "not before the run");
    const prepare = desiredState(settings, switching("prepare", false, true), nodes, ALL_UP);
    assert.deepEqual(hostIps(prepare), [[["172.30.0.12/32"], ["172.30.0.13/32"]], [["172.30.0.12/32"]]]);
    assert.equal(prepare.host, undefined);
    assert.ok(
      prepare.routes.every((r) => r.table === undefined && !("src" in r)),
      "nothing sent from or to host addresses",
    );
    const sw = desiredState(settings, switching("switch", false, true), nodes, ALL_UP);
    assert.ok(sw.host !== undefined);
    assert.deepEqual(
      sw.routes.filter((r) => r.table === "host"),
      [
        { dst: "172.30.0.12/32", kind: "tunnel", dev: "podcrypt1", src: "172.30.0.11", table: "host" },
        { dst: "172.30.0.13/32", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11", table: "host" },
      ],
    );
    // WireGuard: a peer stays on the old generation, host traffic with it, until the new session is up.
    const waiting = desiredState(settings, switching("switch", false, true), nodes, NONE_UP);
    assert.deepEqual(
      waiting.routes.filter((r) => r.table === "host").map((r) => [r.dst, r.kind === "tunnel" && r.dev]),
      [
        ["172.30.0.12/32", "podcrypt0"],
        ["172.30.0.13/32", "podcrypt0"],
      ],
    );
  });

  it("switched off: switch stops routing host traffic and keeps accepting it; retire stops accepting", () => {
    const sw = desiredState(settings, switching("switch", true, false), nodes, ALL_UP);
    assert.equal(sw.host, undefined);
    assert.ok(sw.routes.every((r) => r.table === undefined && !("src" in r)));
    assert.deepEqual(
      sw.generations.map((g) => g.peers.map((p) => p.allowedIps.at(-1))),
      [["172.30.0.12/32", "172.30.0.13/32"], ["172.30.0.12/32"]],
    );
    const retire = desiredState(settings, switching("retire", true, false), nodes, ALL_UP);
    for (const g of retire.generations)
      for (const p of g.peers) assert.ok(!p.allowedIps.some((ip) => ip.startsWith("172.30.")));
  });

  it("an IPv6-only underlay: each peer's IPv6 host address as a /128, routed from this node's, the IPv6 rules only", () => {
    const v6 = nodes.map((n) =>
      parseResource("nodes", {
        ...n,
        underlay: { ipv6: `fd30::${n.name.slice(-1)}` },
        podCIDRs: [...n.podCIDRs, `fd00:10:244:${n.name.slice(-1)}::/64`],
      }),
    );
    const d = desiredState(settings, host(cluster("idle", ON)), v6, ALL_UP);
    assert.deepEqual(d.host?.families, ["ipv6"]);
    assert.deepEqual(d.generations[0]!.peers[0]!.allowedIps, [
      "10.244.2.0/24",
      "fd00:10:244:2::/64",
      "fd30::2/128",
    ]);
    // No IPv4 host address here: the node's own IPv4 packets name no source.
    assert.deepEqual(d.routes.slice(0, 3), [
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt0" },
      { dst: "fd00:10:244:2::/64", kind: "tunnel", dev: "podcrypt0", src: "fd30::1" },
      { dst: "fd30::2/128", kind: "tunnel", dev: "podcrypt0", src: "fd30::1", table: "host" },
    ]);
  });

  it("a dual-stack node: both families' host addresses of every peer with both, each from this node's of its family", () => {
    const dual = nodes.map((n, i) =>
      parseResource("nodes", {
        ...n,
        // node-3 has an IPv4 address only: it gets no IPv6 host route.
        underlay: { ...n.underlay, ...(i < 2 ? { ipv6: `fd30::${n.name.slice(-1)}` } : {}) },
        podCIDRs: [...n.podCIDRs, `fd00:10:244:${n.name.slice(-1)}::/64`],
      }),
    );
    const d = desiredState(settings, host(cluster("idle", ON)), dual, ALL_UP);
    assert.deepEqual(d.host?.families, ["ipv4", "ipv6"]);
    assert.deepEqual(
      d.generations[0]!.peers.map((p) => p.allowedIps),
      [
        ["10.244.2.0/24", "fd00:10:244:2::/64", "172.30.0.12/32", "fd30::2/128"],
        ["10.244.3.0/24", "fd00:10:244:3::/64", "172.30.0.13/32"],
      ],
    );
    assert.deepEqual(d.routes, [
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11" },
      { dst: "fd00:10:244:2::/64", kind: "tunnel", dev: "podcrypt0", src: "fd30::1" },
      { dst: "172.30.0.12/32", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11", table: "host" },
      { dst: "fd30::2/128", kind: "tunnel", dev: "podcrypt0", src: "fd30::1", table: "host" },
      { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11" },
      { dst: "fd00:10:244:3::/64", kind: "tunnel", dev: "podcrypt0", src: "fd30::1" },
      { dst: "172.30.0.13/32", kind: "tunnel", dev: "podcrypt0", src: "172.30.0.11", table: "host" },
    ]);
  });

  it("strict host mode guards every known peer's host address, tunnel up or not, and lets the exclusions pass", () => {
    const strictHost = (c: ClusterEncryption): ClusterEncryption => ({ ...host(c), strictHost: true });
    // Retire: node-3 published no key of epoch 5, so it has no tunnel and no host route; its
    // host address is guarded all the same (plaintext to it is dropped, not sent).
    const d = desiredState(settings, strictHost(cluster("retire", ON)), nodes, ALL_UP);
    assert.deepEqual(d.strict.host, {
      dropOutbound: true,
      dropInbound: true,
      peers: [
        { node: "node-2", addresses: ["172.30.0.12/32"] },
        { node: "node-3", addresses: ["172.30.0.13/32"] },
      ],
      exclude: d.host!.exclude,
    });
    assert.deepEqual([d.strict.dropOutbound, d.strict.dropInbound], [true, true]);
    assert.ok(
      d.host!.exclude.some((e) => e.protocol === "tcp" && e.dport === 2379),
      "the datastore's port",
    );
    // Not without host encryption, and not when off (the default).
    assert.equal(desiredState(settings, host(cluster("retire", ON)), nodes, ALL_UP).strict.host, undefined);
    const noHost: ClusterEncryption = { ...cluster("retire", ON), strictHost: true };
    assert.equal(desiredState(settings, noHost, nodes, ALL_UP).strict.host, undefined);
    // It follows strict mode's phases: disabling (prepare) accepts plaintext coming in from now on.
    const disabling = desiredState(settings, strictHost(cluster("prepare", ON, OFF)), nodes, ALL_UP).strict;
    assert.deepEqual([disabling.host?.dropOutbound, disabling.host?.dropInbound], [true, false]);
    // And host encryption's: out while this node routes host traffic into the tunnels, in while
    // every node does.
    const table = (from: boolean, to: boolean) =>
      (["idle", "prepare", "switch", "retire"] as const).map((p) => {
        const h = strictHostFor({ ...switching(p, from, to), strictHost: true });
        return `${p} ${h.dropOutbound ? "out" : "-"} ${h.dropInbound ? "in" : "-"}`;
      });
    assert.deepEqual(table(false, true), ["idle - -", "prepare - -", "switch out -", "retire out in"]);
    assert.deepEqual(table(true, false), ["idle out in", "prepare out -", "switch - -", "retire - -"]);
    assert.ok(table(true, true).every((l) => l.endsWith("out in")));
    assert.deepEqual(strictHostFor({ ...switching("idle", true, true), strict: false, strictHost: true }), {
      dropOutbound: false,
      dropInbound: false,
    });
  });
});

describe("desiredState, selective encryption", () => {
  const nodes = [node(1, { "4": KEY("a"), "5": KEY("b") }), node(2, { "4": KEY("c"), "5": KEY("d") })];
  const selective = (c: ClusterEncryption): ClusterEncryption => ({ ...c, encryption: "selective" });
  const dns = { node: "node-2", protocol: "udp" as const, port: 53, podIPs: ["10.244.2.5"], sources: [] };
  const web = { node: "node-1", protocol: "tcp" as const, port: 80, podIPs: ["10.244.1.7"], sources: [] };

  it("routes pods in plaintext in main and through the tunnel in the selected table", () => {
    const settings = { ...SETTINGS, probeEndpoint: "10.244.1.1" };
    const d = desiredState(settings, selective(cluster("idle", ON)), nodes, ALL_UP, {
      encrypt: [dns, web],
      expectEncrypted: [dns],
    });
    assert.deepEqual(d.routes, [
      { dst: "10.244.2.0/24", kind: "plain", via: "172.30.0.12", dev: "eth0" },
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt0", table: "selected" },
    ]);
    assert.deepEqual(d.strict.selection, {
      encrypt: [
        { protocol: "udp", port: 53, podIPs: ["10.244.2.5"], local: false },
        { protocol: "tcp", port: 80, podIPs: ["10.244.1.7"], local: true },
      ],
      expectEncrypted: [{ protocol: "udp", port: 53, podIPs: ["10.244.2.5"], local: false }],
      // The probe endpoint (verify --via-agents) is marked like the node's pods.
      localSources: ["10.244.1.1"],
    });
  });

  it("marks nothing until this node sends encrypted (enable prepare), then marks", () => {
    const sel = { encrypt: [dns], expectEncrypted: [] };
    const settings = { ...SETTINGS, probeEndpoint: "10.244.1.1" };
    const prepare = desiredState(settings, selective(cluster("prepare", OFF, ON)), nodes, ALL_UP, sel);
    assert.deepEqual(prepare.strict.selection?.encrypt, []);
    assert.equal(prepare.strict.selection?.localSources, undefined);
    // The selected table already leads into the new generation, so marking later moves nothing.
    assert.deepEqual(prepare.routes[1], {
      dst: "10.244.2.0/24",
      kind: "tunnel",
      dev: "podcrypt1",
      table: "selected",
    });
    const sw = desiredState(settings, selective(cluster("switch", OFF, ON)), nodes, ALL_UP, sel);
    assert.equal(sw.strict.selection?.encrypt.length, 1);
    assert.deepEqual(sw.strict.selection?.localSources, ["10.244.1.1"]);
  });

  it("dual-stack pods: both families' pod CIDRs in the selected table, IPv6 selectors marked alike", () => {
    const dual = nodes.map((n, i) =>
      parseResource("nodes", {
        ...n,
        underlay: { ...n.underlay, ipv6: `fd30::${i + 1}` },
        podCIDRs: [...n.podCIDRs, `fd00:10:244:${i + 1}::/64`],
      }),
    );
    const dns6 = { ...dns, podIPs: ["10.244.2.5", "fd00:10:244:2::5"] };
    const d = desiredState(SETTINGS, selective(cluster("idle", ON)), dual, ALL_UP, {
      encrypt: [dns6],
      expectEncrypted: [dns6],
    });
    assert.deepEqual(d.routes, [
      { dst: "10.244.2.0/24", kind: "plain", via: "172.30.0.12", dev: "eth0" },
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt0", table: "selected" },
      { dst: "fd00:10:244:2::/64", kind: "plain", via: "fd30::2", dev: "eth0" },
      { dst: "fd00:10:244:2::/64", kind: "tunnel", dev: "podcrypt0", table: "selected" },
    ]);
    assert.deepEqual(d.strict.selection?.encrypt, [
      { protocol: "udp", port: 53, podIPs: ["10.244.2.5", "fd00:10:244:2::5"], local: false },
    ]);
  });

  it("encryption off: plaintext routes only, nothing in the selected table", () => {
    const d = desiredState(SETTINGS, selective(cluster("idle", OFF)), nodes, ALL_UP);
    assert.deepEqual(d.routes, [{ dst: "10.244.2.0/24", kind: "plain", via: "172.30.0.12", dev: "eth0" }]);
  });
});

describe("WireGuard takeover: a peer moves to the new generation only once its session is up", () => {
  const nodes = [
    node(1, { "4": KEY("a"), "5": KEY("b") }),
    node(2, { "4": KEY("c"), "5": KEY("d") }),
    node(3, { "4": KEY("e"), "5": KEY("f") }),
  ];
  const observed = (epoch: number, key: string, latestHandshake?: number): ObservedPeer => ({
    node: "?",
    epoch,
    ifname: "podcrypt1",
    publicKey: key,
    txBytes: 0,
    rxBytes: 0,
    ...(latestHandshake === undefined ? {} : { latestHandshake }),
  });

  it("per peer, by the handshakes the data plane reports for the new epoch", () => {
    // node-2's session on epoch 5 is up; node-3 is configured but has not completed a handshake,
    // and an old-epoch handshake with it does not count.
    const sessions = sessionsFrom([
      observed(5, KEY("d"), 1),
      observed(5, KEY("f")),
      observed(4, KEY("f"), 1),
    ]);
    const d = desiredState(SETTINGS, cluster("switch", ON), nodes, sessions);
    assert.deepEqual(d.routes, [
      { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt1" },
      { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0" },
    ]);
  });

  it("prepare never routes into the new generation, whatever its sessions (rotation and mode change)", () => {
    for (const c of [
      cluster("prepare", ON),
      cluster("prepare", ON, { enabled: true, mode: "ipsec" }),
      cluster("prepare", { enabled: true, mode: "ipsec" }, ON),
    ])
      for (const sessions of [NONE_UP, ALL_UP]) {
        const d = desiredState(SETTINGS, c, nodes, sessions);
        assert.ok(
          d.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt0"),
          `${c.applied?.mode}->${c.target?.mode}: ${JSON.stringify(d.routes)}`,
        );
      }
  });

  it("a peer only the new generation knows (joined mid-run) is reached through it", () => {
    const joined = [...nodes.slice(0, 2), node(3, { "5": KEY("f") })];
    const d = desiredState(SETTINGS, cluster("prepare", ON), joined, NONE_UP);
    assert.deepEqual(d.routes.at(-1), { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt1" });
  });

  it("enable has no older generation: the new one takes the traffic at once, never plaintext", () => {
    const d = desiredState(SETTINGS, cluster("switch", OFF, ON), nodes, NONE_UP);
    assert.ok(d.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt1"));
  });

  it("IPsec needs no session: the new SAs take over at once", () => {
    const ipsec = { enabled: true, mode: "ipsec" as const };
    const d = desiredState(SETTINGS, cluster("switch", ipsec), nodes, NONE_UP);
    assert.ok(d.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt1"));
  });
});

describe("a lagging node (missed the rotation 4 → 5): its pairs keep epoch 4 until it catches up", () => {
  const until = "2026-12-01T01:00:00.000Z";
  const lagged = (mode: "wireguard" | "ipsec" = "wireguard", switchAt?: string): ClusterEncryption => ({
    ...cluster("idle", { enabled: true, mode }),
    epoch: 5,
    lagging: [
      {
        node: "node-3",
        epoch: 4,
        since: "2026-12-01T00:00:00.000Z",
        until,
        ...(switchAt ? { switchAt } : {}),
      },
    ],
  });
  const live = [node(1, { "4": KEY("a"), "5": KEY("b") }), node(2, { "4": KEY("c"), "5": KEY("d") })];
  const down = node(3, { "4": KEY("e") });
  const back = node(3, { "4": KEY("e"), "5": KEY("f") });
  const peersOf = (d: ReturnType<typeof desiredState>, epoch: number): string[] =>
    d.generations.find((g) => g.epoch === epoch)?.peers.map((p) => p.node) ?? [];

  it("every node keeps the epoch-4 key and a generation in its slot holding only the lagging node", () => {
    assert.deepEqual(epochsNeeded(lagged()), [4, 5]);
    for (const mode of ["wireguard", "ipsec"] as const) {
      const d = desiredState(SETTINGS, lagged(mode), [...live, down], NONE_UP);
      assert.deepEqual(peersOf(d, 4), ["node-3"]);
      assert.deepEqual(peersOf(d, 5), ["node-2"]);
      assert.deepEqual(d.routes, [
        { dst: "10.244.2.0/24", kind: "tunnel", dev: "podcrypt1" },
        { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0" },
      ]);
    }
  });

  it("the retire phase already keeps it (the old generation is not torn down under it)", () => {
    const retire = { ...cluster("retire", ON), lagging: [{ ...lagged().lagging[0]! }] };
    const d = desiredState(SETTINGS, retire, [...live, down], NONE_UP);
    assert.deepEqual(peersOf(d, 4), ["node-3"]);
    assert.deepEqual(d.routes.at(-1), { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0" });
  });

  it("once back, its new key alone does not move the pair: both ends stay on epoch 4", () => {
    const at1 = desiredState(SETTINGS, lagged(), [...live, back], ALL_UP);
    assert.deepEqual(peersOf(at1, 5), ["node-2", "node-3"]);
    assert.deepEqual(at1.routes.at(-1), { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt0" });
    const self = { ...SETTINGS, node: "node-3" };
    const at3 = desiredState(self, lagged(), [...live, back], ALL_UP);
    assert.deepEqual(peersOf(at3, 4), ["node-1", "node-2"], "the lagging node keeps every peer in epoch 4");
    assert.ok(at3.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt0"));
    assert.equal(catchUpAcknowledgement(at3, lagged(), "node-3", live), "prepare");
    // A live peer missing from its epoch-5 generation (no key yet): not prepared.
    const partial = desiredState(self, lagged(), [live[0]!, node(2, { "4": KEY("c") }), back], ALL_UP);
    assert.equal(catchUpAcknowledgement(partial, lagged(), "node-3", live), undefined);
  });

  it("switched: WireGuard moves a pair once its session is up, IPsec at once; then the lagging node acknowledges switch", () => {
    const sw = "2026-12-01T00:10:00.000Z";
    const self = { ...SETTINGS, node: "node-3" };
    const none = desiredState(self, lagged("wireguard", sw), [...live, back], NONE_UP);
    assert.ok(none.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt0"));
    assert.equal(catchUpAcknowledgement(none, lagged("wireguard", sw), "node-3", live), undefined);
    const up = desiredState(self, lagged("wireguard", sw), [...live, back], ALL_UP);
    assert.ok(up.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt1"));
    assert.equal(catchUpAcknowledgement(up, lagged("wireguard", sw), "node-3", live), "switch");
    const ipsec = desiredState(self, lagged("ipsec", sw), [...live, back], NONE_UP);
    assert.ok(ipsec.routes.every((r) => r.kind === "tunnel" && r.dev === "podcrypt1"));
    const peer = desiredState(SETTINGS, lagged("wireguard", sw), [...live, back], ALL_UP);
    assert.deepEqual(peer.routes.at(-1), { dst: "10.244.3.0/24", kind: "tunnel", dev: "podcrypt1" });
    // A node that does not lag has nothing to catch up.
    assert.equal(catchUpAcknowledgement(peer, lagged("wireguard", sw), "node-1", live), undefined);
  });

  it("a lag in the sending generation's slot is never kept (it would replace the current epoch)", () => {
    const wrong = { ...lagged(), lagging: [{ ...lagged().lagging[0]!, epoch: 3 }] };
    assert.deepEqual(epochsNeeded(wrong), [5]);
  });
});

describe("readyToAcknowledge", () => {
  const prepared = (i: number, keys: Record<string, string>): Node => ({
    ...node(i, keys),
    acknowledgements: [{ epoch: 5, phase: "prepare", at: "2026-12-01T00:00:01.000Z" }],
  });
  const nodes = [node(1, { "4": KEY("a"), "5": KEY("b") }), prepared(2, { "4": KEY("c"), "5": KEY("d") })];

  it("prepare: the new generation holds every live peer, including ones whose key is still missing", () => {
    const c = cluster("prepare", ON);
    assert.equal(readyToAcknowledge(desiredState(SETTINGS, c, nodes, NONE_UP), c, ["node-2"], []), true);
    const late = [nodes[0]!, node(2, { "4": KEY("c") })];
    assert.equal(readyToAcknowledge(desiredState(SETTINGS, c, late, NONE_UP), c, ["node-2"], []), false);
  });

  it("switch: every prepared peer routed through the new generation (its session up)", () => {
    const c = cluster("switch", ON);
    const waiting = desiredState(SETTINGS, c, nodes, NONE_UP);
    assert.equal(readyToAcknowledge(waiting, c, ["node-2"], [nodes[1]!]), false);
    const up = desiredState(SETTINGS, c, nodes, ALL_UP);
    assert.equal(readyToAcknowledge(up, c, ["node-2"], [nodes[1]!]), true);
    // A peer that never prepared is not waited for (the controller reports it).
    assert.equal(readyToAcknowledge(waiting, c, ["node-2"], []), true);
  });

  it("retire, idle and a disable run need nothing", () => {
    for (const c of [cluster("retire", ON), cluster("idle", ON), cluster("switch", ON, OFF)])
      assert.equal(readyToAcknowledge(desiredState(SETTINGS, c, nodes, NONE_UP), c, ["node-2"], []), true);
  });
});
