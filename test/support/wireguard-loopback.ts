/**
 * A stateful in-memory data path and network for testing the WireGuard core without sockets, in
 * the spirit of wireguard-go's `tun/tuntest` and `conn/bindtest`: each {@link TestNode} plays the
 * data path of one Device (staging, keepalives, sealing and opening with the TS session helpers)
 * and a {@link TestNetwork} carries datagrams between them in order, on demand.
 */
import { randomBytes } from "node:crypto";
import type { ManualClock, RandomBytes } from "../../src/clock.js";
import type { DatapathPeer, Endpoint } from "../../src/wireguard/contract.js";
import { generatePrivateKey, publicFromPrivate } from "../../src/keys/x25519.js";
import { Device } from "../../src/wireguard/device.js";
import type { DeviceHandover } from "../../src/wireguard/handover.js";
import { parseIp } from "../../src/wireguard/ip.js";
import { messageType } from "../../src/wireguard/messages.js";
import { openTransport, sealTransport, transportReceiver } from "../../src/wireguard/session.js";

/** A datagram in flight. */
export interface Datagram {
  readonly from: Endpoint;
  readonly to: Endpoint;
  readonly bytes: Buffer;
}

const epKey = (e: Endpoint): string => `${e.address}:${e.port}`;

/** Carries datagrams between nodes by destination endpoint; a `filter` can drop or observe them. */
export class TestNetwork {
  readonly queue: Datagram[] = [];
  readonly log: Datagram[] = [];
  private readonly nodes = new Map<string, TestNode>();
  /** Return false to drop a datagram (fault injection). */
  filter: (d: Datagram) => boolean = () => true;

  attach(node: TestNode): void {
    this.nodes.set(epKey(node.endpoint), node);
  }

  send(d: Datagram): void {
    this.log.push(d);
    if (this.filter(d)) this.queue.push(d);
  }

  /** Delivers queued datagrams (and what they cause) until the network is quiet; returns the count. */
  run(limit = 1000): number {
    let n = 0;
    while (this.queue.length > 0 && n < limit) {
      const d = this.queue.shift()!;
      this.nodes.get(epKey(d.to))?.receive(d.bytes, d.from);
      n++;
    }
    return n;
  }

  /** Datagrams of one WireGuard message type seen so far. */
  count(type: number, from?: TestNode): number {
    return this.log.filter(
      (d) => d.bytes[0] === type && (from === undefined || epKey(d.from) === epKey(from.endpoint)),
    ).length;
  }
}

/** One WireGuard node: a Device and a minimal data path wired to it. */
export class TestNode {
  readonly device: Device;
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
  /** Plaintext IP packets delivered "to the TUN". */
  readonly delivered: Buffer[] = [];
  readonly staged = new Map<number, Buffer[]>();
  keepalivesSent = 0;
  keepalivesReceived = 0;
  stagedDropped = 0;
  /** Where this node's datagrams appear to come from (change it to simulate roaming). */
  source: Endpoint;

  constructor(
    readonly name: string,
    readonly endpoint: Endpoint,
    readonly clock: ManualClock,
    readonly network: TestNetwork,
    options: { random?: RandomBytes; underLoadThreshold?: number; handover?: DeviceHandover } = {},
  ) {
    const random = options.random ?? randomBytes;
    this.device = new Device({ clock, random, underLoadThreshold: options.underLoadThreshold });
    if (options.handover !== undefined) {
      // A successor: the key, peers and sessions come from its predecessor (Device.handOver).
      this.device.takeOver(options.handover, clock.now());
      this.privateKey = this.device.privateKey!;
      this.publicKey = this.device.publicKey!;
    } else {
      this.privateKey = generatePrivateKey(random);
      this.publicKey = publicFromPrivate(this.privateKey);
      this.device.setPrivateKey(this.privateKey);
    }
    this.source = endpoint;
    network.attach(this);
    this.device.setTransmit((to, bytes) => this.network.send({ from: this.source, to, bytes }));
    this.device.onKeypairReady((peer) => this.flush(peer));
    this.device.onKeepalive!((peer) => this.sendKeepalive(peer));
    this.device.onHandshakeGaveUp!((peer) => {
      this.stagedDropped += this.staged.get(peer.id)?.length ?? 0;
      this.staged.delete(peer.id);
    });
  }

  /** Adds `other` as a peer reachable at its endpoint with the given allowed IPs. */
  addPeer(other: TestNode, allowedIps: string[], withEndpoint = true): void {
    this.device.upsertPeer(other.publicKey);
    this.device.replaceAllowedIps(other.publicKey, allowedIps);
    if (withEndpoint) this.device.setEndpoint(other.publicKey, other.endpoint);
  }

  /** Sends an IP packet from the "TUN" (outbound path). Returns what happened. */
  send(packet: Buffer): "sent" | "staged" | "no-route" | "no-endpoint" {
    const now = this.clock.now();
    const peer = this.device.peerForDestination(packet, 0, packet.length);
    if (peer === undefined) {
      this.device.drop("no-route");
      return "no-route";
    }
    if (peer.endpoint === undefined) {
      this.device.drop("no-endpoint", peer);
      return "no-endpoint";
    }
    const kp = this.device.sendKeypair(peer, now);
    if (kp === undefined) {
      const q = this.staged.get(peer.id) ?? [];
      q.push(packet);
      this.staged.set(peer.id, q);
      return "staged";
    }
    this.transmitData(peer, packet);
    return "sent";
  }

  /** Inbound path for one datagram. */
  receive(bytes: Buffer, from: Endpoint): void {
    const now = this.clock.now();
    const type = messageType(bytes);
    if (type === 4) {
      const index = transportReceiver(bytes);
      if (index === undefined) return this.device.drop("malformed");
      const found = this.device.receiveKeypair(index, now);
      if (found === undefined) return this.device.drop("unknown-index");
      const opened = openTransport(found.keypair.recvKey, bytes);
      if (opened === undefined) return this.device.drop("auth-failed", found.peer);
      if (!this.device.acceptCounter(found.keypair, opened.counter))
        return this.device.drop("replay", found.peer);
      let length = 0;
      if (opened.plaintext.length > 0) {
        length = ipLength(opened.plaintext);
        if (length === 0 || length > opened.plaintext.length)
          return this.device.drop("malformed", found.peer);
        if (!this.device.sourceAllowed(found.peer, opened.plaintext, 0, length))
          return this.device.drop("bad-source", found.peer);
        this.delivered.push(opened.plaintext.subarray(0, length));
      } else this.keepalivesReceived++;
      (found.peer as { rxBytes: number }).rxBytes += bytes.length;
      this.device.dataReceived(found.peer, found.keypair, from, length, now);
    } else if (type !== undefined) this.device.handleControl(bytes, from, now);
    else this.device.drop("malformed");
  }

  /** Runs the core's timers at the clock's current time. */
  tick(): void {
    this.device.tick(this.clock.now());
  }

  private transmitData(peer: DatapathPeer, packet: Buffer): void {
    const kp = this.device.sendKeypair(peer, this.clock.now());
    if (kp === undefined || peer.endpoint === undefined) return;
    const msg = sealTransport(kp, packet);
    (peer as { txBytes: number }).txBytes += msg.length;
    this.network.send({ from: this.source, to: peer.endpoint, bytes: msg });
    this.device.dataSent(peer, packet.length, this.clock.now());
  }

  private flush(peer: DatapathPeer): void {
    const q = this.staged.get(peer.id);
    this.staged.delete(peer.id);
    for (const p of q ?? []) this.transmitData(peer, p);
  }

  private sendKeepalive(peer: DatapathPeer): void {
    if (peer.endpoint === undefined) return;
    const kp = this.device.sendKeypair(peer, this.clock.now());
    if (kp === undefined) return;
    const msg = sealTransport(kp, Buffer.alloc(0));
    (peer as { txBytes: number }).txBytes += msg.length;
    this.keepalivesSent++;
    this.network.send({ from: this.source, to: peer.endpoint, bytes: msg });
    this.device.dataSent(peer, 0, this.clock.now());
  }
}

function ipLength(p: Buffer): number {
  const v = p[0]! >> 4;
  if (v === 4 && p.length >= 20) return p.readUInt16BE(2);
  if (v === 6 && p.length >= 40) return 40 + p.readUInt16BE(4);
  return 0;
}

/** A minimal IPv4 (or IPv6, by address family) packet from `src` to `dst` carrying `payload`. */
export function ipPacket(src: string, dst: string, payload: Buffer = Buffer.from("hello")): Buffer {
  const s = parseIp(src)!;
  const d = parseIp(dst)!;
  if (s.length === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h.writeUInt16BE(20 + payload.length, 2);
    h[8] = 64;
    h[9] = 17;
    s.copy(h, 12);
    d.copy(h, 16);
    return Buffer.concat([h, payload]);
  }
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = 17;
  h[7] = 64;
  s.copy(h, 8);
  d.copy(h, 24);
  return Buffer.concat([h, payload]);
}
