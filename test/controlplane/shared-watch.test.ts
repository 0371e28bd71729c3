/**
 * SharedWatchStore (the scale bench's watch fan-out) keeps Collection.watch's contract: each
 * subscriber gets exactly the events after its own revision, in order, once; closing one stops
 * only its delivery; a subscriber older than the fan-out's start gets a watch of its own.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryDatastore } from "../support/memory-datastore/index.js";
import type { WatchEvent } from "../../src/datastore/types.js";
import type { Node } from "../../src/model/index.js";
import { sampleNode } from "../datastore/conformance.js";
import { waitUntil } from "../support/sim.js";
import { SharedWatchStore } from "../support/shared-watch.js";

function recorder(): { events: string[]; listener: { event(e: WatchEvent<Node>): void; gone(): void } } {
  const events: string[] = [];
  return {
    events,
    listener: {
      event: (e) => void events.push(`${e.type} ${e.key}`),
      gone: () => void events.push("gone"),
    },
  };
}

describe("SharedWatchStore", () => {
  it("feeds every subscriber exactly the events after its revision, from one upstream watch", async () => {
    const inner = new MemoryDatastore({ sweepIntervalMs: 0 });
    const store = new SharedWatchStore(inner);
    try {
      const nodes = store.collection("nodes");
      const r0 = (await nodes.list()).revision;
      const a = recorder();
      const wa = await nodes.watch(r0, a.listener);
      await nodes.create(sampleNode("n1"));
      const r1 = (await nodes.list()).revision;
      await nodes.create(sampleNode("n2"));
      // b listed after n1: it must see n2 (from the backlog) and what follows, not n1.
      const b = recorder();
      const wb = await nodes.watch(r1, b.listener);
      await nodes.delete("n1");
      await waitUntil(() => a.events.length === 3 && b.events.length === 2, 5_000, "deliveries");
      assert.deepEqual(a.events, ["ADDED n1", "ADDED n2", "DELETED n1"]);
      assert.deepEqual(b.events, ["ADDED n2", "DELETED n1"]);
      assert.equal(wb.revision, wa.revision);
      // Closing a stops only a.
      await wa.close();
      await nodes.create(sampleNode("n3"));
      await waitUntil(() => b.events.length === 3, 5_000, "b's delivery");
      assert.deepEqual(a.events, ["ADDED n1", "ADDED n2", "DELETED n1"]);
      assert.equal(b.events[2], "ADDED n3");
      await wb.close();
    } finally {
      await store.close();
    }
  });

  it("gives a subscriber older than the fan-out's start a watch of its own", async () => {
    const inner = new MemoryDatastore({ sweepIntervalMs: 0 });
    const store = new SharedWatchStore(inner);
    try {
      const nodes = store.collection("nodes");
      const old = (await nodes.list()).revision;
      await nodes.create(sampleNode("n1"));
      const later = recorder();
      await nodes.watch((await nodes.list()).revision, later.listener);
      const early = recorder();
      await nodes.watch(old, early.listener);
      await nodes.create(sampleNode("n2"));
      await waitUntil(() => early.events.length === 2 && later.events.length === 1, 5_000, "deliveries");
      assert.deepEqual(early.events, ["ADDED n1", "ADDED n2"]);
      assert.deepEqual(later.events, ["ADDED n2"]);
    } finally {
      await store.close();
    }
  });
});
