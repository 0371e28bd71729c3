/**
 * Test-side setup for `podcrypt wireguard` interop tests: a NetnsLab pair of namespaces on a veth
 * underlay (IPv4 or IPv6) with a WireGuard end in each, configured through `wg`.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { statusSocketPath, type DaemonStatus } from "../../src/dataplane/wireguard-userspace/daemon.js";
import { runIn } from "../../src/platform/netns/netns.js";
import type { SpawnInNs } from "../support/daemon.js";
import type { NetnsLab } from "../support/netns.js";
import { configureEnd, startDaemon, wgKeyPair, type Impl, type TunnelEnd } from "../support/wireguard-lab.js";

/** Inner (tunnel) addresses of end a and b. */
export const INNER = { a: ["10.66.0.1/24", "fd66::1/64"], b: ["10.66.0.2/24", "fd66::2/64"] } as const;
/** Inner addresses without prefix length. */
export const INNER_IP = { a4: "10.66.0.1", b4: "10.66.0.2", a6: "fd66::1", b6: "fd66::2" } as const;

/** A running pair. */
export interface Pair {
  readonly a: TunnelEnd;
  readonly b: TunnelEnd;
  readonly daemons: ChildProcess[];
}

/** SIGTERMs daemons and waits for them to exit (so they remove their sockets), then SIGKILLs leftovers. */
export async function stopDaemons(daemons: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    daemons.map(
      (d) =>
        new Promise<void>((resolve) => {
          if (d.exitCode !== null || d.signalCode !== null) return resolve();
          const t = setTimeout(() => {
            d.kill("SIGKILL");
            resolve();
          }, 5000);
          d.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          d.kill("SIGTERM");
        }),
    ),
  );
}

/**
 * Two namespaces a, b on a veth underlay (`ipv6`: fd77::1/2, else 10.77.0.1/2), a daemon of
 * `implA`/`implB` in each, configured with `wg set`. `endpoints`: "both" gives each side the
 * other's endpoint; "a-only" gives only a the endpoint of b (so a must start the handshake,
 * and b learns a's endpoint from it); "b-only" the reverse.
 */
export async function setupPair(
  lab: NetnsLab,
  implA: Impl,
  implB: Impl,
  options: {
    ipv6?: boolean;
    endpoints?: "both" | "a-only" | "b-only";
    env?: Record<string, string>;
    /** Runs once both daemons are up, before either end is configured (e.g. to start a capture). */
    beforeConfigure?: (a: TunnelEnd, b: TunnelEnd) => Promise<void>;
  } = {},
): Promise<Pair> {
  const tag = randomBytes(2).toString("hex");
  const nsA = await lab.netns(`a${tag}`);
  const nsB = await lab.netns(`b${tag}`);
  const [ua, ub] = options.ipv6 ? ["fd77::1", "fd77::2"] : ["10.77.0.1", "10.77.0.2"];
  const plen = options.ipv6 ? 64 : 24;
  await lab.veth(nsA, "eth0", nsB, "eth0", [`${ua}/${plen}`], [`${ub}/${plen}`]);
  const spawn: SpawnInNs = (ns, cmd, args, o) => lab.spawn(ns, cmd, args, o);
  const a: TunnelEnd = {
    impl: implA,
    ns: nsA,
    ifname: `pc${lab.id}${tag}a`.slice(0, 15),
    keys: wgKeyPair(),
    underlay: ua,
    port: 51820,
    inner: INNER.a,
  };
  const b: TunnelEnd = {
    impl: implB,
    ns: nsB,
    ifname: `pc${lab.id}${tag}b`.slice(0, 15),
    keys: wgKeyPair(),
    underlay: ub,
    port: 51821,
    inner: INNER.b,
  };
  const started = await Promise.allSettled([
    startDaemon(spawn, implA, a.ns, a.ifname, options.env),
    startDaemon(spawn, implB, b.ns, b.ifname, options.env),
  ]);
  const daemons = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = started.find((r) => r.status === "rejected");
  if (failed !== undefined) {
    await stopDaemons(daemons);
    throw failed.reason;
  }
  try {
    await options.beforeConfigure?.(a, b);
  } catch (e) {
    await stopDaemons(daemons);
    throw e;
  }
  await configureEnd(a, b, { endpoint: options.endpoints !== "b-only" });
  await configureEnd(b, a, { endpoint: options.endpoints !== "a-only" });
  return { a, b, daemons };
}

/** `wg show IFNAME dump` peer lines parsed (the interface line is skipped; keys are public only). */
export async function wgDump(end: TunnelEnd): Promise<
  Array<{
    publicKey: string;
    endpoint: string;
    allowedIps: string;
    latestHandshake: number;
    rx: number;
    tx: number;
  }>
> {
  const out = await runIn(end.ns, "wg", ["show", end.ifname, "dump"]);
  return out
    .trim()
    .split("\n")
    .slice(1)
    .filter((l) => l !== "")
    .map((l) => {
      const f = l.split("\t");
      return {
        publicKey: f[0]!,
        endpoint: f[2]!,
        allowedIps: f[3]!,
        latestHandshake: Number(f[4]),
        rx: Number(f[5]),
        tx: Number(f[6]),
      };
    });
}

/** Whether the daemon's UAPI socket file exists. */
export function uapiSocketExists(ifname: string): boolean {
  return existsSync(`/var/run/wireguard/${ifname}.sock`);
}

/** Reads a daemon's JSON status socket directly (what `podcrypt wireguard-stats IFNAME --json` prints). */
export function readStatus(ifname: string): Promise<DaemonStatus> {
  return new Promise((resolve, reject) => {
    const c = connect(statusSocketPath(ifname));
    let text = "";
    c.setEncoding("utf8");
    c.on("data", (d: string) => (text += d));
    c.on("end", () => {
      try {
        resolve(JSON.parse(text) as DaemonStatus);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
    c.on("error", reject);
  });
}
