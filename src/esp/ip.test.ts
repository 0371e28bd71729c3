import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { internetChecksum, ipv4Packet, ipv6Bytes, ipv6Packet, udpOverIpv4 } from "./ip.js";

describe("IP framing helpers", () => {
  it("computes the RFC 1071 checksum of a known IPv4 header", () => {
    const header = Buffer.from("450000730000400040110000c0a80001c0a800c7", "hex");
    assert.equal(internetChecksum(header), 0xb861);
    header.writeUInt16BE(0xb861, 10);
    assert.equal(internetChecksum(header), 0, "a header with its checksum sums to zero");
    assert.equal(internetChecksum(Buffer.from([0x01])), 0xfeff, "odd length pads with zero");
  });

  it("builds IPv4 packets with valid checksums and UDP with a valid pseudo-header checksum", () => {
    const p = udpOverIpv4("192.0.2.1", "198.51.100.2", 4500, 4500, Buffer.from("abc"));
    assert.equal(p.length, 20 + 8 + 3);
    assert.equal(internetChecksum(p.subarray(0, 20)), 0);
    const pseudo = Buffer.concat([p.subarray(12, 20), Buffer.from([0, 17, 0, 11])]);
    assert.equal(internetChecksum(Buffer.concat([pseudo, p.subarray(20)])), 0);
    assert.equal(ipv4Packet("10.0.0.1", "10.0.0.2", 17, Buffer.alloc(0)).readUInt16BE(2), 20);
    assert.throws(() => ipv4Packet("10.0.0", "10.0.0.2", 17, Buffer.alloc(0)), RangeError);
  });

  it("parses IPv6 text with and without :: and builds IPv6 headers", () => {
    assert.equal(ipv6Bytes("fd00::1").toString("hex"), "fd000000000000000000000000000001");
    assert.equal(ipv6Bytes("::").toString("hex"), "0".repeat(32));
    assert.equal(ipv6Bytes("1:2:3:4:5:6:7:8").toString("hex"), "00010002000300040005000600070008");
    assert.equal(ipv6Bytes("1::7:8").toString("hex"), "00010000000000000000000000070008");
    assert.throws(() => ipv6Bytes("::ffff:1.2.3.4"), RangeError);
    assert.throws(() => ipv6Bytes("fd00:::1"), RangeError);
    const p = ipv6Packet("fd00::1", "fd00::2", 17, Buffer.alloc(5));
    assert.equal(p[0]! >> 4, 6);
    assert.equal(p.readUInt16BE(4), 5);
    assert.equal(p[6], 17);
  });
});
