// test-tier: netns (root: network namespaces)
/**
 * The userspace ESP daemon between two namespaces (and a rotation at the data-plane level): each end runs `podcrypt esp -f`, configured through
 * its control socket with SAs derived as the agents derive them. All traffic stays inside the two
 * namespaces this file makes.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { espSet } from "../../src/dataplane/esp-userspace/control.js";
import { run, runIn } from "../../src/platform/netns/netns.js";
import { projectRoot } from "../../src/paths.js";
import { NetnsLab } from "../support/netns.js";
import { iperf3 } from "../support/wireguard-lab.js";
import { espPair, installEpoch, podcryptCommand, status, type EspPair } from "../support/esp-lab.js";
import { espSaOptions, startCapture, stopCapture, tsharkFields } from "../support/tshark.js";

const execFileP = promisify(execFile);
const lab = new NetnsLab();
const work = mkdtempSync(join(tmpdir(), "podcrypt-esp-test-"));
after(() => rmSync(work, { recursive: true, force: true }));
let p!: EspPair;
after(() => (p as EspPair | undefined)?.dispose());

before(async () => {
  p = await espPair(lab);
  await installEpoch(p, 1, true);
});

/** Sends raw UDP datagrams (hex payloads) from `ns` to `host`:`port`, from an ephemeral port. */
async function sendUdp(ns: string, host: string, port: number, payloads: string[]): Promise<void> {
  const code = `
    const dgram = require("node:dgram");
    let input = "";
    process.stdin.on("data", (d) => (input += d));
    process.stdin.on("end", async () => {
      const list = JSON.parse(input);
      const s = dgram.createSocket("udp4");
      for (const h of list) await new Promise((r) => s.send(Buffer.from(h, "hex"), ${port}, "${host}", r));
      s.close();
    });`;
  await runIn(ns, process.execPath, ["-e", code], { input: JSON.stringify(payloads), timeoutMs: 60_000 });
}

async function ping(
  ns: string,
  target: string,
  args: string[] = [],
): Promise<{ sent: number; received: number }> {
  const out = await runIn(ns, "ping", [...args, target], { timeoutMs: 120_000 }).catch((e: unknown) =>
    String((e as { cause?: { stdout?: string } }).cause?.stdout ?? e),
  );
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  assert.ok(m !== null, `ping output: ${out}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

/** Captures UDP 4500 on `ns`'s eth0 while `during` runs; returns the pcap path. */
async function capture(ns: string, name: string, during: () => Promise<void>): Promise<string> {
  const pcap = join(work, `${name}.pcap`);
  const t = await startCapture(ns, pcap, { filter: "udp port 4500", lab });
  await during();
  await new Promise((r) => setTimeout(r, 500));
  await stopCapture(t);
  return pcap;
}

describe("podcrypt esp between two namespaces", () => {
  it("carries ping and iperf3 both ways, counting per SA", async () => {
    const r = await ping(p.a.ns, p.b.inner, ["-c", "5", "-i", "0.1", "-W", "5"]);
    assert.equal(r.received, 5);
    const mbps = await iperf3((...a) => lab.spawn(...a), p.a.ns, p.b.ns, p.b.inner, 2);
    // Only that bulk TCP flows: the figures belong to `npm run bench` (this machine is shared and loaded).
    assert.ok(mbps > 0.5, `iperf3 ${mbps} Mbit/s`);
    const sa = await status(p.a);
    const out = sa.sas.find((s) => s.direction === "out" && s.keyId === 1);
    const inb = sa.sas.find((s) => s.direction === "in" && s.keyId === 1);
    assert.ok(
      out !== undefined && out.packets > 100 && out.bytes > 100_000 && out.active === true,
      JSON.stringify(out),
    );
    assert.ok(inb !== undefined && inb.packets > 5);
    assert.equal(sa.peers[0]?.activeKeyId, 1);
    assert.equal(sa.drops["auth-failed"], 0);
  });

  it("is ESP in UDP 4500 on the wire; tshark decrypts it with `debug esp-sa --tshark` lines", async () => {
    const pattern = randomBytes(8).toString("hex") + Buffer.from("ESPMARK!").toString("hex");
    const pcap = await capture(p.b.ns, "marker", async () => {
      const r = await ping(p.a.ns, p.b.inner, ["-c", "5", "-i", "0.1", "-W", "5", "-p", pattern]);
      assert.ok(r.received >= 3, `${r.received} of 5 answered`);
    });
    const fields = ["udp.dstport", "esp.spi", "esp.icv_good", "data.data"];
    const blind = await tsharkFields(pcap, [], fields);
    assert.ok(blind.length >= 6, `captured ${blind.length} packets`);
    for (const row of blind) {
      assert.equal(row[0], "4500");
      assert.match(row[1] ?? "", /^0x[0-9a-f]{8}$/);
      assert.ok(!(row[3] ?? "").includes(pattern), "no plaintext marker without keys");
    }

    const c = podcryptCommand();
    const { stdout, stderr } = await execFileP(
      c.cmd,
      [...c.args, "debug", "esp-sa", "--tshark", "--socket-dir", p.socketDir],
      { cwd: projectRoot() },
    );
    assert.match(stderr, /WARNING: these lines contain ESP session keys/);
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 2, "one SA per direction, each once");
    assert.ok(lines.some((l) => l.startsWith(`"IPv4","${p.a.underlay}","${p.b.underlay}",`)));
    const opts = espSaOptions(lines);
    const rows = await tsharkFields(pcap, opts, fields);
    assert.equal(rows.length, blind.length);
    for (const row of rows) {
      assert.equal(row[2], "1", "ICV verified by tshark");
      assert.ok((row[3] ?? "").includes(pattern), `decrypted ICMP carries the marker: ${row[3]}`);
    }
  });

  it("drops replayed and tampered ESP, counting them; garbage on 4500 neither crashes nor stalls", async () => {
    const pcap = await capture(p.b.ns, "replay", async () => {
      // tshark announces "Capturing on" a moment before it really captures: send more than needed.
      await ping(p.a.ns, p.b.inner, ["-c", "8", "-i", "0.1", "-W", "2"]);
    });
    const rows = await tsharkFields(pcap, ["-Y", `ip.src == ${p.a.underlay}`], ["udp.payload"]);
    const captured = rows.map((r) => r[0]!).filter((h) => h.length > 0);
    assert.ok(captured.length >= 3);
    const before = await status(p.b);

    await sendUdp(p.a.ns, p.b.underlay, 4500, captured);
    const tampered = captured.map((h) => {
      const b = Buffer.from(h, "hex");
      b.writeUInt32BE(0x7fff_0000, 4); // a sequence number never seen: passes the replay check
      b[b.length - 20]! ^= 0x01; // one ciphertext bit
      return b.toString("hex");
    });
    await sendUdp(p.a.ns, p.b.underlay, 4500, tampered);
    await new Promise((r) => setTimeout(r, 300));
    let after1 = await status(p.b);
    assert.equal(after1.drops.replay - before.drops.replay, captured.length, "replays counted");
    assert.equal(
      after1.drops["auth-failed"] - before.drops["auth-failed"],
      tampered.length,
      "auth failures counted",
    );
    const inSa = after1.sas.find((s) => s.direction === "in" && s.keyId === 1)!;
    assert.ok(inSa.replayDrops >= captured.length && inSa.authFailures >= tampered.length);

    // Garbage: random sizes and bytes, IKE-marked, keepalives, a known SPI with nonsense.
    const spi = captured[0]!.slice(0, 8);
    const garbage: string[] = [];
    for (let i = 0; i < 3000; i++)
      garbage.push(randomBytes(1 + Math.floor(Math.random() * 1400)).toString("hex"));
    for (let i = 0; i < 200; i++) garbage.push("00000000" + randomBytes(40).toString("hex"));
    for (let i = 0; i < 200; i++) garbage.push("ff");
    for (let i = 0; i < 200; i++) garbage.push(spi + randomBytes(3 + (i % 100)).toString("hex"));
    const start = Date.now();
    await sendUdp(p.a.ns, p.b.underlay, 4500, garbage);
    const r = await ping(p.a.ns, p.b.inner, ["-c", "5", "-i", "0.1", "-W", "5"]);
    assert.equal(r.received, 5, "still forwarding right after the garbage");
    assert.ok(Date.now() - start < 60_000);
    after1 = await status(p.b);
    assert.equal(after1.pid, before.pid, "same daemon process");
    assert.ok(p.b.daemon.exitCode === null, "daemon alive");
    const d = after1.drops;
    assert.ok(d["ike"] - before.drops["ike"] >= 200);
    assert.ok(d["nat-keepalive"] - before.drops["nat-keepalive"] >= 200);
    assert.ok(d["unknown-spi"] - before.drops["unknown-spi"] > 1000);
    assert.ok(
      d.malformed + d["auth-failed"] + d.replay >
        before.drops.malformed + before.drops["auth-failed"] + before.drops.replay,
    );
  });

  it("rotates key ID 1 -> 2 under continuous ping without losing a packet", async () => {
    const pinging = ping(p.a.ns, p.b.inner, ["-c", "400", "-i", "0.01", "-W", "5"]);
    await new Promise((r) => setTimeout(r, 800));
    // prepare: both ends receive (and could send) with key ID 2
    await installEpoch(p, 2, false);
    let s = await status(p.a);
    assert.deepEqual([...new Set(s.sas.map((x) => x.keyId))].sort(), [1, 2]);
    assert.equal(s.peers[0]?.activeKeyId, 1);
    await new Promise((r) => setTimeout(r, 500));
    // switch
    for (const [self, other] of [
      [p.a, p.b],
      [p.b, p.a],
    ] as const)
      await espSet(self.socket, { activate: [{ peer: other.name, keyId: 2 }] });
    await new Promise((r) => setTimeout(r, 500));
    // retire
    for (const e of [p.a, p.b]) await espSet(e.socket, { removeKeyIds: [1] });
    const r = await pinging;
    assert.equal(r.sent, 400);
    assert.equal(r.received, r.sent, `lost ${r.sent - r.received} of ${r.sent}`);
    s = await status(p.a);
    assert.deepEqual(
      s.sas.map((x) => x.keyId),
      [2, 2],
    );
    const out2 = s.sas.find((x) => x.direction === "out")!;
    assert.ok(out2.packets > 50 && out2.active === true, "key ID 2 carried the end of the run");
    assert.equal(s.drops["no-sa"], 0);
    assert.equal(s.drops["unknown-spi"], 0);
  });

  it("exits on interface deletion, removing its control socket", async () => {
    const exited = new Promise((r) => p.a.daemon.once("exit", r));
    await runIn(p.a.ns, "ip", ["link", "del", p.a.ifname]);
    await exited;
    assert.ok(!existsSync(p.a.socket));
    // and on SIGTERM
    const exitedB = new Promise((r) => p.b.daemon.once("exit", r));
    const pids = (await run("ip", ["netns", "pids", p.b.ns])).split(/\s+/).filter(Boolean);
    for (const pid of pids) process.kill(Number(pid), "SIGTERM");
    await exitedB;
    assert.ok(!existsSync(p.b.socket));
  });
});
