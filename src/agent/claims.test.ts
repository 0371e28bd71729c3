import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type Node } from "../model/index.js";
import {
  describeRefusal,
  standingClaims,
  vetClaims,
  type NodeAuthority,
  type RefusedClaim,
} from "./claims.js";
import { desiredState, type AgentSettings } from "./desired.js";

const KEY = (c: string): string => Buffer.alloc(32, c).toString("base64");

function node(name: string, podCIDRs: string[], ipv4: string, ipv6?: string): Node {
  return parseResource("nodes", {
    name,
    underlay: { ipv4, ...(ipv6 === undefined ? {} : { ipv6 }) },
    podCIDRs,
    publicKeys: { "1": KEY(name.at(-1)!) },
  });
}

/** node-i: 10.244.i.0/24 at 172.30.0.1i, as Kubernetes assigned them. */
const honest = (i: number): Node => node(`node-${i}`, [`10.244.${i}.0/24`], `172.30.0.1${i}`);
const assigned = (i: number): NodeAuthority => ({
  podCIDRs: [`10.244.${i}.0/24`],
  addresses: [`172.30.0.1${i}`, `node-${i}`],
});
const KUBE: Record<string, NodeAuthority> = {
  "node-1": assigned(1),
  "node-2": assigned(2),
  "node-3": assigned(3),
};
const kube = (name: string): NodeAuthority | undefined => KUBE[name];

interface Row {
  name: string;
  nodes: Node[];
  authority?: (name: string) => NodeAuthority | undefined;
  /** Pod CIDRs and addresses believed per node, as node-1's agent sees them. */
  believed: Record<string, { podCIDRs: string[]; underlay: Node["underlay"] }>;
  refused: RefusedClaim[];
}

const keep = (i: number) => ({ podCIDRs: [`10.244.${i}.0/24`], underlay: { ipv4: `172.30.0.1${i}` } });

const TABLE: Row[] = [
  {
    name: "honest cluster, Kubernetes: everything believed",
    nodes: [honest(1), honest(2), honest(3)],
    authority: kube,
    believed: { "node-1": keep(1), "node-2": keep(2), "node-3": keep(3) },
    refused: [],
  },
  {
    name: "honest cluster, no authority: everything believed",
    nodes: [honest(1), honest(2), honest(3)],
    believed: { "node-1": keep(1), "node-2": keep(2), "node-3": keep(3) },
    refused: [],
  },
  {
    name: "Kubernetes: a more specific prefix of another node's CIDR is outside the liar's spec.podCIDRs",
    nodes: [honest(1), honest(2), node("node-3", ["10.244.3.0/24", "10.244.2.128/25"], "172.30.0.13")],
    authority: kube,
    believed: { "node-1": keep(1), "node-2": keep(2), "node-3": keep(3) },
    refused: [
      { node: "node-3", field: "podCIDRs", value: "10.244.2.128/25", reason: "outside-assigned-pod-cidrs" },
    ],
  },
  {
    name: "Kubernetes: a sub-prefix of the node's own assignment is believed",
    nodes: [honest(1), node("node-2", ["10.244.2.0/25"], "172.30.0.12")],
    authority: kube,
    believed: {
      "node-1": keep(1),
      "node-2": { podCIDRs: ["10.244.2.0/25"], underlay: { ipv4: "172.30.0.12" } },
    },
    refused: [],
  },
  {
    name: "Kubernetes: a wider CIDR than assigned is refused",
    nodes: [honest(1), node("node-2", ["10.244.0.0/16"], "172.30.0.12")],
    authority: kube,
    believed: { "node-1": keep(1), "node-2": { podCIDRs: [], underlay: { ipv4: "172.30.0.12" } } },
    refused: [
      { node: "node-2", field: "podCIDRs", value: "10.244.0.0/16", reason: "outside-assigned-pod-cidrs" },
    ],
  },
  {
    name: "Kubernetes: an underlay address not in status.addresses is refused (IPv6 kept when assigned)",
    nodes: [
      honest(1),
      node("node-2", ["10.244.2.0/24"], "172.30.0.13", "fd00::2"),
      node("node-3", ["10.244.3.0/24"], "172.30.0.13"),
    ],
    authority: (n) =>
      n === "node-2" ? { ...assigned(2), addresses: ["172.30.0.12", "fd00:0::2"] } : kube(n),
    believed: {
      "node-1": keep(1),
      "node-2": { podCIDRs: ["10.244.2.0/24"], underlay: { ipv6: "fd00::2" } },
      "node-3": keep(3),
    },
    refused: [{ node: "node-2", field: "underlay", value: "172.30.0.13", reason: "address-not-assigned" }],
  },
  {
    name: "Kubernetes: a record without a Node is believed in nothing",
    nodes: [honest(1), honest(2), node("ghost", ["10.244.9.0/24"], "172.30.0.99")],
    authority: kube,
    believed: { "node-1": keep(1), "node-2": keep(2), ghost: { podCIDRs: [], underlay: {} } },
    refused: [
      { node: "ghost", field: "podCIDRs", value: "10.244.9.0/24", reason: "no-such-node" },
      { node: "ghost", field: "underlay", value: "172.30.0.99", reason: "no-such-node" },
    ],
  },
  {
    name: "Kubernetes assigned overlapping ranges: neither claimant is believed",
    nodes: [honest(1), honest(2), node("node-3", ["10.244.2.0/25"], "172.30.0.13")],
    authority: (n) => (n === "node-3" ? { ...assigned(3), podCIDRs: ["10.244.2.0/25"] } : kube(n)),
    believed: {
      "node-1": keep(1),
      "node-2": { podCIDRs: [], underlay: { ipv4: "172.30.0.12" } },
      "node-3": { podCIDRs: [], underlay: { ipv4: "172.30.0.13" } },
    },
    refused: [
      {
        node: "node-2",
        field: "podCIDRs",
        value: "10.244.2.0/24",
        reason: "overlaps-other-node",
        with: "node-3",
      },
      {
        node: "node-3",
        field: "podCIDRs",
        value: "10.244.2.0/25",
        reason: "overlaps-other-node",
        with: "node-2",
      },
    ],
  },
  {
    name: "no authority: two peers overlapping, neither wins",
    nodes: [honest(1), honest(2), node("node-3", ["10.244.3.0/24", "10.244.2.128/25"], "172.30.0.13")],
    believed: {
      "node-1": keep(1),
      "node-2": { podCIDRs: [], underlay: { ipv4: "172.30.0.12" } },
      "node-3": keep(3),
    },
    refused: [
      {
        node: "node-2",
        field: "podCIDRs",
        value: "10.244.2.0/24",
        reason: "overlaps-other-node",
        with: "node-3",
      },
      {
        node: "node-3",
        field: "podCIDRs",
        value: "10.244.2.128/25",
        reason: "overlaps-other-node",
        with: "node-2",
      },
    ],
  },
  {
    name: "no authority: a peer claiming this node's pods is refused, this node's claim stands",
    nodes: [honest(1), node("node-2", ["10.244.2.0/24", "10.244.1.7/32"], "172.30.0.12")],
    believed: { "node-1": keep(1), "node-2": keep(2) },
    refused: [
      {
        node: "node-2",
        field: "podCIDRs",
        value: "10.244.1.7/32",
        reason: "overlaps-other-node",
        with: "node-1",
      },
    ],
  },
  {
    name: "no authority: IPv6 overlaps are found too, other families never overlap",
    nodes: [
      node("node-1", ["10.244.1.0/24", "fd10:1::/64"], "172.30.0.11"),
      node("node-2", ["10.244.2.0/24", "fd10:1::/48"], "172.30.0.12"),
      node("node-3", ["::ffff:10.244.1.0/120"], "172.30.0.13"),
    ],
    believed: {
      "node-1": { podCIDRs: ["10.244.1.0/24", "fd10:1::/64"], underlay: { ipv4: "172.30.0.11" } },
      "node-2": keep(2),
      "node-3": { podCIDRs: ["::ffff:10.244.1.0/120"], underlay: { ipv4: "172.30.0.13" } },
    },
    refused: [
      {
        node: "node-2",
        field: "podCIDRs",
        value: "fd10:1::/48",
        reason: "overlaps-other-node",
        with: "node-1",
      },
    ],
  },
  {
    name: "garbage in the authority contains nothing",
    nodes: [honest(1), honest(2)],
    authority: (n) => (n === "node-2" ? { podCIDRs: ["not-a-cidr"], addresses: ["nope"] } : kube(n)),
    believed: { "node-1": keep(1), "node-2": { podCIDRs: [], underlay: {} } },
    refused: [
      { node: "node-2", field: "podCIDRs", value: "10.244.2.0/24", reason: "outside-assigned-pod-cidrs" },
      { node: "node-2", field: "underlay", value: "172.30.0.12", reason: "address-not-assigned" },
    ],
  },
];

describe("vetClaims", () => {
  for (const row of TABLE) {
    it(row.name, () => {
      const v = vetClaims(row.nodes, "node-1", row.authority);
      const got = Object.fromEntries(
        v.nodes.map((n) => [n.name, { podCIDRs: n.podCIDRs, underlay: n.underlay }]),
      );
      assert.deepEqual(got, row.believed);
      assert.deepEqual(v.refused, row.refused);
      for (const r of v.refused) assert.match(describeRefusal(r), new RegExp(`of ${r.node} refused`));
    });
  }

  it("gives the same answer whatever the order of the records", () => {
    const nodes = [honest(1), honest(2), node("node-3", ["10.244.3.0/24", "10.244.2.128/25"], "172.30.0.13")];
    const a = vetClaims(nodes, "node-1");
    const b = vetClaims([...nodes].reverse(), "node-1");
    assert.deepEqual(b.refused, a.refused);
    assert.deepEqual(
      b.nodes.sort((x, y) => x.name.localeCompare(y.name)),
      a.nodes.sort((x, y) => x.name.localeCompare(y.name)),
    );
  });

  it("no authority: a claim the agent already believed stands against a new overlapping one", () => {
    // node-2's /24 was believed; then node-3 claims the same range, or a more specific prefix of
    // it, or a wider one: node-3's claim is refused, node-2 keeps its pods.
    const before = vetClaims([honest(1), honest(2), honest(3)], "node-1");
    for (const lie of ["10.244.2.0/24", "10.244.2.128/25", "10.244.0.0/22"]) {
      const liar = node("node-3", ["10.244.3.0/24", lie], "172.30.0.13");
      const v = vetClaims([honest(1), honest(2), liar], "node-1", undefined, standingClaims(before));
      assert.deepEqual(
        v.nodes.map((n) => [n.name, n.podCIDRs]),
        [
          ["node-1", ["10.244.1.0/24"]],
          ["node-2", ["10.244.2.0/24"]],
          ["node-3", ["10.244.3.0/24"]],
        ],
        lie,
      );
      assert.deepEqual(
        v.refused.map((r) => [r.node, r.value, r.reason]),
        [["node-3", lie, "overlaps-other-node"]],
        lie,
      );
      // It keeps standing in the next pass, which believes what this one did.
      const again = vetClaims([honest(1), honest(2), liar], "node-1", undefined, standingClaims(v));
      assert.deepEqual(again.refused, v.refused, lie);
    }
  });

  it("dual stack: each family's pod CIDRs and addresses are vetted on their own", () => {
    const dual = (i: number, v6cidr = `fd00:10:244:${i}::/64`, v6addr = `fd30::1${i}`): Node =>
      node(`node-${i}`, [`10.244.${i}.0/24`, v6cidr], `172.30.0.1${i}`, v6addr);
    const authority = (name: string): NodeAuthority | undefined => {
      const i = Number(name.at(-1));
      return {
        podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
        addresses: [`172.30.0.1${i}`, `fd30::1${i}`],
      };
    };
    // node-3 claims an IPv6 range inside node-2's, and an IPv6 address not its Node's; its IPv4
    // claims are its own and stand.
    const nodes = [dual(1), dual(2), dual(3, "fd00:10:244:2:8000::/65", "fd30::99")];
    const r = vetClaims(nodes, "node-1", authority);
    assert.deepEqual(
      r.refused.map((x) => `${x.node} ${x.field} ${x.value} ${x.reason}`),
      [
        "node-3 podCIDRs fd00:10:244:2:8000::/65 outside-assigned-pod-cidrs",
        "node-3 underlay fd30::99 address-not-assigned",
      ],
    );
    const n3 = r.nodes.find((n) => n.name === "node-3")!;
    assert.deepEqual([n3.podCIDRs, n3.underlay], [["10.244.3.0/24"], { ipv4: "172.30.0.13" }]);
    assert.equal(r.nodes[1], nodes[1], "node-2's claims of both families stand untouched");
    // Without an authority: an IPv6 overlap refuses only the IPv6 claims, IPv4 ones of the same
    // nodes stand (families never overlap each other).
    const o = vetClaims(
      nodes,
      "node-1",
      undefined,
      standingClaims({ nodes: [dual(1), dual(2)], refused: [] }),
    );
    assert.deepEqual(
      o.refused.map((x) => `${x.node} ${x.value} ${x.reason} ${x.with}`),
      ["node-3 fd00:10:244:2:8000::/65 overlaps-other-node node-2"],
    );
    assert.deepEqual(o.nodes.find((n) => n.name === "node-2")!.podCIDRs, [
      "10.244.2.0/24",
      "fd00:10:244:2::/64",
    ]);
  });

  it("returns untouched records as the same objects (the desired-state memo keys on identity)", () => {
    const nodes = [honest(1), honest(2), node("node-3", ["10.244.9.0/24"], "172.30.0.13")];
    const v = vetClaims(nodes, "node-1", kube);
    assert.equal(v.nodes[1], nodes[1]);
    assert.notEqual(v.nodes[2], nodes[2]);
  });
});

describe("desired state from vetted records", () => {
  const SETTINGS: AgentSettings = {
    node: "node-1",
    ifPrefix: "pc",
    wireguardPort: 51820,
    underlayIf: "eth0",
    mtu: 1420,
  };
  const c = parseResource("clusterencryptions", {
    name: "default",
    enabled: true,
    applied: { enabled: true, mode: "wireguard" },
    epoch: 1,
    phase: "idle",
  });
  const liar = node("node-3", ["10.244.3.0/24", "10.244.2.128/25"], "172.30.0.13");

  it("routes a liar's more specific prefix of another node's pods nowhere near the liar (Kubernetes)", () => {
    const { nodes } = vetClaims([honest(1), honest(2), liar], "node-1", kube);
    const d = desiredState(SETTINGS, c, nodes, () => true);
    assert.deepEqual(
      d.routes.map((r) => r.dst),
      ["10.244.2.0/24", "10.244.3.0/24"],
    );
    const peers = d.generations[0]!.peers;
    assert.deepEqual(peers.find((p) => p.node === "node-3")?.allowedIps, ["10.244.3.0/24"]);
    assert.deepEqual(peers.find((p) => p.node === "node-2")?.allowedIps, ["10.244.2.0/24"]);
    assert.deepEqual(d.strict.remotePodCidrs, ["10.244.2.0/24", "10.244.3.0/24"]);
  });

  it("without the vetting the liar would get the traffic (what the check prevents)", () => {
    const d = desiredState(SETTINGS, c, [honest(1), honest(2), liar], () => true);
    assert.ok(
      d.generations[0]!.peers.find((p) => p.node === "node-3")?.allowedIps.includes("10.244.2.128/25"),
    );
  });

  it("strict mode drops plaintext toward refused pod CIDRs, except those overlapping this node's own", () => {
    // Without standing claims (an agent starting with the lie in place) neither node-2 nor the
    // liar node-3 is believed for 10.244.2.128/25: no route, and strict mode guards both claims.
    const liarWide = node("node-3", ["10.244.3.0/24", "10.244.2.128/25", "0.0.0.0/0"], "172.30.0.13");
    const v = vetClaims([honest(1), honest(2), liarWide], "node-1");
    const refused = v.refused.filter((r) => r.field === "podCIDRs").map((r) => r.value);
    assert.deepEqual(refused, ["10.244.2.0/24", "0.0.0.0/0", "10.244.2.128/25"]);
    const d = desiredState(SETTINGS, c, v.nodes, () => true, undefined, undefined, refused);
    assert.deepEqual(
      d.routes.map((r) => r.dst),
      ["10.244.3.0/24"],
    );
    // 0.0.0.0/0 covers this node's own pods: guarding it would drop everything else they send.
    assert.deepEqual(d.strict.remotePodCidrs, ["10.244.3.0/24", "10.244.2.0/24", "10.244.2.128/25"]);
    assert.deepEqual(
      desiredState(SETTINGS, c, v.nodes, () => true).strict.remotePodCidrs,
      ["10.244.3.0/24"],
      "without the refused CIDRs nothing would guard them",
    );
  });

  it("a peer with a refused address gets no endpoint; its pods are blackholed, not sent in plaintext", () => {
    const { nodes } = vetClaims(
      [honest(1), node("node-2", ["10.244.2.0/24"], "172.30.0.66")],
      "node-1",
      kube,
    );
    const d = desiredState(SETTINGS, c, nodes, () => true);
    assert.deepEqual(d.generations[0]!.peers, []);
    assert.deepEqual(d.routes, [{ dst: "10.244.2.0/24", kind: "blackhole" }]);
  });
});
