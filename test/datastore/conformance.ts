/**
 * The datastore conformance suite: every backend runs it (local, etcd, kubernetes, memory).
 *
 * `factory` returns a new client of one shared underlying store each time it is called: clients
 * made by the same factory must see each other's writes, as separate processes would. `close`
 * closes that client like a process exiting (no resign, no revoke). `restart`, when given,
 * restarts the server (same data) so the suite can check that watches resume by themselves.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, it } from "node:test";
import { isValidationError } from "../../src/errors/index.js";
import type { NodeInput } from "../../src/model/index.js";
import { waitUntil } from "../support/wait.js";
import {
  isAlreadyExistsError,
  isConflictError,
  isLeaseExpiredError,
  isNotFoundError,
  type Datastore,
  type WatchEvent,
} from "../../src/datastore/index.js";

/** One client of the store under test. */
export interface ConformanceClient {
  store: Datastore;
  /** Closes this client as a process exit would. */
  close(): Promise<void>;
  /** Restarts the underlying server with the same data (backends with a server). */
  restart?(): Promise<void>;
}

/** Makes a new client of the shared store under test. */
export type ConformanceFactory = () => Promise<ConformanceClient>;

/** Options of the suite. */
export interface ConformanceOptions {
  /** Lease TTL used by the lease and leader tests (s). Default 2. */
  leaseTtlSeconds?: number;
}

const KEY_A = Buffer.alloc(32, 1).toString("base64");
const KEY_B = Buffer.alloc(32, 2).toString("base64");

/** A valid Node with a unique name. */
export function sampleNode(name: string, ipv4 = "192.0.2.10"): NodeInput {
  return {
    name,
    underlay: { ipv4 },
    podCIDRs: ["10.244.1.0/24"],
    capabilities: { wireguardKernel: false, xfrmKernel: false },
    publicKeys: { "1": KEY_A },
    backend: "wireguard-userspace",
  };
}

/** Polls `cond` every 20 ms until it holds; fails after `timeoutMs`. */
export const waitFor = (
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> => waitUntil(cond, timeoutMs, what, 20);

/** Retries `fn` until it succeeds (the backend may be restarting). */
async function retry<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const summary = (e: WatchEvent<unknown>): string => `${e.type} ${e.key}`;

/** Registers the conformance tests of backend `name`. */
export function runConformance(
  name: string,
  factory: ConformanceFactory,
  options: ConformanceOptions = {},
): void {
  const ttl = options.leaseTtlSeconds ?? 2;
  const clients: ConformanceClient[] = [];
  const open = async (): Promise<ConformanceClient> => {
    const c = await factory();
    clients.push(c);
    return c;
  };
  const uniq = (what: string): string => `${what}-${randomBytes(4).toString("hex")}`;

  describe(`datastore conformance: ${name}`, () => {
    after(async () => {
      await Promise.allSettled(clients.map((c) => c.close()));
    });

    it("creates, reads, updates and deletes, with typed errors", async () => {
      const { store } = await open();
      const nodes = store.collection("nodes");
      const n = uniq("crud");
      const created = await nodes.create(sampleNode(n));
      assert.equal(created.key, n);
      assert.equal(created.value.name, n);
      assert.deepEqual(created.value.acknowledgements, [], "defaults are applied");
      const got = await nodes.get(n);
      assert.ok(got);
      assert.equal(got.revision, created.revision);
      assert.deepEqual(got.value, created.value);
      await assert.rejects(nodes.create(sampleNode(n)), isAlreadyExistsError);

      const updated = await nodes.update({ ...sampleNode(n), publicKeys: { "1": KEY_A, "2": KEY_B } });
      assert.notEqual(updated.revision, created.revision);
      assert.equal((await nodes.get(n))?.value.publicKeys["2"], KEY_B);
      assert.ok((await nodes.list()).items.some((i) => i.key === n));

      await nodes.delete(n);
      assert.equal(await nodes.get(n), undefined);
      assert.ok(!(await nodes.list()).items.some((i) => i.key === n));
      await assert.rejects(nodes.delete(n), isNotFoundError);
      await assert.rejects(nodes.update(sampleNode(n)), isNotFoundError);

      // Namespaced kinds are keyed namespace/name.
      const svc = uniq("svc");
      const s = await store
        .collection("services")
        .create({ name: svc, namespace: "kube-system", ports: ["udp/53"] });
      assert.equal(s.key, `kube-system/${svc}`);
      await store.collection("services").delete(s.key);
    });

    it("rejects invalid objects with the field named, storing nothing", async () => {
      const { store } = await open();
      const n = uniq("invalid");
      await assert.rejects(
        store.collection("nodes").create({ ...sampleNode(n), publicKeys: { "1": "not-a-key" } }),
        (e: unknown) => isValidationError(e) && e.field === "publicKeys.1",
      );
      await assert.rejects(
        store.collection("encryptionpolicies").create({
          name: uniq("pol"),
          policies: [
            { name: "dns", service: "kube-dns", namespace: "kube-system", ports: "udp/53,tcp/99999" },
          ],
        }),
        (e: unknown) => isValidationError(e) && e.field === "policies.0.ports",
      );
      assert.equal(await store.collection("nodes").get(n), undefined);
    });

    it("policy status: written alone, conditional on the revision, seen by watchers", async () => {
      const { store } = await open();
      const policies = store.collection("encryptionpolicies");
      const name = uniq("status");
      const created = await policies.create({
        name,
        namespace: "default",
        policies: [{ name: uniq("r"), service: "web", namespace: "default", ports: "tcp/80" }],
      });
      assert.equal(created.value.status, undefined);
      const events: string[] = [];
      const w = await policies.watch(created.revision, {
        event: (e) => {
          if (e.key === created.key)
            events.push(
              e.type === "MODIFIED" ? `MODIFIED ${e.object.value.status?.programmedNodes}` : e.type,
            );
        },
        gone: () => {},
      });
      const status = {
        conditions: [
          {
            type: "Programmed" as const,
            status: "False" as const,
            reason: "Pending",
            message: "programmed on 1 of 2 nodes",
            lastTransitionTime: "2026-01-01T00:00:00Z",
          },
        ],
        programmedNodes: 1,
        nodes: 2,
        selectedEndpoints: 1,
      };
      try {
        const rev = await store.writePolicyStatus(created.key, status, { revision: created.revision });
        assert.notEqual(rev, created.revision);
        const got = await policies.get(created.key);
        assert.deepEqual(got?.value.status, status);
        assert.deepEqual(got?.value.policies, created.value.policies, "the rules are untouched");
        assert.equal(got?.revision, rev);
        await assert.rejects(
          store.writePolicyStatus(created.key, status, { revision: created.revision }),
          isConflictError,
        );
        await assert.rejects(
          store.writePolicyStatus(created.key, { ...status, nodes: -1 }, { revision: rev }),
          (e: unknown) => isValidationError(e) && e.field === "status.nodes",
        );
        await assert.rejects(
          store.writePolicyStatus(`default/${uniq("absent")}`, status, { revision: rev }),
          isNotFoundError,
        );
        await waitFor(() => events.includes("MODIFIED 1"), 10_000, "the status change");
      } finally {
        await w.close();
        await policies.delete(created.key);
      }
    });

    it("compare-and-swap: stale revisions conflict, concurrent writers exactly one wins", async () => {
      const a = (await open()).store.collection("nodes");
      const b = (await open()).store.collection("nodes");
      const n = uniq("cas");
      const v1 = await a.create(sampleNode(n));
      const v2 = await a.update(sampleNode(n, "192.0.2.11"), { revision: v1.revision });
      await assert.rejects(b.update(sampleNode(n, "192.0.2.12"), { revision: v1.revision }), isConflictError);
      await assert.rejects(b.delete(n, { revision: v1.revision }), isConflictError);
      assert.equal((await a.get(n))?.value.underlay.ipv4, "192.0.2.11");

      const results = await Promise.allSettled([
        a.update(sampleNode(n, "192.0.2.21"), { revision: v2.revision }),
        b.update(sampleNode(n, "192.0.2.22"), { revision: v2.revision }),
      ]);
      const won = results.filter((r) => r.status === "fulfilled");
      const lost = results.filter((r) => r.status === "rejected");
      assert.equal(won.length, 1, "exactly one CAS wins");
      assert.ok(
        lost.every((r) => isConflictError(r.reason)),
        "the other gets ConflictError",
      );
      const final = await a.get(n);
      assert.ok(final);
      await b.delete(n, { revision: final.revision });
      assert.equal(await a.get(n), undefined);
    });

    it("watch from a list revision delivers exactly the later changes, in order", async () => {
      const writer = (await open()).store.collection("nodes");
      const reader = (await open()).store;
      const p = uniq("watch");
      const [x, y, z] = [`${p}-x`, `${p}-y`, `${p}-z`];
      await writer.create(sampleNode(x));
      const listed = await reader.collection("nodes").list();
      assert.ok(
        listed.items.some((i) => i.key === x),
        "the list holds what was written before",
      );

      await writer.create(sampleNode(y));
      const xs = await writer.get(x);
      await writer.update(sampleNode(x, "192.0.2.99"), { revision: xs!.revision });
      await writer.delete(y);

      const seen: WatchEvent<unknown>[] = [];
      const w = await reader.collection("nodes").watch(listed.revision, {
        event: (e) => void (e.key.startsWith(p) && seen.push(e)),
        gone: () => assert.fail("unexpected gone"),
      });
      const other: WatchEvent<unknown>[] = [];
      const wOther = await reader.collection("services").watch(listed.revision, {
        event: (e) => void other.push(e),
        gone: () => {},
      });
      await writer.create(sampleNode(z));
      await waitFor(() => seen.length >= 4, 10_000, "4 events");
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(seen.map(summary), [`ADDED ${y}`, `MODIFIED ${x}`, `DELETED ${y}`, `ADDED ${z}`]);
      const mod = seen[1]!;
      assert.ok(
        mod.type === "MODIFIED" &&
          (mod.object.value as { underlay: { ipv4: string } }).underlay.ipv4 === "192.0.2.99",
      );
      assert.equal(other.filter((e) => e.key.includes(p)).length, 0, "other kinds see nothing");
      const revs = seen.map((e) => BigInt(e.revision));
      assert.ok(
        revs.every((r, i) => i === 0 || r > revs[i - 1]!),
        "revisions increase",
      );
      await w.close();
      await wOther.close();
      await writer.delete(x);
      await writer.delete(z);
    });

    it("a watch resumes by itself after the backend reconnects, with no gap or duplicate", async () => {
      const client = await open();
      const nodes = client.store.collection("nodes");
      const p = uniq("resume");
      const start = await nodes.list();
      const seen: string[] = [];
      // What the watch reported, by ms since the test's start: a failure says how far it got.
      const t0 = Date.now();
      const trail: string[] = [];
      const note = (what: string): void => void trail.push(`${Date.now() - t0} ms ${what}`);
      const w = await nodes.watch(start.revision, {
        event: (e) => void (e.key.startsWith(p) && seen.push(summary(e))),
        gone: () => assert.fail("unexpected gone"),
        error: (e) => note(`watch error: ${e.message}`),
      });
      await nodes.create(sampleNode(`${p}-1`));
      await waitFor(() => seen.length === 1, 10_000, "first event");
      if (client.restart) {
        await client.restart();
        note("backend restarted");
      } else {
        // No server to restart: a second client's watcher from the same revision must see the
        // same history, then both see what follows.
        const again: string[] = [];
        const w2 = await (await open()).store.collection("nodes").watch(start.revision, {
          event: (e) => void (e.key.startsWith(p) && again.push(summary(e))),
          gone: () => assert.fail("unexpected gone"),
        });
        await waitFor(() => again.length === 1, 10_000, "replayed event");
        await nodes.create(sampleNode(`${p}-2`));
        await waitFor(() => again.length === 2, 10_000, "second event on the new watcher");
        assert.deepEqual(again, [`ADDED ${p}-1`, `ADDED ${p}-2`]);
        await w2.close();
      }
      await retry(async () => {
        if ((await nodes.get(`${p}-2`)) === undefined) await nodes.create(sampleNode(`${p}-2`));
      }, 20_000);
      await nodes.create(sampleNode(`${p}-3`));
      note("written after the restart");
      await waitFor(() => seen.length >= 3, 20_000, "events after reconnect").catch((e: Error) => {
        throw new Error(`${e.message}; seen ${JSON.stringify(seen)}; ${trail.join("; ")}`);
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(seen, [`ADDED ${p}-1`, `ADDED ${p}-2`, `ADDED ${p}-3`]);
      await w.close();
      for (const i of [1, 2, 3]) await nodes.delete(`${p}-${i}`);
    });

    it(
      "liveness: a held node is live, renewals wake no watch, a released one stops being live",
      { timeout: 60_000 },
      async () => {
        const owner = await open();
        const observer = await open();
        const node = uniq("live");
        const nodes = observer.store.collection("nodes");
        const start = await nodes.list();
        const events: string[] = [];
        const w = await nodes.watch(start.revision, {
          event: (e) => void events.push(summary(e)),
          gone: () => {},
        });
        let changes = 0;
        const live = await observer.store.followLiveness(() => changes++);
        try {
          assert.equal(live.has(node), false, "not live before its record exists");
          // Renewed every quarter of the TTL: on a busy machine a renewal must not come too late.
          const liveTtl = Math.max(ttl, 4);
          const hold = await owner.store.holdLiveness(node, liveTtl);
          await waitFor(() => live.has(node), 10_000, "the held node to be live");
          const seen = changes;
          // Renewals past the TTL keep it live, and tell no follower and no watch of nodes anything.
          for (let i = 0; i < 4; i++) {
            await new Promise((r) => setTimeout(r, (ttl * 1000) / 2));
            await hold.renew();
          }
          assert.equal(live.has(node), true, "renewed: still live after twice the TTL");
          assert.equal(changes, seen, "a renewal is no liveness change");
          const beats = await observer.store.heartbeats();
          const beat = beats.get(node);
          assert.ok(beat !== undefined, "the renewal time is readable");
          assert.ok(
            Math.abs(Date.now() - Date.parse(beat)) < liveTtl * 1000 + 2_000,
            `renewed lately: ${beat}`,
          );
          // The agent "crashes": no more renewals; the node stops counting as live after the TTL.
          hold.release();
          await waitFor(
            () => !live.has(node),
            ttl * 1000 * 4 + 5_000,
            "the released node to stop being live",
          );
          await waitFor(() => changes > seen, 5_000, "the end of liveness to be told");
          assert.deepEqual(events, [], "liveness wrote no node record");
          // Renewing after it ran out makes it live again (an agent back from a long outage).
          const again = await owner.store.holdLiveness(node, liveTtl);
          await waitFor(() => live.has(node), 10_000, "the node live again");
          again.release();
        } finally {
          await live.close();
          await w.close();
        }
      },
    );

    it("lease: keep-alive holds records, revoke and expiry delete them", { timeout: 60_000 }, async (t) => {
      const owner = await open();
      const observer = (await open()).store.collection("nodes");
      const p = uniq("lease");

      const l1 = await owner.store.grantLease(ttl);
      await owner.store.collection("nodes").create(sampleNode(`${p}-kept`), { lease: l1.id });
      const attached = await observer.get(`${p}-kept`);
      assert.equal(attached?.lease, l1.id);
      await new Promise((r) => setTimeout(r, ttl * 1000 * 1.6));
      assert.ok(await observer.get(`${p}-kept`), "auto keep-alive keeps the record past the TTL");
      // An update without a lease option keeps the lease.
      await owner.store.collection("nodes").update(sampleNode(`${p}-kept`, "192.0.2.50"));
      assert.equal((await observer.get(`${p}-kept`))?.lease, l1.id);

      const l2 = await owner.store.grantLease(ttl, { autoKeepAlive: false });
      await owner.store.collection("nodes").create(sampleNode(`${p}-revoked`), { lease: l2.id });
      await l2.keepAlive();
      await l2.revoke();
      await waitFor(
        async () => (await observer.get(`${p}-revoked`)) === undefined,
        5_000,
        "revoked record gone",
      );
      await assert.rejects(
        owner.store.collection("nodes").create(sampleNode(`${p}-late`), { lease: l2.id }),
        isLeaseExpiredError,
      );

      // The owner "crashes": its lease is no longer kept alive and must expire.
      const deleted: string[] = [];
      const start = await observer.list();
      const w = await observer.watch(start.revision, {
        event: (e) => void (e.type === "DELETED" && e.key === `${p}-kept` && deleted.push(e.key)),
        gone: () => {},
      });
      const t0 = Date.now();
      await owner.close();
      await waitFor(() => deleted.length === 1, ttl * 1000 * 4 + 5_000, "expired record deleted");
      t.diagnostic(
        `${name}: record of a closed client deleted ${Date.now() - t0} ms after close (ttl ${ttl}s)`,
      );
      assert.equal(await observer.get(`${p}-kept`), undefined);
      await w.close();
    });

    it(
      "leader election: one leader, hand-over on resign and on lease expiry",
      { timeout: 60_000 },
      async (t) => {
        const election = uniq("controller");
        const a = await open();
        const b = await open();
        const ea = await a.store.campaign(election, "controller-a", { ttlSeconds: ttl });
        await ea.whenLeader();
        const eb = await b.store.campaign(election, "controller-b", { ttlSeconds: ttl });
        const changesA: boolean[] = [];
        ea.onChange((v) => changesA.push(v));
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(ea.isLeader, true);
        assert.equal(eb.isLeader, false, "only one leader");
        assert.equal(await b.store.leader(election), "controller-a");

        let t0 = Date.now();
        await ea.resign();
        await eb.whenLeader();
        t.diagnostic(`${name}: hand-over after resign took ${Date.now() - t0} ms`);
        assert.deepEqual(changesA, [false]);
        assert.equal(ea.isLeader, false);
        await assert.rejects(ea.whenLeader());
        assert.equal(await a.store.leader(election), "controller-b");

        const c = await open();
        const ec = await c.store.campaign(election, "controller-c", { ttlSeconds: ttl });
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(ec.isLeader, false);
        t0 = Date.now();
        await b.close(); // crash: no resign; the standby waits for the lease to expire
        await ec.whenLeader();
        const took = Date.now() - t0;
        t.diagnostic(`${name}: hand-over after the leader's client closed took ${took} ms (ttl ${ttl}s)`);
        assert.equal(await c.store.leader(election), "controller-c");
        await ec.resign();
        assert.equal(await c.store.leader(election), undefined);
      },
    );
  });
}
