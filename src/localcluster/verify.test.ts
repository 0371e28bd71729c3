import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveClusterConfig } from "./config.js";
import { planCluster } from "./plan.js";
import { probePayload } from "./probe.js";
import { markerFrames, planChecks, planHostChecks } from "./verify.js";

const plan = planCluster(
  resolveClusterConfig({
    encryption: "selective",
    nodes: [
      { name: "node-1", pods: 1 },
      { name: "node-2", pods: 1 },
    ],
    pods: [
      { name: "dns-1", namespace: "kube-system", node: "node-2", labels: { app: "dns" } },
      { name: "web-1", namespace: "default", node: "node-1", labels: { app: "web" } },
    ],
    services: [
      { name: "kube-dns", namespace: "kube-system", selector: { app: "dns" }, ports: ["udp/53", "tcp/53"] },
      { name: "web", namespace: "default", selector: { app: "web" }, ports: ["tcp/80"] },
    ],
  }),
);

const row = (c: ReturnType<typeof planChecks>[number]): string =>
  `${c.from}>${c.to} ${c.protocol}/${c.port} ${c.dst.name} ${c.selected ? "selected" : "plain"}`;

describe("planChecks", () => {
  it("encrypting all: one echo-port check per ordered node pair, all selected", () => {
    assert.deepEqual(planChecks(plan, false, []).map(row), [
      "node-1>node-2 udp/7 node-2-pod-1 selected",
      "node-2>node-1 udp/7 node-1-pod-1 selected",
    ]);
  });

  it("selective: every service port on every other node, selected as the selectors say", () => {
    const dnsIp = plan.pods.find((p) => p.name === "dns-1")!.ip;
    const selectors = [{ node: "node-2", protocol: "udp" as const, port: 53, podIPs: [dnsIp], sources: [] }];
    assert.deepEqual(planChecks(plan, true, selectors).map(row), [
      "node-1>node-2 udp/7 node-2-pod-1 plain",
      "node-1>node-2 udp/53 dns-1 selected",
      "node-1>node-2 tcp/53 dns-1 plain",
      "node-2>node-1 udp/7 node-1-pod-1 plain",
      "node-2>node-1 tcp/80 web-1 plain",
    ]);
  });

  it("dual-stack pods: one check per family, IPv4 first, to the pod's address of that family", () => {
    const dual = planCluster(
      resolveClusterConfig({
        ipFamily: "dual",
        nodes: [
          { name: "a", pods: 1 },
          { name: "b", pods: 1 },
        ],
      }),
    );
    assert.deepEqual(
      planChecks(dual, false, []).map((c) => `${c.from}>${c.to} ${c.family} ${c.dstIp}`),
      [
        "a>b ipv4 10.244.2.10",
        "a>b ipv6 fd00:10:244:2::a",
        "b>a ipv4 10.244.1.10",
        "b>a ipv6 fd00:10:244:1::a",
      ],
    );
    assert.deepEqual(dual.nodes[0]!.podCIDRs, ["10.244.1.0/24", "fd00:10:244:1::/64"]);
    assert.equal(dual.nodes[0]!.underlayIP, "172.30.0.11");
    const v6 = planCluster(
      resolveClusterConfig({
        ipFamily: "ipv6",
        nodes: [
          { name: "a", pods: 1 },
          { name: "b", pods: 1 },
        ],
      }),
    );
    assert.deepEqual(
      planChecks(v6, false, []).map((c) => `${c.from}>${c.to} ${c.family}`),
      ["a>b ipv6", "b>a ipv6"],
    );
    assert.equal(v6.nodes[1]!.underlayIP, "fd30::c");
    assert.equal(v6.config.underlayFamily, "ipv6");
  });
});

describe("planHostChecks", () => {
  const hostRows = (ipFamily: "ipv4" | "ipv6" | "dual", underlayFamily?: "ipv4" | "ipv6"): string[] =>
    planHostChecks(
      planCluster(
        resolveClusterConfig({
          ipFamily,
          ...(underlayFamily === undefined ? {} : { underlayFamily }),
          nodes: [
            { name: "a", pods: 1 },
            { name: "b", pods: 1 },
          ],
        }),
      ),
    ).map(
      (c) => `${c.from}>${c.to} ${c.family} ${c.protocol}/${c.port} ${c.dstIp} ${c.host ? "host" : "pod"}`,
    );

  it("one node-to-node check per ordered pair and family both nodes have a host address of", () => {
    assert.deepEqual(hostRows("ipv4"), [
      "a>b ipv4 tcp/7 172.30.0.12 host",
      "b>a ipv4 tcp/7 172.30.0.11 host",
    ]);
    // An IPv4 underlay with IPv6 pods: the nodes publish their IPv6 fabric addresses too.
    assert.deepEqual(hostRows("dual"), [
      "a>b ipv4 tcp/7 172.30.0.12 host",
      "a>b ipv6 tcp/7 fd30::c host",
      "b>a ipv4 tcp/7 172.30.0.11 host",
      "b>a ipv6 tcp/7 fd30::b host",
    ]);
    // An IPv6-only underlay: IPv6 host addresses only, whatever the pods' families.
    assert.deepEqual(hostRows("dual", "ipv6"), [
      "a>b ipv6 tcp/7 fd30::c host",
      "b>a ipv6 tcp/7 fd30::b host",
    ]);
  });
});

describe("markerFrames", () => {
  it("finds a check's own probes only, not those of a check whose marker continues it (its IPv6 twin's)", () => {
    const frame = (text: string) => ({ at: 0, data: Buffer.concat([Buffer.alloc(42), Buffer.from(text)]) });
    const v4 = "PODCRYPT-VERIFY-ab-node-1-node-2-tcp7-host";
    const records = [frame(probePayload(`${v4}-v6`, 0, 200)), frame(probePayload("other", 1))];
    assert.equal(markerFrames(records, v4).length, 0);
    assert.deepEqual(markerFrames(records, `${v4}-v6`), [records[0]]);
  });
});
