// test-tier: netns (root: a network namespace for Chromium)
/**
 * The status page in headless Chromium without a cluster: the controller's HTTP server with a
 * metrics token, fed by a datastore holding node records as agents write them. Chromium runs in a
 * namespace with loopback only (the server reached through a relay over a unix socket). The page
 * first asks for the token, then draws the matrix; it follows a record that changes (a pair
 * failing, with its reason listed) without being reloaded.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ManualClock } from "../../src/clock.js";
import { Reachability } from "../../src/health/datastore-probe.js";
import { controllerRegistry } from "../../src/health/metrics.js";
import { HealthServer } from "../../src/health/server.js";
import type { ControllerHealth } from "../../src/controller/controller.js";
import { MemoryDatastore } from "../support/memory-datastore/index.js";
import type { LivenessHold } from "../../src/datastore/types.js";
import { createLogger } from "../../src/log/logger.js";
import type { NodeInput } from "../../src/model/index.js";
import { readStatusView } from "../../src/statuspage/read.js";
import { Chromium, chromiumMissing } from "../support/chromium.js";
import { NetnsLab } from "../support/netns.js";

const TOKEN = "page-test-token";
const NAMES = ["node-a", "node-b", "node-c"];

function record(name: string, failing: string[] = []): NodeInput {
  const others = NAMES.filter((n) => n !== name);
  return {
    name,
    underlay: { ipv4: `192.0.2.${NAMES.indexOf(name) + 1}` },
    backend: "wireguard-userspace",
    heartbeat: new Date().toISOString(),
    status: {
      errors: [],
      tunnels: {
        at: new Date().toISOString(),
        families: [
          {
            family: "ipv4",
            upCount: others.filter((o) => !failing.includes(o)).length,
            pending: [],
            failing,
          },
        ],
      },
    },
  };
}

describe("status page in headless Chromium (no cluster)", { skip: chromiumMissing() }, () => {
  const lab = new NetnsLab();
  const dir = mkdtempSync(join(tmpdir(), "podcrypt-statuspage-"));
  const store = new MemoryDatastore();
  const holds: LivenessHold[] = [];
  let server: HealthServer | undefined;
  let relay: ChildProcess | undefined;
  let browser: Chromium | undefined;
  /** Until the test reaches its end: a screenshot of the page is kept then. */
  let failed = true;
  after(async () => {
    if (failed && browser !== undefined)
      writeFileSync(join(dir, "at-failure.png"), await browser.screenshot().catch(() => Buffer.alloc(0)));
    await browser?.close();
    relay?.kill("SIGKILL");
    await server?.close();
    await lab.cleanup();
    for (const h of holds) h.release();
    await store.close();
    if (failed) process.stdout.write(`# screenshots kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  });

  const until = async <T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      // While the page is still loading, what it reads may not exist yet.
      const v = await read().catch((e: unknown) => e as Error);
      if (!(v instanceof Error) && ok(v)) return v;
      if (Date.now() > deadline) {
        writeFileSync(join(dir, `${what}.png`), await browser!.screenshot());
        const shows = v instanceof Error ? v.message : JSON.stringify(v);
        assert.fail(`${what}: the page shows ${shows}; screenshot in ${dir}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  it("asks for the token, draws the matrix, and follows a pair that starts failing", async () => {
    await store.collection("clusterencryptions").create({
      name: "default",
      applied: { enabled: true, mode: "wireguard" },
      epoch: 1,
    });
    for (const n of NAMES) {
      await store.collection("nodes").create(record(n));
      // Live as a running agent makes its node: a liveness record it renews (one minute is the test).
      holds.push(await store.holdLiveness(n, 60));
    }
    server = await HealthServer.start({
      host: "127.0.0.1",
      port: 0,
      token: TOKEN,
      logger: createLogger("test", { level: "silent" }),
      registry: controllerRegistry(() => ({}) as ControllerHealth, new Reachability(new ManualClock(0, 0))),
      liveness: () => ({ ok: true, detail: "" }),
      readiness: () => ({ ok: true, detail: "" }),
      status: () => readStatusView(store, Date.now()),
    });
    const ns = await lab.netns("page");
    const sock = join(dir, "page.sock");
    relay = spawn("socat", [`UNIX-LISTEN:${sock},fork`, `TCP:127.0.0.1:${server.port}`], { stdio: "ignore" });
    for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
    lab.spawn(ns, "socat", ["TCP-LISTEN:8080,bind=127.0.0.1,fork,reuseaddr", `UNIX-CONNECT:${sock}`]);
    await new Promise((r) => setTimeout(r, 300));
    browser = await Chromium.launch(lab, ns);
    await browser.navigate("http://127.0.0.1:8080/status");

    // Without the token: no data, the form shows.
    await until(
      "asks-for-token",
      () => browser!.evaluate<boolean>(`!document.getElementById("auth").hidden`),
      (shown) => shown,
    );
    assert.equal(await browser.evaluate<number>(`document.querySelectorAll("td[data-state]").length`), 0);
    await browser.evaluate(
      `document.getElementById("token").value = ${JSON.stringify(TOKEN)}; document.getElementById("auth").requestSubmit(); true`,
    );
    const cells = `[...document.querySelectorAll("td[data-state]")].map((td) => td.dataset.from + ">" + td.dataset.to + ":" + td.dataset.state).sort()`;
    await until(
      "all-encrypted",
      () => browser!.evaluate<string[]>(cells),
      (c) => c.length === 6 && c.every((x) => x.endsWith(":encrypted")),
    );

    // node-a reports node-c failing: the page, not reloaded, shows it with the reason.
    const cur = await store.collection("nodes").get("node-a");
    await store.collection("nodes").update(record("node-a", ["node-c"]), { revision: cur!.revision });
    const shown = await until(
      "a-to-c-failing",
      () => browser!.evaluate<string[]>(cells),
      (c) => c.includes("node-a>node-c:failing"),
    );
    assert.equal(shown.filter((x) => x.endsWith(":failing")).length, 1);
    const problems = await browser.evaluate<string[]>(
      `[...document.querySelectorAll("#problems li")].map((li) => li.textContent)`,
    );
    assert.deepEqual(problems, ["node-a → node-c (ipv4) failing: node-a sends to node-c and gets no answer"]);
    failed = false;
  });
});
