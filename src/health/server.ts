/**
 * The daemons' HTTP endpoints: `/healthz` (liveness: restart me if failing), `/readyz`
 * (readiness) and `/metrics` (Prometheus text format, from a prom-client Registry). The kubelet
 * probes the first two (src/cli/manifests/workloads.ts); anything else is 404.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { PodcryptError } from "../errors/index.js";
import type { Logger } from "../log/logger.js";

/** The outcome of one check: `ok`, and why (one line per problem, or what is fine). */
export interface CheckResult {
  readonly ok: boolean;
  readonly detail: string;
}

/** A health check; must answer within the probe's timeout (1-2 s). */
export type HealthCheck = () => CheckResult | Promise<CheckResult>;

/** Options of the health server. */
export interface HealthServerOptions {
  host: string;
  /** 0: any free port (see {@link HealthServer.port}). */
  port: number;
  liveness: HealthCheck;
  readiness: HealthCheck;
  registry: Registry;
  logger: Logger;
}

/** The HTTP server of /healthz, /readyz and /metrics. */
export class HealthServer {
  private constructor(
    private readonly server: Server,
    private readonly o: HealthServerOptions,
  ) {}

  /** Listens; a PodcryptError (EHEALTHLISTEN) names the address when it cannot. */
  static async start(o: HealthServerOptions): Promise<HealthServer> {
    const server = createServer();
    const hs = new HealthServer(server, o);
    server.on("request", (req, res) => void hs.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          new PodcryptError(
            "EHEALTHLISTEN",
            `cannot listen on ${o.host}:${o.port} for /healthz, /readyz and /metrics: ${e.code ?? e.message} ` +
              `(choose another address with --health-address, or --health-address off)`,
            { cause: e, context: { host: o.host, port: o.port } },
          ),
        ),
      );
      server.listen(o.port, o.host, () => resolve());
    });
    // Probes and scrapes are short: do not let idle keep-alive sockets hold the process.
    server.keepAliveTimeout = 5000;
    return hs;
  }

  /** The port it listens on. */
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (req.method !== "GET" && req.method !== "HEAD") {
        send(res, 405, "text/plain", "only GET and HEAD\n");
        return;
      }
      if (path === "/healthz" || path === "/readyz") {
        const r = await (path === "/healthz" ? this.o.liveness : this.o.readiness)();
        send(res, r.ok ? 200 : 503, "text/plain; charset=utf-8", `${r.ok ? "ok" : "not ok"}: ${r.detail}\n`);
        if (!r.ok) this.o.logger.debug({ path, detail: r.detail }, "probe failed");
        return;
      }
      if (path === "/metrics") {
        send(res, 200, this.o.registry.contentType, await this.o.registry.metrics());
        return;
      }
      send(res, 404, "text/plain", "not found: /healthz, /readyz, /metrics\n");
    } catch (e) {
      this.o.logger.warn({ path, err: (e as Error).message }, "health endpoint failed");
      send(res, 500, "text/plain", `error: ${(e as Error).message}\n`);
    }
  }

  /** Stops listening and closes open connections. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

function send(res: ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}
