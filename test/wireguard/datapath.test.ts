// test-tier: netns (root: network namespaces)
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { projectRoot } from "../../src/paths.js";
import { NetnsLab } from "../support/netns.js";

/** A datapath-peer.ts child process in a namespace, driven over JSON lines. */
class Peer {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  readonly events: string[] = [];
  private eventWaiters: { name: string; resolve: (v: Record<string, unknown>) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line) as Record<string, unknown>;
      if (typeof msg["id"] === "number") {
        this.waiting.get(msg["id"])?.(msg);
        this.waiting.delete(msg["id"]);
      } else if (typeof msg["event"] === "string") {
        this.events.push(msg["event"]);
        for (const w of this.eventWaiters.filter((x) => x.name === msg["event"])) w.resolve(msg);
        this.eventWaiters = this.eventWaiters.filter((x) => x.name !== msg["event"]);
      }
    });
  }

  event(name: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${name} event`)), timeoutMs);
      this.eventWaiters.push({
        name,
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
      });
    });
  }

  request(cmd: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${cmd}`)), 10_000);
      this.waiting.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
      this.child.stdin!.write(JSON.stringify({ id, cmd, ...args }) + "\n");
    });
  }

  async counters(): Promise<{
    counters: {
      txPackets: number;
      rxPackets: number;
      txBytes: number;
      rxBytes: number;
      controlReceived: number;
      controlSent: number;
      keepalivesReceived: number;
      staged: number;
      groBuffers: number;
      tunOffload: boolean;
      tunSuperSegments: number;
      drops: Record<string, number>;
    };
    core: {
      drops: Record<string, number>;
      control: { type: number; length: number }[];
      handshakeRequests: number;
      peer: { endpoint: { address: string; port: number } | undefined; rxBytes: number; txBytes: number };
    };
  }> {
    return (await this.request("counters")) as never;
  }
}

const SCRIPT = join(projectRoot(), "test", "wireguard", "fixtures", "datapath-peer.ts");
const SECRET = "podcrypt-datapath-test";

describe("WireguardDatapath between two namespaces (fixed-key core)", () => {
  const lab = new NetnsLab();
  let nsA = "";
  let nsB = "";
  let a: Peer;
  let b: Peer;

  const start = async (
    ns: string,
    args: string[],
    env: Record<string, string> = {},
  ): Promise<{ peer: Peer; port: number }> => {
    const child = lab.spawn(ns, process.execPath, ["--import", "tsx", SCRIPT, ...args], {
      stdio: ["pipe", "pipe", "inherit"],
      cwd: projectRoot(),
      env: { ...process.env, ...env },
    });
    const peer = new Peer(child);
    const started = await peer.event("started");
    return { peer, port: started["port"] as number };
  };

  before(async () => {
    nsA = await lab.netns("dpa");
    nsB = await lab.netns("dpb");
    await lab.veth(nsA, "eth0", nsB, "eth0", ["10.77.0.1/24"], ["10.77.0.2/24"]);
    // B listens on a fixed port and knows A's endpoint; A starts without a keypair (staging).
    // B receives with UDP GRO (the default), A without; A sends with UDP GSO (the default): every
    // batch path is exercised.
    ({ peer: b } = await start(nsB, [
      "b",
      "wgt0",
      "51820",
      SECRET,
      "10.66.0.1/32",
      "10.77.0.1:51821",
      "ready",
    ]));
    ({ peer: a } = await start(
      nsA,
      ["a", "wgt0", "51821", SECRET, "10.66.0.2/32", "10.77.0.2:51820", "wait"],
      { PODCRYPT_GRO: "0" },
    ));
    for (const [ns, addr] of [
      [nsA, "10.66.0.1/24"],
      [nsB, "10.66.0.2/24"],
    ] as const) {
      await runIn(ns, "ip", ["addr", "add", addr, "dev", "wgt0"]);
      await runIn(ns, "ip", ["link", "set", "wgt0", "up"]);
    }
  });

  after(() => lab.cleanup());

  it("stages packets until the keypair is ready, then flushes them", async () => {
    await runIn(nsA, "ping", ["-c", "2", "-i", "0.2", "-W", "1", "10.66.0.2"]).catch(() => undefined);
    const before = await a.counters();
    assert.equal(before.counters.txPackets, 0);
    assert.ok(before.counters.staged >= 2, `staged ${before.counters.staged}`);
    assert.ok(before.core.handshakeRequests >= 2);
    await a.request("ready");
    const afterA = await a.counters();
    assert.equal(afterA.counters.staged, 0);
    assert.ok(afterA.counters.txPackets >= 2);
    const bc = await b.counters();
    assert.ok(bc.counters.rxPackets >= 2, `B received ${bc.counters.rxPackets}`);
  });

  it("carries ping both ways and counts bytes as wg does", async () => {
    const out = await runIn(nsA, "ping", ["-c", "5", "-i", "0.1", "-W", "2", "10.66.0.2"]);
    assert.match(out, /5 received/);
    await runIn(nsB, "ping", ["-c", "3", "-i", "0.1", "-W", "2", "-s", "1300", "10.66.0.1"]);
    const ac = await a.counters();
    const bc = await b.counters();
    // Every message is 16 header + padded payload + 16 tag: a multiple of 16, at least 32.
    assert.equal(ac.counters.txBytes % 16, 0);
    assert.equal(ac.core.peer.txBytes, ac.counters.txBytes);
    assert.equal(bc.core.peer.rxBytes, bc.counters.rxBytes);
    assert.equal(ac.counters.drops["auth-failed"], 0);
    assert.equal(bc.counters.drops["replay"], 0);
    // B learned A's endpoint from authenticated data (roaming).
    assert.deepEqual(bc.core.peer.endpoint, { address: "10.77.0.1", port: 51821 });
  });

  it("moves TCP at speed (iperf3, 2 s)", async () => {
    lab.spawn(nsB, "iperf3", ["-s", "-1", "-B", "10.66.0.2"]);
    await new Promise((r) => setTimeout(r, 300));
    const json = JSON.parse(
      await runIn(nsA, "iperf3", ["-c", "10.66.0.2", "-t", "2", "-J"], { timeoutMs: 20_000 }),
    ) as { end: { sum_received: { bits_per_second: number } } };
    const mbps = json.end.sum_received.bits_per_second / 1e6;
    console.log(`# podcrypt datapath iperf3: ${mbps.toFixed(0)} Mbit/s`);
    // A floor, not a benchmark: the machine is shared (bench/micro/tunnel-compare.ts measures).
    assert.ok(mbps > 5, `only ${mbps} Mbit/s`);
    const bc = await b.counters();
    assert.equal(bc.counters.drops["auth-failed"], 0);
    assert.equal(bc.counters.drops["malformed"], 0);
    assert.ok(bc.counters.groBuffers > 0, "no UDP GRO buffer was received");
  });

  it("sends keepalives and routes control messages both ways", async () => {
    const before = await b.counters();
    assert.equal((await a.request("keepalive"))["sent"], true);
    await new Promise((r) => setTimeout(r, 200));
    const after = await b.counters();
    assert.equal(after.counters.keepalivesReceived, before.counters.keepalivesReceived + 1);
  });

  it("sends the keepalives the core asks for and drops staged packets when it gives up", async () => {
    const before = await b.counters();
    await a.request("request-keepalive");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await b.counters()).counters.keepalivesReceived, before.counters.keepalivesReceived + 1);

    await a.request("unready");
    await runIn(nsA, "ping", ["-c", "3", "-i", "0.1", "-W", "1", "10.66.0.2"]).catch(() => undefined);
    const staged = await a.counters();
    assert.ok(staged.counters.staged >= 3, `staged ${staged.counters.staged}`);
    await a.request("give-up");
    const dropped = await a.counters();
    assert.equal(dropped.counters.staged, 0);
    assert.equal(
      dropped.counters.drops["no-keypair"],
      (staged.counters.drops["no-keypair"] ?? 0) + staged.counters.staged,
    );
    await a.request("ready");
    await runIn(nsA, "ping", ["-c", "2", "-i", "0.1", "-W", "2", "10.66.0.2"]);
  });

  it("drops and counts replayed, forged, misrouted and malformed datagrams", async () => {
    const before = await b.counters();
    await a.request("inject", { src: "10.66.0.1", dst: "10.66.0.2" });
    await new Promise((r) => setTimeout(r, 300));
    const after = await b.counters();
    const delta = (r: string): number => (after.counters.drops[r] ?? 0) - (before.counters.drops[r] ?? 0);
    assert.equal(delta("replay"), 1);
    assert.equal(delta("auth-failed"), 1);
    assert.equal(delta("bad-source"), 1);
    assert.equal(delta("unknown-index"), 1);
    assert.equal(delta("malformed"), 4);
    assert.equal(after.counters.controlReceived - before.counters.controlReceived, 1);
    assert.equal(after.core.control.at(-1)?.type, 1);
    assert.equal(after.core.control.at(-1)?.length, 148);
    assert.equal(after.core.drops["replay"], after.counters.drops["replay"]);
    // Still working afterwards.
    await runIn(nsA, "ping", ["-c", "2", "-i", "0.1", "-W", "2", "10.66.0.2"]);
  });

  it("rebinds the listen port live; the peer follows by roaming", async () => {
    const reply = await b.request("rebind", { port: 0 });
    const port = reply["port"] as number;
    assert.ok(port > 0 && port !== 51820);
    // B speaks first from its new port; A learns it from authenticated data.
    await runIn(nsB, "ping", ["-c", "2", "-i", "0.1", "-W", "2", "10.66.0.1"]);
    const ac = await a.counters();
    assert.deepEqual(ac.core.peer.endpoint, { address: "10.77.0.2", port });
  });

  it("reports interface-gone when the TUN interface is deleted", async () => {
    const gone = b.event("interface-gone", 5_000);
    await runIn(nsB, "ip", ["link", "del", "wgt0"]);
    await gone;
    assert.ok(b.events.includes("interface-gone"));
  });
});

describe("WireguardDatapath over an IPv6 underlay, carrying IPv6 and IPv4", () => {
  const lab = new NetnsLab();

  it("pings both ways over the dual-stack socket", async () => {
    const nsC = await lab.netns("dpc");
    const nsD = await lab.netns("dpd");
    await lab.veth(nsC, "eth0", nsD, "eth0", ["fd00:77::1/64"], ["fd00:77::2/64"]);
    const spawnPeer = async (ns: string, args: string[]): Promise<Peer> => {
      const child = lab.spawn(ns, process.execPath, ["--import", "tsx", SCRIPT, ...args], {
        stdio: ["pipe", "pipe", "inherit"],
        cwd: projectRoot(),
      });
      const peer = new Peer(child);
      await peer.event("started");
      return peer;
    };
    const d = await spawnPeer(nsD, [
      "b",
      "wgt6",
      "51820",
      SECRET,
      "fd00:66::1/128,10.66.0.1/32",
      "-",
      "ready",
    ]);
    const c = await spawnPeer(nsC, [
      "a",
      "wgt6",
      "0",
      SECRET,
      "fd00:66::2/128,10.66.0.2/32",
      "fd00:77::2:51820",
      "ready",
    ]);
    for (const [ns, addrs] of [
      [nsC, ["fd00:66::1/64", "10.66.0.1/24"]],
      [nsD, ["fd00:66::2/64", "10.66.0.2/24"]],
    ] as const) {
      for (const addr of addrs)
        await runIn(ns, "ip", ["addr", "add", addr, "dev", "wgt6", ...(addr.includes(":") ? ["nodad"] : [])]);
      await runIn(ns, "ip", ["link", "set", "wgt6", "up"]);
    }
    // D has no endpoint for C until C's first authenticated packet arrives (roaming).
    assert.match(
      await runIn(nsC, "ping", ["-6", "-c", "3", "-i", "0.1", "-W", "2", "fd00:66::2"]),
      /3 received/,
    );
    assert.match(
      await runIn(nsD, "ping", ["-c", "3", "-i", "0.1", "-W", "2", "-s", "1372", "10.66.0.1"]),
      /3 received/,
    );
    const dc = await d.counters();
    assert.equal(dc.core.peer.endpoint?.address, "fd00:77::1");
    assert.ok(dc.counters.rxPackets >= 6 && dc.counters.txPackets >= 6);
    assert.equal(dc.counters.drops["no-endpoint"], 0);
    assert.equal(dc.counters.drops["auth-failed"], 0);
    await c.request("close");
  });
});

describe("WireguardDatapath with TUN offloads, against a peer without them", () => {
  const lab = new NetnsLab();
  let dir = "";

  after(async () => {
    await lab.cleanup();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  it("cuts TCP super-segments into packets that arrive intact, IPv4 and IPv6, both ways", async () => {
    const nsE = await lab.netns("dpe");
    const nsF = await lab.netns("dpf");
    await lab.veth(nsE, "eth0", nsF, "eth0", ["10.78.0.1/24"], ["10.78.0.2/24"]);
    const spawnPeer = async (ns: string, args: string[], env: Record<string, string>): Promise<Peer> => {
      const child = lab.spawn(ns, process.execPath, ["--import", "tsx", SCRIPT, ...args], {
        stdio: ["pipe", "pipe", "inherit"],
        cwd: projectRoot(),
        env: { ...process.env, ...env },
      });
      const peer = new Peer(child);
      await peer.event("started");
      return peer;
    };
    // E reads its TUN with offloads (the default), F one packet per read.
    const e = await spawnPeer(
      nsE,
      ["a", "wgo0", "51821", SECRET, "10.66.0.2/32,fd00:66::2/128", "10.78.0.2:51820", "ready"],
      {},
    );
    const f = await spawnPeer(
      nsF,
      ["b", "wgo0", "51820", SECRET, "10.66.0.1/32,fd00:66::1/128", "10.78.0.1:51821", "ready"],
      { PODCRYPT_OFFLOAD: "0" },
    );
    for (const [ns, addrs] of [
      [nsE, ["10.66.0.1/24", "fd00:66::1/64"]],
      [nsF, ["10.66.0.2/24", "fd00:66::2/64"]],
    ] as const) {
      for (const addr of addrs)
        await runIn(ns, "ip", ["addr", "add", addr, "dev", "wgo0", ...(addr.includes(":") ? ["nodad"] : [])]);
      await runIn(ns, "ip", ["link", "set", "wgo0", "up"]);
    }
    dir = mkdtempSync(join(tmpdir(), "podcrypt-offload-"));
    const file = join(dir, "payload");
    const data = randomBytes(24 * 1024 * 1024 + 777);
    writeFileSync(file, data);
    const want = createHash("sha256").update(data).digest("hex");
    // Receives one connection on `listen` in `to`, sends the file from `from` with `connect`.
    const transfer = async (from: string, to: string, listen: string, connect: string): Promise<string> => {
      const received = runIn(to, "sh", ["-c", `socat -u ${listen} - | sha256sum`], { timeoutMs: 60_000 });
      await new Promise((r) => setTimeout(r, 300));
      await runIn(from, "socat", ["-u", `OPEN:${file}`, connect], { timeoutMs: 60_000 });
      return (await received).split(" ")[0]!;
    };
    assert.equal(await transfer(nsE, nsF, "TCP4-LISTEN:5001,bind=10.66.0.2", "TCP4:10.66.0.2:5001"), want);
    assert.equal(
      await transfer(nsE, nsF, "TCP6-LISTEN:5002,bind=[fd00:66::2]", "TCP6:[fd00:66::2]:5002"),
      want,
    );
    assert.equal(await transfer(nsF, nsE, "TCP4-LISTEN:5003,bind=10.66.0.1", "TCP4:10.66.0.1:5003"), want);
    // E writes what it receives coalesced (one write per run of a flow's segments).
    assert.equal(
      await transfer(nsF, nsE, "TCP6-LISTEN:5004,bind=[fd00:66::1]", "TCP6:[fd00:66::1]:5004"),
      want,
    );
    const ec = (await e.counters()).counters;
    const fc = (await f.counters()).counters;
    assert.equal(ec.tunOffload, true);
    assert.equal(fc.tunOffload, false);
    // The kernel handed E super-segments (TSO), which E cut into packets F took as they were.
    assert.ok(ec.tunSuperSegments > 0, "no TCP super-segment was read");
    assert.equal(fc.tunSuperSegments, 0);
    for (const c of [ec, fc]) {
      assert.equal(c.drops["malformed"], 0);
      assert.equal(c.drops["auth-failed"], 0);
      assert.equal(c.drops["replay"], 0);
    }
  });
});
