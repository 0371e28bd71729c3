/**
 * `npm run bench`: iperf3 TCP throughput (both directions) and ping latency through
 *   - podcrypt ↔ podcrypt      (`podcrypt wireguard -f` on both ends, configured with `wg`),
 *   - wireguard-go ↔ wireguard-go (Debian's, configured the same way),
 *   - esp-userspace            (`podcrypt esp` on both ends, per-pair SAs as the agent derives them),
 *   - plain veth               (the underlay itself, the ceiling),
 * each between two fresh network namespaces, one after the other in one run, then a table with
 * ratios against wireguard-go and veth.
 *
 *   node dist/bench/run.js [--seconds S] [--pings N] [--only podcrypt,wireguard-go,esp-userspace,veth] [--json]
 *
 * Defaults: 5 s per iperf3 direction, 20 pings. All traffic stays inside namespaces this run makes
 * (named pct-<id>-*, removed at the end, also on Ctrl-C). A row that fails reports its error and
 * the others still run; the exit status is non-zero then.
 */
import { espPair, installEpoch } from "../test/esp-dataplane/lab.js";
import { NetnsGroup } from "../test/helpers/netns.js";
import {
  configureEnd,
  iperf3,
  ping,
  pingUntilUp,
  startDaemon,
  wgKeyPair,
  type Impl,
  type TunnelEnd,
} from "../test/wireguard/lab.js";

/** One row of the result. */
export interface BenchRow {
  readonly name: (typeof ROWS)[number];
  /** iperf3 TCP, a -> b, Mbit/s. */
  readonly mbps?: number;
  /** iperf3 TCP, b -> a (-R), Mbit/s. */
  readonly mbpsReverse?: number;
  /** Average ping RTT, ms. */
  readonly rttMs?: number;
  readonly error?: string;
}

const ROWS = ["podcrypt", "wireguard-go", "esp-userspace", "veth"] as const;

function parseArgs(argv: string[]): { seconds: number; pings: number; only: Set<string>; json: boolean } {
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv.includes("--help")) {
    process.stdout.write(
      `usage: npm run bench -- [--seconds S] [--pings N] [--only ${ROWS.join(",")}] [--json]\n`,
    );
    process.exit(0);
  }
  const seconds = Number(value("--seconds") ?? 5);
  const pings = Number(value("--pings") ?? 20);
  const only = new Set((value("--only") ?? ROWS.join(",")).split(","));
  for (const o of only)
    if (!(ROWS as readonly string[]).includes(o)) throw new Error(`--only: unknown row ${o}`);
  if (!(seconds > 0) || !(pings > 0)) throw new Error("--seconds and --pings must be positive");
  return { seconds, pings, only, json: argv.includes("--json") };
}

/** One row's namespaces and processes: a fresh {@link NetnsGroup}, removed after the row. */
class Bench {
  private readonly lab = new NetnsGroup();
  readonly id = this.lab.id;
  readonly spawn = this.lab.spawn.bind(this.lab);

  /** Two namespaces joined by a veth pair: a = 10.77.0.1, b = 10.77.0.2 (MTU 1500). */
  async pair(tag: string): Promise<[string, string]> {
    const a = await this.lab.netns(`${tag}a`);
    const b = await this.lab.netns(`${tag}b`);
    await this.lab.veth(a, "eth0", b, "eth0", ["10.77.0.1/24"], ["10.77.0.2/24"]);
    return [a, b];
  }

  /** A tunnel of `impl` on both ends over a fresh pair; returns the namespaces. */
  async tunnel(impl: Impl, tag: string): Promise<[string, string]> {
    const [a, b] = await this.pair(tag);
    const ends: [TunnelEnd, TunnelEnd] = [
      {
        impl,
        ns: a,
        ifname: `pc${this.id}${tag}a`,
        keys: wgKeyPair(),
        underlay: "10.77.0.1",
        port: 51820,
        inner: ["10.66.0.1/24"],
      },
      {
        impl,
        ns: b,
        ifname: `pc${this.id}${tag}b`,
        keys: wgKeyPair(),
        underlay: "10.77.0.2",
        port: 51821,
        inner: ["10.66.0.2/24"],
      },
    ];
    for (const e of ends) await startDaemon(this.spawn, impl, e.ns, e.ifname);
    await configureEnd(ends[0], ends[1]);
    await configureEnd(ends[1], ends[0]);
    await pingUntilUp(a, "10.66.0.2");
    return [a, b];
  }

  async measure(
    name: BenchRow["name"],
    a: string,
    b: string,
    target: string,
    seconds: number,
    pings: number,
  ): Promise<BenchRow> {
    const rttMs = await ping(a, target, pings, 0.05);
    const mbps = await iperf3(this.spawn, a, b, target, seconds);
    const mbpsReverse = await iperf3(this.spawn, a, b, target, seconds, true);
    return { name, mbps, mbpsReverse, rttMs };
  }

  /** The userspace ESP pair of test/esp-dataplane/lab.ts with epoch 1's SAs; returns a, b and b's inner address. */
  async esp(): Promise<[string, string, string]> {
    const p = await espPair(this.lab, "e");
    this.disposers.push(() => p.dispose());
    await installEpoch(p, 1, true);
    await pingUntilUp(p.a.ns, p.b.inner);
    return [p.a.ns, p.b.ns, p.b.inner];
  }

  private readonly disposers: Array<() => void> = [];

  /** SIGTERM, 300 ms, SIGKILL, then the namespaces go. */
  async stopAll(): Promise<void> {
    await this.lab.cleanup(300);
    for (const d of this.disposers.splice(0)) d();
  }
}

/** Runs the selected rows one after another (never concurrently: 2 cores are shared). */
export async function runBench(options: {
  seconds: number;
  pings: number;
  only: Set<string>;
}): Promise<BenchRow[]> {
  let bench: Bench | undefined;
  const onSignal = (): void => void (bench?.stopAll() ?? Promise.resolve()).then(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const rows: BenchRow[] = [];
  try {
    for (const name of ROWS) {
      if (!options.only.has(name)) continue;
      const row = (bench = new Bench());
      try {
        const [a, b, target] =
          name === "veth"
            ? [...(await row.pair("v")), "10.77.0.2"]
            : name === "esp-userspace"
              ? await row.esp()
              : [...(await row.tunnel(name, name === "podcrypt" ? "p" : "g")), "10.66.0.2"];
        rows.push(await row.measure(name, a, b, target, options.seconds, options.pings));
      } catch (e) {
        rows.push({ name, error: e instanceof Error ? e.message.split("\n")[0]!.slice(0, 300) : String(e) });
      } finally {
        await row.stopAll();
      }
    }
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
  return rows;
}

const fmt = (n: number | undefined, digits = 0): string => (n === undefined ? "-" : n.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || b === 0 ? "-" : `${(a / b).toFixed(2)}x`;

/** The human table: throughput both ways, RTT, and ratios against wireguard-go, podcrypt's WireGuard and veth. */
export function formatTable(rows: readonly BenchRow[], seconds: number): string {
  const wgo = rows.find((r) => r.name === "wireguard-go");
  const pwg = rows.find((r) => r.name === "podcrypt");
  const veth = rows.find((r) => r.name === "veth");
  const lines = [
    `iperf3 TCP ${seconds}s each way, ping RTT; ratios of a->b throughput`,
    `${"path".padEnd(14)}${"a->b Mbit/s".padStart(13)}${"b->a Mbit/s".padStart(13)}${"rtt ms".padStart(9)}${"vs wg-go".padStart(10)}${"vs podcrypt".padStart(13)}${"vs veth".padStart(9)}`,
  ];
  for (const r of rows) {
    if (r.error !== undefined) {
      lines.push(`${r.name.padEnd(14)}  failed: ${r.error}`);
      continue;
    }
    lines.push(
      `${r.name.padEnd(14)}${fmt(r.mbps).padStart(13)}${fmt(r.mbpsReverse).padStart(13)}${fmt(r.rttMs, 3).padStart(9)}` +
        `${ratio(r.mbps, wgo?.mbps).padStart(10)}${ratio(r.mbps, pwg?.mbps).padStart(13)}${ratio(r.mbps, veth?.mbps).padStart(9)}`,
    );
  }
  return lines.join("\n") + "\n";
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const rows = await runBench(options);
  if (options.json) {
    const wgo = rows.find((r) => r.name === "wireguard-go")?.mbps;
    const pwg = rows.find((r) => r.name === "podcrypt")?.mbps;
    const out = {
      seconds: options.seconds,
      pings: options.pings,
      rows: rows.map((r) => ({
        ...r,
        ratioToWireguardGo: r.mbps !== undefined && wgo ? r.mbps / wgo : undefined,
        ratioToPodcryptWireguard: r.mbps !== undefined && pwg ? r.mbps / pwg : undefined,
      })),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  } else {
    process.stdout.write(formatTable(rows, options.seconds));
  }
  if (rows.some((r) => r.error !== undefined)) process.exitCode = 1;
}

await main();
