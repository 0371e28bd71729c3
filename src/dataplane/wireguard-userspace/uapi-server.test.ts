import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { createLogger } from "../../log/logger.js";
import { MemoryUapiDevice } from "../../../test/support/memory-uapi-device.js";
import { UapiServer, uapiSocketPath } from "./uapi-server.js";

const dir = mkdtempSync(join(tmpdir(), "pc-uapi-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const logger = createLogger("uapi-test", { level: "silent" });
const K1 = Buffer.alloc(32, 1).toString("hex");

/** Sends `request` on a fresh connection and collects everything until the server closes or `answers` arrive. */
function exchange(path: string, request: string, answers = 1, halfClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let out = "";
    c.setEncoding("utf8");
    c.on("data", (d: string) => {
      out += d;
      if (out.split("\n\n").length - 1 >= answers) c.end();
    });
    c.on("close", () => resolve(out));
    c.on("error", reject);
    c.write(request);
    if (halfClose) c.end();
  });
}

test("serves get and set; socket is owner-only and removed on close", async () => {
  const device = new MemoryUapiDevice();
  const server = new UapiServer({ ifname: "wgt0", device, logger, socketDir: dir });
  await server.listen();
  try {
    const path = uapiSocketPath("wgt0", dir);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(
      await exchange(path, `set=1\nlisten_port=5\npublic_key=${K1}\nallowed_ip=10.0.0.1/24\n\n`),
      "errno=0\n\n",
    );
    const got = await exchange(path, "get=1\n\n");
    assert.match(got, /^listen_port=5\npublic_key=(01){32}\n.*allowed_ip=10\.0\.0\.0\/24\nerrno=0\n\n$/s);
    // Several requests on one connection, and a request split across writes.
    assert.equal(
      await exchange(path, "set=1\nfwmark=3\n\nset=1\nlisten_port=x\n\nget=1\n\n", 3),
      "errno=0\n\nerrno=-22\n\n" + got.replace("listen_port=5\n", "listen_port=5\nfwmark=3\n"),
    );
    // A set ended by EOF instead of a blank line is applied, as wireguard-go does.
    assert.equal(await exchange(path, "set=1\nfwmark=4\n", 1, true), "errno=0\n\n");
    assert.equal(device.state().fwmark, 4);
    // get with trailing characters: -EINVAL.
    assert.equal(await exchange(path, "get=1\nx"), "errno=-22\n\n");
    // An unknown operation closes the connection without an answer.
    assert.equal(await exchange(path, "bogus=1\n\n"), "");
    // Bad lines do not stop the server.
    assert.equal(await exchange(path, "set=1\nnoequals\n\n"), "errno=-71\n\n");
  } finally {
    await server.close();
  }
  assert.throws(() => statSync(uapiSocketPath("wgt0", dir)), /ENOENT/);
});

test("a stale socket file is replaced; a live one is refused", async () => {
  const path = uapiSocketPath("wgt1", dir);
  // Stale: a socket file nobody listens on (left by a killed daemon).
  const stale = createServer();
  await new Promise<void>((r) => stale.listen(path, r));
  // Closing a net.Server removes its file; recreate a dead one by hand.
  await new Promise<void>((r) => stale.close(() => r()));
  writeFileSync(path, "");
  const first = new UapiServer({ ifname: "wgt1", device: new MemoryUapiDevice(), logger, socketDir: dir });
  await first.listen();
  const second = new UapiServer({ ifname: "wgt1", device: new MemoryUapiDevice(), logger, socketDir: dir });
  await assert.rejects(second.listen(), /in use/);
  assert.equal(await exchange(path, "get=1\n\n"), "errno=0\n\n");
  await first.close();
  await second.close();
});
