import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DesiredStrict } from "../types.js";
import { SELECT_MARK, strictRuleset } from "./nft.js";

const base: DesiredStrict = {
  dropOutbound: true,
  dropInbound: true,
  underlayIf: "eth0",
  localPodCidrs: ["10.244.1.0/24"],
  remotePodCidrs: ["10.244.2.0/24", "10.244.3.0/24"],
};

const ruleLines = (text: string): string[] =>
  text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^(ip|ip6|oifname|iifname) /.test(l));

describe("strictRuleset", () => {
  it("replaces the table atomically (create, delete, define in one transaction)", () => {
    const text = strictRuleset(base);
    assert.match(text, /^table inet podcrypt \{\}\ndelete table inet podcrypt\ntable inet podcrypt \{\n/);
  });

  it("encrypting all traffic: drops pod-to-pod plaintext on the underlay both ways", () => {
    assert.deepEqual(ruleLines(strictRuleset(base)), [
      'oifname "eth0" ip saddr { 10.244.1.0/24 } ip daddr { 10.244.2.0/24, 10.244.3.0/24 } rt ipsec missing counter drop comment "podcrypt: plaintext out"',
      'iifname "eth0" ip saddr { 10.244.2.0/24, 10.244.3.0/24 } ip daddr { 10.244.1.0/24 } counter drop comment "podcrypt: plaintext in"',
    ]);
    assert.deepEqual(ruleLines(strictRuleset({ ...base, dropOutbound: false, dropInbound: false })), []);
  });

  it("selective: marks selected traffic both ways, drops it in plaintext, per address family", () => {
    const text = strictRuleset({
      ...base,
      selection: {
        encrypt: [
          { protocol: "udp", port: 53, podIPs: ["10.244.2.5", "fd00::5"], local: false },
          { protocol: "tcp", port: 80, podIPs: ["10.244.1.7"], local: true },
        ],
        expectEncrypted: [{ protocol: "udp", port: 53, podIPs: ["10.244.2.5"], local: false }],
      },
    });
    const mark = `meta mark set meta mark | 0x${SELECT_MARK.toString(16).padStart(8, "0")} counter`;
    assert.deepEqual(ruleLines(text), [
      `ip daddr . meta l4proto . th dport { 10.244.2.5 . udp . 53 } ${mark}`,
      `ip6 daddr . meta l4proto . th dport { fd00::5 . udp . 53 } ${mark}`,
      `ip saddr . meta l4proto . th sport { 10.244.1.7 . tcp . 80 } ${mark}`,
      'oifname "eth0" meta mark & 0x00100000 != 0 rt ipsec missing counter drop comment "podcrypt: plaintext out"',
      'iifname "eth0" ip saddr . meta l4proto . th sport { 10.244.2.5 . udp . 53 } counter drop comment "podcrypt: plaintext in"',
    ]);
    assert.match(text, /chain select \{ type filter hook prerouting priority mangle;/);
  });

  it("selective with nothing selected: no marks, no drops of pod traffic", () => {
    const text = strictRuleset({ ...base, selection: { encrypt: [], expectEncrypted: [] } });
    assert.deepEqual(
      ruleLines(text).filter((l) => !l.startsWith("oifname")),
      [],
    );
  });
});
