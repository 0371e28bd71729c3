import { test } from "node:test";
import assert from "node:assert/strict";
import { jsonPatch, mergePatch, type Json } from "./patch.js";
import { ApiStatusError } from "./status.js";

test("merge patch: RFC 7386 appendix A cases", () => {
  const cases: [Json, Json, Json][] = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [
      ["a", "b"],
      ["c", "d"],
      ["c", "d"],
    ],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases)
    assert.deepEqual(mergePatch(target, patch), want, JSON.stringify(patch));
});

test("JSON patch: RFC 6902 operations", () => {
  const doc: Json = { metadata: { labels: { a: "1" } }, list: [1, 2] };
  const out = jsonPatch(doc, [
    { op: "add", path: "/metadata/labels/b", value: "2" },
    { op: "replace", path: "/metadata/labels/a", value: "x" },
    { op: "add", path: "/list/-", value: 3 },
    { op: "remove", path: "/list/0" },
    { op: "copy", from: "/metadata/labels/b", path: "/copied" },
    { op: "move", from: "/copied", path: "/moved" },
    { op: "test", path: "/moved", value: "2" },
    { op: "add", path: "/metadata/annotations", value: { "k~/x": "v" } },
    { op: "remove", path: "/metadata/annotations/k~0~1x" },
  ]);
  assert.deepEqual(out, {
    metadata: { labels: { a: "x", b: "2" }, annotations: {} },
    list: [2, 3],
    moved: "2",
  });
  assert.deepEqual(doc, { metadata: { labels: { a: "1" } }, list: [1, 2] }, "input untouched");
});

test("JSON patch: failed test is 422, missing path is 400", () => {
  assert.throws(
    () => jsonPatch({ a: 1 }, [{ op: "test", path: "/a", value: 2 }]),
    (e: unknown) => e instanceof ApiStatusError && e.status.code === 422,
  );
  assert.throws(
    () => jsonPatch({ a: 1 }, [{ op: "remove", path: "/b" }]),
    (e: unknown) => e instanceof ApiStatusError && e.status.code === 400,
  );
  assert.throws(
    () => jsonPatch({ a: 1 }, [{ op: "replace", path: "/b/c", value: 1 }]),
    (e: unknown) => e instanceof ApiStatusError && e.status.code === 400,
  );
});
