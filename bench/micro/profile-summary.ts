// Summarises V8 CPU profiles (`node --cpu-prof`): self time per function (with file:line), top N,
// as a table or `--json`. Used on the profiles tunnel-compare.ts writes with PODCRYPT_PROFILE=DIR.
//
//   npx tsx bench/micro/profile-summary.ts FILE.cpuprofile [--top N] [--json]
import { readFileSync } from "node:fs";
import { basename } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a));
if (file === undefined) {
  console.error("usage: profile-summary.ts FILE.cpuprofile [--top N] [--json]");
  process.exit(2);
}
const top = Number(args[args.indexOf("--top") + 1] ?? "") || 15;
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  const f = byId.get(id)!.callFrame;
  const name =
    `${f.functionName || "(anonymous)"} ${f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : ""}`.trim();
  self.set(name, (self.get(name) ?? 0) + dt);
  total += dt;
});
const rows = [...self.entries()]
  .sort((a, b) => b[1] - a[1])
  .slice(0, top)
  .map(([name, us]) => ({ name, ms: us / 1000, percent: (100 * us) / total }));
if (args.includes("--json")) {
  process.stdout.write(JSON.stringify({ totalMs: total / 1000, rows }, null, 2) + "\n");
} else {
  console.log(`${basename(file)}: ${(total / 1000).toFixed(0)} ms sampled`);
  for (const r of rows)
    console.log(`${r.percent.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`);
}
