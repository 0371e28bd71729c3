/**
 * What the benchmarks record with their figures: the machine, the versions of what ran and the
 * load average (the development machine is shared, so a figure means little without it).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { projectRoot } from "../src/paths.js";

/** The first line of `cmd args` (a version), or "<cmd> (version unknown)". */
export function toolVersion(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split("\n")[0]!
      .trim();
  } catch {
    return `${cmd} (version unknown)`;
  }
}

/**
 * CPU model, cores, kernel, Node and podcrypt (package version and commit), then `tools`
 * (name → version, from {@link toolVersion}).
 */
export function machine(tools: Record<string, string> = {}): Record<string, string> {
  let commit = "";
  try {
    commit = execFileSync("git", ["-C", projectRoot(), "rev-parse", "--short", "HEAD"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    // not a git checkout: the version alone
  }
  const version = (JSON.parse(readFileSync(`${projectRoot()}/package.json`, "utf8")) as { version: string })
    .version;
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown CPU",
    cores: String(cpus().length),
    kernel: release(),
    node: process.version,
    ...tools,
    podcrypt: commit === "" ? version : `${version} (${commit})`,
  };
}

/** The 1, 5 and 15 minute load averages, as /proc/loadavg gives them. */
export const loadAverage = (): string =>
  readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

/** CPU seconds (user + system) process `pid` has used so far, from /proc/PID/stat; undefined once it is gone. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}
