// test-tier: netns
/**
 * The agent's probe endpoints (src/agent/verify/endpoint.ts) in a namespace as the agent sets them
 * up: each IPv6 endpoint address put on the node and its UDP echo bound at once. On a kernel without
 * the dummy driver (this machine's) the addresses go on loopback, where an IPv6 address added
 * without `nodad` stays tentative for a moment and the bind right after it fails with EADDRNOTAVAIL
 * (one bind in ten to five here): a node of a dual-stack cluster then had no IPv6 endpoint for the
 * agent's whole life, and every verify --via-agents run lost its IPv6 pairs in both directions.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";

const ENDPOINT_MODULE = fileURLToPath(new URL("../../src/agent/verify/endpoint.js", import.meta.url));

// Runs inside the namespace, as the agent does: address, then bind, then one echo through it.
const SCRIPT = `
import { createSocket } from "node:dgram";
const { ensureProbeAddress, serveProbeEcho, PROBE_PORT } = await import(process.argv[1]);
const failed = [];
for (let i = 1; i <= 100; i++) {
  const address = "fd00:10:244:" + i.toString(16) + "::1";
  try {
    await ensureProbeAddress(address);
    const echo = await serveProbeEcho(address);
    const c = createSocket("udp6");
    // Resent until answered: the kernel installs the address's local route a moment after the
    // address itself, so the very first datagram may be lost (a transient, unlike a failed bind).
    const back = await new Promise((resolve) => {
      const send = () => c.send("probe-" + i, PROBE_PORT, address);
      const again = setInterval(send, 100);
      const t = setTimeout(() => { clearInterval(again); resolve(""); }, 3000);
      c.on("message", (m) => { clearInterval(again); clearTimeout(t); resolve(m.toString()); });
      send();
    });
    c.close();
    echo.close();
    if (back !== "probe-" + i) failed.push(address + ": no echo");
  } catch (e) {
    failed.push(address + ": " + e.message);
  }
}
process.stdout.write(JSON.stringify(failed));
`;

// A forged datagram from another echo service (source port 7), then an ordinary probe: loopback
// keeps their order, so once the probe's answer is back an answer to port 7 would have come too.
const LOOP_SCRIPT = `
import { createSocket } from "node:dgram";
const { ensureProbeAddress, serveProbeEcho, PROBE_PORT } = await import(process.argv[1]);
await ensureProbeAddress("10.244.7.1");
const echo = await serveProbeEcho("10.244.7.1");
const other = createSocket("udp4");
await new Promise((r) => other.bind(PROBE_PORT, "127.0.0.1", r));
const atPort7 = [];
other.on("message", (m) => atPort7.push(m.toString()));
const c = createSocket("udp4");
other.send("forged", PROBE_PORT, "10.244.7.1");
const answered = await new Promise((resolve) => {
  c.on("message", (m) => resolve(m.toString()));
  c.send("probe", PROBE_PORT, "10.244.7.1");
});
for (const s of [c, other, echo]) s.close();
process.stdout.write(JSON.stringify({ answered, atPort7 }));
`;

describe("probe endpoints (in a namespace)", () => {
  it("every endpoint address is bound and echoes right after it is put on the node", async () => {
    const lab = new NetnsLab();
    try {
      const ns = await lab.netns("probe6");
      const out = await runIn(ns, process.execPath, ["--input-type=module", "-e", SCRIPT, ENDPOINT_MODULE]);
      assert.deepEqual(JSON.parse(out), []);
    } finally {
      await lab.cleanup();
    }
  });

  it("a datagram from port 7 is never answered (no echo loop between two echo services)", async () => {
    const lab = new NetnsLab();
    try {
      const ns = await lab.netns("probe7");
      const out = await runIn(ns, process.execPath, [
        "--input-type=module",
        "-e",
        LOOP_SCRIPT,
        ENDPOINT_MODULE,
      ]);
      // What the socket on port 7 received by the time the ordinary probe, sent after it, came back.
      assert.deepEqual(JSON.parse(out), { answered: "probe", atPort7: [] });
    } finally {
      await lab.cleanup();
    }
  });
});
