/**
 * Packets waiting for a handshake (wireguard-go's per-peer staged queue). A packet's way, in order:
 *   1. outbound finds no sending keypair for its peer: the packet is copied here (`stage`), at most
 *      {@link MAX_STAGED_PER_PEER} per peer, the oldest dropped ("no-keypair") beyond that;
 *   2a. the core reports a keypair ready (`onKeypairReady`): Outbound.keypairReady `take`s the
 *      peer's queue and sends it in batches through the outbound arena;
 *   2b. the core gives up on the handshake (`onHandshakeGaveUp`): `dropAll` drops the peer's queue
 *      ("no-keypair"), it would never leave;
 *   3. the data path closes: `clear` forgets everything.
 */
import type { DatapathPeer } from "../../wireguard/contract.js";
import type { PathState } from "./path.js";

/** Packets staged per peer while it has no sending keypair (the oldest is dropped beyond it). */
export const MAX_STAGED_PER_PEER = 1024;

/** See the file comment. */
export class StagedQueue {
  private readonly queues = new Map<DatapathPeer, Buffer[]>();
  private total = 0;

  constructor(private readonly path: PathState) {}

  /** Packets staged right now, all peers. */
  get count(): number {
    return this.total;
  }

  /** Whether anything is staged for `peer`. */
  has(peer: DatapathPeer): boolean {
    return this.queues.has(peer);
  }

  /** Stages a copy of `packet` for `peer`. */
  stage(peer: DatapathPeer, packet: Buffer): void {
    let queue = this.queues.get(peer);
    if (queue === undefined) {
      queue = [];
      this.queues.set(peer, queue);
    }
    if (queue.length >= MAX_STAGED_PER_PEER) {
      queue.shift();
      this.total--;
      this.path.drop("no-keypair", peer);
    }
    queue.push(Buffer.from(packet));
    this.total++;
  }

  /** Removes and returns what was staged for `peer` (undefined: nothing). */
  take(peer: DatapathPeer): Buffer[] | undefined {
    const queue = this.queues.get(peer);
    if (queue === undefined) return undefined;
    this.queues.delete(peer);
    this.total -= queue.length;
    return queue;
  }

  /** The core gave up on the handshake: what was staged for `peer` will never leave. */
  dropAll(peer: DatapathPeer): void {
    const queue = this.take(peer);
    if (queue === undefined) return;
    for (let i = 0; i < queue.length; i++) this.path.drop("no-keypair", peer);
  }

  /** Forgets everything (the data path closed). */
  clear(): void {
    this.queues.clear();
    this.total = 0;
  }
}
