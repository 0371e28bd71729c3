import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseClusterConfigText } from "./config.js";

describe("parseClusterConfigText", () => {
  it("refuses YAML with an unresolved alias as a ValidationError naming the file", () => {
    assert.throws(() => parseClusterConfigText("nodes:\n  - name: *missing\n", "cluster.yaml"), {
      name: "ValidationError",
      message: /^cluster\.yaml: not valid YAML: Unresolved alias .*missing/,
    });
  });
});
