// test-tier: netns (root: network namespaces)
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { listNetns, runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "./netns.js";

describe("NetnsLab", () => {
  it("creates joined namespaces and removes them on cleanup", async () => {
    const lab = new NetnsLab();
    const a = await lab.netns("a");
    const b = await lab.netns("b");
    await lab.veth(a, "eth0", b, "eth0", ["10.99.0.1/24"], ["10.99.0.2/24"]);
    await runIn(a, "ping", ["-c1", "-W2", "10.99.0.2"]);
    const sleeper = lab.spawn(b, "sleep", ["60"]);
    assert.ok((await listNetns()).includes(a));
    await lab.cleanup();
    const left = await listNetns();
    assert.ok(!left.includes(a) && !left.includes(b));
    assert.ok(sleeper.killed);
  });
});
