import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { textMemo } from "./text-memo.js";

describe("textMemo", () => {
  it("works a text out once, undefined results included, and forgets everything beyond its limit", () => {
    const asked: string[] = [];
    const f = textMemo((t) => {
      asked.push(t);
      return t === "none" ? undefined : t.length;
    }, 3);
    assert.deepEqual(
      [f("a"), f("bb"), f("a"), f("none"), f("none"), f("bb")],
      [1, 2, 1, undefined, undefined, 2],
    );
    assert.deepEqual(asked, ["a", "bb", "none"]);
    // A fourth text: the three kept are forgotten, and the next ask of one works it out again.
    assert.equal(f("cccc"), 4);
    assert.equal(f("a"), 1);
    assert.deepEqual(asked, ["a", "bb", "none", "cccc", "a"]);
    assert.equal(f("cccc"), 4);
    assert.equal(asked.length, 5);
  });
});
