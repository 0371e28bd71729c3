/**
 * Workload gating on the Kubernetes datastore, against the test API server with the generated
 * RBAC and ValidatingAdmissionPolicies (a CEL evaluator), each agent with its own node-bound
 * token: real Agents (fake data planes on one fake network) and the Controller. A node that joins
 * while its path to one peer loses every handshake stays tainted `podcrypt.io/not-ready:NoSchedule`
 * (its tunnel report says which peer is pending) and loses the taint once the path works; the
 * taints others put on its Node stay. The nodes already up are not tainted again meanwhile (their
 * tunnel to the new node pending). Then the policy: an agent may not patch another Node's taints,
 * nor its own Node's other taints or other fields; people may.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { NOT_READY_TAINT, WorkloadGate } from "../../src/agent/gate.js";
import type { Controller } from "../../src/controller/controller.js";
import { FakeFabric } from "../support/fake-dataplane/index.js";
import { KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import { installPodcrypt } from "../support/kube-apiserver/rbac.js";
import type { KubeApiServer } from "../support/kube-apiserver/server.js";
import {
  readCluster,
  simController,
  simNode,
  simNodeName,
  simPodCidr,
  simUnderlay,
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
  let server: KubeApiServer;
  const stores: KubernetesDatastore[] = [];
  const nodes: SimNode[] = [];
  const fabric = new FakeFabric();
  let controller: Controller | undefined;

  const connect = async (token: string): Promise<KubernetesDatastore> => {
    const kc = new KubeConfig();
    kc.loadFromOptions(server.kubeconfig(token));
    const s = await KubernetesDatastore.connect({
      kubeConfig: kc,
      namespace: "podcrypt-system",
      leaseCheckMs: 100,
    });
    stores.push(s);
    return s;
  };
  const call = async (token: string, method: string, path: string, body: unknown, type: string) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": type },
      body: JSON.stringify(body),
    });
    return { code: res.status, body: (await res.json()) as { message?: string } };
  };
  const jsonPatch = (token: string, node: string, ops: unknown) =>
    call(token, "PATCH", `${NODES}/${node}`, ops, "application/json-patch+json");
  const mergePatch = (token: string, node: string, patch: unknown) =>
    call(token, "PATCH", `${NODES}/${node}`, patch, "application/merge-patch+json");
  const nodeObject = (name: string) => server.store.get(server.store.lookup("", "v1", "nodes")!, "", name);
  const taints = (name: string): Taint[] => (nodeObject(name)["spec"] as { taints?: Taint[] }).taints ?? [];
  const gated = (name: string): boolean => taints(name).some((t) => t.key === NOT_READY_TAINT.key);

  /** Starts node `i`'s agent with its own token and the workload gate. */
  const startAgent = async (i: number): Promise<SimNode> => {
    const store = await connect(agentToken(i));
    const name = simNodeName(i);
    const gate = new WorkloadGate(
      { set: (present) => store.setNodeTaint(name, NOT_READY_TAINT, present) },
      testLogger("gate"),
    );
    const n = simNode(store, i, {
      heartbeatMs: 300,
      resyncMs: 2_000,
      fabric,
      gate,
      authority: (onChange) => store.watchNodeAuthorities(onChange),
    });
    nodes.push(n);
    await n.agent.start();
    return n;
  };

  before(async () => {
    server = await installPodcrypt({
      tokens: TOKENS,
      agentNodes: Object.fromEntries([1, 2, 3].map((i) => [agentToken(i), simNodeName(i)])),
    });
    const admin = await connect(TOKENS.admin);
    for (const i of [1, 2, 3])
      await admin.registerNode({
        name: simNodeName(i),
        internalIP: simUnderlay(i),
        podCIDRs: [simPodCidr(i)],
      });
    const dedicated = await mergePatch(TOKENS.admin, simNodeName(3), { spec: { taints: [DEDICATED] } });
    assert.equal(dedicated.code, 200);
    const cstore = await connect(TOKENS.controller);
    controller = simController(cstore, "controller-a", TIMING);
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
    for (const s of stores) await s.close().catch(() => {});
    await server?.close();
  });

  it("the first nodes lose the taint once their tunnels are up", async () => {
    await startAgent(1);
    await startAgent(2);
    await waitUntil(
      () => nodes.every((n) => n.agent.tunnelReport?.families[0]?.up.length === 1),
      15_000,
      "node-0001 and node-0002 up with each other",
    );
    await waitUntil(() => !gated(simNodeName(1)) && !gated(simNodeName(2)), 5_000, "both untainted");
  });

  it("a new node stays tainted while a tunnel is not up, then the taint is gone; other taints stay", async (t) => {
    const [n1, n2] = nodes as [SimNode, SimNode];
    const name = simNodeName(3);
    // Every handshake between the new node and node-0001 is lost until the path is repaired.
    fabric.block(name, n1.name);
    const n3 = await startAgent(3);
    await waitUntil(() => gated(name), 10_000, "node-0003 tainted");
    await waitUntil(
      () => n3.agent.tunnelReport?.families[0]?.up.includes(n2.name) === true,
      10_000,
      "node-0003's tunnel to node-0002 up",
    );
    // Several heartbeats later (300 ms each) it is still tainted: its tunnel to node-0001 is not up.
    await new Promise((r) => setTimeout(r, 2_000));
    const report = n3.agent.tunnelReport!.families[0]!;
    assert.deepEqual(report.up, [n2.name]);
    assert.deepEqual([...report.pending, ...report.failing], [n1.name]);
    assert.deepEqual(taints(name), [DEDICATED, { ...NOT_READY_TAINT }]);
    t.diagnostic(
      `tunnels up ${report.up.join(",")}, not up ${n1.name}: taints ${JSON.stringify(taints(name))}`,
    );
    // The nodes already up are not gated again by their pending tunnel to the new node.
    assert.equal(gated(n1.name), false);
    assert.equal(gated(n2.name), false);

    fabric.unblock(name, n1.name);
    await waitUntil(() => !gated(name), 15_000, "node-0003 untainted");
    assert.deepEqual(n3.agent.tunnelReport?.families[0]?.up, [n1.name, n2.name]);
    assert.deepEqual(taints(name), [DEDICATED]);
    t.diagnostic(
      `tunnels up ${n3.agent.tunnelReport!.families[0]!.up.join(",")}: taints ${JSON.stringify(taints(name))}`,
    );
  });

  it("the policy: an agent patches only the not-ready taint of its own Node", async () => {
    const own = simNodeName(1);
    const other = simNodeName(3);
    const ours = { key: NOT_READY_TAINT.key, effect: NOT_READY_TAINT.effect };
    const denied = async (res: Promise<{ code: number; body: { message?: string } }>, message: RegExp) => {
      const r = await res;
      assert.equal(r.code, 403, JSON.stringify(r.body));
      assert.match(r.body.message ?? "", /ValidatingAdmissionPolicy 'podcrypt-agent-own-node-taint'/);
      assert.match(r.body.message ?? "", message);
    };
    const before = JSON.stringify(nodeObject(other));
    // Another node's taints: neither adding ours nor removing someone else's.
    await denied(
      jsonPatch(agentToken(1), other, [{ op: "add", path: "/spec/taints/-", value: ours }]),
      /bound to node node-0001, the Node is node-0003/,
    );
    await denied(
      jsonPatch(agentToken(1), other, [{ op: "remove", path: "/spec/taints/0" }]),
      /bound to node node-0001, the Node is node-0003/,
    );
    await denied(mergePatch(TOKENS.agent, own, { spec: { taints: [ours] } }), /bound to node none/);
    assert.equal(JSON.stringify(nodeObject(other)), before, "node-0003 unchanged");
    // Its own Node: no other taint, no other field.
    await denied(
      jsonPatch(agentToken(1), own, [{ op: "add", path: "/spec/taints", value: [DEDICATED] }]),
      /no other taint/,
    );
    await denied(
      jsonPatch(agentToken(1), own, [
        { op: "add", path: "/spec/taints", value: [{ ...ours, effect: "NoExecute" }] },
      ]),
      /no other taint/,
    );
    await denied(
      mergePatch(agentToken(1), own, { metadata: { labels: { "node-role.kubernetes.io/gpu": "" } } }),
      /none of its other fields/,
    );
    await denied(
      mergePatch(agentToken(1), own, { spec: { taints: [ours], unschedulable: true } }),
      /none of its other fields/,
    );
    await denied(
      mergePatch(agentToken(1), own, { spec: { podCIDRs: ["10.0.0.0/8"] } }),
      /none of its other fields/,
    );
    assert.equal(gated(own), false);
    // What the gate does is allowed: add and remove exactly that taint.
    assert.equal(
      (await jsonPatch(agentToken(1), own, [{ op: "add", path: "/spec/taints", value: [ours] }])).code,
      200,
    );
    assert.equal(gated(own), true);
    assert.equal((await jsonPatch(agentToken(1), own, [{ op: "remove", path: "/spec/taints/0" }])).code, 200);
    assert.equal(gated(own), false);
    // People are not limited by it.
    assert.equal((await mergePatch(TOKENS.admin, own, { spec: { unschedulable: true } })).code, 200);
  });
});
