/**
 * The agent on the Kubernetes datastore finds its underlay address and pod CIDRs on its Node, as a
 * DaemonSet pod must (it has only $NODE_NAME): against the test API server, with the agent's
 * own service account token under the generated RBAC (one `get nodes`, nothing else).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { resolveNodeNetwork } from "../../src/cli/agent-node.js";
import type { KubernetesDatastore } from "../../src/datastore/kubernetes/index.js";
import { isValidationError } from "../../src/errors/index.js";
import { PodcryptApi } from "../support/kube-apiserver/fixture.js";
import { SERVICE_ACCOUNT_USERS } from "../support/kube-apiserver/rbac.js";

const field = (f: string, re: RegExp) => (e: unknown) =>
  isValidationError(e) && e.field === f && re.test(e.message);

describe("agent node network from the Node object (kubernetes datastore)", () => {
  let api: PodcryptApi;
  let store: KubernetesDatastore;
  before(async () => {
    api = await PodcryptApi.start({ tokens: { agent: "agent-token", admin: "admin-token" } });
    const nodes = api.server.store.lookup("", "v1", "nodes")!;
    api.server.store.create(nodes, "", {
      metadata: { name: "dual" },
      spec: { podCIDRs: ["10.244.4.0/24", "fd00:4::/64"] },
      status: {
        addresses: [
          { type: "Hostname", address: "dual" },
          { type: "InternalIP", address: "fd30::14" },
          { type: "InternalIP", address: "172.30.0.14" },
        ],
      },
    });
    api.server.store.create(nodes, "", {
      metadata: { name: "bare" },
      status: { addresses: [{ type: "Hostname", address: "bare" }] },
    });
    api.server.store.create(nodes, "", {
      metadata: { name: "no-cidr" },
      status: { addresses: [{ type: "InternalIP", address: "172.30.0.15" }] },
    });
    store = await api.connect("agent-token");
  });
  after(async () => {
    await api?.close();
  });

  it("both families' InternalIPs (the tunnels on the IPv4 one) and spec.podCIDRs, as the kubelet and node IPAM publish them", async () => {
    assert.deepEqual(await resolveNodeNetwork(store, "dual", {}), {
      underlayIp: "172.30.0.14",
      underlay: { ipv4: "172.30.0.14", ipv6: "fd30::14" },
      podCIDRs: ["10.244.4.0/24", "fd00:4::/64"],
      source: { underlayIp: "node", podCIDRs: "node" },
    });
  });

  it("flags win, each on its own", async () => {
    assert.deepEqual(await resolveNodeNetwork(store, "dual", { underlayIp: "fd30::14" }), {
      underlayIp: "fd30::14",
      underlay: { ipv6: "fd30::14" },
      podCIDRs: ["10.244.4.0/24", "fd00:4::/64"],
      source: { underlayIp: "flag", podCIDRs: "node" },
    });
    assert.deepEqual((await resolveNodeNetwork(store, "dual", { podCidr: ["10.9.0.0/24"] })).podCIDRs, [
      "10.9.0.0/24",
    ]);
  });

  it("an IPv6-only Node: its IPv6 InternalIP carries the tunnels", async () => {
    const nodes = api.server.store.lookup("", "v1", "nodes")!;
    api.server.store.create(nodes, "", {
      metadata: { name: "v6only" },
      spec: { podCIDRs: ["10.244.6.0/24", "fd00:6::/64"] },
      status: { addresses: [{ type: "InternalIP", address: "fd30::16" }] },
    });
    const net = await resolveNodeNetwork(store, "v6only", {});
    assert.deepEqual(
      [net.underlayIp, net.underlay, net.podCIDRs],
      ["fd30::16", { ipv6: "fd30::16" }, ["10.244.6.0/24", "fd00:6::/64"]],
    );
  });

  it("what is missing is named, with the flag to pass", async () => {
    await assert.rejects(
      resolveNodeNetwork(store, "ghost", {}),
      field("--node", /Kubernetes has no Node named "ghost"/),
    );
    await assert.rejects(
      resolveNodeNetwork(store, "bare", {}),
      field("--underlay-ip", /no InternalIP.*Hostname bare/),
    );
    await assert.rejects(resolveNodeNetwork(store, "no-cidr", {}), field("--pod-cidr", /no spec\.podCIDRs/));
  });

  it("with the agent's token: only `get nodes` (and the datastore's lease tracking), none refused", () => {
    const agent = api.server.requests.filter((r) => r.user === SERVICE_ACCOUNT_USERS.agent);
    assert.ok(agent.some((r) => r.verb === "get" && r.resource === "nodes"));
    assert.deepEqual(
      agent.filter((r) => r.code === 403),
      [],
    );
    assert.deepEqual([...new Set(agent.map((r) => `${r.verb} ${r.resource}`))].sort(), [
      "get nodes",
      "list leases",
      "watch leases",
    ]);
  });
});
