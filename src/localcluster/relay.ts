/**
 * The local cluster's datastore relay: the agents run inside node namespaces, whose loopback is
 * their own, so a datastore on the host's loopback (an etcd, a Kubernetes API server) is out of
 * their reach. The relay listens on the datastore's own address inside every node namespace
 * (sockets made there through the native addon) and forwards each connection to that address in
 * the host namespace, so the agents use the very URL the controller uses. Nothing leaves the
 * machine: both ends are loopback.
 */
import { connect, createServer, isIP, type Server, type Socket } from "node:net";
import { isEtcdUrl, parseEtcdUrl } from "../datastore/etcd/url.js";
import { ValidationError } from "../errors/index.js";
import { native } from "../native.js";

/** A datastore's TCP address. */
export interface RelayTarget {
  host: string;
  port: number;
}

/** Whether `host` is a loopback address (127.0.0.0/8 or ::1), the only ones the relay can serve. */
export function isLoopback(host: string): boolean {
  return (isIP(host) === 4 && host.startsWith("127.")) || host === "::1";
}

/**
 * Where a datastore URL connects, when a relay is needed: `etcd://HOST:PORT` or `etcds://HOST:PORT`
 * (first host; the relay forwards bytes, so TLS still runs end to end between a node and etcd) or the
 * API server of a `kubernetes:KUBECONFIG`. Undefined for the local store (files need no relay).
 */
export function relayTarget(url: string, kubeServer?: string): RelayTarget | undefined {
  let hostPort: string;
  if (isEtcdUrl(url)) hostPort = parseEtcdUrl(url).hostPorts[0]!;
  else if (url.startsWith("kubernetes") && kubeServer !== undefined) hostPort = new URL(kubeServer).host;
  else return undefined;
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(hostPort);
  const host = m?.[1] === "localhost" ? "127.0.0.1" : m?.[1];
  const port = Number(m?.[2]);
  if (host === undefined || !(port >= 1 && port <= 65535))
    throw new ValidationError("--datastore", `cannot tell the address of "${hostPort}"`);
  if (!isLoopback(host))
    throw new ValidationError(
      "--datastore",
      `the local cluster's nodes reach the datastore through a relay on loopback; ${host} is not a loopback address (run the datastore on 127.0.0.1)`,
    );
  return { host, port };
}

/** The relay target of a datastore URL ({@link relayTarget}), reading a kubeconfig when it names one. */
export async function datastoreRelay(url: string): Promise<RelayTarget | undefined> {
  if (!url.startsWith("kubernetes")) return relayTarget(url);
  // Loaded on use: the Kubernetes client costs seconds of start-up.
  const { kubeServer } = await import("../datastore/kubernetes/kubeconfig.js");
  return relayTarget(url, kubeServer(url));
}

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const done = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on("error", done).on("close", done);
  b.on("error", done).on("close", done);
}

/**
 * Starts listening in every namespace of `netns` (names under /run/netns), on `listen` (default:
 * the target's own address), and forwards each connection to `target` in this process's
 * namespace; resolves with a closer.
 */
export async function startRelay(
  target: RelayTarget,
  netns: readonly string[],
  listen: RelayTarget = target,
): Promise<() => Promise<void>> {
  const servers: Server[] = [];
  try {
    for (const ns of netns) {
      const fd = native().listenTcpInNetns(`/run/netns/${ns}`, listen.host, listen.port);
      const server = createServer({ noDelay: true }, (inside) => {
        pipeBoth(inside, connect({ host: target.host, port: target.port, noDelay: true }));
      });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ fd }, () => resolve());
      });
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  return async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  };
}
