import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { ciliumPairKey, parseCiliumPsk, parseCiliumPskFile } from "./psk.js";

const HEX = "4b2b4e9f1d2a3c4d5e6f708192a3b4c5d6e7f80d"; // 20 bytes
const BOOT_A = "0f8f3a51-5c43-4a3e-9f53-0d5b1c7c2a11";
const BOOT_B = "7d1e0c42-9b6a-4f0e-8d2c-4e5f6a7b8c9d";

function rejects(line: string, field: string, text: RegExp): void {
  assert.throws(
    () => parseCiliumPsk(line),
    (e: unknown) =>
      isValidationError(e) &&
      e.field === field &&
      text.test(e.message) &&
      !e.message.includes(HEX.slice(0, 10)),
    `${line} -> ${field}`,
  );
}

describe("Cilium-compatible PSK", () => {
  it("parses the seed's format, with and without '+' and 0x", () => {
    const p = parseCiliumPsk(`3+ rfc4106(gcm(aes)) ${HEX} 128`);
    assert.equal(p.keyId, 3);
    assert.equal(p.perPair, true);
    assert.equal(p.icvLength, 16);
    assert.equal(p.keymat.toString("hex"), HEX);
    const q = parseCiliumPsk(`  15 rfc4106(gcm(aes))   0x${HEX.toUpperCase()} 96 `);
    assert.deepEqual([q.keyId, q.perPair, q.icvLength], [15, false, 12]);
    assert.equal(q.keymat.toString("hex"), HEX);
    assert.equal(parseCiliumPsk(`1 rfc4106(gcm(aes)) ${HEX} 64`).icvLength, 8);
  });

  it("names what is wrong", () => {
    rejects("", "psk", /expected 4 fields/);
    rejects(`3 rfc4106(gcm(aes)) ${HEX}`, "psk", /got 3/);
    rejects(`0 rfc4106(gcm(aes)) ${HEX} 128`, "psk.keyId", /1\.\.15, got 0/);
    rejects(`16+ rfc4106(gcm(aes)) ${HEX} 128`, "psk.keyId", /got 16/);
    rejects(`x rfc4106(gcm(aes)) ${HEX} 128`, "psk.keyId", /number/);
    rejects(`3++ rfc4106(gcm(aes)) ${HEX} 128`, "psk.keyId", /number/);
    rejects(`3 hmac(sha256) ${HEX} 128`, "psk.algorithm", /rfc4106\(gcm\(aes\)\)/);
    rejects(`3 rfc4106(gcm(aes)) ${HEX}00 128`, "psk.key", /40 hex digits.*got 42/);
    rejects(`3 rfc4106(gcm(aes)) ${HEX.slice(2)} 128`, "psk.key", /got 38/);
    rejects(`3 rfc4106(gcm(aes)) ${HEX.slice(1)}g 128`, "psk.key", /hexadecimal/);
    rejects(`3 rfc4106(gcm(aes)) ${HEX} 256`, "psk.icvBits", /64, 96 or 128/);
    rejects(`3 rfc4106(gcm(aes)) ${HEX} 12x`, "psk.icvBits", /64, 96 or 128/);
  });

  it("parses a multi-line secret and names the bad line", () => {
    const keys = parseCiliumPskFile(
      `# old\n2+ rfc4106(gcm(aes)) ${HEX} 128\n\n3+ rfc4106(gcm(aes)) ${HEX} 128\n`,
    );
    assert.deepEqual(
      keys.map((k) => k.keyId),
      [2, 3],
    );
    assert.throws(
      () => parseCiliumPskFile(`2+ rfc4106(gcm(aes)) ${HEX} 128\n3+ rfc4106(gcm(aes)) ${HEX} 100`),
      (e: unknown) => isValidationError(e) && e.field === "psk[2].icvBits",
    );
    assert.throws(() => parseCiliumPskFile("\n# nothing\n"), isValidationError);
  });

  it("derives per-pair keys as Cilium's computeNodeIPsecKey: SHA-256 of psk, IPs, boot IDs", () => {
    const psk = parseCiliumPsk(`3+ rfc4106(gcm(aes)) ${HEX} 128`);
    const ab = ciliumPairKey(psk, {
      srcIp: "10.0.0.1",
      dstIp: "10.0.0.2",
      srcBootId: BOOT_A,
      dstBootId: BOOT_B,
    });
    const want = createHash("sha256")
      .update(
        Buffer.concat([
          Buffer.from(HEX, "hex"),
          Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]),
          Buffer.from(BOOT_A + BOOT_B),
        ]),
      )
      .digest()
      .subarray(0, 20);
    assert.equal(Buffer.concat([ab.key, ab.salt]).toString("hex"), want.toString("hex"));
    // IPv4-mapped IPv6 is canonicalised to 4 bytes, as Go's To4() does; boot IDs cut at 36.
    const mapped = ciliumPairKey(psk, {
      srcIp: "::ffff:10.0.0.1",
      dstIp: "10.0.0.2",
      srcBootId: `${BOOT_A}\n`,
      dstBootId: BOOT_B,
    });
    assert.deepEqual(mapped, ab);
    const ba = ciliumPairKey(psk, {
      srcIp: "10.0.0.2",
      dstIp: "10.0.0.1",
      srcBootId: BOOT_B,
      dstBootId: BOOT_A,
    });
    assert.notDeepEqual(ba, ab);
    const rebooted = ciliumPairKey(psk, {
      srcIp: "10.0.0.1",
      dstIp: "10.0.0.2",
      srcBootId: BOOT_B,
      dstBootId: BOOT_B,
    });
    assert.notDeepEqual(rebooted, ab);
    const v6 = ciliumPairKey(psk, {
      srcIp: "fd00::1",
      dstIp: "fd00::2",
      srcBootId: BOOT_A,
      dstBootId: BOOT_B,
    });
    const want6 = createHash("sha256")
      .update(Buffer.from(HEX, "hex"))
      .update(Buffer.from("fd000000000000000000000000000001fd000000000000000000000000000002", "hex"))
      .update(BOOT_A + BOOT_B)
      .digest()
      .subarray(0, 20);
    assert.equal(Buffer.concat([v6.key, v6.salt]).toString("hex"), want6.toString("hex"));
    assert.throws(
      () =>
        ciliumPairKey(psk, { srcIp: "10.0.0.1", dstIp: "10.0.0.2", srcBootId: "short", dstBootId: BOOT_B }),
      (e: unknown) => isValidationError(e) && e.field === "srcBootId",
    );
    assert.throws(
      () => ciliumPairKey(psk, { srcIp: "node-a", dstIp: "10.0.0.2", srcBootId: BOOT_A, dstBootId: BOOT_B }),
      (e: unknown) => isValidationError(e) && e.field === "srcIp",
    );
  });

  it("without '+' every pair uses the PSK itself (Cilium's legacy global key)", () => {
    const psk = parseCiliumPsk(`4 rfc4106(gcm(aes)) ${HEX} 128`);
    const k = ciliumPairKey(psk, { srcIp: "10.0.0.1", dstIp: "10.0.0.2", srcBootId: "", dstBootId: "" });
    assert.equal(Buffer.concat([k.key, k.salt]).toString("hex"), HEX);
  });
});
