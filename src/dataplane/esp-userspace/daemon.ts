/**
 * The userspace ESP daemon behind `podcrypt esp IFNAME`: an {@link EspDatapath} and its
 * {@link EspState}, configured over the JSON control socket of control.ts
 * (`/var/run/podcrypt/esp/IFNAME.sock`, mode 0600). `close()` removes the socket and the interface.
 */
import type { Socket } from "node:net";
import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { z } from "zod";
import { isPodcryptError, PodcryptError } from "../../errors/index.js";
import { handedFdsSchema, type HandedFds } from "../../platform/handover/fds.js";
import { startOrTakeOver } from "../../platform/handover/client.js";
import type { Logger } from "../../log/logger.js";
import { OwnerOnlySocketServer } from "../../platform/unix/listen.js";
import { espRequestSchema, espSocketPath, type EspResponse, type EspStatus } from "./control.js";
import { EspDatapath } from "./datapath.js";
import { espHandoverSchema, EspState } from "./state.js";

const handoverAnswerSchema = z.object({
  ok: z.literal(true),
  handover: z.object({ fds: handedFdsSchema, state: espHandoverSchema }),
});
const errorAnswerSchema = z.object({
  ok: z.literal(false),
  error: z.object({ code: z.string(), message: z.string() }),
});

/** Whether a request line is `{"op":"handover"}` (answered by the connection, not by `handle`). */
function isHandoverRequest(line: string): boolean {
  try {
    return (JSON.parse(line) as { op?: unknown } | null)?.op === "handover";
  } catch {
    return false;
  }
}

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
  /**
   * Take over from the daemon running on this interface (a planned restart, {@link EspDaemon.start})
   * instead of opening the interface and socket. Default false.
   */
  takeOver?: boolean;
  /** TUN offloads (see EspDatapathOptions.offload). Default true. */
  offload?: boolean;
}

/** Longest request line accepted (a set with hundreds of peers fits easily). */
const MAX_LINE = 4 * 1024 * 1024;

/**
 * `handed-over`: a successor took the interface, socket and SAs over (`{"op":"handover"}`); this
 * daemon reads and sends nothing any more and should exit.
 */
export class EspDaemon extends EventEmitter<{ "interface-gone": []; "handed-over": [] }> {
  readonly state = new EspState();
  readonly datapath: EspDatapath;
  private readonly clock: Clock;
  private readonly control: OwnerOnlySocketServer;
  private closed = false;
  private handedOver = false;

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
      ...(o.offload === false ? { offload: false } : {}),
    });
    this.control = new OwnerOnlySocketServer(espSocketPath(o.ifname, o.socketDir), (socket) =>
      this.serve(socket),
    );
  }

  /** The control socket's path (`/var/run/podcrypt/esp/IFNAME.sock` by default). */
  get socketPath(): string {
    return this.control.path;
  }

  /**
   * Opens the interface and socket, then the control socket. On failure nothing stays open.
   *
   * With `takeOver` (a planned restart) it asks the daemon serving the control socket to hand over
   * (`{"op":"handover"}`): that daemon stops reading and sending, answers with its TUN and UDP fds
   * and its whole state (peers, SAs with their keys, sequence numbers and replay windows, the SA
   * instance) and stops listening; this one takes duplicates of the fds (pidfd_getfd, the same open
   * files: nothing queued in the kernel is lost), continues every outbound SA after the last
   * sequence number the old one used, listens on the control socket, and lets the old daemon go,
   * which then exits. The state travels only over the 0600 control socket and is never logged.
   */
  async start(): Promise<void> {
    this.datapath.on("interface-gone", () => this.emit("interface-gone"));
    await startOrTakeOver({
      takeOver: this.o.takeOver === true,
      path: this.socketPath,
      request: JSON.stringify({ op: "handover" }) + "\n",
      resume: (answer) => {
        const r = handoverAnswerSchema.safeParse(answer);
        if (!r.success) {
          const e = errorAnswerSchema.safeParse(answer);
          throw new PodcryptError(
            "EHANDOVER",
            `the ESP daemon at ${this.socketPath} refused to hand over: ${e.success ? `${e.data.error.code} ${e.data.error.message}` : "unexpected answer"}`,
          );
        }
        this.datapath.start(r.data.handover.fds);
        this.state.takeOver(r.data.handover.state, this.clock.now());
        this.o.logger.info(
          {
            from: r.data.handover.fds.pid,
            peers: this.state.peers.size,
            sas: this.state.db.all().length,
            instance: this.state.local.instance,
          },
          "took over the interface, socket and SAs of the previous daemon",
        );
      },
      fresh: () => this.datapath.start(),
      listen: () => this.control.listen(),
      close: () => this.close(),
    });
  }

  /**
   * Hands everything to a successor (see {@link start}): stops the packet path for good, exports
   * the state (every outbound SA's sequence space goes with it: this daemon can never number
   * another packet), stops listening (the successor listens next) and answers on `socket`. Emits
   * `handed-over` when the successor closes the connection, having taken the fds.
   */
  private handOver(socket: Socket): void {
    if (this.handedOver || !this.control.isListening) {
      socket.write(
        JSON.stringify({ ok: false, error: { code: "ESTATE", message: "already handed over" } }) + "\n",
      );
      return;
    }
    let fds: HandedFds;
    try {
      fds = this.datapath.freeze();
    } catch (e) {
      socket.write(
        JSON.stringify({
          ok: false,
          error: { code: "ESTATE", message: e instanceof Error ? e.message : String(e) },
        }) + "\n",
      );
      return;
    }
    this.handedOver = true;
    const state = this.state.handOver(this.clock.now());
    this.control.stopListening();
    this.o.logger.info(
      { peers: state.peers.length, sas: state.sas.length },
      "handing over to a successor daemon",
    );
    socket.once("close", () => this.emit("handed-over"));
    socket.write(JSON.stringify({ ok: true, handover: { fds, state } }) + "\n");
  }

  status(): EspStatus {
    return this.state.status(this.clock.now(), {
      ifname: this.o.ifname,
      pid: process.pid,
      port: this.datapath.port,
      mtu: this.datapath.mtu,
      tun: this.datapath.tunOffload(),
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
        if (line === "") continue;
        if (isHandoverRequest(line)) {
          this.handOver(socket);
          return;
        }
        socket.write(JSON.stringify(this.handle(line)) + "\n");
      }
    });
  }

  /** Closes the control socket (removing its file) and the interface. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.control.close();
    this.datapath.close();
  }
}
