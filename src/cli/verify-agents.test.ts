import assert from "node:assert/strict";
import { test } from "node:test";
import { probeEndpointAddress6 } from "../agent/verify/endpoint.js";
import { planRun } from "./verify-agents.js";

const nodes = [1, 2, 3].map((i) => ({
  name: `node-${i}`,
  podCIDRs: [`10.244.${i}.0/24`],
  underlay: { ipv4: `172.30.0.1${i}` },
}));
const o = { nonce: "0123456789ab", now: 0, seconds: 2, count: 5 };
const row = (c: {
  from: string;
  to: string;
  address: string;
  protocol: string;
  port: number;
  selected: boolean;
  service?: string;
}) =>
  `${c.from}->${c.to} ${c.protocol}/${c.port} ${c.address} ${c.selected ? "selected" : "plain"}${c.service === undefined ? "" : ` ${c.service}`}`;

test("planRun: all traffic encrypted, one selected echo check per ordered pair between the endpoints", () => {
  const run = planRun(nodes, o);
  assert.deepEqual(run.nodes[0], { name: "node-1", endpoint: "10.244.1.1", underlay: "172.30.0.11" });
  assert.equal(run.checks.length, 6);
  assert.ok(run.checks.every((c) => c.selected && c.port === 7 && c.service === undefined));
});

test("planRun: selective probes every port of the services with a pod on the receiver, selected as the policies say", () => {
  const run = planRun(nodes, {
    ...o,
    selective: {
      services: [
        { name: "kube-dns", namespace: "kube-system", selector: {}, ports: ["udp/53", "tcp/9153"] },
        { name: "web", namespace: "default", selector: {}, ports: ["tcp/80"] },
      ],
      endpoints: [
        // A node named by the endpoint, and one found by its pod CIDR; IPv6 addresses are not probed.
        { name: "kube-dns", namespace: "kube-system", addresses: [{ ip: "10.244.2.5", node: "node-2" }] },
        { name: "web", namespace: "default", addresses: [{ ip: "fd00::7" }, { ip: "10.244.3.7" }] },
      ],
      selectors: [{ node: "node-2", protocol: "udp", port: 53, podIPs: ["10.244.2.5"], sources: [] }],
    },
  });
  assert.deepEqual(run.checks.filter((c) => c.from === "node-1").map(row), [
    "node-1->node-2 udp/7 10.244.2.1 plain",
    "node-1->node-2 udp/53 10.244.2.5 selected kube-system/kube-dns",
    "node-1->node-2 tcp/9153 10.244.2.5 plain kube-system/kube-dns",
    "node-1->node-3 udp/7 10.244.3.1 plain",
    "node-1->node-3 tcp/80 10.244.3.7 plain default/web",
  ]);
  // No check of a node's own pods.
  assert.ok(!run.checks.some((c) => c.from === "node-2" && c.address === "10.244.2.5"));
  assert.equal(run.checks.length, 6 + 4 + 2);
});

test("planRun: host encryption adds one selected node-to-node check per ordered pair, to the peer's IPv4 host address", () => {
  const run = planRun(
    [...nodes, { name: "node-4", podCIDRs: ["10.244.4.0/24"], underlay: { ipv6: "fd30::14" } }],
    {
      ...o,
      host: true,
    },
  );
  const host = run.checks.filter((c) => c.host === true);
  // node-4 has no IPv4 host address: host encryption does not cover it, so no host check with it.
  assert.equal(host.length, 6);
  assert.deepEqual(host.filter((c) => c.from === "node-1").map(row), [
    "node-1->node-2 udp/7 172.30.0.12 selected",
    "node-1->node-3 udp/7 172.30.0.13 selected",
  ]);
  // The endpoints' echo stays, for every pair (node-4's too).
  assert.equal(run.checks.filter((c) => c.host === undefined).length, 12);
  assert.equal(planRun(nodes, o).checks.filter((c) => c.host === true).length, 0);
});

test("planRun: nodes with IPv6 pods get an IPv6 probe endpoint, and each ordered pair of them an IPv6 echo check", () => {
  const dual = nodes.map((n, i) => ({
    ...n,
    podCIDRs: i === 2 ? n.podCIDRs : [...n.podCIDRs, `fd00:10:244:${i + 1}::/64`],
  }));
  const run = planRun(dual, o);
  assert.deepEqual(
    run.nodes.map((n) => n.endpoint6),
    ["fd00:10:244:1::1", "fd00:10:244:2::1", undefined],
  );
  // node-3 has IPv4 pods only: IPv6 checks between node-1 and node-2 only, IPv4 ones between all.
  assert.deepEqual(run.checks.filter((c) => c.address.includes(":")).map(row), [
    "node-1->node-2 udp/7 fd00:10:244:2::1 selected",
    "node-2->node-1 udp/7 fd00:10:244:1::1 selected",
  ]);
  assert.equal(run.checks.filter((c) => !c.address.includes(":")).length, 6);
});

test("probeEndpointAddress6: the first address after the network of the first IPv6 pod CIDR", () => {
  assert.equal(probeEndpointAddress6(["10.244.1.0/24", "fd00:10:244:a::/64"]), "fd00:10:244:a::1");
  assert.equal(probeEndpointAddress6(["2001:db8::/32"]), "2001:db8::1");
  assert.equal(probeEndpointAddress6(["fd00:1:2:3:4:5:6:0/112"]), "fd00:1:2:3:4:5:6:1");
  // None: no IPv6 pod CIDR, or one too small for a host address.
  assert.equal(probeEndpointAddress6(["10.244.1.0/24"]), undefined);
  assert.equal(probeEndpointAddress6(["fd00::/127"]), undefined);
});
