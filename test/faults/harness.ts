/**
 * The fault suite's harness: a 3-node local cluster (userspace data planes, one mode) shared by
 * the rows of one `describe`, continuous marked traffic measured by `verify` (per ordered pod pair:
 * sent, echoed, runs of loss, and whether a marked datagram crossed the underlay in plaintext, from
 * a capture on the fabric), and the assertions every row makes.
 *
 * A row file looks like:
 *
 *   faultSuite("wireguard", (c) => {
 *     it("kill -9 of X", async () => {
 *       const traffic = c().traffic(15);          // 100 datagrams/s per ordered pair, 15 s
 *       await sleep(3000);
 *       ... inject the fault ...
 *       assertTraffic(await traffic, { faulty: "node-2", maxLost: 100 });
 *     });
 *   });
 *
 * The cluster comes up once per suite (about 10-20 s) and goes down after its last row, also when
 * a row fails; a suite SKIPS when another local cluster runs on the machine (run it under
 * `flock /tmp/podcrypt-cluster.lock`). Rows must leave the cluster as they found it (every node
 * reporting, every pair encrypted): {@link FaultCluster.settled} waits for that.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe } from "node:test";
import { alive } from "../../src/localcluster/processes.js";
import type { ControllerStatus } from "../../src/localcluster/status.js";
import { readClusterState, type ClusterProcess } from "../../src/localcluster/state.js";
import { clusterBusy, clusterCli, type CliResult, type VerifyJson } from "../localcluster/run-cli.js";

/** `podcrypt status --json`, the fields the rows read. */
export interface StatusJson {
  phase: string;
  epoch: number;
  nodes: Array<{
    name: string;
    live: boolean;
    heartbeat?: string;
    errors: string[];
    restarts: { agent: number; lastAgent?: string; dataplane: number; lastDataplane?: string };
    peers: Array<{
      node: string;
      epoch: number;
      state: string;
      latestHandshake?: number;
      spiIn?: string;
      spiOut?: string;
    }>;
    [k: string]: unknown;
  }>;
  controllers: ControllerStatus[];
  [k: string]: unknown;
}

/** Why the suites must not run now (another local cluster holds the `pc-` names), or false. */
const busy = await clusterBusy();

/** Datagrams per second per ordered pod pair that {@link FaultCluster.traffic} sends (the figure). */
export const RATE = 100;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 100 ms until it holds; fails the row after `timeoutMs`. */
export async function waitUntil(
  cond: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** The running cluster of a suite, and what rows do with it. */
export interface FaultCluster {
  mode: "wireguard" | "ipsec";
  /** The cluster's PODCRYPT_HOME (cluster.json, logs/, nodes/NAME/). */
  home: string;
  /** The CLI, run against this cluster. */
  podcrypt: (args: string[], timeoutMs?: number) => Promise<CliResult>;
  status(): Promise<StatusJson>;
  /** A process cluster.json records (`controller`, `agent-node-2`, ...), as recorded now. */
  process(name: string): ClusterProcess;
  /**
   * Starts `verify --json` for `seconds` at {@link RATE} datagrams/s per ordered pair and resolves
   * with its result when it ends (start it, inject the fault, then await it).
   */
  traffic(seconds: number): Promise<VerifyJson>;
  /** Waits until every node reports and every pair is established again (`timeoutMs`, default 60 s). */
  settled(timeoutMs?: number): Promise<void>;
  /**
   * kill -9 of the recorded process `name`; resolves once the supervisor runs a new instance, with
   * the time that took (ms).
   */
  killAndAwaitRestart(name: string): Promise<{ killedAt: number; restartMs: number }>;
  /**
   * Holds the recorded process `name` stopped (SIGSTOP), as dead to the cluster but not to the
   * supervisor (a dead agent would be restarted at once); the returned function resumes it.
   */
  freeze(name: string): () => void;
}

/**
 * The pid of node `node`'s data-plane daemon of `mode` (`podcrypt wireguard pcNw0|1` or
 * `podcrypt esp pcNwe`), found by its command line; the node index is the digits of its name.
 * With two WireGuard generations (mid-rotation) the first one found.
 */
export function daemonPid(node: string, mode: "wireguard" | "ipsec"): number | undefined {
  const index = /(\d+)$/.exec(node)?.[1];
  assert.ok(index !== undefined, `node name ${node} ends in its index`);
  const want =
    mode === "wireguard"
      ? new RegExp(`^wireguard\\0pc${index}w[01]\\0`)
      : new RegExp(`^esp\\0pc${index}we\\0`);
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
    } catch {
      continue; // gone
    }
    const i = cmd.indexOf("bin/podcrypt\0");
    if (i >= 0 && want.test(cmd.slice(i + "bin/podcrypt\0".length))) return Number(d);
  }
  return undefined;
}

/**
 * Declares a suite of fault rows on one 3-node cluster in `mode` (userspace data planes, local
 * datastore unless `upArgs` says otherwise). `rows` receives an accessor for the running cluster
 * (valid inside the rows and their hooks). `upArgs` may be a function, called when the suite
 * starts (after the file's `before` hooks, e.g. once a datastore it names runs).
 */
export function faultSuite(
  mode: "wireguard" | "ipsec",
  rows: (cluster: () => FaultCluster) => void,
  upArgs: string[] | (() => string[]) = [],
): void {
  describe(`faults, ${mode}, 3 nodes`, { skip: busy }, () => {
    let cluster: FaultCluster | undefined;
    let home: { remove: () => void; podcrypt: FaultCluster["podcrypt"] } | undefined;
    before(async () => {
      const cli = clusterCli(`faults-${mode}`);
      home = cli;
      const up = await cli.podcrypt([
        "cluster",
        "up",
        "--mode",
        mode,
        "--dataplane",
        "userspace",
        "--timeout",
        "150",
        ...(typeof upArgs === "function" ? upArgs() : upArgs),
      ]);
      assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
      const status = async (): Promise<StatusJson> => {
        const r = await cli.podcrypt(["status", "--json"], 60_000);
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout) as StatusJson;
      };
      cluster = {
        mode,
        home: cli.home,
        podcrypt: cli.podcrypt,
        status,
        process(name) {
          const p = readClusterState(cli.home)?.processes.find((x) => x.name === name);
          assert.ok(p !== undefined, `cluster.json lists ${name}`);
          return p;
        },
        async traffic(seconds) {
          const r = await cli.podcrypt(
            ["verify", "--json", "--seconds", String(seconds), "--count", String(seconds * RATE)],
            (seconds + 180) * 1000,
          );
          assert.ok(r.stdout.trim().startsWith("{"), `verify printed no JSON (exit ${r.code}): ${r.stderr}`);
          return JSON.parse(r.stdout) as VerifyJson;
        },
        async killAndAwaitRestart(name) {
          const old = this.process(name);
          const killedAt = Date.now();
          process.kill(old.pid, "SIGKILL");
          await waitUntil(
            () => {
              const now = this.process(name);
              return now.pid !== old.pid && alive(now.pid);
            },
            15_000,
            `the supervisor to restart ${name}`,
          );
          return { killedAt, restartMs: Date.now() - killedAt };
        },
        freeze(name) {
          const { pid } = this.process(name);
          process.kill(pid, "SIGSTOP");
          return () => {
            if (alive(pid)) process.kill(pid, "SIGCONT");
          };
        },
        async settled(timeoutMs = 60_000) {
          let last = "";
          await waitUntil(
            async () => {
              const s = await status().catch(() => undefined);
              if (s === undefined) return false;
              const bad = s.nodes.flatMap((n) =>
                !n.live
                  ? [`${n.name} not live`]
                  : n.peers
                      .filter((p) => p.epoch === s.epoch && p.state !== "established")
                      .map((p) => `${n.name}->${p.node} ${p.state}`),
              );
              last = bad.join("; ");
              return s.phase === "idle" && s.nodes.length === 3 && bad.length === 0;
            },
            timeoutMs,
            `the cluster to settle (${last})`,
          );
        },
      };
    });
    after(async () => {
      await home?.podcrypt(["cluster", "down"]);
      home?.remove();
    });
    rows(() => {
      assert.ok(cluster !== undefined, "the suite's cluster is up");
      return cluster;
    });
  });
}

/** What a row allows: losses only on pairs touching `faulty`, at most `maxLost` datagrams each. */
export interface LossBound {
  /** The node whose pairs may lose (undefined: no pair may lose). */
  faulty?: string;
  /** Most datagrams a pair touching `faulty` may lose (default 0). */
  maxLost?: number;
}

/**
 * Asserts a traffic run: every ordered pair measured and sent, no marked datagram in plaintext on
 * the underlay, and losses within `bound`. Returns the worst pair's loss, for the row's report.
 */
export function assertTraffic(v: VerifyJson, bound: LossBound, what: string): number {
  assert.equal(v.pairs.length, 6, `${what}: every ordered pair of 3 nodes measured`);
  let worst = 0;
  for (const p of v.pairs) {
    const pair = `${what}: ${p.from}->${p.to}`;
    assert.equal(p.error, undefined, `${pair}: ${p.error ?? ""}`);
    assert.equal(p.plaintextSeen, false, `${pair}: plaintext on the underlay`);
    assert.ok(p.sent > 0, `${pair}: sent nothing`);
    const lost = p.sent - p.echoed;
    worst = Math.max(worst, lost);
    const touches = bound.faulty !== undefined && (p.from === bound.faulty || p.to === bound.faulty);
    const allowed = touches ? (bound.maxLost ?? 0) : 0;
    assert.ok(
      lost <= allowed,
      `${pair} lost ${lost} of ${p.sent} (allowed ${allowed}); runs: ${JSON.stringify(p.losses)}`,
    );
  }
  return worst;
}
