import { formatSpi } from "../../esp/sa.js";
import { ESP_IN_UDP_PORT } from "../../esp/udp.js";
import { keyIdForEpoch, keyIdOfSpi, spiFor } from "../../keys/derive.js";
import { decodeKey } from "../../keys/x25519.js";
import type { Logger } from "../../log/logger.js";
import { ProcessKernelCommands, type KernelCommands } from "../../platform/netlink/kernel-commands.js";
import { looseRpFilter, type SysctlSetter } from "../node/rpf.js";
import type { GenerationBackend, GenerationContext } from "../composite/types.js";
import { peerSas } from "../../keys/sas.js";
import type { DesiredGeneration, DesiredPeer, ObservedPeer } from "../types.js";
import { ProcessEncapHolder, type EncapHolderPort } from "./encap.js";
import { canonicalIp } from "../../platform/netlink/addr.js";
import { decideSaInstance, type InstanceEvidence } from "../../keys/sa-instance.js";
import {
  XFRM_REQID_BASE,
  reqidForEpoch,
  xfrmDesired,
  type PeerSaPair,
  type XfrmOwners,
} from "./generations.js";
import type { XfrmSaSpec } from "./types.js";
import { XfrmReconciler, type XfrmSnapshot } from "./reconciler.js";

/** The memo key of a peer's SA pair: everything its keys are derived from besides private keys. */
function materialId(epoch: number, peer: DesiredPeer, instance: string): string {
  return `${epoch}|${peer.node}|${peer.publicKey}|${peer.saInstance ?? ""}|${instance}`;
}

export interface KernelXfrmOptions {
  logger: Logger;
  /** This node's name: bound into every derived ESP key (src/keys/derive.ts). */
  node: string;
  /** This node's underlay address (outer source of its ESP packets). */
  localAddress: string;
  /** The underlay interface, lower device of the XFRM interfaces. */
  underlayIf: string;
  /** Prefix of the generation interfaces (`<prefix>0`, `<prefix>1`): XFRM interfaces so named are ours. */
  ifPrefix: string;
  /** ESP-in-UDP port, the same on every node. Default 4500. */
  port?: number;
  /** Default: Debian's `ip`, spawned. */
  kernel?: KernelCommands;
  /** Network namespace to act in (tests); default the process's own. */
  netns?: string;
  /** Default: a `podcrypt xfrm-encap` daemon in this namespace. */
  encap?: EncapHolderPort;
  /** Sets a sysctl of this namespace (default: writes /proc/sys; skipped with `netns`). */
  sysctl?: SysctlSetter;
}

/**
 * The kernel XFRM data plane (a {@link GenerationBackend} under the node's CompositeBackend, which
 * owns routes and strict rules): ESP tunnel mode with rfc4106(gcm(aes)) in UDP 4500, route-based,
 * one XFRM interface per key generation (see generations.ts for the layout and why). Every pass
 * reads what is installed and applies the difference in one `ip -batch`, keys on its stdin; after
 * a failure the next pass is a full resync from a fresh read. States and policies are recognised
 * by their reqid (0x5043xxxx), interfaces by their name and kind: anything else on the node is left
 * alone. The kernel state and the ESP-in-UDP socket holder outlive the agent.
 */
export class KernelXfrmBackend implements GenerationBackend {
  readonly kind = "xfrm";
  private readonly reconciler: XfrmReconciler;
  private readonly encap: EncapHolderPort;
  private readonly port: number;
  private readonly material = new Map<string, PeerSaPair>();
  /** The node's SA instance the kernel's states are made under (src/keys/sa-instance.ts). */
  private instance: string | undefined;
  /** SPIs of the outbound states installed under `instance` (of key generations still installed). */
  private installedOut = new Set<number>();
  private owners: XfrmOwners = { generationByIfId: new Map(), nodeByAddress: new Map() };
  private readonly isOurs: (ifname: string) => boolean;

  constructor(private readonly o: KernelXfrmOptions) {
    const prefix = o.ifPrefix;
    this.isOurs = (n) => n.length === prefix.length + 1 && n.startsWith(prefix) && /[01]$/.test(n);
    this.reconciler = new XfrmReconciler(o.kernel ?? new ProcessKernelCommands(), {
      ...(o.netns === undefined ? {} : { netns: o.netns }),
      ownsLink: this.isOurs,
    });
    this.port = o.port ?? ESP_IN_UDP_PORT;
    this.encap = o.encap ?? new ProcessEncapHolder(this.port, o.logger);
  }

  /**
   * The SA pair of a peer in an epoch, derived once (an X25519 agreement and two HKDFs) and kept
   * while a generation holds that peer with that key: most passes change nothing and must stay
   * cheap with hundreds of peers. Kept in memory only, like the private keys they come from.
   */
  private sas(ctx: GenerationContext, instance: string) {
    return (epoch: number, peer: DesiredPeer, field: string): PeerSaPair => {
      const id = materialId(epoch, peer, instance);
      let pair = this.material.get(id);
      if (pair === undefined) {
        pair = peerSas({
          self: this.o.node,
          peer: peer.node,
          epoch,
          privateKey: ctx.privateKey(epoch),
          peerPublicKey: decodeKey(peer.publicKey, field),
          selfInstance: instance,
          peerInstance: peer.saInstance ?? "",
        });
        this.material.set(id, pair);
      }
      return pair;
    };
  }

  private desired(generations: DesiredGeneration[], ctx: GenerationContext, instance: string) {
    return xfrmDesired({
      self: this.o.node,
      instance,
      localAddress: this.o.localAddress,
      underlayIf: this.o.underlayIf,
      port: this.port,
      mtu: ctx.mtu,
      generations,
      privateKey: ctx.privateKey,
      sas: this.sas(ctx, instance),
    });
  }

  /** Forgets derived SAs no generation of `generations` holds. */
  private forget(generations: DesiredGeneration[], instance: string): void {
    const keep = new Set(generations.flatMap((g) => g.peers.map((p) => materialId(g.epoch, p, instance))));
    for (const id of [...this.material.keys()]) if (!keep.has(id)) this.material.delete(id);
  }

  /**
   * Installs the generations' interfaces, SAs and policies, removing only what of *their* `if_id`s
   * is not desired (a peer that left); another generation's state stays until retire.
   */
  async applyGenerations(
    generations: DesiredGeneration[],
    ctx: GenerationContext,
  ): Promise<Map<string, string>> {
    const snapshot = await this.reconciler.read();
    const instance = this.chooseInstance(generations, ctx, snapshot.states);
    const d = this.desired(generations, ctx, instance);
    // A batch that fails half-way leaves states of this instance: the next pass goes on with it.
    this.instance = instance;
    await this.encap.ensure();
    const ifIds = new Set(d.links?.map((l) => l.ifId));
    const r = await this.reconciler.reconcile(d, ifIds, {
      snapshot,
      keepOutbound: this.keepOutbound(generations),
    });
    this.recordOutbound(generations, d.states);
    this.remember(d.owners);
    for (const l of d.links ?? []) await this.loosenRpFilter(l.ifname);
    if (r.changed)
      this.o.logger.info(
        { epochs: generations.map((g) => g.epoch), lines: r.lines, peers: d.owners.nodeByAddress.size },
        "configured kernel XFRM",
      );
    return new Map(generations.map((g) => [g.ifname, g.ifname]));
  }

  /** Removes every owned interface, SA and policy `generations` do not hold; with none left, the holder. */
  async retireGenerations(generations: DesiredGeneration[], ctx: GenerationContext): Promise<void> {
    // applyGenerations chose the instance in this pass; with no generation there is none.
    const instance = generations.length === 0 ? undefined : this.instance;
    const d = this.desired(instance === undefined ? [] : generations, ctx, instance ?? "");
    // Routes and strict rules moved since applyGenerations; links, SAs and policies did not.
    const r = await this.reconciler.reconcile(d, "all", {
      reuseRead: true,
      keepOutbound: this.keepOutbound(generations),
    });
    this.owners = d.owners;
    this.forget(generations, instance ?? "");
    this.recordOutbound(generations, d.states);
    if (generations.length === 0) {
      this.instance = undefined;
      await this.encap.stop();
    }
    if (r.changed) this.o.logger.info({ epochs: generations.map((g) => g.epoch), lines: r.lines }, "retired");
  }

  /** IPsec: the SA instance the kernel's states are made under after the last pass. */
  saInstance(): string | undefined {
    return this.instance;
  }

  /**
   * The SA instance of this pass. The kernel vouches for one by holding its outbound states: the
   * instance this backend installed (every outbound state it installed since must still be
   * there), or after an agent restart the one the node published (every outbound state expected
   * under it, and at least one, must be there). Anything else (a reboot, `ip xfrm state flush`, an
   * expiry) may have lost sequence numbers: a new instance.
   */
  private chooseInstance(
    generations: DesiredGeneration[],
    ctx: GenerationContext,
    states: XfrmSnapshot["states"],
  ): string {
    const local = canonicalIp(this.o.localAddress);
    const present = new Set(
      states
        .filter((s) => s.src === local && s.reqid >= XFRM_REQID_BASE && s.reqid <= XFRM_REQID_BASE + 0xffff)
        .map((s) => s.spi),
    );
    let evidence: InstanceEvidence;
    if (this.instance !== undefined) {
      evidence = { candidate: this.instance, mustHave: this.installedOut, present };
    } else {
      const published = ctx.saInstance;
      const expected = new Set<number>();
      if (published !== undefined)
        for (const g of generations)
          for (const p of g.peers)
            if (p.saInstance !== undefined)
              expected.add(spiFor(keyIdForEpoch(g.epoch), this.o.node, p.node, published, p.saInstance));
      const vouched = [...expected].some((spi) => present.has(spi));
      evidence = { candidate: vouched ? published : undefined, mustHave: expected, present };
    }
    const d = decideSaInstance(evidence);
    if (d.fresh) {
      this.installedOut = new Set();
      this.material.clear();
      this.o.logger.info({ reason: d.reason }, "new SA instance: every pair gets new ESP keys and SPIs");
    }
    return d.instance;
  }

  /** Outbound states of the installed generations' reqids stay when their peer left (plan.ts). */
  private keepOutbound(generations: DesiredGeneration[]): { src: string; reqids: Set<number> } {
    return {
      src: canonicalIp(this.o.localAddress),
      reqids: new Set(generations.map((g) => reqidForEpoch(g.epoch))),
    };
  }

  /** Adds the outbound states just installed to those that must stay; forgets retired key IDs. */
  private recordOutbound(generations: DesiredGeneration[], states: readonly XfrmSaSpec[]): void {
    const keyIds = new Set(generations.map((g) => keyIdForEpoch(g.epoch)));
    for (const spi of [...this.installedOut]) if (!keyIds.has(keyIdOfSpi(spi))) this.installedOut.delete(spi);
    for (const st of states) if (st.src === this.o.localAddress) this.installedOut.add(st.spi);
  }

  private remember(o: XfrmOwners): void {
    for (const [k, v] of o.generationByIfId) this.owners.generationByIfId.set(k, v);
    for (const [k, v] of o.nodeByAddress) this.owners.nodeByAddress.set(k, v);
  }

  /**
   * Loose reverse-path filtering on the generation interfaces, as on every tunnel (src/dataplane/
   * node/rpf.ts): during a rotation a peer may still send on the old generation while this node
   * routes to it through the new one. What XFRM decrypted carries a security path, which the
   * kernel's check skips, so these interfaces need no RPF_ADDRESS.
   */
  private async loosenRpFilter(ifname: string): Promise<void> {
    if (this.o.netns !== undefined && this.o.sysctl === undefined) return;
    await looseRpFilter(ifname, this.o.sysctl);
  }

  /** One row per peer and key ID: its inbound and outbound SA with counters (`ip -s xfrm state`). */
  async observe(): Promise<ObservedPeer[]> {
    const states = await this.reconciler.readStates();
    const rows = new Map<string, ObservedPeer>();
    for (const s of states) {
      if (s.reqid < XFRM_REQID_BASE || s.reqid > XFRM_REQID_BASE + 0xffff || s.ifId === undefined) continue;
      const gen = this.owners.generationByIfId.get(s.ifId);
      const outbound = s.src === this.o.localAddress;
      const remote = outbound ? s.dst : s.src;
      const node = this.owners.nodeByAddress.get(remote);
      if (gen === undefined || node === undefined) continue;
      const keyId = keyIdOfSpi(s.spi);
      const k = `${node}|${gen.epoch}`;
      let row = rows.get(k);
      if (row === undefined) {
        row = {
          node,
          epoch: gen.epoch,
          ifname: gen.ifname,
          keyId,
          endpoint: `${remote}:${this.port}`,
          txBytes: 0,
          rxBytes: 0,
          txPackets: 0,
          rxPackets: 0,
        };
        rows.set(k, row);
      }
      if (outbound) {
        row.spiOut = formatSpi(s.spi);
        row.txBytes += s.bytes ?? 0;
        row.txPackets = (row.txPackets ?? 0) + (s.packets ?? 0);
      } else {
        row.spiIn = formatSpi(s.spi);
        row.rxBytes += s.bytes ?? 0;
        row.rxPackets = (row.rxPackets ?? 0) + (s.packets ?? 0);
      }
    }
    return [...rows.values()].sort((a, b) => a.node.localeCompare(b.node) || a.epoch - b.epoch);
  }

  async close(): Promise<void> {
    // Kernel state and the ESP-in-UDP holder stay: traffic must not depend on the agent process.
  }
}
