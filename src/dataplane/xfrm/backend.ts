import { formatSpi } from "../../esp/sa.js";
import { ESP_IN_UDP_PORT } from "../../esp/udp.js";
import { keyIdOfSpi } from "../../keys/derive.js";
import { decodeKey } from "../../keys/x25519.js";
import type { Logger } from "../../log/logger.js";
import { ProcessKernelCommands, type KernelCommands } from "../../platform/netlink/kernel-commands.js";
import { looseRpFilter, type SysctlSetter } from "../node/rpf.js";
import type { GenerationBackend, GenerationContext } from "../composite/types.js";
import { peerSas } from "../esp-userspace/sas.js";
import type { DesiredGeneration, DesiredPeer, ObservedPeer } from "../types.js";
import { ProcessEncapHolder, type EncapHolderPort } from "./encap.js";
import { XFRM_REQID_BASE, xfrmDesired, type PeerSaPair, type XfrmOwners } from "./generations.js";
import { XfrmReconciler } from "./reconciler.js";

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
  private sas(generations: DesiredGeneration[], ctx: GenerationContext) {
    return (epoch: number, peer: DesiredPeer, field: string): PeerSaPair => {
      const id = `${epoch}|${peer.node}|${peer.publicKey}`;
      let pair = this.material.get(id);
      if (pair === undefined) {
        pair = peerSas({
          self: this.o.node,
          peer: peer.node,
          epoch,
          privateKey: ctx.privateKey(epoch),
          peerPublicKey: decodeKey(peer.publicKey, field),
        });
        this.material.set(id, pair);
      }
      return pair;
    };
  }

  private desired(generations: DesiredGeneration[], ctx: GenerationContext) {
    return xfrmDesired({
      self: this.o.node,
      localAddress: this.o.localAddress,
      underlayIf: this.o.underlayIf,
      port: this.port,
      mtu: ctx.mtu,
      generations,
      privateKey: ctx.privateKey,
      sas: this.sas(generations, ctx),
    });
  }

  /** Forgets derived SAs no generation of `generations` holds. */
  private forget(generations: DesiredGeneration[]): void {
    const keep = new Set(
      generations.flatMap((g) => g.peers.map((p) => `${g.epoch}|${p.node}|${p.publicKey}`)),
    );
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
    const d = this.desired(generations, ctx);
    await this.encap.ensure();
    const ifIds = new Set(d.links?.map((l) => l.ifId));
    const r = await this.reconciler.reconcile(d, ifIds);
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
    const d = this.desired(generations, ctx);
    // Routes and strict rules moved since applyGenerations; links, SAs and policies did not.
    const r = await this.reconciler.reconcile(d, "all", { reuseRead: true });
    this.owners = d.owners;
    this.forget(generations);
    if (generations.length === 0) await this.encap.stop();
    if (r.changed) this.o.logger.info({ epochs: generations.map((g) => g.epoch), lines: r.lines }, "retired");
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
