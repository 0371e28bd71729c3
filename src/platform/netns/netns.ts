import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { promisify } from "node:util";
import { PodcryptError } from "../../errors/index.js";
import { redactSecrets } from "../netlink/kernel-commands.js";

const execFileP = promisify(execFile);

/** Runs a command (no shell) and returns stdout; failures carry stderr in the message. */
export async function run(
  cmd: string,
  args: readonly string[],
  options: {
    input?: string;
    timeoutMs?: number;
    /** Told of the process once it is spawned (a caller that signals it: verify's early end). */
    spawned?: (child: ChildProcess) => void;
  } = {},
): Promise<string> {
  try {
    const child = execFileP(cmd, args, { timeout: options.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 });
    options.spawned?.(child.child);
    if (options.input !== undefined) {
      // A command that exits without reading all of its input (it failed early) closes the pipe:
      // its exit status reports that, not an EPIPE thrown from here.
      child.child.stdin?.on("error", () => undefined);
      child.child.stdin?.end(options.input);
    }
    const { stdout } = await child;
    return stdout;
  } catch (cause) {
    const c = cause as { stderr?: string; killed?: boolean; code?: number | string; signal?: string | null };
    // Tools may echo an argument they reject; arguments and input may carry keys.
    const stderr = redactSecrets(c.stderr?.trim() ?? "");
    const line = redactSecrets(`${cmd} ${args.join(" ")}`);
    const how =
      c.killed === true
        ? `timed out after ${(options.timeoutMs ?? 30_000) / 1000} s`
        : typeof c.code === "number"
          ? `failed with exit code ${c.code}`
          : "failed";
    // The command line can be long (batches, target lists): its start names it well enough.
    throw new PodcryptError(
      "ECOMMAND",
      `${line.length > 160 ? `${line.slice(0, 160)}...` : line} ${how}${stderr ? `: ${stderr}` : ""}`,
      {
        cause,
        context: {
          command: line.length > 300 ? `${line.slice(0, 300)}...` : line,
          ...(typeof c.code === "number" ? { exitCode: c.code } : {}),
          ...(typeof c.code === "string" ? { errno: c.code } : {}),
          ...(typeof c.signal === "string" ? { signal: c.signal } : {}),
          stderr,
        },
      },
    );
  }
}

/** Runs `cmd` inside network namespace `ns` (`ip netns exec`). */
export function runIn(
  ns: string,
  cmd: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  return run("ip", ["netns", "exec", ns, cmd, ...args], options);
}

/** Spawns a long-running process inside `ns`. */
export function spawnIn(
  ns: string,
  cmd: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  return spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: "ignore", ...options });
}

/** Names of the network namespaces that exist now. */
export async function listNetns(): Promise<string[]> {
  const out = await run("ip", ["-j", "netns", "list"]).catch(() => "[]");
  if (out.trim() === "") return [];
  return (JSON.parse(out) as Array<{ name: string }>).map((n) => n.name);
}

/** Deletes a namespace, killing what still runs in it first; absent namespaces are not an error. */
export async function deleteNetns(ns: string): Promise<void> {
  const pids = (await run("ip", ["netns", "pids", ns]).catch(() => ""))
    .split(/\s+/)
    .filter((p) => p !== "")
    .map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await run("ip", ["netns", "del", ns]).catch(() => undefined);
}
