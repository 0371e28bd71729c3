import { spawn } from "node:child_process";
import { Option } from "commander";
import { closeSync, writeSync } from "node:fs";
import { PodcryptError } from "../errors/index.js";
import type { Logger } from "../log/logger.js";

/**
 * How a daemon command (`podcrypt wireguard`, `podcrypt esp`) and the detached copy of itself it
 * re-spawns find each other, through environment variables set in the child.
 */
export interface DaemonModeEnv {
  /** Set to "1" in the re-spawned child: stay in the foreground. */
  readonly foreground: string;
  /** Set in the re-spawned child: the fd on which it reports "ready" (or "error ...") to its parent. */
  readonly readyFd: string;
  /**
   * The lowest fd number the child reports on. The parent always passes 3; `podcrypt esp` refuses
   * 0 (stdin) as well, `podcrypt wireguard` has always accepted it.
   */
  readonly minReadyFd: 0 | 1;
}

/** The `--persistent` flag of the daemon commands (default off). */
export function persistentOption(): Option {
  return new Option(
    "--persistent",
    "keep the TUN device (addresses, routes) when the daemon ends, however it ends; a new daemon for the interface re-attaches to it; `ip link del` removes it",
  ).default(false);
}

/**
 * A daemon that emits "interface-gone" when its TUN interface is deleted under it, and
 * "handed-over" when a successor took its interface, socket and state (a planned restart).
 */
export interface StoppableDaemon {
  once(event: "interface-gone" | "handed-over", listener: () => void): unknown;
}

/** A daemon as {@link serveInForeground} runs it: started, then closed when it is told to stop. */
export interface ForegroundDaemon extends StoppableDaemon {
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs `daemon` in this process: starts it (telling the parent why, on one line, when that fails),
 * calls `announce` (to log where it serves), reports "ready" to the parent, and resolves once the
 * daemon is closed after SIGTERM, SIGINT, the deletion of its interface or a handover. An error
 * while closing is logged, not thrown.
 */
export async function serveInForeground(
  env: DaemonModeEnv,
  daemon: ForegroundDaemon,
  logger: Logger,
  announce: () => void,
): Promise<void> {
  await startReporting(env, () => daemon.start());
  announce();
  reportToParent(env, "ready");
  await runUntilStopped(daemon, logger, () =>
    daemon.close().catch((e: unknown) => {
      logger.error({ err: e instanceof Error ? e.message : String(e) }, "error while shutting down");
    }),
  );
}

/** Writes one line ("ready" or "error ...") to the parent, once; a no-op when not re-spawned. */
function reportToParent(env: DaemonModeEnv, line: string): void {
  const fd = Number(process.env[env.readyFd]);
  if (!Number.isInteger(fd) || fd < env.minReadyFd) return;
  try {
    writeSync(fd, line + "\n");
    closeSync(fd);
  } catch {
    // the parent went away; nothing to tell
  }
  process.env[env.readyFd] = "";
}

/** Runs `start`; when it fails, tells the parent why (on one line) before rethrowing. */
async function startReporting(env: DaemonModeEnv, start: () => Promise<void>): Promise<void> {
  try {
    await start();
  } catch (e) {
    reportToParent(env, `error ${e instanceof Error ? e.message : String(e)}`.replace(/\n/g, " "));
    throw e;
  }
}

/**
 * Resolves once the daemon is closed after SIGTERM, SIGINT or the deletion of its interface,
 * whichever comes first. A failing `close` still resolves; it handles (or logs) its own error.
 */
async function runUntilStopped(
  daemon: StoppableDaemon,
  logger: Logger,
  close: () => Promise<void>,
): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ why }, "shutting down");
      void close().then(resolve, () => resolve());
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
    daemon.once("interface-gone", () => stop("interface deleted"));
    daemon.once("handed-over", () => stop("handed over to a successor"));
  });
  logger.info("shut down");
}

/**
 * Re-spawns this same command detached, with `env.foreground`=1, and waits for the child to report
 * that it is up (resolves) or that it failed (throws EDAEMON). The child keeps stderr for its JSON
 * log, as wireguard-go keeps it for its log.
 */
export async function daemonize(env: DaemonModeEnv): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    detached: true,
    stdio: ["ignore", "ignore", "inherit", "pipe"],
    env: { ...process.env, [env.foreground]: "1", [env.readyFd]: "3" },
  });
  const pipe = child.stdio[3] as NodeJS.ReadableStream | null;
  const answer = await new Promise<string>((resolve) => {
    let text = "";
    pipe?.setEncoding("utf8");
    pipe?.on("data", (d: string) => {
      text += d;
      if (text.includes("\n")) resolve(text.trim());
    });
    child.once("exit", (code, signal) =>
      resolve(`error the daemon exited (${code ?? signal}) before it was ready`),
    );
    child.once("error", (e) => resolve(`error ${e.message}`));
  });
  (pipe as unknown as { destroy?: () => void } | null)?.destroy?.();
  child.unref();
  if (answer !== "ready") throw new PodcryptError("EDAEMON", answer.replace(/^error /, ""));
}

/**
 * The action of a daemon command: with -f or `env.foreground`=1, runs `runForeground` in this
 * process and exits 0 when it returns; otherwise daemonizes.
 */
export async function daemonizeUnlessForeground(
  env: DaemonModeEnv,
  foreground: boolean,
  runForeground: () => Promise<void>,
): Promise<void> {
  if (foreground || process.env[env.foreground] === "1") {
    await runForeground();
    process.exit(0);
  }
  await daemonize(env);
}
