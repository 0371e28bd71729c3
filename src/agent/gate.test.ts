import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../log/logger.js";
import { NOT_READY_TAINT, WorkloadGate, type TaintPort, type TunnelView } from "./gate.js";
import type { TunnelReport } from "./tunnels.js";

/** A Node's taint list with a write counter and a fault to inject: what the port writes to. */
class FakeNode implements TaintPort {
  taints: string[] = ["example.com/dedicated"];
  writes = 0;
  failNext: Error | undefined;
  async set(present: boolean): Promise<boolean> {
    if (this.failNext !== undefined) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    const has = this.taints.includes(NOT_READY_TAINT.key);
    if (has === present) return false;
    this.writes++;
    this.taints = present
      ? [...this.taints, NOT_READY_TAINT.key]
      : this.taints.filter((t) => t !== NOT_READY_TAINT.key);
    return true;
  }
}

const report = (up: string[], pending: string[], failing: string[] = []): TunnelView => ({
  kind: "report",
  report: {
    at: "2026-12-06T00:00:00Z",
    families: [{ family: "ipv4", up, pending, failing }],
  } satisfies TunnelReport,
});
const logger = createLogger("test", { level: "silent" });

test("gate: tainted while a peer is pending, untainted once every tunnel is up, not re-tainted after", async () => {
  const node = new FakeNode();
  const gate = new WorkloadGate(node, logger);
  await gate.observe({ kind: "unknown" });
  assert.deepEqual(node.taints, ["example.com/dedicated", NOT_READY_TAINT.key]);
  await gate.observe(report(["b"], ["c"]));
  await gate.observe(report(["b"], [], ["c"]));
  assert.equal(node.writes, 1, "tainted once, not rewritten every heartbeat");
  assert.equal(gate.open, false);
  await gate.observe(report(["b", "c"], []));
  assert.deepEqual(node.taints, ["example.com/dedicated"]);
  assert.equal(gate.open, true);
  // A tunnel failing later is reported, not gated (one broken peer would taint every node).
  await gate.observe(report(["b"], [], ["c"]));
  assert.deepEqual(node.taints, ["example.com/dedicated"]);
  assert.equal(node.writes, 2);
});

test("gate: encryption off opens it; no live peer (an empty report) opens it", async () => {
  for (const view of [{ kind: "plaintext" } as const, report([], [])]) {
    const node = new FakeNode();
    node.taints.push(NOT_READY_TAINT.key);
    const gate = new WorkloadGate(node, logger);
    await gate.observe(view);
    assert.deepEqual(node.taints, ["example.com/dedicated"]);
    assert.equal(gate.open, true);
  }
});

test("gate: a failed write is tried again at the next observation", async () => {
  const node = new FakeNode();
  const gate = new WorkloadGate(node, logger);
  node.failNext = new Error("HTTP 503");
  await gate.observe(report([], ["b"]));
  assert.deepEqual(node.taints, ["example.com/dedicated"]);
  await gate.observe(report([], ["b"]));
  assert.deepEqual(node.taints, ["example.com/dedicated", NOT_READY_TAINT.key]);
  node.failNext = new Error("HTTP 503");
  await gate.observe(report(["b"], []));
  assert.equal(gate.open, false, "not open while the taint could not be removed");
  assert.ok(node.taints.includes(NOT_READY_TAINT.key));
  await gate.observe(report(["b"], []));
  assert.equal(gate.open, true);
  assert.deepEqual(node.taints, ["example.com/dedicated"]);
});
