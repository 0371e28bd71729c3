/**
 * The daemons' HTTP endpoints: `/healthz` (liveness: restart me if failing), `/readyz`
 * (readiness), `/metrics` (Prometheus text format, from a prom-client Registry) and `/statusz`
 * (the checks' details). The kubelet probes the first two (src/cli/manifests/workloads.ts);
 * anything else is 404.
 *
 * What each tells whom (docs/health.md):
 * - `/healthz` and `/readyz` are open (the kubelet sends no credentials) and answer `ok: ...`
 *   with fixed texts, or `not ok: CODE[,CODE]` with short stable codes only ({@link CheckResult}):
 *   never an error message, which could name hosts, paths or datastore internals.
 * - `/statusz` has the details (error messages included), as JSON: with a token configured, to a
 *   request carrying it (`Authorization: Bearer TOKEN`); without one, to loopback clients only.
 * - `/metrics` is open without a token, and requires it with one (Prometheus `authorization`).
 * The daemons listen on loopback by default; the manifests pass the pod's (host's) IP.
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIP, type AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { PodcryptError } from "../errors/index.js";
import type { Logger } from "../log/logger.js";
import { statusPageHtml } from "../statuspage/page.js";
import type { StatusView } from "../statuspage/view.js";

/**
 * The outcome of one check: `ok`; when not ok, a short stable `code` (`datastore-unreachable`,
 * `reconcile-failing`, ...; several joined with ",") that `/readyz` and `/healthz` show; and why in
 * `detail` (one line per problem, or what is fine), which only `/statusz` shows when not ok.
 */
export interface CheckResult {
  readonly ok: boolean;
  readonly code?: string;
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
  /**
   * Bearer token that `/metrics` and `/statusz` require (read from `--metrics-token-file`).
   * Undefined: `/metrics` is open and `/statusz` answers loopback clients only.
   */
  token?: string | undefined;
  /**
   * The controller's status page: with it, `/status` serves the page (static HTML, open like the
   * probes: it holds no data) and `/status.json` the data, which requires the token like `/metrics`.
   */
  status?: () => Promise<StatusView>;
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback: a client on the daemon's own host (namespace). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (isIP(a) === 4) return a.startsWith("127.");
  return a === "::1";
}

/** Whether `header` (an Authorization header) carries exactly `token`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (m === null) return false;
  const given = Buffer.from(m[1]!);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
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
        send(
          res,
          r.ok ? 200 : 503,
          "text/plain; charset=utf-8",
          r.ok ? `ok: ${r.detail}\n` : `not ok: ${r.code ?? "failed"}\n`,
        );
        if (!r.ok) this.o.logger.debug({ path, code: r.code, detail: r.detail }, "probe failed");
        return;
      }
      if (path === "/metrics") {
        if (this.o.token !== undefined && !this.authorized(req, res)) return;
        send(res, 200, this.o.registry.contentType, await this.o.registry.metrics());
        return;
      }
      if (this.o.status !== undefined && path === "/status") {
        send(res, 200, "text/html; charset=utf-8", statusPageHtml(), PAGE_HEADERS);
        return;
      }
      if (this.o.status !== undefined && path === "/status.json") {
        if (this.o.token !== undefined && !this.authorized(req, res)) return;
        send(res, 200, "application/json", `${JSON.stringify(await this.o.status())}\n`, {
          "Cache-Control": "no-store",
        });
        return;
      }
      if (path === "/statusz") {
        if (this.o.token !== undefined) {
          if (!this.authorized(req, res)) return;
        } else if (!isLoopbackAddress(req.socket.remoteAddress)) {
          send(res, 403, "text/plain", "forbidden: /statusz answers loopback clients (or a bearer token)\n");
          return;
        }
        const [liveness, readiness] = [await this.o.liveness(), await this.o.readiness()];
        send(res, 200, "application/json", `${JSON.stringify({ liveness, readiness }, null, 2)}\n`);
        return;
      }
      send(
        res,
        404,
        "text/plain",
        `not found: /healthz, /readyz, /metrics, /statusz${this.o.status === undefined ? "" : ", /status, /status.json"}\n`,
      );
    } catch (e) {
      // The message stays in the log: the response may reach anyone who can connect.
      this.o.logger.warn({ path, err: e }, "health endpoint failed");
      send(res, 500, "text/plain", "error: internal\n");
    }
  }

  /** With a token: true when the request carries it, else answers 401 and returns false. */
  private authorized(req: IncomingMessage, res: ServerResponse): boolean {
    if (bearerMatches(req.headers.authorization, this.o.token!)) return true;
    res.setHeader("WWW-Authenticate", 'Bearer realm="podcrypt"');
    send(res, 401, "text/plain", "unauthorized: a bearer token is required\n");
    return false;
  }

  /** Stops listening and closes open connections. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

/**
 * The page loads nothing from anywhere and is framed by no one: its script and style are inline
 * (allowed by hash-free 'unsafe-inline', as the page has no user content in markup) and it
 * fetches only its own origin.
 */
const PAGE_HEADERS = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; form-action 'none'",
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-store",
};

function send(
  res: ServerResponse,
  code: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(code, { ...headers, "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}
