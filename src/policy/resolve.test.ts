import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePolicyObject } from "./parse.js";
import { compareIPs, diffSelectors, isEmptyDiff, resolveSelectors, selectorsForNode } from "./resolve.js";
import type { EndpointsInput, PodInput, Policy, ResolveInputs, ServiceInput } from "./types.js";

function policy(name: string, rules: [string, string, string, string][]): Policy {
  const p = parsePolicyObject({
    apiVersion: "starlingx.io/v1",
    kind: "IPsecPolicy",
    metadata: { name },
    spec: {
      policies: rules.map(([n, svc, ns, ports]) => ({
        name: n,
        servicename: svc,
        servicens: ns,
        serviceports: ports,
      })),
    },
  });
  assert.ok(p);
  return p;
}

const pods: PodInput[] = [
  { name: "dns-1", namespace: "kube-system", node: "node-2", ip: "10.244.2.10", labels: { app: "dns" } },
  { name: "dns-2", namespace: "kube-system", node: "node-3", ip: "10.244.3.10", labels: { app: "dns" } },
  { name: "dns-3", namespace: "kube-system", node: "node-2", ip: "10.244.2.9", labels: { app: "dns" } },
  { name: "web-1", namespace: "default", node: "node-1", ip: "10.244.1.5", labels: { app: "web" } },
  { name: "imposter", namespace: "default", node: "node-1", ip: "10.244.1.6", labels: { app: "dns" } },
];
const services: ServiceInput[] = [
  {
    name: "kube-dns",
    namespace: "kube-system",
    selector: { app: "dns" },
    ports: ["udp/53", "tcp/53", "tcp/9153"],
  },
  { name: "web", namespace: "default", selector: { app: "web" }, ports: ["tcp/80"] },
  { name: "headless", namespace: "default", selector: {}, ports: [] },
];
const dnsPolicy = policy("dns", [["kube-dns", "kube-dns", "kube-system", "udp/53,tcp/53"]]);
const SRC = "IPsecPolicy/dns#kube-dns";

describe("resolveSelectors", () => {
  const cases: { what: string; inputs: ResolveInputs; want: string[]; warnings?: string[] }[] = [
    {
      what: "selector-matched pods, grouped per node, IPs sorted numerically, other namespaces ignored",
      inputs: { policies: [dnsPolicy], services, pods },
      want: [
        "node-2 tcp/53 10.244.2.9,10.244.2.10",
        "node-2 udp/53 10.244.2.9,10.244.2.10",
        "node-3 tcp/53 10.244.3.10",
        "node-3 udp/53 10.244.3.10",
      ],
    },
    {
      what: "endpoints are authoritative over the selector (an unready pod is absent)",
      inputs: {
        policies: [dnsPolicy],
        services,
        pods,
        endpoints: [
          { name: "kube-dns", namespace: "kube-system", addresses: [{ ip: "10.244.3.10", node: "node-3" }] },
        ],
      },
      want: ["node-3 tcp/53 10.244.3.10", "node-3 udp/53 10.244.3.10"],
    },
    {
      what: "endpoint without node is placed through the pod list; unknown IPs are warned about",
      inputs: {
        policies: [dnsPolicy],
        services: [],
        pods,
        endpoints: [
          {
            name: "kube-dns",
            namespace: "kube-system",
            addresses: [{ ip: "10.244.2.10" }, { ip: "10.9.9.9" }],
          },
        ],
      },
      want: ["node-2 tcp/53 10.244.2.10", "node-2 udp/53 10.244.2.10"],
      warnings: [`${SRC}: endpoint IPs on no known node: 10.9.9.9`],
    },
    {
      what: "a policy before its service resolves to nothing, with a warning",
      inputs: { policies: [policy("later", [["r", "later", "default", "tcp/80"]])], services, pods },
      want: [],
      warnings: ["IPsecPolicy/later#r: service default/later not found"],
    },
    {
      what: "an empty selector selects no pods",
      inputs: { policies: [policy("h", [["h", "headless", "default", "tcp/80"]])], services, pods },
      want: [],
      warnings: ["IPsecPolicy/h#h: service default/headless has no endpoints"],
    },
    {
      what: "two rules on the same pod and port merge their sources",
      inputs: {
        policies: [
          dnsPolicy,
          policy("metrics", [["dns-metrics", "kube-dns", "kube-system", "tcp/53,tcp/9153"]]),
        ],
        services,
        pods: pods.filter((p) => p.node === "node-3"),
      },
      want: [
        "node-3 tcp/53 10.244.3.10 <- IPsecPolicy/dns#kube-dns,IPsecPolicy/metrics#dns-metrics",
        "node-3 tcp/9153 10.244.3.10 <- IPsecPolicy/metrics#dns-metrics",
        "node-3 udp/53 10.244.3.10 <- IPsecPolicy/dns#kube-dns",
      ],
    },
    {
      what: "IPv6 pods sort after IPv4",
      inputs: {
        policies: [policy("w", [["w", "web", "default", "tcp/80"]])],
        services,
        pods: [
          { name: "a", namespace: "default", node: "n", ip: "fd00::5", labels: { app: "web" } },
          { name: "b", namespace: "default", node: "n", ip: "10.0.0.5", labels: { app: "web" } },
        ],
      },
      want: ["n tcp/80 10.0.0.5,fd00::5"],
    },
  ];
  for (const c of cases)
    it(c.what, () => {
      const r = resolveSelectors(c.inputs);
      const showSources = c.what.includes("sources");
      assert.deepEqual(
        r.selectors.map(
          (s) =>
            `${s.node} ${s.protocol}/${s.port} ${s.podIPs.join(",")}${showSources ? ` <- ${s.sources.join(",")}` : ""}`,
        ),
        c.want,
      );
      if (!showSources) for (const s of r.selectors) assert.ok(s.sources.length > 0);
      assert.deepEqual(
        r.warnings.map((w) => `${w.source}: ${w.message}`),
        c.warnings ?? [],
      );
    });

  it("is deterministic: input order does not change the result", () => {
    const a = resolveSelectors({ policies: [dnsPolicy], services, pods });
    const b = resolveSelectors({
      policies: [dnsPolicy],
      services: [...services].reverse(),
      pods: [...pods].reverse(),
    });
    assert.deepEqual(a, b);
  });

  it("selectorsForNode keeps one node's selectors", () => {
    const r = resolveSelectors({ policies: [dnsPolicy], services, pods });
    assert.deepEqual(
      selectorsForNode(r, "node-3").map((s) => `${s.protocol}/${s.port}`),
      ["tcp/53", "udp/53"],
    );
  });
});

describe("diffSelectors", () => {
  const base: ResolveInputs = { policies: [dnsPolicy], services, pods };
  const before = resolveSelectors(base);
  const key = (s: { node: string; protocol: string; port: number }) => `${s.node} ${s.protocol}/${s.port}`;

  const cases: {
    what: string;
    after: ResolveInputs;
    added: string[];
    removed: string[];
    changed: string[];
  }[] = [
    { what: "no change", after: base, added: [], removed: [], changed: [] },
    {
      what: "policy update drops udp/53 (the seed's step 3)",
      after: { ...base, policies: [policy("dns", [["kube-dns", "kube-dns", "kube-system", "tcp/53"]])] },
      added: [],
      removed: ["node-2 udp/53", "node-3 udp/53"],
      changed: [],
    },
    {
      what: "an endpoint moves to a new node",
      after: {
        ...base,
        pods: [
          ...pods.filter((p) => p.name !== "dns-2"),
          {
            name: "dns-2",
            namespace: "kube-system",
            node: "node-1",
            ip: "10.244.1.20",
            labels: { app: "dns" },
          },
        ],
      },
      added: ["node-1 tcp/53", "node-1 udp/53"],
      removed: ["node-3 tcp/53", "node-3 udp/53"],
      changed: [],
    },
    {
      what: "an endpoint is added on an existing node",
      after: {
        ...base,
        pods: [
          ...pods,
          {
            name: "dns-4",
            namespace: "kube-system",
            node: "node-3",
            ip: "10.244.3.11",
            labels: { app: "dns" },
          },
        ],
      },
      added: [],
      removed: [],
      changed: ["node-3 tcp/53 +10.244.3.11 -", "node-3 udp/53 +10.244.3.11 -"],
    },
    {
      what: "the policy is deleted",
      after: { ...base, policies: [] },
      added: [],
      removed: ["node-2 tcp/53", "node-2 udp/53", "node-3 tcp/53", "node-3 udp/53"],
      changed: [],
    },
  ];
  for (const c of cases)
    it(c.what, () => {
      const d = diffSelectors(before, resolveSelectors(c.after));
      assert.deepEqual(d.added.map(key), c.added);
      assert.deepEqual(d.removed.map(key), c.removed);
      assert.deepEqual(
        d.changed.map((x) => `${key(x.after)} +${x.addedIPs.join(",")} -${x.removedIPs.join(",")}`),
        c.changed,
      );
      assert.equal(isEmptyDiff(d), c.added.length + c.removed.length + c.changed.length === 0);
    });

  it("diff from empty adds everything; to empty removes everything", () => {
    const empty = { selectors: [], warnings: [] };
    assert.equal(diffSelectors(empty, before).added.length, before.selectors.length);
    assert.equal(diffSelectors(before, empty).removed.length, before.selectors.length);
  });

  it("a source-only change is a change with no IP delta", () => {
    const eps: EndpointsInput[] = [];
    const after = resolveSelectors({
      ...base,
      endpoints: eps,
      policies: [policy("dns", [["renamed", "kube-dns", "kube-system", "udp/53,tcp/53"]])],
    });
    const d = diffSelectors(before, after);
    assert.equal(d.changed.length, 4);
    assert.ok(d.changed.every((c) => c.addedIPs.length === 0 && c.removedIPs.length === 0));
  });
});

describe("compareIPs", () => {
  it("orders IPv4 numerically and before IPv6", () => {
    assert.deepEqual(["fd00::1", "10.0.0.10", "9.0.0.1", "10.0.0.9"].sort(compareIPs), [
      "9.0.0.1",
      "10.0.0.9",
      "10.0.0.10",
      "fd00::1",
    ]);
  });
});
