/**
 * Two WireGuard ends in network namespaces, each either podcrypt (`podcrypt wireguard -f`) or
 * Debian's wireguard-go, configured the same way through `wg` — the tool users have. Shared by the
 * interop tests (test/wireguard/*.test.ts) and the benchmark (bench/run.ts); it takes a spawn
 * function and does not manage namespaces, so both a NetnsLab and the bench can own them.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runIn } from "../../src/platform/netns/netns.js";
import { projectRoot } from "../../src/paths.js";
import { spawnDaemon, type SpawnInNs } from "./daemon.js";

/** Which implementation runs an end. */
export type Impl = "podcrypt" | "wireguard-go";

/** A key pair in wg's base64 form. */
export interface WgKeyPair {
  readonly privateKey: string;
  readonly publicKey: string;
}

/** Makes a key pair with `wg genkey` / `wg pubkey`. */
export function wgKeyPair(): WgKeyPair {
  const privateKey = execFileSync("wg", ["genkey"]).toString().trim();
  const publicKey = execFileSync("wg", ["pubkey"], { input: privateKey }).toString().trim();
  return { privateKey, publicKey };
}

/**
 * The command that runs the podcrypt CLI: compiled `bin/podcrypt` when this file runs from dist/,
 * the TypeScript sources through tsx otherwise (so `npx tsx --test` tests the working tree).
 */
export function podcryptCommand(): { cmd: string; args: string[] } {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".js")) return { cmd: process.execPath, args: [join(projectRoot(), "bin", "podcrypt")] };
  const runner = join(projectRoot(), "test", "wireguard", "run-cli.ts");
  return { cmd: process.execPath, args: ["--import", "tsx", runner] };
}

/** Waits until `wg show IFNAME` answers in `ns` (the UAPI socket serves). */
export async function waitForUapi(ns: string, ifname: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (existsSync(`/var/run/wireguard/${ifname}.sock`)) {
      try {
        await runIn(ns, "wg", ["show", ifname]);
        return;
      } catch (e) {
        last = e;
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`UAPI of ${ifname} in ${ns} did not come up: ${String(last)}`);
}

/**
 * Starts a daemon for `ifname` in the foreground inside `ns` and waits for its UAPI socket.
 * `env` adds environment variables (for podcrypt: e.g. timer overrides, log level).
 */
export async function startDaemon(
  spawn: SpawnInNs,
  impl: Impl,
  ns: string,
  ifname: string,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const { cmd, args } =
    impl === "podcrypt"
      ? (() => {
          const c = podcryptCommand();
          return { cmd: c.cmd, args: [...c.args, "wireguard", "-f", ifname] };
        })()
      : { cmd: "wireguard-go", args: ["-f", ifname] };
  const d = spawnDaemon(spawn, ns, cmd, args, env);
  try {
    await waitForUapi(ns, ifname);
  } catch (e) {
    throw new Error(
      `${impl} ${ifname}: ${d.exited() ?? "running"}; stderr: ${d.stderr.join("").slice(-2000)}`,
      {
        cause: e,
      },
    );
  }
  return d.child;
}

/** `wg set IFNAME ...` in `ns`, with the private key (if any) passed on stdin, never in argv. */
export async function wgSet(
  ns: string,
  ifname: string,
  args: readonly string[],
  privateKey?: string,
): Promise<void> {
  if (privateKey === undefined) {
    await runIn(ns, "wg", ["set", ifname, ...args]);
    return;
  }
  // Node's stdin pipe is a socket, which wg cannot fopen(); `<(cat)` turns it into a real pipe.
  await runIn(ns, "bash", ["-c", 'wg set "$0" private-key <(cat) "$@"', ifname, ...args], {
    input: privateKey + "\n",
  });
}

/** One end of a tunnel. */
export interface TunnelEnd {
  readonly impl: Impl;
  readonly ns: string;
  readonly ifname: string;
  readonly keys: WgKeyPair;
  /** Underlay address of this end (the peer's endpoint host). */
  readonly underlay: string;
  readonly port: number;
  /** Tunnel addresses with prefix length, e.g. ["10.66.0.1/24", "fd66::1/64"]. */
  readonly inner: readonly string[];
}

/** Formats `host:port` as wg expects it (brackets for IPv6). */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

const hostPrefix = (cidr: string): string => {
  const addr = cidr.slice(0, cidr.indexOf("/"));
  return `${addr}/${addr.includes(":") ? 128 : 32}`;
};

/**
 * Configures `a` to talk to `b` with `wg set` and brings the interface up with its inner
 * addresses. `endpoint: false` leaves out the peer's endpoint (so only the other side can start).
 */
export async function configureEnd(
  a: TunnelEnd,
  b: TunnelEnd,
  options: { endpoint?: boolean; keepalive?: number } = {},
): Promise<void> {
  const peerArgs = [
    "peer",
    b.keys.publicKey,
    "allowed-ips",
    b.inner.map(hostPrefix).join(","),
    ...(options.endpoint === false ? [] : ["endpoint", hostPort(b.underlay, b.port)]),
    ...(options.keepalive !== undefined ? ["persistent-keepalive", String(options.keepalive)] : []),
  ];
  await wgSet(a.ns, a.ifname, ["listen-port", String(a.port), ...peerArgs], a.keys.privateKey);
  for (const addr of a.inner)
    await runIn(a.ns, "ip", ["addr", "add", addr, "dev", a.ifname, ...(addr.includes(":") ? ["nodad"] : [])]);
  await runIn(a.ns, "ip", ["link", "set", a.ifname, "up"]);
}

/** Pings `target` from `ns`; resolves with the average RTT in ms, rejects when nothing came back. */
export async function ping(ns: string, target: string, count = 5, intervalS = 0.2): Promise<number> {
  const out = await runIn(ns, "ping", ["-c", String(count), "-i", String(intervalS), "-W", "2", target], {
    timeoutMs: (count * intervalS + 10) * 1000,
  });
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  if (m === null) throw new Error(`no RTT in ping output: ${out}`);
  return Number(m[1]);
}

/** Pings until one answer arrives (a handshake may be under way); rejects after `timeoutMs`. */
export async function pingUntilUp(ns: string, target: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await runIn(ns, "ping", ["-c", "1", "-W", "1", target]);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
  }
}

/**
 * iperf3 TCP from `clientNs` to a server started in `serverNs` bound to `target`; Mbit/s received.
 * `reverse` makes the server send.
 */
export async function iperf3(
  spawn: SpawnInNs,
  clientNs: string,
  serverNs: string,
  target: string,
  seconds: number,
  reverse = false,
): Promise<number> {
  const server = spawn(serverNs, "iperf3", ["-s", "-1", "-B", target], { stdio: "ignore" });
  try {
    // Wait until the server listens (a loaded machine can take seconds to start it).
    const deadline = Date.now() + 20_000;
    while (!/:5201\b/.test(await runIn(serverNs, "ss", ["-tln"]))) {
      if (Date.now() > deadline) throw new Error("iperf3 server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
    const out = await runIn(
      clientNs,
      "iperf3",
      ["-c", target, "-t", String(seconds), "-J", ...(reverse ? ["-R"] : [])],
      { timeoutMs: (seconds + 30) * 1000 },
    ).catch((e: unknown) => {
      // iperf3 -J reports failures in its JSON on stdout
      const stdout = ((e as { cause?: { stdout?: string } }).cause?.stdout ?? "").trim();
      if (stdout.startsWith("{")) return stdout;
      throw e;
    });
    const r = JSON.parse(out) as { error?: string; end?: { sum_received?: { bits_per_second: number } } };
    const bps = r.end?.sum_received?.bits_per_second;
    if (bps === undefined)
      throw new Error(`iperf3 to ${target}${reverse ? " (-R)" : ""}: ${r.error ?? "no result"}`);
    return bps / 1e6;
  } finally {
    server.kill("SIGKILL");
  }
}
