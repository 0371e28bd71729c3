import { test } from "node:test";
import assert from "node:assert/strict";
import { parseResource, type ResourceKind } from "../../model/index.js";
import {
  apiPath,
  fromIpsecPolicy,
  fromKube,
  locate,
  IPSEC_POLICY_REF,
  KUBE_NODE_REF,
  policyStatusOf,
  REFS,
  taintPatch,
  toKube,
  type KubeObject,
} from "./mapping.js";

const KEY = Buffer.alloc(32, 7).toString("base64");

const samples: { [K in ResourceKind]: unknown } = {
  nodes: {
    name: "node-1",
    underlay: { ipv4: "192.0.2.1" },
    podCIDRs: ["10.244.1.0/24"],
    publicKeys: { "3": KEY },
    saInstance: "5a".repeat(16),
    acknowledgements: [{ epoch: 3, phase: "prepare", at: "2026-01-01T00:00:00Z" }],
    backend: "wireguard-userspace",
    heartbeat: "2026-01-01T00:00:01Z",
  },
  clusterencryptions: {
    name: "default",
    mode: "ipsec",
    epoch: 2,
    phase: "prepare",
    target: { epoch: 3, mode: "ipsec", enabled: true },
  },
  encryptionpolicies: {
    name: "dns",
    namespace: "kube-system",
    policies: [{ name: "r", service: "kube-dns", namespace: "kube-system", ports: "udp/53" }],
  },
  services: {
    name: "kube-dns",
    namespace: "kube-system",
    selector: { app: "dns" },
    ports: ["udp/53", "tcp/9153"],
  },
  endpoints: {
    name: "kube-dns",
    namespace: "kube-system",
    addresses: [{ ip: "10.244.1.5", pod: "dns-1", node: "node-1" }, { ip: "10.244.2.5" }],
  },
  verifyruns: {
    name: "verify-0a1b2c3d4e5f",
    nonce: "0a1b2c3d4e5f",
    startAt: 1_800_000_000_000,
    seconds: 2,
    count: 5,
    size: 0,
    nodes: [
      { name: "node-1", endpoint: "10.244.1.1", underlay: "192.0.2.1" },
      { name: "node-2", endpoint: "10.244.2.1", underlay: "192.0.2.2" },
    ],
    checks: [
      { from: "node-1", to: "node-2", address: "10.244.2.1", protocol: "udp", port: 7, selected: true },
    ],
    status: {
      reports: {
        "node-1": {
          finishedAt: "2026-01-01T00:00:05Z",
          capture: { interface: "eth0", packets: 12, bytes: 2000 },
          probes: [{ marker: "m", echoed: 4, lost: [[2, 2]], startedAt: 1_800_000_000_000 }],
          seen: [],
          controls: [{ to: "node-2", seen: true }],
        },
      },
    },
  },
};

/** What the API server would store for `parts` at `key`. */
function asObject(kind: ResourceKind, key: string, parts: ReturnType<typeof toKube>): KubeObject {
  const { namespace, name } = locate(kind, key);
  return {
    metadata: {
      name,
      ...(namespace === "" ? {} : { namespace }),
      labels: parts.labels,
    },
    ...parts.body,
  };
}

test("every kind round-trips through its Kubernetes form", () => {
  for (const kind of Object.keys(samples) as ResourceKind[]) {
    const value = parseResource(kind, samples[kind]);
    const key =
      (value as { namespace?: string }).namespace === undefined
        ? (value as { name: string }).name
        : `${(value as { namespace: string }).namespace}/${(value as { name: string }).name}`;
    const back = fromKube(kind, asObject(kind, key, toKube(kind, value)));
    assert.ok(back, kind);
    assert.equal(back.key, key, kind);
    assert.deepEqual(parseResource(kind, back.raw), value, kind);
  }
});

test("node records are PodcryptNodes: the record in spec, its status in .status", () => {
  const value = parseResource("nodes", { ...(samples.nodes as object), status: { errors: ["e"] } });
  const parts = toKube("nodes", value);
  assert.equal(REFS.nodes.kind, "PodcryptNode");
  assert.equal(REFS.nodes.group, "podcrypt.io");
  assert.deepEqual((parts.body["spec"] as { publicKeys: unknown }).publicKeys, { "3": KEY });
  assert.equal((parts.body["spec"] as { saInstance?: unknown }).saInstance, "5a".repeat(16));
  assert.equal((parts.body["spec"] as { name?: unknown }).name, undefined);
  assert.deepEqual(parts.body["status"], { errors: ["e"] });
  const broken = fromKube("nodes", { metadata: { name: "n" }, spec: { underlay: "not an object" } });
  assert.throws(() => parseResource("nodes", broken.raw), /underlay/);
});

test("a cluster-wide policy is a StarlingX IPsecPolicy, rules in its own field names", () => {
  const value = parseResource("encryptionpolicies", {
    name: "all-dns",
    policies: [{ name: "r", service: "s", namespace: "n", ports: "tcp/1" }],
  });
  const parts = toKube("encryptionpolicies", value);
  assert.deepEqual(parts.body["spec"], {
    policies: [{ name: "r", servicename: "s", servicens: "n", serviceports: "tcp/1" }],
  });
  assert.deepEqual(locate("encryptionpolicies", "all-dns"), {
    ref: IPSEC_POLICY_REF,
    namespace: "",
    name: "all-dns",
  });
  const back = fromKube(
    "encryptionpolicies",
    asObject("encryptionpolicies", "all-dns", parts),
    IPSEC_POLICY_REF,
  );
  assert.equal(back?.key, "all-dns");
  assert.deepEqual(parseResource("encryptionpolicies", back!.raw), value);
  assert.equal(
    fromKube("encryptionpolicies", { metadata: { name: "x", namespace: "other" }, spec: {} })?.key,
    "other/x",
  );
});

test("policy status: podcrypt's fields only, and only when they validate", () => {
  const status = {
    conditions: [
      {
        type: "Accepted",
        status: "True",
        reason: "Valid",
        message: "the policy is valid",
        lastTransitionTime: "2026-01-01T00:00:00Z",
      },
    ],
    programmedNodes: 2,
    nodes: 3,
    selectedEndpoints: 4,
  };
  // StarlingX's own summary field sits beside podcrypt's.
  assert.deepEqual(policyStatusOf({ metadata: {}, status: { ...status, status: "ok" } }), status);
  assert.equal(policyStatusOf({ metadata: {}, status: { ...status, programmedNodes: -1 } }), undefined);
  const obj = {
    metadata: { name: "p", namespace: "ns" },
    spec: { policies: [{ name: "r", service: "s", namespace: "n", ports: "tcp/1" }] },
    status: { conditions: "garbage" },
  };
  const back = fromKube("encryptionpolicies", obj);
  assert.equal(back?.raw["status"], undefined, "a broken status does not make the policy invalid");
  assert.doesNotThrow(() => parseResource("encryptionpolicies", back!.raw));
});

test("IPsecPolicy converts field by field", () => {
  assert.deepEqual(
    fromIpsecPolicy({
      metadata: { name: "p" },
      spec: { policies: [{ servicename: "web", servicens: "default", serviceports: "tcp/80" }] },
    }),
    {
      name: "p",
      policies: [{ name: "web-0", service: "web", namespace: "default", ports: "tcp/80" }],
    },
  );
});

test("API paths", () => {
  assert.equal(apiPath(REFS.nodes, "", "n1"), "/apis/podcrypt.io/v1/podcryptnodes/n1");
  assert.equal(apiPath(KUBE_NODE_REF, "", "n1"), "/api/v1/nodes/n1");
  assert.equal(apiPath(REFS.services, "kube-system"), "/api/v1/namespaces/kube-system/services");
  assert.equal(apiPath(REFS.encryptionpolicies, ""), "/apis/podcrypt.io/v1/encryptionpolicies");
  assert.equal(
    apiPath(REFS.clusterencryptions, "ignored", "default"),
    "/apis/podcrypt.io/v1/clusterencryptions/default",
  );
});

test("taintPatch: appends or removes only that taint, after a test of the resourceVersion", () => {
  const ours = { key: "podcrypt.io/not-ready", effect: "NoSchedule" } as const;
  const other = { key: "example.com/dedicated", value: "gpu", effect: "NoSchedule" };
  const node = (spec?: object): KubeObject => ({
    metadata: { name: "n", resourceVersion: "42" },
    ...(spec === undefined ? {} : { spec }),
  });
  const test = { op: "test", path: "/metadata/resourceVersion", value: "42" };
  assert.deepEqual(taintPatch(node({}), ours, true), [
    test,
    { op: "add", path: "/spec/taints", value: [ours] },
  ]);
  assert.deepEqual(taintPatch(node(), ours, true), [
    test,
    { op: "add", path: "/spec", value: { taints: [ours] } },
  ]);
  assert.deepEqual(taintPatch(node({ taints: [other] }), ours, true), [
    test,
    { op: "add", path: "/spec/taints/-", value: ours },
  ]);
  assert.equal(taintPatch(node({ taints: [other, ours] }), ours, true), undefined);
  // The same key with another effect is another taint: not ours to remove, nor to count as present.
  const noExecute = { ...ours, effect: "NoExecute" };
  assert.deepEqual(taintPatch(node({ taints: [noExecute] }), ours, true), [
    test,
    { op: "add", path: "/spec/taints/-", value: ours },
  ]);
  assert.equal(taintPatch(node({ taints: [other, noExecute] }), ours, false), undefined);
  assert.equal(taintPatch(node({}), ours, false), undefined);
  // Removed by index, the last first (a duplicate someone added goes too).
  assert.deepEqual(taintPatch(node({ taints: [ours, other, ours] }), ours, false), [
    test,
    { op: "remove", path: "/spec/taints/2" },
    { op: "remove", path: "/spec/taints/0" },
  ]);
});
