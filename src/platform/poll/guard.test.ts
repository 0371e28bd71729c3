import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger } from "../../log/logger.js";
import { guardPollCallback, logPollError } from "./guard.js";

/** A real logger writing JSON lines into `lines`. */
function memoryLogger(lines: Record<string, unknown>[]) {
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n"))
        if (l !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return createLogger("test", { level: "info", destination });
}

describe("guardPollCallback", () => {
  it("passes the status through and hands an exception to onError instead of throwing it", () => {
    let seen = -1;
    let caught: unknown;
    const ok = guardPollCallback(
      (s) => void (seen = s),
      (e) => void (caught = e),
    );
    ok(7);
    assert.equal(seen, 7);
    assert.equal(caught, undefined);
    const thrown = new RangeError("slot overflow");
    const bad = guardPollCallback(
      () => {
        throw thrown;
      },
      (e) => void (caught = e),
    );
    assert.doesNotThrow(() => bad(0));
    assert.equal(caught, thrown);
  });

  it("swallows an exception thrown by onError itself", () => {
    const bad = guardPollCallback(
      () => {
        throw new Error("first");
      },
      () => {
        throw new Error("second");
      },
    );
    assert.doesNotThrow(() => bad(0));
  });
});

describe("logPollError", () => {
  it("logs the first ten and then one in every thousand, with the count and the error", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = memoryLogger(lines);
    for (let n = 1; n <= 2500; n++) logPollError(logger, "esp datapath", n, new RangeError(`e${n}`));
    logger.flush();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      lines.map((l) => l["count"]),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000, 2000],
    );
    const first = lines[0]!;
    assert.equal(first["where"], "esp datapath");
    assert.equal((first["err"] as { name: string; message: string }).name, "RangeError");
    assert.equal((first["err"] as { name: string; message: string }).message, "e1");
  });
});
