/**
 * On Kubernetes no agent can speak for another node: against the test API server with the
 * generated RBAC and ValidatingAdmissionPolicy (evaluated with a CEL evaluator), an agent's token
 * bound to node-1 writes node-1's PodcryptNode and nothing else: not node-2's record (denied by
 * the admission policy, with the node names in the message), no field of a Node (RBAC grants Node
 * patches for the workload taint only, which the second admission policy enforces:
 * test/kubernetes/workload-gate.test.ts), not the controller's leader Lease (RBAC: agents only read Leases). A token of the agent's
 * service account that is bound to no node writes no record at all; the controller still
 * campaigns and people (admin) may still fix any record. In a verify run's status an agent writes
 * only its own node's report (the third admission policy).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { planRun } from "../../src/cli/verify-agents.js";
import type { KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import type { NodeInput } from "../../src/model/index.js";
import { PodcryptApi } from "../support/kube-apiserver/fixture.js";

const TOKENS = { controller: "controller-token", agent: "unbound-agent-token", admin: "admin-token" };
const AGENT_NODES = { "agent-1-token": "node-1", "agent-2-token": "node-2" };
const KEY = Buffer.alloc(32, 1).toString("base64");
const record = (name: string): NodeInput => ({
  name,
  underlay: { ipv4: "172.30.0.11" },
  podCIDRs: ["10.244.1.0/24"],
  publicKeys: { "1": KEY },
});
const PODCRYPT_NODES = "/apis/podcrypt.io/v1/podcryptnodes";
const LEASES = "/apis/coordination.k8s.io/v1/namespaces/podcrypt-system/leases";
const LEADER = `${LEASES}/podcrypt-leader-controller`;

describe("an agent writes only its own node's record (kubernetes)", () => {
  let api: PodcryptApi;
  /** A datastore as `token`; only the controller's and people's expire Leases, as in a cluster. */
  const connect = (token: string, expireLeases = false): Promise<KubernetesDatastore> =>
    api.connect(token, { expireLeases });
  const call = (token: string, method: string, path: string, body?: unknown) =>
    api.call(token, method, path, body);

  before(async () => {
    api = await PodcryptApi.start({ tokens: TOKENS, agentNodes: AGENT_NODES });
    const admin = await connect(TOKENS.admin, true);
    for (const [i, name] of ["node-1", "node-2"].entries())
      await admin.registerNode({
        name,
        internalIP: `172.30.0.1${i + 1}`,
        podCIDRs: [`10.244.${i + 1}.0/24`],
      });
  });
  after(async () => {
    await api?.close();
  });

  it("writes its own record through the datastore", async () => {
    const nodes = (await connect("agent-1-token")).collection("nodes");
    const created = await nodes.create(record("node-1"));
    const updated = await nodes.update({ ...created.value, heartbeat: new Date().toISOString() });
    assert.equal(updated.value.name, "node-1");
    assert.deepEqual((await nodes.get("node-1"))?.value.publicKeys, { "1": KEY });
  });

  it("may not create or rewrite another node's record: the admission policy denies it", async () => {
    const created = await call("agent-1-token", "POST", PODCRYPT_NODES, {
      apiVersion: "podcrypt.io/v1",
      kind: "PodcryptNode",
      metadata: { name: "node-2" },
      spec: { underlay: { ipv4: "172.30.0.11" }, podCIDRs: ["10.244.2.0/25"] },
    });
    assert.equal(created.code, 403);
    assert.match(created.body.message ?? "", /ValidatingAdmissionPolicy 'podcrypt-agent-own-node'/);
    assert.match(created.body.message ?? "", /bound to node node-1, the object is node-2/);
    // node-2's own agent writes its record; node-1's may not rewrite it, in any way.
    await (await connect("agent-2-token")).collection("nodes").create(record("node-2"));
    const cur = await call(TOKENS.admin, "GET", `${PODCRYPT_NODES}/node-2`);
    const lie = { ...cur.body, spec: { underlay: { ipv4: "172.30.0.11" }, podCIDRs: ["10.244.2.0/25"] } };
    assert.equal((await call("agent-1-token", "PUT", `${PODCRYPT_NODES}/node-2`, lie)).code, 403);
    assert.equal(
      (await call("agent-1-token", "PATCH", `${PODCRYPT_NODES}/node-2`, { spec: { publicKeys: {} } })).code,
      403,
    );
    assert.equal((await call("agent-1-token", "DELETE", `${PODCRYPT_NODES}/node-2`)).code, 403);
    const after = (await (await connect("agent-2-token")).collection("nodes").get("node-2"))?.value;
    assert.deepEqual(after?.podCIDRs, ["10.244.1.0/24"]);
    assert.deepEqual(after?.publicKeys, { "1": KEY });
  });

  it("a token bound to no node writes no record", async () => {
    const res = await call(TOKENS.agent, "POST", PODCRYPT_NODES, {
      apiVersion: "podcrypt.io/v1",
      kind: "PodcryptNode",
      metadata: { name: "node-3" },
      spec: { underlay: { ipv4: "172.30.0.13" } },
    });
    assert.equal(res.code, 403);
    assert.match(res.body.message ?? "", /bound to node none/);
  });

  it("may not change what Kubernetes assigned a Node (the admission policy: only the taint)", async () => {
    for (const token of ["agent-1-token", TOKENS.agent]) {
      assert.equal((await call(token, "GET", "/api/v1/nodes/node-1")).code, 200);
      const patch = { spec: { podCIDRs: ["10.244.0.0/16"] } };
      assert.equal((await call(token, "PATCH", "/api/v1/nodes/node-2", patch)).code, 403);
      assert.equal((await call(token, "PATCH", "/api/v1/nodes/node-1", patch)).code, 403);
    }
  });

  it("may not write the controller's leader Lease (admission policy; RBAC: no delete)", async () => {
    const controller = await connect(TOKENS.controller, true);
    const election = await controller.campaign("controller", "controller-a", { ttlSeconds: 5 });
    try {
      await election.whenLeader();
      assert.equal(await controller.leader("controller"), "controller-a");
      const cur = await call("agent-1-token", "GET", LEADER);
      assert.equal(cur.code, 200);
      const stolen = { ...cur.body, spec: { holderIdentity: "agent" } };
      assert.equal((await call("agent-1-token", "PUT", LEADER, stolen)).code, 403);
      assert.equal((await call("agent-1-token", "DELETE", LEADER)).code, 403);
      const fresh = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: "podcrypt-leader-other" },
        spec: { holderIdentity: "agent" },
      };
      assert.equal(
        (
          await call(
            "agent-1-token",
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/podcrypt-system/leases",
            fresh,
          )
        ).code,
        403,
      );
      assert.equal(await controller.leader("controller"), "controller-a");
    } finally {
      await election.resign();
    }
  });

  it("keeps its own node's liveness Lease and no other node's (the admission policy denies it)", async () => {
    const agent1 = await connect("agent-1-token");
    const hold = await agent1.holdLiveness("node-1", 15);
    await hold.renew();
    const beats = await (await connect(TOKENS.controller, true)).heartbeats();
    assert.ok(beats.has("node-1"), "node-1's renewal is readable");
    hold.release();
    // node-1's agent may not make node-2 look live, nor keep node-2's Lease from running out.
    await assert.rejects(agent1.holdLiveness("node-2", 15));
    const lease = (name: string, holder: string) => ({
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name },
      spec: { holderIdentity: holder, leaseDurationSeconds: 15 },
    });
    const created = await call("agent-1-token", "POST", LEASES, lease("podcrypt-node-node-2", "node-2"));
    assert.equal(created.code, 403);
    assert.match(created.body.message ?? "", /ValidatingAdmissionPolicy 'podcrypt-agent-own-lease'/);
    assert.match(created.body.message ?? "", /bound to node node-1, the object is podcrypt-node-node-2/);
    await (await connect("agent-2-token")).holdLiveness("node-2", 15);
    const cur = await call(TOKENS.admin, "GET", `${LEASES}/podcrypt-node-node-2`);
    assert.equal(cur.code, 200);
    assert.equal((await call("agent-1-token", "PUT", `${LEASES}/podcrypt-node-node-2`, cur.body)).code, 403);
    assert.equal(
      (await call("agent-1-token", "DELETE", `${LEASES}/podcrypt-node-node-1`)).code,
      403,
      "nor delete",
    );
    // A token bound to no node writes no Lease at all.
    assert.equal((await call(TOKENS.agent, "POST", LEASES, lease("podcrypt-node-", ""))).code, 403);
  });

  it("writes only its own node's report into a verify run's status (the admission policy)", async () => {
    const admin = await connect(TOKENS.admin, true);
    const nodes = ["node-1", "node-2"].map((name, i) => ({
      name,
      podCIDRs: [`10.244.${i + 1}.0/24`],
      underlay: { ipv4: `172.30.0.1${i + 1}` },
    }));
    const plan = planRun(nodes, { nonce: "0123456789ab", now: Date.now(), seconds: 1, count: 1 });
    await admin.collection("verifyruns").create(plan);
    const report = (packets: number) => ({
      finishedAt: new Date().toISOString(),
      capture: { interface: "eth0", packets, bytes: 0 },
      probes: [],
      seen: [],
      controls: [],
    });
    // Its own report, as the runner writes it (through the datastore: a status merge patch).
    const runs1 = (await connect("agent-1-token")).collection("verifyruns");
    const cur = (await runs1.get(plan.name))!;
    await runs1.update(
      { ...cur.value, status: { reports: { "node-1": report(1) } } },
      { revision: cur.revision },
    );
    const runs2 = (await connect("agent-2-token")).collection("verifyruns");
    const cur2 = (await runs2.get(plan.name))!;
    await runs2.update(
      { ...cur2.value, status: { reports: { ...cur2.value.status!.reports, "node-2": report(2) } } },
      { revision: cur2.revision },
    );
    // Not another node's: neither rewritten nor removed nor added, nor with an unbound token.
    const path = `/apis/podcrypt.io/v1/verifyruns/${plan.name}/status`;
    const policy = /ValidatingAdmissionPolicy 'podcrypt-agent-own-report'/;
    for (const [token, patch, message] of [
      ["agent-1-token", { status: { reports: { "node-2": report(99) } } }, /own node \(node-1\)/],
      ["agent-1-token", { status: { reports: { "node-2": null } } }, /own node \(node-1\)/],
      ["agent-1-token", { status: { reports: { "node-3": report(3) } } }, /own node \(node-1\)/],
      [TOKENS.agent, { status: { reports: { "node-1": report(99) } } }, /token bound to its node/],
    ] as const) {
      const r = await call(token, "PATCH", path, patch);
      assert.equal(r.code, 403, JSON.stringify(r.body));
      assert.match(r.body.message ?? "", policy);
      assert.match(r.body.message ?? "", message);
    }
    const after = (await admin.collection("verifyruns").get(plan.name))?.value.status?.reports;
    assert.deepEqual(
      Object.entries(after ?? {}).map(([n, r]) => [n, r.capture.packets]),
      [
        ["node-1", 1],
        ["node-2", 2],
      ],
    );
    await admin.collection("verifyruns").delete(plan.name);
  });

  it("people may still fix any record", async () => {
    const nodes = (await connect(TOKENS.admin, true)).collection("nodes");
    const cur = await nodes.get("node-2");
    await nodes.update({ ...cur!.value, podCIDRs: ["10.244.2.0/24"] });
    assert.deepEqual((await nodes.get("node-2"))?.value.podCIDRs, ["10.244.2.0/24"]);
  });
});
