import { connect } from "node:net";
import { PodcryptError } from "../../errors/index.js";

/** Directory of the UAPI sockets (wireguard-go and `podcrypt wireguard` both use it). */
export const UAPI_DIR = "/var/run/wireguard";

export function uapiSocketPath(ifname: string): string {
  return `${UAPI_DIR}/${ifname}.sock`;
}

/** One peer as `get=1` reports it. Keys are hex on the wire; this keeps them as base64. */
export interface UapiPeer {
  publicKey: string;
  endpoint?: string;
  allowedIps: string[];
  persistentKeepalive: number;
  rxBytes: number;
  txBytes: number;
  /** Milliseconds since the epoch, 0 when there was none. */
  lastHandshake: number;
  hasPresharedKey: boolean;
}

export interface UapiDevice {
  /** Public key is not part of `get`; callers derive it. This is a fingerprint-free flag. */
  hasPrivateKey: boolean;
  /** The private key as base64, for comparison only; never logged. */
  privateKey?: string;
  listenPort: number;
  fwmark: number;
  peers: UapiPeer[];
}

function hexToB64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}
export function b64ToHex(b64: string): string {
  return Buffer.from(b64, "base64").toString("hex");
}

/** Sends one request and returns the response lines up to (excluding) `errno=N`. */
async function request(ifname: string, body: string, timeoutMs = 5000): Promise<string[]> {
  const path = uapiSocketPath(ifname);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new PodcryptError("EUAPI", `UAPI ${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(body));
    sock.on("data", (d: string) => {
      buf += d;
      const m = /(^|\n)errno=(-?\d+)\n\n?$/.exec(buf);
      if (m === null) return;
      clearTimeout(timer);
      sock.end();
      const errno = Number(m[2]);
      if (errno !== 0) {
        reject(
          new PodcryptError("EUAPI", `UAPI ${path}: request failed with errno=${errno}`, {
            context: { errno },
          }),
        );
        return;
      }
      resolve(
        buf
          .slice(0, m.index)
          .split("\n")
          .filter((l) => l !== ""),
      );
    });
    sock.on("error", (cause) => {
      clearTimeout(timer);
      reject(new PodcryptError("EUAPI", `UAPI ${path}: ${cause.message}`, { cause }));
    });
  });
}

/** `get=1`: the device's configuration and counters. */
export async function uapiGet(ifname: string): Promise<UapiDevice> {
  const lines = await request(ifname, "get=1\n\n");
  const dev: UapiDevice = { hasPrivateKey: false, listenPort: 0, fwmark: 0, peers: [] };
  let peer: UapiPeer | undefined;
  let hsSec = 0;
  for (const line of lines) {
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    switch (key) {
      case "private_key":
        dev.hasPrivateKey = true;
        dev.privateKey = hexToB64(value);
        break;
      case "listen_port":
        dev.listenPort = Number(value);
        break;
      case "fwmark":
        dev.fwmark = Number(value);
        break;
      case "public_key":
        peer = {
          publicKey: hexToB64(value),
          allowedIps: [],
          persistentKeepalive: 0,
          rxBytes: 0,
          txBytes: 0,
          lastHandshake: 0,
          hasPresharedKey: false,
        };
        dev.peers.push(peer);
        break;
      case "endpoint":
        if (peer) peer.endpoint = value;
        break;
      case "allowed_ip":
        peer?.allowedIps.push(value);
        break;
      case "persistent_keepalive_interval":
        if (peer) peer.persistentKeepalive = Number(value);
        break;
      case "rx_bytes":
        if (peer) peer.rxBytes = Number(value);
        break;
      case "tx_bytes":
        if (peer) peer.txBytes = Number(value);
        break;
      case "last_handshake_time_sec":
        hsSec = Number(value);
        break;
      case "last_handshake_time_nsec":
        if (peer) peer.lastHandshake = hsSec * 1000 + Math.floor(Number(value) / 1e6);
        break;
      case "preshared_key":
        if (peer) peer.hasPresharedKey = !/^0+$/.test(value);
        break;
      default:
        break;
    }
  }
  return dev;
}

/** `set=1` with the given `key=value` lines. */
export async function uapiSet(ifname: string, lines: string[]): Promise<void> {
  await request(ifname, `set=1\n${lines.join("\n")}\n\n`);
}
