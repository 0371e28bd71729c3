import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "./clock.js";

describe("ManualClock timers", () => {
  it("fire only when advanced past their time, earliest first, with the clock at their due time", () => {
    const clock = new ManualClock(0, 1_000);
    const fired: Array<[string, number, number]> = [];
    clock.after(30, () => fired.push(["b", clock.now(), clock.wallNow()]));
    clock.after(10, () => fired.push(["a", clock.now(), clock.wallNow()]));
    clock.after(30, () => fired.push(["c", clock.now(), clock.wallNow()]));
    clock.advance(9);
    assert.deepEqual(fired, []);
    clock.advance(21);
    assert.deepEqual(fired, [
      ["a", 10, 1_010],
      ["b", 30, 1_030],
      ["c", 30, 1_030],
    ]);
    assert.equal(clock.now(), 30);
    assert.equal(clock.nextTimerAt(), undefined);
  });

  it("a timer armed by another's callback fires in the same advance when it falls due", () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    clock.after(10, () => {
      fired.push(clock.now());
      clock.after(10, () => fired.push(clock.now()));
    });
    clock.advance(25);
    assert.deepEqual(fired, [10, 20]);
  });

  it("a cancelled timer never fires; refresh re-arms one for its delay from now, fired or not", () => {
    const clock = new ManualClock();
    let n = 0;
    const cancelled = clock.after(5, () => n--);
    cancelled.cancel();
    const t = clock.after(10, () => n++);
    clock.advance(8);
    t.refresh(); // due at 18 now
    clock.advance(9);
    assert.equal(n, 0);
    clock.advance(1);
    assert.equal(n, 1);
    t.refresh(); // fired: armed again, due at 28
    assert.equal(clock.nextTimerAt(), 28);
    clock.advance(10);
    assert.equal(n, 2);
  });
});
