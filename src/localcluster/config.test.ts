import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseClusterConfigText } from "./config.js";

describe("parseClusterConfigText", () => {
  it("refuses YAML with an unresolved alias as a ValidationError naming the file", () => {
    assert.throws(() => parseClusterConfigText("nodes:\n  - name: *missing\n", "cluster.yaml"), {
      name: "ValidationError",
      message: /^cluster\.yaml: not valid YAML: unresolved alias .*missing$/,
    });
  });

  it("reports a YAML syntax error as one line with file:line:column", () => {
    assert.throws(() => parseClusterConfigText("nodes:\n  - name: a\n   bad: [\n", "cluster.yaml"), {
      name: "ValidationError",
      message: /^cluster\.yaml:3:1: not valid YAML: sequence item without - indicator$/,
    });
  });
});
