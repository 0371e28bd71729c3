// test-tier: netns (root: network namespaces)
/**
 * The userspace ESP daemon with TUN offloads (IFF_VNET_HDR with TSO, the WireGuard data path's
 * native/offload.cc) against one without them (`--no-offload`): node-a reads TCP super-segments
 * and cuts them into packets, each sealed under a sequence number of its own, and writes what it
 * receives coalesced; node-b reads and writes one packet at a time. Files cross both ways intact,
 * no (SPI, sequence number) crosses the wire twice (no GCM nonce twice under one key), and neither
 * end counts an ICV failure, a replay or a malformed packet. All traffic stays inside the two
 * namespaces this file makes.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { espPair, installEpoch, status, type EspPair } from "../support/esp-lab.js";
import { espSequences, startCapture, stopCapture } from "../support/tshark.js";

const lab = new NetnsLab();
after(() => lab.cleanup());
const work = mkdtempSync(join(tmpdir(), "podcrypt-esp-offload-"));
after(() => rmSync(work, { recursive: true, force: true }));
let p!: EspPair;
after(() => (p as EspPair | undefined)?.dispose());

before(async () => {
  p = await espPair(lab, "o", { b: ["--no-offload"] });
  await installEpoch(p, 1, true);
  // One ESP packet per frame on the wire (the daemons' UDP GSO runs cut before the veth), so the
  // capture sees every packet's SPI and sequence number.
  for (const e of [p.a, p.b]) await runIn(e.ns, "ip", ["link", "set", "eth0", "gso_max_segs", "1"]);
});

/** Sends `file` over one TCP connection from `from` to `host`:`port` in `to`; the receiver's sha256. */
async function transfer(from: string, to: string, host: string, port: number, file: string): Promise<string> {
  const received = runIn(to, "sh", ["-c", `socat -u TCP4-LISTEN:${port},bind=${host} - | sha256sum`], {
    timeoutMs: 60_000,
  });
  for (let tries = 0; ; tries++) {
    try {
      await runIn(from, "socat", ["-u", `OPEN:${file}`, `TCP4:${host}:${port}`], { timeoutMs: 60_000 });
      break;
    } catch (e) {
      // The listener may not be up yet (connection refused): try again, a few times.
      if (tries >= 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return (await received).split(" ")[0]!;
}

describe("podcrypt esp with TUN offloads, against a peer without them", () => {
  it("cuts TCP super-segments into ESP packets with distinct sequence numbers; files arrive intact both ways", async () => {
    const file = join(work, "payload");
    const data = randomBytes(12 * 1024 * 1024 + 777);
    writeFileSync(file, data);
    const want = createHash("sha256").update(data).digest("hex");
    const pcap = join(work, "offload.pcap");
    const capture = await startCapture(p.b.ns, pcap, { filter: "udp port 4500", lab });
    try {
      // a -> b: a's kernel hands super-segments to a's TUN (TSO), b writes packet by packet.
      assert.equal(await transfer(p.a.ns, p.b.ns, p.b.inner, 5001, file), want);
      // b -> a: b reads packet by packet, a writes each run of the flow's segments coalesced.
      assert.equal(await transfer(p.b.ns, p.a.ns, p.a.inner, 5002, file), want);
    } finally {
      await stopCapture(capture);
    }
    const a = await status(p.a);
    const b = await status(p.b);
    assert.equal(a.tun.offload, true, "node-a has the TUN offloads");
    assert.equal(b.tun.offload, false, "node-b runs without them (--no-offload)");
    assert.ok(a.tun.superSegments > 0, "node-a read no TCP super-segment");
    assert.equal(b.tun.superSegments, 0);
    for (const s of [a, b]) {
      assert.equal(s.drops["auth-failed"], 0);
      assert.equal(s.drops.replay, 0);
      assert.equal(s.drops.malformed, 0);
      assert.ok(
        s.sas.every((sa) => sa.replayDrops === 0 && sa.authFailures === 0),
        JSON.stringify(s.sas),
      );
    }

    const { fromSrc: fromA, distinct, repeated: dups } = await espSequences(pcap, p.a.underlay);
    // 12 MiB at an MSS under 1420 bytes: over 8,800 data packets from node-a.
    assert.ok(fromA > 8800, `captured ${fromA} ESP packets from node-a`);
    assert.deepEqual(dups.slice(0, 10), [], `${dups.length} (SPI, sequence) pairs seen twice`);
    process.stdout.write(
      `# esp offload: ${a.tun.superSegments} super-segments read by node-a, ${fromA} ESP packets from it, ` +
        `${distinct} distinct (SPI, sequence) on the wire, none twice\n`,
    );
  });
});
