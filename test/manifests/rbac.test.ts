import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { API_CALLS as CLIENT_CALLS } from "../../src/datastore/kubernetes/api-calls.js";
import { COMPONENT_CALLS, NOT_GRANTED } from "../../src/cli/manifests/api-calls.js";
import { defaultManifestOptions } from "../../src/cli/manifests/options.js";
import { rbacObjects } from "../../src/cli/manifests/rbac.js";
import type { KubeObject } from "../../src/cli/manifests/render.js";

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
const NS = "podcrypt-system";

/**
 * What the RBAC objects grant, as `component scope group/resource verb`: bindings are followed to
 * their roles, so a role nobody is bound to grants nothing.
 */
function grants(objects: KubeObject[]): Set<string> {
  const out = new Set<string>();
  const roles = new Map<string, Rule[]>();
  for (const o of objects) {
    const m = o["metadata"] as { name: string; namespace?: string };
    if (o["kind"] === "ClusterRole") roles.set(`ClusterRole/${m.name}`, o["rules"] as Rule[]);
    if (o["kind"] === "Role") roles.set(`Role/${m.namespace}/${m.name}`, o["rules"] as Rule[]);
  }
  for (const o of objects) {
    if (o["kind"] !== "ClusterRoleBinding" && o["kind"] !== "RoleBinding") continue;
    const m = o["metadata"] as { namespace?: string };
    const ref = o["roleRef"] as { kind: string; name: string };
    const rules =
      ref.kind === "ClusterRole"
        ? roles.get(`ClusterRole/${ref.name}`)
        : roles.get(`Role/${m.namespace}/${ref.name}`);
    assert.ok(rules, `binding to missing ${ref.kind} ${ref.name}`);
    const scope =
      o["kind"] === "RoleBinding" ? (m.namespace === NS ? "own" : `ns:${m.namespace}`) : "cluster";
    for (const s of o["subjects"] as { kind: string; name: string; namespace: string }[]) {
      assert.equal(s.kind, "ServiceAccount");
      assert.equal(s.namespace, NS);
      const component = s.name.replace(/^podcrypt-/, "");
      for (const r of rules)
        for (const g of r.apiGroups)
          for (const res of r.resources)
            for (const v of r.verbs) {
              assert.notEqual(v, "*", "no wildcard verbs");
              assert.notEqual(res, "*", "no wildcard resources");
              out.add(`${component} ${scope} ${g}/${res} ${v}`);
            }
    }
  }
  return out;
}

const componentKeys = new Set(
  COMPONENT_CALLS.map((c) => `${c.component} ${c.scope} ${c.apiGroup}/${c.resource} ${c.verb}`),
);

describe("RBAC grants exactly what the client layer calls", () => {
  const granted = grants(rbacObjects(defaultManifestOptions("0")));

  it("every call of each component is granted to it", () => {
    assert.deepEqual(
      [...componentKeys].filter((c) => !granted.has(c)),
      [],
    );
  });
  it("nothing is granted that no call of the component needs", () => {
    assert.deepEqual(
      [...granted].filter((g) => !componentKeys.has(g)),
      [],
    );
  });
  it("the components' calls plus NOT_GRANTED are exactly src/datastore/kubernetes/api-calls.ts", () => {
    const key = (g: string, r: string, v: string) => `${g}/${r} ${v}`;
    const client = new Set(
      CLIENT_CALLS.filter((c) => c.onlyWith === undefined).map((c) =>
        key(c.apiGroup, c.subresource === "" ? c.resource : `${c.resource}/${c.subresource}`, c.verb),
      ),
    );
    const ours = new Set([
      ...COMPONENT_CALLS.map((c) => key(c.apiGroup, c.resource, c.verb)),
      ...NOT_GRANTED.flatMap((n) => n.verbs.map((v) => key(n.apiGroup, n.resource, v))),
    ]);
    assert.deepEqual(
      [...client].filter((c) => !ours.has(c)).sort(),
      [],
      "client calls no component is granted",
    );
    assert.deepEqual(
      [...ours].filter((c) => !client.has(c)).sort(),
      [],
      "grants for calls the client never makes",
    );
    for (const n of NOT_GRANTED)
      for (const v of n.verbs)
        assert.ok(
          !COMPONENT_CALLS.some(
            (c) => c.apiGroup === n.apiGroup && c.resource === n.resource && c.verb === v,
          ),
          `${n.resource} ${v} is both granted and not granted`,
        );
  });
  it("no component may read Secrets or write Services or Endpoints", () => {
    assert.ok(![...granted].some((g) => g.includes("/secrets ")));
    assert.ok(![...granted].some((g) => /\/(services|endpoints) (create|update|patch|delete)$/.test(g)));
  });
  it("agents write only PodcryptNodes, their liveness Lease (no Lease delete) and verify reports", () => {
    const agentWrites = [...granted].filter(
      (g) => g.startsWith("agent ") && /(create|update|patch|delete|deletecollection)$/.test(g),
    );
    assert.deepEqual(agentWrites.sort(), [
      "agent cluster podcrypt.io/podcryptnodes create",
      "agent cluster podcrypt.io/podcryptnodes update",
      "agent cluster podcrypt.io/verifyruns/status patch",
      // Only podcrypt-node-<its node>: the admission policy (test/kubernetes/own-record.test.ts).
      "agent own coordination.k8s.io/leases create",
      "agent own coordination.k8s.io/leases update",
    ]);
    assert.ok(
      granted.has("agent cluster /nodes get") && granted.has("agent own coordination.k8s.io/leases watch"),
    );
    assert.ok(granted.has("controller own coordination.k8s.io/leases update"));
  });
  it("agents need no write on Node objects; the controller's only Node write is patch (the workload taint)", () => {
    const nodeGrants = (component: string) =>
      [...granted].filter((g) => g.startsWith(`${component} `) && /\/nodes(\/[a-z]+)? /.test(g)).sort();
    assert.deepEqual(nodeGrants("agent"), [
      "agent cluster /nodes get",
      "agent cluster /nodes list",
      "agent cluster /nodes watch",
    ]);
    assert.deepEqual(nodeGrants("controller"), [
      "controller cluster /nodes get",
      "controller cluster /nodes patch",
    ]);
  });
  it("the comparison notices a missing grant and an extra one", () => {
    const objects = rbacObjects(defaultManifestOptions("0"));
    const agentRole = objects.find(
      (o) => o["kind"] === "ClusterRole" && (o["metadata"] as { name: string }).name === "podcrypt-agent",
    )!;
    const rules = agentRole["rules"] as Rule[];
    agentRole["rules"] = [...rules.slice(1), { apiGroups: [""], resources: ["secrets"], verbs: ["get"] }];
    const g = grants(objects);
    assert.ok(componentKeys.has("agent cluster /nodes get") && !g.has("agent cluster /nodes get"));
    assert.ok(g.has("agent cluster /secrets get") && !componentKeys.has("agent cluster /secrets get"));
  });
});
