/**
 * A reduced run of bench/scale against a real etcd: simulated agents (real Agent class, fake data
 * planes) and the real controller. Asserts what must hold at any size — the join reaches every
 * agent, a rotation completes with every data plane on the new epoch holding every peer under
 * the key it published, nobody timed out — and prints the times (the targets are the bench's:
 * `node dist/bench/scale/run.js`). PODCRYPT_SCALE_AGENTS overrides the size.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { runScale } from "../../bench/scale/scale.js";

const agents = Number(process.env["PODCRYPT_SCALE_AGENTS"] ?? 40);

describe(
  "control plane at scale (real etcd, simulated agents)",
  { skip: !existsSync("/usr/bin/etcd") && "no /usr/bin/etcd" },
  () => {
    it(`${agents} agents: a join reaches every agent and a rotation completes everywhere`, async () => {
      const r = await runScale({ agents, rotations: 1, timeoutMs: 150_000 });
      assert.equal(r.agents, agents);
      assert.ok(r.join.ms >= 0 && r.join.joinerMs >= 0, "the join converged both ways");
      assert.equal(r.rotations.length, 1);
      const rot = r.rotations[0]!;
      assert.equal(rot.timeouts, 0, "no node timed out");
      for (const ph of ["prepare", "switch", "retire"] as const)
        assert.ok(Number.isFinite(rot.slowestAckMs[ph]), `every node acknowledged ${ph}`);
      process.stdout.write(
        `# ${agents} agents: join ${r.join.ms} ms, rotation ${rot.ms} ms ` +
          `(prepare ${rot.phasesMs.prepare}, switch+grace ${rot.phasesMs.switch}, retire ${rot.phasesMs.retire} ms), ` +
          `${rot.duplicateAcks} duplicate acknowledgements\n`,
      );
    });
  },
);
