import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { datastorePorts, hostExclusions } from "./host-exclusions.js";

describe("host encryption's exclusions", () => {
  it("the datastore's TCP port, of every etcd endpoint and of a Kubernetes API server", () => {
    assert.deepEqual(datastorePorts("local"), []);
    assert.deepEqual(datastorePorts("local:/var/lib/podcrypt/store"), []);
    assert.deepEqual(datastorePorts("etcd://10.0.0.1:2379,10.0.0.2:2381?allow-insecure=true"), [2379, 2381]);
    assert.deepEqual(datastorePorts("kubernetes", "https://10.96.0.1:6443"), [6443]);
    // No port in the URL: the scheme's.
    assert.deepEqual(datastorePorts("kubernetes", "https://api.example"), [443]);
    assert.deepEqual(datastorePorts("kubernetes"), []);
  });

  it("the datastore's port and the operator's ports both ways, the operator's CIDRs in both directions", () => {
    assert.deepEqual(
      hostExclusions("etcds://10.0.0.1:2379", {
        cidrs: ["10.9.0.0/16"],
        ports: [{ protocol: "tcp", port: 22 }],
      }),
      [
        { protocol: "tcp", dport: 2379 },
        { protocol: "tcp", sport: 2379 },
        { to: "10.9.0.0/16" },
        { from: "10.9.0.0/16" },
        { protocol: "tcp", dport: 22 },
        { protocol: "tcp", sport: 22 },
      ],
    );
    assert.deepEqual(hostExclusions("local", { cidrs: [], ports: [] }), []);
  });
});
