// test-tier: vm (the kernel data planes, inside the qemu VM: test/vm/run.sh)
/**
 * The local cluster on kernel data planes, test VM only: `podcrypt cluster up --dataplane kernel` in both modes, with dual-stack pods and
 * host encryption on, `podcrypt verify` in both families and node to node, `wg show`, `ip xfrm
 * state` and `policy` and the host table against `podcrypt status --json`, idempotence and repair
 * behind the agents' backs, 3 rotations under continuous traffic without a lost packet, and mixed
 * clusters (one node forced to userspace by the config file, IPv4 only) in both modes.
 *
 * PODCRYPT_VM_CLUSTERS (see run.sh) picks the clusters, all four by default; test/vm/README.md has
 * the figures.
 *
 * Everything runs through the real CLI, as a person would. Every process start costs seconds in
 * the emulated VM, so the clusters have one pod per node (verify needs one), and each describe
 * brings one cluster up and takes it down again even when a test fails.
 */
import assert from "node:assert/strict";
import { cpSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { EtcdTestServer } from "../support/etcd-server.js";
import { XFRM_REQID_BASE } from "../../src/dataplane/xfrm/generations.js";
import { NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { parseWgDump } from "../../src/platform/netlink/wg-dump.js";
import { HOST_TABLE } from "../../src/dataplane/node/routes.js";
import type { PlannedNode } from "../../src/localcluster/plan.js";
import { readClusterState } from "../../src/localcluster/state.js";
import { parseXfrmPolicies, parseXfrmStates } from "../../src/platform/netlink/xfrm-text.js";
import { listNetns, run, runIn } from "../../src/platform/netns/netns.js";
import { clusterCli, rotateUnderTraffic, type CliResult, type VerifyJson } from "../localcluster/run-cli.js";
import { vmOnly } from "./vm-env.js";

type Result = CliResult;

interface Peer {
  node: string;
  state: string;
  epoch: number;
  ifname?: string;
  publicKey?: string;
  endpoint?: string;
  latestHandshake?: number;
  keyId: number | null;
  spiIn?: string;
  spiOut?: string;
  txBytes: number;
  rxBytes: number;
  txPackets: number | null;
  rxPackets: number | null;
}

interface Status {
  enabled: boolean;
  mode: string;
  phase: string;
  epoch: number;
  nodes: Array<{
    name: string;
    backend: string;
    errors: string[];
    peers: Peer[];
    /** What the node's last pass installed of host encryption. */
    hostEncryption?: { applied: boolean; routes: number; peers: string[] };
  }>;
}

/** verify's JSON; node-to-node checks (host encryption on) carry `host: true`. */
type Verify = Omit<VerifyJson, "pairs"> & { pairs: Array<VerifyJson["pairs"][number] & { host?: true }> };

/** One local cluster in its own PODCRYPT_HOME, driven through the CLI. */
class Cluster {
  private cli: ReturnType<typeof clusterCli> | undefined;

  /** `name`: the cluster's key in PODCRYPT_VM_CLUSTERS, also naming its kept logs. */
  constructor(private readonly name: (typeof CLUSTERS)[number]) {}

  /** The CLI in the cluster's own PODCRYPT_HOME, made on first use (a skipped suite makes none). */
  private get run(): ReturnType<typeof clusterCli> {
    this.cli ??= clusterCli("vm-cluster", { timeoutMs: 900_000 });
    return this.cli;
  }

  /** The CLI in the cluster's home as run-cli.ts runs it (no diagnostics). */
  get cliPodcrypt(): ReturnType<typeof clusterCli>["podcrypt"] {
    return this.run.podcrypt;
  }

  get home(): string {
    return this.run.home;
  }

  /** Runs the real CLI; `t` gets the duration as a diagnostic. */
  async podcrypt(args: string[], t?: TestContext, timeoutMs?: number): Promise<Result> {
    const started = Date.now();
    const r = await this.run.podcrypt(args, timeoutMs);
    // Test hooks have no diagnostic(): there the timings go to stdout, which the runner reports.
    const line = `podcrypt ${args.join(" ")}: exit ${r.code} in ${((Date.now() - started) / 1000).toFixed(1)} s`;
    if (t !== undefined && typeof t.diagnostic === "function") t.diagnostic(line);
    else process.stdout.write(`# ${line}\n`);
    return r;
  }

  private etcd: EtcdTestServer | undefined;

  /**
   * `cluster up` with a config file; throws with the agents' logs when it fails. The datastore is
   * etcd (Debian's etcd-server, relayed into the node namespaces by `cluster up`) unless
   * PODCRYPT_VM_DATASTORE=local: under emulation every process is slow, and the local store's one
   * lock file, which every write of every daemon takes, then becomes the bottleneck.
   */
  async up(config: string, args: string[], t: TestContext): Promise<void> {
    const file = join(this.home, "config.yaml");
    writeFileSync(file, config);
    const datastore: string[] = [];
    if (process.env["PODCRYPT_VM_DATASTORE"] !== "local") {
      this.etcd = await EtcdTestServer.start();
      datastore.push("--datastore", `etcd://127.0.0.1:${this.etcd.clientPort}`);
    }
    const r = await this.podcrypt(
      ["cluster", "up", "--config", file, "--timeout", "600", ...datastore, ...args],
      t,
    );
    process.stdout.write(r.stderr.replace(/^/gm, "#   "));
    if (r.code !== 0) assert.fail(`cluster up failed: ${r.stderr}\n${this.logTail()}`);
  }

  async status(t?: TestContext): Promise<Status> {
    // The emulated CPU reads the cluster slower than status's default 10 s allow.
    const r = await this.podcrypt(["status", "--json", "--timeout", "300"], t);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  }

  /**
   * `verify --json` must pass on every check: with `dualHost` (see config()) every ordered pair of
   * the 3 nodes once per pod family and once node to node per family, else once (IPv4 pods).
   */
  async verify(t: TestContext, dualHost: boolean, extra: string[] = []): Promise<Verify> {
    const r = await this.podcrypt(["verify", "--json", "--timeout", "300", ...extra], t);
    const v = JSON.parse(r.stdout || "{}") as Verify;
    for (const p of v.pairs ?? [])
      assert.deepEqual(
        [p.delivered, p.plaintextSeen, p.error],
        [true, false, undefined],
        `${p.from}->${p.to} ${p.family}${p.host === true ? " host" : ""}: ${JSON.stringify(p)}\n${this.logTail()}`,
      );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(v.ok, true);
    // Node to node in both families: on an IPv4 underlay with IPv6 pods the nodes publish their
    // IPv6 addresses too, which host encryption covers as well.
    const kinds = dualHost ? ["ipv4", "ipv6", "ipv4 host", "ipv6 host"] : ["ipv4"];
    assert.deepEqual(
      v.pairs.map((p) => `${p.from}>${p.to} ${p.family}${p.host === true ? " host" : ""}`).sort(),
      NODES.flatMap((a) =>
        NODES.filter((b) => b !== a).flatMap((b) => kinds.map((k) => `${a}>${b} ${k}`)),
      ).sort(),
      "every ordered pair of the 3 nodes, in each family checked",
    );
    return v;
  }

  /** The lines of an agent's log that record a change of its kernel data plane. */
  changes(node: string): string[] {
    return this.log(`agent-${node}`)
      .split("\n")
      .filter((l) => /"msg":"(configured kernel (WireGuard|XFRM)|retired[^"]*)"/.test(l));
  }

  /** The log lines of `names` matching `pattern`, each as "ISO-time name: {json}", in time order. */
  timeline(names: readonly string[], pattern: RegExp): string[] {
    return names
      .flatMap((name) =>
        this.log(name)
          .split("\n")
          .filter((l) => pattern.test(l))
          .map((l) => {
            const time = (JSON.parse(l) as { time: number }).time;
            return `${new Date(time).toISOString()} ${name}: ${l.replace(/"(level|time|pid|name|component)":[^,]*,/g, "")}`;
          }),
      )
      .sort();
  }

  log(name: string): string {
    try {
      return readFileSync(join(this.home, "logs", `${name}.log`), "utf8");
    } catch {
      return "";
    }
  }

  logTail(): string {
    return ["controller", "agent-node-1", "agent-node-2", "agent-node-3"]
      .map((n) => `--- ${n}\n${this.log(n).split("\n").slice(-12).join("\n")}`)
      .join("\n");
  }

  async down(): Promise<void> {
    if (this.cli === undefined) return;
    // run.sh's PODCRYPT_VM_KEEP_LOGS: the controller's and agents' logs outlive the cluster.
    const keep = process.env["PODCRYPT_VM_KEEP_LOGS"];
    if (keep) cpSync(join(this.home, "logs"), join(keep, this.name), { recursive: true });
    await this.podcrypt(["cluster", "down"]);
    await this.etcd?.stop();
    this.cli.remove();
  }
}

/**
 * Three nodes with one pod each (every pod start costs seconds here); `dataplane` per node. The
 * kernel-only clusters (`dualHost`) run dual-stack pods (IPv4 underlay) with host encryption on, so
 * that the kernel backends carry IPv6 pod CIDRs and the host routes of table 5041 too.
 */
function config(mode: "wireguard" | "ipsec", node3: "kernel" | "userspace", dualHost = false): string {
  return [
    `mode: ${mode}`,
    // An agent's pass takes seconds to tens of seconds under emulation, where it takes milliseconds
    // on a real node; with the controllers' default of 30 s a live node could miss a phase and lag
    // (CI, 2026-12-07: a 33 s prepare on a guest at load 10-15).
    "phaseTimeoutSeconds: 120",
    ...(dualHost ? ["ipFamily: dual", "hostEncryption: true"] : []),
    "nodes:",
    "  - {name: node-1, pods: 1}",
    "  - {name: node-2, pods: 1}",
    `  - {name: node-3, pods: 1, dataplane: ${node3}}`,
    "",
  ].join("\n");
}

const NODES = ["node-1", "node-2", "node-3"] as const;
const nsOf = (node: string): string => `${NETNS_PREFIX}${node}`;

/** The planned nodes of the cluster in `home` (pod CIDRs of both families, underlay addresses). */
function plannedNodes(home: string): Map<string, PlannedNode> {
  const state = readClusterState(home);
  assert.ok(state !== undefined, "the cluster runs");
  return new Map(state.plan.nodes.map((n) => [n.name, n]));
}

/**
 * What a peer's tunnel must carry with dual-stack pods and host encryption: its pod CIDRs of both
 * families and its host (IPv4 underlay) address.
 */
function carried(peer: PlannedNode): string[] {
  assert.equal(peer.podCIDRs.length, 2, `${peer.name}: pod CIDRs of both families`);
  return [...peer.podCIDRs, `${peer.underlayIPv4}/32`];
}

/**
 * Host encryption in the kernel: every node's table 5041 routes each other node's address through
 * the kernel device status names for that peer, and status's host report counts those routes.
 */
async function hostRoutesAgree(s: Status, nodes: Map<string, PlannedNode>): Promise<void> {
  for (const n of s.nodes) {
    const table = async (family: "-4" | "-6") => {
      const text = await runIn(nsOf(n.name), "ip", [
        family,
        "-j",
        "route",
        "show",
        "table",
        String(HOST_TABLE),
      ]);
      return (text.trim() === "" ? [] : JSON.parse(text)) as Array<{
        dst: string;
        dev: string;
        prefsrc?: string;
      }>;
    };
    const routes = await table("-4");
    // IPv6 host addresses, where nodes have them, are routed the same way: counted by status too.
    const routes6 = await table("-6");
    const want = n.peers
      .map((p) => `${nodes.get(p.node)!.underlayIPv4} dev ${p.ifname} src ${nodes.get(n.name)!.underlayIPv4}`)
      .sort();
    assert.deepEqual(
      routes.map((r) => `${r.dst} dev ${r.dev} src ${r.prefsrc}`).sort(),
      want,
      `${n.name}: table ${HOST_TABLE}, a route to each peer's address through its tunnel`,
    );
    assert.deepEqual(
      n.hostEncryption,
      { applied: true, routes: routes.length + routes6.length, peers: n.peers.map((p) => p.node).sort() },
      `${n.name}: status reports the host routes installed`,
    );
  }
}

async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** The guest's load average, available memory and tmpfs use now, as one line. */
function guestLoad(): string {
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const mem = readFileSync("/proc/meminfo", "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(mem)?.[1] ?? NaN);
  const mib = (key: string) => `${Math.round(kb(key) / 1024)}`;
  return `${new Date().toISOString()} load ${load}, MemAvailable ${mib("MemAvailable")} MiB of ${mib("MemTotal")}, Shmem ${mib("Shmem")} MiB`;
}

/** Each guest process's CPU time so far (its own and its waited-for children's), in clock ticks. */
function guestCpu(): Map<number, { cmd: string; ticks: number; children: number }> {
  const out = new Map<number, { cmd: string; ticks: number; children: number }>();
  for (const e of readdirSync("/proc")) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the command name (which may hold spaces): state is field 3, utime 14 ... cstime 17.
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const children = Number(f[13]) + Number(f[14]);
      const ticks = Number(f[11]) + Number(f[12]) + children;
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8")
        .split("\0")
        .filter((a) => a !== "");
      const cmd =
        argv.length === 0 ? stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) : argv.join(" ");
      out.set(pid, { cmd: cmd.length > 100 ? `${cmd.slice(0, 100)}...` : cmd, ticks, children });
    } catch {
      // Gone between the listing and the read.
    }
  }
  return out;
}

/**
 * Where the guest's CPU went between two {@link guestCpu} readings: the busiest processes still
 * running, with their share of the interval's CPU capacity (100% = one CPU).
 */
function guestCpuSpent(before: ReturnType<typeof guestCpu>, seconds: number): string[] {
  const hz = 100;
  const spent = [...guestCpu()]
    .map(([pid, p]) => ({
      pid,
      cmd: p.cmd,
      s: (p.ticks - (before.get(pid)?.ticks ?? 0)) / hz,
      children: (p.children - (before.get(pid)?.children ?? 0)) / hz,
    }))
    .sort((a, b) => b.s - a.s);
  const total = spent.reduce((sum, p) => sum + p.s, 0);
  return [
    `guest CPU over ${seconds.toFixed(0)} s: ${total.toFixed(0)} s by running processes (with their reaped children)`,
    ...spent
      .slice(0, 12)
      .map(
        (p) =>
          `  ${p.s.toFixed(1)} s (${((100 * p.s) / seconds).toFixed(0)}%; children ${p.children.toFixed(1)} s) ${p.pid} ${p.cmd}`,
      ),
  ];
}

/**
 * 3 rotations while every pair exchanges datagrams: 0 lost, none in plaintext, epochs advanced.
 * Three, not more: each takes 40-90 s in the emulated guest, and the losses this test has found
 * (test/vm/README.md) showed in every rotation. The netns tier runs 10-15 per mode.
 */
async function rotationsUnderTraffic(c: Cluster, t: TestContext): Promise<void> {
  const rotations = 3;
  const epochBefore = (await c.status()).epoch;
  // 60 full-sized datagrams/s in all, shared by verify's checks (6 pod pairs, 24 checks with
  // dual-stack pods and host encryption: 2.5/s each), from once every sender's traffic flows
  // (verify says so) until 15 s after the last rotation, when the test ends it (SIGINT: verify
  // reports what was sent). Five rotations took 140-193 s in the VM with the host to itself on
  // 2026-12-06, 289-312 s in a clean-clone run of 2026-12-07 and 256 s in CI the same day;
  // verify's own limit, 600 s, bounds them (test/vm/README.md). (A guest etcd that stopped
  // answering in CI was short of memory, not of this traffic: README.md, "Memory".)
  const seconds = Number(process.env["PODCRYPT_VM_TRAFFIC_S"] || 600);
  // Both callers run dual-stack pods with host encryption: 4 checks per ordered pair (see verify()).
  const checks = NODES.length * (NODES.length - 1) * 4;
  const count = Math.max(1, Math.floor((seconds * 60) / checks));
  const verifyStarted = Date.now();
  // The guest's load and free memory every 15 s: a rotation that times out says what starved it.
  const samples: string[] = [];
  const sampler = setInterval(() => samples.push(guestLoad()), 15_000);
  const cpuBefore = guestCpu();
  const cpuSpent = (): string[] => guestCpuSpent(cpuBefore, (Date.now() - verifyStarted) / 1000);
  let rotated: Awaited<ReturnType<typeof rotateUnderTraffic>>;
  try {
    rotated = await rotateUnderTraffic(
      c.cliPodcrypt,
      ["--timeout", "300", "--seconds", String(seconds), "--count", String(count)],
      (seconds + 300) * 1000,
      rotations,
      {
        rotateTimeoutS: 240,
        // Traffic after the last switch and retire, then the end of it.
        tailMs: 15_000,
        rotate: (args) => c.podcrypt(args, t),
        flowing: () =>
          t.diagnostic(
            `verify's traffic flows ${((Date.now() - verifyStarted) / 1000).toFixed(1)} s after its start`,
          ),
        // Where the guest's CPU went, read only for a failure's message (it walks all of /proc).
        failure: () => [...samples, ...cpuSpent(), c.logTail()].join("\n"),
      },
    );
  } finally {
    clearInterval(sampler);
  }
  for (const l of [...samples, ...cpuSpent()]) t.diagnostic(l);
  const v = rotated.verify as Verify;
  const rotatedS = rotated.rotatedMs / 1000;
  // The controller's phase changes (with any node timed out), for placing a loss in the protocol.
  for (const l of c.timeline(["controller"], /"msg":"cluster phase"/)) t.diagnostic(l);
  let sent = 0;
  let lost = 0;
  for (const p of v.pairs) {
    sent += p.sent;
    lost += p.sent - p.echoed;
    assert.equal(p.plaintextSeen, false, `${p.from}->${p.to} plaintext`);
  }
  const lossy = v.pairs.filter((p) => p.echoed !== p.sent);
  // Every lossy pair is reported, with what the agents did around each loss.
  for (const p of lossy)
    t.diagnostic(`${p.from}->${p.to} lost ${p.sent - p.echoed}: ${JSON.stringify(p.losses)}`);
  const around = lossy.flatMap((p) => p.losses.map((l) => Date.parse(l.at)));
  if (around.length > 0)
    for (const l of c
      .timeline(
        NODES.map((n) => `agent-${n}`),
        /"msg":"(configured kernel|retired|acknowledged phase|reconcile failed)/,
      )
      .filter((l) => around.some((at) => Math.abs(Date.parse(l.slice(0, 24)) - at) < 15_000)))
      t.diagnostic(l);
  assert.deepEqual(
    lossy.map((p) => `${p.from}->${p.to} lost ${p.sent - p.echoed}`),
    [],
    "no datagram lost",
  );
  assert.equal((await c.status()).epoch, epochBefore + rotations);
  // The traffic spanned the rotations: it flowed before the first, every check sent for at least
  // as long as they took (at its pace of `seconds / count` apart), and the test ended it, not its
  // running out (rotateUnderTraffic checks that).
  for (const p of v.pairs)
    assert.ok(
      (p.sent * seconds) / count >= rotatedS,
      `${p.from}->${p.to}: ${p.sent} sent, over less than ${rotatedS} s`,
    );
  t.diagnostic(
    `${rotations} rotations in ${rotatedS.toFixed(1)} s under traffic: ${sent} sent, ${lost} lost`,
  );
}

const busy = (await listNetns()).some((n) => n.startsWith(NETNS_PREFIX));
const CLUSTERS = ["kernel-wireguard", "kernel-ipsec", "mixed-wireguard", "mixed-ipsec"] as const;
/** PODCRYPT_VM_CLUSTERS: the clusters the tier runs (default `all`; `none`: no cluster). */
const wanted = (process.env["PODCRYPT_VM_CLUSTERS"] || "all").split(",").filter((c) => c !== "");
/**
 * Skips a cluster when outside the VM, when one runs already, or unless PODCRYPT_VM_CLUSTERS names
 * it (or is `all`, the default: the kernel-only clusters of both modes, with their 5-minute
 * rotation test, and the two mixed ones; test/vm/README.md, "Local clusters", has their cost).
 */
const skipUnless = (key: (typeof CLUSTERS)[number]): false | string =>
  vmOnly ||
  (busy ? "a local cluster is already running" : false) ||
  (wanted.includes("all") || wanted.includes(key)
    ? false
    : `PODCRYPT_VM_CLUSTERS=${wanted.join(",")} leaves it out (one of all,${CLUSTERS.join(",")}); see test/vm/README.md`);

describe(
  "local cluster on kernel WireGuard (cluster up --dataplane kernel)",
  { skip: skipUnless("kernel-wireguard") },
  () => {
    const c = new Cluster("kernel-wireguard");
    before(async (t) =>
      c.up(config("wireguard", "kernel", true), ["--dataplane", "kernel"], t as TestContext),
    );
    after(() => c.down());

    it("verify passes and every node runs kernel WireGuard", async (t) => {
      await c.verify(t, true);
      const s = await c.status(t);
      assert.deepEqual(
        s.nodes.map((n) => [n.name, n.backend]),
        NODES.map((n) => [n, "wireguard-kernel"]),
      );
    });

    it("wg show and table 5041 agree with podcrypt status --json", async (t) => {
      const s = await c.status(t);
      const nodes = plannedNodes(c.home);
      for (const n of s.nodes) {
        const dump = parseWgDump(await runIn(nsOf(n.name), "wg", ["show", "all", "dump"]));
        const ours = [...dump.values()].filter((d) => /^pc\dw[01]$/.test(d.ifname));
        const fromWg = ours
          .flatMap((d) =>
            d.peers.map((p) => `${d.ifname} ${p.publicKey} ${p.endpoint} ${p.latestHandshake > 0}`),
          )
          .sort();
        const fromStatus = n.peers
          .map((p) => `${p.ifname} ${p.publicKey} ${p.endpoint} ${p.latestHandshake !== undefined}`)
          .sort();
        assert.deepEqual(fromStatus, fromWg, n.name);
        assert.equal(fromWg.length, 2, `${n.name}: one peer per other node`);
        for (const p of n.peers) {
          const w = ours.flatMap((d) => d.peers).find((q) => q.publicKey === p.publicKey)!;
          // Both pod families and the host address (IPv6 host addresses too, once nodes have them).
          const missing = carried(nodes.get(p.node)!).filter((cidr) => !w.allowedIps.includes(cidr));
          assert.deepEqual(missing, [], `${n.name}→${p.node}: allowed IPs ${w.allowedIps.join(",")}`);
          assert.ok(w.txBytes >= p.txBytes && w.rxBytes >= p.rxBytes, `${n.name}→${p.node}: counters`);
          // Handshakes happen every 2 minutes: the later read may be one newer.
          assert.ok(w.latestHandshake * 1000 >= (p.latestHandshake ?? 0), `${n.name}→${p.node}: handshake`);
          assert.equal(p.state, "established");
        }
      }
      await hostRoutesAgree(s, nodes);
    });

    it("a resync changes nothing, and what is removed behind its back is restored", async (t) => {
      const before = c.changes("node-1").length;
      // The agent resyncs 10 s after a pass, or ten times the pass's duration (decide.ts
      // resyncDelay): one or two full passes here.
      await new Promise((r) => setTimeout(r, 25_000));
      assert.equal(c.changes("node-1").length, before, "a pass over unchanged state must change nothing");
      const s = await c.status(t);
      const peer = s.nodes.find((n) => n.name === "node-1")!.peers[0]!;
      const ifname = peer.ifname!;
      await runIn(nsOf("node-1"), "wg", ["set", ifname, "peer", peer.publicKey!, "remove"]);
      await runIn(nsOf("node-1"), "ip", ["link", "set", ifname, "mtu", "1300"]);
      await until("peer and MTU restored", 240_000, async () => {
        const dump = parseWgDump(await runIn(nsOf("node-1"), "wg", ["show", "all", "dump"]));
        const mtu = await runIn(nsOf("node-1"), "ip", ["-j", "link", "show", ifname]);
        return (
          (dump.get(ifname)?.peers.some((p) => p.publicKey === peer.publicKey) ?? false) &&
          (JSON.parse(mtu) as Array<{ mtu: number }>)[0]?.mtu !== 1300
        );
      });
      assert.ok(c.changes("node-1").length > before, "the repair is logged");
      await c.verify(t, true);
    });

    it("3 rotations under continuous traffic lose 0 packets", async (t) => rotationsUnderTraffic(c, t));
  },
);

describe(
  "local cluster on kernel XFRM (cluster up --dataplane kernel --mode ipsec)",
  { skip: skipUnless("kernel-ipsec") },
  () => {
    const c = new Cluster("kernel-ipsec");
    before(async (t) =>
      c.up(config("ipsec", "kernel", true), ["--dataplane", "kernel", "--mode", "ipsec"], t as TestContext),
    );
    after(() => c.down());

    it("verify passes and every node runs kernel XFRM", async (t) => {
      await c.verify(t, true);
      const s = await c.status(t);
      assert.deepEqual(
        s.nodes.map((n) => [n.name, n.backend]),
        NODES.map((n) => [n, "xfrm"]),
      );
    });

    it("ip xfrm state and policy and table 5041 agree with podcrypt status --json", async (t) => {
      const s = await c.status(t);
      const nodes = plannedNodes(c.home);
      const ours = (reqid: number): boolean => reqid >= XFRM_REQID_BASE && reqid <= XFRM_REQID_BASE + 0xffff;
      for (const n of s.nodes) {
        const states = parseXfrmStates(await runIn(nsOf(n.name), "ip", ["-s", "xfrm", "state"])).filter((x) =>
          ours(x.reqid),
        );
        const policies = parseXfrmPolicies(await runIn(nsOf(n.name), "ip", ["xfrm", "policy"])).filter((x) =>
          x.tmpls.some((tm) => ours(tm.reqid)),
        );
        // One tunnel carries both families: its SAs have no selector family of their own.
        assert.deepEqual(
          states.filter((x) => x.afUnspec !== true).map((x) => x.spi),
          [],
          `${n.name}: every SA af-unspec`,
        );
        for (const p of n.peers) {
          const peer = nodes.get(p.node)!;
          const out = policies
            .filter((x) => x.dir === "out" && x.tmpls[0]!.dst === peer.underlayIP)
            .map((x) => `${x.src} ${x.dst}`);
          for (const cidr of carried(peer))
            assert.ok(
              out.includes(`${cidr.includes(":") ? "::/0" : "0.0.0.0/0"} ${cidr}`),
              `${n.name}→${p.node}: an outbound policy for ${cidr} (${out.join(", ")})`,
            );
        }
        const spi = (x: number): string => `0x${x.toString(16).padStart(8, "0")}`;
        assert.deepEqual(
          n.peers.flatMap((p) => [p.spiIn, p.spiOut]).sort(),
          states.map((x) => spi(x.spi)).sort(),
          n.name,
        );
        assert.equal(n.peers.length, 2, `${n.name}: one SA pair per other node`);
        for (const p of n.peers) {
          const out = states.find((x) => spi(x.spi) === p.spiOut)!;
          const inb = states.find((x) => spi(x.spi) === p.spiIn)!;
          assert.equal(p.state, "established");
          assert.ok(
            (out.bytes ?? 0) >= p.txBytes && (out.packets ?? 0) >= (p.txPackets ?? 0),
            `${n.name}→${p.node}`,
          );
          assert.ok(
            (inb.bytes ?? 0) >= p.rxBytes && (inb.packets ?? 0) >= (p.rxPackets ?? 0),
            `${n.name}←${p.node}`,
          );
          assert.ok(
            p.txPackets! > 0 && p.rxPackets! > 0,
            `${n.name}↔${p.node}: verify's traffic was counted`,
          );
          assert.deepEqual(out.encap, { type: "espinudp", sport: 4500, dport: 4500 });
          assert.equal(out.aead?.name, "rfc4106(gcm(aes))");
        }
      }
      await hostRoutesAgree(s, nodes);
    });

    it("a resync changes nothing, and what is removed behind its back is restored", async (t) => {
      const before = c.changes("node-1").length;
      // The agent resyncs 10 s after a pass, or ten times the pass's duration (decide.ts
      // resyncDelay): one or two full passes here.
      await new Promise((r) => setTimeout(r, 25_000));
      assert.equal(c.changes("node-1").length, before, "a pass over unchanged state must change nothing");
      const s = await c.status(t);
      const peer = s.nodes.find((n) => n.name === "node-1")!.peers[0]!;
      const ns = nsOf("node-1");
      const inSpi = peer.spiIn!;
      const states = parseXfrmStates(await runIn(ns, "ip", ["xfrm", "state"]));
      const inbound = states.find((x) => x.spi === Number(inSpi))!;
      // An SA, the XFRM interface (with its routes) and the ESP-in-UDP socket holder, all gone.
      await runIn(ns, "ip", [
        "xfrm",
        "state",
        "delete",
        "src",
        inbound.src,
        "dst",
        inbound.dst,
        "proto",
        "esp",
        "spi",
        inSpi,
      ]);
      await runIn(ns, "ip", ["link", "del", peer.ifname!]);
      const holders = (await run("ip", ["netns", "pids", ns])).split(/\s+/).filter((p) => {
        try {
          return p !== "" && readFileSync(`/proc/${p}/cmdline`, "utf8").includes("xfrm-encap");
        } catch {
          return false; // a process that just exited
        }
      });
      assert.equal(holders.length, 1, "one ESP-in-UDP holder per node");
      process.kill(Number(holders[0]), "SIGKILL");
      await until("SA and XFRM interface restored", 240_000, async () => {
        const now = parseXfrmStates(await runIn(ns, "ip", ["xfrm", "state"]));
        const link = await runIn(ns, "ip", ["-br", "link", "show", peer.ifname!]).catch(() => "");
        return now.some((x) => x.spi === Number(inSpi)) && link !== "";
      });
      assert.ok(c.changes("node-1").length > before, "the repair is logged");
      await c.verify(t, true);
    });

    it("3 rotations under continuous traffic lose 0 packets", async (t) => rotationsUnderTraffic(c, t));
  },
);

describe(
  "mixed cluster, WireGuard: kernel WireGuard ↔ podcrypt userspace WireGuard",
  { skip: skipUnless("mixed-wireguard") },
  () => {
    const c = new Cluster("mixed-wireguard");
    before(async (t) => c.up(config("wireguard", "userspace"), ["--dataplane", "kernel"], t as TestContext));
    after(() => c.down());

    it("every pair is encrypted and verify passes", async (t) => {
      await c.verify(t, false);
      const s = await c.status(t);
      assert.deepEqual(
        s.nodes.map((n) => n.backend),
        ["wireguard-kernel", "wireguard-kernel", "wireguard-userspace"],
      );
      for (const n of s.nodes)
        assert.ok(
          n.peers.every((p) => p.state === "established"),
          n.name,
        );
    });
  },
);

describe(
  "mixed cluster, IPsec: kernel XFRM (encap espinudp) ↔ podcrypt userspace ESP (interop)",
  { skip: skipUnless("mixed-ipsec") },
  () => {
    const c = new Cluster("mixed-ipsec");
    before(async (t) =>
      c.up(config("ipsec", "userspace"), ["--dataplane", "kernel", "--mode", "ipsec"], t as TestContext),
    );
    after(() => c.down());

    it("every pair is encrypted and verify passes", async (t) => {
      await c.verify(t, false);
      const s = await c.status(t);
      assert.deepEqual(
        s.nodes.map((n) => n.backend),
        ["xfrm", "xfrm", "esp-userspace"],
      );
      // The userspace node counts the kernel nodes' ESP as received and decrypted, and back.
      for (const n of s.nodes)
        for (const p of n.peers)
          assert.ok((p.rxPackets ?? 0) > 0 && (p.txPackets ?? 0) > 0, `${n.name}↔${p.node}`);
    });
  },
);

after(async () => {
  assert.deepEqual(
    (await listNetns()).filter((n) => n.startsWith(NETNS_PREFIX)),
    [],
    "every cluster namespace removed",
  );
});
