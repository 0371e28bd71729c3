import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { isConflictError, isNotFoundError, isRevisionGoneError } from "../../src/datastore/index.js";
import { API_CALLS, Informer, KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import { KubeApiServer, podcryptCrds } from "../support/kube-apiserver/index.js";
import { runConformance, sampleNode, waitFor } from "./conformance.js";

const NAMESPACE = "podcrypt-system";
let serverPromise: Promise<KubeApiServer> | undefined;

/** The shared test API server, with the CRDs and the datastore namespace installed. */
function server(): Promise<KubeApiServer> {
  serverPromise ??= (async () => {
    const s = await KubeApiServer.start({ bookmarkIntervalMs: 0 });
    for (const crd of podcryptCrds())
      s.store.create(s.store.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")!, "", crd);
    s.store.create(s.store.lookup("", "v1", "namespaces")!, "", { metadata: { name: NAMESPACE } });
    return s;
  })();
  return serverPromise;
}

async function connect(
  s: KubeApiServer,
  extra: { leaseCheckMs?: number } = {},
): Promise<KubernetesDatastore> {
  const kc = new KubeConfig();
  kc.loadFromOptions(s.kubeconfig("podcrypt-test"));
  return KubernetesDatastore.connect({
    kubeConfig: kc,
    namespace: NAMESPACE,
    ...extra,
  });
}

after(async () => {
  if (serverPromise !== undefined) await (await serverPromise).close();
});

runConformance("kubernetes", async () => {
  const store = await connect(await server());
  return { store, close: () => store.close() };
});

describe("kubernetes datastore: watches, 410 Gone, bookmarks, IPsecPolicy, API calls", () => {
  const stores: KubernetesDatastore[] = [];
  const open = async (): Promise<KubernetesDatastore> => {
    const ds = await connect(await server());
    stores.push(ds);
    return ds;
  };
  after(async () => {
    await Promise.allSettled(stores.map((d) => d.close()));
  });
  const nodeType = (s: KubeApiServer) => s.store.lookup("", "v1", "nodes")!;

  it("informer relists on 410 Gone and reports what it missed as added/deleted", async () => {
    const s = await server();
    const ds = await open();
    s.store.create(nodeType(s), "", { metadata: { name: "inf-a", labels: { informer: "t" } } });
    s.store.create(nodeType(s), "", { metadata: { name: "inf-b", labels: { informer: "t" } } });
    const added: string[] = [];
    const deleted: string[] = [];
    const inf = new Informer(
      ds.client.config,
      "/api/v1/nodes",
      () =>
        ds.client.list(
          { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false },
          "",
          "informer=t",
        ),
      {
        added: (o) => added.push(o.metadata?.name ?? ""),
        deleted: (o) => deleted.push(o.metadata?.name ?? ""),
      },
      { labelSelector: "informer=t" },
    );
    try {
      await inf.start();
      assert.deepEqual(added.sort(), ["inf-a", "inf-b"]);
      await waitFor(() => s.openWatches > 0, 5_000, "informer watching");
      // In one tick: the stream ends, changes happen it cannot see, history is compacted. The
      // informer's resume from its old resourceVersion gets 410 and must relist.
      s.endWatches();
      s.store.delete(nodeType(s), "", "inf-a");
      s.store.create(nodeType(s), "", { metadata: { name: "inf-c", labels: { informer: "t" } } });
      s.compact();
      await waitFor(
        () => inf.lists === 2 && added.includes("inf-c") && deleted.includes("inf-a"),
        10_000,
        "relist",
      );
      assert.deepEqual(deleted, ["inf-a"]);
      assert.deepEqual(
        inf
          .objects()
          .map((o) => o.metadata?.name)
          .sort(),
        ["inf-b", "inf-c"],
      );
      // Watching again after the relist.
      s.store.create(nodeType(s), "", { metadata: { name: "inf-d", labels: { informer: "t" } } });
      await waitFor(() => added.includes("inf-d"), 5_000, "event after relist");
    } finally {
      inf.close();
    }
  });

  it("a collection watch whose revision was compacted away reports gone (RevisionGoneError)", async () => {
    const s = await server();
    const ds = await open();
    const nodes = ds.collection("nodes");
    const start = await nodes.list();
    let gone: unknown;
    const w = await nodes.watch(start.revision, {
      event: () => {},
      gone: (e) => (gone = e),
    });
    try {
      await waitFor(() => s.openWatches > 0, 5_000, "watching");
      s.endWatches();
      await ds.collection("services").create({ name: "gone-svc", namespace: "default", ports: ["tcp/80"] });
      s.compact();
      await waitFor(() => gone !== undefined, 10_000, "gone");
      assert.ok(isRevisionGoneError(gone));
      // A new watch from before the compaction is told at once.
      let gone2: unknown;
      const w2 = await nodes.watch(start.revision, { event: () => {}, gone: (e) => (gone2 = e) });
      await waitFor(() => gone2 !== undefined, 5_000, "second gone");
      assert.ok(isRevisionGoneError(gone2));
      await w2.close();
    } finally {
      await w.close();
      await ds.collection("services").delete("default/gone-svc");
    }
  });

  it("bookmarks advance the watch revision, so resuming after compaction needs no relist", async () => {
    const s = await server();
    const ds = await open();
    const nodes = ds.collection("nodes");
    const start = await nodes.list();
    const seen: string[] = [];
    let gone = false;
    const w = await nodes.watch(start.revision, {
      event: (e) => void seen.push(`${e.type} ${e.key}`),
      gone: () => (gone = true),
    });
    try {
      // Changes of other kinds move the global resourceVersion but send this watch nothing.
      await ds.collection("services").create({ name: "bm-svc", namespace: "default", ports: ["tcp/80"] });
      await ds.collection("services").delete("default/bm-svc");
      assert.equal(w.revision, start.revision);
      const now = String(s.store.revision());
      s.bookmarkNow();
      await waitFor(() => w.revision === now, 5_000, "bookmark");
      // The stream ends, history up to the bookmark is compacted: the start revision is gone,
      // the bookmark's is not.
      s.endWatches();
      s.store.compact(Number(now));
      assert.ok(s.store.oldestWatchable() > Number(start.revision));
      await nodes.create(sampleNode("bm-node"));
      await waitFor(() => seen.length === 1, 10_000, "event after resume");
      assert.deepEqual(seen, ["ADDED bm-node"]);
      assert.equal(gone, false);
    } finally {
      await w.close();
      await nodes.delete("bm-node");
    }
  });

  it("StarlingX IPsecPolicy objects are the cluster-wide policies: list, watch, write, status", async () => {
    const s = await server();
    const ds = await open();
    const t = s.store.lookup("starlingx.io", "v1", "ipsecpolicies")!;
    const policies = ds.collection("encryptionpolicies");
    const start = await policies.list();
    const seen: string[] = [];
    const w = await policies.watch(start.revision, {
      event: (e) => {
        seen.push(`${e.type} ${e.key}${e.type === "INVALID" ? ` ${e.error.field}` : ""}`);
      },
      gone: () => {},
    });
    try {
      // kubectl apply of the seed's example, unchanged (rule names given), and one without names.
      s.store.create(t, "", {
        apiVersion: "starlingx.io/v1",
        kind: "IPsecPolicy",
        metadata: { name: "dns-policy" },
        spec: {
          policies: [
            { servicename: "kube-dns", servicens: "kube-system", serviceports: "udp/53,tcp/53,tcp/9153" },
          ],
        },
      });
      s.store.create(t, "", {
        metadata: { name: "bad-policy" },
        spec: { policies: [{ servicename: "web", servicens: "default", serviceports: "tcp/99999" }] },
      });
      // A namespaced EncryptionPolicy beside them.
      await policies.create({
        name: "web",
        namespace: "default",
        policies: [{ name: "web", service: "web", namespace: "default", ports: "tcp/80" }],
      });
      await waitFor(() => seen.length === 3, 10_000, "three events");
      assert.deepEqual(seen, [
        "ADDED dns-policy",
        "INVALID bad-policy spec.policies[0].serviceports",
        "ADDED default/web",
      ]);
      const res = await policies.list();
      assert.deepEqual(
        res.items.map((i) => [i.key, i.value.policies]),
        [
          ["default/web", [{ name: "web", service: "web", namespace: "default", ports: "tcp/80" }]],
          [
            "dns-policy",
            [
              {
                name: "kube-dns-0",
                service: "kube-dns",
                namespace: "kube-system",
                ports: "udp/53,tcp/53,tcp/9153",
              },
            ],
          ],
        ],
      );
      assert.deepEqual(
        res.invalid.map((i) => [i.key, i.error.field, i.generation]),
        [["bad-policy", "spec.policies[0].serviceports", 1]],
      );
      // A cluster-wide policy written through the datastore is an IPsecPolicy, in StarlingX's fields.
      await policies.create({
        name: "all-dns",
        policies: [{ name: "dns", service: "kube-dns", namespace: "kube-system", ports: "udp/53" }],
      });
      assert.deepEqual(s.store.get(t, "", "all-dns")["spec"], {
        policies: [
          { name: "dns", servicename: "kube-dns", servicens: "kube-system", serviceports: "udp/53" },
        ],
      });
      // Status goes through the status subresource, conditional on the revision, valid or not.
      const status = {
        conditions: [
          {
            type: "Accepted" as const,
            status: "False" as const,
            reason: "Invalid",
            message: "spec.policies[0].serviceports: bad",
            lastTransitionTime: "2026-01-01T00:00:00Z",
            observedGeneration: 1,
          },
        ],
        programmedNodes: 0,
        nodes: 3,
        selectedEndpoints: 0,
        observedGeneration: 1,
      };
      const bad = res.invalid[0]!;
      const rev = await ds.writePolicyStatus("bad-policy", status, { revision: bad.revision });
      await assert.rejects(
        ds.writePolicyStatus("bad-policy", status, { revision: bad.revision }),
        isConflictError,
      );
      await assert.rejects(ds.writePolicyStatus("nope", status, { revision: rev }), isNotFoundError);
      assert.deepEqual((await policies.list()).invalid[0]?.status, status);
      const web = (await policies.get("default/web"))!;
      await ds.writePolicyStatus("default/web", { ...status, conditions: [] }, { revision: web.revision });
      const after = (await policies.get("default/web"))!;
      assert.deepEqual(after.value.status?.nodes, 3);
      assert.equal(after.generation, 1, "a status write leaves the generation");
      // An update of the policy keeps the status (subresource) and moves the generation.
      await policies.update({
        ...after.value,
        policies: [{ ...after.value.policies[0]!, ports: "tcp/8080" }],
      });
      const updated = (await policies.get("default/web"))!;
      assert.equal(updated.generation, 2);
      assert.equal(updated.value.status?.nodes, 3);
      await policies.delete("all-dns");
      await policies.delete("default/web");
    } finally {
      await w.close();
      s.store.delete(t, "", "dns-policy", {});
      s.store.delete(t, "", "bad-policy", {});
    }
  });

  it("nodeNetwork reads a Node's addresses and pod CIDRs", async () => {
    const s = await server();
    const ds = await open();
    s.store.create(nodeType(s), "", {
      metadata: { name: "net-node" },
      spec: { podCIDR: "10.244.7.0/24", podCIDRs: ["10.244.7.0/24", "fd00:7::/64"] },
      status: {
        addresses: [
          { type: "Hostname", address: "net-node" },
          { type: "InternalIP", address: "192.0.2.7" },
        ],
      },
    });
    try {
      assert.deepEqual(await ds.nodeNetwork("net-node"), {
        addresses: [
          { type: "Hostname", address: "net-node" },
          { type: "InternalIP", address: "192.0.2.7" },
        ],
        podCIDRs: ["10.244.7.0/24", "fd00:7::/64"],
      });
      await assert.rejects(ds.nodeNetwork("no-such-node"), isNotFoundError);
    } finally {
      s.store.delete(nodeType(s), "", "net-node", {});
    }
  });

  it("every API request the client layer made is in API_CALLS", async () => {
    const s = await server();
    const listed = new Set(API_CALLS.map((c) => `${c.apiGroup}|${c.resource}|${c.subresource}|${c.verb}`));
    const made = new Set(
      s.requests
        .filter((r) => r.user === "token:podcrypt-test")
        .map((r) => `${r.apiGroup}|${r.resource}|${r.subresource}|${r.verb}`),
    );
    assert.ok(made.size > 10, "the suite made requests");
    const missing = [...made].filter((c) => !listed.has(c));
    assert.deepEqual(missing, [], "calls not declared in api-calls.ts");
  });
});
