import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { InstalledXfrmPolicy, InstalledXfrmState } from "../../platform/netlink/xfrm-text.js";
import { AEAD_NAME, normaliseXfrm, planXfrm } from "./plan.js";
import { DEFAULT_OWNED_REQIDS } from "./reconciler.js";
import type { XfrmDesired } from "./types.js";

const R = DEFAULT_OWNED_REQIDS.min + 1;
const KEY = Buffer.from("0102030405060708091011121314151617181920", "hex");
const desired: XfrmDesired = normaliseXfrm(
  {
    states: [
      {
        src: "10.0.0.1",
        dst: "10.0.0.2",
        spi: 0x1001,
        reqid: R,
        key: KEY,
        encap: { sport: 4500, dport: 4500 },
      },
    ],
    policies: [
      {
        dir: "out",
        src: "10.1.0.0/24",
        dst: "10.2.0.7/24",
        tmpl: { src: "10.0.0.1", dst: "10.0.0.2", reqid: R },
      },
    ],
  },
  DEFAULT_OWNED_REQIDS,
);

function installed(): { states: InstalledXfrmState[]; policies: InstalledXfrmPolicy[] } {
  return {
    states: [
      {
        src: "10.0.0.1",
        dst: "10.0.0.2",
        proto: "esp",
        spi: 0x1001,
        reqid: R,
        mode: "tunnel",
        aead: { name: AEAD_NAME, keyHex: KEY.toString("hex"), icvBits: 128 },
        encap: { type: "espinudp", sport: 4500, dport: 4500 },
        bytes: 100,
        packets: 1,
      },
    ],
    policies: [
      {
        src: "10.1.0.0/24",
        dst: "10.2.0.0/24",
        dir: "out",
        priority: 0,
        tmpls: [{ src: "10.0.0.1", dst: "10.0.0.2", proto: "esp", reqid: R, mode: "tunnel" }],
      },
    ],
  };
}

const ADD_STATE =
  `xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1001 reqid ${R} mode tunnel` +
  ` aead rfc4106(gcm(aes)) 0x${KEY.toString("hex")} 128 encap espinudp 4500 4500 0.0.0.0 flag af-unspec`;
const ADD_POLICY = `xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 dir out priority 0 tmpl src 10.0.0.1 dst 10.0.0.2 proto esp reqid ${R} mode tunnel`;
const DEL_STATE = "xfrm state delete src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1001";

describe("planXfrm", () => {
  it("adds SAs before the policies that use them", () => {
    assert.deepEqual(planXfrm(desired, { states: [], policies: [] }, DEFAULT_OWNED_REQIDS), [
      ADD_STATE,
      ADD_POLICY,
    ]);
  });
  it("plans nothing when the kernel matches (counters are not state)", () => {
    assert.deepEqual(planXfrm(desired, installed(), DEFAULT_OWNED_REQIDS), []);
  });
  it("replaces an SA whose key changed (keys cannot be updated in place)", () => {
    const s = installed();
    s.states[0]!.aead!.keyHex = "00".repeat(20);
    assert.deepEqual(planXfrm(desired, s, DEFAULT_OWNED_REQIDS), [DEL_STATE, ADD_STATE]);
  });
  it("makes SAs of either inner family (af-unspec), with the original address of the outer family", () => {
    const six = normaliseXfrm(
      {
        states: [{ ...desired.states[0]!, src: "fd30::1", dst: "fd30::2" }],
        policies: [
          {
            dir: "out",
            src: "0.0.0.0/0",
            dst: "10.244.2.0/24",
            tmpl: { src: "fd30::1", dst: "fd30::2", reqid: R },
          },
          {
            dir: "out",
            src: "::/0",
            dst: "fd00:10:244:2::/64",
            tmpl: { src: "fd30::1", dst: "fd30::2", reqid: R },
          },
        ],
      },
      DEFAULT_OWNED_REQIDS,
    );
    const lines = planXfrm(six, { states: [], policies: [] }, DEFAULT_OWNED_REQIDS);
    assert.equal(
      lines[0],
      `xfrm state add src fd30::1 dst fd30::2 proto esp spi 0x1001 reqid ${R} mode tunnel` +
        ` aead rfc4106(gcm(aes)) 0x${KEY.toString("hex")} 128 encap espinudp 4500 4500 :: flag af-unspec`,
    );
    assert.deepEqual(lines.slice(1), [
      `xfrm policy add src 0.0.0.0/0 dst 10.244.2.0/24 dir out priority 0 tmpl src fd30::1 dst fd30::2 proto esp reqid ${R} mode tunnel`,
      `xfrm policy add src ::/0 dst fd00:10:244:2::/64 dir out priority 0 tmpl src fd30::1 dst fd30::2 proto esp reqid ${R} mode tunnel`,
    ]);
  });
  it("keeps an installed SA without af-unspec (re-adding it under the same key would restart its sequence numbers)", () => {
    const s = installed();
    assert.equal(s.states[0]!.afUnspec, undefined);
    assert.deepEqual(planXfrm(desired, s, DEFAULT_OWNED_REQIDS), []);
  });
  it("replaces an SA that lost its encapsulation", () => {
    const s = installed();
    delete s.states[0]!.encap;
    assert.deepEqual(planXfrm(desired, s, DEFAULT_OWNED_REQIDS), [DEL_STATE, ADD_STATE]);
  });
  it("updates a policy whose template changed", () => {
    const s = installed();
    s.policies[0]!.tmpls[0]!.dst = "10.0.0.9";
    assert.deepEqual(planXfrm(desired, s, DEFAULT_OWNED_REQIDS), [
      ADD_POLICY.replace("policy add", "policy update"),
    ]);
  });
  it("removes stale owned policies before stale owned SAs, and never touches foreign ones", () => {
    const s = installed();
    s.states.push({ ...s.states[0]!, spi: 0x2002 }, { ...s.states[0]!, spi: 0x3003, reqid: 5 });
    s.policies.push(
      { ...s.policies[0]!, dir: "in", tmpls: [{ ...s.policies[0]!.tmpls[0]!, reqid: R }] },
      { ...s.policies[0]!, dir: "fwd", tmpls: [{ ...s.policies[0]!.tmpls[0]!, reqid: 5 }] },
    );
    assert.deepEqual(planXfrm(desired, s, DEFAULT_OWNED_REQIDS), [
      "xfrm policy delete src 10.1.0.0/24 dst 10.2.0.0/24 dir in",
      "xfrm state delete src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x2002",
    ]);
  });
  it("writes selectors with ports and marks", () => {
    const d = normaliseXfrm(
      {
        states: [],
        policies: [
          {
            dir: "out",
            src: "10.1.0.0/24",
            dst: "10.2.0.0/24",
            proto: "udp",
            dport: 53,
            mark: { value: 0xd00, mask: 0xf00 },
            priority: 10,
            tmpl: { src: "10.0.0.1", dst: "10.0.0.2", reqid: R },
          },
        ],
      },
      DEFAULT_OWNED_REQIDS,
    );
    assert.deepEqual(planXfrm(d, { states: [], policies: [] }, DEFAULT_OWNED_REQIDS), [
      `xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 proto udp dport 53 dir out mark 0xd00 mask 0xf00 priority 10 tmpl src 10.0.0.1 dst 10.0.0.2 proto esp reqid ${R} mode tunnel`,
    ]);
  });
  it("keeps two generations' policies apart by if_id and prunes only the scope asked for", () => {
    const gen = (ifId: number, reqid: number): XfrmDesired =>
      normaliseXfrm(
        {
          links: [{ ifname: `pc${ifId & 1}`, ifId, dev: "eth0", mtu: 1400 }],
          states: [{ src: "10.0.0.1", dst: "10.0.0.2", spi: 0x1000 + ifId, reqid, key: KEY, ifId }],
          policies: [
            {
              dir: "out",
              src: "0.0.0.0/0",
              dst: "10.2.0.0/24",
              ifId,
              tmpl: { src: "10.0.0.1", dst: "10.0.0.2", reqid },
            },
          ],
        },
        DEFAULT_OWNED_REQIDS,
      );
    const a = gen(0x50430010, R);
    const b = gen(0x50430011, R + 1);
    const empty = { states: [], policies: [], links: new Map() };
    const first = planXfrm(a, empty, DEFAULT_OWNED_REQIDS, { prune: new Set([0x50430010]) });
    assert.deepEqual(first.slice(0, 3), [
      "link add name pc0 type xfrm dev eth0 if_id 0x50430010",
      "link set dev pc0 mtu 1400",
      "link set dev pc0 up",
    ]);
    assert.match(first[3]!, / if_id 0x50430010 flag af-unspec$/);
    assert.equal(
      first[4],
      `xfrm policy add src 0.0.0.0/0 dst 10.2.0.0/24 dir out if_id 0x50430010 priority 0 tmpl src 10.0.0.1 dst 10.0.0.2 proto esp reqid ${R} mode tunnel`,
    );
    // Installed: generation a. Applying b alone (its own scope) must not touch a.
    const installedA = {
      links: new Map([
        ["pc0", { ifname: "pc0", kind: "xfrm", ifId: 0x50430010, dev: "eth0", mtu: 1400, up: true }],
      ]),
      states: [
        {
          src: "10.0.0.1",
          dst: "10.0.0.2",
          proto: "esp",
          spi: 0x1000 + 0x50430010,
          reqid: R,
          mode: "tunnel",
          aead: { name: AEAD_NAME, keyHex: KEY.toString("hex"), icvBits: 128 },
          ifId: 0x50430010,
        },
      ],
      policies: [
        {
          src: "0.0.0.0/0",
          dst: "10.2.0.0/24",
          dir: "out" as const,
          priority: 0,
          ifId: 0x50430010,
          tmpls: [{ src: "10.0.0.1", dst: "10.0.0.2", proto: "esp", reqid: R, mode: "tunnel" }],
        },
      ],
    };
    assert.deepEqual(planXfrm(a, installedA, DEFAULT_OWNED_REQIDS), []);
    const applyB = planXfrm(b, installedA, DEFAULT_OWNED_REQIDS, {
      prune: new Set([0x50430011]),
      ownsLink: (n) => /^pc[01]$/.test(n),
    });
    assert.equal(applyB.filter((l) => l.includes("delete") || l.startsWith("link del")).length, 0);
    // Retiring a: everything of it goes, policies before states, the interface last.
    const retire = planXfrm({ ...b, states: [], policies: [], links: [] }, installedA, DEFAULT_OWNED_REQIDS, {
      ownsLink: (n) => /^pc[01]$/.test(n),
    });
    assert.deepEqual(retire, [
      "xfrm policy delete src 0.0.0.0/0 dst 10.2.0.0/24 dir out if_id 0x50430010",
      `xfrm state delete src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x${(0x1000 + 0x50430010).toString(16)}`,
      "link del dev pc0",
    ]);
  });
  it("replaces an interface of the wrong if_id or kind", () => {
    const d = normaliseXfrm(
      { links: [{ ifname: "pc0", ifId: 7, dev: "eth0", mtu: 1400 }], states: [], policies: [] },
      DEFAULT_OWNED_REQIDS,
    );
    const links = new Map([
      ["pc0", { ifname: "pc0", kind: "xfrm", ifId: 8, dev: "eth0", mtu: 1400, up: true }],
    ]);
    assert.deepEqual(planXfrm(d, { states: [], policies: [], links }, DEFAULT_OWNED_REQIDS), [
      "link del dev pc0",
      "link add name pc0 type xfrm dev eth0 if_id 0x7",
      "link set dev pc0 mtu 1400",
      "link set dev pc0 up",
    ]);
  });
  it("rejects what the kernel would refuse or podcrypt must not own, naming the field", () => {
    const s = { src: "10.0.0.1", dst: "10.0.0.2", spi: 0x1001, reqid: R, key: KEY };
    assert.throws(
      () => normaliseXfrm({ states: [{ ...s, key: Buffer.alloc(16) }], policies: [] }, DEFAULT_OWNED_REQIDS),
      /states\[0\]\.key/,
    );
    assert.throws(
      () => normaliseXfrm({ states: [{ ...s, spi: 7 }], policies: [] }, DEFAULT_OWNED_REQIDS),
      /states\[0\]\.spi/,
    );
    assert.throws(
      () => normaliseXfrm({ states: [{ ...s, reqid: 5 }], policies: [] }, DEFAULT_OWNED_REQIDS),
      /states\[0\]\.reqid/,
    );
  });
});
