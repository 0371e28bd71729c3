import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import { serveProbeEcho } from "./endpoint.js";

/** The descriptors this process has open now. */
const openFds = (): number => readdirSync("/proc/self/fd").length;

describe("serveProbeEcho", () => {
  it("a failed bind rejects with its error and leaves no descriptor open", async () => {
    // TEST-NET-1 (RFC 5737) and its IPv6 counterpart (RFC 3849): no interface here has them, so
    // the bind fails (nothing is sent).
    for (const [address, accept] of [
      ["192.0.2.1", undefined],
      ["2001:db8::1", () => true],
    ] as const) {
      const before = openFds();
      for (let i = 0; i < 5; i++)
        await assert.rejects(serveProbeEcho(address, accept), /bind/, `${address}: the bind fails`);
      assert.equal(openFds(), before, `${address}: descriptors left open by failed binds`);
    }
  });
});
