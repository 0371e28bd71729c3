/** Starting the daemons under test (podcrypt's WireGuard and ESP daemons, wireguard-go) inside a namespace. */
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { projectRoot } from "../../src/paths.js";

/** A spawner that runs a command inside a namespace and owns the process (kills it on cleanup). */
export type SpawnInNs = (
  ns: string,
  cmd: string,
  args: readonly string[],
  options?: SpawnOptions,
) => ChildProcess;

/** A daemon started by {@link spawnDaemon}. */
export interface SpawnedDaemon {
  readonly child: ChildProcess;
  /** The last 50 chunks of its stderr, for error messages. */
  readonly stderr: string[];
  /** "exited CODE" (or the signal) once it has exited, else undefined. */
  exited(): string | undefined;
}

/**
 * Starts `cmd args` in the foreground inside `ns`, from the repository root, logging at
 * PODCRYPT_LOG_LEVEL (default warn) with `env` added, and keeps the tail of its stderr and how it
 * exited for the caller's error messages. The caller waits for it to serve.
 */
export function spawnDaemon(
  spawn: SpawnInNs,
  ns: string,
  cmd: string,
  args: readonly string[],
  env: Record<string, string> = {},
): SpawnedDaemon {
  const child = spawn(ns, cmd, args, {
    stdio: ["ignore", "ignore", "pipe"],
    cwd: projectRoot(),
    env: { ...process.env, PODCRYPT_LOG_LEVEL: process.env["PODCRYPT_LOG_LEVEL"] ?? "warn", ...env },
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => {
    stderr.push(d.toString());
    if (stderr.length > 50) stderr.shift();
  });
  let exited: string | undefined;
  child.once("exit", (code, signal) => (exited = `exited ${code ?? signal}`));
  return { child, stderr, exited: () => exited };
}
