/**
 * The configuration half of the userspace ESP daemon, without I/O: local identity, peers (inner
 * CIDRs in a longest-prefix-match table, outer endpoint), the SA database, and the per-peer
 * counters the packet path updates. `apply` validates a whole `set` before changing anything.
 */
import { isIP } from "node:net";
import { z } from "zod";
import { PodcryptError, ValidationError } from "../../errors/index.js";
import { ESP_DROP_REASONS, type EspDropReason } from "../../esp/drops.js";
import { InboundSa, OutboundSa, describeSa, formatSpi, type Sa } from "../../esp/sa.js";
import { SaDatabase } from "../../esp/sadb.js";
import { AllowedIps, parseAllowedIp } from "../../wireguard/allowed-ips.js";
import type {
  EspCounters,
  EspDatapathDropReason,
  EspExportedSa,
  EspPeerConfig,
  EspSaConfig,
  EspSetRequest,
  EspStatus,
} from "./control.js";

export const DATAPATH_DROP_REASONS: readonly EspDatapathDropReason[] = [
  "no-route",
  "no-sa",
  "no-endpoint",
  "bad-source",
  "oversize",
];

/** A peer as the packet path sees it. */
export interface EspPeer {
  readonly name: string;
  endpoint: { address: string; port: number };
  allowedIps: string[];
  txBytes: number;
  txPackets: number;
  rxBytes: number;
  rxPackets: number;
}

/** Identity, peers and SAs of one ESP interface. */
export class EspState {
  readonly db = new SaDatabase();
  readonly routes = new AllowedIps<EspPeer>();
  readonly peers = new Map<string, EspPeer>();
  readonly counters: EspCounters = {
    txPackets: 0,
    txBytes: 0,
    rxPackets: 0,
    rxBytes: 0,
    sendErrors: 0,
    tunWriteErrors: 0,
    callbackErrors: 0,
  };
  readonly drops = Object.fromEntries(DATAPATH_DROP_REASONS.map((r) => [r, 0])) as Record<
    EspDatapathDropReason,
    number
  >;
  /** `instance`: the node's SA instance the agent gave this daemon (src/keys/derive.ts). */
  local: { name: string | null; address: string | null; instance: string | null } = {
    name: null,
    address: null,
    instance: null,
  };

  /**
   * Applies a `set` (order in src/dataplane/esp-userspace/control.ts). Everything is checked
   * first: a ValidationError or PodcryptError leaves the state unchanged.
   */
  apply(req: Omit<EspSetRequest, "op">, now: number): void {
    // ---- validate ----------------------------------------------------------------------------
    const local = req.local;
    if (local?.address !== undefined && isIP(local.address) === 0)
      throw new ValidationError("local.address", `not an IP address: ${JSON.stringify(local.address)}`);
    const removedPeers = new Set(req.removePeers ?? []);
    const peers = new Map<string, EspPeerConfig>();
    (req.peers ?? []).forEach((p, i) => {
      if (isIP(p.endpoint.address) === 0)
        throw new ValidationError(`peers[${i}].endpoint.address`, `not an IP address: ${p.endpoint.address}`);
      p.allowedIps.forEach((c, j) => parseAllowedIp(c, `peers[${i}].allowedIps[${j}]`));
      if (peers.has(p.name)) throw new ValidationError(`peers[${i}].name`, `duplicate peer ${p.name}`);
      peers.set(p.name, p);
    });
    const peerExists = (name: string): boolean =>
      peers.has(name) || (this.peers.has(name) && !removedPeers.has(name));
    const localAddress = local?.address ?? this.local.address ?? undefined;
    const removedKeyIds = new Set(req.removeKeyIds ?? []);
    const sas: Sa[] = (req.sas ?? []).map((s, i) => {
      if (!peerExists(s.peer)) throw new ValidationError(`sas[${i}].peer`, `unknown peer ${s.peer}`);
      const endpoint = peers.get(s.peer)?.endpoint ?? this.peers.get(s.peer)!.endpoint;
      return buildSa(s, endpoint.address, localAddress, now, `sas[${i}]`);
    });
    (req.activate ?? []).forEach((a, i) => {
      const pushed = sas.some((s) => s.direction === "out" && s.peer === a.peer && s.keyId === a.keyId);
      const installed = this.db.outboundFor(a.peer, a.keyId) !== undefined;
      const survives = installed && !removedKeyIds.has(a.keyId) && !removedPeers.has(a.peer);
      if (!pushed && !survives)
        throw new PodcryptError(
          "ENOSA",
          `activate[${i}]: no outbound SA for peer ${a.peer} key ID ${a.keyId}`,
          {
            context: { peer: a.peer, keyId: a.keyId },
          },
        );
    });

    // ---- apply -------------------------------------------------------------------------------
    for (const id of removedKeyIds) this.db.removeKeyId(id);
    for (const name of removedPeers) {
      const p = this.peers.get(name);
      if (p === undefined) continue;
      this.routes.removeByPeer(p);
      this.peers.delete(name);
      // Its SAs stay until their key ID is retired (SaDatabase.detachPeer says why).
      this.db.detachPeer(name);
    }
    if (local !== undefined)
      this.local = {
        name: local.name,
        address: local.address ?? this.local.address,
        instance: local.instance ?? this.local.instance,
      };
    for (const cfg of peers.values()) {
      let p = this.peers.get(cfg.name);
      if (p === undefined) {
        p = {
          name: cfg.name,
          endpoint: cfg.endpoint,
          allowedIps: [],
          txBytes: 0,
          txPackets: 0,
          rxBytes: 0,
          rxPackets: 0,
        };
        this.peers.set(cfg.name, p);
      }
      p.endpoint = { ...cfg.endpoint };
      this.routes.removeByPeer(p);
      for (const c of cfg.allowedIps) this.routes.insertText(c, p);
      p.allowedIps = [...cfg.allowedIps];
    }
    for (const sa of sas) {
      if (sa.direction === "in") this.db.installInbound(sa);
      else this.db.installOutbound(sa);
    }
    for (const a of req.activate ?? []) this.db.activateOutbound(a.peer, a.keyId);
  }

  /** The status document (no key material). */
  status(now: number, meta: Pick<EspStatus, "ifname" | "pid" | "port" | "mtu" | "tun">): EspStatus {
    const drops = { ...this.db.drops.snapshot(), ...this.drops } as EspStatus["drops"];
    return {
      ...meta,
      local: { ...this.local },
      peers: [...this.peers.values()]
        .map((p) => ({
          name: p.name,
          endpoint: { ...p.endpoint },
          allowedIps: [...p.allowedIps],
          activeKeyId: this.db.outbound(p.name)?.keyId ?? null,
          txBytes: p.txBytes,
          txPackets: p.txPackets,
          rxBytes: p.rxBytes,
          rxPackets: p.rxPackets,
        }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      sas: this.db.all().map((sa) => {
        const info = describeSa(sa);
        return {
          direction: info.direction,
          peer: info.peer,
          keyId: info.keyId,
          spi: formatSpi(info.spi),
          bytes: info.bytes,
          packets: info.packets,
          ageS: Math.max(0, Math.round((now - info.createdAt) / 1000)),
          sequence: info.sequence,
          maxSequence: sa.maxSequence,
          ...(sa.direction === "out" ? { active: this.db.outbound(sa.peer) === sa } : {}),
          rekeySoon: info.rekeySoon,
          replayDrops: info.replayDrops,
          authFailures: info.authFailures,
        };
      }),
      drops,
      counters: { ...this.counters },
    };
  }

  /**
   * Every SA with its key material and the outer addresses as configured now, for the tshark
   * export. Never log the result.
   */
  exportSas(): EspExportedSa[] {
    const local = this.local.address ?? "*";
    return this.db.all().map((sa) => {
      const remote = this.peers.get(sa.peer)?.endpoint.address ?? "*";
      return {
        direction: sa.direction,
        peer: sa.peer,
        keyId: sa.keyId,
        spi: sa.spi,
        icvLength: sa.icvLength,
        src: sa.direction === "out" ? local : remote,
        dst: sa.direction === "out" ? remote : local,
        key: sa.key.toString("hex"),
        salt: sa.salt.toString("hex"),
      };
    });
  }

  /**
   * A planned restart: everything a successor daemon needs to go on where this one stops (peers,
   * every SA with its key, sequence number or replay window, which outbound SA sends, the SA
   * instance), as JSON for the control socket. Every outbound SA hands its sequence space over
   * ({@link OutboundSa.handOff}): this state never numbers another packet, so no (key, nonce) pair
   * can be used by both daemons. Call it once the data path reads and sends nothing any more.
   * Holds key material: never log it.
   */
  handOver(now: number): EspHandover {
    const sas: EspHandover["sas"] = this.db.all().map((sa) => {
      const common = {
        peer: sa.peer,
        keyId: sa.keyId,
        spi: sa.spi,
        key: sa.key.toString("hex"),
        salt: sa.salt.toString("hex"),
        icvLength: sa.icvLength,
        esn: sa.esn,
        ...(sa.srcAddress !== undefined ? { srcAddress: sa.srcAddress } : {}),
        ...(sa.dstAddress !== undefined ? { dstAddress: sa.dstAddress } : {}),
        ageMs: Math.max(0, now - sa.createdAt),
        bytes: sa.bytes,
        packets: sa.packets,
      };
      if (sa.direction === "in")
        return {
          ...common,
          direction: "in" as const,
          replayWindow: sa.replay.size,
          replay: sa.replay.snapshot(),
          replayDrops: sa.replayDrops,
          authFailures: sa.authFailures,
        };
      return {
        ...common,
        direction: "out" as const,
        rekeyAfter: sa.rekeyThreshold,
        active: this.db.outbound(sa.peer) === sa,
        sequence: sa.handOff(),
      };
    });
    return {
      local: { ...this.local },
      peers: [...this.peers.values()].map((p) => ({
        ...p,
        endpoint: { ...p.endpoint },
        allowedIps: [...p.allowedIps],
      })),
      sas,
    };
  }

  /**
   * Takes over what a predecessor's {@link handOver} gave, into this fresh state: outbound SAs
   * continue after the sequence number the predecessor used last, inbound SAs keep its replay
   * windows. Validated as a whole first (EspHandover schema, SA fields): on error nothing changed.
   */
  takeOver(input: unknown, now: number): void {
    if (this.peers.size > 0 || this.db.all().length > 0)
      throw new PodcryptError("ESTATE", "an ESP state that holds peers or SAs cannot take over another");
    const r = espHandoverSchema.safeParse(input);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new ValidationError(`handover.${issue?.path.join(".") ?? ""}`, issue?.message ?? "invalid");
    }
    const h = r.data;
    const routes: Array<[string, EspPeer]> = [];
    const peers = h.peers.map((p, i) => {
      p.allowedIps.forEach((c, j) => parseAllowedIp(c, `handover.peers[${i}].allowedIps[${j}]`));
      const peer: EspPeer = { ...p, endpoint: { ...p.endpoint }, allowedIps: [...p.allowedIps] };
      for (const c of p.allowedIps) routes.push([c, peer]);
      return peer;
    });
    const sas = h.sas.map((x, i) => {
      const key = Buffer.from(x.key, "hex");
      const salt = Buffer.from(x.salt, "hex");
      const params = {
        spi: x.spi,
        keyId: x.keyId,
        key,
        salt,
        peer: x.peer,
        createdAt: now - x.ageMs,
        icvLength: x.icvLength,
        esn: x.esn,
        ...(x.srcAddress !== undefined ? { srcAddress: x.srcAddress } : {}),
        ...(x.dstAddress !== undefined ? { dstAddress: x.dstAddress } : {}),
      };
      try {
        let sa: Sa;
        if (x.direction === "in") {
          const inbound = new InboundSa({ ...params, replayWindow: x.replayWindow });
          inbound.replay.restore(x.replay);
          inbound.replayDrops = x.replayDrops;
          inbound.authFailures = x.authFailures;
          sa = inbound;
        } else {
          const outbound = new OutboundSa({ ...params, rekeyThreshold: x.rekeyAfter });
          outbound.skipTo(x.sequence);
          sa = outbound;
        }
        sa.bytes = x.bytes;
        sa.packets = x.packets;
        return { sa, active: x.direction === "out" && x.active };
      } catch (e) {
        const what = e instanceof Error ? e.message : String(e);
        throw new ValidationError(`handover.sas[${i}]`, what, { cause: e });
      } finally {
        key.fill(0);
        salt.fill(0);
      }
    });
    this.local = { ...h.local };
    for (const p of peers) this.peers.set(p.name, p);
    for (const [c, p] of routes) this.routes.insertText(c, p);
    for (const { sa } of sas) {
      if (sa.direction === "in") this.db.installInbound(sa);
      else this.db.installOutbound(sa);
    }
    for (const { sa, active } of sas) if (active) this.db.activateOutbound(sa.peer, sa.keyId);
  }

  /** Drops by reason, codec and datapath together. */
  dropSnapshot(): Record<EspDropReason | EspDatapathDropReason, number> {
    return { ...this.db.drops.snapshot(), ...this.drops };
  }
}

export { ESP_DROP_REASONS };

const hexBytes = (n: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${n * 2}}$`), `must be ${n} bytes of hex`);
const saCommon = {
  peer: z.string().min(1),
  keyId: z.number().int().min(1).max(15),
  spi: z.number().int().min(256).max(0xffff_ffff),
  key: hexBytes(16),
  salt: hexBytes(4),
  icvLength: z.union([z.literal(8), z.literal(12), z.literal(16)]),
  esn: z.boolean(),
  srcAddress: z.string().optional(),
  dstAddress: z.string().optional(),
  ageMs: z.number().min(0),
  bytes: z.number().int().min(0),
  packets: z.number().int().min(0),
};
const count = z.number().int().min(0);

/** What a daemon hands its successor ({@link EspState.handOver}): key material, never logged. */
export const espHandoverSchema = z.object({
  local: z.object({
    name: z.string().nullable(),
    address: z.string().nullable(),
    instance: z.string().nullable(),
  }),
  peers: z.array(
    z.object({
      name: z.string().min(1),
      endpoint: z.object({ address: z.string().min(1), port: z.number().int().min(1).max(65535) }),
      allowedIps: z.array(z.string()),
      txBytes: count,
      txPackets: count,
      rxBytes: count,
      rxPackets: count,
    }),
  ),
  sas: z.array(
    z.discriminatedUnion("direction", [
      z.object({
        ...saCommon,
        direction: z.literal("in"),
        replayWindow: z.number().int(),
        replay: z.object({ highest: count, ring: z.array(count) }),
        replayDrops: count,
        authFailures: count,
      }),
      z.object({
        ...saCommon,
        direction: z.literal("out"),
        rekeyAfter: z.number().int().min(1),
        active: z.boolean(),
        sequence: count,
      }),
    ]),
  ),
});
export type EspHandover = z.infer<typeof espHandoverSchema>;

function buildSa(s: EspSaConfig, remote: string, local: string | undefined, now: number, field: string): Sa {
  const key = Buffer.from(s.key, "hex");
  const salt = Buffer.from(s.salt, "hex");
  const params = {
    spi: s.spi,
    keyId: s.keyId,
    key,
    salt,
    peer: s.peer,
    createdAt: now,
    ...(s.icvLength !== undefined ? { icvLength: s.icvLength } : {}),
    ...(s.esn !== undefined ? { esn: s.esn } : {}),
    ...(s.rekeyAfter !== undefined && s.direction === "out" ? { rekeyThreshold: s.rekeyAfter } : {}),
    ...(s.direction === "out"
      ? { srcAddress: local, dstAddress: remote }
      : { srcAddress: remote, dstAddress: local }),
  };
  try {
    const sa = s.direction === "in" ? new InboundSa(params) : new OutboundSa(params);
    return sa;
  } catch (e) {
    if (e instanceof ValidationError)
      throw new ValidationError(`${field}.${e.field}`, e.message.slice(e.field.length + 2), { cause: e });
    throw e;
  } finally {
    key.fill(0);
    salt.fill(0);
  }
}
