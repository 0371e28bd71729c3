import { spawn } from "node:child_process";
import { PodcryptError } from "../../errors/index.js";

/**
 * How podcrypt talks to the kernel's netlink families (rtnetlink, generic netlink "wireguard",
 * NETLINK_XFRM): through Debian's `ip` and `wg`, batched. One reconcile pass costs a fixed, small
 * number of processes whatever the peer count (reads: `ip -j`, `ip xfrm`, `wg show all dump`;
 * writes: one `ip -batch` and one `wg syncconf` per changed interface), measured in test/vm/README.md.
 * No npm netlink library speaks NETLINK_XFRM, and the batched tools program 500 peers in well under
 * the 1 s budget, so this port is the one backends use; a native netlink implementation can replace
 * it behind the same interface.
 *
 * Every method takes the network namespace to act in (`undefined`: the caller's own).
 */
export interface KernelCommands {
  /** `ip [-n ns] ARGS...`, returning stdout; `input` goes to its stdin (e.g. a read-only `-batch -`). */
  ip(netns: string | undefined, args: readonly string[], options?: { input?: string }): Promise<string>;
  /**
   * `ip [-n ns] -batch -` with one command per line (without the leading `ip`). Stops at the first
   * failing line and rejects with `ECOMMAND`, naming that line; earlier lines stay applied.
   */
  ipBatch(netns: string | undefined, lines: readonly string[]): Promise<void>;
  /** `wg ARGS...`, returning stdout. */
  wg(netns: string | undefined, args: readonly string[]): Promise<string>;
  /**
   * `wg syncconf IFNAME` with `config` (wg-quick's `[Interface]`/`[Peer]` format, without
   * addresses) fed through a pipe, so the private key never touches a file. syncconf changes only
   * what differs, so sessions of unchanged peers survive.
   */
  wgSyncconf(netns: string | undefined, ifname: string, config: string): Promise<void>;
}

/** Options of {@link ProcessKernelCommands}. */
export interface ProcessKernelCommandsOptions {
  /** Path of `ip` (default "ip", from PATH). */
  ipPath?: string;
  /** Path of `wg` (default "wg"). */
  wgPath?: string;
  /** Per-process timeout in ms (default 30 000). */
  timeoutMs?: number;
}

/** {@link KernelCommands} by spawning Debian's `ip` and `wg`. */
export class ProcessKernelCommands implements KernelCommands {
  private readonly ipPath: string;
  private readonly wgPath: string;
  private readonly timeoutMs: number;

  constructor(options: ProcessKernelCommandsOptions = {}) {
    this.ipPath = options.ipPath ?? "ip";
    this.wgPath = options.wgPath ?? "wg";
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  ip(netns: string | undefined, args: readonly string[], options: { input?: string } = {}): Promise<string> {
    return this.exec(this.ipPath, [...nsArgs(netns), ...args], options.input);
  }

  async ipBatch(netns: string | undefined, lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    for (const line of lines) {
      if (line.includes("\n")) throw new PodcryptError("EINTERNAL", "ip batch line contains a newline");
    }
    try {
      await this.exec(this.ipPath, [...nsArgs(netns), "-batch", "-"], lines.join("\n") + "\n");
    } catch (e) {
      // ip reports "Command failed -:N" for the first failing line (1-based).
      const m = /Command failed -:(\d+)/.exec(e instanceof Error ? e.message : "");
      const failed = m ? lines[Number(m[1]) - 1] : undefined;
      throw new PodcryptError(
        "ECOMMAND",
        `ip -batch failed${failed === undefined ? "" : ` at "${redactBatchLine(failed)}"`}: ${
          e instanceof PodcryptError ? String(e.context.stderr ?? "") : String(e)
        }`.trim(),
        { cause: e, context: { netns, lines: lines.length } },
      );
    }
  }

  wg(netns: string | undefined, args: readonly string[]): Promise<string> {
    if (netns === undefined) return this.exec(this.wgPath, args);
    return this.exec(this.ipPath, ["netns", "exec", netns, this.wgPath, ...args]);
  }

  async wgSyncconf(netns: string | undefined, ifname: string, config: string): Promise<void> {
    // wg reads the file with fopen(); Node's stdin pipes are socketpairs, which /dev/stdin cannot
    // open, so `cat` turns ours into a real pipe.
    const script = 'cat | exec "$0" syncconf "$1" /dev/stdin';
    const argv = ["sh", "-c", script, this.wgPath, ifname];
    if (netns === undefined) await this.exec(argv[0]!, argv.slice(1), config);
    else await this.exec(this.ipPath, ["netns", "exec", netns, ...argv], config);
  }

  private exec(cmd: string, args: readonly string[], input?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], timeout: this.timeoutMs });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", (cause) =>
        reject(
          new PodcryptError("ECOMMAND", `${cmd} could not be started: ${cause.message}`, {
            cause,
            context: { command: `${cmd} ${redactArgs(args)}`, stderr: "" },
          }),
        ),
      );
      child.on("close", (code, signal) => {
        // ip and wg may echo an argument they reject, and arguments fed on stdin carry keys.
        const stderr = redactSecrets(Buffer.concat(err).toString("utf8").trim());
        if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
        else
          reject(
            new PodcryptError(
              "ECOMMAND",
              `${cmd} ${redactArgs(args)} failed (${signal ?? `exit ${String(code)}`})${stderr ? `: ${stderr}` : ""}`,
              {
                context: {
                  command: `${cmd} ${redactArgs(args)}`,
                  stderr,
                  code,
                  signal,
                  ...(code === null ? {} : { exitCode: code }),
                },
              },
            ),
          );
      });
      child.stdin.on("error", () => undefined); // the child may exit before reading everything
      child.stdin.end(input ?? "");
    });
  }
}

function nsArgs(netns: string | undefined): string[] {
  return netns === undefined ? [] : ["-n", netns];
}

/** Hides key material (hex after `aead`/`enc`/`auth`) from error messages. */
export function redactBatchLine(line: string): string {
  return line.replace(/\b(aead|enc|auth|auth-trunc|comp)\s+(\S+)\s+0x[0-9a-fA-F]+/g, "$1 $2 0x<redacted>");
}

/**
 * Hides anything that may be key material in tool output: long hex strings (XFRM keys) and
 * base64 32-byte keys (WireGuard). Public keys are hidden too; messages stay actionable.
 */
export function redactSecrets(text: string): string {
  return redactBatchLine(text)
    .replace(/\b(0x)?[0-9a-fA-F]{32,}\b/g, "<redacted>")
    .replace(/[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=/g, "<redacted key>");
}

function redactArgs(args: readonly string[]): string {
  return redactSecrets(args.join(" ").slice(0, 300));
}
