import { test } from "node:test";
import assert from "node:assert/strict";
import { REPLAY_WINDOW_SIZE, ReplayWindow } from "./replay.js";

// The numbered table of the kernel's selftest (drivers/net/wireguard/selftest/counter.c), with
// REJECT_AFTER_MESSAGES replaced by the window's `limit` (2^40 here) because JS numbers are exact
// only to 2^53.
const LIMIT = 2 ** 40;

function runTable(w: ReplayWindow): void {
  const W = w.windowSize;
  const L = W + 1; // T_LIM
  const R = LIMIT;
  const table: Array<[number, boolean]> = [
    /*  1 */ [0, true],
    /*  2 */ [1, true],
    /*  3 */ [1, false],
    /*  4 */ [9, true],
    /*  5 */ [8, true],
    /*  6 */ [7, true],
    /*  7 */ [7, false],
    /*  8 */ [L, true],
    /*  9 */ [L - 1, true],
    /* 10 */ [L - 1, false],
    /* 11 */ [L - 2, true],
    /* 12 */ [2, true],
    /* 13 */ [2, false],
    /* 14 */ [L + 16, true],
    /* 15 */ [3, false],
    /* 16 */ [L + 16, false],
    /* 17 */ [L * 4, true],
    /* 18 */ [L * 4 - (L - 1), true],
    /* 19 */ [10, false],
    /* 20 */ [L * 4 - L, false],
    /* 21 */ [L * 4 - (L + 1), false],
    /* 22 */ [L * 4 - (L - 2), true],
    /* 23 */ [L * 4 + 1 - L, false],
    /* 24 */ [0, false],
    /* 25 */ [R, false],
    /* 26 */ [R - 1, true],
    /* 27 */ [R, false],
    /* 28 */ [R - 1, false],
    /* 29 */ [R - 2, true],
    /* 30 */ [R + 1, false],
    /* 31 */ [R + 2, false],
    /* 32 */ [R - 2, false],
    /* 33 */ [R - 3, true],
    /* 34 */ [0, false],
  ];
  table.forEach(([n, expected], i) => assert.equal(w.accept(n), expected, `case ${i + 1}: counter ${n}`));
}

test("kernel selftest table, default ring (window 2016)", () => {
  const w = new ReplayWindow(undefined, LIMIT);
  assert.equal(w.windowSize, REPLAY_WINDOW_SIZE);
  assert.equal(REPLAY_WINDOW_SIZE, 2016);
  runTable(w);
});

test("kernel selftest table, 8192-bit ring as in current kernels/wireguard-go", () => {
  runTable(new ReplayWindow(8192, LIMIT));
});

test("kernel selftest window-edge sequences", () => {
  const fresh = (): ReplayWindow => new ReplayWindow(undefined, LIMIT);
  const W = REPLAY_WINDOW_SIZE;
  let w = fresh();
  for (let i = 1; i <= W; i++) assert.ok(w.accept(i));
  assert.ok(w.accept(0));
  assert.ok(!w.accept(0));

  w = fresh();
  for (let i = 2; i <= W + 1; i++) assert.ok(w.accept(i));
  assert.ok(w.accept(1));
  assert.ok(!w.accept(0));

  w = fresh();
  for (let i = W + 1; i-- > 0;) assert.ok(w.accept(i), `desc ${i}`);

  w = fresh();
  for (let i = W + 2; i-- > 1;) assert.ok(w.accept(i));
  assert.ok(!w.accept(0));

  w = fresh();
  for (let i = W + 1; i-- > 1;) assert.ok(w.accept(i));
  assert.ok(w.accept(W + 1));
  assert.ok(!w.accept(0));

  w = fresh();
  for (let i = W + 1; i-- > 1;) assert.ok(w.accept(i));
  assert.ok(w.accept(0));
  assert.ok(w.accept(W + 1));
});

test("rejects non-integers, negatives and unsafe integers; reset forgets", () => {
  const w = new ReplayWindow();
  assert.ok(!w.accept(-1));
  assert.ok(!w.accept(1.5));
  assert.ok(!w.accept(Number.NaN));
  assert.ok(!w.accept(2 ** 53));
  assert.ok(w.accept(2 ** 52));
  assert.ok(!w.accept(5));
  w.reset();
  assert.ok(w.accept(5));
  assert.throws(() => new ReplayWindow(100));
});
