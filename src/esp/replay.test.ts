import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReplayWindow } from "./replay.js";

describe("ReplayWindow (RFC 4303 section 3.4.3)", () => {
  // Numbered cases in the style of the kernel's and wireguard-go's replay tables, for W = 128:
  // [sequence number, expected accept].
  const W = 128;
  const table: Array<[number, boolean]> = [
    [0, false], // 1: zero is never a valid sequence number
    [1, true], // 2
    [1, false], // 3: duplicate
    [3, true], // 4: skipping ahead
    [2, true], // 5: late but inside the window
    [2, false], // 6
    [W, true], // 7
    [W, false], // 8
    [W + 1, true], // 9: window now [2, 129]
    [1, false], // 10: 1 already seen
    [2, false], // 11: seen
    [4, true], // 12: inside, unseen
    [W + 1 - W + 1, false], // 13: 2 again
    [1000, true], // 14: big jump clears the ring
    [1000 - W + 1, true], // 15: bottom edge of the window
    [1000 - W, false], // 16: just below the window
    [1000 - W + 1, false], // 17: bottom edge again (duplicate)
    [999, true], // 18
    [1001, true], // 19
    [1000, false], // 20
    [2 ** 32 - 1, true], // 21: highest 32-bit number
    [2 ** 32 - 1, false], // 22
    [2 ** 32 - 2, true], // 23
    [2 ** 32 - 1 - W, false], // 24: below the window
  ];
  it("accepts and rejects as the table says", () => {
    const w = new ReplayWindow(W);
    table.forEach(([seq, want], i) => {
      assert.equal(w.check(seq), want, `case ${i + 1} check(${seq})`);
      assert.equal(w.update(seq), want, `case ${i + 1} update(${seq})`);
    });
  });

  it("check does not record: only update after the ICV verified does", () => {
    const w = new ReplayWindow(64);
    assert.equal(w.check(5), true);
    assert.equal(w.check(5), true);
    assert.equal(w.highest, 0);
    assert.equal(w.update(5), true);
    assert.equal(w.check(5), false);
    assert.equal(w.highest, 5);
  });

  it("every number of a window-sized burst delivered in reverse is accepted exactly once", () => {
    const w = new ReplayWindow(1024);
    w.update(2048);
    for (let s = 2047; s > 2048 - 1024; s--) assert.equal(w.update(s), true, `first ${s}`);
    for (let s = 2048; s > 2048 - 1024; s--) assert.equal(w.update(s), false, `again ${s}`);
    assert.equal(w.update(2048 - 1024), false, "one below the window");
  });

  it("slides across block boundaries without forgetting in-window numbers", () => {
    const w = new ReplayWindow(64);
    for (let s = 1; s <= 500; s += 3) assert.equal(w.update(s), true);
    for (let s = 500 - 63; s <= 500; s++) assert.equal(w.check(s), (s - 1) % 3 !== 0, `seq ${s}`);
  });

  it("rejects sizes that are not multiples of 32 in range", () => {
    for (const bad of [0, 31, 33, 100, 65568, 1.5]) assert.throws(() => new ReplayWindow(bad), RangeError);
    assert.equal(new ReplayWindow().size, 1024);
  });
});
