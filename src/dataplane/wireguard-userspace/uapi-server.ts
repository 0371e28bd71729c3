import type { Socket } from "node:net";
import { join } from "node:path";
import type { Logger } from "../../log/logger.js";
import { OwnerOnlySocketServer } from "../../platform/unix/listen.js";
import { executeGet, executeSet, type UapiResult } from "../../wireguard/uapi/apply.js";
import { UapiErrno } from "../../wireguard/uapi/errors.js";
import { errnoTrailer } from "../../wireguard/uapi/protocol.js";
import type { UapiDevice } from "../../wireguard/uapi/types.js";

/** Where wireguard-go and `wg` put UAPI sockets (ipc/uapi_unix.go `socketDirectory`). */
export const DEFAULT_SOCKET_DIR = "/var/run/wireguard";

/** The UAPI socket path of an interface: `DIR/IFNAME.sock`. */
export function uapiSocketPath(ifname: string, dir = DEFAULT_SOCKET_DIR): string {
  return join(dir, `${ifname}.sock`);
}

/** Largest request accepted on one connection (a `wg setconf` of thousands of peers fits). */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

/** Options of {@link UapiServer}. */
export interface UapiServerOptions {
  /** Interface name; the socket is `socketDir/IFNAME.sock`. */
  readonly ifname: string;
  readonly device: UapiDevice;
  readonly logger: Logger;
  /** Default {@link DEFAULT_SOCKET_DIR}. */
  readonly socketDir?: string;
  /**
   * podcrypt's extension for a planned restart: `handover=1` (a line of its own) is answered by
   * this, on the connection, between other requests (never during a `set`). Without it the line
   * is an unknown operation, as in wireguard-go.
   */
  readonly onHandover?: (socket: Socket) => void;
}

/**
 * The UAPI socket server (https://www.wireguard.com/xplatform/): one connection carries one or
 * more `get=1`/`set=1` requests, each answered with its lines and `errno=N` plus a blank line, as
 * wireguard-go's IpcHandle does (`wg` sends one request and closes). Requests are applied one at a
 * time across connections. An unknown operation line closes the connection.
 */
export class UapiServer {
  private readonly server: OwnerOnlySocketServer;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: UapiServerOptions) {
    this.server = new OwnerOnlySocketServer(
      uapiSocketPath(options.ifname, options.socketDir),
      (socket) => this.handle(socket),
      { allowHalfOpen: true },
    );
  }

  /** The socket's path, `DIR/IFNAME.sock`. */
  get path(): string {
    return this.server.path;
  }

  /** Creates the socket directory (0755, as wireguard-go) and starts listening. */
  async listen(): Promise<void> {
    await this.server.listen();
    this.options.logger.info({ socket: this.path }, "UAPI listening");
  }

  /** Stops accepting, drops open connections and removes the socket file. Idempotent. */
  async close(): Promise<void> {
    await this.server.close();
  }

  /**
   * Stops accepting connections and removes the socket file, keeping the open connections (a
   * daemon handing over: its successor listens next while this one still answers on the
   * handover connection).
   */
  stopListening(): void {
    this.server.stopListening();
  }

  private serialized<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private logResult(op: string, r: UapiResult): void {
    if (r.error !== undefined)
      this.options.logger.warn({ op, errno: r.errno, err: r.error.message }, "UAPI request failed");
  }

  private handle(socket: Socket): void {
    socket.on("error", () => socket.destroy());
    let buf = "";
    let ended = false;
    let busy = false;

    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        for (;;) {
          const nl = buf.indexOf("\n");
          if (nl < 0) {
            if (ended) socket.end();
            return;
          }
          const op = buf.slice(0, nl);
          if (op === "get=1") {
            if (buf.length < nl + 2) {
              if (ended) socket.end();
              return;
            }
            const next = buf[nl + 1];
            buf = buf.slice(nl + 2);
            if (next !== "\n") {
              socket.write(errnoTrailer(UapiErrno.INVALID));
              this.options.logger.warn({ op: "get" }, "UAPI get with trailing characters");
              continue;
            }
            const r = await this.serialized(() => executeGet(this.options.device));
            this.logResult("get", r);
            socket.write(r.text + errnoTrailer(r.errno));
          } else if (op === "set=1") {
            const rest = buf.slice(nl + 1);
            let end = rest.startsWith("\n") ? 0 : rest.indexOf("\n\n");
            let consumed: number;
            if (end >= 0) {
              consumed = end + (end === 0 ? 1 : 2);
              end = end === 0 ? 0 : end + 1;
            } else if (ended) {
              end = rest.length;
              consumed = rest.length;
            } else {
              return;
            }
            const body = rest.slice(0, end);
            buf = rest.slice(consumed);
            const r = await this.serialized(() => executeSet(this.options.device, body));
            this.logResult("set", r);
            socket.write(errnoTrailer(r.errno));
          } else if (op === "handover=1" && this.options.onHandover !== undefined) {
            const onHandover = this.options.onHandover;
            buf = "";
            await this.serialized(() => onHandover(socket));
            return;
          } else {
            this.options.logger.warn({ length: op.length }, "invalid UAPI operation, closing connection");
            socket.destroy();
            return;
          }
        }
      } finally {
        busy = false;
      }
    };

    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) {
        this.options.logger.warn({ bytes: buf.length }, "UAPI request too large, closing connection");
        socket.destroy();
        return;
      }
      void pump();
    });
    socket.on("end", () => {
      ended = true;
      void pump();
    });
  }
}
