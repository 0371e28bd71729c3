/**
 * A compromised node cannot take another node's traffic by lying in its record: three real Agents
 * (fake data planes) and the Controller on the Kubernetes datastore against the test API server,
 * each with its service account's token. Node objects carry what Kubernetes assigned (spec.podCIDRs,
 * status.addresses); node-3's agent publishes, besides its own pod CIDR, a more specific prefix of
 * node-2's and later also an underlay address that is not its Node's. The honest agents refuse
 * both (node-2's pods stay routed to node-2, node-3's peer entry never carries the lie), report
 * the refusals (Agent.refused, as the metric and status read them), and the cluster still
 * encrypts and rotates.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Controller } from "../../src/controller/controller.js";
import type { KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import { reportedRefusals } from "../../src/localcluster/status.js";
import { liveFromHeartbeats } from "../../src/protocol/index.js";
import { PodcryptApi } from "../support/kube-apiserver/fixture.js";
import {
  converged,
  publishedKeys,
  readCluster,
  requestRotation,
  simController,
  simNode,
  simNodeName,
  simNodeRegistration,
  simPodCidr,
  simUnderlay,
  updateCluster,
  waitUntil,
  type SimNode,
} from "../support/sim.js";

const TOKENS = { controller: "controller-token", admin: "admin-token" };
/** Each agent's token, bound to its node (the admission policy lets it write its own record only). */
const agentToken = (i: number): string => `agent-${i}-token`;
const TIMING = { phaseTimeoutMs: 10_000, retireGraceMs: 300, livenessMs: 15_000 };
const LIE = "10.0.2.128/25"; // a more specific prefix of node-0002's 10.0.2.0/24

describe("peers' claims on the kubernetes datastore", () => {
  let api: PodcryptApi;
  /** The admin's datastore, which reads the cluster's state for the assertions. */
  let admin: KubernetesDatastore;
  const nodes: SimNode[] = [];
  let controller: Controller | undefined;

  const connect = (token: string): Promise<KubernetesDatastore> => api.connect(token, { leaseCheckMs: 100 });

  before(async () => {
    api = await PodcryptApi.start({
      tokens: TOKENS,
      agentNodes: Object.fromEntries([1, 2, 3].map((i) => [agentToken(i), simNodeName(i)])),
    });
    admin = await connect(TOKENS.admin);
    for (const i of [1, 2, 3]) await admin.registerNode(simNodeRegistration(i));
    const cstore = await connect(TOKENS.controller);
    controller = simController(cstore, "controller-a", TIMING);
    await controller.start();
    for (const i of [1, 2, 3]) {
      const store = await connect(agentToken(i));
      const n = simNode(store, i, {
        heartbeatMs: 500,
        resyncMs: 2_000,
        // node-0003 is compromised: it claims part of node-0002's pods.
        ...(i === 3 ? { podCIDRs: [simPodCidr(3), LIE] } : {}),
        authority: (onChange) => store.watchNodeAuthorities(onChange),
      });
      nodes.push(n);
      await n.agent.start();
    }
    await waitUntil(
      async () => (await readCluster(cstore))?.applied !== undefined,
      10_000,
      "cluster initialised",
    );
    await updateCluster(cstore, (c) => ({ ...c, enabled: true }));
  });

  after(async () => {
    for (const n of nodes) await n.agent.stop().catch(() => {});
    await controller?.stop().catch(() => {});
    await api?.close();
  });

  it("the honest nodes refuse the lie and keep routing node-0002's pods to node-0002", async () => {
    const [n1, n2, n3] = nodes as [SimNode, SimNode, SimNode];
    const store = admin;
    await waitUntil(
      async () => {
        const c = await readCluster(store);
        if (c === undefined || c.phase !== "idle" || !c.applied?.enabled) return false;
        const keys = await publishedKeys(store);
        return nodes.every((n) => converged(n, c.epoch, nodes, keys));
      },
      20_000,
      "encryption on everywhere",
    );
    // The lie is in the datastore...
    const rec = await store.collection("nodes").get("node-0003");
    assert.deepEqual(rec?.value.podCIDRs, [simPodCidr(3), LIE]);
    for (const honest of [n1, n2]) {
      const epoch = honest.backend.epochs()[0]!;
      const gen = honest.backend.generation(epoch)!;
      // ...but node-0003's peer entry carries only what Kubernetes assigned it,
      assert.deepEqual(gen.peers.get("node-0003")?.allowedIps, [simPodCidr(3)]);
      // no route sends the lie anywhere,
      assert.equal(honest.backend.route(LIE), undefined);
      // and the refusal is reported.
      assert.deepEqual(honest.agent.refused, [
        { node: "node-0003", field: "podCIDRs", value: LIE, reason: "outside-assigned-pod-cidrs" },
      ]);
    }
    assert.deepEqual(n1.backend.route(simPodCidr(2)), {
      dst: simPodCidr(2),
      kind: "tunnel",
      dev: n1.backend.generation(n1.backend.epochs()[0]!)!.ifname,
    });
    assert.deepEqual(n1.backend.generation(n1.backend.epochs()[0]!)!.peers.get("node-0002")?.allowedIps, [
      simPodCidr(2),
    ]);
    // The agents' reports in their records (through the CRD's schema), as `podcrypt status` shows them.
    await waitUntil(
      async () => {
        const all = (await store.collection("nodes").list()).items.map((i) => i.value);
        return reportedRefusals(all, liveFromHeartbeats(await store.heartbeats(), Date.now())).some(
          (r) => r.value === LIE && r.by.length === 2,
        );
      },
      10_000,
      "node-0001 and node-0002 reporting the refusal in their records",
    );
    const all = (await store.collection("nodes").list()).items.map((i) => i.value);
    assert.deepEqual(
      reportedRefusals(all, liveFromHeartbeats(await store.heartbeats(), Date.now())).filter(
        (r) => r.value === LIE,
      ),
      [
        {
          node: "node-0003",
          field: "podCIDRs",
          value: LIE,
          reason: "outside-assigned-pod-cidrs",
          by: ["node-0001", "node-0002"],
        },
      ],
    );
    // The liar's own agent trusts its own claims and so refuses node-0002's overlapping ones.
    assert.deepEqual(n3.agent.refused, [
      {
        node: "node-0002",
        field: "podCIDRs",
        value: simPodCidr(2),
        reason: "overlaps-other-node",
        with: "node-0003",
      },
    ]);
  });

  it("a rotation still completes with the liar in the cluster", async () => {
    const store = admin;
    const before = (await readCluster(store))!.epoch;
    await requestRotation(store);
    await waitUntil(
      async () => {
        const c = await readCluster(store);
        if (c === undefined || c.phase !== "idle" || c.epoch !== before + 1) return false;
        const keys = await publishedKeys(store);
        return nodes.every((n) => converged(n, c.epoch, nodes, keys));
      },
      30_000,
      "rotation complete",
    );
    assert.equal(nodes[0]!.backend.route(LIE), undefined);
  });

  it("an underlay address that is not the Node's is refused too", async () => {
    const n3 = nodes[2]!;
    await n3.agent.stop();
    const store = await connect(agentToken(3));
    const liar = simNode(store, 3, {
      heartbeatMs: 500,
      resyncMs: 2_000,
      keys: n3.keys,
      podCIDRs: [simPodCidr(3), LIE],
      // The liar now says it lives at node-0002's address.
      underlay: simUnderlay(2),
      authority: (onChange) => store.watchNodeAuthorities(onChange),
    });
    nodes[2] = liar;
    await liar.agent.start();
    const n1 = nodes[0]!;
    await waitUntil(
      () => n1.agent.refused.some((r) => r.field === "underlay"),
      10_000,
      "node-0001 refusing node-0003's address",
    );
    assert.deepEqual(n1.agent.refused, [
      { node: "node-0003", field: "podCIDRs", value: LIE, reason: "outside-assigned-pod-cidrs" },
      { node: "node-0003", field: "underlay", value: simUnderlay(2), reason: "address-not-assigned" },
    ]);
    await waitUntil(
      () => !n1.backend.hasPeer("node-0003"),
      10_000,
      "node-0001 dropping node-0003's peer (no believed address)",
    );
    // node-0002 is untouched: still its peer, at its own address.
    const epoch = n1.backend.epochs()[0]!;
    assert.equal(n1.backend.generation(epoch)!.peers.get("node-0002")?.endpoint.address, simUnderlay(2));
  });
});
