import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { podMtu, tunnelMtu } from "./mtu.js";

describe("tunnelMtu", () => {
  const table: Array<
    [
      number,
      Parameters<typeof tunnelMtu>[0]["mode"],
      { ipv6?: boolean; ipip?: boolean; udpEncap?: boolean },
      number,
    ]
  > = [
    // The seed's worked example: 1500 external, IPsec over IPIP -> 1452.
    [1500, "ipsec", { ipip: true }, 1452],
    [1450, "ipsec", { ipip: true }, 1404],
    [9001, "ipsec", { ipip: true }, 8952],
    [1501, "ipsec", { ipip: true }, 1452],
    [1503, "ipsec", { ipip: true }, 1456],
    [1500, "ipsec", { ipip: true, udpEncap: true }, 1444],
    // podcrypt's ESP tunnel mode with a 16-byte ICV: 1438 + 2 trailer = 1440 (a multiple of 4);
    // 20 outer + 8 UDP + 8 SPI/seq + 8 IV + 1440 + 16 ICV = 1500 exactly.
    [1500, "ipsec", { udpEncap: true }, 1438],
    [1500, "ipsec", {}, 1446],
    [1500, "ipsec", { ipv6: true }, 1426],
    [1500, "ipsec", { ipv6: true, udpEncap: true }, 1418],
    [1501, "ipsec", { udpEncap: true }, 1438],
    [1504, "ipsec", { udpEncap: true }, 1442],
    [9001, "ipsec", { udpEncap: true }, 8938],
    [1500, "wireguard", {}, 1440],
    [1500, "wireguard", { ipv6: true }, 1420],
    [9001, "wireguard", {}, 8941],
    [1280, "wireguard", { ipv6: true }, 1200],
  ];
  for (const [ext, mode, opts, want] of table) {
    it(`${mode} ${JSON.stringify(opts)} ext ${ext} -> ${want}`, () => {
      assert.equal(tunnelMtu({ extMtu: ext, mode, ...opts }), want);
    });
  }
  it("the ESP tunnel-mode MTU is the largest inner packet that fits, for every external MTU", () => {
    const espSize = (inner: number, udp: boolean, ipv6: boolean): number => {
      const payload = Math.ceil((inner + 2) / 4) * 4;
      return (ipv6 ? 40 : 20) + (udp ? 8 : 0) + 8 + 8 + payload + 16;
    };
    for (let ext = 576; ext <= 9100; ext += 37)
      for (const udp of [false, true])
        for (const ipv6 of [false, true]) {
          if (ipv6 && ext < 1280) continue;
          const m = tunnelMtu({ extMtu: ext, mode: "ipsec", udpEncap: udp, ipv6 });
          assert.ok(espSize(m, udp, ipv6) <= ext, `${m} fits ${ext}`);
          assert.ok(espSize(m + 1, udp, ipv6) > ext, `${m} is the largest for ${ext}`);
        }
  });

  it("podMtu is the smaller of both modes", () => {
    assert.equal(podMtu(1500), 1438);
    assert.equal(podMtu(9001), 8938);
    assert.equal(podMtu(1500, true), 1418);
  });

  it("rejects out-of-range external MTUs naming the flag", () => {
    for (const bad of [0, 100, 575, 65536, 1500.5, Number.NaN]) {
      assert.throws(
        () => tunnelMtu({ extMtu: bad, mode: "wireguard" }),
        (e) => isValidationError(e) && e.field === "ext-mtu",
      );
    }
  });
  it("rejects --ipip with wireguard", () => {
    assert.throws(() => tunnelMtu({ extMtu: 1500, mode: "wireguard", ipip: true }), /ipip/);
  });
});
