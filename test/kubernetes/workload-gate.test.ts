/**
 * Workload gating on the Kubernetes datastore, against the test API server with the generated
 * RBAC and ValidatingAdmissionPolicies, each agent with its own node-bound token: real Agents
 * (fake data planes on one fake network) and the Controller with its own token. An agent asks for
 * the taint in its own record (`status.workloadGate`), and the controller writes the Node: a node
 * that joins while its path to one peer loses every handshake stays tainted
 * `podcrypt.io/not-ready:NoSchedule` (its record says closed, its tunnel report says which peer is
 * pending) and loses the taint once the path works; the taints others put on its Node stay. The
 * nodes already up are not tainted again meanwhile. Then RBAC: an agent's token may not patch any
 * Node, its own included (agents have no write on Node objects).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NOT_READY_TAINT } from "../../src/agent/gate.js";
import { systemClock } from "../../src/clock.js";
import { Controller } from "../../src/controller/controller.js";
import { FakeFabric } from "../support/fake-dataplane/index.js";
import type { KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import { PodcryptApi } from "../support/kube-apiserver/fixture.js";
import {
  readCluster,
  simNode,
  simNodeName,
  simNodeRegistration,
  testLogger,
  updateCluster,
  waitUntil,
  type SimNode,
} from "../support/sim.js";

const TOKENS = { controller: "controller-token", agent: "unbound-agent-token", admin: "admin-token" };
const agentToken = (i: number): string => `agent-${i}-token`;
const TIMING = { phaseTimeoutMs: 10_000, retireGraceMs: 300, livenessMs: 15_000 };
/** A taint someone else (an operator, a cloud controller) put on the new node: it must stay. */
const DEDICATED = { key: "example.com/dedicated", value: "gpu", effect: "NoSchedule" };
const NODES = "/api/v1/nodes";

type Taint = { key: string; value?: string; effect: string };

describe("workload gating: a new node stays tainted until its tunnels are up (kubernetes)", () => {
  let api: PodcryptApi;
  const nodes: SimNode[] = [];
  const fabric = new FakeFabric();
  let controller: Controller | undefined;

  const connect = (token: string): Promise<KubernetesDatastore> => api.connect(token, { leaseCheckMs: 100 });
  const jsonPatch = (token: string, node: string, ops: unknown) =>
    api.call(token, "PATCH", `${NODES}/${node}`, ops, "application/json-patch+json");
  const mergePatch = (token: string, node: string, patch: unknown) =>
    api.call(token, "PATCH", `${NODES}/${node}`, patch);
  const nodeObject = (name: string) =>
    api.server.store.get(api.server.store.lookup("", "v1", "nodes")!, "", name);
  const taints = (name: string): Taint[] => (nodeObject(name)["spec"] as { taints?: Taint[] }).taints ?? [];
  const gated = (name: string): boolean => taints(name).some((t) => t.key === NOT_READY_TAINT.key);
  /** What node `name`'s agent asks for in its record. */
  const wish = (name: string): unknown => {
    const t = api.server.store.lookup("podcrypt.io", "v1", "podcryptnodes")!;
    let rec: Record<string, unknown> | undefined;
    try {
      rec = api.server.store.get(t, "", name);
    } catch {
      return undefined; // not published yet
    }
    return (rec["status"] as { workloadGate?: string } | undefined)?.workloadGate;
  };

  /** Starts node `i`'s agent with its own token and the workload gate. */
  const startAgent = async (i: number): Promise<SimNode> => {
    const store = await connect(agentToken(i));
    const n = simNode(store, i, {
      heartbeatMs: 300,
      resyncMs: 2_000,
      fabric,
      workloadGate: true,
      authority: (onChange) => store.watchNodeAuthorities(onChange),
    });
    nodes.push(n);
    await n.agent.start();
    return n;
  };

  before(async () => {
    api = await PodcryptApi.start({
      tokens: TOKENS,
      agentNodes: Object.fromEntries([1, 2, 3].map((i) => [agentToken(i), simNodeName(i)])),
    });
    const admin = await connect(TOKENS.admin);
    for (const i of [1, 2, 3]) await admin.registerNode(simNodeRegistration(i));
    const dedicated = await mergePatch(TOKENS.admin, simNodeName(3), { spec: { taints: [DEDICATED] } });
    assert.equal(dedicated.code, 200);
    const cstore = await connect(TOKENS.controller);
    controller = new Controller({
      store: cstore,
      identity: "controller-a",
      clock: systemClock,
      logger: testLogger("controller"),
      timing: TIMING,
      nodeTaint: (node, present) => cstore.setNodeTaint(node, NOT_READY_TAINT, present),
    });
    await controller.start();
    await waitUntil(
      async () => (await readCluster(cstore))?.applied !== undefined,
      10_000,
      "cluster initialised",
    );
    await updateCluster(cstore, (c) => ({ ...c, enabled: true }));
    await waitUntil(
      async () => (await readCluster(cstore))?.applied?.enabled === true,
      10_000,
      "encryption on",
    );
  });

  after(async () => {
    for (const n of nodes) await n.agent.stop().catch(() => {});
    await controller?.stop().catch(() => {});
    await api?.close();
  });

  it("the first nodes lose the taint once their tunnels are up", async () => {
    await startAgent(1);
    await startAgent(2);
    await waitUntil(
      () => nodes.every((n) => n.agent.tunnelReport?.families[0]?.upCount === 1),
      15_000,
      "node-0001 and node-0002 up with each other",
    );
    await waitUntil(
      () => [1, 2].every((i) => wish(simNodeName(i)) === "open"),
      5_000,
      "both records say open",
    );
    await waitUntil(() => !gated(simNodeName(1)) && !gated(simNodeName(2)), 5_000, "both untainted");
  });

  it("a new node stays tainted while a tunnel is not up, then the taint is gone; other taints stay", async (t) => {
    const [n1, n2] = nodes as [SimNode, SimNode];
    const name = simNodeName(3);
    // Every handshake between the new node and node-0001 is lost until the path is repaired.
    fabric.block(name, n1.name);
    const n3 = await startAgent(3);
    await waitUntil(() => wish(name) === "closed", 10_000, "node-0003's record says closed");
    await waitUntil(() => gated(name), 10_000, "node-0003 tainted (by the controller)");
    await waitUntil(
      () => n3.agent.tunnelReport?.families[0]?.upCount === 1,
      10_000,
      "node-0003's tunnel to node-0002 up",
    );
    // Several heartbeats later (300 ms each) it is still tainted: its tunnel to node-0001 is not up.
    await new Promise((r) => setTimeout(r, 2_000));
    const report = n3.agent.tunnelReport!.families[0]!;
    // One up (node-0002: only node-0001 is named as not up), one not.
    assert.equal(report.upCount, 1);
    assert.deepEqual([...report.pending, ...report.failing], [n1.name]);
    assert.equal(wish(name), "closed");
    assert.deepEqual(taints(name), [DEDICATED, { ...NOT_READY_TAINT }]);
    t.diagnostic(
      `tunnels up ${report.upCount}, not up ${n1.name}: record ${String(wish(name))}, taints ${JSON.stringify(taints(name))}`,
    );
    // The nodes already up are not gated again by their pending tunnel to the new node.
    assert.equal(gated(n1.name), false);
    assert.equal(gated(n2.name), false);

    fabric.unblock(name, n1.name);
    await waitUntil(() => !gated(name), 15_000, "node-0003 untainted");
    assert.equal(wish(name), "open");
    assert.deepEqual(n3.agent.tunnelReport?.families, [
      { family: "ipv4", upCount: 2, pending: [], failing: [] },
    ]);
    assert.deepEqual(taints(name), [DEDICATED]);
    t.diagnostic(
      `tunnels up ${n3.agent.tunnelReport!.families[0]!.upCount}: record ${String(wish(name))}, taints ${JSON.stringify(taints(name))}`,
    );
  });

  it("RBAC: an agent's token may not patch any Node, its own included; people may", async () => {
    const own = simNodeName(1);
    const other = simNodeName(3);
    const ours = { key: NOT_READY_TAINT.key, effect: NOT_READY_TAINT.effect };
    const denied = async (res: Promise<{ code: number; body: { message?: string } }>, node: string) => {
      const r = await res;
      assert.equal(r.code, 403, JSON.stringify(r.body));
      assert.match(
        r.body.message ?? "",
        new RegExp(`nodes "${node}" is forbidden: User ".*" cannot patch resource "nodes"`),
      );
    };
    const before = { own: JSON.stringify(nodeObject(own)), other: JSON.stringify(nodeObject(other)) };
    for (const token of [agentToken(1), TOKENS.agent]) {
      await denied(jsonPatch(token, own, [{ op: "add", path: "/spec/taints", value: [ours] }]), own);
      await denied(mergePatch(token, own, { spec: { taints: [] } }), own);
      await denied(jsonPatch(token, other, [{ op: "remove", path: "/spec/taints/0" }]), other);
      await denied(mergePatch(token, other, { spec: { unschedulable: true } }), other);
    }
    assert.equal(JSON.stringify(nodeObject(own)), before.own, "node-0001 unchanged");
    assert.equal(JSON.stringify(nodeObject(other)), before.other, "node-0003 unchanged");
    // People are not limited by it.
    assert.equal((await mergePatch(TOKENS.admin, own, { spec: { unschedulable: true } })).code, 200);
  });
});
