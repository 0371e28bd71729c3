// test-tier: netns (root: network namespaces)
/**
 * A planned restart of the userspace ESP daemon (`podcrypt esp --take-over`, docs/design.md "A
 * planned restart (an upgrade)") between two namespaces under a steady stream of datagrams: the
 * successor takes the old daemon's TUN device and UDP socket (pidfd_getfd) and its SAs with their
 * sequence numbers and replay windows. Nothing is lost, no (SPI, sequence number) crosses the
 * wire twice (no GCM nonce twice under one key), the SA instance and the SPIs stay, the receiver
 * counts no replay, and the old daemon exits. All traffic stays inside the two namespaces.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { paced, receiveDuring } from "../support/udp-blast.js";
import { espPair, installEpoch, startEspDaemon, status, type EspPair } from "../support/esp-lab.js";
import { espSequences, startCapture, stopCapture } from "../support/tshark.js";

const lab = new NetnsLab();
after(() => lab.cleanup());
const work = mkdtempSync(join(tmpdir(), "podcrypt-esp-handover-"));
after(() => rmSync(work, { recursive: true, force: true }));
let p!: EspPair;
after(() => (p as EspPair | undefined)?.dispose());

before(async () => {
  p = await espPair(lab, "h");
  await installEpoch(p, 1, true);
  // One ESP packet per frame on the wire: the daemon's UDP GSO runs are cut into datagrams before
  // the veth, so the capture sees (and tshark decodes) every packet's SPI and sequence number.
  await runIn(p.a.ns, "ip", ["link", "set", "eth0", "gso_max_segs", "1"]);
});

describe("a planned restart of the ESP daemon (--take-over)", () => {
  it("loses no datagram, repeats no (SPI, sequence), keeps the SAs and instance; the old daemon exits", async () => {
    const before0 = await status(p.a);
    const out0 = before0.sas.find((s) => s.direction === "out" && s.active === true);
    assert.ok(out0 !== undefined, "node-a sends on an active SA");
    const pcap = join(work, "handover.pcap");
    const capture = await startCapture(p.b.ns, pcap, {
      filter: "udp port 4500",
      lab,
    });
    const old = p.a.daemon;
    const count = 3000;
    let successor: ChildProcess | undefined;
    let handoverMs = 0;
    const received = await receiveDuring(lab, p.b.ns, async () => {
      const sending = paced(p.a.ns, p.b.inner, count, 10); // 1000 datagrams/s for 3 s
      await new Promise((r) => setTimeout(r, 1000));
      const at = Date.now();
      const next = await startEspDaemon((...a) => lab.spawn(...a), p.a.ns, p.a.ifname, p.socketDir, [
        "--take-over",
      ]);
      successor = next.daemon;
      for (;;) {
        const s = await status(p.a).catch(() => undefined);
        if (s !== undefined && s.pid === successor.pid && old.exitCode !== null) break;
        if (Date.now() - at > 60_000) throw new Error(`no handover within 60 s: ${next.stderr.join("")}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      handoverMs = Date.now() - at;
      await sending;
    });
    await stopCapture(capture);
    assert.equal(old.exitCode, 0, "the old daemon exited by itself, cleanly");
    p.a.daemon = successor!;

    const got = received.get(64) ?? 0;
    assert.equal(got, count, `received ${got} of ${count} datagrams`);

    const after1 = await status(p.a);
    assert.equal(after1.local.instance, before0.local.instance, "the SA instance stays");
    const out1 = after1.sas.find((s) => s.direction === "out" && s.active === true);
    assert.equal(out1?.spi, out0.spi, "the same outbound SA sends");
    assert.ok(
      out1!.sequence >= out0.sequence + count,
      `its sequence went on: ${out0.sequence} -> ${out1!.sequence}`,
    );
    const b = await status(p.b);
    assert.equal(b.drops.replay, 0, "the receiver counted no replay");
    assert.ok(
      b.sas.every((s) => s.replayDrops === 0 && s.authFailures === 0),
      JSON.stringify(b.sas),
    );

    const { fromSrc: fromA, repeated: dups } = await espSequences(pcap, p.a.underlay);
    assert.ok(fromA >= count, `captured ${fromA} ESP packets from node-a`);
    assert.deepEqual(dups.slice(0, 10), [], `${dups.length} (SPI, sequence) pairs seen twice`);
    process.stdout.write(
      `# esp handover: ${got}/${count} datagrams at 1000/s, successor serving ${handoverMs} ms after start, ` +
        `${fromA} ESP packets from node-a, 0 (SPI, sequence) twice\n`,
    );
  });
});
