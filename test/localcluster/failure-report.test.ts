// test-tier: netns (root: network namespaces)
/**
 * A node whose data plane cannot be programmed explains why, everywhere an operator looks: the
 * agent's log, `status --json` and `cluster up`'s failure name the failing command and what it
 * printed; the same failure for a minute is logged once; its end is logged too.
 *
 * The failure is real: an `ip` first on the agents' PATH that refuses `ip -batch -` (the route
 * writes) inside one node's namespace while a flag file exists, and runs the real `ip` otherwise.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/platform/netns/netns.js";
import { clusterBusy, clusterCli } from "./run-cli.js";

const SHIM_ERROR = "RTNETLINK answers: Operation not permitted (test shim)";
const BROKEN = "node-2";

const shim = mkdtempSync(join(tmpdir(), "podcrypt-ipshim-"));
const flag = join(shim, "fail");
const realIp = (await run("sh", ["-c", "command -v ip"])).trim();
writeFileSync(
  join(shim, "ip"),
  `#!/bin/sh
if [ "$1" = "-batch" ] && [ "$2" = "-" ] && [ -e "${flag}" ] && [ "$(${realIp} netns identify $$)" = "pc-${BROKEN}" ]; then
  echo "${SHIM_ERROR}" >&2
  exit 2
fi
exec ${realIp} "$@"
`,
);
chmodSync(join(shim, "ip"), 0o755);
writeFileSync(flag, "");

const { home, podcrypt, remove } = clusterCli("failure-report", {
  env: { PATH: `${shim}:${process.env["PATH"] ?? ""}`, PODCRYPT_LOG_LEVEL: "info" },
});
const busy = await clusterBusy();
after(() => {
  remove();
  rmSync(shim, { recursive: true, force: true });
});

interface Link {
  message: string;
  command?: string;
  exitCode?: number;
  stderr?: string;
}
interface Failure extends Link {
  code?: string;
  causes: Link[];
  since: string;
  last: string;
  count: number;
  clearedAt?: string;
}

async function failureOf(node: string): Promise<Failure | undefined> {
  const r = await podcrypt(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { nodes: Array<{ name: string; reconcileError?: Failure }> };
  return s.nodes.find((n) => n.name === node)?.reconcileError;
}

function agentLog(node: string): Array<Record<string, unknown>> {
  return readFileSync(join(home, "logs", `agent-${node}.log`), "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("a node whose data plane cannot be programmed", { skip: busy }, () => {
  let up: { code: number; stderr: string };
  before(async () => {
    up = await podcrypt(["cluster", "up", "--timeout", "25"]);
  });
  after(async () => {
    await podcrypt(["cluster", "down"]);
  });

  it("cluster up's failure names the node's failing command and its stderr, in one line", () => {
    assert.notEqual(up.code, 0);
    const first = up.stderr
      .trim()
      .split("\n")
      .find((l) => l.startsWith("podcrypt: "));
    assert.ok(first !== undefined, up.stderr);
    assert.match(
      first,
      /did not settle in time: .*node-2: reconcile failing since [^:]+:.*ip -batch - failed with exit code 2: RTNETLINK answers: Operation not permitted \(test shim\)/,
    );
  });

  it("status --json carries the failure with its cause, since when, and a count", async () => {
    const f = await failureOf(BROKEN);
    assert.ok(f !== undefined);
    assert.equal(f.clearedAt, undefined);
    // The failure and its causes, outermost first: the last is the command that failed.
    const root = [f, ...f.causes].at(-1)!;
    assert.equal(root.command, "ip -batch -");
    assert.equal(root.exitCode, 2);
    assert.equal(root.stderr, SHIM_ERROR);
    assert.ok(f.count >= 2, `count ${f.count}`);
    // The others do not fail now (a failure of theirs while the cluster came up has cleared).
    for (const other of ["node-1", "node-3"]) {
      const o = await failureOf(other);
      assert.ok(o === undefined || o.clearedAt !== undefined, JSON.stringify(o));
    }
  });

  it("the same failure for a minute is logged once; its end is logged once", async (t) => {
    const f0 = (await failureOf(BROKEN))!;
    const since = Date.parse(f0.since);
    // A minute of the failure (the agent retries every second or two).
    await new Promise((r) => setTimeout(r, Math.max(0, since + 60_000 - Date.now())));
    const f = (await failureOf(BROKEN))!;
    assert.equal(f.since, f0.since);
    assert.ok(f.count >= 20, `only ${f.count} failed passes in a minute`);
    const failures = agentLog(BROKEN).filter((l) => String(l["msg"]).startsWith("reconcile failed"));
    assert.equal(failures.length, 1, JSON.stringify(failures));
    const err = failures[0]!["err"] as { cause?: Record<string, unknown> };
    let root: Record<string, unknown> | undefined = err;
    while (root?.["cause"] !== undefined) root = root["cause"] as Record<string, unknown>;
    assert.equal(root?.["command"], "ip -batch -");
    assert.equal(root?.["exitCode"], 2);
    assert.equal(root?.["stderr"], SHIM_ERROR);
    // All the log holds for the minute: O(1) lines, not one per pass.
    const lines = agentLog(BROKEN).filter((l) => Number(l["time"]) >= since).length;
    t.diagnostic(`${f.count} failed passes since ${f.since}: ${lines} agent log lines`);
    assert.ok(lines < 20, `${lines} log lines in a minute of failure (${f.count} passes)`);

    rmSync(flag);
    let cleared: Failure | undefined;
    for (let i = 0; i < 60 && cleared?.clearedAt === undefined; i++) {
      await new Promise((r) => setTimeout(r, 500));
      cleared = await failureOf(BROKEN);
    }
    assert.ok(cleared?.clearedAt !== undefined, "the failure did not clear");
    const ends = agentLog(BROKEN).filter((l) => String(l["msg"]).startsWith("reconcile succeeds again"));
    assert.equal(ends.length, 1);
    assert.equal(ends[0]!["failedPasses"], cleared.count);
  });
});
