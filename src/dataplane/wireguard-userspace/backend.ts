import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { run } from "../../platform/netns/netns.js";
import { projectRoot } from "../../paths.js";
import type { GenerationBackend, GenerationContext } from "../composite/types.js";
import { PEER_KEEPALIVE_S, type DesiredGeneration, type ObservedPeer } from "../types.js";
import { b64ToHex, uapiGet, uapiSet, uapiSocketPath, type UapiDevice } from "./uapi-client.js";
import { ensureLinkUp } from "../../platform/tun/tun-device.js";
import { DaemonWatch } from "../node/daemon-watch.js";
import { nothingListens, spawnForegroundDaemon } from "../node/spawn-daemon.js";
import { ensureTunnelRpf } from "../node/rpf.js";

async function linkExists(ifname: string): Promise<boolean> {
  return run("ip", ["link", "show", "dev", ifname]).then(
    () => true,
    () => false,
  );
}

export interface UserspaceWireguardOptions {
  logger: Logger;
  /** Command that starts a daemon for an interface: `podcrypt wireguard` (default) or `wireguard-go`. */
  daemon?: "podcrypt" | "wireguard-go";
  /**
   * Called at once when a daemon this backend configured dies (not when it retires one): the
   * caller runs a reconcile, which starts a new daemon and pushes it the full configuration.
   */
  onDaemonDeath?: (ifname: string) => void;
}

interface Installed {
  ifname: string;
  epoch: number;
  peers: Map<string, string>; // publicKey -> node
}

/**
 * The userspace WireGuard data plane (a {@link GenerationBackend} under the node's
 * CompositeBackend, which owns routes and strict rules): one daemon process per key generation
 * (the daemon outlives the agent, so restarting the agent never touches traffic), configured over
 * its UAPI socket by diff (never `replace_peers`, which would drop live sessions).
 */
export class UserspaceWireguardBackend implements GenerationBackend {
  readonly kind = "wireguard-userspace";
  private readonly installed = new Map<string, Installed>();
  private readonly watch: DaemonWatch;
  /** Interfaces being deleted on purpose: their daemons' exits are no deaths. */
  private readonly retiring = new Set<string>();

  constructor(private readonly opts: UserspaceWireguardOptions) {
    this.watch = new DaemonWatch((ifname) => {
      // Whatever the daemon held is gone: configure the next one in full.
      this.installed.delete(ifname);
      opts.onDaemonDeath?.(ifname);
    });
  }

  /** Each generation runs on its own interface, `gen.ifname`. */
  async applyGenerations(
    generations: DesiredGeneration[],
    ctx: GenerationContext,
  ): Promise<Map<string, string>> {
    const carriers = new Map<string, string>();
    for (const gen of generations) {
      await this.reconcileGeneration(gen, ctx.privateKey(gen.epoch), ctx.mtu);
      carriers.set(gen.ifname, gen.ifname);
    }
    return carriers;
  }

  /** Deletes the interface of every generation not in `generations` (its daemon exits with it). */
  async retireGenerations(generations: DesiredGeneration[]): Promise<void> {
    const keep = new Set(generations.map((g) => g.ifname));
    for (const ifname of await this.tunnelInterfaces()) {
      if (!keep.has(ifname)) {
        // Deleting the interface makes the daemon exit and remove its socket.
        this.watch.forget(ifname);
        this.retiring.add(ifname);
        await run("ip", ["link", "del", ifname]).catch(() => undefined);
        this.installed.delete(ifname);
        this.opts.logger.info({ ifname }, "retired generation");
      }
    }
  }

  /** Interfaces with a live UAPI socket that this backend's daemons created (`<prefix><slot>`). */
  private async tunnelInterfaces(): Promise<string[]> {
    const links = JSON.parse((await run("ip", ["-j", "link", "show", "type", "tun"])) || "[]") as Array<{
      ifname: string;
    }>;
    return links
      .map((l) => l.ifname)
      .filter((n) => this.installed.has(n) || /^(podcrypt|pc\d*w)[01]$/.test(n));
  }

  private async ensureDaemon(ifname: string): Promise<void> {
    const sock = uapiSocketPath(ifname);
    if (existsSync(sock)) {
      try {
        await uapiGet(ifname);
        this.watch.watch(ifname, sock);
        return;
      } catch (cause) {
        // A daemon that still owns its interface is alive but busy: never start a second one. Our
        // daemon's persistent interface outlives it, so the interface alone proves nothing: a
        // socket nobody listens on does prove it dead.
        if ((await linkExists(ifname)) && !(await nothingListens(sock))) {
          throw new PodcryptError("EDAEMON", `daemon of ${ifname} does not answer on ${sock}`, { cause });
        }
      }
    }
    if ((this.opts.daemon ?? "podcrypt") === "podcrypt") {
      // In the foreground as this process's (detached) child, with a persistent TUN device: one
      // Node.js start-up, ready the moment it says so, and a death leaves the interface, its
      // addresses and routes in place for the next daemon (src/dataplane/node/spawn-daemon.ts).
      const pid = await spawnForegroundDaemon({
        kind: "wireguard",
        cmd: process.execPath,
        args: [join(projectRoot(), "bin", "podcrypt"), "wireguard", ifname, "--persistent"],
        what: `podcrypt wireguard ${ifname}`,
        onExit: (how, pid) => this.opts.logger.warn({ ifname, pid, exit: how }, "WireGuard daemon exited"),
      });
      this.watch.watch(ifname, sock);
      this.opts.logger.info({ ifname, pid }, "WireGuard daemon started");
      return;
    }
    await this.startWireguardGo(ifname, sock);
  }

  /**
   * wireguard-go forks itself into the background (its TUN device is not persistent); ready means
   * its UAPI socket answers, and a first process that exits non-zero before that failed.
   */
  private async startWireguardGo(ifname: string, sock: string): Promise<void> {
    let failure: PodcryptError | undefined;
    let ready = false;
    // An inherited WG_PROCESS_FOREGROUND would shadow the one wireguard-go appends when it
    // re-executes itself and make every child fork again.
    const env: NodeJS.ProcessEnv = { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1" };
    delete env["WG_PROCESS_FOREGROUND"];
    const child = spawn("wireguard-go", [ifname], {
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
      env,
    });
    let err = "";
    child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    child.on(
      "error",
      (e) => (failure = new PodcryptError("EDAEMON", `wireguard-go ${ifname}: ${e.message}`, { cause: e })),
    );
    child.on("exit", (code, signal) => {
      if (ready || code === 0) return;
      const how = signal !== null ? `signal ${signal}` : `exit code ${code}`;
      failure = new PodcryptError(
        "EDAEMON",
        `wireguard-go ${ifname} exited (${how}) before its UAPI socket answered: ${err.trim().slice(-300)}`,
      );
    });
    child.unref();
    // Up to a minute: on a loaded node a Node.js daemon can take many seconds to start.
    for (let i = 0; i < 1200 && failure === undefined; i++) {
      if (existsSync(sock)) {
        try {
          await uapiGet(ifname);
          ready = true;
          child.stderr?.destroy();
          this.watch.watch(ifname, sock);
          return;
        } catch {
          // not answering yet
        }
      }
      await sleep(50);
    }
    child.stderr?.destroy();
    if (failure !== undefined) throw failure;
    throw new PodcryptError("EDAEMON", `wireguard-go ${ifname}: UAPI socket ${sock} did not appear`);
  }

  private async reconcileGeneration(gen: DesiredGeneration, key: Buffer, mtu: number): Promise<void> {
    await this.ensureDaemon(gen.ifname);
    const have: UapiDevice = await uapiGet(gen.ifname);
    const lines: string[] = [];
    const keyB64 = key.toString("base64");
    if (have.privateKey !== keyB64) lines.push(`private_key=${key.toString("hex")}`);
    if (have.listenPort !== gen.listenPort) lines.push(`listen_port=${gen.listenPort}`);
    const havePeers = new Map(have.peers.map((p) => [p.publicKey, p]));
    const wantKeys = new Set(gen.peers.map((p) => p.publicKey));
    for (const p of have.peers) {
      if (!wantKeys.has(p.publicKey)) lines.push(`public_key=${b64ToHex(p.publicKey)}`, "remove=true");
    }
    for (const p of gen.peers) {
      const h = havePeers.get(p.publicKey);
      const endpoint = p.endpoint.address.includes(":")
        ? `[${p.endpoint.address}]:${p.endpoint.port}`
        : `${p.endpoint.address}:${p.endpoint.port}`;
      const ips = [...p.allowedIps].sort();
      const sameIps = h !== undefined && JSON.stringify([...h.allowedIps].sort()) === JSON.stringify(ips);
      if (h !== undefined && h.endpoint === endpoint && sameIps && h.persistentKeepalive === PEER_KEEPALIVE_S)
        continue;
      lines.push(`public_key=${b64ToHex(p.publicKey)}`);
      if (h?.endpoint !== endpoint) lines.push(`endpoint=${endpoint}`);
      if (!sameIps) lines.push("replace_allowed_ips=true", ...ips.map((ip) => `allowed_ip=${ip}`));
      if (h?.persistentKeepalive !== PEER_KEEPALIVE_S)
        lines.push(`persistent_keepalive_interval=${PEER_KEEPALIVE_S}`);
    }
    if (lines.length > 0) {
      await uapiSet(gen.ifname, lines);
      this.opts.logger.info(
        { ifname: gen.ifname, epoch: gen.epoch, peers: gen.peers.length },
        "configured generation",
      );
    }
    ensureLinkUp(gen.ifname, mtu);
    await ensureTunnelRpf(gen.ifname);
    this.installed.set(gen.ifname, {
      ifname: gen.ifname,
      epoch: gen.epoch,
      peers: new Map(gen.peers.map((p) => [p.publicKey, p.node])),
    });
  }

  /**
   * A planned restart of every daemon without loss (docs/design.md, "A planned restart (an
   * upgrade)"), one after another: starts `podcrypt wireguard --take-over` for each interface,
   * which takes the running daemon's interface, socket and sessions (no handshake) before that
   * one exits. The old daemons' exits are no deaths. wireguard-go daemons are left alone (they
   * cannot hand over). Returns the interfaces handed over.
   */
  async handOver(): Promise<string[]> {
    if ((this.opts.daemon ?? "podcrypt") !== "podcrypt") return [];
    const done: string[] = [];
    // The daemons running now, whether or not this agent configured them yet (a new agent adopts).
    for (const ifname of (await this.tunnelInterfaces()).sort()) {
      const sock = uapiSocketPath(ifname);
      if (!existsSync(sock) || (await nothingListens(sock))) continue;
      this.watch.forget(ifname);
      let pid: number;
      try {
        pid = await spawnForegroundDaemon({
          kind: "wireguard",
          cmd: process.execPath,
          args: [join(projectRoot(), "bin", "podcrypt"), "wireguard", ifname, "--persistent", "--take-over"],
          what: `podcrypt wireguard ${ifname} --take-over`,
          onExit: (how, pid) => this.opts.logger.warn({ ifname, pid, exit: how }, "WireGuard daemon exited"),
        });
      } finally {
        // Whoever serves now: the successor, or the old daemon when it refused to hand over.
        if (existsSync(sock)) this.watch.watch(ifname, sock);
      }
      this.opts.logger.info(
        { ifname, pid },
        "WireGuard daemon replaced by handover (a planned restart: no session or packet lost)",
      );
      done.push(ifname);
    }
    return done;
  }

  async observe(): Promise<ObservedPeer[]> {
    const out: ObservedPeer[] = [];
    for (const inst of this.installed.values()) {
      const dev = await uapiGet(inst.ifname).catch(() => undefined);
      if (dev === undefined) continue;
      for (const p of dev.peers) {
        out.push({
          node: inst.peers.get(p.publicKey) ?? "?",
          epoch: inst.epoch,
          ifname: inst.ifname,
          publicKey: p.publicKey,
          endpoint: p.endpoint,
          txBytes: p.txBytes,
          rxBytes: p.rxBytes,
          latestHandshake: p.lastHandshake === 0 ? undefined : p.lastHandshake,
        });
      }
    }
    return out;
  }

  async close(): Promise<void> {
    // Daemons, routes and rules stay: traffic must not depend on the agent process.
    this.watch.close();
  }
}
