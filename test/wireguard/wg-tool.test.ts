// test-tier: netns (root: network namespaces)
/**
 * `wg` against `podcrypt wireguard`: `wg show` / `wg showconf` print the
 * peer, endpoint, allowed IPs, latest handshake and transfer; live `wg set` changes (peer add and
 * remove, allowed IPs, listen port, private key) take effect; bad UAPI input gets the same errno
 * from podcrypt as from wireguard-go; the daemon forks, and leaves no socket behind on SIGTERM.
 */
import assert from "node:assert/strict";
import { spawn as spawnChild } from "node:child_process";
import { connect } from "node:net";
import { after, test } from "node:test";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { INNER_IP, setupPair, stopDaemons, uapiSocketExists, wgDump, type Pair } from "./helpers.js";
import {
  hostPort,
  ping,
  pingUntilUp,
  podcryptCommand,
  startDaemon,
  waitForUapi,
  wgKeyPair,
  wgSet,
} from "../support/wireguard-lab.js";

const running: Pair[] = [];
const forked: number[] = [];
after(async () => {
  await stopDaemons(running.flatMap((p) => p.daemons));
  // A forked daemon is not our child: SIGTERM it by pid so it removes its sockets.
  for (const pid of forked) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      continue; // already gone
    }
    for (let i = 0; i < 50; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
// Created after our `after` hook so daemons get SIGTERM (and remove their sockets) before the lab SIGKILLs.
const lab = new NetnsLab();

const pingFails = async (ns: string, target: string): Promise<boolean> =>
  runIn(ns, "ping", ["-c", "2", "-i", "0.3", "-W", "1", target]).then(
    () => false,
    () => true,
  );

test("wg show / showconf / set against podcrypt", async () => {
  const p = await setupPair(lab, "podcrypt", "podcrypt");
  running.push(p);
  const { a, b } = p;
  await pingUntilUp(a.ns, INNER_IP.b4);
  await ping(a.ns, INNER_IP.b6, 3);

  // showconf: the private key we set, port, peer, endpoint, allowed IPs.
  const conf = await runIn(a.ns, "wg", ["showconf", a.ifname]);
  assert.match(conf, /^\[Interface\]\nListenPort = 51820\nPrivateKey = /);
  assert.ok(
    conf.includes(`PrivateKey = ${a.keys.privateKey}`),
    "private key round-trips (wg genkey keys are clamped)",
  );
  assert.ok(
    conf.includes(
      `[Peer]\nPublicKey = ${b.keys.publicKey}\nAllowedIPs = 10.66.0.2/32, fd66::2/128\nEndpoint = 10.77.0.2:51821\n`,
    ),
    conf,
  );

  // show: human output with handshake and transfer.
  const show = await runIn(a.ns, "wg", ["show", a.ifname]);
  assert.match(
    show,
    new RegExp(
      `interface: ${a.ifname}\n  public key: ${a.keys.publicKey.replace(/[+/]/g, "\\$&")}\n  private key: \\(hidden\\)\n  listening port: 51820`,
    ),
  );
  assert.match(show, /latest handshake: (Now|\d+ seconds? ago)/);
  assert.match(show, /transfer: [\d.]+ \w?i?B received, [\d.]+ \w?i?B sent/);
  const [peer] = await wgDump(a);
  assert.ok(
    peer !== undefined && peer.latestHandshake > Date.now() / 1000 - 60 && peer.rx > 0 && peer.tx > 0,
  );
  assert.equal((await runIn(a.ns, "wg", ["show", a.ifname, "public-key"])).trim(), a.keys.publicKey);
  // `wg show` without an interface lists it among all interfaces.
  assert.ok((await runIn(a.ns, "wg", ["show", "interfaces"])).split(/\s+/).includes(a.ifname));

  // Allowed IPs: dropping 10.66.0.2 from b's peer on a stops IPv4 to b, IPv6 still works.
  await wgSet(a.ns, a.ifname, ["peer", b.keys.publicKey, "allowed-ips", "fd66::2/128"]);
  assert.equal((await wgDump(a))[0]!.allowedIps, "fd66::2/128");
  assert.ok(await pingFails(a.ns, INNER_IP.b4));
  await ping(a.ns, INNER_IP.b6, 2);
  await wgSet(a.ns, a.ifname, ["peer", b.keys.publicKey, "allowed-ips", "10.66.0.0/24,fd66::2/128"]);
  await ping(a.ns, INNER_IP.b4, 2);
  assert.equal((await wgDump(a))[0]!.allowedIps, "10.66.0.0/24,fd66::2/128");

  // Listen port: b moves to 51900; a follows with a new endpoint.
  await wgSet(b.ns, b.ifname, ["listen-port", "51900"]);
  assert.match(await runIn(b.ns, "wg", ["show", b.ifname, "listen-port"]), /^51900\n$/);
  await wgSet(a.ns, a.ifname, ["peer", b.keys.publicKey, "endpoint", hostPort(b.underlay, 51900)]);
  await pingUntilUp(a.ns, INNER_IP.b4);
  assert.equal((await wgDump(a))[0]!.endpoint, "10.77.0.2:51900");
  // The old port is free again: nothing answers there.
  assert.doesNotMatch(await runIn(b.ns, "ss", ["-uln"]), /:51821\b/);

  // Remove the peer: traffic stops; add it back: traffic resumes.
  await wgSet(a.ns, a.ifname, ["peer", b.keys.publicKey, "remove"]);
  assert.deepEqual(await wgDump(a), []);
  assert.ok(await pingFails(a.ns, INNER_IP.b4));
  await wgSet(a.ns, a.ifname, [
    "peer",
    b.keys.publicKey,
    "allowed-ips",
    "10.66.0.2/32,fd66::2/128",
    "endpoint",
    hostPort(b.underlay, 51900),
  ]);
  await pingUntilUp(a.ns, INNER_IP.b4);

  // New private key on a: b only accepts it once b's peer entry has a's new public key.
  const fresh = wgKeyPair();
  await wgSet(a.ns, a.ifname, [], fresh.privateKey);
  assert.equal((await runIn(a.ns, "wg", ["show", a.ifname, "public-key"])).trim(), fresh.publicKey);
  assert.ok(await pingFails(a.ns, INNER_IP.b4));
  await wgSet(b.ns, b.ifname, [
    "peer",
    a.keys.publicKey,
    "remove",
    "peer",
    fresh.publicKey,
    "allowed-ips",
    "10.66.0.1/32,fd66::1/128",
  ]);
  await pingUntilUp(a.ns, INNER_IP.b4);
  assert.equal((await wgDump(b))[0]!.publicKey, fresh.publicKey);

  // setconf replaces everything (replace_peers): b's only peer becomes some other key.
  const other = wgKeyPair();
  await runIn(b.ns, "wg", ["setconf", b.ifname, "/dev/stdin"], {
    input: `[Interface]\nListenPort = 51901\n\n[Peer]\nPublicKey = ${other.publicKey}\nAllowedIPs = 10.99.0.0/16\n`,
  }).catch(async () => {
    // Node's stdin is a socket that wg cannot fopen; go through a real pipe.
    await runIn(b.ns, "bash", ["-c", 'wg setconf "$0" <(cat)', b.ifname], {
      input: `[Interface]\nListenPort = 51901\n\n[Peer]\nPublicKey = ${other.publicKey}\nAllowedIPs = 10.99.0.0/16\n`,
    });
  });
  const dump = await wgDump(b);
  assert.deepEqual(
    dump.map((d) => [d.publicKey, d.allowedIps]),
    [[other.publicKey, "10.99.0.0/16"]],
  );
  // setconf without PrivateKey clears it, as with wireguard-go.
  assert.match(await runIn(b.ns, "wg", ["show", b.ifname, "private-key"]), /\(none\)/);
  await stopDaemons(p.daemons);
  assert.equal(uapiSocketExists(a.ifname) || uapiSocketExists(b.ifname), false, "sockets removed on SIGTERM");
});

/** One raw UAPI exchange (what `wg` would send, or worse). */
function uapi(ifname: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(`/var/run/wireguard/${ifname}.sock`);
    let out = "";
    c.setEncoding("utf8");
    c.on("data", (d: string) => {
      out += d;
      if (/errno=-?\d+\n\n$/.test(out)) c.end();
    });
    c.on("close", () => resolve(out));
    c.on("error", reject);
    c.write(request);
  });
}

test("bad UAPI input: podcrypt answers the errno wireguard-go answers", async () => {
  const ns = await lab.netns("errno");
  const spawn = (n: string, cmd: string, args: readonly string[], o?: Parameters<NetnsLab["spawn"]>[3]) =>
    lab.spawn(n, cmd, args, o);
  const pc = `pc${lab.id}e`;
  const wgo = `wg${lab.id}e`;
  const daemons = [
    await startDaemon(spawn, "podcrypt", ns, pc),
    await startDaemon(spawn, "wireguard-go", ns, wgo),
  ];
  try {
    const K = "01".repeat(32);
    const requests = [
      "set=1\nprivate_key=zz\n\n",
      "set=1\nbogus=1\n\n",
      "set=1\nlisten_port=70000\n\n",
      `set=1\npublic_key=${K}\nendpoint=nonsense\n\n`,
      `set=1\npublic_key=${K}\nallowed_ip=10.0.0.1\n\n`,
      `set=1\npublic_key=${K}\nprotocol_version=2\n\n`,
      "set=1\nno equals sign\n\n",
      "get=1\nx",
      `set=1\npublic_key=${K}\nreplace_allowed_ips=true\nallowed_ip=10.1.2.3/16\nallowed_ip=fd00:0:0::1/48\nendpoint=[fd00::9]:7\npersistent_keepalive_interval=0\n\n`,
      "get=1\n\n",
    ];
    for (const r of requests) {
      const [fromPc, fromWgo] = [await uapi(pc, r), await uapi(wgo, r)];
      // wireguard-go binds a random port on start, as podcrypt does; their numbers differ.
      const norm = (s: string): string => s.replace(/listen_port=\d+\n/, "listen_port=N\n");
      assert.equal(norm(fromPc), norm(fromWgo), JSON.stringify(r));
    }
    // wg reports the errno of a refused port: bind 51820 on wireguard-go, ask podcrypt for it.
    await wgSet(ns, wgo, ["listen-port", "51830"]);
    await assert.rejects(wgSet(ns, pc, ["listen-port", "51830"]), /Address already in use/);
  } finally {
    await stopDaemons(daemons);
  }
});

test("without -f the daemon forks, the parent exits 0 once ready, SIGTERM removes the socket", async () => {
  const ns = await lab.netns("fork");
  const ifname = `pc${lab.id}f`;
  const { cmd, args } = podcryptCommand();
  const code = await new Promise<number | null>((resolve) => {
    const parent = spawnChild("ip", ["netns", "exec", ns, cmd, ...args, "wireguard", ifname], {
      stdio: ["ignore", "ignore", "ignore"],
      env: { ...process.env, PODCRYPT_LOG_LEVEL: "warn" },
    });
    parent.once("exit", (c) => resolve(c));
  });
  assert.equal(code, 0);
  // Ready means ready: the socket answers at once, no waiting.
  assert.ok(uapiSocketExists(ifname));
  await waitForUapi(ns, ifname, 1000);
  const status = JSON.parse(
    await runIn(ns, cmd, [...args, "wireguard-stats", ifname, "--json"], { timeoutMs: 120_000 }),
  ) as { pid: number; ifname: string };
  forked.push(status.pid);
  assert.equal(status.ifname, ifname);
  assert.notEqual(status.pid, process.pid);
  // A second daemon for the same interface is refused (TUN busy or socket in use), exit non-zero.
  const second = await new Promise<number | null>((resolve) => {
    const d = lab.spawn(ns, cmd, [...args, "wireguard", "-f", ifname], { stdio: "ignore" });
    d.once("exit", (c) => resolve(c));
  });
  assert.equal(second, 1);
  assert.ok(uapiSocketExists(ifname), "the refused second daemon left the first one's socket alone");
  process.kill(status.pid, "SIGTERM");
  for (let i = 0; i < 50 && uapiSocketExists(ifname); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(uapiSocketExists(ifname), false);
  // The process exits right after removing its sockets.
  let alive = true;
  for (let i = 0; i < 50 && alive; i++) {
    try {
      process.kill(status.pid, 0);
      await new Promise((r) => setTimeout(r, 100));
    } catch {
      alive = false;
    }
  }
  assert.equal(alive, false);
  // An invalid interface name is refused with a usage error.
  const again = await new Promise<number | null>((resolve) => {
    const d = lab.spawn(ns, cmd, [...args, "wireguard", "-f", "bad/name"], { stdio: "ignore" });
    d.once("exit", (c) => resolve(c));
  });
  assert.notEqual(again, 0);
});
