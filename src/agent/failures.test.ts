import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../clock.js";
import { PodcryptError } from "../errors/index.js";
import { FailureTracker } from "./failures.js";

/** A reconcile failure as the kernel backends throw it: a failed command wrapped twice. */
function syncconfFailure(stderr: string): PodcryptError {
  const command = new PodcryptError("ECOMMAND", `sh -c ... failed (exit 1): ${stderr}`, {
    context: { command: 'sh -c cat | exec "$0" syncconf "$1" /dev/stdin wg podcrypt0', exitCode: 1, stderr },
  });
  return new PodcryptError("ERECONCILE", "kernel WireGuard reconcile failed; the next pass resyncs", {
    cause: command,
  });
}

describe("FailureTracker", () => {
  it("reports a failure once, counts its repeats, and reports the change and the end", () => {
    const clock = new ManualClock(0, Date.parse("2026-01-01T00:00:00Z"));
    const t = new FailureTracker(() => clock.wallNow());
    assert.equal(t.succeeded().kind, "none");

    const first = t.failed(syncconfFailure("Unable to open /dev/stdin"));
    assert.equal(first.kind, "new");
    // A minute of the same failure once a second: counted, never news.
    for (let i = 0; i < 60; i++) {
      clock.advance(1000);
      assert.equal(t.failed(syncconfFailure("Unable to open /dev/stdin")).kind, "repeat");
    }
    const s = t.state!;
    assert.equal(s.count, 61);
    assert.equal(s.since, "2026-01-01T00:00:00.000Z");
    assert.equal(s.last, "2026-01-01T00:01:00.000Z");
    assert.equal(s.code, "ERECONCILE");
    assert.deepEqual(s.causes, [
      {
        message: "sh -c ... failed (exit 1): Unable to open /dev/stdin",
        code: "ECOMMAND",
        command: 'sh -c cat | exec "$0" syncconf "$1" /dev/stdin wg podcrypt0',
        exitCode: 1,
        stderr: "Unable to open /dev/stdin",
      },
    ]);

    // Another cause is news, naming the one it replaces with its count.
    clock.advance(1000);
    const changed = t.failed(syncconfFailure("Operation not permitted"));
    assert.equal(changed.kind, "new");
    assert.equal(changed.kind === "new" ? changed.replaced?.count : undefined, 61);
    assert.equal(t.state!.count, 1);

    clock.advance(1000);
    const cleared = t.succeeded();
    assert.equal(cleared.kind, "cleared");
    assert.equal(t.failing, false);
    assert.equal(t.state!.clearedAt, "2026-01-01T00:01:02.000Z");
    assert.equal(t.succeeded().kind, "none");
    // The same failure after a success is news again.
    assert.equal(t.failed(syncconfFailure("Operation not permitted")).kind, "new");
  });
});
