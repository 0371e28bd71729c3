import type { DataplaneBackend, DesiredGeneration, DesiredRoute, ObservedPeer } from "../types.js";

/** What a generation backend needs besides its generations. */
export interface GenerationContext {
  /**
   * The node's desired routes, with tunnel routes naming *generation* interfaces
   * (`DesiredGeneration.ifname`): a backend that multiplexes generations on one interface (ESP)
   * reads from them which generation sends to which peer.
   */
  routes: readonly DesiredRoute[];
  /** MTU of the tunnel interfaces. */
  mtu: number;
  /** The node's own private key of an epoch. */
  privateKey: (epoch: number) => Buffer;
  /** IPsec: the SA instance the node published last (`DesiredNodeState.saInstance`). */
  saInstance?: string;
}

/**
 * The data plane of one mode, below {@link CompositeBackend}: it installs and retires key
 * generations and nothing else. Routes and strict rules belong to the composite, so they are
 * reconciled in exactly one place however many modes are installed side by side.
 */
export interface GenerationBackend {
  readonly kind: DataplaneBackend["kind"];
  /**
   * Installs `generations` (all of this backend's mode) idempotently, adding and updating but
   * never removing what a generation still in use may need. Returns, for each generation's
   * `ifname`, the interface that actually carries its traffic (tunnel routes are pointed there).
   */
  applyGenerations(generations: DesiredGeneration[], ctx: GenerationContext): Promise<Map<string, string>>;
  /**
   * Removes everything of this backend that `generations` (the complete desired set of its mode,
   * possibly empty) no longer needs: called after routes moved away from it.
   */
  retireGenerations(generations: DesiredGeneration[], ctx: GenerationContext): Promise<void>;
  /** Reads per-peer counters. */
  observe(): Promise<ObservedPeer[]>;
  /** Releases handles; never tears down installed state. */
  close(): Promise<void>;
  /** IPsec: the node's SA instance the data plane holds now (see DataplaneBackend.saInstance). */
  saInstance?(): string | undefined;
  /**
   * Userspace: replaces the backend's daemons by handover, one after another (see
   * DataplaneBackend.handOverDaemons); returns the interfaces handed over.
   */
  handOver?(): Promise<string[]>;
}
