/**
 * The userspace ESP daemon behind `podcrypt esp IFNAME`: an {@link EspDatapath} and its
 * {@link EspState}, configured over the JSON control socket of control.ts
 * (`/var/run/podcrypt/esp/IFNAME.sock`, mode 0600). `close()` removes the socket and the interface.
 */
import { mkdirSync, unlinkSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { isPodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { listenUnixOwnerOnly } from "../../platform/unix/listen.js";
import {
  DEFAULT_ESP_SOCKET_DIR,
  espRequestSchema,
  espSocketPath,
  type EspResponse,
  type EspStatus,
} from "./control.js";
import { EspDatapath } from "./datapath.js";
import { EspState } from "./state.js";

export interface EspDaemonOptions {
  ifname: string;
  logger: Logger;
  /** UDP port. Default 4500. */
  port?: number;
  /** Tunnel MTU. Default 1420. */
  mtu?: number;
  /** Control socket directory. Default {@link DEFAULT_ESP_SOCKET_DIR}. */
  socketDir?: string;
  clock?: Clock;
  /** Keep the TUN device when the daemon ends (see EspDatapathOptions.persistent). Default false. */
  persistent?: boolean;
}

/** Longest request line accepted (a set with hundreds of peers fits easily). */
const MAX_LINE = 4 * 1024 * 1024;

export class EspDaemon extends EventEmitter<{ "interface-gone": [] }> {
  readonly state = new EspState();
  readonly datapath: EspDatapath;
  readonly socketPath: string;
  private readonly clock: Clock;
  private readonly server: Server;
  private listening = false;
  private closed = false;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly o: EspDaemonOptions) {
    super();
    this.clock = o.clock ?? systemClock;
    this.datapath = new EspDatapath({
      ifname: o.ifname,
      state: this.state,
      logger: o.logger.child({ part: "datapath" }),
      clock: this.clock,
      ...(o.port !== undefined ? { port: o.port } : {}),
      ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
      ...(o.persistent === true ? { persistent: true } : {}),
    });
    this.socketPath = espSocketPath(o.ifname, o.socketDir);
    this.server = createServer((socket) => this.serve(socket));
  }

  /** Opens the interface and socket, then the control socket. On failure nothing stays open. */
  async start(): Promise<void> {
    this.datapath.on("interface-gone", () => this.emit("interface-gone"));
    this.datapath.start();
    try {
      mkdirSync(this.o.socketDir ?? DEFAULT_ESP_SOCKET_DIR, { recursive: true, mode: 0o755 });
      await listenUnixOwnerOnly(this.server, this.socketPath);
      this.listening = true;
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  status(): EspStatus {
    return this.state.status(this.clock.now(), {
      ifname: this.o.ifname,
      pid: process.pid,
      port: this.datapath.port,
      mtu: this.datapath.mtu,
    });
  }

  /** Answers one request line. Never throws. */
  handle(line: string): EspResponse {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return { ok: false, error: { code: "EPROTO", message: "request is not JSON" } };
    }
    const r = espRequestSchema.safeParse(parsed);
    if (!r.success) {
      const issue = r.error.issues[0];
      const field = issue?.path.join(".") ?? "";
      return {
        ok: false,
        error: {
          code: "EINVALID",
          message: `${field === "" ? "" : `${field}: `}${issue?.message ?? "invalid request"}`,
        },
      };
    }
    const req = r.data;
    try {
      switch (req.op) {
        case "get":
          return { ok: true, status: this.status() };
        case "export-sas":
          this.o.logger.warn("SA key material exported over the control socket (debug export)");
          return { ok: true, sas: this.state.exportSas() };
        case "set": {
          const { op: _op, ...change } = req;
          this.state.apply(change, this.clock.now());
          this.o.logger.info(
            {
              peers: change.peers?.length ?? 0,
              sas: change.sas?.length ?? 0,
              activate: change.activate?.map((a) => `${a.peer}:${a.keyId}`) ?? [],
              removeKeyIds: change.removeKeyIds ?? [],
              removePeers: change.removePeers ?? [],
            },
            "configuration changed",
          );
          return { ok: true, status: this.status() };
        }
      }
    } catch (e) {
      return {
        ok: false,
        error: {
          code: isPodcryptError(e) ? e.code : "EINTERNAL",
          message: e instanceof Error ? e.message : String(e),
        },
      };
    }
  }

  private serve(socket: Socket): void {
    let buf = "";
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.setEncoding("utf8");
    socket.on("error", () => socket.destroy());
    socket.on("data", (d: string) => {
      buf += d;
      if (buf.length > MAX_LINE) {
        socket.end(
          JSON.stringify({ ok: false, error: { code: "EPROTO", message: "request too long" } }) + "\n",
        );
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line !== "") socket.write(JSON.stringify(this.handle(line)) + "\n");
      }
    });
  }

  /** Closes the control socket (removing its file) and the interface. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.listening) {
      this.listening = false;
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already removed
      }
    }
    this.datapath.close();
  }
}
