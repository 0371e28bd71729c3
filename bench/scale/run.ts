/**
 * `node dist/bench/scale/run.js [options]` (`--help` lists them): the control plane at several
 * sizes in one run — by default 100, 500 and 1000 simulated agents, each size against a fresh etcd
 * (scale.ts says what is measured) — printed as a table with one column per size, and optionally
 * written as JSON, as an SVG chart of join and rotation time against node count, and as the
 * Markdown of docs/benchmarks.md. Targets: join under 2 s and every rotation under 15 s. Exit
 * status 1 if a target is missed or a size fails (the other sizes still run), 2 on a bad option.
 */
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { parseIntFlag } from "../../src/cli/flags.js";
import { renderChart, type LinePanel } from "../chart.js";
import { loadAverage, machine, toolVersion } from "../machine.js";
import { runScale, type ScaleResult } from "./scale.js";

const JOIN_TARGET_MS = 2_000;
const ROTATION_TARGET_MS = 15_000;

/** One size of the run: its result, or why it failed. */
export interface SizeRun {
  agents: number;
  loadBefore: string;
  loadAfter: string;
  result?: ScaleResult;
  error?: string;
}

/** What `--json` writes. */
export interface ScaleRun {
  date: string;
  machine: Record<string, string>;
  options: { rotations: number; heartbeatMs: number; startBatch: number };
  targets: { joinMs: number; rotationMs: number };
  sizes: SizeRun[];
}

const s1 = (ms: number): string => (ms / 1000).toFixed(1);

/** Whether the size met both targets (false when it failed). */
function met(r: ScaleResult | undefined): boolean {
  return (
    r !== undefined &&
    r.join.ms < JOIN_TARGET_MS &&
    r.rotations.every((x) => x.ms < ROTATION_TARGET_MS && x.timeouts === 0)
  );
}

/** The table's rows: a label and a cell per size ("-" where the size failed). */
function rows(sizes: readonly SizeRun[], rotations: number): Array<[string, ...string[]]> {
  const row = (label: string, cell: (r: ScaleResult) => string): [string, ...string[]] => [
    label,
    ...sizes.map((s) => (s.result === undefined ? "-" : cell(s.result))),
  ];
  const out: Array<[string, ...string[]]> = [
    ["agents (+1 joining)", ...sizes.map((s) => String(s.agents))],
    ["load average before (1 / 5 / 15 min)", ...sizes.map((s) => s.loadBefore.replace(/ /g, " / "))],
    row("start, all peers everywhere (s)", (r) => s1(r.startMs)),
    row("agents started afresh after a failed start", (r) => String(r.startRestarts)),
    row("join → every agent holds the new peer (s)", (r) => s1(r.join.ms)),
    row("join → the new node holds every peer (s)", (r) => s1(r.join.joinerMs)),
  ];
  for (let i = 0; i < rotations; i++) {
    out.push(row(`rotation ${i + 1} → every data plane on the new epoch (s)`, (r) => s1(r.rotations[i]!.ms)));
    out.push(
      row("  prepare / switch+grace / retire (s)", (r) => {
        const p = r.rotations[i]!.phasesMs;
        return `${s1(p.prepare)} / ${s1(p.switch)} / ${s1(p.retire)}`;
      }),
    );
    out.push(
      row("  slowest ack after phase start (s)", (r) => {
        const a = r.rotations[i]!.slowestAckMs;
        return `${s1(a.prepare)} / ${s1(a.switch)} / ${s1(a.retire)}`;
      }),
    );
    out.push(row("  nodes timed out", (r) => String(r.rotations[i]!.timeouts)));
  }
  out.push(
    row("reconcile passes per agent (join + rotations)", (r) => r.passesPerAgent.toFixed(1)),
    row("CPU s, simulation process (join + rotations)", (r) => r.cpuSeconds.toFixed(1)),
    row("CPU s, etcd (join + rotations)", (r) => r.etcdCpuSeconds.toFixed(1)),
    row(
      "worker event-loop delay p99 / max (ms)",
      (r) => `${r.workerLoopDelay.p99.toFixed(0)} / ${r.workerLoopDelay.max.toFixed(0)}`,
    ),
    row("RSS (MiB)", (r) => String(r.rssMb)),
    [
      "targets (join < 2 s, rotations < 15 s, none timed out)",
      ...sizes.map((s) => (s.result === undefined ? "FAILED" : met(s.result) ? "met" : "MISSED")),
    ],
  );
  return out;
}

/** The human table: one column per size, then every size's error. */
export function formatTable(run: ScaleRun): string {
  const t = rows(run.sizes, run.options.rotations);
  const widths = run.sizes.map((_, i) => Math.max(...t.map((r) => r[i + 1]!.length)) + 2);
  const w0 = Math.max(...t.map((r) => r[0].length));
  const lines = t.map(([label, ...cells]) =>
    (label.padEnd(w0) + cells.map((c, i) => c.padStart(widths[i]!)).join("")).trimEnd(),
  );
  for (const s of run.sizes) if (s.error !== undefined) lines.push(`${s.agents} agents failed: ${s.error}`);
  return lines.join("\n") + "\n";
}

/** The same in Markdown with the machine, versions and date, for docs/benchmarks.md. */
export function formatMarkdown(run: ScaleRun, svgPath?: string): string {
  const m = run.machine;
  const t = rows(run.sizes, run.options.rotations);
  const lines = [
    `Run ${run.date} on ${m["cpu"]} (${m["cores"]} cores, shared), kernel ${m["kernel"]}, Node ${m["node"]}, ` +
      `${m["etcd"]}, podcrypt ${m["podcrypt"]}. Each size against a fresh etcd, ` +
      `${run.options.rotations} rotations, heartbeat ${run.options.heartbeatMs} ms, agents started ` +
      `${run.options.startBatch} at a time.`,
    "",
    `| | ${run.sizes.map((s) => `${s.agents} agents`).join(" | ")} |`,
    `| --- | ${run.sizes.map(() => "---:").join(" | ")} |`,
    ...t
      .slice(1)
      .map(([label, ...cells]) => `| ${label.replace(/^ {2}/, "&nbsp;&nbsp;")} | ${cells.join(" | ")} |`),
  ];
  for (const s of run.sizes)
    if (s.error !== undefined) lines.push("", `- ${s.agents} agents failed: ${s.error}`);
  if (svgPath !== undefined) lines.push("", `![control plane against node count](${svgPath})`);
  return lines.join("\n") + "\n";
}

/** The chart's panels: join, each rotation and CPU against the number of agents. */
export function chartPanels(run: ScaleRun): LinePanel[] {
  const points = (f: (r: ScaleResult) => number): Array<[number, number | undefined]> =>
    run.sizes.map((s) => [s.agents, s.result === undefined ? undefined : f(s.result)]);
  return [
    {
      title: "join → every agent holds the new node",
      unit: "seconds",
      xLabel: "agents",
      series: [{ label: "join", points: points((r) => r.join.ms / 1000) }],
      target: { y: JOIN_TARGET_MS / 1000, label: "target 2 s" },
      digits: 1,
    },
    {
      title: "rotation → every data plane on it",
      unit: "seconds",
      xLabel: "agents",
      series: Array.from({ length: run.options.rotations }, (_, i) => ({
        label: `rotation ${i + 1}`,
        points: points((r) => r.rotations[i]!.ms / 1000),
      })),
      target: { y: ROTATION_TARGET_MS / 1000, label: "target 15 s" },
      digits: 1,
    },
    {
      title: "CPU during join and rotations",
      unit: "CPU seconds",
      xLabel: "agents",
      series: [
        { label: "simulation (agents, controller)", points: points((r) => r.cpuSeconds) },
        { label: "etcd", points: points((r) => r.etcdCpuSeconds) },
      ],
      digits: 0,
    },
  ];
}

/** A comma-separated list of agent counts, each from 2 to 5000. */
function agentCounts(value: string): number[] {
  const one = parseIntFlag("--agents", 2, 5000);
  const counts = value.split(",").map((v) => one(v));
  if (new Set(counts).size !== counts.length) throw new InvalidArgumentError("--agents lists a size twice");
  return counts;
}

interface CliOptions {
  agents: number[];
  rotations: number;
  workers?: number;
  clients?: number;
  heartbeatMs: number;
  startBatch: number;
  timeoutS: number;
  watchPerAgent?: boolean;
  cpuProf?: string;
  json?: string;
  svg?: string;
  markdown?: string;
}

const program = new Command("node dist/bench/scale/run.js")
  .description(
    "The control plane at scale: N simulated agents (the real Agent class, fake data planes) and the real controller " +
      "against a real etcd, for each N given; times a node join and full rotations.",
  )
  .addOption(
    new Option("--agents <list>", "agent counts, comma-separated, run in this order")
      .argParser(agentCounts)
      .default([100, 500, 1000], "100,500,1000"),
  )
  .option("--rotations <n>", "rotations to time at each size", parseIntFlag("--rotations", 1, 100), 3)
  .option(
    "--workers <n>",
    "worker threads hosting the agents (default: the machine's cores)",
    parseIntFlag("--workers", 1, 64),
  )
  .option(
    "--clients <n>",
    "etcd clients per worker, shared by its agents (default 2)",
    parseIntFlag("--clients", 1, 1000),
  )
  .option(
    "--heartbeat-ms <ms>",
    "agent heartbeat (liveness lease renewal)",
    parseIntFlag("--heartbeat-ms", 100, 600_000),
    5000,
  )
  .option(
    "--start-batch <n>",
    "agents started per round before the measurements",
    parseIntFlag("--start-batch", 1, 5000),
    100,
  )
  .option("--timeout-s <s>", "limit of each measurement", parseIntFlag("--timeout-s", 1, 3600), 120)
  .option("--watch-per-agent", "every agent with etcd watches of its own instead of its client's shared ones")
  .option(
    "--cpu-prof <file>",
    "V8 CPU profiles of the measurements, per size and thread (FILE.<N>.cpuprofile, FILE.<N>.worker-K.cpuprofile)",
  )
  .option("--json <file>", "write the results as JSON")
  .option("--svg <file>", "write the chart of join and rotation time against agents")
  .option("--markdown <file>", "write the table as Markdown (for docs/benchmarks.md)")
  .addHelpText(
    "after",
    "\nTargets: join < 2 s and every rotation < 15 s. Exit status 1 if one is missed or a size fails.\n" +
      "Example: node dist/bench/scale/run.js --json scale.json --svg docs/benchmarks-scale.svg --markdown scale.md",
  )
  .showHelpAfterError("(--help lists the options)")
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));

/** Writes the files of `--json`, `--svg` and `--markdown` that were asked for. */
function writeOutputs(run: ScaleRun, o: CliOptions): void {
  if (o.json !== undefined) writeFileSync(o.json, JSON.stringify(run, null, 2) + "\n");
  if (o.svg !== undefined) {
    const m = run.machine;
    const subtitle = `${run.date} · ${m["cpu"]} (${m["cores"]} cores, shared) · ${m["etcd"]} · podcrypt ${m["podcrypt"]}`;
    writeFileSync(
      o.svg,
      renderChart("podcrypt control plane against node count, one run", subtitle, chartPanels(run)),
    );
  }
  if (o.markdown !== undefined)
    writeFileSync(o.markdown, formatMarkdown(run, o.svg === undefined ? undefined : basename(o.svg)));
}

async function main(): Promise<void> {
  const o = program.parse().opts<CliOptions>();
  const progress = (l: string): void => void process.stderr.write(`# ${l}\n`);
  const run: ScaleRun = {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    machine: machine({
      etcd: toolVersion("/usr/bin/etcd", ["--version"]).replace(/^etcd Version: /, "etcd "),
    }),
    options: { rotations: o.rotations, heartbeatMs: o.heartbeatMs, startBatch: o.startBatch },
    targets: { joinMs: JOIN_TARGET_MS, rotationMs: ROTATION_TARGET_MS },
    sizes: [],
  };
  for (const agents of o.agents) {
    const size: SizeRun = { agents, loadBefore: loadAverage(), loadAfter: "" };
    run.sizes.push(size);
    progress(`${agents} agents (load average ${size.loadBefore})`);
    try {
      size.result = await runScale({
        agents,
        rotations: o.rotations,
        timeoutMs: o.timeoutS * 1000,
        heartbeatMs: o.heartbeatMs,
        startBatch: o.startBatch,
        watchPerAgent: o.watchPerAgent === true,
        ...(o.cpuProf === undefined ? {} : { cpuProfile: o.cpuProf.replace(/(\.[^./]*)?$/, `.${agents}$1`) }),
        ...(o.clients === undefined ? {} : { clients: o.clients }),
        ...(o.workers === undefined ? {} : { workers: o.workers }),
        progress,
      });
    } catch (e) {
      size.error = (e as Error).message.split("\n")[0]!.slice(0, 300);
      progress(`${agents} agents failed: ${(e as Error).stack ?? String(e)}`);
    }
    size.loadAfter = loadAverage();
    // After every size, so that a run stopped at a later size keeps the sizes it measured.
    writeOutputs(run, o);
  }
  process.stdout.write(`${run.date}\n` + formatTable(run));
  process.exit(run.sizes.every((s) => met(s.result)) ? 0 : 1);
}

await main();
