import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryDatastore } from "../../test/support/memory-datastore/index.js";
import { isValidationError } from "../errors/index.js";
import { interfaceHolding, resolveNodeName, resolveNodeNetwork, underlayInterfaceOf } from "./agent-node.js";

const field = (f: string, re: RegExp) => (e: unknown) =>
  isValidationError(e) && e.field === f && re.test(e.message);

describe("the agent's node", () => {
  it("name: --node, else $NODE_NAME, else an error saying both", () => {
    assert.equal(resolveNodeName("n1", { NODE_NAME: "n2" }), "n1");
    assert.equal(resolveNodeName(undefined, { NODE_NAME: "n2" }), "n2");
    assert.throws(() => resolveNodeName(undefined, {}), field("--node", /--node NAME, or set \$NODE_NAME/));
    assert.throws(() => resolveNodeName(undefined, { NODE_NAME: "Node_1" }), field("$NODE_NAME", /DNS-1123/));
  });

  it("network: the flags on a datastore without Node objects, else the flag is named", async () => {
    const store = new MemoryDatastore({ sweepIntervalMs: 0 });
    try {
      assert.deepEqual(
        await resolveNodeNetwork(store, "n1", { underlayIp: "192.0.2.1", podCidr: ["10.244.1.0/24"] }),
        {
          underlayIp: "192.0.2.1",
          underlay: { ipv4: "192.0.2.1" },
          podCIDRs: ["10.244.1.0/24"],
          source: { underlayIp: "flag", podCIDRs: "flag" },
        },
      );
      // One address per family: the tunnels use the IPv4 one, both are published.
      const dual = await resolveNodeNetwork(store, "n1", {
        underlayIp: ["fd30::b", "192.0.2.1"],
        podCidr: ["10.244.1.0/24", "fd00:10:244:1::/64"],
      });
      assert.deepEqual(
        [dual.underlayIp, dual.underlay],
        ["192.0.2.1", { ipv4: "192.0.2.1", ipv6: "fd30::b" }],
      );
      await assert.rejects(
        resolveNodeNetwork(store, "n1", { underlayIp: ["192.0.2.1", "192.0.2.2"] }),
        field(
          "--underlay-ip",
          /two ipv4 addresses \(192\.0\.2\.1, 192\.0\.2\.2\): give at most one per family/,
        ),
      );
      await assert.rejects(
        resolveNodeNetwork(store, "n1", {}),
        field("--underlay-ip", /required with the memory datastore/),
      );
      await assert.rejects(
        resolveNodeNetwork(store, "n1", { underlayIp: "192.0.2" }),
        field("--underlay-ip", /not an IPv4/),
      );
      await assert.rejects(
        resolveNodeNetwork(store, "n1", { underlayIp: "192.0.2.1", podCidr: ["10.244.1.0"] }),
        field("--pod-cidr", /not a CIDR/),
      );
    } finally {
      await store.close();
    }
  });

  it("underlay interface: the one holding the address", async () => {
    const links = [
      { ifname: "lo", addr_info: [{ local: "127.0.0.1" }, { local: "::1" }] },
      { ifname: "eth0", addr_info: [{ local: "172.30.0.11" }, { local: "FD30::B" }] },
      { ifname: "pcw0" },
    ];
    assert.equal(interfaceHolding(links, "172.30.0.11"), "eth0");
    assert.equal(interfaceHolding(links, "fd30::b"), "eth0");
    assert.equal(interfaceHolding(links, "192.0.2.1"), undefined);
    // This machine's loopback holds 127.0.0.1 (read with `ip -j addr show`).
    assert.equal(await underlayInterfaceOf("127.0.0.1"), "lo");
    await assert.rejects(
      underlayInterfaceOf("192.0.2.254"),
      field("--underlay-if", /no interface here holds/),
    );
  });
});
