/**
 * The SA database (RFC 4301 section 4.4.2) of one node's userspace ESP data plane.
 *
 * Inbound SAs are found by SPI, the only selector the receiver has before decrypting (RFC 4303
 * section 3.4.2). During a rotation the SAs of the old and the new key ID are installed side by
 * side: their SPIs differ in the key-ID bits (src/keys/spi.ts), so both are accepted until
 * retire. Per-pair SPIs are 28-bit hashes, so two peers may, rarely, hash to the same SPI at one
 * receiver; the database then keeps both and `inboundCandidates` returns both, and the codec
 * lets the ICV decide (a wrong key never verifies), instead of refusing to install.
 *
 * Outbound SAs are kept per peer and key ID; `activateOutbound` says which one sends (the
 * "switch" phase of docs/design.md#keys-and-rotation).
 */
import { PodcryptError } from "../errors/index.js";
import { EspDropCounters } from "./drops.js";
import { describeSa, type InboundSa, type OutboundSa, type SaInfo } from "./sa.js";

export class SaDatabase {
  /** Drops of the whole data plane, per reason. */
  readonly drops = new EspDropCounters();
  private readonly inboundBySpi = new Map<number, InboundSa[]>();
  private readonly outboundByPeer = new Map<
    string,
    { active: number | undefined; sas: Map<number, OutboundSa> }
  >();

  /**
   * Installs an inbound SA. Idempotent: an SA with the same SPI, peer and key ID replaces the
   * previous one only if its key differs (re-installing the same SA keeps its replay window and
   * counters).
   */
  installInbound(sa: InboundSa): void {
    // The same peer and key ID under another SPI is the SA of an SA instance the peer left
    // (src/keys/derive.ts): its sender is gone, so it goes.
    for (const [spi, other] of this.inboundBySpi) {
      if (spi === sa.spi) continue;
      const keep = other.filter((s) => s.peer !== sa.peer || s.keyId !== sa.keyId);
      if (keep.length === other.length) continue;
      if (keep.length === 0) this.inboundBySpi.delete(spi);
      else this.inboundBySpi.set(spi, keep);
    }
    const list = this.inboundBySpi.get(sa.spi) ?? [];
    const i = list.findIndex((s) => s.peer === sa.peer && s.keyId === sa.keyId);
    if (i >= 0) {
      const old = list[i]!;
      if (old.key.equals(sa.key) && old.salt.equals(sa.salt) && old.esn === sa.esn) return;
      list[i] = sa;
    } else {
      list.push(sa);
    }
    this.inboundBySpi.set(sa.spi, list);
  }

  /** Inbound SAs with this SPI (usually zero or one). */
  inboundCandidates(spi: number): readonly InboundSa[] {
    return this.inboundBySpi.get(spi) ?? [];
  }

  /** The inbound SA of `peer` with `keyId`, if installed. */
  inbound(peer: string, keyId: number): InboundSa | undefined {
    for (const list of this.inboundBySpi.values()) {
      for (const sa of list) if (sa.peer === peer && sa.keyId === keyId) return sa;
    }
    return undefined;
  }

  /** Installs an outbound SA (idempotent like `installInbound`). It sends only once activated. */
  installOutbound(sa: OutboundSa): void {
    let entry = this.outboundByPeer.get(sa.peer);
    if (entry === undefined) {
      entry = { active: undefined, sas: new Map() };
      this.outboundByPeer.set(sa.peer, entry);
    }
    const old = entry.sas.get(sa.keyId);
    if (old !== undefined && old.key.equals(sa.key) && old.salt.equals(sa.salt) && old.esn === sa.esn) return;
    entry.sas.set(sa.keyId, sa);
  }

  /** Makes the installed outbound SA of `peer` with `keyId` the one that sends. */
  activateOutbound(peer: string, keyId: number): void {
    const entry = this.outboundByPeer.get(peer);
    if (entry?.sas.has(keyId) !== true) {
      throw new PodcryptError("ENOSA", "no outbound SA installed for this peer and key ID", {
        context: { peer, keyId },
      });
    }
    entry.active = keyId;
  }

  /** The outbound SA sending to `peer` now, if any. */
  outbound(peer: string): OutboundSa | undefined {
    const entry = this.outboundByPeer.get(peer);
    return entry?.active === undefined ? undefined : entry.sas.get(entry.active);
  }

  /** The installed outbound SA of `peer` with `keyId`, active or not. */
  outboundFor(peer: string, keyId: number): OutboundSa | undefined {
    return this.outboundByPeer.get(peer)?.sas.get(keyId);
  }

  /**
   * Removes every SA (both directions, all peers) of `keyId`: the "retire" phase. Removing what
   * is absent is not an error. An active outbound SA removed this way leaves the peer without a
   * sending SA (strict mode then drops, never sends plaintext). Returns how many SAs went.
   */
  removeKeyId(keyId: number): number {
    let removed = 0;
    for (const [spi, list] of this.inboundBySpi) {
      const keep = list.filter((sa) => sa.keyId !== keyId);
      removed += list.length - keep.length;
      if (keep.length === 0) this.inboundBySpi.delete(spi);
      else this.inboundBySpi.set(spi, keep);
    }
    for (const entry of this.outboundByPeer.values()) {
      if (entry.sas.delete(keyId)) removed += 1;
      if (entry.active === keyId) entry.active = undefined;
    }
    return removed;
  }

  /**
   * A peer left: its outbound SA stops sending, but every SA of the peer stays installed until its
   * key ID is retired (`removeKeyId`). A peer re-added within the epoch then gets the very same
   * SAs back (`install*` is idempotent): its outbound sequence numbers go on, never restarting
   * under the same key (a GCM nonce reuse), and its inbound replay window stays. Returns how many
   * SAs the peer keeps.
   */
  detachPeer(peer: string): number {
    let kept = 0;
    for (const list of this.inboundBySpi.values()) kept += list.filter((sa) => sa.peer === peer).length;
    const entry = this.outboundByPeer.get(peer);
    if (entry !== undefined) {
      entry.active = undefined;
      kept += entry.sas.size;
    }
    return kept;
  }

  /** All installed SAs, inbound then outbound. */
  all(): Array<InboundSa | OutboundSa> {
    const out: Array<InboundSa | OutboundSa> = [];
    for (const list of this.inboundBySpi.values()) out.push(...list);
    for (const entry of this.outboundByPeer.values()) out.push(...entry.sas.values());
    return out;
  }

  /** Key IDs that have at least one SA installed, ascending. */
  keyIds(): number[] {
    return [...new Set(this.all().map((sa) => sa.keyId))].sort((a, b) => a - b);
  }

  /**
   * Peers whose active outbound SA passed its rekey threshold: the controller should start a
   * rotation now (docs/design.md#keys-and-rotation, "early when an ESP sequence number nears its limit").
   */
  rekeyNeeded(): string[] {
    const peers: string[] = [];
    for (const [peer] of this.outboundByPeer) if (this.outbound(peer)?.rekeySoon === true) peers.push(peer);
    return peers.sort();
  }

  /** Status rows (no keys), like `swanctl --list-sa`. */
  list(): SaInfo[] {
    return this.all().map(describeSa);
  }
}
