/**
 * The ESP-in-UDP socket of the kernel XFRM data plane (RFC 3948). The kernel decapsulates ESP that
 * arrives in UDP only on a socket marked UDP_ENCAP_ESPINUDP, so some process must hold one on port
 * 4500 for as long as SAs with `encap espinudp` exist. That process is a tiny daemon of its own
 * (`podcrypt xfrm-encap`), not the agent: like the kernel state, it survives agent restarts, so
 * restarting the agent never interrupts inbound traffic.
 *
 * The daemon answers on an abstract Unix socket, `@podcrypt-espinudp-PORT`. Abstract socket names
 * belong to the network namespace, so "is a holder running here?" is one connect, without
 * processes or files, and two nodes of a local cluster (two namespaces) never see each other's.
 * The name is also the daemon's lock: a second one cannot listen on it.
 */
import { spawn } from "node:child_process";
import { closeSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { native } from "../../native.js";
import { projectRoot } from "../../paths.js";

/** The abstract socket name of the holder of `port` (leading NUL: abstract namespace). */
export function holderSocketName(port: number): string {
  return `\0podcrypt-espinudp-${port}`;
}

/** What a running holder reports. */
export interface HolderStatus {
  pid: number;
  port: number;
  /** Address families it holds a socket of. */
  families: Array<4 | 6>;
}

/**
 * Asks the holder of `port` in this process's namespace for its status (`op` "status"), or to
 * exit ("stop"). Resolves undefined when none answers within `timeoutMs`.
 */
export function askHolder(
  port: number,
  op: "status" | "stop" = "status",
  timeoutMs = 2000,
): Promise<HolderStatus | undefined> {
  return new Promise((resolve) => {
    const sock = createConnection(holderSocketName(port));
    let text = "";
    const done = (v: HolderStatus | undefined): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(`${op}\n`));
    sock.on("data", (d: string) => {
      text += d;
      if (!text.includes("\n")) return;
      try {
        done(JSON.parse(text) as HolderStatus);
      } catch {
        done(undefined);
      }
    });
    sock.on("error", () => done(undefined));
    sock.on("end", () => done(undefined));
  });
}

/**
 * The daemon's side: holds the UDP_ENCAP_ESPINUDP sockets (IPv4, and IPv6 when the namespace has
 * it) and answers on the abstract socket. Sockets are opened before the name is bound, so a holder
 * that answers is a holder that holds.
 */
export class EspInUdpHolder {
  private readonly fds: number[] = [];
  private server: Server | undefined;
  private families: Array<4 | 6> = [];
  private stopped: (() => void) | undefined;

  constructor(
    private readonly port: number,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const addon = native();
    try {
      this.fds.push(addon.espInUdpOpen(this.port, 4));
      this.families.push(4);
    } catch (cause) {
      throw new PodcryptError(
        "EENCAP",
        `cannot hold UDP port ${this.port} for kernel ESP in UDP: ${(cause as Error).message}` +
          " (another program, e.g. a userspace ESP daemon, may be bound to it)",
        { cause, context: { port: this.port } },
      );
    }
    try {
      this.fds.push(addon.espInUdpOpen(this.port, 6));
      this.families.push(6);
    } catch (e) {
      // A namespace without IPv6 only ever receives IPv4 ESP.
      this.logger.debug({ port: this.port, err: e }, "no IPv6 ESP-in-UDP socket");
    }
    const server = createServer((conn) => {
      conn.setEncoding("utf8");
      let line = "";
      conn.on("data", (d: string) => {
        line += d;
        if (!line.includes("\n")) return;
        const status: HolderStatus = { pid: process.pid, port: this.port, families: this.families };
        conn.end(JSON.stringify(status) + "\n");
        if (line.startsWith("stop")) this.stopped?.();
      });
      conn.on("error", () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (cause) =>
        reject(
          new PodcryptError("EENCAP", `another ESP-in-UDP holder of port ${this.port} runs here`, { cause }),
        ),
      );
      server.listen(holderSocketName(this.port), () => resolve());
    });
    this.server = server;
  }

  /** Resolves when asked to stop over the control socket. */
  untilStopRequested(): Promise<void> {
    return new Promise((resolve) => (this.stopped = resolve));
  }

  close(): void {
    this.server?.close();
    this.server = undefined;
    for (const fd of this.fds.splice(0)) closeSync(fd);
  }
}

/** How the XFRM backend makes sure a holder runs (real: {@link ProcessEncapHolder}). */
export interface EncapHolderPort {
  /** Starts a holder unless one answers. */
  ensure(): Promise<void>;
  /** Stops the holder, if one runs. */
  stop(): Promise<void>;
}

/** {@link EncapHolderPort} that starts `podcrypt xfrm-encap` detached in this namespace. */
export class ProcessEncapHolder implements EncapHolderPort {
  private known = false;

  constructor(
    private readonly port: number,
    private readonly logger: Logger,
    /** Command that runs the podcrypt CLI. Default `node bin/podcrypt`. */
    private readonly command: { cmd: string; args: string[] } = {
      cmd: process.execPath,
      args: [join(projectRoot(), "bin", "podcrypt")],
    },
  ) {}

  async ensure(): Promise<void> {
    // One connect per pass: the holder may have been killed behind our back.
    if ((await askHolder(this.port)) !== undefined) {
      this.known = true;
      return;
    }
    if (this.known) this.logger.warn({ port: this.port }, "ESP-in-UDP holder gone; starting a new one");
    this.known = false;
    const child = spawn(this.command.cmd, [...this.command.args, "xfrm-encap", "--port", String(this.port)], {
      detached: true,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    let exited: string | undefined;
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (d: string) => (err = (err + d).slice(-2000)));
    child.on("error", (e) => (exited = e.message));
    child.on("exit", (code, signal) => (exited = `exited (${code ?? signal})`));
    child.unref();
    try {
      // Up to a minute: a Node.js process can take many seconds to start on a loaded node.
      for (let i = 0; i < 600 && exited === undefined; i++) {
        if ((await askHolder(this.port, "status", 500)) !== undefined) {
          this.known = true;
          this.logger.info({ port: this.port, pid: child.pid }, "ESP-in-UDP holder started");
          return;
        }
        await sleep(100);
      }
    } finally {
      child.stderr?.destroy();
    }
    // A holder that lost a start race to another one exits; the other one answers.
    if ((await askHolder(this.port)) !== undefined) return;
    const why = /"msg":"([^"]*)"/.exec(err)?.[1] ?? err.trim().split("\n").at(-1) ?? "";
    throw new PodcryptError(
      "EENCAP",
      `podcrypt xfrm-encap --port ${this.port} ${exited ?? "did not answer within 60 s"}${why ? `: ${why}` : ""}`,
      { context: { port: this.port } },
    );
  }

  async stop(): Promise<void> {
    this.known = false;
    if ((await askHolder(this.port, "stop")) !== undefined)
      this.logger.info({ port: this.port }, "ESP-in-UDP holder stopped");
  }
}
