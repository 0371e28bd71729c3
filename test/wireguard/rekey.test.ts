// test-tier: netns (root: network namespaces)
/**
 * Slow tier (PODCRYPT_SLOW=1): sessions survive re-keys. podcrypt runs with
 * PODCRYPT_WG_TIME_SCALE=8, so its REKEY_AFTER_TIME of 120 s passes every 15 s of real time (see
 * src/dataplane/wireguard-userspace/daemon.ts); a steady ping must cross at least three re-keys,
 * against wireguard-go (which keeps its real timers) and against another podcrypt.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { INNER_IP, setupPair, stopDaemons, wgDump, type Pair } from "./helpers.js";
import { pingUntilUp, type Impl } from "../support/wireguard-lab.js";

const slow = process.env["PODCRYPT_SLOW"] === "1";
const running: Pair[] = [];
after(() => stopDaemons(running.flatMap((p) => p.daemons)));
// Created after our `after` hook so daemons get SIGTERM (and remove their sockets) before the lab SIGKILLs.
const lab = new NetnsLab();

const SCALE = 8;
const SECONDS = 62;

for (const other of ["wireguard-go", "podcrypt"] as Impl[]) {
  test(
    `podcrypt <-> ${other}: three re-keys under steady traffic`,
    { skip: !slow && "set PODCRYPT_SLOW=1" },
    async () => {
      const p = await setupPair(lab, "podcrypt", other, {
        endpoints: "a-only",
        env: { PODCRYPT_WG_TIME_SCALE: String(SCALE) },
      });
      running.push(p);
      await pingUntilUp(p.a.ns, INNER_IP.b4);
      const count = Math.floor(SECONDS / 0.2);
      const pinging = runIn(
        p.a.ns,
        "ping",
        ["-q", "-c", String(count), "-i", "0.2", "-W", "1", INNER_IP.b4],
        {
          timeoutMs: (SECONDS + 30) * 1000,
        },
      ).catch((e: unknown) => String(e));
      const handshakes = new Set<number>();
      const end = Date.now() + SECONDS * 1000;
      while (Date.now() < end) {
        const [peer] = await wgDump(p.a);
        if (peer !== undefined && peer.latestHandshake > 0) handshakes.add(peer.latestHandshake);
        await new Promise((r) => setTimeout(r, 1000));
      }
      const out = await pinging;
      const loss = /(\d+(?:\.\d+)?)% packet loss/.exec(out);
      assert.ok(handshakes.size >= 4, `handshakes seen at ${[...handshakes].join(", ")}`);
      assert.ok(loss !== null && Number(loss[1]) <= 3, `ping across re-keys: ${out}`);
      await stopDaemons(p.daemons);
    },
  );
}
