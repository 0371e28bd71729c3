import { test } from "node:test";
import assert from "node:assert/strict";
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector } from "./selectors.js";
import { ApiStatusError } from "./status.js";

test("label selectors: table of Kubernetes semantics", () => {
  const labels = { app: "dns", tier: "infra", "podcrypt.io/lease": "pl-1" };
  const cases: [string, boolean][] = [
    ["", true],
    ["app=dns", true],
    ["app==dns", true],
    ["app=web", false],
    ["app!=web", true],
    ["missing!=x", true],
    ["app in (web, dns)", true],
    ["app in (web)", false],
    ["app notin (web)", true],
    ["missing notin (web)", true],
    ["app", true],
    ["!app", false],
    ["!missing", true],
    ["app=dns,tier=infra", true],
    ["app=dns,tier=web", false],
    ["podcrypt.io/lease=pl-1", true],
    ["app in (dns,web),!missing", true],
  ];
  for (const [sel, want] of cases) assert.equal(matchLabels(parseLabelSelector(sel), labels), want, sel);
});

test("label selectors: bad syntax is a 400", () => {
  for (const bad of ["app=(x", "a b c", "-bad=x"]) {
    assert.throws(
      () => parseLabelSelector(bad),
      (e: unknown) => e instanceof ApiStatusError && e.status.code === 400,
      bad,
    );
  }
});

test("field selectors: metadata.name and namespace, unsupported fields refused", () => {
  const obj = { metadata: { name: "n1", namespace: "ns" } };
  const fields = ["metadata.name", "metadata.namespace"];
  assert.equal(matchFields(parseFieldSelector("metadata.name=n1", fields), obj), true);
  assert.equal(matchFields(parseFieldSelector("metadata.name==n2", fields), obj), false);
  assert.equal(matchFields(parseFieldSelector("metadata.name!=n2,metadata.namespace=ns", fields), obj), true);
  assert.throws(
    () => parseFieldSelector("spec.foo=x", fields),
    (e: unknown) => e instanceof ApiStatusError && /field label not supported/.test(e.status.message),
  );
});
