import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PodcryptError } from "../errors/index.js";
import { projectRoot } from "../paths.js";
import { run, spawnIn } from "../platform/netns/netns.js";
import type { Datastore } from "../datastore/types.js";
import { CLUSTER_ENCRYPTION_NAME } from "../model/index.js";
import { fromStored, resolveSelectors } from "../policy/index.js";
import type { Selector } from "../policy/types.js";
import { podMtu } from "../mtu/mtu.js";
import { native } from "../native.js";
import { formatIp } from "../wireguard/ip.js";
import { parsePortRef, VERIFY_PORT } from "./echo.js";
import { FABRIC_MTU } from "./topology.js";
import { servicePods, type ClusterPlan, type PlannedNode, type PlannedPod } from "./plan.js";
import { PROBE_SENDING, type ProbeResult } from "./probe.js";
import type { ClusterState } from "./state.js";

/**
 * One check: marked traffic from a pod on `from` to a pod on `to` on one port
 * (docs/design.md#cli: `verify --json`, whose contract fields come first). Encrypting all traffic, there is one per
 * ordered node pair (the pods' echo port, udp/7); selective, also one per service port of every
 * service with a pod on `to`, `selected` telling whether policies select it.
 */
export interface PairResult {
  from: string;
  to: string;
  /** Every message came back (and, when `selected`, none crossed the underlay in plaintext). */
  delivered: boolean;
  plaintextSeen: boolean;
  fromPod: string;
  toPod: string;
  /** The address family of the pods' addresses this check used (dual-stack pods get one check per family). */
  family: "ipv4" | "ipv6";
  protocol: "udp" | "tcp";
  port: number;
  /** The service whose port this is (absent for the echo port every pod answers on). */
  service?: string;
  /** Whether this traffic must be encrypted: always when encrypting all, by policy when selective. */
  selected: boolean;
  /**
   * Host encryption: a node-to-node check, from node `from`'s namespace to node `to`'s address
   * (`fromPod` and `toPod` then name the nodes). Absent for pod checks.
   */
  host?: true;
  sent: number;
  echoed: number;
  /**
   * Runs of messages that never came back: when (ms after the first was sent, and the wall-clock
   * time of the run's first message) and how many.
   */
  losses: Array<{ atMs: number; untilMs: number; at: string; packets: number }>;
  /**
   * `verify --via-agents` only: the sender's capture did not see its own negative control (a
   * datagram sent outside the tunnels), so "not seen in plaintext" proves nothing for this pair.
   */
  captureBlind?: boolean;
  /** Why the check could not run, when it could not. */
  error?: string;
  /**
   * When its marker was first and last seen in plaintext on the underlay (ms since the epoch), and
   * last seen from each source address (the probing pod's requests, the echoing pod's replies).
   */
  plaintextAt?: { first: number; last: number; lastBySource: Record<string, number> };
}

/** The source address of an Ethernet frame, if it carries IPv4 or IPv6. */
function ipSource(frame: Buffer): string | undefined {
  if (frame.length >= 34 && frame.readUInt16BE(12) === 0x0800) return [...frame.subarray(26, 30)].join(".");
  if (frame.length >= 54 && frame.readUInt16BE(12) === 0x86dd) return formatIp(frame.subarray(22, 38));
  return undefined;
}

/** The records of a classic pcap file (tcpdump -w): capture time in ms and the frame bytes. */
export function pcapRecords(pcap: Buffer): Array<{ at: number; data: Buffer }> {
  const out: Array<{ at: number; data: Buffer }> = [];
  if (pcap.length < 24) return out;
  // Magic a1b2c3d4 (microseconds) in the writer's byte order; tcpdump writes the host's (LE here).
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (off: number): number => (le ? pcap.readUInt32LE(off) : pcap.readUInt32BE(off));
  for (let off = 24; off + 16 <= pcap.length;) {
    const len = u32(off + 8);
    out.push({ at: u32(off) * 1000 + u32(off + 4) / 1000, data: pcap.subarray(off + 16, off + 16 + len) });
    off += 16 + len;
  }
  return out;
}

/**
 * The frames among `records` that carry a probe of `marker` (src/localcluster/probe.ts's payload:
 * the marker, then `#`). With the `#`: a marker is a prefix of others (an IPv4 check's of its
 * IPv6 twin's, which ends in `-v6`; a pod's of one whose name continues it), whose plaintext must
 * not count as its own.
 */
export function markerFrames<R extends { data: Buffer }>(records: readonly R[], marker: string): R[] {
  const m = `${marker}#`;
  return records.filter((r) => r.data.includes(m));
}

export interface VerifyResult {
  ok: boolean;
  /** No selected traffic was seen in plaintext. */
  encrypted: boolean;
  selective: boolean;
  pairs: PairResult[];
  capture: { packets: number; bytes: number };
  /** The traffic was ended early (SIGINT): each pair's `sent` is what went out before. */
  stoppedEarly?: true;
}

/** What to check, before anything is sent. */
export interface PlannedCheck {
  from: string;
  to: string;
  src: PlannedPod;
  dst: PlannedPod;
  family: "ipv4" | "ipv6";
  /** `dst`'s address of `family`. */
  dstIp: string;
  protocol: "udp" | "tcp";
  port: number;
  service?: string;
  selected: boolean;
  /** A node-to-node check (`src` and `dst` stand for the nodes: {@link nodeEndpoint}). */
  host?: true;
}

/**
 * Node `n` as the end of a node-to-node check: its namespace and the host addresses it publishes
 * (`underlayIPs`: one per family it has, IPv4 first).
 */
export function nodeEndpoint(n: PlannedNode): PlannedPod {
  return {
    name: n.name,
    namespace: "",
    node: n.name,
    netns: n.netns,
    ip: n.underlayIPs[0]!,
    ips: [...n.underlayIPs],
    labels: {},
    hostIf: "",
    ports: [],
  };
}

/**
 * Host encryption's checks, pure: every ordered node pair in every family both nodes have a host
 * address of (the addresses they publish: IPv4 on an IPv4 underlay, IPv6 too with IPv6 pods,
 * IPv6 only on an IPv6 underlay), IPv4 first, TCP to the verify port of the other node's address
 * (served by {@link serveHostEcho} during the run), always selected.
 */
export function planHostChecks(plan: ClusterPlan): PlannedCheck[] {
  return plan.nodes.flatMap((a) =>
    plan.nodes
      .filter((b) => b.name !== a.name)
      .flatMap((b) => {
        const src = nodeEndpoint(a);
        const dst = nodeEndpoint(b);
        return commonFamilies(src, dst).map(([family, dstIp]): PlannedCheck => ({
          from: a.name,
          to: b.name,
          src,
          dst,
          family,
          dstIp,
          protocol: "tcp",
          port: VERIFY_PORT,
          selected: true,
          host: true,
        }));
      }),
  );
}

/**
 * TCP echo on the verify port of every host address of every node (see {@link nodeEndpoint}),
 * inside the node's namespace (a socket made there through the native addon, served by this
 * process) for the run of a verify.
 */
async function serveHostEcho(plan: ClusterPlan): Promise<() => Promise<void>> {
  const servers: Server[] = [];
  const close = () => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))).then(() => undefined);
  try {
    for (const n of plan.nodes)
      for (const ip of n.underlayIPs) {
        const fd = native().listenTcpInNetns(`/run/netns/${n.netns}`, ip, VERIFY_PORT);
        const server = createServer({ noDelay: true }, (conn) => {
          conn.on("error", () => undefined);
          conn.pipe(conn);
        });
        servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen({ fd }, () => resolve());
        });
      }
  } catch (e) {
    await close();
    throw new PodcryptError("EVERIFY", `cannot serve the node-to-node echo: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return close;
}

/**
 * The checks of a verify run, pure. Every ordered node pair gets its echo-port check (selected
 * unless selective). Selective: for every service, every port, and every other node hosting one
 * of its pods, a check from a pod on each node to that pod, selected when `selectors` (resolved
 * policies) cover the pod's IP on that port. Dual-stack pods get each check once per family both
 * pods have, IPv4 first.
 */
export function planChecks(
  plan: ClusterPlan,
  selective: boolean,
  selectors: readonly Selector[],
): PlannedCheck[] {
  const checks: PlannedCheck[] = [];
  const firstPod = (node: string) => plan.pods.find((p) => p.node === node);
  for (const a of plan.nodes) {
    const src = firstPod(a.name);
    if (src === undefined) continue;
    for (const b of plan.nodes) {
      if (a.name === b.name) continue;
      const dst = firstPod(b.name);
      if (dst !== undefined)
        for (const [family, dstIp] of commonFamilies(src, dst))
          checks.push({
            from: a.name,
            to: b.name,
            src,
            dst,
            family,
            dstIp,
            protocol: "udp",
            port: VERIFY_PORT,
            selected: !selective,
          });
      if (!selective) continue;
      for (const svc of plan.services) {
        const pod = servicePods(plan, svc).find((p) => p.node === b.name);
        if (pod === undefined) continue;
        for (const [family, dstIp] of commonFamilies(src, pod))
          for (const text of svc.ports) {
            const { protocol, port } = parsePortRef(text);
            const selected = selectors.some(
              (x) => x.protocol === protocol && x.port === port && x.podIPs.includes(dstIp),
            );
            checks.push({
              from: a.name,
              to: b.name,
              src,
              dst: pod,
              family,
              dstIp,
              protocol,
              port,
              service: `${svc.namespace}/${svc.name}`,
              selected,
            });
          }
      }
    }
  }
  return checks;
}

/** The families both pods have an address of, with `dst`'s address of each, IPv4 first. */
function commonFamilies(src: PlannedPod, dst: PlannedPod): Array<["ipv4" | "ipv6", string]> {
  const family = (ip: string): "ipv4" | "ipv6" => (ip.includes(":") ? "ipv6" : "ipv4");
  const have = new Set(src.ips.map(family));
  return dst.ips
    .filter((ip) => have.has(family(ip)))
    .map((ip): ["ipv4" | "ipv6", string] => [family(ip), ip])
    .sort((x, y) => x[0].localeCompare(y[0]));
}

/** The selector set the cluster's policies resolve to now, and whether encryption is selective. */
async function selection(state: ClusterState, openStore: (url: string) => Promise<Datastore>) {
  const store = await openStore(state.datastore);
  try {
    const c = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))?.value;
    const host = c?.hostEncryption === true;
    if (c?.encryption !== "selective") return { selective: false, selectors: [], host };
    const [policies, services, endpoints] = await Promise.all([
      store.collection("encryptionpolicies").list(),
      store.collection("services").list(),
      store.collection("endpoints").list(),
    ]);
    const { selectors } = resolveSelectors({
      policies: policies.items.map((p) => fromStored(p.value)),
      services: services.items.map((x) => x.value),
      endpoints: endpoints.items.map((x) => x.value),
      pods: [],
    });
    return { selective: true, selectors, host };
  } finally {
    await store.close();
  }
}

/** How long tcpdump may take to start listening. */
const CAPTURE_START_S = 120;

/** What {@link startTcpdump} captures. */
export interface TcpdumpOptions {
  /** A capture filter (pcap-filter syntax), such as "udp port 4500"; default none: every frame. */
  readonly filter?: string;
  /** The bytes kept of each frame (tcpdump -s); default 0, the whole frame. */
  readonly snaplen?: number;
  /** Told of the process as soon as it is spawned (for a caller that kills what is left on failure). */
  readonly spawned?: (child: ChildProcess) => void;
}

/**
 * Starts tcpdump in `netns` on `iface` writing `file`, without name resolution, each frame written
 * as it comes, and resolves with the process once it listens. It rejects with what tcpdump printed
 * when tcpdump exits first or does not listen within {@link CAPTURE_START_S} s (then it is killed).
 * SIGINT stops it, and tcpdump writes out what it holds.
 */
export async function startTcpdump(
  netns: string,
  iface: string,
  file: string,
  o: TcpdumpOptions = {},
): Promise<ChildProcess> {
  const args = ["-n", "-U", "-s", String(o.snaplen ?? 0), "-i", iface, "-w", file];
  const child = spawnIn(netns, "tcpdump", [...args, ...(o.filter === undefined ? [] : [o.filter])], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  o.spawned?.(child);
  await new Promise<void>((resolve, reject) => {
    let err = "";
    // A start-up allowance, not a check: on an emulated or overloaded machine starting tcpdump in
    // the fabric's namespace takes tens of seconds. One that does not start is stopped, or this
    // process would wait for it to exit.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new PodcryptError("ECAPTURE", `tcpdump did not start within ${CAPTURE_START_S} s: ${err}`));
    }, CAPTURE_START_S * 1000);
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (err.includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new PodcryptError("ECAPTURE", `tcpdump exited with ${code}: ${err.trim()}`));
    });
  });
  return child;
}

/** Starts tcpdump on the fabric bridge; resolves once it listens, with the function that stops it. */
async function startCapture(state: ClusterState, file: string): Promise<() => Promise<void>> {
  const child = await startTcpdump(state.plan.fabric.netns, state.plan.fabric.bridge, file);
  return async () => {
    // A Ctrl-C at a terminal reaches tcpdump too (one process group): it may have ended already.
    if (child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise((r) => child.once("exit", r));
    child.kill("SIGINT");
    await done;
  };
}

/** How {@link verifyCluster} runs, besides how long and how much. */
export interface VerifyOptions {
  /** Bounds the datastore reads (what is selected), e.g. with a timeout. Default: unbounded. */
  guard?: <T>(reads: Promise<T>) => Promise<T>;
  /**
   * Ends the traffic early when it fires: every sender stops, waits for its echoes in flight and
   * reports what it sent (the capture runs until they are done).
   */
  stop?: AbortSignal;
  /** Called once every sender has its first messages out, with how many senders there are. */
  sending?: (senders: number) => void;
}

/** Calls `then` once the probe process `child` says on its stderr that its traffic flows. */
function whenSending(child: ChildProcess, then: () => void): void {
  let said = "";
  const onErr = (d: Buffer | string): void => {
    said += String(d);
    if (!said.split("\n").includes(PROBE_SENDING)) return;
    child.stderr?.off("data", onErr);
    then();
  };
  child.stderr?.on("data", onErr);
}

/**
 * `podcrypt verify`: runs the checks of {@link planChecks} (marked messages from a pod on one
 * node to a pod on another, which echoes them) while the fabric bridge is captured. A check fails
 * when a message did not come back, or when it is selected and its marker shows up in the
 * capture (plaintext on the underlay). With encryption off every selected check sees plaintext.
 */
export async function verifyCluster(
  state: ClusterState,
  openStore: (url: string) => Promise<Datastore>,
  seconds: number,
  count = 5,
  o: VerifyOptions = {},
): Promise<VerifyResult> {
  const { guard = (reads) => reads, stop } = o;
  const nonce = randomBytes(6).toString("hex");
  const { selective, selectors, host } = await guard(selection(state, openStore));
  const checks = [
    ...planChecks(state.plan, selective, selectors),
    ...(host ? planHostChecks(state.plan) : []),
  ];
  const marker = (c: PlannedCheck): string =>
    `PODCRYPT-VERIFY-${nonce}-${c.from}-${c.to}-${c.protocol}${c.port}-${c.host ? "host" : c.dst.name}${c.family === "ipv6" ? "-v6" : ""}`;
  const file = join(tmpdir(), `podcrypt-verify-${nonce}.pcap`);
  const stopEcho =
    host && checks.some((c) => c.host) ? await serveHostEcho(state.plan) : async () => undefined;
  const stopCapture = await startCapture(state, file).catch(async (e: unknown) => {
    await stopEcho();
    throw e;
  });
  const pairs: PairResult[] = checks.map((c) => ({
    from: c.from,
    to: c.to,
    delivered: false,
    plaintextSeen: false,
    fromPod: c.src.name,
    toPod: c.dst.name,
    family: c.family,
    protocol: c.protocol,
    port: c.port,
    ...(c.service === undefined ? {} : { service: c.service }),
    selected: c.selected,
    ...(c.host ? { host: true as const } : {}),
    sent: count,
    echoed: 0,
    losses: [],
  }));
  const senders = new Set<ChildProcess>();
  let flowing = 0;
  const endEarly = (): void => {
    for (const c of senders) c.kill("SIGINT");
  };
  stop?.addEventListener("abort", endEarly, { once: true });
  try {
    // One sender per pod and family: the datagrams are full-sized, and an IPv6 header is 20 bytes longer.
    const bySource = new Map<string, number[]>();
    checks.forEach((c, i) => {
      const key = `${c.src.netns} ${c.family}`;
      bySource.set(key, [...(bySource.get(key) ?? []), i]);
    });
    const v6underlay = state.plan.config.underlayFamily === "ipv6";
    const podcrypt = join(projectRoot(), "bin", "podcrypt");
    const gapMs = (seconds * 1000) / count;
    await Promise.all(
      [...bySource].map(async ([key, indices]) => {
        const [netns = "", family] = key.split(" ");
        const targets = indices.map((i) => {
          const c = checks[i]!;
          return `${c.protocol}:${c.family === "ipv6" ? `[${c.dstIp}]` : c.dstIp}:${c.port}:${marker(c)}`;
        });
        // A sender that could not run (its pod's namespace went away, as when its node is removed
        // mid-run) fails its own checks only.
        let out: string;
        try {
          out = await run(
            "ip",
            [
              "netns",
              "exec",
              netns,
              process.execPath,
              podcrypt,
              "debug",
              "probe",
              "--targets",
              targets.join(","),
              "--count",
              String(count),
              "--seconds",
              String(seconds),
              // Full-sized datagrams (the pods' MTU, less IP and UDP headers): a path whose MTU
              // is wrong anywhere (tunnel, ESP overhead, an IPv6 underlay) loses them.
              "--size",
              String(podMtu(FABRIC_MTU, v6underlay) - (family === "ipv6" ? 48 : 28)),
            ],
            // Its run plus a start-up allowance: a node process takes tens of seconds to start
            // on an emulated or overloaded machine.
            {
              timeoutMs: (seconds + 120) * 1000,
              spawned: (c) => {
                if (stop?.aborted === true) c.kill("SIGINT");
                senders.add(c);
                whenSending(c, () => {
                  if (++flowing === bySource.size) o.sending?.(flowing);
                });
              },
            },
          );
        } catch (e) {
          for (const i of indices)
            pairs[i]!.error = `the sender in ${netns} failed: ${(e as Error).message.slice(0, 300)}`;
          return;
        }
        const results = JSON.parse(out) as Record<string, ProbeResult>;
        for (const i of indices) {
          const r = results[marker(checks[i]!)] ?? {
            sent: count,
            echoed: 0,
            lost: [[0, count - 1]],
            startedAt: Date.now(),
          };
          const p = pairs[i]!;
          p.sent = r.sent;
          p.echoed = r.echoed;
          p.delivered = r.echoed === r.sent;
          p.losses = r.lost.map(([a, b]) => ({
            atMs: Math.round(a * gapMs),
            untilMs: Math.round(b * gapMs),
            at: new Date(r.startedAt + Math.round(a * gapMs)).toISOString(),
            packets: b - a + 1,
          }));
        }
      }),
    );
  } finally {
    stop?.removeEventListener("abort", endEarly);
    await stopCapture();
    await stopEcho();
  }
  const capture = readFileSync(file);
  rmSync(file, { force: true });
  const records = pcapRecords(capture);
  checks.forEach((c, i) => {
    const seen = markerFrames(records, marker(c));
    const p = pairs[i]!;
    p.plaintextSeen = seen.length > 0;
    if (seen.length === 0) return;
    const bySource: Record<string, number> = {};
    for (const r of seen) {
      const src = ipSource(r.data);
      if (src !== undefined) bySource[src] = r.at;
    }
    p.plaintextAt = { first: seen[0]!.at, last: seen.at(-1)!.at, lastBySource: bySource };
  });
  const packets = records.length;
  return {
    ok: pairs.length > 0 && pairs.every((p) => p.delivered && !(p.selected && p.plaintextSeen)),
    encrypted: pairs.every((p) => !(p.selected && p.plaintextSeen)),
    selective,
    pairs,
    capture: { packets, bytes: capture.length },
    ...(stop?.aborted === true ? { stoppedEarly: true as const } : {}),
  };
}
