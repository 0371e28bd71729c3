/**
 * `npm run bench`: the userspace data planes side by side, in one run, each between two fresh
 * network namespaces joined by a veth pair:
 *   - podcrypt-wg   `podcrypt wireguard -f` on both ends, configured with `wg`,
 *   - podcrypt-esp  `podcrypt esp -f` on both ends, per-pair SAs as the agent derives them,
 *   - wireguard-go  Debian's, configured the same way as podcrypt-wg,
 *   - veth          the plaintext underlay itself (the ceiling).
 *
 * Figures per row: iperf3 TCP one stream and four streams (-P 4), each way; UDP packets/s received
 * at 64-byte and 1400-byte IP packets (iperf3 -u -b 0, UDP payload = size - 28); ping min / avg /
 * p99; CPU seconds per GB moved during the one-stream a->b run, counting both tunnel daemons
 * (/proc/PID/stat) and both iperf3 ends (iperf3's own CPU report), so the veth row is what the
 * TCP endpoints alone cost.
 *
 * Every row's tunnel is brought up first; the pings then go round the rows in turns of a few
 * packets (so a change in the machine's load hits every row alike), and each throughput test goes
 * round the rows `--rounds` times, one row at a time (never concurrently: the machine has two
 * shared cores), the median kept. Read ratios within one run, not absolutes across runs.
 *
 *   node dist/bench/run.js [--quick] [--seconds S] [--rounds R] [--pings N] [--interval SEC]
 *       [--only podcrypt-wg,podcrypt-esp,wireguard-go,veth] [--json FILE] [--svg FILE] [--markdown FILE]
 *
 * Defaults: 3 s per iperf3 test, each test three times round the rows (the median is reported),
 * 300 pings 20 ms apart (about five minutes in all); `--quick`: 2 s, one round, 100 pings (about a
 * minute). All traffic stays inside namespaces this run makes (pct-<id>-*), removed at the
 * end, on failure and on Ctrl-C. A row that fails reports its error and the others still run; the
 * exit status is non-zero then.
 */
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { espPair, installEpoch } from "../test/support/esp-lab.js";
import { NetnsGroup } from "../test/support/netns.js";
import {
  configureEnd,
  pingUntilUp,
  startDaemon,
  wgKeyPair,
  type TunnelEnd,
} from "../test/support/wireguard-lab.js";
import { runIn } from "../src/platform/netns/netns.js";
import { renderChart, type ChartPanel } from "./chart.js";
import { loadAverage, machine, processCpuSeconds, toolVersion } from "./machine.js";

const ROWS = ["podcrypt-wg", "podcrypt-esp", "wireguard-go", "veth"] as const;
type RowName = (typeof ROWS)[number];

/** IP packet sizes of the UDP packets/s tests. */
const UDP_SIZES = [64, 1400] as const;
/** IPv4 + UDP headers: the iperf3 payload is the IP packet size minus this. */
const IP_UDP_HEADERS = 28;
/** Pings per turn when going round the rows. */
const PING_TURN = 20;

/** Options of one run. */
export interface BenchOptions {
  readonly seconds: number;
  readonly pings: number;
  readonly interval: number;
  /** Times each throughput test goes round the rows; the median is reported. */
  readonly rounds: number;
  readonly only: ReadonlySet<RowName>;
}

/** Ping round-trip figures, ms. */
export interface PingFigures {
  readonly min: number;
  readonly avg: number;
  readonly p99: number;
  readonly count: number;
}

/** One row of the result; a figure is absent when its test failed (see `errors`). */
export interface BenchRow {
  readonly name: RowName;
  /** iperf3 TCP Mbit/s: one stream a->b, b->a; four streams a->b, b->a. */
  tcp1?: number;
  tcp1Reverse?: number;
  tcp4?: number;
  tcp4Reverse?: number;
  /** UDP packets/s received, a->b, by IP packet size. */
  udpPps: Partial<Record<(typeof UDP_SIZES)[number], number>>;
  ping?: PingFigures;
  /** CPU seconds per GB (1e9 bytes) moved in a one-stream a->b test: tunnel daemons + iperf3 ends. */
  cpuSecondsPerGB?: number;
  readonly errors: string[];
}

/** The whole result, as `--json` writes it. */
export interface BenchResult {
  readonly date: string;
  readonly machine: Record<string, string>;
  readonly options: { seconds: number; rounds: number; pings: number; interval: number };
  readonly loadBefore: string;
  readonly loadAfter: string;
  readonly rows: BenchRow[];
}

function usage(): string {
  return (
    `usage: npm run bench -- [--quick] [--seconds S] [--rounds R] [--pings N] [--interval SEC] [--only ${ROWS.join(",")}]\n` +
    `                        [--json FILE] [--svg FILE] [--markdown FILE]\n`
  );
}

function parseArgs(argv: string[]): BenchOptions & { json?: string; svg?: string; markdown?: string } {
  const known = new Set([
    "--quick",
    "--seconds",
    "--pings",
    "--interval",
    "--only",
    "--json",
    "--svg",
    "--markdown",
  ]);
  const valued = new Set([
    "--seconds",
    "--pings",
    "--interval",
    "--rounds",
    "--only",
    "--json",
    "--svg",
    "--markdown",
  ]);
  if (argv.includes("--help")) {
    process.stdout.write(usage());
    process.exit(0);
  }
  for (let i = 0; i < argv.length; i++) {
    if (!known.has(argv[i]!)) throw new Error(`unknown argument ${argv[i]}\n${usage()}`);
    if (valued.has(argv[i]!)) {
      if (argv[i + 1] === undefined) throw new Error(`${argv[i]} needs a value`);
      i++;
    }
  }
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes("--quick");
  const seconds = Number(value("--seconds") ?? (quick ? 2 : 3));
  const pings = Number(value("--pings") ?? (quick ? 100 : 300));
  const interval = Number(value("--interval") ?? 0.02);
  const rounds = Number(value("--rounds") ?? (quick ? 1 : 3));
  const only = new Set<RowName>();
  for (const o of (value("--only") ?? ROWS.join(",")).split(",")) {
    if (!(ROWS as readonly string[]).includes(o))
      throw new Error(`--only: unknown row ${o} (${ROWS.join(", ")})`);
    only.add(o as RowName);
  }
  if (!(seconds > 0) || !Number.isInteger(pings) || pings < 1 || !(interval >= 0.002))
    throw new Error("--seconds must be positive, --pings a positive integer, --interval at least 0.002");
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds must be a positive integer");
  return {
    seconds,
    rounds,
    pings,
    interval,
    only,
    json: value("--json"),
    svg: value("--svg"),
    markdown: value("--markdown"),
  };
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second: number; bytes: number; seconds: number };
    sum?: { packets: number; lost_packets: number; seconds: number };
    cpu_utilization_percent?: { host_total: number; remote_total: number };
  };
}

/** One running row: its namespaces, the two ends, the target address and the daemons' pids. */
class Row {
  readonly lab = new NetnsGroup();
  a = "";
  b = "";
  target = "";
  readonly daemons: ChildProcess[] = [];
  private readonly disposers: Array<() => void> = [];

  constructor(readonly name: RowName) {}

  /** Brings the row's path up and waits until a ping crosses it. */
  async up(): Promise<void> {
    if (this.name === "podcrypt-esp") {
      const p = await espPair(this.lab, "e");
      this.disposers.push(() => p.dispose());
      this.daemons.push(p.a.daemon, p.b.daemon);
      await installEpoch(p, 1, true);
      [this.a, this.b, this.target] = [p.a.ns, p.b.ns, p.b.inner];
    } else {
      const tag = this.name === "veth" ? "v" : this.name === "wireguard-go" ? "g" : "p";
      this.a = await this.lab.netns(`${tag}a`);
      this.b = await this.lab.netns(`${tag}b`);
      await this.lab.veth(this.a, "eth0", this.b, "eth0", ["10.77.0.1/24"], ["10.77.0.2/24"]);
      this.target = "10.77.0.2";
      if (this.name !== "veth")
        await this.wireguard(this.name === "podcrypt-wg" ? "podcrypt" : "wireguard-go", tag);
    }
    await pingUntilUp(this.a, this.target);
  }

  private async wireguard(impl: "podcrypt" | "wireguard-go", tag: string): Promise<void> {
    const end = (ns: string, side: "a" | "b", n: 1 | 2): TunnelEnd => ({
      impl,
      ns,
      ifname: `pc${this.lab.id}${tag}${side}`,
      keys: wgKeyPair(),
      underlay: `10.77.0.${n}`,
      port: 51819 + n,
      inner: [`10.66.0.${n}/24`],
    });
    const ends = [end(this.a, "a", 1), end(this.b, "b", 2)] as const;
    for (const e of ends)
      this.daemons.push(await startDaemon(this.lab.spawn.bind(this.lab), impl, e.ns, e.ifname));
    await configureEnd(ends[0], ends[1]);
    await configureEnd(ends[1], ends[0]);
    this.target = "10.66.0.2";
  }

  /** `count` pings `interval` s apart; the round-trip times in ms (lost ones left out). */
  async pings(count: number, interval: number): Promise<number[]> {
    const out = await runIn(
      this.a,
      "ping",
      ["-n", "-c", String(count), "-i", String(interval), "-W", "2", this.target],
      {
        timeoutMs: (count * interval + 15) * 1000,
      },
    ).catch((e: unknown) => (e as { cause?: { stdout?: string } }).cause?.stdout ?? "");
    return [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  }

  /** Runs iperf3 from a to the server in b with `args`; the parsed JSON and the daemons' CPU seconds used meanwhile. */
  async iperf(args: string[], seconds: number): Promise<{ r: IperfJson; daemonCpu: number }> {
    // A server that is not listening within 10 s (a loaded machine) is replaced once.
    let server = await this.iperfServer();
    if (server === undefined) server = await this.iperfServer();
    if (server === undefined) throw new Error("iperf3 server did not start");
    try {
      const before = this.daemons.reduce((s, d) => s + (processCpuSeconds(d.pid) ?? 0), 0);
      const out = await runIn(this.a, "iperf3", ["-c", this.target, "-t", String(seconds), "-J", ...args], {
        timeoutMs: (seconds + 30) * 1000,
      }).catch((e: unknown) => {
        const stdout = ((e as { cause?: { stdout?: string } }).cause?.stdout ?? "").trim();
        if (stdout.startsWith("{")) return stdout;
        throw e;
      });
      const daemonCpu = this.daemons.reduce((s, d) => s + (processCpuSeconds(d.pid) ?? 0), 0) - before;
      const r = JSON.parse(out) as IperfJson;
      if (r.error !== undefined) throw new Error(`iperf3 ${args.join(" ")}: ${r.error}`);
      return { r, daemonCpu };
    } finally {
      server.kill("SIGKILL");
    }
  }

  /** A one-test iperf3 server in b, once it listens; undefined (and killed) when it does not within 10 s. */
  private async iperfServer(): Promise<ChildProcess | undefined> {
    const server = this.lab.spawn(this.b, "iperf3", ["-s", "-1", "-B", this.target], { stdio: "ignore" });
    const deadline = Date.now() + 10_000;
    while (!/:5201\b/.test(await runIn(this.b, "ss", ["-tln"]))) {
      if (Date.now() > deadline || server.exitCode !== null) {
        server.kill("SIGKILL");
        return undefined;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return server;
  }

  async down(): Promise<void> {
    await this.lab.cleanup(300);
    for (const d of this.disposers.splice(0)) d();
  }
}

const errorText = (e: unknown): string =>
  e instanceof Error ? e.message.split("\n")[0]!.slice(0, 300) : String(e);

/** The p-quantile (0..1) of sorted values, nearest rank. */
function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Measures every selected row; see the file comment for what and in which order. */
export async function runBench(options: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const rows = ROWS.filter((n) => options.only.has(n)).map((n) => new Row(n));
  const results = new Map<RowName, BenchRow>(
    rows.map((r) => [r.name, { name: r.name, udpPps: {}, errors: [] }]),
  );
  const onSignal = (): void =>
    void Promise.allSettled(rows.map((r) => r.down())).then(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const live: Row[] = [];
    for (const row of rows) {
      log(`${row.name}: up`);
      try {
        await row.up();
        live.push(row);
      } catch (e) {
        results.get(row.name)!.errors.push(`up: ${errorText(e)}`);
      }
    }
    // Warm every path, then go round the rows a turn at a time.
    for (const row of live) await row.pings(10, options.interval);
    log(`ping: ${options.pings} per row, ${options.interval * 1000} ms apart, in turns of ${PING_TURN}`);
    const rtts = new Map<Row, number[]>(live.map((r) => [r, []]));
    for (let done = 0; done < options.pings; done += PING_TURN) {
      for (const row of live)
        rtts
          .get(row)!
          .push(...(await row.pings(Math.min(PING_TURN, options.pings - done), options.interval)));
    }
    for (const row of live) {
      const t = rtts.get(row)!.sort((x, y) => x - y);
      const res = results.get(row.name)!;
      if (t.length === 0) res.errors.push("ping: no answer");
      else
        res.ping = {
          min: t[0]!,
          avg: t.reduce((s, x) => s + x, 0) / t.length,
          p99: quantile(t, 0.99),
          count: t.length,
        };
    }
    // Each test goes round the rows `rounds` times (the median is kept), so a burst of load from
    // elsewhere on the machine does not decide one row's figure alone.
    const s = options.seconds;
    const mbps = (r: IperfJson): number => {
      const bps = r.end?.sum_received?.bits_per_second;
      if (bps === undefined) throw new Error("no result");
      return bps / 1e6;
    };
    /** CPU seconds per GB of a one-stream run: both daemons and both iperf3 ends. */
    const cpuPerGB = (r: IperfJson, daemonCpu: number): number | undefined => {
      const gb = (r.end?.sum_received?.bytes ?? 0) / 1e9;
      const cpu = r.end?.cpu_utilization_percent;
      if (!(gb > 0) || cpu === undefined) return undefined;
      const seconds = r.end?.sum_received?.seconds ?? s;
      return (daemonCpu + ((cpu.host_total + cpu.remote_total) / 100) * seconds) / gb;
    };
    const median = (v: number[]): number | undefined =>
      v.length === 0 ? undefined : v.sort((x, y) => x - y)[Math.floor((v.length - 1) / 2)];
    const tests: ReadonlyArray<{
      what: string;
      args: string[];
      value: (r: IperfJson) => number;
      store: (res: BenchRow, v: number) => void;
    }> = [
      { what: "tcp 1 stream", args: [], value: mbps, store: (res, v) => void (res.tcp1 = v) },
      {
        what: "tcp 1 stream reverse",
        args: ["-R"],
        value: mbps,
        store: (res, v) => void (res.tcp1Reverse = v),
      },
      { what: "tcp 4 streams", args: ["-P", "4"], value: mbps, store: (res, v) => void (res.tcp4 = v) },
      {
        what: "tcp 4 streams reverse",
        args: ["-P", "4", "-R"],
        value: mbps,
        store: (res, v) => void (res.tcp4Reverse = v),
      },
      ...UDP_SIZES.map((size) => ({
        what: `udp ${size} B`,
        args: ["-u", "-b", "0", "-l", String(size - IP_UDP_HEADERS)],
        value: (r: IperfJson): number => {
          const sum = r.end?.sum;
          if (sum === undefined) throw new Error("no result");
          return (sum.packets - sum.lost_packets) / sum.seconds;
        },
        store: (res: BenchRow, v: number) => void (res.udpPps[size] = v),
      })),
    ];
    for (const t of tests) {
      const values = new Map<Row, number[]>(live.map((r) => [r, []]));
      const cpu = new Map<Row, number[]>(live.map((r) => [r, []]));
      for (let round = 0; round < options.rounds; round++) {
        for (const row of live) {
          log(`${row.name}: ${t.what}${options.rounds > 1 ? ` (round ${round + 1}/${options.rounds})` : ""}`);
          try {
            const { r, daemonCpu } = await row.iperf(t.args, s);
            values.get(row)!.push(t.value(r));
            const c = t.args.length === 0 ? cpuPerGB(r, daemonCpu) : undefined;
            if (c !== undefined) cpu.get(row)!.push(c);
          } catch (e) {
            results.get(row.name)!.errors.push(`${t.what}: ${errorText(e)}`);
          }
        }
      }
      for (const row of live) {
        const res = results.get(row.name)!;
        const v = median(values.get(row)!);
        if (v !== undefined) t.store(res, v);
        const c = median(cpu.get(row)!);
        if (c !== undefined) res.cpuSecondsPerGB = c;
      }
    }
  } finally {
    await Promise.allSettled(rows.map((r) => r.down()));
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
  return [...results.values()];
}

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined
    ? "-"
    : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

const COLUMNS: ReadonlyArray<{ head: string; cell: (r: BenchRow) => string }> = [
  { head: "TCP 1 a->b", cell: (r) => fmt(r.tcp1) },
  { head: "TCP 1 b->a", cell: (r) => fmt(r.tcp1Reverse) },
  { head: "TCP 4 a->b", cell: (r) => fmt(r.tcp4) },
  { head: "TCP 4 b->a", cell: (r) => fmt(r.tcp4Reverse) },
  { head: "UDP 64 B pps", cell: (r) => fmt(r.udpPps[64]) },
  { head: "UDP 1400 B pps", cell: (r) => fmt(r.udpPps[1400]) },
  { head: "ping min", cell: (r) => fmt(r.ping?.min, 3) },
  { head: "ping avg", cell: (r) => fmt(r.ping?.avg, 3) },
  { head: "ping p99", cell: (r) => fmt(r.ping?.p99, 3) },
  { head: "CPU s/GB", cell: (r) => fmt(r.cpuSecondsPerGB, 2) },
];

/** Ratios the acceptance criteria read, from one run. */
export function ratios(rows: readonly BenchRow[]): Record<string, number | undefined> {
  const get = (n: RowName): BenchRow | undefined => rows.find((r) => r.name === n);
  const div = (x: number | undefined, y: number | undefined): number | undefined =>
    x === undefined || y === undefined || y === 0 ? undefined : x / y;
  const wg = get("podcrypt-wg");
  return {
    "podcrypt-wg / wireguard-go, TCP 1 stream": div(wg?.tcp1, get("wireguard-go")?.tcp1),
    "podcrypt-esp / podcrypt-wg, TCP 1 stream": div(get("podcrypt-esp")?.tcp1, wg?.tcp1),
    "podcrypt-wg / wireguard-go, ping avg": div(wg?.ping?.avg, get("wireguard-go")?.ping?.avg),
  };
}

/** The human table (Mbit/s, packets/s, ms, CPU s/GB), the ratios, and every error. */
export function formatTable(rows: readonly BenchRow[]): string {
  const widths = COLUMNS.map((c) => Math.max(c.head.length, ...rows.map((r) => c.cell(r).length)) + 2);
  const lines = [
    "path".padEnd(14) + COLUMNS.map((c, i) => c.head.padStart(widths[i]!)).join(""),
    ...rows.map((r) => r.name.padEnd(14) + COLUMNS.map((c, i) => c.cell(r).padStart(widths[i]!)).join("")),
    "",
    ...Object.entries(ratios(rows)).map(([k, v]) => `${k}: ${v === undefined ? "-" : v.toFixed(2) + "x"}`),
  ];
  for (const r of rows) for (const e of r.errors) lines.push(`${r.name} failed: ${e}`);
  return lines.join("\n") + "\n";
}

/** The same table in Markdown, with the machine and the ratios, for docs/benchmarks.md. */
export function formatMarkdown(result: BenchResult, svgPath?: string): string {
  const m = result.machine;
  const lines = [
    `Run ${result.date} on ${m["cpu"]} (${m["cores"]} cores, shared), kernel ${m["kernel"]}, Node ${m["node"]}, ` +
      `${m["wireguard-go"]}, ${m["iperf3"]}, podcrypt ${m["podcrypt"]}. ` +
      `iperf3 ${result.options.seconds} s per test, median of ${result.options.rounds} rounds, ${result.options.pings} pings ${result.options.interval * 1000} ms apart. ` +
      `Load average before: ${result.loadBefore}; after: ${result.loadAfter}.`,
    "",
    `| path | ${COLUMNS.map((c) => c.head).join(" | ")} |`,
    `| --- | ${COLUMNS.map(() => "---:").join(" | ")} |`,
    ...result.rows.map((r) => `| ${r.name} | ${COLUMNS.map((c) => c.cell(r)).join(" | ")} |`),
    "",
    "TCP in Mbit/s, UDP in packets/s received (IP packet size), ping in ms, CPU in seconds per GB moved " +
      "(both tunnel daemons and both iperf3 ends, one-stream a->b tests).",
    "",
    ...Object.entries(ratios(result.rows)).map(
      ([k, v]) => `- ${k}: ${v === undefined ? "-" : v.toFixed(2) + "x"}`,
    ),
  ];
  for (const r of result.rows) for (const e of r.errors) lines.push(`- ${r.name} failed: ${e}`);
  if (svgPath !== undefined) lines.push("", `![data plane benchmark](${svgPath})`);
  return lines.join("\n") + "\n";
}

/** The chart's panels from the rows. */
export function chartPanels(rows: readonly BenchRow[]): ChartPanel[] {
  const bars = (f: (r: BenchRow) => number | undefined): ChartPanel["bars"] =>
    rows.map((r) => ({ label: r.name, value: f(r), ceiling: r.name === "veth" }));
  return [
    { title: "TCP, 1 stream a->b", unit: "Mbit/s", better: "higher", bars: bars((r) => r.tcp1) },
    { title: "TCP, 1 stream b->a", unit: "Mbit/s", better: "higher", bars: bars((r) => r.tcp1Reverse) },
    { title: "TCP, 4 streams a->b", unit: "Mbit/s", better: "higher", bars: bars((r) => r.tcp4) },
    { title: "TCP, 4 streams b->a", unit: "Mbit/s", better: "higher", bars: bars((r) => r.tcp4Reverse) },
    {
      title: "UDP, 64-byte packets",
      unit: "packets/s received",
      better: "higher",
      bars: bars((r) => r.udpPps[64]),
    },
    {
      title: "UDP, 1400-byte packets",
      unit: "packets/s received",
      better: "higher",
      bars: bars((r) => r.udpPps[1400]),
    },
    { title: "ping average", unit: "ms", better: "lower", bars: bars((r) => r.ping?.avg), digits: 3 },
    { title: "ping p99", unit: "ms", better: "lower", bars: bars((r) => r.ping?.p99), digits: 3 },
    {
      title: "CPU per GB moved",
      unit: "CPU seconds",
      better: "lower",
      bars: bars((r) => r.cpuSecondsPerGB),
      digits: 2,
    },
  ];
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const loadBefore = loadAverage();
  const date = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const rows = await runBench(options, (line) => process.stderr.write(`bench: ${line}\n`));
  const result: BenchResult = {
    date,
    machine: machine({
      "wireguard-go": toolVersion("wireguard-go", ["--version"]),
      iperf3: toolVersion("iperf3", ["--version"]).replace(/ \(.*\)$/, ""),
    }),
    options: {
      seconds: options.seconds,
      rounds: options.rounds,
      pings: options.pings,
      interval: options.interval,
    },
    loadBefore,
    loadAfter: loadAverage(),
    rows,
  };
  process.stdout.write(
    `${result.date}, load average ${result.loadBefore} -> ${result.loadAfter}\n` + formatTable(rows),
  );
  if (options.json !== undefined)
    writeFileSync(options.json, JSON.stringify({ ...result, ratios: ratios(rows) }, null, 2) + "\n");
  if (options.svg !== undefined) {
    const subtitle = `${result.date} · ${result.machine["cpu"]} (${result.machine["cores"]} cores, shared) · load ${result.loadBefore} · ${result.machine["wireguard-go"]} · podcrypt ${result.machine["podcrypt"]}`;
    writeFileSync(
      options.svg,
      renderChart("podcrypt userspace data planes, one run", subtitle, chartPanels(rows)),
    );
  }
  if (options.markdown !== undefined)
    writeFileSync(
      options.markdown,
      formatMarkdown(result, options.svg === undefined ? undefined : basename(options.svg)),
    );
  if (rows.some((r) => r.errors.length > 0)) process.exitCode = 1;
}

await main();
