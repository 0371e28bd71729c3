// test-tier: netns (root: network namespaces)
/**
 * The local cluster's supervisor restarts a process only into the namespace it ran in. Namespace
 * names are reused by the next cluster: a supervisor left over from a cluster whose `down` never
 * ran (a killed test, a crashed `up`) once started its agents, 66 times over, into the nodes of
 * the cluster that came after it, two agents fighting over one node's devices.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createLogger } from "../../src/log/logger.js";
import { run } from "../../src/platform/netns/netns.js";
import { alive, startDaemon } from "../../src/localcluster/processes.js";
import { writeClusterState, type ClusterState } from "../../src/localcluster/state.js";
import { readSupervisorRecord, runSupervisor } from "../../src/localcluster/supervisor.js";
import { NetnsLab } from "../support/netns.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function pidsIn(ns: string): Promise<number[]> {
  const stdout = await run("ip", ["netns", "pids", ns]);
  return stdout.split(/\s+/).filter(Boolean).map(Number);
}

describe("local cluster supervisor and namespaces", () => {
  const lab = new NetnsLab();
  const home = mkdtempSync(join(tmpdir(), "podcrypt-supervisor-ns-"));
  const started: number[] = [];
  const abort = new AbortController();
  after(() => {
    abort.abort();
    for (const pid of started.filter(alive)) process.kill(pid, "SIGKILL");
    rmSync(home, { recursive: true, force: true });
  });

  it("restarts a process in its own namespace, never into a namespace of the same name made later", async () => {
    const ns = await lab.netns("node");
    const echo = startDaemon(home, "echo", "echo-node", ["debug", "echo", "--ports", "udp/7"], ns);
    started.push(echo.pid);
    assert.ok(echo.netnsInode !== undefined, "the record holds the namespace's inode");
    const state: ClusterState = {
      version: 1,
      createdAt: new Date().toISOString(),
      plan: { nodes: [] } as unknown as ClusterState["plan"],
      datastore: `local:${join(home, "store")}`,
      processes: [echo],
    };
    writeClusterState(state, home);
    const logger = createLogger("supervisor", { level: "silent" });
    const supervising = runSupervisor(home, () => state, logger, abort.signal);
    const current = (): number | undefined => readSupervisorRecord(home)?.processes["echo-node"]?.pid;
    await waitUntil(() => current() === echo.pid, 5000, "the supervisor to adopt the process");

    // Dies in its own namespace: started again there.
    process.kill(echo.pid, "SIGKILL");
    await waitUntil(() => current() !== echo.pid && alive(current()!), 5000, "a restart");
    const second = current()!;
    started.push(second);
    assert.ok((await pidsIn(ns)).includes(second), "restarted into its namespace");

    // The cluster goes without a `down`: the namespace is deleted and one of the same name made.
    await run("ip", ["netns", "del", ns]);
    await run("ip", ["netns", "add", ns]);
    process.kill(second, "SIGKILL");
    const ended = await Promise.race([supervising.then(() => true), sleep(5000).then(() => false)]);
    assert.equal(ended, true, "the supervisor stops once its cluster's namespaces are gone");
    assert.deepEqual(await pidsIn(ns), [], "nothing was started into the new namespace");
    assert.equal(current(), second, "no restart was recorded");
  });
});
