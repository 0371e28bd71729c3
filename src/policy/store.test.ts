import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { stringify } from "yaml";
import { MemoryDatastore } from "../../test/support/memory-datastore/index.js";
import { isValidationError } from "../errors/index.js";
import { parsePolicyText } from "./parse.js";
import { applyPolicies, deletePolicy, listPolicies } from "./store.js";

const ipsec = (name: string, rules: [string, string][]) =>
  stringify({
    apiVersion: "starlingx.io/v1",
    kind: "IPsecPolicy",
    metadata: { name },
    spec: {
      policies: rules.map(([n, ports]) => ({
        name: n,
        servicename: "kube-dns",
        servicens: "kube-system",
        serviceports: ports,
      })),
    },
  });
const enc = (ns: string, name: string, rule: string) =>
  stringify({
    apiVersion: "podcrypt.io/v1",
    kind: "EncryptionPolicy",
    metadata: { name, namespace: ns },
    spec: { policies: [{ name: rule, service: "web", namespace: ns, ports: "tcp/80" }] },
  });
const parsed = (text: string) => {
  const r = parsePolicyText(text);
  assert.deepEqual(r.errors, []);
  return r.policies;
};

describe("policy store operations", () => {
  let store: MemoryDatastore;
  afterEach(async () => store.close());

  it("apply creates, updates, and leaves unchanged policies alone; list shows them", async () => {
    store = new MemoryDatastore();
    assert.deepEqual(await applyPolicies(store, parsed(ipsec("dns", [["kube-dns", "udp/53,tcp/53"]]))), [
      { key: "dns", action: "created" },
    ]);
    assert.deepEqual(await applyPolicies(store, parsed(ipsec("dns", [["kube-dns", "udp/53,tcp/53"]]))), [
      { key: "dns", action: "unchanged" },
    ]);
    assert.deepEqual(await applyPolicies(store, parsed(ipsec("dns", [["kube-dns", "tcp/53"]]))), [
      { key: "dns", action: "updated" },
    ]);
    await applyPolicies(store, parsed(enc("shop", "web", "web")));
    const l = await listPolicies(store);
    assert.deepEqual(
      l.policies.map((p) => [
        p.key,
        p.policy.rules.map((r) => r.ports.map((x) => `${x.protocol}/${x.port}`).join(",")),
      ]),
      [
        ["dns", ["tcp/53"]],
        ["shop/web", ["tcp/80"]],
      ],
    );
    assert.deepEqual(l.invalid, []);
  });

  it("a rule name already used by a stored policy is refused and nothing is written", async () => {
    store = new MemoryDatastore();
    await applyPolicies(store, parsed(ipsec("dns", [["kube-dns", "udp/53"]])));
    const before = await store.collection("encryptionpolicies").list();
    await assert.rejects(
      applyPolicies(
        store,
        parsed(`${ipsec("ok", [["fine", "tcp/1"]])}---\n${ipsec("other", [["kube-dns", "tcp/53"]])}`),
      ),
      (e: unknown) =>
        isValidationError(e) &&
        e.field === "spec.policies[0].name" &&
        /rule name "kube-dns" is already used by IPsecPolicy\/dns/.test(e.message),
    );
    const after = await store.collection("encryptionpolicies").list();
    assert.deepEqual(after.items, before.items);
  });

  it("delete by NAME or NAMESPACE/NAME; ambiguity and absence are errors", async () => {
    store = new MemoryDatastore();
    await applyPolicies(
      store,
      parsed(`${enc("a", "web", "ra")}---\n${enc("b", "web", "rb")}---\n${ipsec("dns", [["d", "udp/53"]])}`),
    );
    await assert.rejects(
      deletePolicy(store, "web"),
      /"web" is ambiguous: a\/web, b\/web; give NAMESPACE\/NAME/,
    );
    assert.equal(await deletePolicy(store, "b/web"), "b/web");
    assert.equal(await deletePolicy(store, "web"), "a/web");
    assert.equal(await deletePolicy(store, "dns"), "dns");
    await assert.rejects(deletePolicy(store, "dns"), /no policy named "dns"/);
    assert.deepEqual((await listPolicies(store)).policies, []);
  });
});
