import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loosenUnderlay } from "./rpf.js";

describe("loosenUnderlay", () => {
  it("names a missing underlay interface", async () => {
    await assert.rejects(loosenUnderlay("pcnosuchif0"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "EUNDERLAY");
      assert.match(e.message, /underlay interface pcnosuchif0 does not exist/);
      return true;
    });
  });
});
