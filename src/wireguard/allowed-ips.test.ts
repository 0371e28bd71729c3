import { test } from "node:test";
import assert from "node:assert/strict";
import { AllowedIps, maskAddress, parseAllowedIp } from "./allowed-ips.js";
import { formatIp, parseIp } from "./ip.js";
import { isValidationError } from "../errors/index.js";

const ip = (s: string): Buffer => parseIp(s)!;

test("ip text: parse and RFC 5952 format, including embedded IPv4 and compression", () => {
  const cases: Array<[string, string]> = [
    ["10.1.2.3", "10.1.2.3"],
    ["::", "::"],
    ["::1", "::1"],
    ["fd00::1", "fd00::1"],
    ["FD00:0:0:0:0:0:0:1", "fd00::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8::", "2001:db8::"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["::ffff:10.0.0.1", "::ffff:a00:1"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
  ];
  for (const [input, out] of cases) assert.equal(formatIp(ip(input)), out, input);
  assert.equal(ip("::ffff:10.0.0.1").toString("hex"), "00000000000000000000ffff0a000001");
  for (const bad of ["", "1.2.3", "1.2.3.256", "fe80::1%eth0", "1::2::3", "[::1]", "x"])
    assert.equal(parseIp(bad), undefined, bad);
});

test("prefix parsing canonicalises host bits and validates length", () => {
  const p = parseAllowedIp("10.1.2.3/8");
  assert.equal(formatIp(p.address), "10.0.0.0");
  assert.equal(p.cidr, 8);
  assert.equal(parseAllowedIp("fd00::5").cidr, 128);
  assert.equal(formatIp(parseAllowedIp("fd00:1234:5678::1/20").address), "fd00:1000::");
  assert.equal(formatIp(maskAddress(ip("255.255.255.255"), 0)), "0.0.0.0");
  for (const bad of ["10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/-1", "x/8", "10.0.0.0/8/8"])
    assert.throws(() => parseAllowedIp(bad, "peer.allowed_ip"), isValidationError, bad);
});

test("longest prefix match with overlapping IPv4 prefixes", () => {
  const t = new AllowedIps<string>();
  t.insertText("0.0.0.0/0", "default");
  t.insertText("10.0.0.0/8", "a");
  t.insertText("10.1.0.0/16", "b");
  t.insertText("10.1.2.3/32", "c");
  t.insertText("10.1.2.0/24", "d");
  const cases: Array<[string, string]> = [
    ["10.1.2.3", "c"],
    ["10.1.2.4", "d"],
    ["10.1.3.1", "b"],
    ["10.2.0.1", "a"],
    ["11.0.0.1", "default"],
    ["10.1.2.255", "d"],
  ];
  for (const [a, peer] of cases) assert.equal(t.lookup(ip(a)), peer, a);
  assert.equal(t.lookup(ip("fd00::1")), undefined, "v4 default does not cover v6");
});

test("IPv6 prefixes and mixed families", () => {
  const t = new AllowedIps<number>();
  t.insertText("fd00::/8", 1);
  t.insertText("fd00:1::/32", 2);
  t.insertText("fd00:1::7/128", 3);
  t.insertText("10.0.0.0/8", 4);
  assert.equal(t.lookup(ip("fd00:1::7")), 3);
  assert.equal(t.lookup(ip("fd00:1::8")), 2);
  assert.equal(t.lookup(ip("fdff::1")), 1);
  assert.equal(t.lookup(ip("fe00::1")), undefined);
  assert.equal(t.lookup(ip("10.9.9.9")), 4);
  assert.equal(t.lookup(Buffer.alloc(5)), undefined);
});

test("a prefix inserted for another peer moves to it; remove, removeByPeer, entries", () => {
  const t = new AllowedIps<string>();
  t.insertText("10.0.0.0/24", "a");
  t.insertText("10.0.1.0/24", "a");
  t.insertText("fd00::/64", "a");
  t.insertText("10.0.0.77/24", "b"); // same prefix after canonicalisation
  assert.equal(t.lookup(ip("10.0.0.1")), "b");
  assert.deepEqual(t.entriesFor("a"), [
    { address: "10.0.1.0", cidr: 24 },
    { address: "fd00::", cidr: 64 },
  ]);
  assert.deepEqual(t.entriesFor("b"), [{ address: "10.0.0.0", cidr: 24 }]);
  assert.equal(t.size, 3);
  // "-" removal only removes a prefix its peer owns
  assert.equal(t.remove(ip("10.0.0.0"), 24, "a"), false);
  assert.equal(t.lookup(ip("10.0.0.1")), "b");
  assert.equal(t.remove(ip("10.0.0.0"), 24), true);
  assert.equal(t.remove(ip("10.0.0.0"), 24), false);
  assert.equal(t.lookup(ip("10.0.0.1")), undefined);
  t.removeByPeer("a");
  assert.equal(t.lookup(ip("10.0.1.1")), undefined);
  assert.equal(t.lookup(ip("fd00::1")), undefined);
  assert.deepEqual(t.entriesFor("a"), []);
  assert.equal(t.size, 0);
});

test("removing a longer prefix keeps the shorter one (pruning stops at valued nodes)", () => {
  const t = new AllowedIps<string>();
  t.insertText("10.0.0.0/8", "a");
  t.insertText("10.1.0.0/16", "b");
  t.remove(ip("10.1.0.0"), 16);
  assert.equal(t.lookup(ip("10.1.0.1")), "a");
  t.insertText("10.1.0.0/16", "c");
  assert.equal(t.lookup(ip("10.1.0.1")), "c");
});

test("lookup on IP packets: v4 and v6 src/dst, malformed packets give undefined", () => {
  const t = new AllowedIps<string>();
  t.insertText("192.168.0.0/16", "src-peer");
  t.insertText("10.0.0.0/8", "dst-peer");
  t.insertText("fd00:1::/64", "v6src");
  t.insertText("fd00:2::/64", "v6dst");
  const v4 = Buffer.alloc(28);
  v4[0] = 0x45;
  ip("192.168.1.1").copy(v4, 12);
  ip("10.2.3.4").copy(v4, 16);
  const framed = Buffer.concat([Buffer.alloc(3), v4]);
  assert.equal(t.lookupPacket(framed, 3, v4.length, "src"), "src-peer");
  assert.equal(t.lookupPacket(framed, 3, v4.length, "dst"), "dst-peer");
  const v6 = Buffer.alloc(40);
  v6[0] = 0x60;
  ip("fd00:1::9").copy(v6, 8);
  ip("fd00:2::9").copy(v6, 24);
  assert.equal(t.lookupPacket(v6, 0, 40, "src"), "v6src");
  assert.equal(t.lookupPacket(v6, 0, 40, "dst"), "v6dst");
  assert.equal(t.lookupPacket(v6, 0, 39, "dst"), undefined);
  assert.equal(t.lookupPacket(v4, 0, 19, "dst"), undefined);
  assert.equal(t.lookupPacket(Buffer.from([0x55, 0, 0]), 0, 3, "dst"), undefined);
  assert.equal(t.lookupPacket(v4, 10, 28, "dst"), undefined, "length past the buffer");
});
