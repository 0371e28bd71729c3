/**
 * Owner-only unix socket servers, for the data-plane daemons' sockets (the WireGuard UAPI, the
 * WireGuard status socket, the ESP control socket).
 */
import { chmodSync, mkdirSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { PodcryptError } from "../../errors/index.js";

/**
 * One daemon socket at `path`: it listens owner-only (its directory created 0755, as
 * wireguard-go creates /var/run/wireguard), keeps track of its connections, and removes its file
 * whenever it stops listening. A daemon handing over to a successor stops listening first (the
 * successor listens next) and closes later, once the handover connection is done.
 */
export class OwnerOnlySocketServer {
  private readonly server: Server;
  private readonly connections = new Set<Socket>();
  private listening = false;

  /** `serve` gets each connection; `allowHalfOpen` as net.createServer's (default false). */
  constructor(
    readonly path: string,
    serve: (socket: Socket) => void,
    options: { allowHalfOpen?: boolean } = {},
  ) {
    this.server = createServer({ allowHalfOpen: options.allowHalfOpen === true }, (socket) => {
      this.connections.add(socket);
      socket.on("close", () => this.connections.delete(socket));
      serve(socket);
    });
  }

  /** Whether it listens now: after {@link listen}, until {@link stopListening} or {@link close}. */
  get isListening(): boolean {
    return this.listening;
  }

  /** Creates the socket's directory and starts listening (a stale socket file is replaced). */
  async listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    await listenUnixOwnerOnly(this.server, this.path);
    this.listening = true;
  }

  /** Stops accepting connections and removes the socket file, keeping the open connections. */
  stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    this.server.close();
    removeSocketFile(this.path);
  }

  /** Drops the open connections, stops listening and removes the socket file. Idempotent. */
  async close(): Promise<void> {
    for (const c of this.connections) c.destroy();
    if (!this.listening) return;
    this.listening = false;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    removeSocketFile(this.path);
  }
}

function removeSocketFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already removed (net.Server.close unlinks the socket file it created)
  }
}

/** Opens a unix socket server at `path` like wireguard-go's UAPIOpen: owner-only, stale sockets replaced. */
async function listenUnixOwnerOnly(server: Server, path: string): Promise<void> {
  const attempt = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once("error", onError);
      // umask 077 while binding so the socket is never reachable by others, not even briefly.
      const old = process.umask(0o077);
      try {
        server.listen(path, () => {
          server.removeListener("error", onError);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    });
  try {
    await attempt();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    const live = await new Promise<boolean>((resolve) => {
      const c = connect(path);
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (live)
      throw new PodcryptError("EUAPI_IN_USE", `UAPI socket ${path} is in use by another process`, {
        context: { path },
      });
    unlinkSync(path);
    await attempt();
  }
  chmodSync(path, 0o600);
}
