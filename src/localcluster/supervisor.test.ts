import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_BACKOFF_MS, restartDelayMs, supervised } from "./supervisor.js";

describe("supervisor backoff", () => {
  it("restarts the first death at once, then backs off doubling from 1 s up to the cap", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 20].map(restartDelayMs), [
      0,
      1000,
      2000,
      4000,
      8000,
      16000,
      MAX_BACKOFF_MS,
      MAX_BACKOFF_MS,
      MAX_BACKOFF_MS,
    ]);
  });

  it("keeps running what records its arguments, never itself", () => {
    const base = { name: "x", pid: 1, log: "/dev/null" };
    assert.equal(supervised({ ...base, role: "agent", argv: ["agent"] }), true);
    assert.equal(supervised({ ...base, role: "agent" }), false);
    assert.equal(supervised({ ...base, role: "supervisor", argv: ["cluster", "supervise"] }), false);
  });
});
