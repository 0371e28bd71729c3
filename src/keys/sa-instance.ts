/**
 * When a node's SA instance (src/keys/derive.ts, `Node.saInstance`) changes, for both IPsec data
 * planes. ESP keys bind both ends' instances, and an outbound SA's sequence number (the GCM
 * nonce) lives only in the data plane: the userspace daemon's memory, or the kernel's XFRM state.
 * So the instance must change whenever that state may have been lost, and only then (each change
 * re-keys every pair of the node):
 *
 *   - no data plane vouches for an instance: a fresh `podcrypt esp` daemon (crash, restart,
 *     upgrade), a rebooted node (no XFRM state), the very first start;
 *   - an outbound SA installed under the instance is missing from the data plane (`ip xfrm state
 *     flush`, an expiry, any loss behind the agent's back).
 *
 * The proof of continuity comes from the data plane, never from the agent's memory alone: the
 * daemon reports the instance the agent gave it; the kernel holds outbound states whose SPIs are
 * those of the instance the node published. A restarted agent therefore keeps the instance of a
 * data plane that kept running, and loses nothing.
 */
import { newSaInstance } from "./derive.js";

/** What the data plane shows about its outbound SAs. */
export interface InstanceEvidence {
  /**
   * The instance the data plane vouches for: what the daemon reports holding, or (kernel) the
   * instance the node published, when its outbound states are installed. Undefined: none.
   */
  candidate: string | undefined;
  /** SPIs of outbound SAs that must be installed if `candidate` kept its state. */
  mustHave: ReadonlySet<number>;
  /** SPIs of the outbound SAs installed now. */
  present: ReadonlySet<number>;
}

/** The instance to use from now on, and why it is new. */
export type InstanceDecision =
  | { instance: string; fresh: false }
  | { instance: string; fresh: true; reason: "no-state" | "outbound-sa-lost" };

/**
 * Keeps `candidate` when every outbound SA it must have is installed, else draws a new instance.
 * `random` is for tests (default: 16 bytes from the CSPRNG).
 */
export function decideSaInstance(
  e: InstanceEvidence,
  random: () => string = newSaInstance,
): InstanceDecision {
  if (e.candidate === undefined) return { instance: random(), fresh: true, reason: "no-state" };
  for (const spi of e.mustHave)
    if (!e.present.has(spi)) return { instance: random(), fresh: true, reason: "outbound-sa-lost" };
  return { instance: e.candidate, fresh: false };
}
