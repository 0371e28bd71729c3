/**
 * Two namespaces joined by a veth pair, each running `podcrypt esp -f` and configured through its
 * control socket with SAs for the other, as an agent would push them. Shared by the namespace
 * tests and the ESP row of bench/run.ts.
 *
 *   a: underlay 10.78.0.1/24 on eth0, inner 10.68.1.1/24 on the ESP interface
 *   b: underlay 10.78.0.2/24 on eth0, inner 10.68.2.1/24 on the ESP interface
 *
 * Each side routes the other's inner /24 into its ESP interface. Control sockets live in a
 * temporary directory of the run, not in /var/run/podcrypt/esp, so a running local cluster is
 * never touched.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { espGet, espSet, espSocketPath, type EspStatus } from "../../src/dataplane/esp-userspace/control.js";
import { peerSas } from "../../src/keys/sas.js";
import { generateKeyPair, type NodeKeyPair } from "../../src/keys/x25519.js";
import { projectRoot } from "../../src/paths.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { spawnDaemon, type SpawnInNs } from "./daemon.js";

/** What the lab needs from NetnsLab (or the bench's own namespace owner). */
export interface NsOwner {
  readonly id: string;
  netns(name: string): Promise<string>;
  veth(a: string, ifA: string, b: string, ifB: string, addrA?: string[], addrB?: string[]): Promise<void>;
  spawn: SpawnInNs;
}

export interface EspEnd {
  name: string;
  ns: string;
  ifname: string;
  underlay: string;
  inner: string;
  innerNet: string;
  keys: Map<number, NodeKeyPair>;
  /** The end's SA instance (src/keys/derive.ts), fixed for the lab's life. */
  instance: string;
  socket: string;
  daemon: ChildProcess;
  stderr: string[];
}

export interface EspPair {
  a: EspEnd;
  b: EspEnd;
  socketDir: string;
  /** Removes the socket directory (the daemons die with their namespaces). */
  dispose(): void;
}

/**
 * The command that runs the podcrypt CLI: `bin/podcrypt` when this file runs from dist/, else this
 * folder's run-cli.ts through tsx (the working tree, only the ESP commands loaded).
 */
export function podcryptCommand(): { cmd: string; args: string[] } {
  if (fileURLToPath(import.meta.url).endsWith(".js"))
    return { cmd: process.execPath, args: [join(projectRoot(), "bin", "podcrypt")] };
  return {
    cmd: process.execPath,
    args: ["--import", "tsx", join(projectRoot(), "test", "esp-dataplane", "run-cli.ts")],
  };
}

/** Starts `podcrypt esp -f IFNAME` in `ns` and waits until its control socket answers. */
export async function startEspDaemon(
  spawn: SpawnInNs,
  ns: string,
  ifname: string,
  socketDir: string,
  extra: string[] = [],
): Promise<{ daemon: ChildProcess; stderr: string[] }> {
  const c = podcryptCommand();
  const d = spawnDaemon(spawn, ns, c.cmd, [
    ...c.args,
    "esp",
    "-f",
    ifname,
    "--socket-dir",
    socketDir,
    ...extra,
  ]);
  const { child: daemon, stderr } = d;
  const path = espSocketPath(ifname, socketDir);
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (existsSync(path)) {
      try {
        await espGet(path);
        return { daemon, stderr };
      } catch {
        // not yet serving
      }
    }
    if (d.exited() !== undefined || Date.now() > deadline)
      throw new Error(
        `esp daemon ${ifname} in ${ns}: ${d.exited() ?? "no control socket"}; ${stderr.join("").slice(-2000)}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Two namespaces with an ESP daemon each, peers configured (no SAs yet: see `installEpoch`);
 * `flags` are extra command-line flags of each end's daemon (e.g. `--no-offload`).
 */
export async function espPair(
  lab: NsOwner,
  tag = "",
  flags: { a?: string[]; b?: string[] } = {},
): Promise<EspPair> {
  const socketDir = mkdtempSync(join(tmpdir(), "podcrypt-esp-"));
  const nsA = await lab.netns(`${tag}a`);
  const nsB = await lab.netns(`${tag}b`);
  await lab.veth(nsA, "eth0", nsB, "eth0", ["10.78.0.1/24"], ["10.78.0.2/24"]);
  const ends: EspEnd[] = [];
  for (const [name, ns, underlay, inner, innerNet, suffix] of [
    ["node-a", nsA, "10.78.0.1", "10.68.1.1", "10.68.1.0/24", "a"],
    ["node-b", nsB, "10.78.0.2", "10.68.2.1", "10.68.2.0/24", "b"],
  ] as const) {
    const ifname = `pce${lab.id}${tag}${suffix}`.slice(0, 15);
    const { daemon, stderr } = await startEspDaemon(
      (...a) => lab.spawn(...a),
      ns,
      ifname,
      socketDir,
      flags[suffix] ?? [],
    );
    await runIn(ns, "ip", ["addr", "add", `${inner}/32`, "dev", ifname]);
    ends.push({
      name,
      ns,
      ifname,
      underlay,
      inner,
      innerNet,
      keys: new Map(),
      instance: randomBytes(16).toString("hex"),
      socket: espSocketPath(ifname, socketDir),
      daemon,
      stderr,
    });
  }
  const [a, b] = ends as [EspEnd, EspEnd];
  for (const [self, other] of [
    [a, b],
    [b, a],
  ] as const) {
    await runIn(self.ns, "ip", ["route", "add", other.innerNet, "dev", self.ifname, "src", self.inner]);
    await espSet(self.socket, {
      local: { name: self.name, address: self.underlay },
      peers: [
        {
          name: other.name,
          endpoint: { address: other.underlay, port: 4500 },
          allowedIps: [other.innerNet],
        },
      ],
    });
  }
  return { a, b, socketDir, dispose: () => rmSync(socketDir, { recursive: true, force: true }) };
}

/**
 * Makes both ends' key pairs for `epoch` and installs the epoch's SAs on both (inbound and
 * outbound; outbound activated only with `activate`), exactly as the agents derive them.
 */
export async function installEpoch(p: EspPair, epoch: number, activate: boolean): Promise<void> {
  for (const e of [p.a, p.b])
    if (!e.keys.has(epoch))
      e.keys.set(
        epoch,
        generateKeyPair((n) => randomBytes(n)),
      );
  for (const [self, other] of [
    [p.a, p.b],
    [p.b, p.a],
  ] as const) {
    const sas = peerSas({
      self: self.name,
      peer: other.name,
      epoch,
      privateKey: self.keys.get(epoch)!.privateKey,
      peerPublicKey: other.keys.get(epoch)!.publicKey,
      selfInstance: self.instance,
      peerInstance: other.instance,
    });
    const keyId = sas[1].keyId;
    await espSet(self.socket, { sas, ...(activate ? { activate: [{ peer: other.name, keyId }] } : {}) });
  }
}

export async function status(e: EspEnd): Promise<EspStatus> {
  try {
    return await espGet(e.socket);
  } catch (cause) {
    throw new Error(
      `${e.name} daemon (exit ${e.daemon.exitCode ?? e.daemon.signalCode ?? "none"}): ${e.stderr.join("").slice(-3000)}`,
      { cause },
    );
  }
}
