import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { selectionHash } from "../protocol/index.js";
import { ManualClock } from "../clock.js";
import { MemoryDatastore } from "../../test/support/memory-datastore/index.js";
import type { InvalidObject, Stored } from "../datastore/types.js";
import { ValidationError } from "../errors/index.js";
import { createLogger } from "../log/logger.js";
import {
  parseResource,
  policyCondition,
  type ClusterEncryption,
  type EncryptionPolicy,
  type Endpoints,
  type Node,
  type Service,
} from "../model/index.js";
import { fromStored, resolveSelectors } from "../policy/index.js";
import {
  policyStatuses,
  PolicyStatusController,
  sameStatus,
  type PolicyStatusInputs,
} from "./policy-status.js";

const T0 = Date.parse("2026-03-01T12:00:00Z");
const iso = (ms: number): string => new Date(ms).toISOString();

const DNS: EncryptionPolicy = parseResource("encryptionpolicies", {
  name: "dns",
  policies: [
    { name: "kube-dns", service: "kube-dns", namespace: "kube-system", ports: "udp/53,tcp/53" },
    { name: "cert", service: "cm", namespace: "cert-manager", ports: "tcp/9402" },
  ],
});
const WEB: EncryptionPolicy = parseResource("encryptionpolicies", {
  name: "web",
  namespace: "default",
  policies: [{ name: "web", service: "web", namespace: "default", ports: "tcp/80" }],
});
const services: Service[] = [
  parseResource("services", { name: "kube-dns", namespace: "kube-system", ports: ["udp/53", "tcp/53"] }),
  parseResource("services", { name: "web", namespace: "default", ports: ["tcp/80"] }),
];
const endpoints: Endpoints[] = [
  parseResource("endpoints", {
    name: "kube-dns",
    namespace: "kube-system",
    addresses: [
      { ip: "10.244.2.5", node: "n2" },
      { ip: "10.244.3.5", node: "n3" },
    ],
  }),
  parseResource("endpoints", {
    name: "web",
    namespace: "default",
    addresses: [{ ip: "10.244.1.9", node: "n1" }],
  }),
];
const selective: ClusterEncryption = parseResource("clusterencryptions", {
  name: "default",
  encryption: "selective",
  applied: { enabled: true, mode: "wireguard" },
});

function stored(p: EncryptionPolicy, revision: string, generation?: number): Stored<EncryptionPolicy> {
  const key = p.namespace === undefined ? p.name : `${p.namespace}/${p.name}`;
  return { key, value: p, revision, ...(generation === undefined ? {} : { generation }) };
}

/** The hash agents publish for `policies` (the same resolution as src/agent/agent.ts). */
function hashOf(policies: EncryptionPolicy[]): string {
  return selectionHash(
    resolveSelectors({ policies: policies.map(fromStored), services, endpoints, pods: [] }).selectors,
  );
}

function node(name: string, selection: string | undefined, heartbeatAt = T0): Node {
  return parseResource("nodes", {
    name,
    underlay: { ipv4: "172.30.0.11" },
    heartbeat: iso(heartbeatAt),
    ...(selection === undefined ? {} : { status: { errors: [], selection } }),
  });
}

function inputs(over: Partial<PolicyStatusInputs> = {}): PolicyStatusInputs {
  return {
    policies: new Map([
      ["dns", stored(DNS, "10")],
      ["default/web", stored(WEB, "11", 4)],
    ]),
    invalid: new Map(),
    services,
    endpoints,
    nodes: [],
    cluster: selective,
    now: T0,
    ...over,
  };
}

const summary = (st: ReturnType<typeof policyStatuses>[number]["status"]) => ({
  accepted: [policyCondition(st, "Accepted")?.status, policyCondition(st, "Accepted")?.reason],
  programmed: [
    policyCondition(st, "Programmed")?.status,
    policyCondition(st, "Programmed")?.reason,
    policyCondition(st, "Programmed")?.message,
  ],
  n: `${st.programmedNodes}/${st.nodes}`,
  endpoints: st.selectedEndpoints,
});

describe("policy status: Accepted and Programmed on N of M nodes", () => {
  const h = hashOf([DNS, WEB]);

  it("every live node shows the hash of the resolved set: Programmed on 3 of 3", () => {
    const out = policyStatuses(inputs({ nodes: [node("n1", h), node("n2", h), node("n3", h)] }));
    assert.deepEqual(
      out.map((w) => [w.key, w.revision]),
      [
        ["default/web", "11"],
        ["dns", "10"],
      ],
    );
    assert.deepEqual(summary(out[1]!.status), {
      accepted: ["True", "Valid"],
      programmed: [
        "True",
        "Programmed",
        "programmed on 3 of 3 nodes; rule cert: service cert-manager/cm not found",
      ],
      n: "3/3",
      endpoints: 2,
    });
    assert.deepEqual(summary(out[0]!.status).programmed, [
      "True",
      "Programmed",
      "programmed on 3 of 3 nodes",
    ]);
    assert.equal(out[0]!.status.selectedEndpoints, 1);
    // Kubernetes generations are carried into observedGeneration; other stores have none.
    assert.equal(out[0]!.status.observedGeneration, 4);
    assert.ok(out[0]!.status.conditions.every((c) => c.observedGeneration === 4));
    assert.equal(out[1]!.status.observedGeneration, undefined);
  });

  it("a node with another hash (or none) is not counted; a dead node is not a node", () => {
    const nodes = [
      node("n1", h),
      node("n2", hashOf([DNS])),
      node("n3", undefined),
      node("n4", h, T0 - 60_000), // heartbeat a minute old: not live
    ];
    const out = policyStatuses(inputs({ nodes }));
    assert.deepEqual(summary(out[0]!.status).programmed, ["False", "Pending", "programmed on 1 of 3 nodes"]);
    assert.equal(out[0]!.status.programmedNodes, 1);
    assert.equal(out[0]!.status.nodes, 3);
  });

  it("an invalid stored object: Accepted False with the error naming the field", () => {
    const bad: InvalidObject = {
      key: "broken",
      revision: "12",
      error: new ValidationError("spec.policies[0].serviceports", "port 99999 is out of range 1-65535"),
      generation: 2,
    };
    const out = policyStatuses(inputs({ invalid: new Map([["broken", bad]]), nodes: [node("n1", h)] }));
    const b = out.find((w) => w.key === "broken")!;
    assert.equal(b.revision, "12");
    assert.deepEqual(summary(b.status), {
      accepted: ["False", "Invalid"],
      programmed: ["False", "NotAccepted", "the policy is invalid: nothing of it is installed"],
      n: "0/1",
      endpoints: 0,
    });
    assert.equal(
      policyCondition(b.status, "Accepted")?.message,
      "spec.policies[0].serviceports: port 99999 is out of range 1-65535",
    );
    // An object that turned invalid keeps its last valid version on the nodes, and in the hash.
    const turned = policyStatuses(
      inputs({ invalid: new Map([["dns", { ...bad, key: "dns" }]]), nodes: [node("n1", h)] }),
    );
    assert.deepEqual(
      turned.map((w) => [w.key, policyCondition(w.status, "Accepted")?.status]),
      [
        ["default/web", "True"],
        ["dns", "False"],
      ],
    );
    assert.match(policyCondition(turned[1]!.status, "Programmed")!.message, /keep its last valid version/);
    assert.equal(turned[0]!.status.programmedNodes, 1, "the hash still includes the old version");
  });

  it("without selective encryption (or with encryption off) nothing is programmed, and it says why", () => {
    const all = policyStatuses(
      inputs({ cluster: { ...selective, encryption: "all" }, nodes: [node("n1", h)] }),
    );
    assert.deepEqual(summary(all[0]!.status).programmed.slice(0, 2), ["False", "NotSelective"]);
    assert.equal(all[0]!.status.programmedNodes, 0);
    const off = policyStatuses(
      inputs({ cluster: { ...selective, enabled: false, applied: { enabled: false, mode: "wireguard" } } }),
    );
    assert.deepEqual(summary(off[0]!.status).programmed.slice(0, 2), ["False", "EncryptionDisabled"]);
  });

  it("transition times move only when a condition's status does", () => {
    const first = policyStatuses(inputs({ nodes: [node("n1", undefined)] }))[0]!;
    assert.equal(policyCondition(first.status, "Programmed")?.lastTransitionTime, "2026-03-01T12:00:00Z");
    const withStatus = (s: typeof first.status) =>
      new Map([["default/web", stored({ ...WEB, status: s }, "13", 4)]]);
    const later = T0 + 30_000;
    // Same conditions a little later (another node now pending): times kept, the rest updated.
    const again = policyStatuses(
      inputs({
        policies: withStatus(first.status),
        nodes: [node("n1", undefined, later), node("n2", undefined, later)],
        now: later,
      }),
    )[0]!;
    assert.deepEqual(
      again.status.conditions.map((c) => c.lastTransitionTime),
      first.status.conditions.map((c) => c.lastTransitionTime),
    );
    assert.equal(again.status.nodes, 2);
    assert.equal(sameStatus(again.status, first.status), false);
    // Programmed flips to True: its time moves, Accepted's does not.
    const web = hashOf([WEB]);
    const done = policyStatuses(
      inputs({ policies: withStatus(first.status), nodes: [node("n1", web, later)], now: later }),
    )[0]!;
    assert.equal(policyCondition(done.status, "Programmed")?.lastTransitionTime, "2026-03-01T12:00:30Z");
    assert.equal(policyCondition(done.status, "Accepted")?.lastTransitionTime, "2026-03-01T12:00:00Z");
    assert.ok(sameStatus(done.status, { ...done.status, conditions: [...done.status.conditions].reverse() }));
  });
});

describe("PolicyStatusController on a datastore", () => {
  it("writes each status once, follows changes, and rewrites nothing unchanged", async () => {
    const clock = new ManualClock(0, T0);
    const store = new MemoryDatastore({ clock, sweepIntervalMs: 0 });
    const logger = createLogger("test", { level: "silent" });
    const ctl = new PolicyStatusController({ store, clock, logger, recheckMs: 60_000, minIntervalMs: 0 });
    try {
      await store.collection("clusterencryptions").create(selective);
      for (const s of services) await store.collection("services").create(s);
      for (const e of endpoints) await store.collection("endpoints").create(e);
      for (const n of ["n1", "n2"]) await store.collection("nodes").create(node(n, undefined));
      const pol = await store.collection("encryptionpolicies").create(WEB);
      await ctl.start();
      const status = async () => (await store.collection("encryptionpolicies").get(pol.key))?.value.status;
      const until = async (what: string, ok: () => Promise<boolean>) => {
        for (let i = 0; i < 200 && !(await ok()); i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(await ok(), what);
      };
      await until("first status", async () => (await status())?.nodes === 2);
      assert.equal(policyCondition(await status(), "Programmed")?.message, "programmed on 0 of 2 nodes");
      assert.equal(ctl.counters.writes, 1);
      // The agents install the set and publish its hash.
      const h = hashOf([WEB]);
      for (const n of ["n1", "n2"]) {
        const cur = (await store.collection("nodes").get(n))!;
        await store
          .collection("nodes")
          .update({ ...cur.value, status: { errors: [], selection: h } }, { revision: cur.revision });
      }
      await until("programmed", async () => (await status())?.programmedNodes === 2);
      assert.equal(policyCondition(await status(), "Programmed")?.status, "True");
      const writes = ctl.counters.writes;
      // A heartbeat and a recomputation change nothing: nothing is written.
      await ctl.writeAll();
      const n1 = (await store.collection("nodes").get("n1"))!;
      await store
        .collection("nodes")
        .update({ ...n1.value, heartbeat: iso(T0 + 1000) }, { revision: n1.revision });
      await ctl.writeAll();
      assert.equal(ctl.counters.writes, writes);
      // A policy stored in a form that does not validate gets Accepted=False with the field.
      await store.backing.transaction((tx) =>
        tx.put(
          "encryptionpolicies",
          "default/bad",
          {
            name: "bad",
            namespace: "default",
            policies: [{ name: "b", service: "web", namespace: "default", ports: "tcp/0" }],
          },
          undefined,
        ),
      );
      await until("invalid reported", async () => {
        const bad = (await store.collection("encryptionpolicies").list()).invalid[0];
        return bad?.status !== undefined;
      });
      const bad = (await store.collection("encryptionpolicies").list()).invalid[0]!;
      assert.equal(policyCondition(bad.status, "Accepted")?.status, "False");
      assert.match(policyCondition(bad.status, "Accepted")!.message, /^policies\.0\.ports: .*tcp\/0/);
      assert.equal(ctl.counters.failures, 0);
    } finally {
      await ctl.stop();
      await store.close();
    }
  });
});
