import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DaemonWatch } from "./daemon-watch.js";

/** A stand-in control socket: it accepts connections and can "die" (drop them all). */
async function daemon(path: string): Promise<{ server: Server; die: () => void; accepted: Promise<void> }> {
  const conns: Socket[] = [];
  let accept!: () => void;
  const accepted = new Promise<void>((r) => (accept = r));
  const server = createServer((s) => {
    conns.push(s);
    accept();
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    server,
    accepted,
    die: () => {
      server.close();
      for (const c of conns) c.destroy();
    },
  };
}

describe("DaemonWatch", () => {
  const dir = mkdtempSync(join(tmpdir(), "podcrypt-watch-"));
  // The watch's sockets never hold the process: this keeps the test's event loop alive instead.
  const hold = setInterval(() => undefined, 1000);
  after(() => {
    clearInterval(hold);
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports a watched daemon's death once, and a forgotten one's never", async () => {
    const dead: string[] = [];
    let heard!: () => void;
    const death = new Promise<void>((r) => (heard = r));
    const w = new DaemonWatch((ifname) => {
      dead.push(ifname);
      heard();
    });
    const a = await daemon(join(dir, "a.sock"));
    const b = await daemon(join(dir, "b.sock"));
    w.watch("a0", join(dir, "a.sock"));
    w.watch("a0", join(dir, "a.sock")); // already watched: one connection
    w.watch("b0", join(dir, "b.sock"));
    await Promise.all([a.accepted, b.accepted]);
    w.forget("b0");
    b.die();
    a.die();
    await death;
    // The forgotten one's close has been delivered by now too (same turn of events or earlier).
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(dead, ["a0"]);
    w.close();
  });

  it("reports a daemon whose socket refuses at once (it died before it was watched)", async () => {
    const d = await daemon(join(dir, "c.sock"));
    d.die();
    const dead = await new Promise<string>((resolve) => {
      const w = new DaemonWatch(resolve);
      w.watch("c0", join(dir, "c.sock"));
    });
    assert.equal(dead, "c0");
  });
});
