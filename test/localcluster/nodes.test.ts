// test-tier: netns (root: network namespaces)
/**
 * Nodes joining and leaving under traffic: the others converge, traffic
 * between the nodes that stay loses nothing, and the times are reported.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

const { podcrypt, remove } = clusterCli("nodes");

describe("nodes join and leave a running cluster under traffic", { skip: await clusterBusy() }, () => {
  before(async () => {
    const up = await podcrypt(["cluster", "up", "--timeout", "150"]);
    assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
  });
  after(async () => {
    await podcrypt(["cluster", "down"]);
    remove();
  });

  it("node-4 joins and node-2 leaves while traffic flows; node-1 <-> node-3 lose nothing", async () => {
    const traffic = podcrypt(["verify", "--json", "--seconds", "40", "--count", "4000"], 300_000);
    await new Promise((r) => setTimeout(r, 3000));
    const add = await podcrypt(["cluster", "add-node", "--timeout", "120"]);
    assert.equal(add.code, 0, add.stderr);
    const joined = /every node reached it in ([\d.]+) s/.exec(add.stdout);
    assert.ok(joined, add.stdout);
    const status = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
      epoch: number;
      nodes: Array<{ name: string; peers: Array<{ node: string; state: string; epoch: number }> }>;
    };
    for (const n of status.nodes.filter((x) => x.name !== "node-4"))
      assert.ok(
        n.peers.some((p) => p.node === "node-4" && p.state === "established" && p.epoch === status.epoch),
        `${n.name} has a session with node-4`,
      );

    const rm = await podcrypt(["cluster", "remove-node", "node-2", "--timeout", "120"]);
    assert.equal(rm.code, 0, rm.stderr);
    const left = /every node dropped it in ([\d.]+) s/.exec(rm.stdout);
    assert.ok(left, rm.stdout);

    const v = JSON.parse((await traffic).stdout) as VerifyJson;
    const staying = v.pairs.filter((p) => p.from !== "node-2" && p.to !== "node-2");
    assert.equal(staying.length, 2);
    for (const p of staying) {
      assert.equal(p.echoed, p.sent, `${p.from}->${p.to} lost ${p.sent - p.echoed} of ${p.sent}`);
      assert.equal(p.plaintextSeen, false);
    }
    assert.ok(
      v.pairs.filter((p) => p.from === "node-2").every((p) => p.error !== undefined),
      "node-2's sender went away with it",
    );
    const after = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as VerifyJson;
    assert.equal(after.ok, true, JSON.stringify(after.pairs.filter((p) => !p.delivered || p.plaintextSeen)));
    assert.deepEqual([...new Set(after.pairs.map((p) => p.from))].sort(), ["node-1", "node-3", "node-4"]);
    process.stdout.write(
      `# node-4 joined: every node had a session with it ${joined[1]} s after its agent started; ` +
        `node-2 left: every node dropped it ${left[1]} s after its record was deleted\n`,
    );
  });
});
