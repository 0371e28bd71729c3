/**
 * Faults of the local cluster's processes under continuous traffic, both modes, on one cluster per
 * mode (test/faults/harness.ts): every row asserts 0 plaintext on the underlay and its loss bound.
 */
import { it } from "node:test";
import { assertTraffic, faultSuite } from "./harness.js";

for (const mode of ["wireguard", "ipsec"] as const) {
  faultSuite(mode, (c) => {
    it("steady state: 100 datagrams/s per pair for 5 s, none lost, none in plaintext", async () => {
      assertTraffic(await c().traffic(5), {}, "steady");
    });
  });
}
