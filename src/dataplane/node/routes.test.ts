import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SELECT_MARK } from "./nft.js";
import { hostRuleCommands, selectedRuleCommands, type IpRule } from "./routes.js";

/** The rules `ip -j rule show` prints for the commands `add` (the subset host encryption uses). */
function installed(add: readonly string[]): IpRule[] {
  return add.map((c) => {
    const w = c.split(" ");
    const arg = (k: string) => (w.includes(k) ? w[w.indexOf(k) + 1] : undefined);
    const to = arg("to")?.split("/");
    const from = arg("from")?.split("/");
    const r: IpRule = { priority: Number(arg("priority")), table: arg("lookup")!, src: from?.[0] ?? "all" };
    // ip prints a prefix length only when it is not the address's full length.
    const full = (addr: string) => (addr.includes(":") ? "128" : "32");
    if (from !== undefined && from[1] !== full(from[0]!)) r.srclen = Number(from[1]);
    if (to !== undefined) {
      r.dst = to[0]!;
      if (to[1] !== full(to[0]!)) r.dstlen = Number(to[1]);
    }
    if (arg("ipproto") !== undefined) r.ipproto = arg("ipproto")!;
    if (arg("sport") !== undefined) r.sport = Number(arg("sport"));
    if (arg("dport") !== undefined) r.dport = Number(arg("dport"));
    return r;
  });
}

const HOST = {
  families: ["ipv4" as const],
  exclude: [
    { protocol: "udp" as const, sport: 51820 },
    { protocol: "udp" as const, dport: 51820 },
    { to: "10.9.0.0/16" },
    { from: "192.168.1.7" },
  ],
};

describe("host encryption's ip rules", () => {
  it("from none: the exclusions first, the host table's rule last", () => {
    const cmds = hostRuleCommands([], HOST);
    assert.equal(cmds.at(-1), "rule add priority 5031 lookup 5041");
    assert.deepEqual(cmds.slice(0, -1).sort(), [
      "rule add priority 5030 from 192.168.1.7/32 lookup main",
      "rule add priority 5030 ipproto udp dport 51820 lookup main",
      "rule add priority 5030 ipproto udp sport 51820 lookup main",
      "rule add priority 5030 to 10.9.0.0/16 lookup main",
    ]);
  });

  it("installed as wanted: nothing to do (a pass changes nothing)", () => {
    const rules = installed(hostRuleCommands([], HOST));
    assert.deepEqual(hostRuleCommands(rules, HOST), []);
  });

  it("an exclusion changed: the host table's rule goes first and comes back last", () => {
    const rules = installed(hostRuleCommands([], HOST));
    const cmds = hostRuleCommands(rules, {
      ...HOST,
      exclude: [...HOST.exclude, { protocol: "tcp", dport: 2379 }],
    });
    assert.equal(cmds[0], "rule del priority 5031");
    assert.equal(cmds.at(-1), "rule add priority 5031 lookup 5041");
    assert.equal(cmds.filter((c) => c === "rule del priority 5030").length, 4);
    assert.ok(cmds.includes("rule add priority 5030 ipproto tcp dport 2379 lookup main"));
  });

  it("host encryption off: every rule of it removed, the host table's first", () => {
    const rules = installed(hostRuleCommands([], HOST));
    assert.deepEqual(hostRuleCommands(rules, undefined), [
      "rule del priority 5031",
      ...Array<string>(4).fill("rule del priority 5030"),
    ]);
    assert.deepEqual(hostRuleCommands([{ priority: 0, src: "all", table: "local" }], undefined), []);
  });

  const DUAL = {
    families: ["ipv4" as const, "ipv6" as const],
    exclude: [...HOST.exclude, { to: "fd00:9::/32" }, { from: "fd30::7" }],
  };

  it("IPv6 (ip -6 rule): the ports both families share, the CIDRs of its own family only", () => {
    const cmds = hostRuleCommands([], DUAL, "ipv6");
    assert.equal(cmds.at(-1), "rule add priority 5031 lookup 5041");
    assert.deepEqual(cmds.slice(0, -1).sort(), [
      "rule add priority 5030 from fd30::7/128 lookup main",
      "rule add priority 5030 ipproto udp dport 51820 lookup main",
      "rule add priority 5030 ipproto udp sport 51820 lookup main",
      "rule add priority 5030 to fd00:9::/32 lookup main",
    ]);
    const v4 = hostRuleCommands([], DUAL, "ipv4");
    assert.equal(v4.filter((c) => c.includes(":")).length, 0, v4.join("\n"));
    assert.equal(v4.length, 5);
    assert.deepEqual(hostRuleCommands(installed(cmds), DUAL, "ipv6"), [], "installed as wanted");
  });

  it("a family host encryption does not cover keeps no rule of it (its rules removed)", () => {
    const v6 = installed(hostRuleCommands([], DUAL, "ipv6"));
    assert.deepEqual(hostRuleCommands([], HOST, "ipv6"), []);
    assert.deepEqual(hostRuleCommands(v6, HOST, "ipv6"), [
      "rule del priority 5031",
      ...Array<string>(4).fill("rule del priority 5030"),
    ]);
  });
});

describe("selective encryption's ip rule of marked packets (per family: ip rule, ip -6 rule)", () => {
  const mark = `0x${SELECT_MARK.toString(16)}`;
  const rule: IpRule = { priority: 5040, src: "all", fwmark: mark, fwmask: mark, table: "5040" };
  const ADD = `rule add priority 5040 fwmark ${mark}/${mark} lookup 5040`;

  it("wanted and missing: added; wanted and there: nothing to do", () => {
    assert.deepEqual(selectedRuleCommands([{ priority: 0, src: "all", table: "local" }], true), [ADD]);
    assert.deepEqual(selectedRuleCommands([rule], true), []);
  });

  it("not wanted: removed, however many there are; none there: nothing to do", () => {
    assert.deepEqual(selectedRuleCommands([rule, rule], false), [
      "rule del priority 5040",
      "rule del priority 5040",
    ]);
    assert.deepEqual(selectedRuleCommands([], false), []);
  });

  it("one with another mark, or two: replaced by the one wanted", () => {
    assert.deepEqual(selectedRuleCommands([{ ...rule, fwmark: "0x8" }], true), [
      "rule del priority 5040",
      ADD,
    ]);
    assert.deepEqual(selectedRuleCommands([rule, rule], true), [
      "rule del priority 5040",
      "rule del priority 5040",
      ADD,
    ]);
  });
});
