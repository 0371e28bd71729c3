import { execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after } from "node:test";
import { deleteNetns, listNetns, run, runIn, spawnIn } from "../../src/platform/netns/netns.js";

/** Prefix of every namespace the test suites create, so a crashed run can be swept. */
export const TEST_NETNS_PREFIX = "pct-";

/**
 * A set of network namespaces (and processes in them) that removes everything it made in
 * `cleanup()`, and at process exit if `cleanup()` was never reached. Free of node:test, so that the
 * benchmarks can use it; tests use {@link NetnsLab}.
 */
export class NetnsGroup {
  readonly id = randomBytes(3).toString("hex");
  private readonly namespaces: string[] = [];
  private readonly processes: ChildProcess[] = [];
  private cleaned = false;
  private readonly onExit = (): void => this.cleanupSync();

  constructor() {
    process.once("exit", this.onExit);
  }

  /** Creates namespace `pct-<id>-<name>` with loopback up and returns its name. */
  async netns(name: string): Promise<string> {
    const ns = `${TEST_NETNS_PREFIX}${this.id}-${name}`;
    await run("ip", ["netns", "add", ns]);
    this.namespaces.push(ns);
    await runIn(ns, "ip", ["link", "set", "lo", "up"]);
    return ns;
  }

  /** Joins `a` and `b` with a veth pair (`ifA` in a, `ifB` in b), both up, with optional addresses. */
  async veth(
    a: string,
    ifA: string,
    b: string,
    ifB: string,
    addrA?: string[],
    addrB?: string[],
  ): Promise<void> {
    const tmpA = `v${this.id}${randomBytes(2).toString("hex")}`;
    const tmpB = `w${this.id}${randomBytes(2).toString("hex")}`;
    await run("ip", ["link", "add", tmpA, "type", "veth", "peer", "name", tmpB]);
    await run("ip", ["link", "set", tmpA, "netns", a, "name", ifA]);
    await run("ip", ["link", "set", tmpB, "netns", b, "name", ifB]);
    for (const [ns, ifn, addrs] of [
      [a, ifA, addrA ?? []],
      [b, ifB, addrB ?? []],
    ] as const) {
      for (const addr of addrs)
        await runIn(ns, "ip", ["addr", "add", addr, "dev", ifn, ...(addr.includes(":") ? ["nodad"] : [])]);
      await runIn(ns, "ip", ["link", "set", ifn, "up"]);
    }
  }

  /** Spawns a process in `ns`; it is killed at cleanup. */
  spawn(
    ns: string,
    cmd: string,
    args: readonly string[],
    options: Parameters<typeof spawnIn>[3] = {},
  ): ChildProcess {
    const child = spawnIn(ns, cmd, args, options);
    this.processes.push(child);
    return child;
  }

  /**
   * Kills every process and deletes every namespace this group made. Idempotent. With `graceMs`,
   * the processes get SIGTERM and that long to exit before the SIGKILL.
   */
  async cleanup(graceMs = 0): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    process.removeListener("exit", this.onExit);
    if (graceMs > 0) {
      for (const p of this.processes) p.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, graceMs));
    }
    for (const p of this.processes) p.kill("SIGKILL");
    for (const ns of this.namespaces) await deleteNetns(ns);
  }

  private cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const p of this.processes) p.kill("SIGKILL");
    // Synchronous last resort at process exit: async work no longer runs here.
    for (const ns of this.namespaces) {
      try {
        const pids = execFileSync("ip", ["netns", "pids", ns]).toString().split(/\s+/).filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), "SIGKILL");
      } catch {
        // ignore
      }
      try {
        execFileSync("ip", ["netns", "del", ns]);
      } catch {
        // ignore
      }
    }
  }
}

/**
 * A {@link NetnsGroup} owned by one test file: its `cleanup()` is also registered with node:test's
 * `after` hook, so a failing or interrupted test still leaves nothing behind.
 */
export class NetnsLab extends NetnsGroup {
  constructor() {
    super();
    after(() => this.cleanup());
  }
}

/** Removes namespaces left by an earlier crashed run (called once by the test script). */
export async function sweepStaleTestNetns(): Promise<string[]> {
  const stale = (await listNetns()).filter((n) => n.startsWith(TEST_NETNS_PREFIX));
  for (const ns of stale) await deleteNetns(ns);
  return stale;
}
