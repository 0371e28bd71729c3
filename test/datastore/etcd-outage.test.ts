/**
 * etcd with authentication through an outage: a node's calls in flight when etcd goes and when it
 * comes back (etcd forgets its auth tokens on a restart) all settle, and writes resume. Runs 60 to
 * 100 s by design (a 30 s outage, 30 s after it, then until every call has settled, at most past
 * the 30 s call deadline); its own file so the unit tier runs it beside the others
 * (scripts/test-files.mjs lists it first).
 */
// test-runs-long
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { nodeUser } from "../../src/datastore/etcd/auth.js";
import { sampleNode } from "./conformance.js";
import { startAuthEtcd, type AuthEtcd } from "./etcd-auth-lab.js";
import type { EtcdTestServer } from "../support/etcd-server.js";

let lab: AuthEtcd;
let server: EtcdTestServer;
before(async () => {
  lab = await startAuthEtcd("podcrypt-etcd-outage-");
  server = lab.server;
});
after(async () => {
  await lab?.stop();
});
const open = (user: string) => lab.open(user);

describe("etcd with authentication, after an outage", () => {
  it("a node's calls keep settling and it writes again once etcd is back from 30 s away", async () => {
    const store = await open(nodeUser("node-10"));
    const nodes = store.collection("nodes");
    // Heartbeats every 500 ms, not waiting for each other, as an agent's timers fire: calls are in
    // flight when etcd goes and when it comes back (etcd forgets its auth tokens on a restart).
    const beat = async (): Promise<void> => {
      const cur = await nodes.get("node-10");
      const heartbeat = new Date().toISOString();
      if (cur === undefined) await nodes.create({ ...sampleNode("node-10"), heartbeat });
      else await nodes.update({ ...cur.value, heartbeat }, { revision: cur.revision });
    };
    const calls: Array<{ at: number; settled?: number; ok?: boolean }> = [];
    const fire = (): void => {
      const c: { at: number; settled?: number; ok?: boolean } = { at: Date.now() };
      calls.push(c);
      beat().then(
        () => Object.assign(c, { settled: Date.now(), ok: true }),
        () => Object.assign(c, { settled: Date.now(), ok: false }),
      );
    };
    const timer = setInterval(fire, 500);
    try {
      await new Promise((r) => setTimeout(r, 2000));
      await server.halt();
      await new Promise((r) => setTimeout(r, 30_000));
      await server.resume();
      const back = Date.now();
      await new Promise((r) => setTimeout(r, 30_000));
      clearInterval(timer);
      // Past the call deadline (30 s): a call still open then hangs. The wait ends sooner once every
      // call has settled, as a settled call's time no longer changes.
      const deadline = Date.now() + 40_000;
      while (Date.now() < deadline && calls.some((c) => c.settled === undefined))
        await new Promise((r) => setTimeout(r, 250));
      const now = Date.now();
      const hung = calls.filter((c) => (c.settled ?? now) - c.at > 35_000);
      assert.deepEqual(
        hung.map((c) => `${c.at - back} ms`),
        [],
        `${hung.length} of ${calls.length} calls took over 35 s (times relative to etcd's return)`,
      );
      const first = calls.find((c) => c.at >= back && c.ok === true);
      assert.ok(first !== undefined, "no write succeeded within 30 s of etcd's return");
      process.stdout.write(
        `# ${calls.length} heartbeats; the first to succeed after etcd's return started ${first.at - back} ms after it\n`,
      );
    } finally {
      clearInterval(timer);
      await store.close();
    }
  });
});
