/**
 * Receiver indices (whitepaper 5.4.2: "a randomly generated 32-bit sender index"), mapping each
 * index we handed out to the handshake in progress or the keypair it became (wireguard-go
 * `indextable.go`).
 */
import type { RandomBytes } from "../clock.js";
import type { Keypair } from "./keypair.js";
import type { Handshake } from "./noise.js";

/** What an index points to. */
export interface IndexEntry<P> {
  readonly peer: P;
  handshake: Handshake | undefined;
  keypair: Keypair<P> | undefined;
}

/** Random 32-bit indices, unique within a device. */
export class IndexTable<P> {
  private readonly entries = new Map<number, IndexEntry<P>>();

  constructor(private readonly random: RandomBytes) {}

  get size(): number {
    return this.entries.size;
  }

  /** A fresh random index for a handshake of `peer`. */
  newIndexForHandshake(peer: P, handshake: Handshake): number {
    for (;;) {
      const index = Buffer.from(this.random(4)).readUInt32LE(0);
      if (this.entries.has(index)) continue;
      this.entries.set(index, { peer, handshake, keypair: undefined });
      return index;
    }
  }

  /** After a handshake completed, the index refers to the keypair (and no longer to the handshake). */
  swapToKeypair(index: number, keypair: Keypair<P>): void {
    const e = this.entries.get(index);
    if (e === undefined) return;
    e.handshake = undefined;
    e.keypair = keypair;
  }

  /** Points `index` (a handshake's) at `handshake` instead. */
  rebind(index: number, handshake: Handshake): void {
    const e = this.entries.get(index);
    if (e !== undefined) e.handshake = handshake;
  }

  /**
   * Registers a keypair a predecessor daemon handed over under the index it already has (the peer
   * addresses its data messages to it). False, changing nothing, when the index is taken.
   */
  adoptKeypair(index: number, peer: P, keypair: Keypair<P>): boolean {
    if (this.entries.has(index)) return false;
    this.entries.set(index, { peer, handshake: undefined, keypair });
    return true;
  }

  lookup(index: number): IndexEntry<P> | undefined {
    return this.entries.get(index);
  }

  delete(index: number): void {
    this.entries.delete(index);
  }
}
