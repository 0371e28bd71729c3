import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { KubeApiServer, podcryptCrds, PATCH_TYPES } from "./index.js";

interface Reply {
  code: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

async function call(
  server: KubeApiServer,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
  token?: string,
): Promise<Reply> {
  const headers: Record<string, string> = { "Content-Type": contentType };
  if (token !== undefined) headers["Authorization"] = `Bearer ${token}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(server.url + path, init);
  const text = await res.text();
  return { code: res.status, body: text === "" ? undefined : JSON.parse(text) };
}

/** Reads a watch stream line by line; `next()` resolves with the next event. */
class WatchReader {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private readonly events: any[] = [];
  private waiter: (() => void) | undefined;
  ended = false;
  private readonly req;

  constructor(server: KubeApiServer, path: string) {
    this.req = request(server.url + path, (res) => {
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          this.events.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
        this.waiter?.();
      });
      res.on("end", () => {
        this.ended = true;
        this.waiter?.();
      });
    });
    this.req.on("error", () => {});
    this.req.end();
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async next(): Promise<any> {
    while (this.events.length === 0) {
      if (this.ended) throw new Error("watch ended");
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    return this.events.shift();
  }

  /** Resolves once the server has ended the stream and every event was read. */
  async end(): Promise<void> {
    while (!this.ended) await new Promise<void>((resolve) => (this.waiter = resolve));
    assert.equal(this.events.length, 0, "no unread events");
  }

  close(): void {
    this.req.destroy();
  }
}

const node = (name: string, labels: Record<string, string> = {}): unknown => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name, labels },
});

describe("kube-apiserver test server", () => {
  let s: KubeApiServer;
  const readers: WatchReader[] = [];
  const watch = (path: string): WatchReader => {
    const r = new WatchReader(s, path);
    readers.push(r);
    return r;
  };

  before(async () => {
    s = await KubeApiServer.start({ bookmarkIntervalMs: 0, historyLimit: 50 });
  });
  after(async () => {
    for (const r of readers) r.close();
    await s.close();
  });

  test("create, get, list; AlreadyExists and NotFound are real Status objects", async () => {
    const created = await call(s, "POST", "/api/v1/nodes", node("n1", { role: "a" }));
    assert.equal(created.code, 201);
    assert.match(created.body.metadata.resourceVersion, /^\d+$/);
    assert.match(created.body.metadata.uid, /^[0-9a-f-]{36}$/);
    assert.match(created.body.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const dup = await call(s, "POST", "/api/v1/nodes", node("n1"));
    assert.equal(dup.code, 409);
    assert.deepEqual(dup.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'nodes "n1" already exists',
      reason: "AlreadyExists",
      details: { name: "n1", kind: "nodes" },
      code: 409,
    });

    const missing = await call(s, "GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/nope");
    assert.equal(missing.code, 404);
    assert.equal(missing.body.reason, "NotFound");
    assert.equal(missing.body.message, 'leases.coordination.k8s.io "nope" not found');
    assert.equal(missing.body.details.group, "coordination.k8s.io");

    const got = await call(s, "GET", "/api/v1/nodes/n1");
    assert.equal(got.body.kind, "Node");
    assert.equal(got.body.metadata.resourceVersion, created.body.metadata.resourceVersion);

    await call(s, "POST", "/api/v1/nodes", node("n2", { role: "b" }));
    const list = await call(s, "GET", "/api/v1/nodes?labelSelector=role%3Da");
    assert.equal(list.body.kind, "NodeList");
    assert.deepEqual(
      list.body.items.map((n: { metadata: { name: string } }) => n.metadata.name),
      ["n1"],
    );
    assert.ok(Number(list.body.metadata.resourceVersion) > Number(created.body.metadata.resourceVersion));
    const byName = await call(s, "GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dn2");
    assert.deepEqual(
      byName.body.items.map((n: { metadata: { name: string } }) => n.metadata.name),
      ["n2"],
    );
    const badField = await call(s, "GET", "/api/v1/nodes?fieldSelector=spec.foo%3Dx");
    assert.equal(badField.code, 400);
  });

  test("names are validated (422 Invalid) and namespaces must exist", async () => {
    const bad = await call(s, "POST", "/api/v1/nodes", node("Bad_Name"));
    assert.equal(bad.code, 422);
    assert.equal(bad.body.reason, "Invalid");
    assert.equal(bad.body.details.causes[0].field, "metadata.name");
    const noNs = await call(s, "POST", "/api/v1/namespaces/absent/services", { metadata: { name: "svc" } });
    assert.equal(noNs.code, 404);
    assert.equal(noNs.body.message, 'namespaces "absent" not found');
    const wrongKind = await call(s, "POST", "/api/v1/nodes", { kind: "Service", metadata: { name: "x" } });
    assert.equal(wrongKind.code, 400);
  });

  test("PUT: optimistic concurrency on resourceVersion, unconditional without one", async () => {
    const cur = (await call(s, "GET", "/api/v1/nodes/n1")).body;
    const ok = await call(s, "PUT", "/api/v1/nodes/n1", {
      ...cur,
      metadata: { ...cur.metadata, annotations: { "podcrypt.io/x": "1" } },
    });
    assert.equal(ok.code, 200);
    assert.notEqual(ok.body.metadata.resourceVersion, cur.metadata.resourceVersion);
    assert.equal(ok.body.metadata.uid, cur.metadata.uid);

    const stale = await call(s, "PUT", "/api/v1/nodes/n1", cur);
    assert.equal(stale.code, 409);
    assert.equal(stale.body.reason, "Conflict");
    assert.match(
      stale.body.message,
      /^Operation cannot be fulfilled on nodes "n1": the object has been modified/,
    );

    const uncond = await call(s, "PUT", "/api/v1/nodes/n1", {
      metadata: { name: "n1", annotations: { "podcrypt.io/x": "2" } },
    });
    assert.equal(uncond.code, 200);
    assert.equal(uncond.body.metadata.annotations["podcrypt.io/x"], "2");

    const same = await call(s, "PUT", "/api/v1/nodes/n1", uncond.body);
    assert.equal(
      same.body.metadata.resourceVersion,
      uncond.body.metadata.resourceVersion,
      "no-op keeps the RV",
    );

    const absent = await call(s, "PUT", "/api/v1/nodes/absent", { metadata: { name: "absent" } });
    assert.equal(absent.code, 404);
    const mismatch = await call(s, "PUT", "/api/v1/nodes/n1", { metadata: { name: "n2" } });
    assert.equal(mismatch.code, 400);
  });

  test("PATCH: merge, strategic (as merge) and JSON patch; stale resourceVersion conflicts", async () => {
    const cur = (await call(s, "GET", "/api/v1/nodes/n2")).body;
    const merged = await call(
      s,
      "PATCH",
      "/api/v1/nodes/n2",
      { metadata: { annotations: { "podcrypt.io/a": "1" }, labels: { role: null } } },
      PATCH_TYPES.merge,
    );
    assert.equal(merged.code, 200);
    assert.equal(merged.body.metadata.annotations["podcrypt.io/a"], "1");
    assert.equal(merged.body.metadata.labels.role, undefined);

    const strategic = await call(
      s,
      "PATCH",
      "/api/v1/nodes/n2",
      { metadata: { annotations: { "podcrypt.io/b": "2" } } },
      PATCH_TYPES.strategic,
    );
    assert.deepEqual(strategic.body.metadata.annotations, { "podcrypt.io/a": "1", "podcrypt.io/b": "2" });

    const json = await call(
      s,
      "PATCH",
      "/api/v1/nodes/n2",
      [{ op: "remove", path: "/metadata/annotations/podcrypt.io~1a" }],
      PATCH_TYPES.json,
    );
    assert.deepEqual(json.body.metadata.annotations, { "podcrypt.io/b": "2" });

    const stale = await call(
      s,
      "PATCH",
      "/api/v1/nodes/n2",
      { metadata: { resourceVersion: cur.metadata.resourceVersion, annotations: { x: "y" } } },
      PATCH_TYPES.merge,
    );
    assert.equal(stale.code, 409);
    const fresh = await call(
      s,
      "PATCH",
      "/api/v1/nodes/n2",
      { metadata: { resourceVersion: json.body.metadata.resourceVersion, annotations: { x: "y" } } },
      PATCH_TYPES.merge,
    );
    assert.equal(fresh.code, 200);
    const unsupported = await call(s, "PATCH", "/api/v1/nodes/n2", {}, "application/apply-patch+yaml");
    assert.equal(unsupported.code, 415);
  });

  test("CRDs: custom resources served once registered, status subresource, generation", async () => {
    const before = await call(s, "GET", "/apis/podcrypt.io/v1/clusterencryptions");
    assert.equal(before.code, 404);
    for (const crd of podcryptCrds()) {
      const r = await call(s, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
      assert.equal(r.code, 201, JSON.stringify(r.body));
      assert.ok(
        r.body.status.conditions.some(
          (c: { type: string; status: string }) => c.type === "Established" && c.status === "True",
        ),
      );
    }
    const base = "/apis/podcrypt.io/v1/clusterencryptions";
    const ce = await call(s, "POST", base, {
      apiVersion: "podcrypt.io/v1",
      kind: "ClusterEncryption",
      metadata: { name: "default" },
      spec: { enabled: true },
      status: { phase: "dropped on create" },
    });
    assert.equal(ce.code, 201);
    assert.equal(ce.body.status, undefined);
    assert.equal(ce.body.metadata.generation, 1);

    const st = await call(s, "PUT", `${base}/default/status`, {
      ...ce.body,
      spec: { enabled: false },
      status: { phase: "idle" },
    });
    assert.equal(st.code, 200);
    assert.deepEqual(st.body.spec, { enabled: true }, "status write ignores spec");
    assert.deepEqual(st.body.status, { phase: "idle" });
    assert.equal(st.body.metadata.generation, 1);

    const main = await call(s, "PUT", `${base}/default`, {
      ...st.body,
      spec: { enabled: false },
      status: { phase: "x" },
    });
    assert.deepEqual(main.body.status, { phase: "idle" }, "main write keeps status");
    assert.equal(main.body.metadata.generation, 2);

    const strategic = await call(s, "PATCH", `${base}/default`, { spec: { a: 1 } }, PATCH_TYPES.strategic);
    assert.equal(strategic.code, 415, "no strategic merge for custom resources");
    const stPatch = await call(
      s,
      "PATCH",
      `${base}/default/status`,
      { status: { epoch: 2 } },
      PATCH_TYPES.merge,
    );
    assert.deepEqual(stPatch.body.status, { phase: "idle", epoch: 2 });

    const ns = await call(s, "POST", "/apis/podcrypt.io/v1/namespaces/default/encryptionpolicies", {
      metadata: { name: "p" },
      spec: { policies: [] },
    });
    assert.equal(ns.code, 201);
    const list = await call(s, "GET", "/apis/podcrypt.io/v1/encryptionpolicies");
    assert.equal(list.body.items[0].kind, "EncryptionPolicy", "custom resource items carry kind");
    const clusterPath = await call(s, "GET", "/apis/podcrypt.io/v1/namespaces/default/clusterencryptions");
    assert.equal(clusterPath.code, 404, "cluster-scoped resources have no namespaced path");

    const ipsec = await call(s, "POST", "/apis/starlingx.io/v1/ipsecpolicies", {
      metadata: { name: "dns" },
      spec: { policies: [{ servicename: "kube-dns", servicens: "kube-system", serviceports: "udp/53" }] },
    });
    assert.equal(ipsec.code, 201);

    const discovery = await call(s, "GET", "/apis/podcrypt.io/v1");
    assert.ok(discovery.body.resources.some((r: { name: string }) => r.name === "clusterencryptions/status"));

    const delCrd = await call(
      s,
      "DELETE",
      "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ipsecpolicies.starlingx.io",
    );
    assert.equal(delCrd.code, 200);
    const gone = await call(s, "GET", "/apis/starlingx.io/v1/ipsecpolicies/dns");
    assert.equal(gone.code, 404);
  });

  test("watch: replay from a resourceVersion, live events, selector transitions, bookmarks", async () => {
    const list = await call(s, "GET", "/api/v1/nodes");
    const rv = list.body.metadata.resourceVersion;
    await call(s, "POST", "/api/v1/nodes", node("w1", { watch: "yes" }));
    const w = watch(
      `/api/v1/nodes?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true&labelSelector=watch%3Dyes`,
    );
    const added = await w.next();
    assert.equal(added.type, "ADDED");
    assert.equal(added.object.metadata.name, "w1");
    assert.equal(added.object.kind, "Node");

    await call(s, "PATCH", "/api/v1/nodes/w1", { metadata: { annotations: { a: "1" } } }, PATCH_TYPES.merge);
    const modified = await w.next();
    assert.equal(modified.type, "MODIFIED");
    assert.equal(modified.object.metadata.annotations.a, "1");

    await call(s, "PATCH", "/api/v1/nodes/w1", { metadata: { labels: { watch: "no" } } }, PATCH_TYPES.merge);
    const left = await w.next();
    assert.equal(left.type, "DELETED", "leaving the selector is a DELETED");

    await call(s, "POST", "/api/v1/nodes", node("unrelated"));
    await call(s, "PATCH", "/api/v1/nodes/w1", { metadata: { labels: { watch: "yes" } } }, PATCH_TYPES.merge);
    const back = await w.next();
    assert.equal(back.type, "ADDED", "entering the selector is an ADDED");

    s.bookmarkNow();
    const bm = await w.next();
    assert.equal(bm.type, "BOOKMARK");
    assert.equal(bm.object.metadata.resourceVersion, String(s.store.revision()));

    const del = await call(s, "DELETE", "/api/v1/nodes/w1");
    const deleted = await w.next();
    assert.equal(deleted.type, "DELETED");
    assert.equal(deleted.object.metadata.resourceVersion, del.body.metadata.resourceVersion);
    assert.ok(Number(del.body.metadata.resourceVersion) > Number(back.object.metadata.resourceVersion));
    w.close();
  });

  test("watch without allowWatchBookmarks gets none; resourceVersion 0 starts with the current objects", async () => {
    const w = watch("/api/v1/nodes?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dn1");
    const first = await w.next();
    assert.equal(first.type, "ADDED");
    assert.equal(first.object.metadata.name, "n1");
    s.bookmarkNow();
    await call(s, "PATCH", "/api/v1/nodes/n1", { metadata: { labels: { touched: "1" } } }, PATCH_TYPES.merge);
    const next = await w.next();
    assert.equal(next.type, "MODIFIED", "no BOOKMARK before the change");
    w.close();
  });

  test("410 Gone: a watch from before the retained history gets one ERROR Status, then the stream ends", async () => {
    const old = (await call(s, "GET", "/api/v1/nodes")).body.metadata.resourceVersion;
    await call(s, "PATCH", "/api/v1/nodes/n1", { metadata: { labels: { touched: "2" } } }, PATCH_TYPES.merge);
    s.compact();
    const w = watch(`/api/v1/nodes?watch=1&resourceVersion=${old}`);
    const err = await w.next();
    assert.equal(err.type, "ERROR");
    assert.equal(err.object.kind, "Status");
    assert.equal(err.object.code, 410);
    assert.equal(err.object.reason, "Expired");
    await w.end();

    const now = (await call(s, "GET", "/api/v1/nodes")).body.metadata.resourceVersion;
    const ok = watch(`/api/v1/nodes?watch=1&resourceVersion=${now}`);
    await call(s, "PATCH", "/api/v1/nodes/n1", { metadata: { labels: { touched: "3" } } }, PATCH_TYPES.merge);
    assert.equal((await ok.next()).type, "MODIFIED");
    s.endWatches({ gone: true });
    assert.equal((await ok.next()).object.code, 410);
    await ok.end();
  });

  test("history window: more changes than historyLimit expire older resourceVersions", async () => {
    const old = (await call(s, "GET", "/api/v1/nodes")).body.metadata.resourceVersion;
    for (let i = 0; i < 51; i++) {
      await call(
        s,
        "PATCH",
        "/api/v1/nodes/n2",
        { metadata: { labels: { i: String(i) } } },
        PATCH_TYPES.merge,
      );
    }
    const w = watch(`/api/v1/nodes?watch=1&resourceVersion=${old}`);
    assert.equal((await w.next()).object.code, 410);
    await w.end();
  });

  test("finalizers: delete marks, removing the last finalizer deletes", async () => {
    await call(s, "POST", "/api/v1/nodes", {
      metadata: { name: "fin", finalizers: ["podcrypt.io/cleanup"] },
    });
    const marked = await call(s, "DELETE", "/api/v1/nodes/fin");
    assert.equal(marked.code, 200);
    assert.ok(marked.body.metadata.deletionTimestamp);
    assert.equal((await call(s, "GET", "/api/v1/nodes/fin")).code, 200);
    await call(s, "PATCH", "/api/v1/nodes/fin", { metadata: { finalizers: null } }, PATCH_TYPES.merge);
    assert.equal((await call(s, "GET", "/api/v1/nodes/fin")).code, 404);
  });

  test("DELETE: preconditions conflict, absent is NotFound, deletecollection by label", async () => {
    const cur = (await call(s, "GET", "/api/v1/nodes/n2")).body;
    const pre = await call(s, "DELETE", "/api/v1/nodes/n2", { preconditions: { resourceVersion: "1" } });
    assert.equal(pre.code, 409);
    const ok = await call(s, "DELETE", "/api/v1/nodes/n2", {
      preconditions: { resourceVersion: cur.metadata.resourceVersion },
    });
    assert.equal(ok.code, 200);
    assert.equal((await call(s, "DELETE", "/api/v1/nodes/n2")).code, 404);
    await call(s, "POST", "/api/v1/namespaces/default/endpoints", {
      metadata: { name: "e1", labels: { g: "x" } },
    });
    await call(s, "POST", "/api/v1/namespaces/default/endpoints", {
      metadata: { name: "e2", labels: { g: "y" } },
    });
    const dc = await call(s, "DELETE", "/api/v1/namespaces/default/endpoints?labelSelector=g%3Dx");
    assert.deepEqual(
      dc.body.items.map((o: { metadata: { name: string } }) => o.metadata.name),
      ["e1"],
    );
    const left = await call(s, "GET", "/api/v1/endpoints");
    assert.deepEqual(
      left.body.items.map((o: { metadata: { name: string } }) => o.metadata.name),
      ["e2"],
    );
  });

  test("request log: verb, group, resource, subresource, namespace, user of every request", async () => {
    s.clearRequests();
    await call(
      s,
      "GET",
      "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
      undefined,
      "application/json",
      "tok",
    );
    await call(
      s,
      "PATCH",
      "/apis/podcrypt.io/v1/clusterencryptions/default/status",
      { status: {} },
      PATCH_TYPES.merge,
    );
    const w = watch("/api/v1/namespaces/default/services?watch=1");
    while (s.requests.length < 3) await new Promise((r) => setTimeout(r, 10));
    w.close();
    assert.deepEqual(
      s.requests.map((r) => [r.verb, r.apiGroup, r.resource, r.subresource, r.namespace, r.user, r.code]),
      [
        ["list", "coordination.k8s.io", "leases", "", "kube-system", "token:tok", 200],
        ["patch", "podcrypt.io", "clusterencryptions", "status", "", "system:anonymous", 200],
        ["watch", "", "services", "", "default", "system:anonymous", 200],
      ],
    );
  });
});

describe("kube-apiserver authentication and authorization", () => {
  let s: KubeApiServer;
  before(async () => {
    s = await KubeApiServer.start({
      bookmarkIntervalMs: 0,
      users: { "agent-token": "system:serviceaccount:podcrypt:agent" },
      authorize: (r) => !(r.resource === "nodes" && r.verb === "delete"),
    });
  });
  after(async () => {
    await s.close();
  });

  test("unknown token is 401, denied verb is 403 with the RBAC wording, both recorded", async () => {
    assert.equal((await call(s, "GET", "/api/v1/nodes")).code, 401);
    assert.equal((await call(s, "GET", "/api/v1/nodes", undefined, "application/json", "wrong")).code, 401);
    const ok = await call(s, "POST", "/api/v1/nodes", node("a"), "application/json", "agent-token");
    assert.equal(ok.code, 201);
    const denied = await call(s, "DELETE", "/api/v1/nodes/a", undefined, "application/json", "agent-token");
    assert.equal(denied.code, 403);
    assert.equal(denied.body.reason, "Forbidden");
    assert.equal(
      denied.body.message,
      'nodes "a" is forbidden: User "system:serviceaccount:podcrypt:agent" cannot delete resource "nodes" in API group "" at the cluster scope',
    );
    assert.deepEqual(
      s.requests.map((r) => [r.verb, r.user, r.code]),
      [
        ["create", "system:serviceaccount:podcrypt:agent", 201],
        ["delete", "system:serviceaccount:podcrypt:agent", 403],
      ],
    );
  });
});
