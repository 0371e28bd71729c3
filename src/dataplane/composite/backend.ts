import { PodcryptError } from "../../errors/index.js";
import type { EncryptionMode } from "../../model/index.js";
import { StrictReconciler, type StrictDrop } from "../node/nft.js";
import { loosenUnderlay } from "../node/rpf.js";
import { reconcileRoutes } from "../node/routes.js";
import type {
  DataplaneBackend,
  DesiredHost,
  DesiredNodeState,
  DesiredRoute,
  DesiredStrict,
  ObservedPeer,
} from "../types.js";
import type { GenerationBackend, GenerationContext } from "./types.js";

/**
 * The node-level ports the composite owns: the underlay's reverse-path filtering, routes and strict
 * rules (real: a sysctl, `ip` and `nft`).
 */
export interface NodePorts {
  /**
   * Loose reverse-path filtering on the underlay (default: its `rp_filter` sysctl set to 2): while
   * encryption is switched on or off, a peer's plaintext still arrives there after this node routes
   * to it through a tunnel, which strict filtering (a distribution default, e.g. RHEL's) drops.
   */
  loosenUnderlay(ifname: string): Promise<unknown>;
  /**
   * Replaces the cluster routes with `routes` (only destinations `managed` accepts are pruned), and
   * host encryption's rules with `host`'s (none when undefined).
   */
  reconcileRoutes(
    routes: DesiredRoute[],
    managed: (dst: string) => boolean,
    host: DesiredHost | undefined,
  ): Promise<unknown>;
  strict: {
    /** Lifts the drops `s` no longer wants, keeping every other one (before routes move). */
    relax(s: DesiredStrict): Promise<unknown>;
    /** Installs `s` exactly (after routes moved). */
    reconcile(s: DesiredStrict): Promise<unknown>;
    /** Forces a full re-apply next time. */
    invalidate(): void;
    /** Packets the strict rules dropped, per peer and direction (monotonic). */
    drops(): Promise<StrictDrop[]>;
  };
}

export interface CompositeOptions {
  /** The data plane of each mode this node can run; a generation of a missing mode is an error. */
  backends: Partial<Record<EncryptionMode, GenerationBackend>>;
  /** Whether a route destination belongs to the cluster (only those are pruned). */
  managedRoute: (dst: string) => boolean;
  /** Default: the real `ip route` and `nft` reconcilers of src/dataplane/node. */
  ports?: NodePorts;
}

const MODES: readonly EncryptionMode[] = ["wireguard", "ipsec"];

/**
 * The node's one reconciler (DataplaneBackend): hands each generation to the backend of its mode
 * (WireGuard generations to the WireGuard data plane, ipsec ones to ESP) and owns what they share,
 * routes and strict rules, so those are reconciled once per pass and in this order:
 *
 *   0. loose reverse-path filtering on the underlay (tunnels get theirs from their backends);
 *   1. strict.relax: drops that go away are lifted before any route moves;
 *   2. every backend installs its generations (receive side first: make before break);
 *   3. routes, tunnel routes pointed at the interface that carries their generation;
 *   4. strict.reconcile: drops that come are added once routes send through a tunnel;
 *   5. every backend retires what its desired generations no longer need (nothing routes there).
 *
 * Generations of both modes coexist during a mode switch exactly as two epochs of one mode do
 * during a rotation. A failure anywhere forces a full resync on the next pass.
 */
export class CompositeBackend implements DataplaneBackend {
  private readonly ports: NodePorts;
  private lastMode: EncryptionMode;

  constructor(private readonly o: CompositeOptions) {
    this.ports = o.ports ?? { loosenUnderlay, reconcileRoutes, strict: new StrictReconciler() };
    this.lastMode = o.backends.wireguard !== undefined ? "wireguard" : "ipsec";
  }

  /** The backend of the mode that carries (or last carried) this node's traffic. */
  get kind(): DataplaneBackend["kind"] {
    return this.o.backends[this.lastMode]?.kind ?? "none";
  }

  private backend(mode: EncryptionMode): GenerationBackend {
    const b = this.o.backends[mode];
    if (b === undefined) {
      throw new PodcryptError("ENOBACKEND", `this node has no data plane for mode ${mode}`, {
        context: { mode },
      });
    }
    return b;
  }

  async reconcile(desired: DesiredNodeState, privateKey: (epoch: number) => Buffer): Promise<void> {
    const ctx: GenerationContext = {
      routes: desired.routes,
      mtu: desired.mtu,
      privateKey,
      ...(desired.saInstance === undefined ? {} : { saInstance: desired.saInstance }),
    };
    const byMode = (m: EncryptionMode) => desired.generations.filter((g) => g.mode === m);
    try {
      await this.ports.loosenUnderlay(desired.strict.underlayIf);
      await this.ports.strict.relax(desired.strict);
      const carrier = new Map<string, string>();
      const modeOf = new Map<string, EncryptionMode>();
      for (const mode of MODES) {
        const gens = byMode(mode);
        if (gens.length === 0) continue;
        for (const [gen, dev] of await this.backend(mode).applyGenerations(gens, ctx)) {
          carrier.set(gen, dev);
          modeOf.set(gen, mode);
        }
      }
      const routes = desired.routes.map((r): DesiredRoute => {
        if (r.kind !== "tunnel") return r;
        const dev = carrier.get(r.dev);
        if (dev === undefined) {
          throw new PodcryptError("EROUTE", `route ${r.dst} names ${r.dev}, which no generation carries`, {
            context: { dst: r.dst, dev: r.dev },
          });
        }
        return { ...r, dev };
      });
      await this.ports.reconcileRoutes(routes, this.o.managedRoute, desired.host);
      await this.ports.strict.reconcile(desired.strict);
      for (const mode of MODES) await this.o.backends[mode]?.retireGenerations(byMode(mode), ctx);
      const sending = desired.routes.find((r) => r.kind === "tunnel");
      const mode = sending?.kind === "tunnel" ? modeOf.get(sending.dev) : desired.generations.at(-1)?.mode;
      if (mode !== undefined) this.lastMode = mode;
    } catch (e) {
      this.ports.strict.invalidate();
      throw e;
    }
  }

  async observe(): Promise<ObservedPeer[]> {
    const all = await Promise.all(MODES.map((m) => this.o.backends[m]?.observe() ?? []));
    return all.flat();
  }

  strictDrops(): Promise<StrictDrop[]> {
    return this.ports.strict.drops();
  }

  saInstance(): string | undefined {
    return this.o.backends.ipsec?.saInstance?.();
  }

  /** Hands over the daemons of each mode's backend, one after another (WireGuard first). */
  async handOverDaemons(): Promise<string[]> {
    const done: string[] = [];
    for (const m of MODES) done.push(...((await this.o.backends[m]?.handOver?.()) ?? []));
    return done;
  }

  async close(): Promise<void> {
    for (const m of MODES) await this.o.backends[m]?.close();
  }
}
