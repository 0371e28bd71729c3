import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { stringify } from "yaml";
import {
  checkPolicySet,
  fromStored,
  parsePoliciesOrThrow,
  parsePolicyObject,
  parsePolicyText,
  policyKey,
  toManifest,
  toStored,
} from "./parse.js";
import type { Policy } from "./types.js";
import type { ValidationError } from "../errors/index.js";

const ipsec = (policies: unknown[], extra: Record<string, unknown> = {}) => ({
  apiVersion: "starlingx.io/v1",
  kind: "IPsecPolicy",
  metadata: { name: "p" },
  spec: { policies },
  ...extra,
});
const dns = { name: "kube-dns", servicename: "kube-dns", servicens: "kube-system", serviceports: "udp/53" };

function errorsOf(obj: unknown): ValidationError[] {
  const errors: ValidationError[] = [];
  const p = parsePolicyObject(obj, { document: 1 }, errors);
  if (errors.length > 0) assert.equal(p, undefined);
  return errors;
}

describe("parsePolicyObject: valid documents", () => {
  it("normalizes an IPsecPolicy (cluster-scoped, no namespace)", () => {
    const p = parsePolicyObject(
      ipsec([dns, { name: "web", servicename: "web", servicens: "default", serviceports: "tcp/80,tcp/443" }]),
    );
    assert.deepEqual(p, {
      kind: "IPsecPolicy",
      name: "p",
      namespace: undefined,
      rules: [
        {
          name: "kube-dns",
          service: "kube-dns",
          namespace: "kube-system",
          ports: [{ protocol: "udp", port: 53 }],
        },
        {
          name: "web",
          service: "web",
          namespace: "default",
          ports: [
            { protocol: "tcp", port: 80 },
            { protocol: "tcp", port: 443 },
          ],
        },
      ],
    });
  });

  it("normalizes an EncryptionPolicy; namespace defaults to default; ports may be a list", () => {
    const p = parsePolicyObject({
      apiVersion: "podcrypt.io/v1",
      kind: "EncryptionPolicy",
      metadata: { name: "e" },
      spec: { policies: [{ name: "r", service: "web", namespace: "shop", ports: ["tcp/80", "UDP/53"] }] },
    });
    assert.equal(p?.namespace, "default");
    assert.deepEqual(p?.rules[0]?.ports, [
      { protocol: "tcp", port: 80 },
      { protocol: "udp", port: 53 },
    ]);
  });

  it("ignores status and a namespace on the cluster-scoped IPsecPolicy", () => {
    const p = parsePolicyObject(
      ipsec([dns], { status: { conditions: [] }, metadata: { name: "p", namespace: "x" } }),
    );
    assert.equal(p?.namespace, undefined);
  });
});

describe("parsePolicyObject: each invalid policy names its field", () => {
  const cases: { what: string; doc: unknown; field: string; message: RegExp; count?: number }[] = [
    {
      what: "port 0",
      doc: ipsec([dns, { ...dns, name: "b", serviceports: "tcp/0" }]),
      field: "spec.policies[1].serviceports",
      message:
        /^spec\.policies\[1\]\.serviceports: port 0 is out of range 1-65535 \(IPsecPolicy "p", document 1\)$/,
    },
    {
      what: "port above 65535",
      doc: ipsec([{ ...dns, serviceports: "udp/53,tcp/70000" }]),
      field: "spec.policies[0].serviceports",
      message: /port 70000 is out of range 1-65535/,
    },
    {
      what: "bad port syntax",
      doc: ipsec([{ ...dns, serviceports: "udp53" }]),
      field: "spec.policies[0].serviceports",
      message: /"udp53" is not proto\/port/,
    },
    {
      what: "unknown protocol",
      doc: ipsec([{ ...dns, serviceports: "icmp/0" }]),
      field: "spec.policies[0].serviceports",
      message: /protocol "icmp" has no ports/,
    },
    {
      what: "unknown protocol name",
      doc: ipsec([{ ...dns, serviceports: "tpc/53" }]),
      field: "spec.policies[0].serviceports",
      message: /unknown protocol "tpc"/,
    },
    {
      what: "serviceports as a number",
      doc: ipsec([{ ...dns, serviceports: 53 }]),
      field: "spec.policies[0].serviceports",
      message: /53 has no protocol/,
    },
    {
      what: "serviceports as a list (StarlingX takes a string)",
      doc: ipsec([{ ...dns, serviceports: ["udp/53"] }]),
      field: "spec.policies[0].serviceports",
      message: /must be a string such as "udp\/53,tcp\/9153", got a list/,
    },
    {
      what: "missing service name",
      doc: ipsec([{ name: "a", servicens: "kube-system", serviceports: "udp/53" }]),
      field: "spec.policies[0].servicename",
      message: /servicename: is missing/,
    },
    {
      what: "missing service namespace",
      doc: ipsec([{ name: "a", servicename: "kube-dns", serviceports: "udp/53" }]),
      field: "spec.policies[0].servicens",
      message: /servicens: is missing/,
    },
    {
      what: "missing EncryptionPolicy rule namespace",
      doc: {
        apiVersion: "podcrypt.io/v1",
        kind: "EncryptionPolicy",
        metadata: { name: "e" },
        spec: { policies: [{ name: "r", service: "web", ports: "tcp/80" }] },
      },
      field: "spec.policies[0].namespace",
      message: /is missing \(EncryptionPolicy "e", document 1\)/,
    },
    {
      what: "missing rule name",
      doc: ipsec([{ servicename: "kube-dns", servicens: "kube-system", serviceports: "udp/53" }]),
      field: "spec.policies[0].name",
      message: /is missing/,
    },
    {
      what: "missing ports",
      doc: ipsec([{ name: "a", servicename: "kube-dns", servicens: "kube-system" }]),
      field: "spec.policies[0].serviceports",
      message: /is missing/,
    },
    {
      what: "duplicate rule names within a policy",
      doc: ipsec([dns, { ...dns, serviceports: "tcp/53" }]),
      field: "spec.policies[1].name",
      message: /duplicate rule name "kube-dns" \(also spec\.policies\[0\]\)/,
    },
    {
      what: "a typo in a rule field",
      doc: ipsec([{ ...dns, servicenamespace: "kube-system" }]),
      field: "spec.policies[0].servicenamespace",
      message: /unknown field \(a IPsecPolicy rule has name, servicename, servicens, serviceports\)/,
    },
    {
      what: "EncryptionPolicy fields in an IPsecPolicy",
      doc: ipsec([{ name: "a", service: "kube-dns", namespace: "kube-system", ports: "udp/53" }]),
      field: "spec.policies[0].service",
      message: /unknown field/,
      count: 6, // three unknown fields, three missing ones
    },
    {
      what: "upper-case service name",
      doc: ipsec([{ ...dns, servicename: "Kube-DNS" }]),
      field: "spec.policies[0].servicename",
      message: /"Kube-DNS" is not a valid service name/,
    },
    {
      what: "namespace too long",
      doc: ipsec([{ ...dns, servicens: "n".repeat(64) }]),
      field: "spec.policies[0].servicens",
      message: /longer than 63 characters/,
    },
    {
      what: "empty policy list",
      doc: ipsec([]),
      field: "spec.policies",
      message: /must hold at least one rule/,
    },
    {
      what: "policies not a list",
      doc: ipsec({} as unknown as unknown[]),
      field: "spec.policies",
      message: /must be a list, got a map/,
    },
    {
      what: "rule not a map",
      doc: ipsec(["kube-dns"]),
      field: "spec.policies[0]",
      message: /must be a map with name, servicename, servicens, serviceports, got a string/,
    },
    {
      what: "missing metadata.name",
      doc: { ...ipsec([dns]), metadata: {} },
      field: "metadata.name",
      message: /is missing/,
    },
    {
      what: "wrong apiVersion",
      doc: { ...ipsec([dns]), apiVersion: "starlingx.io/v2" },
      field: "apiVersion",
      message: /"starlingx.io\/v2" is not starlingx.io\/v1/,
    },
    {
      what: "unsupported kind",
      doc: { ...ipsec([dns]), kind: "NetworkPolicy" },
      field: "kind",
      message: /unsupported kind "NetworkPolicy"/,
    },
    { what: "missing spec", doc: { ...ipsec([dns]), spec: undefined }, field: "spec", message: /is missing/ },
    {
      what: "unknown spec field",
      doc: { ...ipsec([dns]), spec: { policies: [dns], mode: "esp" } },
      field: "spec.mode",
      message: /unknown field/,
    },
  ];
  for (const c of cases)
    it(c.what, () => {
      const errors = errorsOf(c.doc);
      assert.equal(errors.length, c.count ?? 1, errors.map((e) => e.message).join("\n"));
      assert.equal(errors[0]!.field, c.field);
      assert.match(errors[0]!.message, c.message);
      assert.equal(errors[0]!.code, "EINVALID");
    });

  it("reports every problem of a document, not only the first", () => {
    const errors = errorsOf(
      ipsec([
        { name: "a", servicename: "x", serviceports: "tcp/0" },
        { name: "b", servicename: "y", servicens: "z", serviceports: "udp/70000" },
      ]),
    );
    assert.deepEqual(
      errors.map((e) => e.field),
      ["spec.policies[0].servicens", "spec.policies[0].serviceports", "spec.policies[1].serviceports"],
    );
  });
});

describe("parsePolicyText", () => {
  it("reads multiple YAML and JSON documents, skipping empty ones", () => {
    const text = `---\n${stringify(ipsec([dns]))}---\n---\n${JSON.stringify({
      ...ipsec([{ ...dns, name: "dns2" }]),
      metadata: { name: "q" },
    })}\n`;
    const r = parsePolicyText(text, "f.yaml");
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.policies.map((p) => [policyKey(p.policy), p.source.document]),
      [
        ["IPsecPolicy/p", 1], // a leading --- opens the first document
        ["IPsecPolicy/q", 3], // the empty second document still counts
      ],
    );
  });

  it("flattens a kind: List", () => {
    const r = parsePolicyText(stringify({ apiVersion: "v1", kind: "List", items: [ipsec([dns])] }));
    assert.equal(r.policies.length, 1);
  });

  it("names the document and file of an error", () => {
    const r = parsePolicyText(
      `${stringify(ipsec([dns]))}---\n${stringify(ipsec([{ ...dns, serviceports: "tcp/0" }], { metadata: { name: "bad" } }))}`,
      "pol.yaml",
    );
    assert.equal(r.policies.length, 0, "nothing is accepted when any document is invalid");
    assert.equal(r.errors.length, 1);
    assert.equal(
      r.errors[0]!.message,
      'spec.policies[0].serviceports: port 0 is out of range 1-65535 (IPsecPolicy "bad", document 2, pol.yaml)',
    );
  });

  it("reports an unresolved YAML alias, and more aliases than the parser allows, as ValidationErrors", () => {
    const r = parsePolicyText(`${stringify(ipsec([dns]))}---\nkind: *undefinedAnchor\n`, "pol.yaml");
    assert.equal(r.policies.length, 0);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.name, "ValidationError");
    assert.match(r.errors[0]!.message, /Unresolved alias.*undefinedAnchor \(document 2, pol\.yaml\)$/);
    assert.throws(() => parsePoliciesOrThrow("a: *nope\n"), {
      name: "ValidationError",
      message: /Unresolved alias/,
    });
    // Exponential expansion ("billion laughs"): refused, not expanded.
    let bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (let i = 1; i < 12; i++)
      bomb += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(", ")}]\n`;
    assert.throws(() => parsePoliciesOrThrow(bomb), { name: "ValidationError", message: /alias/i });
  });

  it("refuses duplicate rule names across policies", () => {
    const r = parsePolicyText(
      `${stringify(ipsec([dns]))}---\n${stringify({ ...ipsec([dns]), metadata: { name: "q" } })}`,
    );
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.field, "spec.policies[0].name");
    assert.match(
      r.errors[0]!.message,
      /rule name "kube-dns" is already used by IPsecPolicy\/p spec\.policies\[0\] \(IPsecPolicy "q", document 2\)/,
    );
  });

  it("refuses the same policy twice", () => {
    const r = parsePolicyText(
      `${stringify(ipsec([dns]))}---\n${stringify(ipsec([{ ...dns, name: "other" }]))}`,
    );
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.field, "metadata.name");
    assert.match(
      r.errors[0]!.message,
      /duplicate policy IPsecPolicy\/p \(IPsecPolicy "p", document 2\), already given \(document 1\)/,
    );
  });

  it("allows the same name in two namespaces for EncryptionPolicy", () => {
    const e = (ns: string, rule: string) => ({
      apiVersion: "podcrypt.io/v1",
      kind: "EncryptionPolicy",
      metadata: { name: "same", namespace: ns },
      spec: { policies: [{ name: rule, service: "web", namespace: ns, ports: "tcp/80" }] },
    });
    const r = parsePolicyText(`${stringify(e("a", "ra"))}---\n${stringify(e("b", "rb"))}`);
    assert.deepEqual(r.errors, []);
    assert.equal(r.policies.length, 2);
  });

  const broken: [string, string, RegExp][] = [
    ["YAML syntax", "kind: [unclosed\n", /document 1/],
    ["duplicate YAML keys", "kind: IPsecPolicy\nkind: IPsecPolicy\n", /Map keys must be unique/],
    ["a scalar document", "hello\n", /a policy document must be a map, got a string/],
    ["no documents", "# nothing\n", /no policy document found in x.yaml/],
  ];
  for (const [what, text, message] of broken)
    it(`refuses ${what}`, () => {
      const r = parsePolicyText(text, "x.yaml");
      assert.equal(r.policies.length, 0);
      assert.ok(r.errors.length >= 1);
      assert.match(r.errors[0]!.message, message);
    });
});

describe("parsePoliciesOrThrow", () => {
  it("throws the first error and carries all of them", () => {
    assert.throws(
      () =>
        parsePoliciesOrThrow(
          stringify(
            ipsec([
              { ...dns, serviceports: "tcp/0" },
              { ...dns, name: "b", servicens: "" },
            ]),
          ),
        ),
      (e: unknown) => {
        const v = e as ValidationError;
        assert.equal(v.field, "spec.policies[0].serviceports");
        assert.equal((v.context["errors"] as string[]).length, 2);
        return true;
      },
    );
  });
});

describe("stored and manifest forms", () => {
  const p: Policy = parsePolicyObject(ipsec([{ ...dns, serviceports: " UDP/53 ,tcp/53" }]))!;
  it("round-trips through the stored form", () => {
    const s = toStored(p);
    assert.deepEqual(s, {
      name: "p",
      policies: [{ name: "kube-dns", service: "kube-dns", namespace: "kube-system", ports: "udp/53,tcp/53" }],
    });
    assert.deepEqual(fromStored(s), p);
  });
  it("prints a manifest that parses back to the same policy", () => {
    assert.deepEqual(parsePolicyObject(toManifest(p)), p);
  });
  it("checkPolicySet accepts a clean set", () => {
    assert.deepEqual(checkPolicySet([{ policy: p, source: {} }]), []);
  });
});
