import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { objectKey, parseDuration, parsePortList, parseResource, splitKey } from "./index.js";
import { isBase64Key } from "../keys/x25519.js";

const KEY = Buffer.alloc(32, 7).toString("base64");
const node = { name: "node-1", underlay: { ipv4: "192.0.2.1" }, publicKeys: { "1": KEY } };

/** Asserts that `fn` throws a ValidationError naming `field`. */
function rejectsField(fn: () => unknown, field: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isValidationError(e), `ValidationError expected, got ${String(e)}`);
    assert.equal(e.field, field);
    if (field !== "") assert.ok(e.message.startsWith(`${field}: `), e.message);
    return true;
  });
}

describe("model validation names the field", () => {
  const cases: [string, string, unknown, string][] = [
    ["node: bad key", "nodes", { ...node, publicKeys: { "1": "AAAA" } }, "publicKeys.1"],
    [
      "node: 31-byte key",
      "nodes",
      { ...node, publicKeys: { "2": Buffer.alloc(31).toString("base64") } },
      "publicKeys.2",
    ],
    ["node: epoch key not a number", "nodes", { ...node, publicKeys: { x: KEY } }, "publicKeys.x"],
    ["node: no underlay", "nodes", { ...node, underlay: {} }, "underlay"],
    ["node: bad ipv6", "nodes", { ...node, underlay: { ipv6: "fd00::zz" } }, "underlay.ipv6"],
    ["node: bad CIDR", "nodes", { ...node, podCIDRs: ["10.0.0.0/33"] }, "podCIDRs.0"],
    ["node: bad name", "nodes", { ...node, name: "Node_1" }, "name"],
    ["node: unknown field", "nodes", { ...node, privateKey: KEY }, ""],
    [
      "node: ack phase",
      "nodes",
      { ...node, acknowledgements: [{ epoch: 1, phase: "done", at: "2024-01-01T00:00:00Z" }] },
      "acknowledgements.0.phase",
    ],
    ["config: mode", "clusterencryptions", { name: "default", mode: "gre" }, "mode"],
    [
      "config: interval",
      "clusterencryptions",
      { name: "default", rotationInterval: "soon" },
      "rotationInterval",
    ],
    ["config: phase needs target", "clusterencryptions", { name: "default", phase: "prepare" }, "target"],
    [
      "config: target epoch",
      "clusterencryptions",
      { name: "default", epoch: 3, phase: "switch", target: { epoch: 3, mode: "ipsec", enabled: true } },
      "target.epoch",
    ],
    [
      "policy: ports",
      "encryptionpolicies",
      { name: "p", policies: [{ name: "a", service: "s", namespace: "n", ports: "udp/53,icmp/1" }] },
      "policies.0.ports",
    ],
    ["policy: empty", "encryptionpolicies", { name: "p", policies: [] }, "policies"],
    [
      "policy: duplicate rule",
      "encryptionpolicies",
      {
        name: "p",
        policies: [
          { name: "a", service: "s", namespace: "n", ports: "tcp/1" },
          { name: "a", service: "t", namespace: "n", ports: "tcp/2" },
        ],
      },
      "policies.1.name",
    ],
    ["service: port", "services", { name: "s", namespace: "n", ports: ["tcp/0"] }, "ports.0"],
    [
      "endpoints: ip",
      "endpoints",
      { name: "s", namespace: "n", addresses: [{ ip: "10.0.0.300" }] },
      "addresses.0.ip",
    ],
  ];
  for (const [title, kind, input, field] of cases) {
    it(title, () => {
      rejectsField(() => parseResource(kind as "nodes", input), field);
    });
  }
});

describe("model defaults and helpers", () => {
  it("rejects unknown fields such as a private key, naming them", () => {
    assert.throws(
      () => parseResource("nodes", { ...node, privateKey: KEY }),
      (e: unknown) => isValidationError(e) && e.message.includes("privateKey") && !e.message.includes(KEY),
    );
  });
  it("applies ClusterEncryption defaults (1h, strict, wireguard, all, idle)", () => {
    const c = parseResource("clusterencryptions", { name: "default" });
    assert.equal(c.rotationInterval, "1h");
    assert.equal(c.strict, true);
    assert.equal(c.mode, "wireguard");
    assert.equal(c.encryption, "all");
    assert.equal(c.phase, "idle");
    assert.equal(c.epoch, 0);
    assert.equal(c.enabled, true);
    assert.equal(c.hostEncryption, false);
  });
  it("accepts a full node", () => {
    const n = parseResource("nodes", {
      ...node,
      underlay: { ipv4: "192.0.2.1", ipv6: "fd00::1" },
      podCIDRs: ["10.244.0.0/24", "fd10::/64"],
    });
    assert.equal(n.backend, "none");
    assert.deepEqual(n.capabilities, { wireguardKernel: false, xfrmKernel: false });
  });
  it("recognises base64 X25519 keys exactly", () => {
    assert.equal(isBase64Key(KEY), true);
    assert.equal(isBase64Key(Buffer.alloc(33).toString("base64")), false);
    assert.equal(isBase64Key(KEY.slice(0, 42) + "B="), false, "non-canonical padding bits");
  });
  it("parses durations and port lists", () => {
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("500ms"), 500);
    assert.equal(parseDuration("1d"), undefined);
    assert.deepEqual(parsePortList("udp/53, tcp/9153"), [
      { protocol: "udp", port: 53 },
      { protocol: "tcp", port: 9153 },
    ]);
    assert.throws(() => parsePortList("tcp/65536"));
  });
  it("keys namespaced objects namespace/name", () => {
    assert.equal(objectKey({ name: "a" }), "a");
    assert.equal(objectKey({ name: "a", namespace: "kube-system" }), "kube-system/a");
    assert.deepEqual(splitKey("kube-system/a"), { namespace: "kube-system", name: "a" });
  });
});
