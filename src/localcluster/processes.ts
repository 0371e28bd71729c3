import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PodcryptError } from "../errors/index.js";
import { projectRoot } from "../paths.js";
import type { ClusterProcess } from "./state.js";

/**
 * Starts a podcrypt subcommand as a detached daemon (in `netns` when given), logging to
 * `<home>/logs/<name>.log`. The process survives the CLI that started it; `cluster down` stops it.
 * The record carries `args` and `env`, so the cluster's supervisor can start it again; `onExit`
 * hears how it ended while this process runs.
 */
export function startDaemon(
  home: string,
  role: ClusterProcess["role"],
  name: string,
  args: string[],
  netns?: string,
  env: Record<string, string> = {},
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void,
): ClusterProcess {
  const logs = join(home, "logs");
  mkdirSync(logs, { recursive: true, mode: 0o700 });
  const log = join(logs, `${name}.log`);
  const fd = openSync(log, "a", 0o600);
  const podcrypt = [process.execPath, join(projectRoot(), "bin", "podcrypt")];
  const argv =
    netns === undefined ? [...podcrypt, ...args] : ["ip", "netns", "exec", netns, ...podcrypt, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: { ...process.env, ...env },
  });
  closeSync(fd);
  if (onExit !== undefined) child.on("exit", onExit);
  child.unref();
  const inode = netns === undefined ? undefined : netnsInode(netns);
  return {
    role,
    name,
    pid: child.pid!,
    ...(netns === undefined ? {} : { netns }),
    ...(inode === undefined ? {} : { netnsInode: inode }),
    log,
    argv: args,
    ...(Object.keys(env).length === 0 ? {} : { env }),
  };
}

/** The inode of the network namespace named `netns` (`ip netns` names), or undefined when there is none. */
export function netnsInode(netns: string): number | undefined {
  try {
    return statSync(join("/run/netns", netns)).ino;
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is alive. A zombie counts as dead: a daemon whose starter exited is reaped by init,
 * which may take its time.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // pid (comm) STATE ...: comm may hold spaces and parentheses, the state follows the last ")".
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/** Stops processes: SIGTERM, then SIGKILL after `graceMs` for those still alive. */
export async function stopProcesses(pids: number[], graceMs = 2000): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** Resolves once `p`'s log holds `text`; throws if it exits or `timeoutMs` passes first. */
export async function waitForLog(p: ClusterProcess, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = existsSync(p.log) ? readFileSync(p.log, "utf8") : "";
    if (log.includes(text)) return;
    if (!alive(p.pid) || Date.now() > deadline)
      throw new PodcryptError("EUP", `${p.name} did not start: ${log.trim().slice(-500) || "no output"}`);
    await sleep(100);
  }
}
