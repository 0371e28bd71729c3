import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isSettled } from "./cluster.js";
import { resolveClusterConfig } from "./config.js";
import { planCluster } from "./plan.js";
import type { ClusterStatus, NodeStatus } from "./status.js";

const plan = planCluster(resolveClusterConfig({}, { nodes: 3 }));

function node(name: string, extra: Partial<NodeStatus> = {}): NodeStatus {
  return {
    name,
    backend: "wireguard-userspace",
    live: true,
    epochs: [1],
    errors: [],
    restarts: { agent: 0, dataplane: 0 },
    peers: plan.nodes
      .filter((n) => n.name !== name)
      .map((n) => ({
        node: n.name,
        state: "established" as const,
        keyId: null,
        txBytes: 0,
        rxBytes: 0,
        txPackets: null,
        rxPackets: null,
        epoch: 1,
      })),
    ...extra,
  };
}

function status(nodes: NodeStatus[]): ClusterStatus {
  return {
    enabled: true,
    mode: "wireguard",
    encryption: "all",
    phase: "idle",
    epoch: 1,
    desired: { enabled: true, mode: "wireguard" },
    timeouts: [],
    nodes,
  } as unknown as ClusterStatus;
}

describe("isSettled", () => {
  it("is settled when every node reports and every pair is established", () => {
    assert.deepEqual(isSettled(status(plan.nodes.map((n) => node(n.name))), plan), {
      ok: true,
      waiting: [],
      firstPerNode: [],
    });
  });

  it("names a failing reconcile's root cause first for its node, before the peers missing because of it", () => {
    const failing = node("node-2", {
      peers: [],
      reconcileError: {
        message: "ip -batch - failed with exit code 2: RTNETLINK answers: Operation not permitted",
        code: "ECOMMAND",
        command: "ip -batch -",
        exitCode: 2,
        stderr: "RTNETLINK answers: Operation not permitted",
        causes: [],
        since: "2026-01-01T00:00:00.000Z",
        last: "2026-01-01T00:00:09.000Z",
        count: 9,
      },
    });
    const s = isSettled(status([node("node-1"), failing, node("node-3", { live: false })]), plan);
    assert.equal(s.ok, false);
    assert.deepEqual(s.firstPerNode, [
      "node-2: reconcile failing since 2026-01-01T00:00:00.000Z: ip -batch - failed with exit code 2: RTNETLINK answers: Operation not permitted",
      "node-3: agent not reporting",
    ]);
    assert.ok(s.waiting.includes("node-2→node-1: no peer"));
  });

  it("does not wait for a failure that cleared", () => {
    const cleared = node("node-1", {
      reconcileError: {
        message: "boom",
        causes: [],
        since: "2026-01-01T00:00:00.000Z",
        last: "2026-01-01T00:00:01.000Z",
        count: 2,
        clearedAt: "2026-01-01T00:00:02.000Z",
      },
    });
    assert.equal(isSettled(status([cleared, node("node-2"), node("node-3")]), plan).ok, true);
  });
});
