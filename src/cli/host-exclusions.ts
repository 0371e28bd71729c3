/**
 * What host encryption leaves outside the tunnels besides their own UDP ports (which the agent's
 * desired state adds itself): the agent's datastore connection, so that a node whose tunnels are
 * not up can still reach it, and what the operator excludes in the agent's configuration
 * (`agent.hostEncryptionExclude`). docs/design.md#host-encryption.
 */
import { bothWays } from "../agent/desired.js";
import { isEtcdUrl, parseEtcdUrl } from "../datastore/etcd/url.js";
import type { HostExclusion } from "../dataplane/types.js";
import type { PortSpec } from "../policy/types.js";

/** The operator's exclusions: IPv4 and IPv6 CIDRs (either direction) and ports (source or destination). */
export interface OperatorExclusions {
  cidrs: readonly string[];
  ports: readonly PortSpec[];
}

/** The TCP port of `url`'s datastore (etcd: every endpoint's; Kubernetes: its API server's), if it has one. */
export function datastorePorts(url: string, kubeServer?: string): number[] {
  let hostPorts: string[] = [];
  if (isEtcdUrl(url)) hostPorts = parseEtcdUrl(url).hostPorts;
  else if (url.startsWith("kubernetes") && kubeServer !== undefined) {
    const u = new URL(kubeServer);
    hostPorts = [`${u.host}${u.port === "" ? (u.protocol === "http:" ? ":80" : ":443") : ""}`];
  }
  const ports = hostPorts
    .map((hp) => Number(/:(\d{1,5})$/.exec(hp)?.[1]))
    .filter((p) => p >= 1 && p <= 65535);
  return [...new Set(ports)].sort((a, b) => a - b);
}

/**
 * The exclusions of an agent whose datastore is `url` (its TCP port both ways, whatever the
 * address: a Service's address is translated to a node's before the routing decision), then the
 * operator's CIDRs (both directions) and ports (both ways).
 */
export function hostExclusions(
  url: string,
  operator: OperatorExclusions,
  kubeServer?: string,
): HostExclusion[] {
  return [
    ...datastorePorts(url, kubeServer).flatMap((p) => bothWays("tcp", p)),
    ...operator.cidrs.flatMap((c) => [{ to: c }, { from: c }]),
    ...operator.ports.flatMap((p) => bothWays(p.protocol, p.port)),
  ];
}
