import { test } from "node:test";
import assert from "node:assert/strict";
import { parseResource, type ResourceKind } from "../../model/index.js";
import {
  apiPath,
  fromIpsecPolicy,
  fromKube,
  locate,
  NODE_ANNOTATIONS,
  REFS,
  SCOPE_LABEL,
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
};

/** What the API server would store for `parts` at `key`. */
function asObject(kind: ResourceKind, key: string, parts: ReturnType<typeof toKube>): KubeObject {
  const { namespace, name } = locate(kind, key, "podcrypt-system");
  return {
    metadata: {
      name,
      ...(namespace === "" ? {} : { namespace }),
      labels: parts.labels,
      annotations: parts.annotations,
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
    const back = fromKube(kind, asObject(kind, key, toKube(kind, value)), "podcrypt-system");
    assert.ok(back, kind);
    assert.equal(back.key, key, kind);
    assert.deepEqual(parseResource(kind, back.raw), value, kind);
  }
});

test("node records are podcrypt.io annotations; a Node without them holds none", () => {
  const parts = toKube("nodes", parseResource("nodes", samples.nodes));
  assert.deepEqual(JSON.parse(parts.annotations[NODE_ANNOTATIONS.publicKeys]!), { "3": KEY });
  assert.ok(Object.keys(parts.annotations).every((k) => k.startsWith("podcrypt.io/")));
  assert.equal(fromKube("nodes", { metadata: { name: "n", annotations: { other: "x" } } }, "ns"), undefined);
  const broken = fromKube(
    "nodes",
    { metadata: { name: "n", annotations: { [NODE_ANNOTATIONS.underlay]: "{not json" } } },
    "ns",
  );
  assert.throws(() => parseResource("nodes", broken!.raw), /underlay/);
});

test("a cluster-wide policy lives in the datastore namespace with the scope label", () => {
  const value = parseResource("encryptionpolicies", {
    name: "all-dns",
    policies: [{ name: "r", service: "s", namespace: "n", ports: "tcp/1" }],
  });
  const parts = toKube("encryptionpolicies", value);
  assert.equal(parts.labels[SCOPE_LABEL], "cluster");
  assert.deepEqual(locate("encryptionpolicies", "all-dns", "podcrypt-system"), {
    namespace: "podcrypt-system",
    name: "all-dns",
  });
  const back = fromKube(
    "encryptionpolicies",
    asObject("encryptionpolicies", "all-dns", parts),
    "podcrypt-system",
  );
  assert.equal(back?.key, "all-dns");
  assert.equal(
    fromKube(
      "encryptionpolicies",
      { metadata: { name: "x", namespace: "other", labels: { [SCOPE_LABEL]: "cluster" } }, spec: {} },
      "podcrypt-system",
    )?.key,
    "other/x",
  );
});

test("IPsecPolicy converts field by field", () => {
  assert.deepEqual(
    fromIpsecPolicy({
      metadata: { name: "p", namespace: "ns" },
      spec: { policies: [{ servicename: "web", servicens: "default", serviceports: "tcp/80" }] },
    }),
    {
      name: "p",
      namespace: "ns",
      policies: [{ name: "web-0", service: "web", namespace: "default", ports: "tcp/80" }],
    },
  );
});

test("API paths", () => {
  assert.equal(apiPath(REFS.nodes, "", "n1"), "/api/v1/nodes/n1");
  assert.equal(apiPath(REFS.services, "kube-system"), "/api/v1/namespaces/kube-system/services");
  assert.equal(apiPath(REFS.encryptionpolicies, ""), "/apis/podcrypt.io/v1/encryptionpolicies");
  assert.equal(
    apiPath(REFS.clusterencryptions, "ignored", "default"),
    "/apis/podcrypt.io/v1/clusterencryptions/default",
  );
});
