import { ValidationError } from "../../errors/index.js";
import { isBase64Key } from "../../keys/x25519.js";
import { canonicalCidr, formatEndpoint } from "../../platform/netlink/addr.js";
import type { InstalledWgInterface } from "../../platform/netlink/wg-dump.js";
import type { WgInterfaceSpec, WgKernelDesired } from "./types.js";

/** A link as `ip -j -d addr show` reports it (only what the plan compares). */
export interface InstalledLink {
  ifname: string;
  /** `linkinfo.info_kind` ("wireguard", "tun", ... or "" for none). */
  kind: string;
  mtu: number;
  up: boolean;
  /** Its host-scoped IPv4 addresses, `a.b.c.d/len`. */
  hostAddresses: string[];
}

/** What is installed now, as read in one pass. */
export interface WgKernelSnapshot {
  /** Every link of the namespace by name. */
  links: Map<string, InstalledLink>;
  /** `wg show all dump`, by interface. */
  devices: Map<string, InstalledWgInterface>;
}

/** What one pass applies: `ip -batch` lines, then one `wg syncconf` per listed interface. */
export interface WgKernelPlan {
  ipLines: string[];
  syncconf: { ifname: string; config: string }[];
}

/** Which interfaces are the backend's, and whether a pass removes those not desired. */
export interface WgPlanScope {
  owns: (ifname: string) => boolean;
  /** Delete owned WireGuard interfaces that are not desired (retire). Default false. */
  prune?: boolean;
}

/**
 * Validates `desired` and puts it in canonical form (sorted CIDRs, masked host bits), so it
 * compares with what the kernel reports. Throws ValidationError naming the field.
 */
export function normaliseDesired(
  desired: WgKernelDesired,
  owns: (ifname: string) => boolean,
): WgInterfaceSpec[] {
  const seen = new Set<string>();
  return desired.interfaces.map((iface, i) => {
    const at = `interfaces[${i}]`;
    if (!owns(iface.ifname) || iface.ifname.length > 15 || !/^[\w.-]+$/.test(iface.ifname))
      throw new ValidationError(
        `${at}.ifname`,
        `"${iface.ifname}" is not an interface name this backend owns`,
      );
    if (seen.has(iface.ifname)) throw new ValidationError(`${at}.ifname`, `duplicate ${iface.ifname}`);
    seen.add(iface.ifname);
    if (!isBase64Key(iface.privateKey))
      throw new ValidationError(`${at}.privateKey`, "not a base64 32-byte key");
    if (!Number.isInteger(iface.listenPort) || iface.listenPort < 0 || iface.listenPort > 65535)
      throw new ValidationError(`${at}.listenPort`, "not a port");
    if (!Number.isInteger(iface.mtu) || iface.mtu < 576 || iface.mtu > 65535)
      throw new ValidationError(`${at}.mtu`, "out of range");
    const peerKeys = new Set<string>();
    const hostAddresses = sortedUnique(
      (iface.hostAddresses ?? []).map((a, k) => {
        const c = canonicalCidr(a, `${at}.hostAddresses[${k}]`);
        if (c.includes(":") || !c.endsWith("/32"))
          throw new ValidationError(`${at}.hostAddresses[${k}]`, `${a} is not an IPv4 /32`);
        return c;
      }),
    );
    return {
      ...iface,
      hostAddresses,
      fwmark: iface.fwmark ?? 0,
      peers: iface.peers.map((p, j) => {
        const pat = `${at}.peers[${j}]`;
        if (!isBase64Key(p.publicKey))
          throw new ValidationError(`${pat}.publicKey`, "not a base64 32-byte key");
        if (peerKeys.has(p.publicKey)) throw new ValidationError(`${pat}.publicKey`, "duplicate peer");
        peerKeys.add(p.publicKey);
        if (p.presharedKey !== undefined && !isBase64Key(p.presharedKey))
          throw new ValidationError(`${pat}.presharedKey`, "not a base64 32-byte key");
        return {
          ...p,
          allowedIps: sortedUnique(p.allowedIps.map((c, k) => canonicalCidr(c, `${pat}.allowedIps[${k}]`))),
          persistentKeepalive: p.persistentKeepalive ?? 0,
        };
      }),
    };
  });
}

/**
 * The difference between `desired` (normalised) and `installed`, as commands. A link of a desired
 * name but another kind (a leftover) is replaced; with `prune`, owned WireGuard interfaces that are
 * not desired are removed. Anything else on the node is left alone. Empty plan: nothing to do.
 */
export function planWireguard(
  desired: WgInterfaceSpec[],
  installed: WgKernelSnapshot,
  scope: WgPlanScope,
): WgKernelPlan {
  const ipLines: string[] = [];
  const syncconf: WgKernelPlan["syncconf"] = [];
  const wanted = new Set(desired.map((d) => d.ifname));
  for (const d of desired) {
    const link = installed.links.get(d.ifname);
    const ok = link?.kind === "wireguard";
    if (link !== undefined && !ok) ipLines.push(`link del dev ${d.ifname}`);
    if (!ok) ipLines.push(`link add dev ${d.ifname} type wireguard`);
    if (!ok || link.mtu !== d.mtu) ipLines.push(`link set dev ${d.ifname} mtu ${d.mtu}`);
    for (const a of d.hostAddresses ?? [])
      if (!ok || !link.hostAddresses.includes(a))
        ipLines.push(`addr replace ${a} dev ${d.ifname} scope host`);
    if (!ok || !link.up) ipLines.push(`link set dev ${d.ifname} up`);
    const device = ok ? installed.devices.get(d.ifname) : undefined;
    if (!device || !deviceMatches(d, device)) syncconf.push({ ifname: d.ifname, config: wgConfig(d) });
  }
  if (scope.prune === true) {
    for (const l of installed.links.values())
      if (l.kind === "wireguard" && scope.owns(l.ifname) && !wanted.has(l.ifname))
        ipLines.push(`link del dev ${l.ifname}`);
  }
  return { ipLines, syncconf };
}

function deviceMatches(d: WgInterfaceSpec, dev: InstalledWgInterface): boolean {
  if (dev.privateKey !== d.privateKey || dev.listenPort !== d.listenPort || dev.fwmark !== (d.fwmark ?? 0))
    return false;
  if (dev.peers.length !== d.peers.length) return false;
  const installed = new Map(dev.peers.map((p) => [p.publicKey, p]));
  for (const p of d.peers) {
    const q = installed.get(p.publicKey);
    if (!q) return false;
    if ((q.presharedKey ?? undefined) !== p.presharedKey) return false;
    if (q.persistentKeepalive !== (p.persistentKeepalive ?? 0)) return false;
    const ep = p.endpoint ? formatEndpoint(p.endpoint.address, p.endpoint.port) : undefined;
    if (ep !== undefined && q.endpoint !== ep) return false;
    if (sortedUnique(q.allowedIps.map((c) => canonicalCidr(c))).join(",") !== p.allowedIps.join(","))
      return false;
  }
  return true;
}

/** wg(8) configuration text of one interface, for `wg syncconf`. Contains key material. */
export function wgConfig(d: WgInterfaceSpec): string {
  const lines = ["[Interface]", `PrivateKey = ${d.privateKey}`, `ListenPort = ${d.listenPort}`];
  lines.push(`FwMark = ${d.fwmark ? d.fwmark : "off"}`);
  for (const p of d.peers) {
    lines.push("", "[Peer]", `PublicKey = ${p.publicKey}`);
    if (p.presharedKey !== undefined) lines.push(`PresharedKey = ${p.presharedKey}`);
    if (p.endpoint) lines.push(`Endpoint = ${formatEndpoint(p.endpoint.address, p.endpoint.port)}`);
    if (p.allowedIps.length > 0) lines.push(`AllowedIPs = ${p.allowedIps.join(", ")}`);
    lines.push(`PersistentKeepalive = ${p.persistentKeepalive ? p.persistentKeepalive : "off"}`);
  }
  return lines.join("\n") + "\n";
}

interface IpLinkJson {
  ifname: string;
  mtu: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number; scope?: string }>;
}

/** Parses `ip -j -d addr show` output (`ip -j -d link show`, without addresses, parses too). */
export function parseLinks(json: string): Map<string, InstalledLink> {
  const t = json.trim();
  const out = new Map<string, InstalledLink>();
  if (t === "") return out;
  for (const l of JSON.parse(t) as IpLinkJson[])
    out.set(l.ifname, {
      ifname: l.ifname,
      kind: l.linkinfo?.info_kind ?? "",
      mtu: l.mtu,
      up: (l.flags ?? []).includes("UP"),
      hostAddresses: (l.addr_info ?? [])
        .filter((a) => a.family === "inet" && a.scope === "host" && a.local !== undefined)
        .map((a) => `${a.local}/${a.prefixlen ?? 32}`),
    });
  return out;
}

function sortedUnique(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}
