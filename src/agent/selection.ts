/**
 * How a change of the selected traffic (selective encryption, docs/design.md#selective-encryption) reaches every
 * node without losing or leaking a packet: the same make-before-break idea as the key phases,
 * run by the agents themselves since any node can compute the selector set from the datastore.
 *
 * Each node encrypts the union and expects encrypted (drops in plaintext) only the intersection
 * of every set it has seen since the last one that settled, and publishes the hash of the newest
 * set once it has installed that. When every live node publishes that hash, every node encrypts
 * at least the new set and expects nothing outside it, so the set settles: encrypted and
 * expected become exactly the new set. Traffic a change adds is therefore encrypted at once but
 * refused in plaintext only once nobody sends it so; traffic it removes goes plaintext only once
 * nobody refuses it.
 */
import { compareIPs } from "../policy/resolve.js";
import type { Selector } from "../policy/types.js";
import { selectionAtoms as atoms, selectionHash, type SelectionAtom as Atom } from "../protocol/index.js";
import type { NodeSelection } from "./desired.js";

/** Selectors (sources dropped) from atoms, grouped by node, protocol and port, sorted. */
function fromAtoms(set: ReadonlySet<Atom>): Selector[] {
  const groups = new Map<
    string,
    { node: string; protocol: Selector["protocol"]; port: number; ips: string[] }
  >();
  for (const a of set) {
    const [node, protocol, port, ip] = a.split("|") as [string, Selector["protocol"], string, string];
    const key = `${node}|${protocol}|${port}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = { node, protocol, port: Number(port), ips: [] };
      groups.set(key, g);
    }
    g.ips.push(ip);
  }
  return [...groups.values()]
    .map((g) => ({
      node: g.node,
      protocol: g.protocol,
      port: g.port,
      podIPs: g.ips.sort(compareIPs),
      sources: [],
    }))
    .sort((a, b) =>
      a.node !== b.node
        ? a.node < b.node
          ? -1
          : 1
        : a.protocol !== b.protocol
          ? a.protocol < b.protocol
            ? -1
            : 1
          : a.port - b.port,
    );
}

/** The two-stage state of one node (kept in memory: after a restart it starts unsettled, which is safe). */
export class SelectionTracker {
  private encrypt: Set<Atom> = new Set();
  private expect: Set<Atom> = new Set();
  private settledHash: string | undefined;
  private seen: string | undefined;

  /**
   * Takes the current selector set and whether every live node (this one included) published its
   * hash; returns what to install now.
   */
  update(current: readonly Selector[], everyoneHasIt: boolean): NodeSelection {
    const hash = selectionHash(current);
    const now = atoms(current);
    if (everyoneHasIt) {
      this.encrypt = now;
      this.expect = new Set(now);
      this.settledHash = hash;
    } else if (hash !== this.seen && hash !== this.settledHash) {
      for (const a of now) this.encrypt.add(a);
      for (const a of [...this.expect]) if (!now.has(a)) this.expect.delete(a);
    }
    this.seen = hash;
    return { encrypt: fromAtoms(this.encrypt), expectEncrypted: fromAtoms(this.expect) };
  }

  /** Whether the newest set is in force everywhere. */
  get settled(): boolean {
    return this.seen !== undefined && this.seen === this.settledHash;
  }
}
