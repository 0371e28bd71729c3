import { existsSync } from "node:fs";
import { join } from "node:path";
import { PodcryptError } from "../../errors/index.js";
import { keyIdForEpoch } from "../../keys/derive.js";
import type { Logger } from "../../log/logger.js";
import { run } from "../../platform/netns/netns.js";
import { projectRoot } from "../../paths.js";
import { ESP_IN_UDP_PORT } from "../../esp/udp.js";
import type { GenerationBackend, GenerationContext } from "../composite/types.js";
import type { DesiredGeneration, ObservedPeer } from "../types.js";
import { DEFAULT_ESP_SOCKET_DIR, espGet, espSet, espSocketPath, type EspStatus } from "./control.js";
import { decideSaInstance } from "../../keys/sa-instance.js";
import { planEsp } from "./plan.js";
import { ensureLinkUp } from "../../platform/tun/tun-device.js";
import { DaemonWatch } from "../node/daemon-watch.js";
import { nothingListens, spawnForegroundDaemon } from "../node/spawn-daemon.js";
import { ensureTunnelRpf } from "../node/rpf.js";

export interface UserspaceEspOptions {
  logger: Logger;
  /** This node's name: bound into every derived ESP key (src/keys/derive.ts). */
  node: string;
  /** This node's underlay address (outer source of its ESP packets), for status and the tshark export. */
  localAddress?: string;
  /** ESP interface. Default: the generations' ifname without its slot digit, plus "e" (`podcrypt0` -> `podcrypte`). */
  ifname?: string;
  /** ESP-in-UDP port, the same on every node. Default 4500. */
  port?: number;
  /** Control socket directory. Default /var/run/podcrypt/esp. */
  socketDir?: string;
  /** Command that runs the podcrypt CLI (the daemon runs in the foreground as a child). Default `node bin/podcrypt`. */
  command?: { cmd: string; args: string[] };
  /**
   * Packets an outbound SA sends before it asks for an early rotation (docs/design.md#keys-and-rotation).
   * Default: three quarters of the 32-bit sequence space.
   */
  rekeyAfterPackets?: number;
  /**
   * Called at once when the daemon dies (not when this backend removes it): the caller runs a
   * reconcile, which starts a new daemon and pushes it every SA.
   */
  onDaemonDeath?: (ifname: string) => void;
}

/** The ESP interface name for generation interfaces such as `pc1w0`/`pc1w1` -> `pc1we`. */
export function espIfname(generations: readonly DesiredGeneration[], fallback = "podcrypt"): string {
  const base = generations[0]?.ifname.replace(/[01]$/, "") ?? fallback;
  return `${base}e`.slice(0, 15);
}

/** The SPIs of the outbound SAs a daemon reports. */
function outboundSpis(s: EspStatus): Set<number> {
  return new Set(s.sas.filter((sa) => sa.direction === "out").map((sa) => Number.parseInt(sa.spi, 16)));
}

async function linkExists(ifname: string): Promise<boolean> {
  return run("ip", ["link", "show", "dev", ifname]).then(
    () => true,
    () => false,
  );
}

/**
 * The userspace ESP data plane (a {@link GenerationBackend} under the node's CompositeBackend,
 * which owns routes and strict rules): ONE daemon (`podcrypt esp`) and interface for every ipsec
 * key generation, the SAs of all installed generations side by side in its SA database, the
 * sending key ID per peer following the routes (see plan.ts). The agent derives the per-pair keys
 * here and pushes SAs; the daemon never sees a private key. Every generation's tunnel routes point
 * at the one ESP interface. The daemon outlives the agent.
 */
export class UserspaceEspBackend implements GenerationBackend {
  readonly kind = "esp-userspace";
  private pushed = new Map<string, string>();
  private epochByKeyId = new Map<number, number>();
  private ifname: string | undefined;
  private readonly watch: DaemonWatch;
  /** The node's SA instance the daemon holds (src/keys/sa-instance.ts). */
  private instance: string | undefined;
  /** The outbound SPIs the daemon (by pid) held after our last change: each must still be there. */
  private outbound: { pid: number; spis: Set<number> } | undefined;

  constructor(private readonly opts: UserspaceEspOptions) {
    this.watch = new DaemonWatch((ifname) => {
      // Whatever the daemon held is gone: push everything to the next one.
      this.pushed.clear();
      opts.onDaemonDeath?.(ifname);
    });
  }

  private socket(ifname: string): string {
    return espSocketPath(ifname, this.opts.socketDir ?? DEFAULT_ESP_SOCKET_DIR);
  }

  /** Pushes the generations' peers and SAs and activates the sending key ID per peer; removes nothing. */
  async applyGenerations(
    generations: DesiredGeneration[],
    ctx: GenerationContext,
  ): Promise<Map<string, string>> {
    const ifname = this.opts.ifname ?? espIfname(generations);
    await this.sync(ifname, generations, ctx, false);
    ensureLinkUp(ifname, ctx.mtu);
    // A mode switch moves routes between this interface and WireGuard's, one end at a time.
    await ensureTunnelRpf(ifname);
    return new Map(generations.map((g) => [g.ifname, ifname]));
  }

  /**
   * Removes the SAs of key IDs and the peers no generation holds any more; with no ipsec generation
   * left, deletes the interface (the daemon exits with it).
   */
  async retireGenerations(generations: DesiredGeneration[], ctx: GenerationContext): Promise<void> {
    if (generations.length > 0) {
      await this.sync(this.opts.ifname ?? espIfname(generations), generations, ctx, true);
      return;
    }
    const ifname = this.opts.ifname ?? this.ifname;
    if (ifname === undefined || !(await linkExists(ifname))) return;
    this.watch.forget(ifname);
    await run("ip", ["link", "del", ifname]).catch(() => undefined);
    this.opts.logger.info({ ifname }, "ESP data plane removed");
    this.ifname = undefined;
    this.pushed.clear();
    this.epochByKeyId.clear();
    this.instance = undefined;
    this.outbound = undefined;
  }

  /** The SA instance the daemon holds after the last pass; undefined without a daemon. */
  saInstance(): string | undefined {
    return this.instance;
  }

  private async sync(
    ifname: string,
    gens: DesiredGeneration[],
    ctx: GenerationContext,
    prune: boolean,
  ): Promise<void> {
    try {
      const have = await this.ensureDaemon(ifname, ctx.mtu);
      // The daemon vouches for the instance it was given; a fresh daemon holds none, and an
      // outbound SA gone from a live one was lost: either way a new instance, new keys.
      const d = decideSaInstance({
        candidate: have.local.instance ?? undefined,
        mustHave: this.outbound?.pid === have.pid ? this.outbound.spis : new Set(),
        present: outboundSpis(have),
      });
      if (d.fresh) {
        this.pushed.clear();
        this.opts.logger.info(
          { ifname, pid: have.pid, reason: d.reason },
          "new SA instance: every pair gets new ESP keys and SPIs",
        );
      }
      const plan = planEsp({
        self: this.opts.node,
        instance: d.instance,
        ...(this.opts.localAddress !== undefined ? { localAddress: this.opts.localAddress } : {}),
        generations: gens,
        routes: [...ctx.routes],
        port: this.opts.port ?? ESP_IN_UDP_PORT,
        privateKey: ctx.privateKey,
        ...(this.opts.rekeyAfterPackets === undefined ? {} : { rekeyAfter: this.opts.rekeyAfterPackets }),
        have,
        pushed: this.pushed,
        prune,
      });
      let after = have;
      if (plan.request !== undefined) {
        after = await espSet(this.socket(ifname), plan.request);
        this.opts.logger.info(
          {
            ifname,
            epochs: gens.map((g) => g.epoch),
            sas: plan.request.sas?.length ?? 0,
            activate: plan.request.activate ?? [],
            removeKeyIds: plan.request.removeKeyIds ?? [],
            removePeers: plan.request.removePeers ?? [],
          },
          prune ? "retired ESP SAs" : "configured ESP",
        );
      }
      this.pushed = plan.pushed;
      this.instance = d.instance;
      this.outbound = { pid: after.pid, spis: outboundSpis(after) };
      const byKeyId = prune ? new Map<number, number>() : new Map(this.epochByKeyId);
      for (const g of gens) byKeyId.set(keyIdForEpoch(g.epoch), g.epoch);
      this.epochByKeyId = byKeyId;
      this.ifname = ifname;
    } catch (e) {
      // Resync in full next time: what the daemon holds is unknown (a set that failed changed
      // nothing, so the outbound SAs it held before must still be there).
      this.pushed.clear();
      throw e;
    }
  }

  /** Starts the daemon if its control socket does not answer; returns its status. */
  private async ensureDaemon(ifname: string, mtu: number): Promise<EspStatus> {
    const sock = this.socket(ifname);
    if (existsSync(sock)) {
      try {
        const status = await espGet(sock);
        this.watch.watch(ifname, sock);
        return status;
      } catch (cause) {
        // A daemon that accepts but does not answer is alive but busy: never start a second one
        // (its persistent interface outlives it, so only the socket tells a dead one).
        if (!(await nothingListens(sock)))
          throw new PodcryptError("EDAEMON", `daemon of ${ifname} does not answer on ${sock}`, { cause });
      }
    }
    this.pushed.clear();
    const c = this.opts.command ?? { cmd: process.execPath, args: [join(projectRoot(), "bin", "podcrypt")] };
    const args = [
      ...c.args,
      "esp",
      ifname,
      "--port",
      String(this.opts.port ?? ESP_IN_UDP_PORT),
      "--mtu",
      String(mtu),
      "--socket-dir",
      this.opts.socketDir ?? DEFAULT_ESP_SOCKET_DIR,
      "--persistent",
    ];
    // In the foreground as this process's (detached) child, with a persistent TUN device: one
    // Node.js start-up, ready the moment it says so, and a death leaves the interface, its
    // addresses and routes in place for the next daemon (src/dataplane/node/spawn-daemon.ts).
    const pid = await spawnForegroundDaemon({
      kind: "esp",
      cmd: c.cmd,
      args,
      what: `podcrypt esp ${ifname}`,
      onExit: (how, pid) => this.opts.logger.warn({ ifname, pid, exit: how }, "ESP daemon exited"),
    });
    const status = await espGet(sock);
    this.watch.watch(ifname, sock);
    this.opts.logger.info({ ifname, pid }, "ESP daemon started");
    return status;
  }

  /**
   * A planned restart of the daemon without loss (docs/design.md, "A planned restart (an
   * upgrade)"): starts `podcrypt esp --take-over`, which takes the running daemon's interface,
   * socket and SAs (sequence numbers, replay windows, the SA instance) before that one exits.
   * The old daemon's exit is no death (no restart counted, no new instance). Returns the
   * interfaces handed over: none when no daemon runs.
   */
  async handOver(): Promise<string[]> {
    const ifname = this.opts.ifname ?? this.ifname;
    if (ifname === undefined) return [];
    const sock = this.socket(ifname);
    const old = await espGet(sock).catch(() => undefined);
    if (old === undefined) return [];
    this.watch.forget(ifname);
    const c = this.opts.command ?? { cmd: process.execPath, args: [join(projectRoot(), "bin", "podcrypt")] };
    let pid: number;
    try {
      pid = await spawnForegroundDaemon({
        kind: "esp",
        cmd: c.cmd,
        args: [
          ...c.args,
          "esp",
          ifname,
          "--port",
          String(old.port),
          "--socket-dir",
          this.opts.socketDir ?? DEFAULT_ESP_SOCKET_DIR,
          "--persistent",
          "--take-over",
        ],
        what: `podcrypt esp ${ifname} --take-over`,
        onExit: (how, pid) => this.opts.logger.warn({ ifname, pid, exit: how }, "ESP daemon exited"),
      });
    } finally {
      // Whatever happened, watch whoever serves now (a failed successor left the old one serving,
      // or none: then the next pass replaces it as after a death).
      this.watch.watch(ifname, sock);
    }
    const now = await espGet(sock);
    // The same SAs under the same instance, held by the new process now.
    if (this.outbound?.pid === old.pid) this.outbound = { pid: now.pid, spis: this.outbound.spis };
    this.opts.logger.info(
      { ifname, from: old.pid, pid, instance: now.local.instance, sas: now.sas.length },
      "ESP daemon replaced by handover (a planned restart: no SA, sequence number or packet lost)",
    );
    return [ifname];
  }

  async observe(): Promise<ObservedPeer[]> {
    if (this.ifname === undefined) return [];
    const s = await espGet(this.socket(this.ifname)).catch(() => undefined);
    if (s === undefined) return [];
    const rows = new Map<string, ObservedPeer>();
    for (const sa of s.sas) {
      const k = `${sa.peer}|${sa.keyId}`;
      let row = rows.get(k);
      if (row === undefined) {
        const endpoint = s.peers.find((p) => p.name === sa.peer)?.endpoint;
        row = {
          node: sa.peer,
          epoch: this.epochByKeyId.get(sa.keyId) ?? 0,
          ifname: s.ifname,
          keyId: sa.keyId,
          ...(endpoint !== undefined ? { endpoint: `${endpoint.address}:${endpoint.port}` } : {}),
          txBytes: 0,
          rxBytes: 0,
          txPackets: 0,
          rxPackets: 0,
        };
        rows.set(k, row);
      }
      if (sa.direction === "out") {
        if (sa.rekeySoon) row.rekeySoon = true;
        row.spiOut = sa.spi;
        row.sequence = sa.sequence;
        row.sequenceLimit = sa.maxSequence;
        row.txBytes += sa.bytes;
        row.txPackets = (row.txPackets ?? 0) + sa.packets;
      } else {
        row.spiIn = sa.spi;
        row.rxBytes += sa.bytes;
        row.rxPackets = (row.rxPackets ?? 0) + sa.packets;
      }
    }
    return [...rows.values()].sort((a, b) => a.node.localeCompare(b.node) || a.epoch - b.epoch);
  }

  async close(): Promise<void> {
    // The daemon, routes and rules stay: traffic must not depend on the agent process.
    this.watch.close();
  }
}
