import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { scrub, scrubJson } from "./bundle.js";

describe("bundle scrubbing", () => {
  const key = randomBytes(32);
  const esp = randomBytes(20);

  it("masks keys in command output and log text", () => {
    const text = [
      `private_key=${key.toString("hex")}`,
      `preshared_key=${randomBytes(32).toString("hex")}`,
      `\taead rfc4106(gcm(aes)) 0x${esp.toString("hex")} 128`,
      `{"msg":"x","value":"${key.toString("base64")}"}`,
    ].join("\n");
    const out = scrub(text);
    assert.ok(!out.includes(key.toString("hex")));
    assert.ok(!out.includes(key.toString("base64")));
    assert.ok(!out.includes(esp.toString("hex")));
    assert.match(out, /^private_key=<redacted>$/m);
    assert.match(out, /^preshared_key=<redacted>$/m);
  });

  it("keeps public keys and the SA instance of records, removes secret fields and URL passwords", () => {
    const pub = randomBytes(32).toString("base64");
    const sa = randomBytes(16).toString("hex");
    const out = scrubJson({
      name: "node-1",
      publicKeys: { "1": pub },
      saInstance: sa,
      datastore: "etcds://root:hunter2@10.0.0.1:2379?password-file=/x&token=abc",
      env: { PODCRYPT_METRICS_TOKEN: "abc", PATH: "/bin" },
      note: `leaked ${key.toString("base64")}`,
      privateKey: key.toString("base64"),
    }) as Record<string, unknown>;
    assert.deepEqual(out["publicKeys"], { "1": pub });
    assert.equal(out["saInstance"], sa);
    assert.equal(
      out["datastore"],
      "etcds://root:<redacted>@10.0.0.1:2379?password-file=<redacted>&token=<redacted>",
    );
    assert.deepEqual(out["env"], { PODCRYPT_METRICS_TOKEN: "<redacted>", PATH: "/bin" });
    assert.equal(out["privateKey"], "<redacted>");
    assert.ok(!JSON.stringify(out).includes(key.toString("base64")));
  });
});
