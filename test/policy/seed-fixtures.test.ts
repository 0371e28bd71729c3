import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { projectRoot } from "../../src/paths.js";
import {
  diffSelectors,
  parsePolicyText,
  policyKey,
  resolveSelectors,
  toStored,
} from "../../src/policy/index.js";

const fixture = (name: string) => readFileSync(join(projectRoot(), "test/policy/fixtures", name), "utf8");

describe("StarlingX seed examples", () => {
  it("accepts the seed's IPsecPolicy unchanged", () => {
    const r = parsePolicyText(fixture("starlingx-ipsecpolicy.yaml"), "starlingx-ipsecpolicy.yaml");
    assert.deepEqual(r.errors, []);
    assert.equal(r.policies.length, 1);
    assert.deepEqual(toStored(r.policies[0]!.policy), {
      name: "ipsecpolicy-kube-dns-sample",
      policies: [
        { name: "kube-dns", service: "kube-dns", namespace: "kube-system", ports: "udp/53,tcp/53,tcp/9153" },
        { name: "cert-manager", service: "cm-cert-manager", namespace: "cert-manager", ports: "tcp/9402" },
      ],
    });
  });

  it("the seed's update removes only udp/53 selectors", () => {
    const before = parsePolicyText(fixture("starlingx-ipsecpolicy.yaml")).policies.map((p) => p.policy);
    const after = parsePolicyText(fixture("starlingx-ipsecpolicy-updated.yaml")).policies.map(
      (p) => p.policy,
    );
    const world = {
      services: [{ name: "kube-dns", namespace: "kube-system", selector: { app: "dns" } }],
      pods: [
        {
          name: "dns-1",
          namespace: "kube-system",
          node: "node-2",
          ip: "10.244.2.10",
          labels: { app: "dns" },
        },
      ],
    };
    const d = diffSelectors(
      resolveSelectors({ ...world, policies: before }),
      resolveSelectors({ ...world, policies: after }),
    );
    assert.deepEqual(d.added, []);
    assert.deepEqual(d.changed, []);
    assert.deepEqual(
      d.removed.map((s) => `${s.node} ${s.protocol}/${s.port} ${s.podIPs.join(",")}`),
      ["node-2 udp/53 10.244.2.10"],
    );
  });

  it("accepts the same selection as EncryptionPolicy YAML and JSON documents", () => {
    const r = parsePolicyText(fixture("encryptionpolicy.yaml"));
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.policies.map((p) => policyKey(p.policy)),
      ["EncryptionPolicy/kube-system/dns", "EncryptionPolicy/cert-manager/certs"],
    );
    assert.equal(toStored(r.policies[1]!.policy).policies[0]!.ports, "tcp/9402");
  });
});
