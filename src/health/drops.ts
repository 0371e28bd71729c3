/**
 * Dropped packets by reason, where the node's data planes report them:
 * - podcrypt's userspace WireGuard daemons: their JSON status sockets (data path and core drops,
 *   `podcrypt wireguard-stats`);
 * - podcrypt's userspace ESP daemon: its control socket's `get` (codec and data path drops);
 * - kernel XFRM: the node's /proc/net/xfrm_stat counters (per network namespace).
 * Kernel WireGuard keeps no drop counters, so it reports none. Sockets that are not there (the
 * daemon of that generation is not running) are skipped; a scrape never waits more than about 2 s.
 */
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import type { DaemonStatus } from "../dataplane/wireguard-userspace/daemon.js";

/** One counter: packets `dataplane` dropped on `ifname` for `reason`. */
export interface DropSample {
  readonly dataplane: "wireguard-userspace" | "esp-userspace" | "xfrm";
  readonly ifname: string;
  /** Where the drop was counted: `datapath`, `core` (WireGuard handshakes), `codec` (ESP), `kernel`. */
  readonly layer: string;
  readonly reason: string;
  readonly packets: number;
}

/** Which data planes run on the node, and the interface names they use. */
export interface DropSources {
  /** WireGuard generation interfaces of the userspace data plane (slot 0 and 1), if it is the one in use. */
  wireguardUserspace: readonly string[];
  /** The userspace ESP interface, if that data plane is in use. */
  espUserspace: string | undefined;
  /** Read /proc/net/xfrm_stat (kernel XFRM in use). */
  kernelXfrm: boolean;
}

const TIMEOUT_MS = 2000;

/** The JSON document a unix socket answers with before closing it. */
function readSocketJson(path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let text = "";
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`no answer from ${path} in ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    c.setEncoding("utf8");
    c.on("data", (d: string) => (text += d));
    c.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text) as unknown);
      } catch (e) {
        reject(e as Error);
      }
    });
    c.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const entries = (r: Readonly<Partial<Record<string, number>>>): [string, number][] =>
  Object.entries(r).filter((e): e is [string, number] => typeof e[1] === "number");

/** Drop counters of one userspace WireGuard daemon, or none when it does not answer. */
async function wireguardDrops(ifname: string): Promise<DropSample[]> {
  const { statusSocketPath } = await import("../dataplane/wireguard-userspace/daemon.js");
  const s = (await readSocketJson(statusSocketPath(ifname)).catch(() => undefined)) as
    DaemonStatus | undefined;
  if (s === undefined || typeof s !== "object" || s.drops === undefined) return [];
  const sample =
    (layer: string) =>
    ([reason, packets]: [string, number]): DropSample => ({
      dataplane: "wireguard-userspace",
      ifname,
      layer,
      reason,
      packets,
    });
  return [...entries(s.drops).map(sample("datapath")), ...entries(s.coreDrops ?? {}).map(sample("core"))];
}

/** Drop counters of the userspace ESP daemon, or none when it does not answer. */
async function espDrops(ifname: string): Promise<DropSample[]> {
  const { espGet, espSocketPath } = await import("../dataplane/esp-userspace/control.js");
  const { ESP_DROP_REASONS } = await import("../esp/drops.js");
  const s = await Promise.race([
    espGet(espSocketPath(ifname)).catch(() => undefined),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), TIMEOUT_MS).unref()),
  ]);
  if (s === undefined) return [];
  const codec = new Set<string>(ESP_DROP_REASONS);
  return entries(s.drops).map(([reason, packets]) => ({
    dataplane: "esp-userspace",
    ifname,
    layer: codec.has(reason) ? "codec" : "datapath",
    reason,
    packets,
  }));
}

/** Parses /proc/net/xfrm_stat: one `XfrmInError   0` per line. */
export function parseXfrmStat(text: string): [string, number][] {
  const out: [string, number][] = [];
  for (const line of text.split("\n")) {
    const m = /^(Xfrm\w+)\s+(\d+)\s*$/.exec(line);
    if (m !== null) out.push([m[1]!, Number(m[2])]);
  }
  return out;
}

/** Every drop counter the node's data planes report now. */
export async function readDrops(sources: DropSources): Promise<DropSample[]> {
  const parts = await Promise.all([
    ...sources.wireguardUserspace.map(wireguardDrops),
    sources.espUserspace === undefined ? [] : espDrops(sources.espUserspace),
    sources.kernelXfrm
      ? readFile("/proc/net/xfrm_stat", "utf8").then(
          (t) =>
            parseXfrmStat(t).map(([reason, packets]): DropSample => ({
              dataplane: "xfrm",
              ifname: "",
              layer: "kernel",
              reason,
              packets,
            })),
          () => [],
        )
      : [],
  ]);
  return parts.flat();
}
