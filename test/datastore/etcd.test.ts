import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isRevisionGoneError } from "../../src/datastore/index.js";
import { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import { runConformance, sampleNode, waitFor } from "./conformance.js";
import { EtcdTestServer } from "../support/etcd-server.js";

let server: EtcdTestServer | undefined;
before(async () => {
  server = await EtcdTestServer.start();
});
after(async () => {
  await server?.stop();
});

runConformance("etcd", async () => {
  const store = new EtcdDatastore({ hosts: server!.endpoint });
  return { store, close: () => store.close(), restart: () => server!.restart() };
});

describe("etcd specifics", () => {
  it("a watch from a compacted revision gets gone; relisting recovers", async () => {
    const store = new EtcdDatastore({ hosts: server!.endpoint, prefix: "/podcrypt-compact/" });
    try {
      const nodes = store.collection("nodes");
      const start = (await nodes.list()).revision;
      await nodes.create(sampleNode("c1"));
      const r = await nodes.update(sampleNode("c1", "192.0.2.2"));
      await store.client.kv.compact({ revision: r.revision, physical: true });
      let gone: unknown;
      await nodes
        .watch(start, { event: () => {}, gone: (e) => void (gone = e) })
        .catch((e: unknown) => (gone = e));
      await waitFor(() => gone !== undefined, 5_000, "gone");
      assert.ok(isRevisionGoneError(gone), String(gone));
      const relist = await nodes.list();
      const seen: string[] = [];
      const w = await nodes.watch(relist.revision, { event: (e) => void seen.push(e.type), gone: () => {} });
      await nodes.delete("c1");
      await waitFor(() => seen.length === 1, 5_000, "event after relist");
      assert.deepEqual(seen, ["DELETED"]);
      await w.close();
    } finally {
      await store.close();
    }
  });
});
