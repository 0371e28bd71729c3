// test-tier: netns (root: network namespaces)
/**
 * Userspace ESP asks for a rotation before its sequence numbers run out (docs/design.md#keys-and-rotation:
 * rotating early, well before they run out), end to end: agents started with a tiny threshold
 * (PODCRYPT_ESP_REKEY_AFTER_PACKETS, the env of `podcrypt agent --esp-rekey-after-packets`), traffic
 * over every pair, and the controller rotates on its own, losing nothing.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CONTROLLERS } from "../../src/localcluster/cluster.js";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

const THRESHOLD = 1500;
const { home, podcrypt, remove } = clusterCli("esp-exhaustion", {
  env: { PODCRYPT_ESP_REKEY_AFTER_PACKETS: String(THRESHOLD) },
});

const epochOf = async (): Promise<number> => {
  const r = await podcrypt(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { epoch: number }).epoch;
};

describe(
  "ESP sequence numbers near their end trigger an early rotation",
  { skip: await clusterBusy() },
  () => {
    before(async () => {
      const up = await podcrypt([
        "cluster",
        "up",
        "--mode",
        "ipsec",
        "--nodes",
        "3",
        "--pods-per-node",
        "1",
        "--timeout",
        "150",
      ]);
      assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
    });
    after(async () => {
      await podcrypt(["cluster", "down"]);
      remove();
    });

    it("the controller rotates without being asked, and the traffic loses nothing", async () => {
      const before = await epochOf();
      // 100 probes/s per ordered pair for 30 s: every outbound SA carries probes and echoes, 2× the threshold.
      const v = JSON.parse(
        (await podcrypt(["verify", "--json", "--seconds", "30", "--count", "3000"], 300_000)).stdout,
      ) as VerifyJson;
      for (const p of v.pairs) {
        assert.equal(p.plaintextSeen, false, `${p.from}->${p.to}`);
        assert.equal(p.echoed, p.sent, `${p.from}->${p.to} lost ${p.sent - p.echoed} of ${p.sent}`);
      }
      const epoch = await epochOf();
      assert.ok(epoch > before, `epoch ${before} -> ${epoch}: no early rotation`);
      // Whichever of the two controllers leads logs the phases.
      const phases = CONTROLLERS.flatMap(([name]) =>
        readFileSync(join(home, "logs", `${name}.log`), "utf8").split("\n"),
      ).filter((l) => l.includes('"msg":"cluster phase"'));
      assert.ok(
        phases.some((l) => l.includes('"reason":"rotation-early"')),
        `no rotation-early phase in the controller's log:\n${phases.join("\n")}`,
      );
      assert.ok(
        !phases.some((l) => l.includes('"reason":"rotation-requested"')),
        "nobody asked for a rotation",
      );
      process.stdout.write(
        `# early rotations at ${THRESHOLD} packets per SA: epoch ${before} -> ${epoch}, ` +
          `${v.pairs.reduce((s, p) => s + p.sent, 0)} probes, 0 lost\n`,
      );
    });
  },
);
