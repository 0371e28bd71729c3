// test-tier: netns (root: network namespaces, the local cluster, Chromium)
/**
 * The controller's status page in a real browser: headless Chromium (Debian's package), in a
 * network namespace with loopback only that reaches the controller through a relay over a unix
 * socket, loads `/status` of a 3-node local cluster and the test reads what the page drew: the
 * full matrix of 6 ordered pairs encrypted; then the underlay UDP between node-1 and node-2 is
 * dropped (nftables in both node namespaces) under traffic, and the page, refreshing by itself,
 * marks those two pairs failing and the other four encrypted. `podcrypt status --watch` shows the
 * same and ends on Ctrl-C. A screenshot of every check is kept; on failure the message names the
 * directory.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { projectRoot } from "../../src/paths.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { Chromium, chromiumMissing } from "../support/chromium.js";
import { NetnsLab } from "../support/netns.js";
import { clusterBusy, clusterCli } from "./run-cli.js";

const { home, podcrypt, remove } = clusterCli("statuspage");

/** What the page's matrix shows, read from its cells' data attributes. */
interface Cell {
  from: string;
  to: string;
  family: string;
  state: string;
}

const READ_CELLS = `[...document.querySelectorAll("td[data-state]")].map((td) => ({
  from: td.dataset.from, to: td.dataset.to, family: td.dataset.family, state: td.dataset.state }))`;

/** The controller's /healthz, /metrics and /status address, from its log. */
function controllerAddress(): string {
  const logs = join(home, "logs");
  for (const f of readdirSync(logs).filter((x) => x.startsWith("controller")))
    for (const line of readFileSync(join(logs, f), "utf8").split("\n"))
      if (line.includes("serving /healthz")) return (JSON.parse(line) as { address: string }).address;
  throw new Error(`no controller logged its health address in ${logs}`);
}

const skip = chromiumMissing() || (await clusterBusy());

describe("status page in headless Chromium", { skip }, () => {
  const lab = new NetnsLab();
  const shots = mkdtempSync(join(tmpdir(), "podcrypt-statuspage-shots-"));
  let failed = false;
  let relay: ChildProcess | undefined;
  let browser: Chromium | undefined;
  const blocked: string[] = [];

  before(async () => {
    const up = await podcrypt(["cluster", "up", "--timeout", "150"]);
    assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
  });
  after(async () => {
    for (const ns of blocked)
      await runIn(ns, "nft", ["delete", "table", "inet", "pcstatuspage"]).catch(() => undefined);
    await browser?.close();
    relay?.kill("SIGKILL");
    await lab.cleanup();
    await podcrypt(["cluster", "down"]);
    remove();
    if (failed) process.stdout.write(`# status page screenshots kept in ${shots}\n`);
    else rmSync(shots, { recursive: true, force: true });
  });

  /** Polls the page's matrix until `ok` holds (then returns it) or `ms` pass (then fails, screenshot kept). */
  async function waitForMatrix(what: string, ok: (cells: Cell[]) => boolean, ms: number): Promise<Cell[]> {
    const deadline = Date.now() + ms;
    let cells: Cell[] = [];
    for (;;) {
      cells = await browser!.evaluate<Cell[]>(READ_CELLS);
      if (ok(cells)) break;
      if (Date.now() > deadline) {
        failed = true;
        writeFileSync(join(shots, `${what}-failed.png`), await browser!.screenshot());
        const err = await browser!.evaluate<string>(`document.getElementById("err").textContent`);
        assert.fail(
          `${what}: not shown within ${ms / 1000} s; the page shows ${JSON.stringify(cells)} (error line: "${err}"); ` +
            `screenshot in ${shots}`,
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    writeFileSync(join(shots, `${what}.png`), await browser!.screenshot());
    return cells;
  }

  it("shows all 6 pairs encrypted, then the pair whose underlay is cut as failing", async () => {
    const address = controllerAddress();
    // Chromium's namespace has loopback only; port 8080 there is relayed to the controller.
    const ns = await lab.netns("browser");
    const sock = join(shots, "page.sock");
    relay = spawn("socat", [`UNIX-LISTEN:${sock},fork`, `TCP:${address}`], { stdio: "ignore" });
    for (let i = 0; i < 50 && !readdirSync(shots).includes("page.sock"); i++)
      await new Promise((r) => setTimeout(r, 100));
    lab.spawn(ns, "socat", ["TCP-LISTEN:8080,bind=127.0.0.1,fork,reuseaddr", `UNIX-CONNECT:${sock}`]);
    await new Promise((r) => setTimeout(r, 300));
    browser = await Chromium.launch(lab, ns);
    await browser.navigate("http://127.0.0.1:8080/status");

    const healthy = await waitForMatrix(
      "healthy",
      (c) => c.length === 6 && c.every((x) => x.state === "encrypted"),
      60_000,
    );
    const pairs = healthy.map((c) => `${c.from}->${c.to}`).sort();
    assert.deepEqual(pairs, [
      "node-1->node-2",
      "node-1->node-3",
      "node-2->node-1",
      "node-2->node-3",
      "node-3->node-1",
      "node-3->node-2",
    ]);
    assert.ok(healthy.every((c) => c.family === "ipv4"));
    const title = await browser.evaluate<string>("document.title");
    assert.equal(title, "podcrypt status");

    // Cut node-1 <-> node-2: each drops the other's underlay UDP on the way in (sending still
    // succeeds, so both keep sending and nothing comes back).
    const v4 = async (node: string): Promise<string> => {
      const out = await runIn(`pc-${node}`, "ip", ["-j", "-4", "addr", "show", "dev", "eth0"]);
      const a = (JSON.parse(out) as { addr_info: { local: string }[] }[])[0]?.addr_info[0]?.local;
      assert.ok(a, `${node} has an underlay IPv4 address`);
      return a;
    };
    const [a1, a2] = [await v4("node-1"), await v4("node-2")];
    const cut = Date.now();
    for (const [node, peer] of [
      ["node-1", a2],
      ["node-2", a1],
    ] as const) {
      const ns = `pc-${node}`;
      blocked.push(ns);
      await runIn(ns, "nft", [
        `add table inet pcstatuspage; add chain inet pcstatuspage in { type filter hook input priority -300; }; ` +
          `add rule inet pcstatuspage in ip saddr ${peer} meta l4proto udp drop`,
      ]);
    }
    // Traffic on every pair while the page watches (a broken path shows only when something is sent).
    const traffic = podcrypt(["verify", "--json", "--seconds", "60", "--count", "600"], 180_000);
    const broken = await waitForMatrix(
      "broken",
      (c) =>
        c.length === 6 &&
        c.every((x) =>
          (x.from === "node-1" && x.to === "node-2") || (x.from === "node-2" && x.to === "node-1")
            ? x.state === "failing"
            : x.state === "encrypted",
        ),
      90_000,
    );
    assert.equal(broken.filter((c) => c.state === "failing").length, 2);
    process.stdout.write(
      `# the page showed node-1 <-> node-2 failing ${((Date.now() - cut) / 1000).toFixed(1)} s after the cut (traffic from then on)\n`,
    );

    // The same in a terminal: one frame of `status --watch`, then Ctrl-C ends it.
    const watch = spawn(
      process.execPath,
      [join(projectRoot(), "bin", "podcrypt"), "status", "--watch", "--timeout", "5"],
      {
        env: { ...process.env, PODCRYPT_HOME: home },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let frame = "";
    watch.stdout.on("data", (d: Buffer) => (frame += d.toString()));
    for (let i = 0; i < 100 && !frame.includes("nodes:"); i++) await new Promise((r) => setTimeout(r, 100));
    watch.kill("SIGINT");
    const code = await new Promise<number | null>((r) => watch.once("exit", (c) => r(c)));
    assert.equal(code, 0, `status --watch ended with ${code} on SIGINT`);
    assert.match(frame, /node-1 → node-2 \(ipv4\) failing/);
    assert.match(frame, /pairs: encrypted 4, pending 0, plaintext-allowed 0, failing 2/);
    await traffic;
  });
});
