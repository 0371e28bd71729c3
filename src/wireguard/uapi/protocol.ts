/**
 * The cross-platform WireGuard configuration protocol (https://www.wireguard.com/xplatform/),
 * as `wg` and wireguard-go speak it over `/var/run/wireguard/IFNAME.sock`: `get=1` answers with
 * `key=value` lines, `set=1` takes them; both end with `errno=N` and a blank line.
 *
 * This file is the text half: parsing a `set` body into typed operations (every line validated
 * before anything is applied) and serializing a `get` answer. Keys travel in lowercase hex.
 */
import { clamp } from "../../keys/x25519.js";
import type { Endpoint } from "../contract.js";
import { UapiErrno, UapiError } from "./errors.js";
import { formatEndpoint, formatPrefix, parseEndpoint, parsePrefix, type IpPrefix } from "./ip.js";
import type { UapiDeviceState } from "./types.js";

/** One peer section of a `set` request (from its `public_key=` line to the next one). */
export interface UapiPeerSection {
  readonly publicKey: Buffer;
  /** `update_only=true`: do not create the peer if it does not exist. */
  updateOnly: boolean;
  /** `remove=true`: remove the peer; the rest of the section is then ignored. */
  remove: boolean;
  /** 32 bytes, null = clear (all zeros on the wire), undefined = unchanged. */
  presharedKey?: Buffer | null;
  endpoint?: Endpoint;
  persistentKeepalive?: number;
  replaceAllowedIps: boolean;
  allowedIps: IpPrefix[];
}

/** A validated operation of a `set` request, in request order. */
export type UapiSetOperation =
  | { readonly kind: "private_key"; readonly key: Buffer | undefined }
  | { readonly kind: "listen_port"; readonly port: number }
  | { readonly kind: "fwmark"; readonly mark: number }
  | { readonly kind: "replace_peers" }
  | { readonly kind: "peer"; readonly peer: UapiPeerSection };

const HEX_KEY = /^[0-9a-fA-F]{64}$/;

/** Parses a 32-byte key in hex (either case, as Go's encoding/hex); throws -EINVAL naming `field`. */
export function parseHexKey(value: string, field: string): Buffer {
  if (!HEX_KEY.test(value)) throw new UapiError(UapiErrno.INVALID, `${field}: not a 32-byte hex key`);
  return Buffer.from(value, "hex");
}

/** Whether every byte of `key` is zero (the wire's "no key"). */
export function isZeroKey(key: Buffer): boolean {
  return key.every((b) => b === 0);
}

function parseUint(value: string, field: string, max: number): number {
  // strconv.ParseUint(value, 10, n): decimal digits only, no sign.
  if (!/^\d+$/.test(value) || Number(value) > max)
    throw new UapiError(UapiErrno.INVALID, `${field}: not an integer from 0 to ${max}: ${value}`);
  return Number(value);
}

function parseTrue(value: string, field: string): void {
  if (value !== "true")
    throw new UapiError(UapiErrno.INVALID, `${field}: invalid value ${value}, only "true"`);
}

/**
 * Parses the body of a `set=1` request (the lines after `set=1`, without the terminating blank
 * line) into operations. Throws a {@link UapiError} with the errno wireguard-go would answer for the
 * first bad line: -EPROTO for a line without `=`, -EINVAL for a bad value or an unknown key
 * (device keys after the first `public_key=` are unknown peer keys, as in wireguard-go).
 */
export function parseSetRequest(body: string): UapiSetOperation[] {
  const ops: UapiSetOperation[] = [];
  let peer: UapiPeerSection | undefined;
  const lines = body.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    if (line === "") break; // a blank line ends the request
    const eq = line.indexOf("=");
    if (eq < 0)
      throw new UapiError(UapiErrno.PROTOCOL, `failed to parse line without "=" (${line.length} chars)`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === "public_key") {
      peer = {
        publicKey: parseHexKey(value, "public_key"),
        updateOnly: false,
        remove: false,
        replaceAllowedIps: false,
        allowedIps: [],
      };
      ops.push({ kind: "peer", peer });
      continue;
    }
    if (peer === undefined) {
      switch (key) {
        case "private_key": {
          const k = parseHexKey(value, "private_key");
          ops.push({ kind: "private_key", key: isZeroKey(k) ? undefined : k });
          break;
        }
        case "listen_port":
          ops.push({ kind: "listen_port", port: parseUint(value, "listen_port", 0xffff) });
          break;
        case "fwmark":
          ops.push({ kind: "fwmark", mark: parseUint(value, "fwmark", 0xffffffff) });
          break;
        case "replace_peers":
          parseTrue(value, "replace_peers");
          ops.push({ kind: "replace_peers" });
          break;
        default:
          throw new UapiError(UapiErrno.INVALID, `invalid UAPI device key: ${key}`);
      }
      continue;
    }
    switch (key) {
      case "update_only":
        parseTrue(value, "update_only");
        peer.updateOnly = true;
        break;
      case "remove":
        parseTrue(value, "remove");
        peer.remove = true;
        break;
      case "preshared_key": {
        const k = parseHexKey(value, "preshared_key");
        peer.presharedKey = isZeroKey(k) ? null : k;
        break;
      }
      case "endpoint": {
        const ep = parseEndpoint(value);
        if (ep === undefined) throw new UapiError(UapiErrno.INVALID, `endpoint: invalid endpoint ${value}`);
        peer.endpoint = ep;
        break;
      }
      case "persistent_keepalive_interval":
        peer.persistentKeepalive = parseUint(value, "persistent_keepalive_interval", 0xffff);
        break;
      case "replace_allowed_ips":
        parseTrue(value, "replace_allowed_ips");
        peer.replaceAllowedIps = true;
        peer.allowedIps = [];
        break;
      case "allowed_ip": {
        const prefix = parsePrefix(value);
        if (prefix === undefined)
          throw new UapiError(UapiErrno.INVALID, `allowed_ip: invalid prefix ${value}`);
        peer.allowedIps.push(prefix);
        break;
      }
      case "protocol_version":
        if (value !== "1") throw new UapiError(UapiErrno.INVALID, `invalid protocol version: ${value}`);
        break;
      default:
        throw new UapiError(UapiErrno.INVALID, `invalid UAPI peer key: ${key}`);
    }
  }
  return ops;
}

const ZERO_KEY_HEX = "0".repeat(64);
const NS_PER_S = 1_000_000_000n;

/**
 * Serializes the answer to `get=1` (without the `errno=0` trailer), in wireguard-go's order:
 * device keys (each only when set), then per peer public_key, preshared_key, protocol_version,
 * endpoint (when known), last handshake, counters, keepalive and allowed IPs.
 */
export function serializeGet(state: UapiDeviceState): string {
  const lines: string[] = [];
  if (state.privateKey !== undefined && !isZeroKey(state.privateKey))
    lines.push(`private_key=${clamp(state.privateKey).toString("hex")}`);
  if (state.listenPort !== 0) lines.push(`listen_port=${state.listenPort}`);
  if (state.fwmark !== 0) lines.push(`fwmark=${state.fwmark}`);
  for (const p of state.peers) {
    lines.push(`public_key=${p.publicKey.toString("hex")}`);
    lines.push(
      `preshared_key=${p.presharedKey === undefined ? ZERO_KEY_HEX : p.presharedKey.toString("hex")}`,
    );
    lines.push("protocol_version=1");
    if (p.endpoint !== undefined) lines.push(`endpoint=${formatEndpoint(p.endpoint)}`);
    const ns = p.lastHandshakeNs < 0n ? 0n : p.lastHandshakeNs;
    lines.push(`last_handshake_time_sec=${ns / NS_PER_S}`);
    lines.push(`last_handshake_time_nsec=${ns % NS_PER_S}`);
    lines.push(`tx_bytes=${p.txBytes}`);
    lines.push(`rx_bytes=${p.rxBytes}`);
    lines.push(`persistent_keepalive_interval=${p.persistentKeepalive}`);
    for (const a of p.allowedIps) lines.push(`allowed_ip=${formatPrefix(a)}`);
  }
  return lines.map((l) => l + "\n").join("");
}

/** The status trailer of every answer: `errno=N` and the blank line that ends the answer. */
export function errnoTrailer(errno: number): string {
  return `errno=${errno}\n\n`;
}
