/** The real CLI as a user runs it, against a local cluster kept in its own PODCRYPT_HOME. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TRAFFIC_FLOWING } from "../../src/cli/verify.js";
import { NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { projectRoot } from "../../src/paths.js";
import { listNetns } from "../../src/platform/netns/netns.js";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** How one command runs, besides its arguments and time limit. */
export interface RunOptions {
  /** Sends the command SIGINT when it fires (what Ctrl-C does: verify then ends its traffic early). */
  interrupt?: AbortSignal;
  /** Told of the command's stderr as it comes (verify's {@link TRAFFIC_FLOWING}). */
  stderr?: (chunk: string) => void;
}

/**
 * A PODCRYPT_HOME of its own and the CLI run in it, with `options.env` on top of this process's
 * environment (the daemons `cluster up` starts inherit it) and `options.timeoutMs` as the default
 * limit of a command (180 s). `remove()` deletes the directory.
 */
export function clusterCli(
  tag: string,
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): {
  home: string;
  podcrypt: (args: string[], timeoutMs?: number, o?: RunOptions) => Promise<CliResult>;
  remove: () => void;
} {
  const home = mkdtempSync(join(tmpdir(), `podcrypt-${tag}-`));
  const env = { ...process.env, ...options.env, PODCRYPT_HOME: home };
  return {
    home,
    podcrypt: (args, timeoutMs = options.timeoutMs ?? 180_000, { interrupt, stderr } = {}) =>
      new Promise<CliResult>((resolve) => {
        const child = execFile(
          process.execPath,
          [join(projectRoot(), "bin", "podcrypt"), ...args],
          { env, timeout: timeoutMs, maxBuffer: 16 << 20 },
          (e, stdout, stderr) => {
            interrupt?.removeEventListener("abort", sigint);
            const code = e === null ? 0 : typeof e.code === "number" ? e.code : 1;
            resolve({ code, stdout, stderr });
          },
        );
        const sigint = (): void => void child.kill("SIGINT");
        interrupt?.addEventListener("abort", sigint, { once: true });
        if (stderr !== undefined) child.stderr?.on("data", (d: Buffer | string) => stderr(String(d)));
      }),
    remove: () => rmSync(home, { recursive: true, force: true }),
  };
}

/** Why a local-cluster suite must not run now (a cluster someone else started holds the `pc-` names), or false. */
export async function clusterBusy(): Promise<string | false> {
  return (await listNetns()).some((n) => n.startsWith(NETNS_PREFIX))
    ? "a local cluster is already running on this machine"
    : false;
}

/** verify's JSON, as the tests read it. */
export interface VerifyJson {
  ok: boolean;
  /** SIGINT ended the traffic early: each pair's `sent` is what went out before. */
  stoppedEarly?: true;
  pairs: Array<{
    from: string;
    to: string;
    delivered: boolean;
    plaintextSeen: boolean;
    family: "ipv4" | "ipv6";
    protocol: string;
    port: number;
    selected: boolean;
    /** A node-to-node check (host encryption). */
    host?: boolean;
    sent: number;
    echoed: number;
    /** Runs of lost datagrams: when, and how many. */
    losses: Array<{ atMs: number; untilMs: number; at: string; packets: number }>;
    error?: string;
  }>;
}

/**
 * `podcrypt verify` with SIGINT for its end, for a test that does something under its traffic:
 * `flowing` settles once every sender's traffic flows (verify says so on stderr; it rejects when
 * verify ended first), `end()` ends the traffic, and `result` is verify's outcome.
 */
function verifyUnderTraffic(
  podcrypt: ReturnType<typeof clusterCli>["podcrypt"],
  args: string[],
  timeoutMs: number,
): { flowing: Promise<void>; end: () => void; result: Promise<CliResult> } {
  const end = new AbortController();
  let said = "";
  let flows!: () => void;
  const flowing = new Promise<void>((r) => (flows = r));
  const result = podcrypt(["verify", ...args], timeoutMs, {
    interrupt: end.signal,
    stderr: (chunk) => {
      said += chunk;
      if (said.includes(TRAFFIC_FLOWING)) flows();
    },
  });
  return {
    flowing: Promise.race([
      flowing,
      result.then((r) => {
        throw new Error(
          `verify ended before its traffic flowed (exit ${r.code}): ${r.stderr.slice(0, 2000)}`,
        );
      }),
    ]),
    end: () => end.abort(),
    result,
  };
}

/** How {@link rotateUnderTraffic} rotates, besides how many times. */
export interface RotateOptions {
  /** Runs after rotation i (checks of the state it left). */
  each?: (i: number) => Promise<void>;
  /** The traffic after the last rotation, before the test ends it (default 3 s). */
  tailMs?: number;
  /** `rotate --wait --timeout` (default 120 s). */
  rotateTimeoutS?: number;
  /** Runs `rotate` (default: the same CLI as verify), e.g. to record how long each took. */
  rotate?: (args: string[]) => Promise<CliResult>;
  /** Told once the traffic flows, before the first rotation. */
  flowing?: () => void;
  /** More for a failed rotation's message (the machine's load, the daemons' logs). */
  failure?: () => string;
}

/**
 * `rotations` rotations (`rotate --wait`) under `podcrypt verify ARGS`'s traffic: the first starts
 * once the traffic flows, `o.each(i)` runs after rotation i, and the traffic ends `o.tailMs` after
 * the last (or at once when one fails). Resolves with verify's report, which must have been ended
 * by the test rather than have run out, and how long the rotations took.
 */
export async function rotateUnderTraffic(
  podcrypt: ReturnType<typeof clusterCli>["podcrypt"],
  verifyArgs: string[],
  timeoutMs: number,
  rotations: number,
  o: RotateOptions = {},
): Promise<{ verify: VerifyJson; rotatedMs: number }> {
  const traffic = verifyUnderTraffic(podcrypt, ["--json", ...verifyArgs], timeoutMs);
  const rotate = o.rotate ?? ((args: string[]) => podcrypt(args));
  let rotatedMs = 0;
  try {
    await traffic.flowing;
    o.flowing?.();
    const started = Date.now();
    for (let i = 0; i < rotations; i++) {
      const rot = await rotate(["rotate", "--wait", "--timeout", String(o.rotateTimeoutS ?? 120)]);
      if (rot.code !== 0)
        assert.fail(
          `rotation ${i + 1}: exit ${rot.code}: ${rot.stderr}${o.failure === undefined ? "" : `\n${o.failure()}`}`,
        );
      await o.each?.(i);
    }
    rotatedMs = Date.now() - started;
    await new Promise((r) => setTimeout(r, o.tailMs ?? 3000));
  } finally {
    traffic.end();
  }
  const verify = JSON.parse((await traffic.result).stdout) as VerifyJson;
  assert.equal(
    verify.stoppedEarly,
    true,
    `the rotations (${rotatedMs} ms) outlasted the traffic: verify ran out before the test ended it`,
  );
  return { verify, rotatedMs };
}
