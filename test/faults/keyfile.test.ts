// test-tier: netns (root: network namespaces)
/**
 * Key files under faults, both modes, on the shared fault cluster (test/faults/harness.ts): node-2's
 * key file of the current epoch is corrupted and its agent killed. The restarted agent must not exit
 * and stay down (as it did): it moves the file aside with a warning, makes a fresh key, publishes
 * it, and node-2's pairs re-key to it. Nothing crosses in plaintext meanwhile.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { it } from "node:test";
import { assertTraffic, faultSuite, sleep, waitUntil } from "./harness.js";

/** Every file below `dir` whose name matches `re`. */
function findFiles(dir: string, re: RegExp): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, re));
    else if (re.test(e.name)) out.push(p);
  }
  return out;
}

for (const mode of ["wireguard", "ipsec"] as const) {
  faultSuite(mode, (c) => {
    it("a corrupt key file and an agent restart: the key is moved aside and replaced, pairs re-key, 0 plaintext", async () => {
      const cl = c();
      const before = await cl.status();
      const epoch = before.epoch;
      const nodeDir = join(cl.home, "nodes", "node-2");
      const [file] = findFiles(nodeDir, new RegExp(`^epoch-${epoch}\\.key$`));
      assert.ok(file !== undefined, `node-2 keeps a key file of epoch ${epoch} under ${nodeDir}`);
      const keyOf = (s: typeof before): string | undefined =>
        (
          s.nodes
            .find((n) => n.name === "node-1")
            ?.peers.find((p) => p.node === "node-2" && p.epoch === epoch) as
            { publicKey?: string } | undefined
        )?.publicKey;
      const oldKey = keyOf(before);

      const traffic = cl.traffic(20);
      await sleep(3000);
      writeFileSync(file, "this is not a key\n");
      await cl.killAndAwaitRestart("agent-node-2");
      const log = cl.process("agent-node-2").log;
      await waitUntil(
        () => readFileSync(log, "utf8").includes("key file unusable: moved aside"),
        20_000,
        "the restarted agent to warn that it moved the key file aside",
      );
      const v = await traffic;
      // The pairs of node-2 re-key to a key nobody had: they may lose while peers take it up.
      const worst = assertTraffic(v, { faulty: "node-2", maxLost: 20 * 100 }, "corrupt key file");
      process.stdout.write(
        `# ${mode}: corrupt key file + agent restart: worst pair of node-2 lost ${worst}\n`,
      );

      const moved = findFiles(nodeDir, new RegExp(`^epoch-${epoch}\\.key\\.corrupt-`));
      assert.equal(moved.length, 1, "the corrupt file is kept aside for a person");
      assert.equal(statSync(moved[0]!).mode & 0o777, 0o600);
      assert.equal(readFileSync(moved[0]!, "utf8"), "this is not a key\n");
      assert.equal(statSync(file).mode & 0o777, 0o600, "a fresh key file in its place");
      assert.ok(!readFileSync(log, "utf8").includes(readFileSync(file, "utf8").trim()), "no key in the log");

      await cl.settled();
      if (oldKey !== undefined) assert.notEqual(keyOf(await cl.status()), oldKey, "peers hold the new key");
      assertTraffic(await cl.traffic(5), {}, "after the re-key");
    });
  });
}
