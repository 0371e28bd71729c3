/**
 * What the ESP backend must change in its daemon, as a pure function of the desired node state and
 * what the daemon reports (no I/O, unit-tested beside).
 *
 * One daemon and one interface carry every key generation (the Cilium model): the SAs of all
 * installed generations sit in one SA database side by side, distinguished by key ID. Which key ID
 * *sends* to a peer follows the routes: a tunnel route to a peer's CIDR names the interface of the
 * generation that should carry it (prepare: the old one; switch: the new one), so the generation
 * whose ifname the route names is the one whose key ID is activated for that peer.
 */
import { formatSpi } from "../../esp/sa.js";
import { keyIdForEpoch, spiFor } from "../../keys/derive.js";
import { decodeKey } from "../../keys/x25519.js";
import type { DesiredGeneration, DesiredRoute } from "../types.js";
import type { EspSaConfig, EspSetRequest, EspStatus } from "./control.js";
import { peerSas } from "../../keys/sas.js";

export interface PlanInput {
  /** This node's name (bound into every derived key). */
  self: string;
  /** This node's SA instance (bound into every derived key; set in the daemon with the SAs). */
  instance: string;
  /** This node's outer address, for the SAs' tshark export; optional. */
  localAddress?: string;
  /** Generations in ipsec mode. */
  generations: DesiredGeneration[];
  routes: DesiredRoute[];
  /** ESP-in-UDP port of every node. */
  port: number;
  /** The node's private key of an epoch. */
  privateKey: (epoch: number) => Buffer;
  /** Sequence number from which outbound SAs ask for an early rotation (default: theirs). */
  rekeyAfter?: number;
  /** What the daemon has now. */
  have: EspStatus;
  /**
   * SA material pushed earlier, by `peer|keyId` -> `epoch|peer public key|peer instance|own
   * instance`: an SA already in the daemon is pushed again only when this differs (new epoch on a
   * wrapped key ID, new peer key, new SA instance of either end).
   */
  pushed: ReadonlyMap<string, string>;
  /**
   * Remove peers and key IDs the generations no longer hold. Default true. The node's reconciler
   * installs with `false` before routes move and prunes with `true` after (retire).
   */
  prune?: boolean;
}

export interface Plan {
  /** The `set` to send, or undefined when nothing differs. */
  request: Omit<EspSetRequest, "op"> | undefined;
  /** The `pushed` map after the request succeeded. */
  pushed: Map<string, string>;
  /** Active key ID wanted per peer. */
  active: Map<string, number>;
}

/** The generation and peer a tunnel route's destination belongs to, if any. */
function routeOwner(
  r: DesiredRoute,
  byIfname: Map<string, DesiredGeneration>,
): { gen: DesiredGeneration; peer: string } | undefined {
  if (r.kind !== "tunnel") return undefined;
  const gen = byIfname.get(r.dev);
  const peer = gen?.peers.find((p) => p.allowedIps.includes(r.dst));
  return gen === undefined || peer === undefined ? undefined : { gen, peer: peer.node };
}

/** The active key ID per peer: the generation its routes point at, else the current one, else the oldest. */
export function wantedActive(
  generations: DesiredGeneration[],
  routes: DesiredRoute[],
  current: ReadonlyMap<string, number | null>,
): Map<string, number> {
  const byIfname = new Map(generations.map((g) => [g.ifname, g]));
  const active = new Map<string, number>();
  for (const r of routes) {
    const owner = routeOwner(r, byIfname);
    if (owner !== undefined && !active.has(owner.peer))
      active.set(owner.peer, keyIdForEpoch(owner.gen.epoch));
  }
  const sorted = [...generations].sort((a, b) => a.epoch - b.epoch);
  for (const g of sorted) {
    for (const p of g.peers) {
      if (active.has(p.node)) continue;
      const ids = sorted
        .filter((x) => x.peers.some((y) => y.node === p.node))
        .map((x) => keyIdForEpoch(x.epoch));
      const cur = current.get(p.node);
      active.set(
        p.node,
        cur !== undefined && cur !== null && ids.includes(cur) ? cur : keyIdForEpoch(g.epoch),
      );
    }
  }
  return active;
}

/** Computes the `set` that brings the daemon to the desired generations and routes. */
export function planEsp(i: PlanInput): Plan {
  const req: Omit<EspSetRequest, "op"> = {};
  // Keys bind the peer's SA instance: a peer that published none yet gets no SA, no activation
  // and no route in the daemon (strict mode: its traffic is dropped, never sent in plaintext).
  const sorted = [...i.generations]
    .sort((a, b) => a.epoch - b.epoch)
    .map((g) => ({ ...g, peers: g.peers.filter((p) => p.saInstance !== undefined) }));

  if (
    i.have.local.name !== i.self ||
    i.have.local.instance !== i.instance ||
    (i.localAddress !== undefined && i.have.local.address !== i.localAddress)
  )
    req.local = {
      name: i.self,
      instance: i.instance,
      ...(i.localAddress !== undefined ? { address: i.localAddress } : {}),
    };

  // Peers: the union over generations; the newest generation's endpoint wins.
  const peers = new Map<string, { address: string; allowedIps: Set<string> }>();
  for (const g of sorted) {
    for (const p of g.peers) {
      const e = peers.get(p.node) ?? { address: p.endpoint.address, allowedIps: new Set<string>() };
      e.address = p.endpoint.address;
      for (const c of p.allowedIps) e.allowedIps.add(c);
      peers.set(p.node, e);
    }
  }
  const havePeers = new Map(i.have.peers.map((p) => [p.name, p]));
  const prune = i.prune ?? true;
  const removePeers = prune ? [...havePeers.keys()].filter((n) => !peers.has(n)).sort() : [];
  if (removePeers.length > 0) req.removePeers = removePeers;
  const peerUpdates: NonNullable<EspSetRequest["peers"]> = [];
  for (const [name, want] of peers) {
    const ips = [...want.allowedIps].sort();
    const h = havePeers.get(name);
    if (
      h === undefined ||
      h.endpoint.address !== want.address ||
      h.endpoint.port !== i.port ||
      JSON.stringify([...h.allowedIps].sort()) !== JSON.stringify(ips)
    )
      peerUpdates.push({ name, endpoint: { address: want.address, port: i.port }, allowedIps: ips });
  }
  if (peerUpdates.length > 0) req.peers = peerUpdates;

  // SAs of every generation, pushed when missing or made of other material.
  const wantKeyIds = new Set(sorted.map((g) => keyIdForEpoch(g.epoch)));
  const removeKeyIds = prune
    ? [...new Set(i.have.sas.map((s) => s.keyId))].filter((k) => !wantKeyIds.has(k)).sort((a, b) => a - b)
    : [];
  if (removeKeyIds.length > 0) req.removeKeyIds = removeKeyIds;
  const haveSas = new Set(i.have.sas.map((s) => `${s.direction}|${s.peer}|${s.keyId}|${s.spi}`));
  const pushed = new Map(i.pushed);
  const sas: EspSaConfig[] = [];
  for (const g of sorted) {
    const keyId = keyIdForEpoch(g.epoch);
    for (const p of g.peers) {
      const peerInstance = p.saInstance!;
      const id = `${p.node}|${keyId}`;
      const material = `${g.epoch}|${p.publicKey}|${peerInstance}|${i.instance}`;
      const outSpi = spiFor(keyId, i.self, p.node, i.instance, peerInstance);
      const inSpi = spiFor(keyId, p.node, i.self, peerInstance, i.instance);
      const present =
        haveSas.has(`out|${p.node}|${keyId}|${formatSpi(outSpi)}`) &&
        haveSas.has(`in|${p.node}|${keyId}|${formatSpi(inSpi)}`);
      if (present && pushed.get(id) === material && !removeKeyIds.includes(keyId)) continue;
      const pair = peerSas({
        self: i.self,
        peer: p.node,
        epoch: g.epoch,
        privateKey: i.privateKey(g.epoch),
        peerPublicKey: decodeKey(p.publicKey, `generations[${g.epoch}].peers.${p.node}.publicKey`),
        selfInstance: i.instance,
        peerInstance,
        ...(i.rekeyAfter === undefined ? {} : { rekeyAfter: i.rekeyAfter }),
      });
      sas.push(...pair);
      pushed.set(id, material);
    }
  }
  if (sas.length > 0) req.sas = sas;
  if (prune) {
    for (const k of [...pushed.keys()]) {
      const [peer, keyId] = k.split("|");
      if (!peers.has(peer!) || !wantKeyIds.has(Number(keyId))) pushed.delete(k);
    }
  }

  const current = new Map(i.have.peers.map((p) => [p.name, p.activeKeyId]));
  const active = wantedActive(sorted, i.routes, current);
  const activate = [...active]
    .filter(([peer, keyId]) => current.get(peer) !== keyId)
    .map(([peer, keyId]) => ({ peer, keyId }));
  if (activate.length > 0) req.activate = activate;

  return { request: Object.keys(req).length === 0 ? undefined : req, pushed, active };
}
