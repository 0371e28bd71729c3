// test-tier: netns (root: network namespaces)
/**
 * Interop of the pure WireGuard core with Debian's wireguard-go (written before the
 * full daemon existed): wireguard-go runs in one namespace, our core in a child process in another
 * (this same file in "child" mode, a plain UDP socket, the TS transport helpers). An ICMP echo
 * crosses the tunnel and the peer's kernel answers it, so handshake and transport data are proven
 * byte-compatible in both directions, with the handshake started by either side.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { systemClock } from "../../src/clock.js";
import { encodeKey, generatePrivateKey, publicFromPrivate } from "../../src/keys/x25519.js";
import { Device } from "../../src/wireguard/device.js";
import { messageType } from "../../src/wireguard/messages.js";
import { openTransport, sealTransport, transportReceiver } from "../../src/wireguard/session.js";
import type { DatapathPeer } from "../../src/wireguard/contract.js";

const WG_UNDERLAY = "10.99.0.1";
const CORE_UNDERLAY = "10.99.0.2";
const WG_PORT = 51820;
const CORE_PORT = 51821;
const WG_TUNNEL_IP = "10.200.0.1";
const CORE_TUNNEL_IP = "10.200.0.2";

// ---- IPv4 / ICMP (RFC 791, RFC 792) ----------------------------------------------------------

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function icmpEcho(src: string, dst: string, type: 0 | 8, id: number, seq: number, data: Buffer): Buffer {
  const icmp = Buffer.alloc(8 + data.length);
  icmp[0] = type;
  icmp.writeUInt16BE(id, 4);
  icmp.writeUInt16BE(seq, 6);
  data.copy(icmp, 8);
  icmp.writeUInt16BE(checksum(icmp), 2);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip[8] = 64;
  ip[9] = 1;
  Buffer.from(src.split(".").map(Number)).copy(ip, 12);
  Buffer.from(dst.split(".").map(Number)).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

const ipv4Text = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join(".");

// ---- child: our core on a UDP socket ---------------------------------------------------------

async function child(): Promise<void> {
  const mode = process.env.PODCRYPT_INTEROP_CHILD!;
  const device = new Device({ clock: systemClock, random: randomBytes });
  device.setPrivateKey(Buffer.from(process.env.PODCRYPT_INTEROP_KEY!, "hex"));
  const peerKey = Buffer.from(process.env.PODCRYPT_INTEROP_PEER!, "hex");
  device.upsertPeer(peerKey);
  device.replaceAllowedIps(peerKey, [`${WG_TUNNEL_IP}/32`]);
  device.setEndpoint(peerKey, { address: WG_UNDERLAY, port: WG_PORT });
  const sock = createSocket("udp4");
  await new Promise<void>((resolve) => sock.bind(CORE_PORT, CORE_UNDERLAY, resolve));
  const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  device.setTransmit((to, msg) => sock.send(msg, to.port, to.address));
  const sendData = (peer: DatapathPeer, packet: Buffer): boolean => {
    const kp = device.sendKeypair(peer, systemClock.now());
    if (kp === undefined || peer.endpoint === undefined) return false;
    sock.send(sealTransport(kp, packet), peer.endpoint.port, peer.endpoint.address);
    device.dataSent(peer, packet.length, systemClock.now());
    return true;
  };
  const echo = icmpEcho(CORE_TUNNEL_IP, WG_TUNNEL_IP, 8, 0x4242, 1, Buffer.from("podcrypt-core"));
  device.onKeypairReady((peer) => {
    say({ event: "keypair-ready" });
    if (mode === "initiate") sendData(peer, echo);
  });
  device.onKeepalive!((peer) => void sendData(peer, Buffer.alloc(0)));
  sock.on("message", (msg, rinfo) => {
    const now = systemClock.now();
    const from = { address: rinfo.address, port: rinfo.port };
    const type = messageType(msg);
    if (type !== 4) {
      if (type !== undefined) say({ event: "control", type });
      device.handleControl(msg, from, now);
      return;
    }
    const found = device.receiveKeypair(transportReceiver(msg) ?? -1, now);
    const opened = found && openTransport(found.keypair.recvKey, msg);
    if (!found || !opened || !device.acceptCounter(found.keypair, opened.counter)) {
      say({ event: "data-dropped" });
      return;
    }
    const p = opened.plaintext;
    const length = p.length >= 20 ? p.readUInt16BE(2) : 0;
    device.dataReceived(found.peer, found.keypair, from, length, now);
    if (length === 0) return say({ event: "keepalive" });
    const ok = device.sourceAllowed(found.peer, p, 0, length);
    const icmpType = p[20];
    say({ event: "data", src: ipv4Text(p, 12), dst: ipv4Text(p, 16), icmpType, sourceAllowed: ok });
    if (icmpType === 8) {
      // answer an echo request as a host would
      const id = p.readUInt16BE(24);
      const seq = p.readUInt16BE(26);
      sendData(found.peer, icmpEcho(CORE_TUNNEL_IP, ipv4Text(p, 12), 0, id, seq, p.subarray(28, length)));
    }
  });
  setInterval(() => device.tick(systemClock.now()), 100).unref();
  say({ event: "ready" });
  if (mode === "initiate") {
    const peer = device.peer(peerKey)!;
    if (!sendData(peer, echo)) say({ event: "handshake-started" });
  }
}

// ---- parent: the test -------------------------------------------------------------------------

if (process.env.PODCRYPT_INTEROP_CHILD !== undefined) {
  await child();
} else {
  test(
    "handshake and transport interop with Debian wireguard-go, either side initiating",
    { timeout: 60_000 },
    async () => {
      const { NetnsLab } = await import("../support/netns.js");
      const { runIn } = await import("../../src/platform/netns/netns.js");
      const lab = new NetnsLab();
      try {
        const nsWg = await lab.netns("wg");
        const nsCore = await lab.netns("core");
        await lab.veth(nsWg, "ul0", nsCore, "ul0", [`${WG_UNDERLAY}/24`], [`${CORE_UNDERLAY}/24`]);
        const ifname = `pcw${lab.id.slice(0, 6)}`;
        lab.spawn(nsWg, "wireguard-go", [ifname], { env: { ...process.env, WG_PROCESS_FOREGROUND: "1" } });
        let up = false;
        for (let i = 0; i < 50 && !up; i++) {
          up = await runIn(nsWg, "wg", ["show", ifname]).then(
            () => true,
            () => false,
          );
          if (!up) await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(up, "wireguard-go UAPI socket came up");
        const wgPriv = generatePrivateKey(randomBytes);
        const wgPub = publicFromPrivate(wgPriv);
        // wg reads the key from a file: a 0600 file in a private temp directory, removed at once
        const dir = await mkdtemp(join(tmpdir(), "pcw-"));
        try {
          const keyFile = join(dir, "key");
          await writeFile(keyFile, `${encodeKey(wgPriv)}\n`, { mode: 0o600 });
          await runIn(nsWg, "wg", ["set", ifname, "private-key", keyFile, "listen-port", String(WG_PORT)]);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
        await runIn(nsWg, "ip", ["addr", "add", `${WG_TUNNEL_IP}/24`, "dev", ifname]);
        await runIn(nsWg, "ip", ["link", "set", ifname, "up"]);

        const runChild = (mode: "initiate" | "respond", key: Buffer) => {
          const file = fileURLToPath(import.meta.url);
          const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
          const proc = spawn("ip", ["netns", "exec", nsCore, process.execPath, ...execArgv, file], {
            env: {
              ...process.env,
              PODCRYPT_INTEROP_CHILD: mode,
              PODCRYPT_INTEROP_KEY: key.toString("hex"),
              PODCRYPT_INTEROP_PEER: wgPub.toString("hex"),
            },
            stdio: ["ignore", "pipe", "pipe"],
          });
          const events: Array<Record<string, unknown>> = [];
          let buf = "";
          let stderr = "";
          proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
          proc.stdout.on("data", (d: Buffer) => {
            buf += d.toString();
            let nl: number;
            while ((nl = buf.indexOf("\n")) >= 0) {
              events.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
              buf = buf.slice(nl + 1);
            }
          });
          const waitFor = async (
            pred: (e: Record<string, unknown>) => boolean,
            what: string,
          ): Promise<void> => {
            for (let i = 0; i < 100; i++) {
              if (events.some(pred)) return;
              await new Promise((r) => setTimeout(r, 100));
            }
            assert.fail(`${what} not seen; events ${JSON.stringify(events)} stderr ${stderr.slice(0, 2000)}`);
          };
          return { proc, events, waitFor };
        };

        // 1. our core initiates; wireguard-go's kernel side answers the ping through the tunnel
        const key1 = generatePrivateKey(randomBytes);
        await runIn(nsWg, "wg", [
          "set",
          ifname,
          "peer",
          encodeKey(publicFromPrivate(key1)),
          "allowed-ips",
          `${CORE_TUNNEL_IP}/32`,
          "endpoint",
          `${CORE_UNDERLAY}:${CORE_PORT}`,
        ]);
        const c1 = runChild("initiate", key1);
        try {
          await c1.waitFor(
            (e) => e.event === "data" && e.icmpType === 0,
            "echo reply from wireguard-go's side",
          );
          const reply = c1.events.find((e) => e.event === "data")!;
          assert.equal(reply.src, WG_TUNNEL_IP);
          assert.equal(reply.dst, CORE_TUNNEL_IP);
          assert.equal(reply.sourceAllowed, true);
          assert.ok(
            c1.events.some((e) => e.event === "control" && e.type === 2),
            "response consumed",
          );
          const show = await runIn(nsWg, "wg", ["show", ifname, "latest-handshakes"]);
          assert.match(show, /\t[1-9]\d*\n/, "wireguard-go recorded the handshake");
        } finally {
          c1.proc.kill("SIGKILL");
        }

        // 2. wireguard-go initiates (ping from its side); our core responds and answers the ping
        const key2 = generatePrivateKey(randomBytes);
        await runIn(nsWg, "wg", [
          "set",
          ifname,
          "peer",
          encodeKey(publicFromPrivate(key1)),
          "remove",
          "peer",
          encodeKey(publicFromPrivate(key2)),
          "allowed-ips",
          `${CORE_TUNNEL_IP}/32`,
          "endpoint",
          `${CORE_UNDERLAY}:${CORE_PORT}`,
        ]);
        const c2 = runChild("respond", key2);
        try {
          await c2.waitFor((e) => e.event === "ready", "child ready");
          const ping = await runIn(nsWg, "ping", ["-c", "1", "-W", "5", CORE_TUNNEL_IP]);
          assert.match(ping, /1 received/);
          assert.ok(
            c2.events.some((e) => e.event === "control" && e.type === 1),
            "initiation consumed",
          );
          assert.ok(
            c2.events.some((e) => e.event === "keypair-ready"),
            "responder keypair confirmed by data",
          );
        } finally {
          c2.proc.kill("SIGKILL");
        }
      } finally {
        await lab.cleanup();
      }
    },
  );
}
