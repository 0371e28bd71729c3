import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../log/logger.js";
import type { WorkloadGateWish } from "../model/index.js";
import { WorkloadGate, type GatePort, type TunnelView } from "./gate.js";
import type { TunnelReport } from "./tunnels.js";

/** The node's record (its `status.workloadGate`) with a write counter and a fault to inject. */
class FakeRecord implements GatePort {
  wish: WorkloadGateWish | undefined;
  writes = 0;
  failNext: Error | undefined;
  async publish(wish: WorkloadGateWish): Promise<boolean> {
    if (this.failNext !== undefined) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    if (this.wish === wish) return false;
    this.writes++;
    this.wish = wish;
    return true;
  }
}

const report = (up: string[], pending: string[], failing: string[] = []): TunnelView => ({
  kind: "report",
  report: {
    at: "2026-12-06T00:00:00Z",
    families: [{ family: "ipv4", upCount: up.length, pending, failing }],
  } satisfies TunnelReport,
});
const logger = createLogger("test", { level: "silent" });

test("gate: closed while a peer is pending, open once every tunnel is up, not closed again after", async () => {
  const record = new FakeRecord();
  const gate = new WorkloadGate(record, logger);
  await gate.observe({ kind: "unknown" });
  assert.equal(record.wish, "closed");
  await gate.observe(report(["b"], ["c"]));
  await gate.observe(report(["b"], [], ["c"]));
  assert.equal(record.writes, 1, "closed once, not rewritten every heartbeat");
  assert.equal(gate.open, false);
  await gate.observe(report(["b", "c"], []));
  assert.equal(record.wish, "open");
  assert.equal(gate.open, true);
  // A tunnel failing later is reported, not gated (one broken peer would taint every node).
  await gate.observe(report(["b"], [], ["c"]));
  assert.equal(record.wish, "open");
  assert.equal(record.writes, 2);
});

test("gate: encryption off opens it; no live peer (an empty report) opens it", async () => {
  for (const view of [{ kind: "plaintext" } as const, report([], [])]) {
    const record = new FakeRecord();
    record.wish = "closed";
    const gate = new WorkloadGate(record, logger);
    await gate.observe(view);
    assert.equal(record.wish, "open");
    assert.equal(gate.open, true);
  }
});

test("gate: a failed write is tried again at the next observation", async () => {
  const record = new FakeRecord();
  const gate = new WorkloadGate(record, logger);
  record.failNext = new Error("HTTP 503");
  await gate.observe(report([], ["b"]));
  assert.equal(record.wish, undefined);
  await gate.observe(report([], ["b"]));
  assert.equal(record.wish, "closed");
  record.failNext = new Error("HTTP 503");
  await gate.observe(report(["b"], []));
  assert.equal(gate.open, false, "not open while the record could not say so");
  assert.equal(record.wish, "closed");
  await gate.observe(report(["b"], []));
  assert.equal(gate.open, true);
  assert.equal(record.wish, "open");
});
