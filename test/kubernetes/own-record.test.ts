/**
 * On Kubernetes no agent can speak for another node: against the test API server with the
 * generated RBAC and ValidatingAdmissionPolicy (evaluated with a CEL evaluator), an agent's token
 * bound to node-1 writes node-1's PodcryptNode and nothing else: not node-2's record (denied by
 * the admission policy, with the node names in the message), no field of a Node (RBAC grants Node
 * patches for the workload taint only, which the second admission policy enforces:
 * test/kubernetes/workload-gate.test.ts), not the controller's leader Lease (RBAC: agents only read Leases). A token of the agent's
 * service account that is bound to no node writes no record at all; the controller still
 * campaigns and people (admin) may still fix any record.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import type { NodeInput } from "../../src/model/index.js";
import { installPodcrypt } from "../support/kube-apiserver/rbac.js";
import type { KubeApiServer } from "../support/kube-apiserver/server.js";

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
  let server: KubeApiServer;
  const stores: KubernetesDatastore[] = [];
  const connect = async (token: string, expireLeases = false): Promise<KubernetesDatastore> => {
    const kc = new KubeConfig();
    kc.loadFromOptions(server.kubeconfig(token));
    const s = await KubernetesDatastore.connect({
      kubeConfig: kc,
      namespace: "podcrypt-system",
      expireLeases,
    });
    stores.push(s);
    return s;
  };
  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        "Content-Type": method === "PATCH" ? "application/merge-patch+json" : "application/json",
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { code: res.status, body: (await res.json()) as { message?: string } };
  };

  before(async () => {
    server = await installPodcrypt({ tokens: TOKENS, agentNodes: AGENT_NODES });
    const admin = await connect(TOKENS.admin, true);
    for (const [i, name] of ["node-1", "node-2"].entries())
      await admin.registerNode({
        name,
        internalIP: `172.30.0.1${i + 1}`,
        podCIDRs: [`10.244.${i + 1}.0/24`],
      });
  });
  after(async () => {
    for (const s of stores) await s.close().catch(() => {});
    await server?.close();
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

  it("people may still fix any record", async () => {
    const nodes = (await connect(TOKENS.admin, true)).collection("nodes");
    const cur = await nodes.get("node-2");
    await nodes.update({ ...cur!.value, podCIDRs: ["10.244.2.0/24"] });
    assert.deepEqual((await nodes.get("node-2"))?.value.podCIDRs, ["10.244.2.0/24"]);
  });
});
