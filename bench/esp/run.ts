/**
 * Userspace ESP against plain veth, in one run: two fresh namespaces joined by a veth pair, a
 * `podcrypt esp` daemon on each end configured with derived per-pair SAs (test/esp-dataplane/lab.ts),
 * then iperf3 TCP both ways and ping through the ESP tunnel and over the bare veth underneath it.
 *
 *   npx tsx bench/esp/run.ts [--seconds S] [--pings N] [--json]
 *
 * Defaults: 5 s per iperf3 direction, 20 pings. Everything stays inside namespaces this run makes
 * (pct-<id>-*), removed at the end, also on Ctrl-C.
 */
import { espPair, installEpoch, status } from "../../test/esp-dataplane/lab.js";
import { NetnsGroup } from "../../test/helpers/netns.js";
import { iperf3, ping } from "../../test/wireguard/lab.js";

export interface EspBenchRow {
  readonly name: "esp-userspace" | "veth";
  /** iperf3 TCP a -> b, Mbit/s. */
  readonly mbps?: number;
  /** iperf3 TCP b -> a, Mbit/s. */
  readonly mbpsReverse?: number;
  /** Average ping RTT, ms. */
  readonly rttMs?: number;
  readonly error?: string;
}

async function measure(
  owner: NetnsGroup,
  name: EspBenchRow["name"],
  a: string,
  b: string,
  target: string,
  seconds: number,
  pings: number,
): Promise<EspBenchRow> {
  try {
    const rttMs = await ping(a, target, pings, 0.05);
    const spawn = owner.spawn.bind(owner);
    const mbps = await iperf3(spawn, a, b, target, seconds);
    const mbpsReverse = await iperf3(spawn, a, b, target, seconds, true);
    return { name, mbps, mbpsReverse, rttMs };
  } catch (e) {
    return { name, error: e instanceof Error ? e.message : String(e) };
  }
}

/** Runs the comparison; namespaces are removed before it returns. */
export async function runEspBench(o: { seconds: number; pings: number }): Promise<EspBenchRow[]> {
  const owner = new NetnsGroup();
  const onSignal = (): void => void owner.cleanup().then(() => process.exit(130));
  process.once("SIGINT", onSignal);
  try {
    const p = await espPair(owner, "bench");
    try {
      await installEpoch(p, 1, true);
      const rows = [
        await measure(owner, "esp-userspace", p.a.ns, p.b.ns, p.b.inner, o.seconds, o.pings),
        await measure(owner, "veth", p.a.ns, p.b.ns, p.b.underlay, o.seconds, o.pings),
      ];
      const s = await status(p.b);
      if (s.drops["auth-failed"] + s.drops.replay > 0)
        rows[0] = { ...rows[0]!, error: `unexpected drops ${JSON.stringify(s.drops)}` };
      return rows;
    } finally {
      p.dispose();
    }
  } finally {
    process.removeListener("SIGINT", onSignal);
    await owner.cleanup();
  }
}

export function formatEspTable(rows: readonly EspBenchRow[], seconds: number): string {
  const veth = rows.find((r) => r.name === "veth")?.mbps;
  const f = (n: number | undefined, d = 0): string => (n === undefined ? "-" : n.toFixed(d));
  const lines = [
    `iperf3 TCP ${seconds}s each way, ping RTT (ratio: a->b throughput / veth)`,
    `${"".padEnd(14)}${"a->b Mbit/s".padStart(13)}${"b->a Mbit/s".padStart(13)}${"RTT ms".padStart(9)}${"ratio".padStart(8)}`,
  ];
  for (const r of rows) {
    const ratio = r.mbps !== undefined && veth !== undefined ? (r.mbps / veth).toFixed(3) : "-";
    lines.push(
      `${r.name.padEnd(14)}${f(r.mbps).padStart(13)}${f(r.mbpsReverse).padStart(13)}${f(r.rttMs, 3).padStart(9)}${ratio.padStart(8)}` +
        (r.error !== undefined ? `  error: ${r.error}` : ""),
    );
  }
  return lines.join("\n") + "\n";
}

function flag(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const n = Number(argv[i + 1]);
  if (!(n > 0)) throw new Error(`${name} takes a positive number`);
  return n;
}

if (process.argv[1] !== undefined && /bench[\\/]esp[\\/]run\.[jt]s$/.test(process.argv[1])) {
  const argv = process.argv.slice(2);
  const seconds = flag(argv, "--seconds", 5);
  const rows = await runEspBench({ seconds, pings: flag(argv, "--pings", 20) });
  process.stdout.write(
    argv.includes("--json")
      ? JSON.stringify({ seconds, load: (await import("node:os")).loadavg(), rows }, null, 2) + "\n"
      : formatEspTable(rows, seconds),
  );
  process.exitCode = rows.some((r) => r.error !== undefined) ? 1 : 0;
}
