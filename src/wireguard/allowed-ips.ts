/**
 * Cryptokey routing table (whitepaper section 2): the allowed IPs of every peer in a
 * longest-prefix-match binary trie per address family, as wireguard-go's `allowedips.go` and the
 * kernel's `allowedips.c`. A prefix belongs to at most one peer: inserting it for another peer
 * moves it. Host bits are cleared on insert, as `wg` does ("10.1.2.3/8" is stored as "10.0.0.0/8").
 */
import { ValidationError } from "../errors/index.js";
import { formatIp, packetAddress, parseIp } from "./ip.js";

/** One allowed-IPs entry as shown to people and to the UAPI. */
export interface AllowedIp {
  /** Canonical network address text (host bits cleared). */
  readonly address: string;
  /** Prefix length: 0..32 for IPv4, 0..128 for IPv6. */
  readonly cidr: number;
}

interface Node<T> {
  zero: Node<T> | undefined;
  one: Node<T> | undefined;
  value: T | undefined;
}

const newNode = <T>(): Node<T> => ({ zero: undefined, one: undefined, value: undefined });

const bitAt = (a: Uint8Array, i: number): number => (a[i >> 3]! >> (7 - (i & 7))) & 1;

/** Copies `address` with every bit past `cidr` cleared. */
export function maskAddress(address: Uint8Array, cidr: number): Buffer {
  const out = Buffer.from(address);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, cidr - i * 8));
    out[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/** Parses "addr/cidr" (or a bare address, meaning a host route) into canonical bytes and prefix length. */
export function parseAllowedIp(text: string, field = "allowed_ip"): { address: Buffer; cidr: number } {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const address = parseIp(addrText);
  if (address === undefined) throw new ValidationError(field, `not an IP prefix: ${JSON.stringify(text)}`);
  const max = address.length * 8;
  const cidrText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(cidrText) || Number(cidrText) > max)
    throw new ValidationError(field, `prefix length must be 0..${max}: ${JSON.stringify(text)}`);
  const cidr = Number(cidrText);
  return { address: maskAddress(address, cidr), cidr };
}

/** Longest-prefix-match table from IPv4/IPv6 prefixes to peers (whitepaper section 2). */
export class AllowedIps<T> {
  private readonly v4: Node<T> = newNode();
  private readonly v6: Node<T> = newNode();
  private readonly byPeer = new Map<T, Map<string, { address: Buffer; cidr: number }>>();

  /** Number of prefixes in the table. */
  get size(): number {
    let n = 0;
    for (const m of this.byPeer.values()) n += m.size;
    return n;
  }

  /** Inserts (or moves) a prefix to `peer`; host bits of `address` are ignored. */
  insert(address: Uint8Array, cidr: number, peer: T): void {
    const root = this.root(address, cidr);
    const net = maskAddress(address, cidr);
    let node = root;
    for (let i = 0; i < cidr; i++) {
      if (bitAt(net, i) === 0) node = node.zero ??= newNode();
      else node = node.one ??= newNode();
    }
    const key = `${formatIp(net)}/${cidr}`;
    if (node.value !== undefined && node.value !== peer) this.byPeer.get(node.value)?.delete(key);
    node.value = peer;
    let m = this.byPeer.get(peer);
    if (m === undefined) this.byPeer.set(peer, (m = new Map()));
    m.set(key, { address: net, cidr });
  }

  /** Inserts a prefix given as text ("10.0.0.0/8", "fd00::/64", "10.1.1.1"). */
  insertText(text: string, peer: T): void {
    const p = parseAllowedIp(text);
    this.insert(p.address, p.cidr, peer);
  }

  /**
   * Removes a prefix. With `peer`, only when that peer owns it (the UAPI's "-" removal semantics).
   * Returns true when something was removed; removing what is absent is not an error.
   */
  remove(address: Uint8Array, cidr: number, peer?: T): boolean {
    const root = this.root(address, cidr);
    const net = maskAddress(address, cidr);
    const path: Node<T>[] = [root];
    let node: Node<T> | undefined = root;
    for (let i = 0; i < cidr && node !== undefined; i++) {
      node = bitAt(net, i) === 0 ? node.zero : node.one;
      if (node !== undefined) path.push(node);
    }
    if (node === undefined || node.value === undefined) return false;
    if (peer !== undefined && node.value !== peer) return false;
    this.byPeer.get(node.value)?.delete(`${formatIp(net)}/${cidr}`);
    node.value = undefined;
    this.prune(path, net);
    return true;
  }

  /** Removes every prefix of `peer`. */
  removeByPeer(peer: T): void {
    const m = this.byPeer.get(peer);
    if (m === undefined) return;
    for (const { address, cidr } of [...m.values()]) this.remove(address, cidr, peer);
    this.byPeer.delete(peer);
  }

  /** The peer owning the longest prefix that contains `address` (4 or 16 bytes). */
  lookup(address: Uint8Array): T | undefined {
    let node: Node<T> | undefined =
      address.length === 4 ? this.v4 : address.length === 16 ? this.v6 : undefined;
    if (node === undefined) return undefined;
    let best = node.value;
    const bits = address.length * 8;
    for (let i = 0; i < bits; i++) {
      node = bitAt(address, i) === 0 ? node.zero : node.one;
      if (node === undefined) break;
      if (node.value !== undefined) best = node.value;
    }
    return best;
  }

  /** {@link lookup} on the source or destination of the IP packet at `buf[offset, offset+length)`. */
  lookupPacket(buf: Buffer, offset: number, length: number, which: "src" | "dst"): T | undefined {
    const a = packetAddress(buf, offset, length, which);
    return a === undefined ? undefined : this.lookup(a);
  }

  /** The prefixes of `peer`, in insertion order. */
  entriesFor(peer: T): AllowedIp[] {
    const m = this.byPeer.get(peer);
    return m === undefined
      ? []
      : [...m.values()].map((e) => ({ address: formatIp(e.address), cidr: e.cidr }));
  }

  private root(address: Uint8Array, cidr: number): Node<T> {
    if (address.length === 4 && Number.isInteger(cidr) && cidr >= 0 && cidr <= 32) return this.v4;
    if (address.length === 16 && Number.isInteger(cidr) && cidr >= 0 && cidr <= 128) return this.v6;
    throw new ValidationError("allowed_ip", "address must be 4 or 16 bytes with a prefix length in range");
  }

  private prune(path: Node<T>[], net: Uint8Array): void {
    for (let depth = path.length - 1; depth > 0; depth--) {
      const n = path[depth]!;
      if (n.value !== undefined || n.zero !== undefined || n.one !== undefined) return;
      const parent = path[depth - 1]!;
      if (bitAt(net, depth - 1) === 0) parent.zero = undefined;
      else parent.one = undefined;
    }
  }
}
