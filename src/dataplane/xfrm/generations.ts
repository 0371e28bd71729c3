/**
 * The kernel XFRM state of IPsec-mode key generations, as a pure function (unit-tested beside).
 *
 * Route-based IPsec: every generation gets an XFRM interface named like its generation
 * (`DesiredGeneration.ifname`, so `<prefix>0`/`<prefix>1` by slot) with an `if_id` per slot. Its
 * SAs and policies carry that `if_id`, so:
 *   - traffic the node's routes send into the interface is matched only against that
 *     generation's outbound policies and leaves with its SAs (the composite's routes decide which
 *     generation sends to a peer, exactly as they do for WireGuard);
 *   - ESP that one of its inbound SAs decrypts arrives on that interface and passes the in/fwd
 *     policy check of its `if_id`;
 *   - traffic that is not routed into an XFRM interface never matches (the kernel looks policies
 *     up with `if_id` 0 for it), so the plaintext of the enable/disable phases is left to routes and
 *     strict mode, the node's nftables rules.
 * Two generations coexist during a rotation, with the same selectors but different `if_id`s.
 *
 * Keys, SPIs and key IDs are those of the userspace ESP data plane (src/keys/sas.ts:
 * `deriveEspKey`, `spiFor`, `keyIdForEpoch`, both ends' SA instances bound), and SAs use ESP in UDP on port 4500 both ways
 * (`encap espinudp 4500 4500`), so a kernel node and a userspace node speak the same wire format.
 */
import { keyIdForEpoch } from "../../keys/derive.js";
import { decodeKey } from "../../keys/x25519.js";
import { peerSas } from "../../keys/sas.js";
import type { DesiredGeneration, DesiredPeer } from "../types.js";
import type { XfrmDesired, XfrmPolicySpec, XfrmSaSpec } from "./types.js";

/** Reqid of key ID k: `XFRM_REQID_BASE + k`, inside the reqids the backend owns. */
export const XFRM_REQID_BASE = 0x50430000;
/** `if_id` of generation slot s: `XFRM_IF_ID_BASE + s`. */
export const XFRM_IF_ID_BASE = 0x50430010;
/** Anti-replay window of inbound SAs, in packets: as the userspace data plane's (src/esp/sa.ts). */
export const XFRM_REPLAY_WINDOW = 1024;

export function ifIdForSlot(slot: 0 | 1): number {
  return XFRM_IF_ID_BASE + slot;
}

export function reqidForEpoch(epoch: number): number {
  return XFRM_REQID_BASE + keyIdForEpoch(epoch);
}

export interface XfrmGenerationsInput {
  /** This node's name (bound into every derived key). */
  self: string;
  /** This node's SA instance (bound into every derived key). */
  instance: string;
  /** This node's underlay address: the outer source of its ESP and the destination of its peers'. */
  localAddress: string;
  /** The underlay interface (lower device of the XFRM interfaces). */
  underlayIf: string;
  /** ESP-in-UDP port, the same on every node. */
  port: number;
  mtu: number;
  /** IPsec-mode generations. */
  generations: readonly DesiredGeneration[];
  /** The node's private key of an epoch. */
  privateKey: (epoch: number) => Buffer;
  /**
   * The `[inbound, outbound]` SA pair of a peer in an epoch. Default: derived by `peerSas`; the
   * backend passes a memo of it, so a pass that changes nothing derives nothing.
   */
  sas?: (epoch: number, peer: DesiredPeer, field: string) => PeerSaPair;
}

/** `[inbound, outbound]`, as src/keys/sas.ts `peerSas` returns them. */
export type PeerSaPair = ReturnType<typeof peerSas>;

/** Who an installed SA belongs to, for observe(): by `if_id`, the generation; by address, the peer. */
export interface XfrmOwners {
  generationByIfId: Map<number, { epoch: number; ifname: string }>;
  nodeByAddress: Map<string, string>;
}

/** The desired links, SAs and policies of `generations` (keys derived here; never logged). */
export function xfrmDesired(i: XfrmGenerationsInput): XfrmDesired & { owners: XfrmOwners } {
  const states: XfrmSaSpec[] = [];
  const policies: XfrmPolicySpec[] = [];
  const owners: XfrmOwners = { generationByIfId: new Map(), nodeByAddress: new Map() };
  const links = i.generations.map((g) => ({
    ifname: g.ifname,
    ifId: ifIdForSlot(g.slot),
    dev: i.underlayIf,
    mtu: i.mtu,
  }));
  const encap = { sport: i.port, dport: i.port };
  for (const g of i.generations) {
    const ifId = ifIdForSlot(g.slot);
    const reqid = reqidForEpoch(g.epoch);
    owners.generationByIfId.set(ifId, { epoch: g.epoch, ifname: g.ifname });
    g.peers.forEach((p, j) => {
      const remote = p.endpoint.address;
      owners.nodeByAddress.set(remote, p.node);
      // Keys bind the peer's SA instance: none published yet, no SA (strict mode drops).
      const peerInstance = p.saInstance;
      if (peerInstance === undefined) return;
      const field = `generations[${g.epoch}].peers[${j}].publicKey`;
      const [inb, out] =
        i.sas?.(g.epoch, p, field) ??
        peerSas({
          self: i.self,
          peer: p.node,
          epoch: g.epoch,
          privateKey: i.privateKey(g.epoch),
          peerPublicKey: decodeKey(p.publicKey, field),
          selfInstance: i.instance,
          peerInstance,
        });
      const key = (sa: { key: string; salt: string }): Buffer => Buffer.from(sa.key + sa.salt, "hex");
      states.push(
        { src: i.localAddress, dst: remote, spi: out.spi, reqid, key: key(out), encap, ifId },
        {
          src: remote,
          dst: i.localAddress,
          spi: inb.spi,
          reqid,
          key: key(inb),
          encap,
          ifId,
          replayWindow: XFRM_REPLAY_WINDOW,
        },
      );
      const tmplOut = { src: i.localAddress, dst: remote, reqid };
      const tmplIn = { src: remote, dst: i.localAddress, reqid };
      for (const cidr of p.allowedIps) {
        const any = cidr.includes(":") ? "::/0" : "0.0.0.0/0";
        policies.push(
          { dir: "out", src: any, dst: cidr, ifId, tmpl: tmplOut },
          { dir: "in", src: cidr, dst: any, ifId, tmpl: tmplIn },
          { dir: "fwd", src: cidr, dst: any, ifId, tmpl: tmplIn },
        );
      }
    });
  }
  return { links, states, policies, owners };
}
