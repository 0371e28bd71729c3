import { randomBytes } from "node:crypto";
import type { EpochKeys } from "../../../src/agent/agent.js";
import type { RandomBytes } from "../../../src/clock.js";
import { ValidationError } from "../../../src/errors/index.js";
import { generateKeyPair, type NodeKeyPair } from "../../../src/keys/x25519.js";

/**
 * The agent's per-epoch key pairs held in memory instead of 0600 files: for unit tests and the
 * scale bench, where hundreds of simulated agents share one process. The keys are real X25519
 * pairs, so a FakeDataplane can check that a generation uses the key its node published.
 */
export class MemoryEpochKeys implements EpochKeys {
  private readonly pairs = new Map<number, NodeKeyPair>();
  /** Epochs ever deleted by `retain`, in order. */
  readonly retired: number[] = [];

  constructor(private readonly random: RandomBytes = randomBytes) {}

  async ensure(epoch: number): Promise<string> {
    let p = this.pairs.get(epoch);
    if (p === undefined) {
      p = generateKeyPair(this.random);
      this.pairs.set(epoch, p);
    }
    return p.publicKey.toString("base64");
  }

  privateKey(epoch: number): Buffer {
    const p = this.pairs.get(epoch);
    if (p === undefined) throw new ValidationError("epoch", `no key pair for epoch ${epoch}`);
    return p.privateKey;
  }

  async retain(keep: readonly number[]): Promise<void> {
    for (const e of [...this.pairs.keys()]) {
      if (!keep.includes(e)) {
        this.pairs.delete(e);
        this.retired.push(e);
      }
    }
  }

  /** Epochs held, ascending. */
  epochs(): number[] {
    return [...this.pairs.keys()].sort((a, b) => a - b);
  }
}
