import assert from "node:assert/strict";
import { test } from "node:test";
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
