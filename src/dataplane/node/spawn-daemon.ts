import { spawn } from "node:child_process";
import { connect } from "node:net";
import { PodcryptError } from "../../errors/index.js";

/**
 * How the agent starts a userspace data-plane daemon (`podcrypt wireguard`, `podcrypt esp`) in the
 * foreground as its own detached child, and how that child says it is up: the variables below, set
 * in the child's environment (the daemon commands read them, src/cli/daemonize.ts).
 */
export const DAEMON_ENV = {
  wireguard: { foreground: "WG_PROCESS_FOREGROUND", readyFd: "PODCRYPT_WG_READY_FD" },
  esp: { foreground: "PODCRYPT_ESP_FOREGROUND", readyFd: "PODCRYPT_ESP_READY_FD" },
} as const;

export interface SpawnDaemonOptions {
  /** Which daemon: selects its environment variables ({@link DAEMON_ENV}). */
  kind: keyof typeof DAEMON_ENV;
  cmd: string;
  args: string[];
  /** The child's environment, before the two variables are added. Default this process's. */
  env?: NodeJS.ProcessEnv;
  /** What to call it in errors, e.g. `podcrypt esp pc2we`. */
  what: string;
  /** Called once when the daemon exits after it was ready, with how (`exit code N`, `signal S`). */
  onExit?: (how: string, pid: number | undefined) => void;
  /** How long it may take to report (ms). Default 60 s: a loaded node starts Node.js slowly. */
  timeoutMs?: number;
}

/**
 * Starts the daemon in the foreground as a detached child of this process (one Node.js start-up:
 * a daemon left to daemonize itself would start twice; its log goes to this process's stderr; its
 * exit is known here) and resolves with its pid the moment it reports "ready" on fd 3, once its
 * control socket listens: no polling for the socket. Rejects with EDAEMON when it reports an error,
 * exits first, or stays silent for `timeoutMs` (then it is killed).
 */
export async function spawnForegroundDaemon(o: SpawnDaemonOptions): Promise<number> {
  const names = DAEMON_ENV[o.kind];
  const child = spawn(o.cmd, o.args, {
    stdio: ["ignore", "ignore", "inherit", "pipe"],
    detached: true,
    env: { ...(o.env ?? process.env), [names.foreground]: "1", [names.readyFd]: "3" },
  });
  const pipe = child.stdio[3] as NodeJS.ReadableStream | null;
  let ready = false;
  const answer = await new Promise<string>((resolve) => {
    let text = "";
    const timer = setTimeout(
      () => resolve(`error no answer within ${o.timeoutMs ?? 60_000} ms`),
      o.timeoutMs ?? 60_000,
    );
    const done = (line: string): void => {
      clearTimeout(timer);
      resolve(line);
    };
    pipe?.setEncoding("utf8");
    pipe?.on("data", (d: string) => {
      text += d;
      if (text.includes("\n")) done(text.trim());
    });
    pipe?.on("error", () => undefined);
    child.once("error", (e) => done(`error ${e.message}`));
    child.once("exit", (code, signal) => {
      const how = signal !== null ? `signal ${signal}` : `exit code ${code}`;
      if (ready) o.onExit?.(how, child.pid);
      else done(`error it exited (${how}) before it was ready (its log is above in this log)`);
    });
  });
  (pipe as unknown as { destroy?: () => void } | null)?.destroy?.();
  child.unref();
  if (answer === "ready" && child.pid !== undefined) {
    ready = true;
    return child.pid;
  }
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  throw new PodcryptError("EDAEMON", `${o.what}: ${answer.replace(/^error /, "")}`, {
    context: { daemon: o.what },
  });
}

/**
 * Whether nothing listens on the unix socket `path` (connect refused, or no file): its daemon is
 * dead, even if its persistent TUN device is still there. A daemon that accepts but is slow to
 * answer is alive: never start a second one for its interface.
 */
export async function nothingListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.destroy();
      resolve(e.code === "ECONNREFUSED" || e.code === "ENOENT");
    });
  });
}
