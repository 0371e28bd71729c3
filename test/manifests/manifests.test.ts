import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Ajv from "ajv";
import { parse as parseCel, evaluate as evaluateCel } from "@marcbachmann/cel-js";
import {
  ValidatingAdmissionPolicy,
  ValidatingAdmissionPolicyBinding,
} from "kubernetes-models/admissionregistration.k8s.io/v1";
import { CustomResourceDefinition } from "kubernetes-models/apiextensions.k8s.io/v1";
import { DaemonSet, Deployment } from "kubernetes-models/apps/v1";
import {
  ClusterRole,
  ClusterRoleBinding,
  Role,
  RoleBinding,
} from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { ConfigMap, Namespace, ServiceAccount } from "kubernetes-models/v1";
import { parseAllDocuments, parse } from "yaml";
import { parseDaemonConfig, parseListenAddress } from "../../src/cli/config.js";
import { policyStatusPatch, toKube } from "../../src/datastore/kubernetes/mapping.js";
import { clusterEncryptionSchema } from "../../src/model/cluster-encryption.js";
import { nodeSchema, nodeStatusSchema } from "../../src/model/node.js";
import { policyStatusSchema, type PolicyStatus } from "../../src/model/encryption-policy.js";
import { projectRoot } from "../../src/paths.js";
import { packageVersion, staleKustomizeFiles, writeKustomizeBase } from "../../src/cli/manifests.js";
import { CLUSTER_ENCRYPTION_STATUS_FIELDS, customResourceDefinitions } from "../../src/cli/manifests/crds.js";
import { defaultManifestOptions, type ManifestOptions } from "../../src/cli/manifests/options.js";
import { manifestObjects, type KubeObject } from "../../src/cli/manifests/render.js";
import { structuralErrors } from "./structural.js";

const root = projectRoot();
const defaults = defaultManifestOptions(packageVersion());
const ipsecOpts: ManifestOptions = { ...defaults, mode: "ipsec", namespace: "enc", controllerReplicas: 1 };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const VALIDATORS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "apps/v1/Deployment": Deployment,
  "apps/v1/DaemonSet": DaemonSet,
  "rbac.authorization.k8s.io/v1/ClusterRole": ClusterRole,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": ClusterRoleBinding,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
  "apiextensions.k8s.io/v1/CustomResourceDefinition": CustomResourceDefinition,
  "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy": ValidatingAdmissionPolicy,
  "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding": ValidatingAdmissionPolicyBinding,
};

const id = (o: KubeObject) => {
  const m = o["metadata"] as { name: string; namespace?: string };
  return `${String(o["apiVersion"])}/${String(o["kind"])}/${m.namespace ?? ""}/${m.name}`;
};
const crdNamed = (objects: KubeObject[], plural: string) =>
  objects.find(
    (o) =>
      o["kind"] === "CustomResourceDefinition" &&
      (o["metadata"] as { name: string }).name.startsWith(`${plural}.`),
  )!;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const versionOf = (crd: KubeObject): any => (crd["spec"] as { versions: unknown[] }).versions[0];

describe("every manifest validates against the Kubernetes OpenAPI schemas", () => {
  for (const [what, opts] of [
    ["defaults", defaults],
    ["--mode ipsec, other namespace, 1 replica", ipsecOpts],
  ] as const)
    it(what, () => {
      const objects = manifestObjects(opts);
      assert.equal(objects.length, 25); // three admission policies (own record, own Lease, own report) and their bindings
      assert.equal(new Set(objects.map(id)).size, objects.length, "no object twice");
      for (const o of objects) {
        const V = VALIDATORS[`${String(o["apiVersion"])}/${String(o["kind"])}`];
        assert.ok(V, `no validator for ${id(o)}`);
        assert.doesNotThrow(() => new V(o).validate(), `${id(o)} is invalid`);
      }
    });

  it("the validator is not a rubber stamp", () => {
    const ds = manifestObjects(defaults).find((o) => o["kind"] === "DaemonSet")!;
    const bad = structuredClone(ds) as { spec: { template: { spec: { hostNetwork: unknown } } } };
    bad.spec.template.spec.hostNetwork = "yes";
    assert.throws(
      () => new DaemonSet(bad as unknown as ConstructorParameters<typeof DaemonSet>[0]).validate(),
      /hostNetwork must be boolean/,
    );
  });
});

describe("CRDs", () => {
  const crds = customResourceDefinitions();

  for (const crd of crds) {
    const name = (crd["metadata"] as { name: string }).name;
    it(`${name} is structural, with status subresource (not PodcryptNode) and valid printer columns`, () => {
      const v = versionOf(crd);
      assert.deepEqual(structuralErrors(v.schema.openAPIV3Schema), []);
      // A node record is written in one request, its status with it.
      assert.deepEqual(v.subresources, name === "podcryptnodes.podcrypt.io" ? undefined : { status: {} });
      assert.ok(v.additionalPrinterColumns.length >= 2);
      for (const c of v.additionalPrinterColumns) {
        assert.match(c.jsonPath, /^\./);
        assert.ok(["integer", "number", "string", "boolean", "date"].includes(c.type), c.name);
      }
      assert.equal(
        name,
        `${crd["spec"] && (crd["spec"] as { names: { plural: string } }).names.plural}.${(crd["spec"] as { group: string }).group}`,
      );
    });
  }

  it("scopes: ClusterEncryption, PodcryptNode, VerifyRun and IPsecPolicy cluster-scoped (as StarlingX), EncryptionPolicy namespaced", () => {
    assert.deepEqual(
      crds.map((c) => [(c["metadata"] as { name: string }).name, (c["spec"] as { scope: string }).scope]),
      [
        ["clusterencryptions.podcrypt.io", "Cluster"],
        ["encryptionpolicies.podcrypt.io", "Namespaced"],
        ["ipsecpolicies.starlingx.io", "Cluster"],
        ["podcryptnodes.podcrypt.io", "Cluster"],
        ["verifyruns.podcrypt.io", "Cluster"],
      ],
    );
  });

  it("PodcryptNode: spec holds exactly the model's fields but name and status, .status the model's status", () => {
    const schema = versionOf(crdNamed(crds, "podcryptnodes")).schema.openAPIV3Schema;
    const model = Object.keys(nodeSchema.shape).filter((k) => k !== "name" && k !== "status");
    assert.deepEqual(Object.keys(schema.properties.spec.properties).sort(), model.sort());
    assert.deepEqual(
      Object.keys(schema.properties.status.properties).sort(),
      Object.keys(nodeStatusSchema.shape).sort(),
    );
  });

  it("a PodcryptNode as the Kubernetes datastore writes it validates against the CRD", () => {
    const ajv = new Ajv({ allErrors: true, unknownFormats: "ignore" });
    const v = ajv.compile(structuredClone(versionOf(crdNamed(crds, "podcryptnodes")).schema.openAPIV3Schema));
    const model = nodeSchema.parse({
      name: "node-1",
      underlay: { ipv4: "172.30.0.11" },
      podCIDRs: ["10.244.1.0/24"],
      publicKeys: { "3": Buffer.alloc(32, 3).toString("base64") },
      acknowledgements: [{ epoch: 3, phase: "prepare", at: "2026-01-01T00:00:00Z" }],
      backend: "esp-userspace",
      heartbeat: "2026-01-01T00:00:00Z",
      status: { errors: ["x"], mtu: 1420, selection: "0123456789abcdef" },
    });
    const parts = toKube("nodes", model);
    const doc = {
      apiVersion: "podcrypt.io/v1",
      kind: "PodcryptNode",
      metadata: { name: "node-1" },
      ...parts.body,
    };
    assert.ok(v(doc), ajv.errorsText(v.errors));
    const spec = parts.body["spec"] as Record<string, unknown>;
    assert.equal(v({ ...doc, spec: { ...spec, backend: "carrier-pigeon" } }), false);
    assert.equal(v({ ...doc, spec: { ...spec, publicKeys: { "3": "short" } } }), false);
    assert.equal(v({ ...doc, spec: { ...spec, underlay: undefined } }), false);
  });

  it("the structural checker finds violations", () => {
    assert.deepEqual(
      structuralErrors({
        type: "object",
        properties: {
          a: { description: "untyped" },
          b: { type: "array" },
          c: { type: "object", properties: {}, additionalProperties: { type: "string" } },
          d: { $ref: "#/x", type: "string" },
          metadata: { type: "object", properties: {}, required: ["name"] },
        },
      }),
      [
        "openAPIV3Schema.properties.a: type is missing",
        "openAPIV3Schema.properties.b: an array needs one items schema",
        "openAPIV3Schema.properties.c: properties and additionalProperties together",
        "openAPIV3Schema.properties.d: $ref is not allowed",
        "openAPIV3Schema.properties.metadata: only {type: object} is allowed",
      ],
    );
  });

  it("ClusterEncryption spec holds exactly the model's fields (the datastore keeps them all in spec)", () => {
    const schema = versionOf(crds[0]!).schema.openAPIV3Schema;
    const spec = Object.keys(schema.properties.spec.properties).sort();
    const model = Object.keys(clusterEncryptionSchema.shape).filter((k) => k !== "name");
    assert.deepEqual(spec, model.sort());
    assert.deepEqual(
      Object.keys(schema.properties.status.properties).sort(),
      [...CLUSTER_ENCRYPTION_STATUS_FIELDS].sort(),
    );
  });

  it("a ClusterEncryption as the Kubernetes datastore writes it validates against the CRD", () => {
    const ajv = new Ajv({ allErrors: true, unknownFormats: "ignore" });
    const v = ajv.compile(structuredClone(versionOf(crds[0]!).schema.openAPIV3Schema));
    const model = clusterEncryptionSchema.parse({
      name: "default",
      phase: "prepare",
      target: { epoch: 2, mode: "ipsec", enabled: true },
      epoch: 1,
      phaseStartedAt: { prepare: "2026-01-01T00:00:00Z" },
      timeouts: [{ node: "n1", epoch: 1, phase: "switch", at: "2026-01-01T00:00:00Z" }],
    });
    const { name: _name, ...spec } = model;
    const doc = {
      apiVersion: "podcrypt.io/v1",
      kind: "ClusterEncryption",
      metadata: { name: "default" },
      spec,
    };
    assert.ok(v(doc), ajv.errorsText(v.errors));
    assert.equal(v({ ...doc, spec: { ...spec, phase: "finish" } }), false);
  });

  describe("custom resources validate against their CRD schema", () => {
    const ajv = new Ajv({ allErrors: true, unknownFormats: "ignore" });
    const validatorFor = (plural: string) => {
      const schema = structuredClone(versionOf(crdNamed(crds, plural)).schema.openAPIV3Schema);
      return ajv.compile(schema);
    };
    const fixture = (f: string) =>
      parseAllDocuments(readFileSync(join(root, "test/policy/fixtures", f), "utf8")).map(
        (d) => d.toJS() as KubeObject,
      );

    it("the seed's IPsecPolicy examples, unchanged", () => {
      const v = validatorFor("ipsecpolicies");
      for (const f of ["starlingx-ipsecpolicy.yaml", "starlingx-ipsecpolicy-updated.yaml"])
        for (const doc of fixture(f)) assert.ok(v(doc), `${f}: ${ajv.errorsText(v.errors)}`);
    });
    it("the EncryptionPolicy fixtures", () => {
      const v = validatorFor("encryptionpolicies");
      for (const doc of fixture("encryptionpolicy.yaml").slice(0, 1))
        assert.ok(v(doc), ajv.errorsText(v.errors));
    });
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ["bad port syntax", { serviceports: "udp53" }, /serviceports/],
      ["unknown protocol", { serviceports: "icmp/8" }, /serviceports/],
      ["missing servicens", { servicens: undefined }, /servicens/],
      ["upper-case service", { servicename: "DNS" }, /servicename/],
    ];
    it("a policy status as the controller writes it validates, on both kinds; the schema has the model's fields", () => {
      const status: PolicyStatus = {
        conditions: [
          {
            type: "Accepted",
            status: "True",
            reason: "Valid",
            message: "the policy is valid",
            lastTransitionTime: "2026-01-01T00:00:00Z",
            observedGeneration: 3,
          },
          {
            type: "Programmed",
            status: "False",
            reason: "Pending",
            message: "programmed on 2 of 3 nodes",
            lastTransitionTime: "2026-01-01T00:00:00Z",
            observedGeneration: 3,
          },
        ],
        programmedNodes: 2,
        nodes: 3,
        selectedEndpoints: 4,
        observedGeneration: 3,
      };
      for (const [plural, doc] of [
        ["ipsecpolicies", fixture("starlingx-ipsecpolicy.yaml")[0]!],
        ["encryptionpolicies", fixture("encryptionpolicy.yaml")[0]!],
      ] as const) {
        const v = validatorFor(plural);
        assert.ok(v({ ...doc, status: policyStatusPatch(status) }), `${plural}: ${ajv.errorsText(v.errors)}`);
        assert.equal(v({ ...doc, status: { ...policyStatusPatch(status), nodes: -1 } }), false);
        const schema = versionOf(crdNamed(crds, plural)).schema.openAPIV3Schema;
        const fields = Object.keys(schema.properties.status.properties).filter((k) => k !== "status");
        assert.deepEqual(fields.sort(), Object.keys(policyStatusSchema.shape).sort(), plural);
      }
    });
    for (const [what, change, field] of bad)
      it(`the IPsecPolicy schema refuses ${what}`, () => {
        const v = validatorFor("ipsecpolicies");
        const rule = {
          name: "r",
          servicename: "dns",
          servicens: "kube-system",
          serviceports: "udp/53",
          ...change,
        };
        const doc = {
          apiVersion: "starlingx.io/v1",
          kind: "IPsecPolicy",
          metadata: { name: "x" },
          spec: { policies: [JSON.parse(JSON.stringify(rule))] },
        };
        assert.equal(v(doc), false);
        assert.match(ajv.errorsText(v.errors), field);
      });
  });
});

describe("admission: an agent writes only its own node's PodcryptNode", () => {
  for (const [what, opts] of [
    ["defaults", defaults],
    ["other namespace", ipsecOpts],
  ] as const) {
    const objects = manifestObjects(opts);
    const policy = objects.find((o) => o["kind"] === "ValidatingAdmissionPolicy")!;
    const binding = objects.find((o) => o["kind"] === "ValidatingAdmissionPolicyBinding")!;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const spec = policy["spec"] as any;
    const agentUser = `system:serviceaccount:${opts.namespace}:podcrypt-agent`;

    it(`${what}: matches every write of podcryptnodes, by the agents' service account only, and fails closed`, () => {
      assert.equal(spec.failurePolicy, "Fail");
      assert.deepEqual(spec.matchConstraints.resourceRules, [
        {
          apiGroups: ["podcrypt.io"],
          apiVersions: ["*"],
          operations: ["CREATE", "UPDATE", "DELETE"],
          resources: ["podcryptnodes"],
        },
      ]);
      assert.equal(spec.matchConditions.length, 1);
      assert.equal(spec.matchConditions[0].expression, `request.userInfo.username == '${agentUser}'`);
      assert.deepEqual(binding["spec"], {
        policyName: (policy["metadata"] as { name: string }).name,
        validationActions: ["Deny"],
      });
    });

    it(`${what}: the CEL parses and references the token's node name and the object's name`, () => {
      const exprs = [
        spec.matchConditions[0].expression,
        ...spec.validations.flatMap((v: { expression: string; messageExpression: string }) => [
          v.expression,
          v.messageExpression,
        ]),
      ];
      for (const e of exprs) assert.doesNotThrow(() => parseCel(e), e);
      const validation = spec.validations[0].expression as string;
      assert.match(validation, /request\.userInfo\.extra\['authentication\.kubernetes\.io\/node-name'\]/);
      assert.match(validation, /request\.name/);
      assert.doesNotMatch(validation, /object\./, "DELETE has no object: the name is request.name");
    });

    it(`${what}: the CEL decides as intended`, () => {
      const req = (username: string, node: string[] | undefined, name: string) => ({
        request: {
          name,
          operation: "UPDATE",
          userInfo: {
            username,
            groups: [],
            extra: node === undefined ? {} : { "authentication.kubernetes.io/node-name": node },
          },
        },
      });
      const matched = (v: ReturnType<typeof req>) =>
        evaluateCel(spec.matchConditions[0].expression, v) === true;
      const allowed = (v: ReturnType<typeof req>) => evaluateCel(spec.validations[0].expression, v) === true;
      const rows: [ReturnType<typeof req>, boolean, boolean][] = [
        [req(agentUser, ["node-1"], "node-1"), true, true],
        [req(agentUser, ["node-1"], "node-2"), true, false],
        [req(agentUser, undefined, "node-1"), true, false],
        [req(agentUser, ["node-1", "node-2"], "node-2"), true, false],
        [req(agentUser, [], "node-1"), true, false],
        [req("system:serviceaccount:other:podcrypt-agent", undefined, "node-1"), false, false],
        [req("admin", undefined, "node-1"), false, false],
      ];
      for (const [v, m, a] of rows) {
        assert.equal(matched(v), m, JSON.stringify(v));
        if (m) assert.equal(allowed(v), a, JSON.stringify(v));
      }
    });
  }
});

describe("admission: the policies are the agents' own record, own Lease and own verify report, none on Nodes", () => {
  it("no policy matches Nodes (agents cannot write them at all: RBAC is read only)", () => {
    const objects = manifestObjects(ipsecOpts);
    const policies = objects.filter((o) => o["kind"] === "ValidatingAdmissionPolicy");
    assert.deepEqual(policies.map((p) => (p["metadata"] as { name: string }).name).sort(), [
      "podcrypt-agent-own-lease",
      "podcrypt-agent-own-node",
      "podcrypt-agent-own-report",
    ]);
    for (const p of policies) {
      const rules = (p["spec"] as { matchConstraints: { resourceRules: { resources: string[] }[] } })
        .matchConstraints.resourceRules;
      assert.ok(!rules.some((r) => r.resources.includes("nodes")), JSON.stringify(rules));
    }
  });
});

describe("admission: an agent writes only its own node's report in a verify run's status", () => {
  const objects = manifestObjects(ipsecOpts);
  const named = (kind: string) =>
    objects.find(
      (o) => o["kind"] === kind && (o["metadata"] as { name: string }).name === "podcrypt-agent-own-report",
    )!;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const spec = named("ValidatingAdmissionPolicy")["spec"] as any;
  const agentUser = `system:serviceaccount:${ipsecOpts.namespace}:podcrypt-agent`;

  it("matches status writes of verifyruns by the agents' service account only, fails closed, is bound with Deny", () => {
    assert.equal(spec.failurePolicy, "Fail");
    assert.deepEqual(spec.matchConstraints.resourceRules, [
      {
        apiGroups: ["podcrypt.io"],
        apiVersions: ["*"],
        operations: ["UPDATE"],
        resources: ["verifyruns/status"],
      },
    ]);
    assert.equal(spec.matchConditions[0].expression, `request.userInfo.username == '${agentUser}'`);
    assert.deepEqual(named("ValidatingAdmissionPolicyBinding")["spec"], {
      policyName: "podcrypt-agent-own-report",
      validationActions: ["Deny"],
    });
    for (const v of spec.validations) {
      assert.doesNotThrow(() => parseCel(v.expression), v.expression);
      if (v.messageExpression !== undefined) assert.doesNotThrow(() => parseCel(v.messageExpression));
    }
  });

  it("the CEL decides as intended", () => {
    const run = (reports?: Record<string, object>) => (reports === undefined ? {} : { status: { reports } });
    const allowed = (bound: string[] | undefined, object: object, oldObject: object) =>
      spec.validations.every(
        (v: { expression: string }) =>
          evaluateCel(v.expression, {
            request: {
              userInfo: {
                username: agentUser,
                extra: bound === undefined ? {} : { "authentication.kubernetes.io/node-name": bound },
              },
            },
            object,
            oldObject,
          }) === true,
      );
    const rows: [string, boolean, string[] | undefined, object, object][] = [
      ["its first report", true, ["node-1"], run({ "node-1": { a: 1 } }), run()],
      [
        "its report beside another's",
        true,
        ["node-1"],
        run({ "node-1": { a: 1 }, "node-2": { b: 1 } }),
        run({ "node-2": { b: 1 } }),
      ],
      [
        "rewrite another's",
        false,
        ["node-1"],
        run({ "node-1": { a: 1 }, "node-2": { b: 2 } }),
        run({ "node-2": { b: 1 } }),
      ],
      ["remove another's", false, ["node-1"], run({ "node-1": { a: 1 } }), run({ "node-2": { b: 1 } })],
      ["add another's", false, ["node-1"], run({ "node-3": { c: 1 } }), run()],
      ["no bound node", false, undefined, run({ "node-1": { a: 1 } }), run()],
      ["two bound nodes", false, ["node-1", "node-2"], run({ "node-1": { a: 1 } }), run()],
    ];
    for (const [what, want, bound, object, oldObject] of rows)
      assert.equal(allowed(bound, object, oldObject), want, what);
  });
});

describe("workloads", () => {
  const objects = manifestObjects(ipsecOpts);
  const get = (kind: string) => objects.find((o) => o["kind"] === kind)!;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const podSpec = (kind: string): any => (get(kind)["spec"] as any).template.spec;

  it("agent DaemonSet: host network, NET_ADMIN, every node, state and wireguard host paths, probes, resources", () => {
    const spec = podSpec("DaemonSet");
    assert.equal(spec.hostNetwork, true);
    assert.deepEqual(spec.tolerations, [{ operator: "Exists" }]);
    const c = spec.containers[0];
    assert.ok(c.securityContext.capabilities.add.includes("NET_ADMIN"));
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    const hostPaths = spec.volumes
      .filter((v: { hostPath?: unknown }) => v.hostPath)
      .map((v: { hostPath: { path: string } }) => v.hostPath.path);
    assert.ok(hostPaths.includes("/var/lib/podcrypt") && hostPaths.includes("/var/run/wireguard"));
    for (const m of c.volumeMounts)
      assert.ok(
        spec.volumes.some((v: { name: string }) => v.name === m.name),
        m.name,
      );
    assert.ok(c.livenessProbe.httpGet && c.readinessProbe.httpGet && c.resources.requests.cpu);
    assert.equal(
      c.env.find((e: { name: string }) => e.name === "NODE_NAME").valueFrom.fieldRef.fieldPath,
      "spec.nodeName",
    );
  });

  it("controller Deployment: replicas, non-root, own service account, in the namespace", () => {
    const d = get("Deployment") as { metadata: { namespace: string }; spec: { replicas: number } };
    assert.equal(d.metadata.namespace, "enc");
    assert.equal(d.spec.replicas, 1);
    assert.equal(podSpec("Deployment").securityContext.runAsNonRoot, true);
    assert.equal(podSpec("Deployment").serviceAccountName, "podcrypt-controller");
  });

  it("the ConfigMap's config.yaml is what the daemons read; health listens on the pod IP, where the probes go", () => {
    for (const opts of [defaults, ipsecOpts]) {
      const objs = manifestObjects(opts);
      const cm = objs.find((o) => o["kind"] === "ConfigMap") as { data: Record<string, string> };
      const config = parseDaemonConfig(cm.data["config.yaml"]!, "config.yaml");
      assert.equal(config.datastore, "kubernetes");
      for (const [kind, section] of [
        ["DaemonSet", config.agent],
        ["Deployment", config.controller],
      ] as const) {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const c = (objs.find((o) => o["kind"] === kind)!["spec"] as any).template.spec.containers[0];
        assert.deepEqual(c.args.slice(1, 3), ["--config", "/etc/podcrypt/config.yaml"], kind);
        // The daemons default to loopback; the kubelet probes the pod IP (the node's for the
        // hostNetwork agent), which Kubernetes substitutes for $(POD_IP) from the env.
        assert.equal(section!.healthAddress, undefined, "no health address in the shared file");
        assert.equal(c.args[3], "--health-address", kind);
        const address = (c.args[4] as string).replace("$(POD_IP)", "10.1.2.3");
        assert.deepEqual(parseListenAddress(address)?.host, "10.1.2.3", kind);
        assert.equal(
          parseListenAddress((c.args[4] as string).replace("$(POD_IP)", "fd00::7"))?.host,
          "fd00::7",
        );
        assert.equal(
          c.env.find((e: { name: string }) => e.name === "POD_IP").valueFrom.fieldRef.fieldPath,
          "status.podIP",
          kind,
        );
        const port = parseListenAddress(address)!.port;
        assert.equal(c.livenessProbe.httpGet.port, port, kind);
        assert.equal(c.readinessProbe.httpGet.port, port, kind);
        assert.equal(c.ports[0].containerPort, port, kind);
        assert.deepEqual(
          [c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path],
          ["/healthz", "/readyz"],
        );
      }
      // The agent's keys go where the state host path is mounted.
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const ds = (objs.find((o) => o["kind"] === "DaemonSet")!["spec"] as any).template.spec;
      const mounts = ds.containers[0].volumeMounts.map((m: { mountPath: string }) => m.mountPath);
      assert.ok(mounts.includes(config.agent!.stateDir), "stateDir is a mounted host path");
      assert.ok(mounts.includes("/var/run/podcrypt"), "the userspace data planes' sockets are writable");
    }
    assert.throws(
      () => parseDaemonConfig("agent:\n  heartbeatSeconds: 10\n", "config.yaml"),
      /^ValidationError: config\.yaml: agent\.heartbeatSeconds: must be at most 5/,
    );
  });

  it("--mode lands in the ConfigMap", () => {
    const cm = get("ConfigMap") as { data: Record<string, string> };
    const config = parse(cm.data["config.yaml"]!) as { cluster: { mode: string }; namespace: string };
    assert.equal(config.cluster.mode, "ipsec");
    assert.equal(config.namespace, "enc");
  });

  it("hostEncryption lands in the ConfigMap (off by default, on with --host-encryption) and seeds a ClusterEncryption that carries it", () => {
    for (const [opts, want] of [
      [defaults, false],
      [{ ...ipsecOpts, hostEncryption: true }, true],
    ] as const) {
      const cm = manifestObjects(opts).find((o) => o["kind"] === "ConfigMap") as {
        data: Record<string, string>;
      };
      assert.ok(new ConfigMap(cm).validate() === undefined);
      // As the controller reads it: the file's cluster section is the seed of ClusterEncryption "default".
      const config = parseDaemonConfig(cm.data["config.yaml"]!, "config.yaml");
      assert.equal(config.cluster?.hostEncryption, want);
      const seeded = clusterEncryptionSchema.parse({ ...config.cluster, name: "default" });
      assert.equal(seeded.hostEncryption, want);
    }
    // A value of the wrong type in the ConfigMap is refused by name.
    assert.throws(
      () => parseDaemonConfig('cluster:\n  hostEncryption: "yes"\n', "config.yaml"),
      /config\.yaml: cluster\.hostEncryption: /,
    );
  });

  it("images follow --image", () => {
    const objs = manifestObjects({ ...defaults, image: "registry.local/podcrypt:dev" });
    const images = objs.flatMap((o) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const t = (o["spec"] as any)?.template?.spec?.containers ?? [];
      return t.map((c: { image: string }) => c.image);
    });
    assert.deepEqual(images, ["registry.local/podcrypt:dev", "registry.local/podcrypt:dev"]);
  });
});

describe("deploy/ kustomize base", () => {
  const tmp = mkdtempSync(join(tmpdir(), "podcrypt-manifests-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("is up to date with the generator (npm run manifests rewrites it)", () => {
    assert.deepEqual(staleKustomizeFiles(join(root, "deploy"), defaults), []);
  });

  it("the staleness check notices an edit", () => {
    writeKustomizeBase(tmp, defaults);
    assert.deepEqual(staleKustomizeFiles(tmp, defaults), []);
    writeFileSync(
      join(tmp, "agent.yaml"),
      readFileSync(join(tmp, "agent.yaml"), "utf8").replace("hostNetwork: true", "hostNetwork: false"),
    );
    assert.deepEqual(staleKustomizeFiles(tmp, defaults), ["agent.yaml"]);
  });

  it("kustomization.yaml lists every file, and the files hold exactly the generated objects", () => {
    const dir = join(root, "deploy");
    const k = parse(readFileSync(join(dir, "kustomization.yaml"), "utf8")) as { resources: string[] };
    const objects = k.resources.flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => d.toJS() as KubeObject),
    );
    assert.deepEqual(objects, manifestObjects(defaults));
  });

  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  it(
    "`kubectl kustomize deploy` renders the same objects",
    { skip: kubectl.status === 0 ? false : "kubectl is not installed" },
    () => {
      const out = execFileSync("kubectl", ["kustomize", join(root, "deploy")], { encoding: "utf8" });
      const rendered = parseAllDocuments(out).map((d) => d.toJS() as KubeObject);
      const sortById = (xs: KubeObject[]) => [...xs].sort((a, b) => (id(a) < id(b) ? -1 : 1));
      assert.deepEqual(sortById(rendered), sortById(manifestObjects(defaults)));
    },
  );
});
