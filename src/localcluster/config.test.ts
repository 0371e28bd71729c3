import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseClusterConfigText, resolveClusterConfig } from "./config.js";

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

describe("resolveClusterConfig: strict host mode", () => {
  it("from the flag or the file, with host encryption; refused without it, naming what is missing", () => {
    const on = resolveClusterConfig({}, { hostEncryption: true, strictHost: true });
    assert.deepEqual([on.hostEncryption, on.strictHost], [true, true]);
    const file = resolveClusterConfig({ hostEncryption: true, strictHost: true }, {});
    assert.deepEqual([file.hostEncryption, file.strictHost], [true, true]);
    assert.equal(resolveClusterConfig({ hostEncryption: true }, {}).strictHost, undefined);
    assert.throws(() => resolveClusterConfig({}, { strictHost: true }), {
      name: "ValidationError",
      message: /--strict-host: needs host encryption/,
    });
    assert.throws(() => resolveClusterConfig({ strictHost: true }, {}), {
      name: "ValidationError",
      message: /strictHost: needs host encryption/,
    });
  });
});

describe("resolveClusterConfig: the controllers' phase timeout", () => {
  it("comes from the file when set, is absent otherwise, and a value out of range is refused by name", () => {
    const c = resolveClusterConfig(parseClusterConfigText("phaseTimeoutSeconds: 120\n", "cluster.yaml"), {});
    assert.equal(c.phaseTimeoutSeconds, 120);
    assert.equal(resolveClusterConfig({}, {}).phaseTimeoutSeconds, undefined);
    assert.throws(
      () => resolveClusterConfig(parseClusterConfigText("phaseTimeoutSeconds: 2\n", "cluster.yaml")),
      {
        name: "ValidationError",
        message: /phaseTimeoutSeconds/,
      },
    );
  });
});
