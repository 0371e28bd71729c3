import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { tunnelMtu } from "./mtu.js";

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
    [1500, "ipsec", {}, 1452],
    [1500, "ipsec", { udpEncap: true }, 1444],
    [1500, "ipsec", { ipv6: true }, 1432],
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
