import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { ValidationError } from "../errors/index.js";
import { PROBE_SOCKET_BUFFER } from "./probe.js";

/** The port every local-cluster pod answers on for `verify` (echo, RFC 862). */
export const VERIFY_PORT = 7;

export interface PortRef {
  protocol: "tcp" | "udp";
  port: number;
}

export function parsePortRef(text: string): PortRef {
  const m = /^(tcp|udp)\/(\d{1,5})$/.exec(text.trim());
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port < 1 || port > 65535)
    throw new ValidationError("ports", `"${text}" is not tcp/PORT or udp/PORT (1-65535)`);
  return { protocol: m[1] as "tcp" | "udp", port };
}

/**
 * A pod's echo service (RFC 862 style): every TCP connection and UDP datagram on `ports` is sent
 * back as received, so traffic to a service port can be sent and observed. Each port listens on
 * both families (`::`, IPv4 as mapped addresses), for dual-stack pods. Resolves once every port
 * listens; the returned function closes them.
 */
export async function serveEcho(ports: PortRef[]): Promise<() => void> {
  const closers: Array<() => void> = [];
  for (const p of ports) {
    if (p.protocol === "udp") {
      const s = createSocket({ type: "udp6", recvBufferSize: PROBE_SOCKET_BUFFER });
      s.on("message", (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
      s.on("error", () => undefined);
      await new Promise<void>((resolve) => s.bind(p.port, "::", resolve));
      closers.push(() => s.close());
    } else {
      const srv = createServer((conn) => {
        conn.on("error", () => undefined);
        conn.pipe(conn);
      });
      await new Promise<void>((resolve) => srv.listen(p.port, "::", resolve));
      closers.push(() => srv.close());
    }
  }
  return () => closers.forEach((c) => c());
}
