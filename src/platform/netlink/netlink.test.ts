import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { canonicalCidr, canonicalIp, cidrContains, formatEndpoint } from "./addr.js";
import { redactBatchLine, redactSecrets } from "./kernel-commands.js";
import { parseWgDump } from "./wg-dump.js";
import { parseXfrmPolicies, parseXfrmStates } from "./xfrm-text.js";

// Captured from Debian's iproute2 6.1 on linux 6.1 (test VM), keys replaced by test patterns.
const STATES_S = `src 10.97.0.1 dst 10.97.0.2
	proto esp spi 0x00000100(256) reqid 65537(0x00010001) mode tunnel
	replay-window 0 seq 0x00000000 flag  (0x00000000)
	aead rfc4106(gcm(aes)) 0x0102030405060708091011121314151617181920 (160 bits) 128
	encap type espinudp sport 4500 dport 4500 addr 0.0.0.0
	anti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000
	sel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0
	lifetime config:
	  limit: soft (INF)(bytes), hard (INF)(bytes)
	  limit: soft (INF)(packets), hard (INF)(packets)
	  expire add: soft 0(sec), hard 0(sec)
	  expire use: soft 0(sec), hard 0(sec)
	lifetime current:
	  252(bytes), 3(packets)
	  add 2026-11-23 18:54:47 use -
	stats:
	  replay-window 0 replay 0 failed 0
src 10.97.0.2 dst 10.97.0.1
	proto esp spi 0x00001002 reqid 7 mode tunnel
	replay-window 0 
	aead rfc4106(gcm(aes)) 0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3 96
	mark 0xd00/0xf00
`;

const POLICIES = `src 10.96.2.0/24 dst 10.96.1.0/24 
	dir in priority 0 ptype main 
	tmpl src 10.97.0.2 dst 10.97.0.1
		proto esp reqid 65537 mode tunnel
src 10.96.1.0/24 dst 10.96.2.0/24 proto tcp dport 80 
	dir out priority 0 ptype main 
	tmpl src 10.97.0.1 dst 10.97.0.2
		proto esp reqid 65537 mode tunnel
src 10.96.1.0/24 dst 10.96.2.0/24 
	dir out priority 100 ptype main 
	mark 0xd00/0xf00 
	tmpl src 10.97.0.1 dst 10.97.0.2
		proto esp spi 0x00000100 reqid 65537 mode tunnel
src 0.0.0.0/0 dst 0.0.0.0/0 
	socket in priority 0 ptype main 
`;

describe("parseXfrmStates", () => {
  it("reads identity, AEAD, encap, mark and counters", () => {
    const [a, b, ...rest] = parseXfrmStates(STATES_S);
    assert.equal(rest.length, 0);
    assert.deepEqual(a, {
      src: "10.97.0.1",
      dst: "10.97.0.2",
      proto: "esp",
      spi: 0x100,
      reqid: 65537,
      mode: "tunnel",
      aead: { name: "rfc4106(gcm(aes))", keyHex: "0102030405060708091011121314151617181920", icvBits: 128 },
      encap: { type: "espinudp", sport: 4500, dport: 4500 },
      bytes: 252,
      packets: 3,
    });
    assert.equal(b?.spi, 0x1002);
    assert.equal(b?.reqid, 7);
    assert.deepEqual(b?.aead?.icvBits, 96);
    assert.deepEqual(b?.mark, { value: 0xd00, mask: 0xf00 });
    assert.equal(b?.encap, undefined);
    assert.equal(b?.packets, undefined);
  });
  it("returns nothing for empty output", () => assert.deepEqual(parseXfrmStates(""), []));
});

describe("parseXfrmPolicies", () => {
  it("reads selectors, direction, priority, mark and templates, skipping socket policies", () => {
    const p = parseXfrmPolicies(POLICIES);
    assert.equal(p.length, 3);
    assert.deepEqual(p[0], {
      src: "10.96.2.0/24",
      dst: "10.96.1.0/24",
      dir: "in",
      priority: 0,
      tmpls: [{ src: "10.97.0.2", dst: "10.97.0.1", proto: "esp", reqid: 65537, mode: "tunnel" }],
    });
    assert.equal(p[1]?.proto, "tcp");
    assert.equal(p[1]?.dport, 80);
    assert.equal(p[2]?.priority, 100);
    assert.deepEqual(p[2]?.mark, { value: 0xd00, mask: 0xf00 });
    assert.equal(p[2]?.tmpls[0]?.spi, 0x100);
  });
});

// Route-based IPsec (XFRM interfaces), captured the same way: states and policies carry if_id.
const IF_ID_STATE = `src 10.1.0.1 dst 10.1.0.2
	proto esp spi 0x11000001(285212673) reqid 1346568193(0x50430001) mode tunnel
	replay-window 0 seq 0x00000000 flag  (0x00000000)
	aead rfc4106(gcm(aes)) 0x0102030405060708091011121314151617181920 (160 bits) 128
	encap type espinudp sport 4500 dport 4500 addr 0.0.0.0
	anti-replay esn context:
	 seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x0
	 replay_window 1024, bitmap-length 32
	 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 
	if_id 0x50430010
	sel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0
	lifetime current:
	  84(bytes), 1(packets)
	  add 2026-12-01 20:00:46 use -
`;
const IF_ID_POLICY = `src 0.0.0.0/0 dst 10.244.2.0/24 
	dir out priority 0 ptype main 
	tmpl src 10.1.0.1 dst 10.1.0.2
		proto esp reqid 1346568194 mode tunnel
	if_id 0x50430011
`;

describe("XFRM interface IDs", () => {
  it("reads if_id of states and policies", () => {
    const [s] = parseXfrmStates(IF_ID_STATE);
    assert.equal(s?.ifId, 0x50430010);
    assert.equal(s?.reqid, 0x50430001);
    assert.equal(s?.packets, 1);
    const [p] = parseXfrmPolicies(IF_ID_POLICY);
    assert.equal(p?.ifId, 0x50430011);
    assert.equal(p?.tmpls[0]?.reqid, 0x50430002);
    assert.equal(parseXfrmStates(STATES_S)[0]?.ifId, undefined);
  });
  it("reads flag af-unspec (states of either inner family), absent otherwise", () => {
    const unspec = IF_ID_STATE.replace("flag  (0x00000000)", "flag af-unspec (0x00000020)");
    assert.equal(parseXfrmStates(unspec)[0]?.afUnspec, true);
    assert.equal(parseXfrmStates(IF_ID_STATE)[0]?.afUnspec, undefined);
    assert.equal(parseXfrmStates(STATES_S)[1]?.afUnspec, undefined);
  });
});

describe("parseWgDump", () => {
  it("reads interfaces and peers, mapping (none) and off", () => {
    const dump =
      "wg0\tPRIV=\tPUB=\t51820\toff\n" +
      "wg0\tPEER=\t(none)\t10.97.0.2:51820\t10.96.2.0/24,10.97.0.2/32\t0\t0\t0\t25\n" +
      "wg1\tPRIV1=\tPUB1=\t51821\t0x100\n" +
      "wg1\tPEER2=\tPSK=\t(none)\t(none)\t1700000000\t10\t20\toff\n";
    const m = parseWgDump(dump);
    assert.equal(m.size, 2);
    const wg0 = m.get("wg0")!;
    assert.equal(wg0.listenPort, 51820);
    assert.equal(wg0.fwmark, 0);
    assert.deepEqual(wg0.peers[0], {
      publicKey: "PEER=",
      endpoint: "10.97.0.2:51820",
      allowedIps: ["10.96.2.0/24", "10.97.0.2/32"],
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: 25,
    });
    const wg1 = m.get("wg1")!;
    assert.equal(wg1.fwmark, 0x100);
    assert.deepEqual(wg1.peers[0]?.allowedIps, []);
    assert.equal(wg1.peers[0]?.presharedKey, "PSK=");
    assert.equal(wg1.peers[0]?.endpoint, undefined);
    assert.equal(wg1.peers[0]?.persistentKeepalive, 0);
    assert.equal(wg1.peers[0]?.rxBytes, 10);
  });
});

describe("addresses", () => {
  const cases: [string, string][] = [
    ["10.96.2.5/24", "10.96.2.0/24"],
    ["10.96.2.5", "10.96.2.5/32"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["10.255.255.255/9", "10.128.0.0/9"],
    ["FD00:0:0:0::1/64", "fd00::/64"],
    ["fd00::1", "fd00::1/128"],
    ["fd00:1:2:3:4:5:6:7/127", "fd00:1:2:3:4:5:6:6/127"],
    ["::ffff:10.1.2.3/120", "::ffff:a01:200/120"],
  ];
  for (const [input, want] of cases)
    it(`canonicalCidr(${input}) = ${want}`, () => assert.equal(canonicalCidr(input), want));
  it("rejects garbage naming the field", () => {
    assert.throws(() => canonicalCidr("10.0.0.0/33", "peers[0].allowedIps"), /peers\[0\]\.allowedIps/);
    assert.throws(() => canonicalCidr("nope"), /not a CIDR/);
    assert.throws(() => canonicalIp("1.2.3"), /not an IP/);
  });
  it("tells whether one CIDR lies inside another", () => {
    const cases: [string, string, boolean][] = [
      ["10.244.0.0/16", "10.244.3.0/24", true],
      ["10.244.0.0/16", "10.244.3.7", true],
      ["10.244.0.0/16", "10.245.0.0/24", false],
      ["10.244.0.0/16", "10.0.0.0/8", false],
      ["0.0.0.0/0", "192.0.2.1/32", true],
      ["fd00::/64", "fd00::5/128", true],
      ["fd00::/64", "fd01::/64", false],
      ["10.0.0.0/8", "fd00::/64", false],
    ];
    for (const [outer, inner, want] of cases)
      assert.equal(cidrContains(outer, inner), want, `${outer} ⊇ ${inner}`);
  });
  it("formats endpoints as wg prints them", () => {
    assert.equal(formatEndpoint("10.0.0.1", 51820), "10.0.0.1:51820");
    assert.equal(formatEndpoint("FD00::0:1", 1), "[fd00::1]:1");
  });
  it("redacts key material from batch lines", () => {
    const line =
      "xfrm state add src 1.1.1.1 dst 2.2.2.2 proto esp spi 1 aead rfc4106(gcm(aes)) 0xdeadbeef 128";
    assert.equal(redactBatchLine(line).includes("deadbeef"), false);
  });
  it("redacts keys that tools echo in their errors", () => {
    const key = "0x0102030405060708091011121314151617181920";
    const wgKey = "eA1QK2CR8t0aJbXzXIDYDBkwWVj5WdsrgqTzRvbQgEU=";
    const out = redactSecrets(
      `Error: argument "${key}" is wrong; Key is not the correct length: \`${wgKey}\``,
    );
    assert.equal(out.includes("0102030405"), false);
    assert.equal(out.includes(wgKey), false);
    assert.match(out, /argument "<redacted>" is wrong/);
  });
});
