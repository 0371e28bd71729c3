/**
 * The userspace daemons' persistent TUN devices (`--persistent`, as the agent starts them), one
 * namespace per daemon, no cluster: a killed daemon leaves its interface with its address and
 * route, the kernel drops what is routed there (the route keeps steering it into the tunnel, so
 * nothing goes around it), a second daemon cannot take an interface another one holds, a new one
 * re-attaches, and deleting the interface ends both. Started the way the agent starts them
 * (src/dataplane/node/spawn-daemon.ts: in the foreground, ready on a pipe). All traffic stays in
 * the namespaces this file makes.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { spawnForegroundDaemon } from "../../src/dataplane/node/spawn-daemon.js";
import { alive } from "../../src/localcluster/processes.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { projectRoot } from "../../src/paths.js";
import { NetnsLab } from "../support/netns.js";
import { waitUntil } from "./harness.js";

const lab = new NetnsLab();
const socketDir = mkdtempSync(join(tmpdir(), "podcrypt-persistent-"));
after(() => rmSync(socketDir, { recursive: true, force: true }));

interface LinkJson {
  flags: string[];
  stats64: { tx: { dropped: number; packets: number } };
}

async function link(ns: string, ifname: string): Promise<LinkJson> {
  const [l] = JSON.parse(await runIn(ns, "ip", ["-j", "-s", "link", "show", "dev", ifname])) as LinkJson[];
  assert.ok(l !== undefined, `${ifname} exists in ${ns}`);
  return l;
}

/** Sends one UDP datagram from `ns` to `host`:9 (routed by the namespace's table). */
async function sendOne(ns: string, host: string): Promise<void> {
  const code = `const s = require("node:dgram").createSocket("udp4");
    s.send(Buffer.from("PODCRYPT-PERSISTENT"), 9, "${host}", () => s.close());`;
  await runIn(ns, process.execPath, ["-e", code], { timeoutMs: 30_000 });
}

describe("persistent TUN devices of the userspace daemons", () => {
  for (const kind of ["wireguard", "esp"] as const) {
    it(`${kind}: a killed daemon leaves its interface and route, drops what is routed there, and a new daemon re-attaches`, async () => {
      const ns = await lab.netns(`p${kind[0]}`);
      const ifname = `pt${lab.id}${kind[0]}`;
      const start = (): Promise<number> =>
        spawnForegroundDaemon({
          kind,
          cmd: "ip",
          args: [
            "netns",
            "exec",
            ns,
            process.execPath,
            join(projectRoot(), "bin", "podcrypt"),
            kind,
            ifname,
            "--persistent",
            ...(kind === "esp" ? ["--socket-dir", socketDir] : []),
          ],
          env: { ...process.env, PODCRYPT_LOG_LEVEL: "warn" },
          what: `podcrypt ${kind} ${ifname}`,
        });
      const first = await start();
      await runIn(ns, "ip", ["addr", "add", "10.77.0.1/24", "dev", ifname]);
      await runIn(ns, "ip", ["link", "set", ifname, "up"]);
      await runIn(ns, "ip", ["route", "add", "10.78.0.0/24", "dev", ifname]);
      assert.ok((await link(ns, ifname)).flags.includes("LOWER_UP"), "a daemon is attached");

      // Never two daemons on one interface: the kernel refuses the second attach.
      await assert.rejects(start(), /busy/i);
      assert.ok(alive(first), "the first daemon is untouched by the refused one");

      process.kill(first, "SIGKILL");
      await waitUntil(() => !alive(first), 10_000, "the killed daemon to be gone");
      // The main thread shows as a zombie while the other threads still exit; the TUN file (and
      // the carrier) goes with the last of them, so the carrier is awaited, not sampled once.
      await waitUntil(
        async () => !(await link(ns, ifname)).flags.includes("LOWER_UP"),
        10_000,
        "no carrier without a daemon",
      );
      const down = await link(ns, ifname);
      const route = await runIn(ns, "ip", ["route", "get", "10.78.0.5"]);
      assert.match(route, new RegExp(`dev ${ifname}`), "the route still points into the tunnel");
      await sendOne(ns, "10.78.0.5");
      const after1 = await link(ns, ifname);
      assert.equal(after1.stats64.tx.dropped, down.stats64.tx.dropped + 1, "the kernel dropped the datagram");
      assert.equal(after1.stats64.tx.packets, down.stats64.tx.packets, "and transmitted nothing");

      const second = await start();
      const up = await link(ns, ifname);
      assert.ok(up.flags.includes("LOWER_UP"), "the new daemon is attached");
      assert.match(
        await runIn(ns, "ip", ["-br", "addr", "show", "dev", ifname]),
        /10\.77\.0\.1\/24/,
        "the address stayed",
      );

      // Deleting the interface is what removes it, and ends its daemon.
      await runIn(ns, "ip", ["link", "del", ifname]);
      await waitUntil(() => !alive(second), 10_000, "the daemon to exit with its interface");
    });
  }
});
