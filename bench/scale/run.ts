/**
 * `node dist/bench/scale/run.js [--agents N] [--workers W] [--clients K] [--rotations R] [--heartbeat-ms MS] [--timeout-s S] [--watch-per-agent] [--cpu-prof FILE] [--json]`
 *
 * N simulated agents (default 500) and the controller in this process against a real etcd:
 * time for a node join to reach every agent and for a full rotation. Targets: join
 * under 2 s, rotation under 15 s. Exit status 1 if a target is missed or a measurement fails.
 */
import { runScale, type ScaleResult } from "./scale.js";

const JOIN_TARGET_MS = 2_000;
const ROTATION_TARGET_MS = 15_000;

function flag(name: string, fallback?: number): number | undefined {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`${name} needs a positive number\n`);
    process.exit(2);
  }
  return v;
}

function table(r: ScaleResult): string {
  const rows: Array<[string, string, string]> = [
    ["agents (+1 joining)", String(r.agents), ""],
    ["worker threads hosting the agents", String(r.workers), ""],
    ["etcd clients per worker, shared by its agents", String(r.clients), ""],
    ["watches", r.sharedWatches ? "one per client and kind" : "one per agent and kind", ""],
    ["agent heartbeat", `${r.heartbeatMs} ms`, ""],
    ["start all agents", `${r.startMs} ms`, ""],
    ["initial convergence (all peers everywhere)", `${r.initialConvergeMs} ms`, ""],
    [
      "join → every agent holds the new peer",
      `${r.join.ms} ms`,
      r.join.ms < JOIN_TARGET_MS ? "ok (< 2 s)" : "MISSED (2 s)",
    ],
    ["join → the new node holds every peer", `${r.join.joinerMs} ms`, ""],
  ];
  for (const [i, x] of r.rotations.entries()) {
    rows.push([
      `rotation ${i + 1} → every data plane on the new epoch`,
      `${x.ms} ms`,
      x.ms < ROTATION_TARGET_MS ? "ok (< 15 s)" : "MISSED (15 s)",
    ]);
    rows.push([
      "  request / prepare / switch+grace / retire / tail",
      `${x.phasesMs.request} / ${x.phasesMs.prepare} / ${x.phasesMs.switch} / ${x.phasesMs.retire} / ${x.tailMs} ms`,
      "",
    ]);
    rows.push([
      "  median ack after phase start: prepare / switch / retire",
      `${x.medianAckMs.prepare} / ${x.medianAckMs.switch} / ${x.medianAckMs.retire} ms`,
      "",
    ]);
    rows.push([
      "  slowest ack after phase start: prepare / switch / retire",
      `${x.slowestAckMs.prepare} / ${x.slowestAckMs.switch} / ${x.slowestAckMs.retire} ms`,
      "",
    ]);
    rows.push(["  duplicate acknowledgement writes (lower bound)", String(x.duplicateAcks), ""]);
    rows.push(["  nodes whose prepare ack was evicted by duplicates", String(x.prepareAckEvicted), ""]);
    rows.push(["  nodes timed out", String(x.timeouts), ""]);
  }
  rows.push([
    "worker event-loop delay p50 / p99 / max (worst worker)",
    `${r.workerLoopDelay.p50.toFixed(0)} / ${r.workerLoopDelay.p99.toFixed(0)} / ${r.workerLoopDelay.max.toFixed(0)} ms`,
    "",
  ]);
  rows.push([
    "controller thread event-loop delay p50 / p99 / max",
    `${r.loopDelay.p50.toFixed(0)} / ${r.loopDelay.p99.toFixed(0)} / ${r.loopDelay.max.toFixed(0)} ms`,
    "",
  ]);
  rows.push(["reconcile passes per agent (join + rotations)", r.passesPerAgent.toFixed(1), ""]);
  rows.push(["CPU time of the process (join + rotations)", `${r.cpuSeconds.toFixed(1)} s`, ""]);
  rows.push(["RSS", `${r.rssMb} MiB`, ""]);
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  return rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`.trimEnd()).join("\n") + "\n";
}

const json = process.argv.includes("--json");
const clients = flag("--clients");
const workers = flag("--workers");
const heartbeatMs = flag("--heartbeat-ms");
const profAt = process.argv.indexOf("--cpu-prof");
const cpuProfile = profAt < 0 ? undefined : process.argv[profAt + 1];
if (profAt >= 0 && (cpuProfile === undefined || cpuProfile.startsWith("--"))) {
  process.stderr.write("--cpu-prof needs a file name\n");
  process.exit(2);
}
try {
  const r = await runScale({
    agents: flag("--agents", 500)!,
    rotations: flag("--rotations", 1)!,
    timeoutMs: flag("--timeout-s", 120)! * 1000,
    watchPerAgent: process.argv.includes("--watch-per-agent"),
    ...(cpuProfile === undefined ? {} : { cpuProfile }),
    ...(clients === undefined ? {} : { clients }),
    ...(workers === undefined ? {} : { workers }),
    ...(heartbeatMs === undefined ? {} : { heartbeatMs }),
    progress: (l) => process.stderr.write(`# ${l}\n`),
  });
  process.stdout.write(json ? JSON.stringify(r, null, 2) + "\n" : table(r));
  const missed = r.join.ms >= JOIN_TARGET_MS || r.rotations.some((x) => x.ms >= ROTATION_TARGET_MS);
  process.exit(missed ? 1 : 0);
} catch (e) {
  process.stderr.write(`scale bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
}
