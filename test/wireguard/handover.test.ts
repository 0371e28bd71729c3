// test-tier: netns (root: network namespaces)
/**
 * A planned restart of the userspace WireGuard daemon (`podcrypt wireguard --take-over`,
 * docs/design.md "A planned restart (an upgrade)") between two namespaces under a steady stream of
 * datagrams: the successor takes the old daemon's TUN device and UDP socket (pidfd_getfd) and its
 * sessions. Nothing is lost, no handshake initiation crosses the wire after the restart (the
 * sessions go on), no (receiver index, counter) is sent twice, and the old daemon exits. All
 * traffic stays inside the two namespaces.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { projectRoot } from "../../src/paths.js";
import { NetnsLab } from "../support/netns.js";
import { paced, receiveDuring } from "../support/udp-blast.js";
import { INNER_IP, setupPair, stopDaemons, wgDump, type Pair } from "./helpers.js";
import { pingUntilUp, podcryptCommand } from "../support/wireguard-lab.js";
import { startCapture, stopCapture, tsharkFields } from "../support/tshark.js";

const running: ChildProcess[] = [];
after(() => stopDaemons(running));
// Created after our `after` hook so daemons get SIGTERM (and remove their sockets) before the lab SIGKILLs.
const lab = new NetnsLab();
const work = mkdtempSync(join(tmpdir(), "podcrypt-wg-handover-"));
after(() => rmSync(work, { recursive: true, force: true }));

test("a planned restart of the WireGuard daemon (--take-over) loses nothing and needs no handshake", async () => {
  const p: Pair = await setupPair(lab, "podcrypt", "podcrypt");
  running.push(...p.daemons);
  // One message per frame on the wire, so the capture decodes every counter.
  await runIn(p.a.ns, "ip", ["link", "set", "eth0", "gso_max_segs", "1"]);
  await pingUntilUp(p.a.ns, INNER_IP.b4);
  const [before] = await wgDump(p.a);
  assert.ok(before !== undefined && before.latestHandshake > 0, "a session is up");
  const pcap = join(work, "wg.pcap");
  const capture = await startCapture(p.b.ns, pcap, { filter: "udp", lab });
  const old = p.daemons[0]!;
  const count = 3000;
  let successor: ChildProcess | undefined;
  let takeoverAt = 0;
  let handoverMs = 0;
  const received = await receiveDuring(lab, p.b.ns, async () => {
    const sending = paced(p.a.ns, INNER_IP.b4, count, 10); // 1000 datagrams/s for 3 s
    await new Promise((r) => setTimeout(r, 1000));
    takeoverAt = Date.now() / 1000;
    const c = podcryptCommand();
    successor = lab.spawn(p.a.ns, c.cmd, [...c.args, "wireguard", "-f", p.a.ifname, "--take-over"], {
      stdio: ["ignore", "ignore", "pipe"],
      cwd: projectRoot(),
      env: { ...process.env, PODCRYPT_LOG_LEVEL: "warn" },
    });
    running.push(successor);
    let stderr = "";
    successor.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const at = Date.now();
    while (old.exitCode === null || successor.exitCode !== null) {
      if (successor.exitCode !== null || Date.now() - at > 60_000)
        throw new Error(`no handover (successor ${successor.exitCode ?? "running"}): ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    handoverMs = Date.now() - at;
    await sending;
  });
  await stopCapture(capture);
  assert.equal(old.exitCode, 0, "the old daemon exited by itself, cleanly");

  const got = received.get(64) ?? 0;
  assert.equal(got, count, `received ${got} of ${count} datagrams`);
  const [after1] = await wgDump(p.a);
  assert.equal(after1?.latestHandshake, before.latestHandshake, "the same session: no new handshake");

  const rows = await tsharkFields(
    pcap,
    ["-d", `udp.port==${p.b.port},wg`],
    ["frame.time_epoch", "ip.src", "wg.type", "wg.receiver", "wg.counter"],
  );
  const seen = new Set<string>();
  const dups: string[] = [];
  let initiationsAfter = 0;
  let fromA = 0;
  for (const [time, src, type, receiver, counter] of rows) {
    if (type === "1" && Number(time) >= takeoverAt) initiationsAfter++;
    if (type !== "4" || src !== p.a.underlay) continue;
    fromA++;
    const k = `${receiver}|${counter}`;
    if (seen.has(k)) dups.push(k);
    seen.add(k);
  }
  assert.ok(fromA >= count, `captured ${fromA} transport messages from node a`);
  assert.equal(initiationsAfter, 0, "no handshake initiation after the restart");
  assert.deepEqual(dups.slice(0, 10), [], `${dups.length} (receiver, counter) pairs seen twice`);
  process.stdout.write(
    `# wireguard handover: ${got}/${count} datagrams at 1000/s, old daemon gone ${handoverMs} ms after the successor started, ` +
      `${fromA} transport messages from a, 0 initiations after, 0 (receiver, counter) twice\n`,
  );
});
