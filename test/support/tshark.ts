/** What the suites share about tshark: starting and stopping captures, reading fields back. */
import { execFile, type ChildProcess, type SpawnOptions } from "node:child_process";
import { promisify } from "node:util";
import { spawnIn } from "../../src/platform/netns/netns.js";
import type { SpawnInNs } from "./daemon.js";

const execFileP = promisify(execFile);

/**
 * Resolves once `t` (a tshark started with its stderr piped) says "Capturing on"; rejects when it
 * exits first or has not said so within `timeoutMs`, with what it printed. tshark says so a moment
 * before it really captures: callers send more than they need at first.
 */
export function tsharkCapturing(t: ChildProcess, timeoutMs = 30_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let err = "";
    const done = (e?: Error): void => {
      clearTimeout(timer);
      t.stderr!.off("data", onData);
      t.off("exit", onExit);
      if (e === undefined) resolve();
      else reject(e);
    };
    const onData = (d: Buffer): void => {
      err += d.toString();
      if (err.includes("Capturing on")) done();
    };
    const onExit = (code: number | null): void => done(new Error(`tshark exited with ${code}: ${err}`));
    const timer = setTimeout(() => done(new Error(`tshark did not start: ${err}`)), timeoutMs);
    t.stderr!.on("data", onData);
    t.once("exit", onExit);
  });
}

/** Where and what {@link startCapture} captures. */
export interface CaptureOptions {
  /** The interface inside the namespace; default eth0. */
  readonly iface?: string;
  /** A capture filter (pcap-filter syntax), such as "udp port 4500". */
  readonly filter: string;
  /**
   * What starts tshark in the namespace: a NetnsLab, which kills it at cleanup, or another owner
   * of the processes a suite starts; default `spawnIn` (the caller alone stops it).
   */
  readonly lab?: { readonly spawn: SpawnInNs };
}

/**
 * Starts tshark in `ns` writing what passes `o.iface` through `o.filter` to `pcap`, without name
 * resolution; resolves with the process once it captures (see {@link tsharkCapturing}), rejects
 * with its stderr when it does not start. Stop it with {@link stopCapture}.
 */
export async function startCapture(ns: string, pcap: string, o: CaptureOptions): Promise<ChildProcess> {
  const args = ["-n", "-i", o.iface ?? "eth0", "-f", o.filter, "-w", pcap];
  const options: SpawnOptions = { stdio: ["ignore", "ignore", "pipe"] };
  const t =
    o.lab === undefined ? spawnIn(ns, "tshark", args, options) : o.lab.spawn(ns, "tshark", args, options);
  await tsharkCapturing(t);
  return t;
}

/**
 * Stops a capture with SIGINT, on which tshark writes out what it holds, and resolves once it has
 * exited (at once when it already has).
 */
export async function stopCapture(t: ChildProcess): Promise<void> {
  if (t.exitCode !== null || t.signalCode !== null) return;
  const exited = new Promise((r) => t.once("exit", r));
  t.kill("SIGINT");
  await exited;
}

/**
 * The `fields` (tshark `-e` names) of every packet in the capture file `pcap`, read with `options`
 * (`-Y` display filter, `-d` decode-as, `-o` preferences such as ESP SAs): one row a packet in
 * capture order, one string a field ("" where the packet has none; tshark joins a field's several
 * values with ","). Large captures are fine (up to 256 MiB of fields, 180 s). The options may hold
 * SA keys: a failure reports tshark's exit code and stderr only, never the command line.
 */
export async function tsharkFields(
  pcap: string,
  options: readonly string[],
  fields: readonly string[],
): Promise<string[][]> {
  const { stdout } = await execFileP(
    "tshark",
    ["-n", "-r", pcap, ...options, "-T", "fields", "-E", "separator=|", ...fields.flatMap((f) => ["-e", f])],
    { maxBuffer: 256 * 1024 * 1024, timeout: 180_000 },
  ).catch((e: { code?: number | string; stderr?: string }) => {
    throw new Error(`tshark failed (${e.code}) reading ${pcap}: ${(e.stderr ?? "").slice(0, 2000)}`);
  });
  if (stdout === "") return [];
  return stdout
    .replace(/\n$/, "")
    .split("\n")
    .map((l) => l.split("|"));
}

/**
 * The tshark options that decrypt ESP with the SA lines `podcrypt debug esp-sa --tshark` prints
 * (rows of tshark's esp_sa table, keys included), verifying every packet's ICV: with them
 * `esp.icv_good` is 1 for a packet whose key is right.
 */
export function espSaOptions(lines: readonly string[]): string[] {
  return [
    "-o",
    "esp.enable_encryption_decode:TRUE",
    "-o",
    "esp.enable_authentication_check:TRUE",
    ...lines.flatMap((l) => ["-o", `uat:esp_sa:${l}`]),
  ];
}

/**
 * The ESP packets of the capture file `pcap` by (SPI, sequence number), the GCM nonce of their
 * SA's key: how many came from `src` (an outer source address), how many distinct pairs the capture
 * holds, and every pair seen more than once (each repeat listed).
 */
export async function espSequences(
  pcap: string,
  src: string,
): Promise<{ fromSrc: number; distinct: number; repeated: string[] }> {
  const rows = await tsharkFields(pcap, [], ["ip.src", "esp.spi", "esp.sequence"]);
  const seen = new Set<string>();
  const repeated: string[] = [];
  let fromSrc = 0;
  for (const [from, spi, seq] of rows) {
    if (spi === undefined || spi === "" || seq === undefined || seq === "") continue;
    if (from === src) fromSrc++;
    const k = `${spi}|${seq}`;
    if (seen.has(k)) repeated.push(k);
    seen.add(k);
  }
  return { fromSrc, distinct: seen.size, repeated };
}
