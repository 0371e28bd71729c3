import { ValidationError } from "../../errors/index.js";
import { canonicalCidr, formatEndpoint } from "../../platform/netlink/addr.js";
import type { InstalledWgInterface } from "../../platform/netlink/wg-dump.js";
import type { WgInterfaceSpec, WgKernelDesired } from "./types.js";

/** A WireGuard link as `ip -j -d addr show` reports it. */
export interface InstalledWgLink {
  ifname: string;
  mtu: number;
  up: boolean;
  /** Global addresses, canonical CIDR. */
  addresses: string[];
}

/** A route the backend installed (recognised by its `proto`). */
export interface InstalledRoute {
  dst: string;
  dev: string;
  table: number;
}

/** What is installed now, as read in one pass. */
export interface WgKernelSnapshot {
  links: Map<string, InstalledWgLink>;
  devices: Map<string, InstalledWgInterface>;
  routes: InstalledRoute[];
}

/** What one pass applies: `ip -batch` lines, then one `wg syncconf` per listed interface. */
export interface WgKernelPlan {
  ipLines: string[];
  syncconf: { ifname: string; config: string }[];
}

const MAIN_TABLE = 254;

/**
 * Validates `desired` and puts it in canonical form (sorted CIDRs, masked host bits), so it
 * compares with what the kernel reports. Throws ValidationError naming the field.
 */
export function normaliseDesired(desired: WgKernelDesired, prefix: string): WgInterfaceSpec[] {
  const seen = new Set<string>();
  return desired.interfaces.map((iface, i) => {
    const at = `interfaces[${i}]`;
    if (!iface.ifname.startsWith(prefix) || iface.ifname.length > 15 || !/^[\w.-]+$/.test(iface.ifname))
      throw new ValidationError(`${at}.ifname`, `must start with "${prefix}", at most 15 characters`);
    if (seen.has(iface.ifname)) throw new ValidationError(`${at}.ifname`, `duplicate ${iface.ifname}`);
    seen.add(iface.ifname);
    if (!isKey(iface.privateKey)) throw new ValidationError(`${at}.privateKey`, "not a base64 32-byte key");
    if (!Number.isInteger(iface.listenPort) || iface.listenPort < 0 || iface.listenPort > 65535)
      throw new ValidationError(`${at}.listenPort`, "not a port");
    if (!Number.isInteger(iface.mtu) || iface.mtu < 576 || iface.mtu > 65535)
      throw new ValidationError(`${at}.mtu`, "out of range");
    const peerKeys = new Set<string>();
    return {
      ...iface,
      fwmark: iface.fwmark ?? 0,
      table: iface.table ?? MAIN_TABLE,
      addresses: sortedUnique(iface.addresses.map((a, j) => canonicalAddress(a, `${at}.addresses[${j}]`))),
      routes: sortedUnique(iface.routes.map((r, j) => canonicalCidr(r, `${at}.routes[${j}]`))),
      peers: iface.peers.map((p, j) => {
        const pat = `${at}.peers[${j}]`;
        if (!isKey(p.publicKey)) throw new ValidationError(`${pat}.publicKey`, "not a base64 32-byte key");
        if (peerKeys.has(p.publicKey)) throw new ValidationError(`${pat}.publicKey`, "duplicate peer");
        peerKeys.add(p.publicKey);
        if (p.presharedKey !== undefined && !isKey(p.presharedKey))
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
 * The difference between `desired` (normalised) and `installed`, as commands. Interfaces and
 * routes the backend owns (name starts with `prefix`, route `proto` is `routeProto`) that are not
 * desired are removed; anything else on the node is left alone. Empty plan: nothing to do.
 */
export function planWireguard(
  desired: WgInterfaceSpec[],
  installed: WgKernelSnapshot,
  prefix: string,
  routeProto: number,
): WgKernelPlan {
  const ipLines: string[] = [];
  const syncconf: WgKernelPlan["syncconf"] = [];
  const wanted = new Set(desired.map((d) => d.ifname));
  for (const name of installed.links.keys()) {
    if (name.startsWith(prefix) && !wanted.has(name)) ipLines.push(`link del dev ${name}`);
  }
  for (const d of desired) {
    const link = installed.links.get(d.ifname);
    if (!link) ipLines.push(`link add dev ${d.ifname} type wireguard`);
    const have = new Set(link?.addresses ?? []);
    for (const a of d.addresses) if (!have.has(a)) ipLines.push(`address add ${a} dev ${d.ifname}`);
    for (const a of have) if (!d.addresses.includes(a)) ipLines.push(`address del ${a} dev ${d.ifname}`);
    if (!link || link.mtu !== d.mtu) ipLines.push(`link set dev ${d.ifname} mtu ${d.mtu}`);
    if (!link || !link.up) ipLines.push(`link set dev ${d.ifname} up`);
    const device = installed.devices.get(d.ifname);
    if (!device || !deviceMatches(d, device)) syncconf.push({ ifname: d.ifname, config: wgConfig(d) });
  }
  const wantedRoutes = new Map<string, { dev: string; table: number }>();
  for (const d of desired)
    for (const r of d.routes) wantedRoutes.set(`${r}|${d.table}`, { dev: d.ifname, table: d.table! });
  const haveRoutes = new Map(installed.routes.map((r) => [`${r.dst}|${r.table}`, r]));
  for (const [key, want] of wantedRoutes) {
    const have = haveRoutes.get(key);
    if (have?.dev !== want.dev) {
      const dst = key.split("|")[0]!;
      ipLines.push(`route replace ${dst} dev ${want.dev} table ${want.table} proto ${routeProto}`);
    }
  }
  for (const [key, have] of haveRoutes) {
    // Routes on a deleted link vanish with it.
    if (!wantedRoutes.has(key) && (wanted.has(have.dev) || !have.dev.startsWith(prefix)))
      ipLines.push(`route del ${have.dst} table ${have.table} proto ${routeProto}`);
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
    const ips = sortedUnique(q.allowedIps.map((c) => canonicalCidr(c)));
    if (ips.join(",") !== p.allowedIps.join(",")) return false;
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

function isKey(k: string): boolean {
  return /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(k);
}

function canonicalAddress(a: string, field: string): string {
  // An interface address keeps its host bits: only validate the form.
  canonicalCidr(a, field);
  const [ip, len] = a.split("/");
  const host = canonicalCidr(`${ip}`, field).split("/")[0];
  return `${host}/${len ?? (a.includes(":") ? 128 : 32)}`;
}

function sortedUnique(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}
