/** The real CLI as a user runs it, against a local cluster kept in its own PODCRYPT_HOME. */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { projectRoot } from "../../src/paths.js";
import { listNetns } from "../../src/platform/netns/netns.js";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A PODCRYPT_HOME of its own and the CLI run in it, with `options.env` on top of this process's
 * environment (the daemons `cluster up` starts inherit it) and `options.timeoutMs` as the default
 * limit of a command (180 s); `interrupt` sends the command SIGINT when it fires (what Ctrl-C does:
 * verify then ends its traffic early). `remove()` deletes the directory.
 */
export function clusterCli(
  tag: string,
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): {
  home: string;
  podcrypt: (args: string[], timeoutMs?: number, interrupt?: AbortSignal) => Promise<CliResult>;
  remove: () => void;
} {
  const home = mkdtempSync(join(tmpdir(), `podcrypt-${tag}-`));
  const env = { ...process.env, ...options.env, PODCRYPT_HOME: home };
  return {
    home,
    podcrypt: (args, timeoutMs = options.timeoutMs ?? 180_000, interrupt) =>
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
