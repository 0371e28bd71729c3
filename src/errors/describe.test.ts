import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { run } from "../platform/netns/netns.js";
import { chainText, describeError, errorLinks, rootCauseText } from "./describe.js";
import { PodcryptError } from "./podcrypt-error.js";

describe("describeError", () => {
  it("keeps a failed command's line, exit code and stderr, and stops before the raw process error", async () => {
    const key = "a".repeat(64);
    const failed = await run("sh", ["-c", `echo "bad key 0x${key}" >&2; exit 3`, "enc", "x"]).catch(
      (e: unknown) => e,
    );
    const outer = new PodcryptError("ERECONCILE", "reconcile failed", { cause: failed });
    const r = describeError(outer);
    assert.equal(r.code, "ERECONCILE");
    assert.equal(r.cause?.code, "ECOMMAND");
    assert.equal(r.cause?.exitCode, 3);
    assert.match(r.cause?.command ?? "", /^sh -c echo/);
    assert.equal(r.cause?.stderr, "bad key <redacted>");
    // The child process's own error (whose message quotes stderr unredacted) is not followed.
    assert.equal(r.cause?.cause, undefined);
    assert.doesNotMatch(JSON.stringify(r), new RegExp(key));
    assert.equal(rootCauseText(errorLinks(r)), r.cause!.message);
    assert.match(
      chainText(outer),
      /^reconcile failed: sh -c .* failed with exit code 3: bad key <redacted>$/,
    );
  });

  it("ends a cyclic chain and describes thrown non-errors", () => {
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    assert.equal(errorLinks(describeError(b)).length, 2);
    assert.deepEqual(describeError("just text"), { type: "string", message: "just text" });
  });
});
