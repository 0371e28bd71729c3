/**
 * The JSON control protocol of the userspace ESP daemon (`podcrypt esp IFNAME`), spoken over the
 * unix socket `/var/run/podcrypt/esp/IFNAME.sock` (mode 0600, root only).
 *
 * One request per line, one answer line each, any number per connection:
 *
 *   {"op":"get"}            -> {"ok":true,"status":EspStatus}             (never key material)
 *   {"op":"set", ...}       -> {"ok":true,"status":EspStatus}              see {@link EspSetRequest}
 *   {"op":"export-sas"}     -> {"ok":true,"sas":[EspExportedSa, ...]}      keys: debug export only
 *   {"op":"handover"}       -> {"ok":true,"handover":{fds,state}}          a planned restart: the
 *                              daemon stops its packet path, hands its fds and whole state (keys
 *                              included) to its `--take-over` successor and exits (daemon.ts)
 *   failures                -> {"ok":false,"error":{"code":"...","message":"..."}}
 *
 * The daemon is a pure data plane: it never sees a private key. The agent derives the per-pair
 * ESP keys (src/keys/derive.ts) and pushes SAs; a `set` is validated as a whole before anything
 * changes, so a rejected request leaves the daemon as it was.
 */
import { connect } from "node:net";
import { z } from "zod";
import { PodcryptError } from "../../errors/index.js";
import type { EspDropReason } from "../../esp/drops.js";

export { DEFAULT_ESP_SOCKET_DIR, espSocketPath } from "./socket-path.js";

const hex = (bytes: number): z.ZodString =>
  z.string().regex(new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`), `must be ${bytes} bytes of hex`);

const endpointSchema = z.object({
  address: z.string().min(1),
  port: z.number().int().min(1).max(65535),
});

/** A peer: another node, its inner (pod) CIDRs, and where its ESP-in-UDP packets go. */
export const espPeerSchema = z.object({
  name: z.string().min(1),
  endpoint: endpointSchema,
  allowedIps: z.array(z.string().min(1)),
});
export type EspPeerConfig = z.infer<typeof espPeerSchema>;

/** One SA as the agent pushes it: key and salt are RFC 4106 key material, hex. */
export const espSaSchema = z.object({
  direction: z.enum(["in", "out"]),
  peer: z.string().min(1),
  keyId: z.number().int().min(1).max(15),
  spi: z.number().int().min(256).max(0xffff_ffff),
  key: hex(16),
  salt: hex(4),
  icvLength: z.union([z.literal(8), z.literal(12), z.literal(16)]).optional(),
  esn: z.boolean().optional(),
  /**
   * Outbound only: the sequence number from which the SA asks for an early rotation
   * (`rekeySoon`). Default: three quarters of the sequence space.
   */
  rekeyAfter: z.number().int().min(1).optional(),
});
export type EspSaConfig = z.infer<typeof espSaSchema>;

/**
 * A configuration change, applied in this order: `removeKeyIds`, `removePeers`, `local`, `peers`
 * (added or replaced by name), `sas` (installed; idempotent: re-installing an identical SA keeps
 * its counters and replay window), `activate` (which installed outbound SA sends to a peer).
 */
export const espSetSchema = z.object({
  op: z.literal("set"),
  /**
   * `instance`: the node's SA instance (src/keys/derive.ts) the pushed SAs are derived with. The
   * daemon reports it back in its status: proof that the SA state made under it is still here.
   */
  local: z
    .object({
      name: z.string().min(1),
      address: z.string().min(1).optional(),
      instance: z
        .string()
        .regex(/^[0-9a-f]{32}$/, "must be 32 lowercase hex digits")
        .optional(),
    })
    .optional(),
  peers: z.array(espPeerSchema).optional(),
  removePeers: z.array(z.string().min(1)).optional(),
  sas: z.array(espSaSchema).optional(),
  activate: z.array(z.object({ peer: z.string().min(1), keyId: z.number().int().min(1).max(15) })).optional(),
  removeKeyIds: z.array(z.number().int().min(1).max(15)).optional(),
});
export type EspSetRequest = z.infer<typeof espSetSchema>;

export const espRequestSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("get") }),
  z.object({ op: z.literal("export-sas") }),
  espSetSchema,
]);
export type EspRequest = z.infer<typeof espRequestSchema>;

/** One SA in the status (no key material), like a `swanctl --list-sa` row. */
export interface EspSaStatus {
  direction: "in" | "out";
  peer: string;
  keyId: number;
  /** SPI as 0x + 8 hex digits. */
  spi: string;
  /** Inner bytes and packets protected. */
  bytes: number;
  packets: number;
  /** Seconds since the SA was installed. */
  ageS: number;
  /** Outbound: last sequence number sent; inbound: highest accepted. */
  sequence: number;
  /** The highest sequence number the SA may use (2^32 - 1, or more with ESN): it must be replaced before. */
  maxSequence: number;
  /** Outbound only: this SA sends now. */
  active?: boolean;
  rekeySoon: boolean;
  replayDrops: number;
  authFailures: number;
}

/** Drops of the datapath itself (before or after the ESP codec). */
export type EspDatapathDropReason =
  | "no-route" // no peer owns the inner destination
  | "no-sa" // the peer has no active outbound SA (strict: never sent in plaintext)
  | "no-endpoint" // the peer's endpoint is not an IP literal
  | "bad-source" // decrypted inner source outside the sending peer's allowed IPs
  | "oversize"; // datagram longer than the receive buffer, or TUN packet longer than the largest MTU

export interface EspPeerStatus {
  name: string;
  endpoint: { address: string; port: number };
  allowedIps: string[];
  activeKeyId: number | null;
  txBytes: number;
  txPackets: number;
  rxBytes: number;
  rxPackets: number;
}

/** What `get` answers. */
export interface EspStatus {
  ifname: string;
  pid: number;
  port: number;
  mtu: number;
  /** `instance`: the SA instance the agent set, null in a daemon that has not been given one. */
  local: { name: string | null; address: string | null; instance: string | null };
  peers: EspPeerStatus[];
  sas: EspSaStatus[];
  drops: Record<EspDropReason | EspDatapathDropReason, number>;
  counters: EspCounters;
  /**
   * The TUN device's offloads (IFF_VNET_HDR with TSO): whether it has them, and the TCP
   * super-segments read and cut into packets so far (0 without them; wraps at 2^32).
   */
  tun: { offload: boolean; superSegments: number };
}

/** The daemon's packet counters (kept beside its configuration, updated by the packet path). */
export interface EspCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  sendErrors: number;
  tunWriteErrors: number;
  /** Exceptions caught in the packet path's readiness callbacks (each lost its batch, never the daemon). */
  callbackErrors: number;
}

/** An SA with its key material and outer addresses, for `podcrypt debug esp-sa --tshark` only. */
export interface EspExportedSa {
  direction: "in" | "out";
  peer: string;
  keyId: number;
  spi: number;
  icvLength: 8 | 12 | 16;
  /** Outer source and destination addresses ("*" when unknown). */
  src: string;
  dst: string;
  key: string;
  salt: string;
}

export type EspResponse =
  | { ok: true; status: EspStatus }
  | { ok: true; sas: EspExportedSa[] }
  | { ok: false; error: { code: string; message: string } };

/**
 * Sends one request to the daemon at `path` and returns its answer; a daemon error becomes a
 * PodcryptError with the daemon's code. Default timeout 5 s.
 */
export async function espRequest(path: string, request: EspRequest, timeoutMs = 5000): Promise<EspResponse> {
  const text = await new Promise<string>((resolve, reject) => {
    const c = connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      c.destroy();
      reject(
        new PodcryptError("ECONTROL", `no answer from the ESP daemon at ${path} within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    c.setEncoding("utf8");
    c.on("connect", () => c.write(JSON.stringify(request) + "\n"));
    c.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        c.end();
        resolve(buf.slice(0, nl));
      }
    });
    c.on("error", (e) => {
      clearTimeout(timer);
      reject(
        new PodcryptError("ECONTROL", `cannot reach the ESP daemon at ${path}: ${e.message}`, {
          cause: e,
          context: { path },
        }),
      );
    });
    c.on("end", () => {
      clearTimeout(timer);
      reject(new PodcryptError("ECONTROL", `the ESP daemon at ${path} closed without answering`));
    });
  });
  let res: EspResponse;
  try {
    res = JSON.parse(text) as EspResponse;
  } catch (cause) {
    throw new PodcryptError("ECONTROL", `bad answer from the ESP daemon at ${path}`, { cause });
  }
  if (!res.ok) throw new PodcryptError(res.error.code, res.error.message, { context: { path } });
  return res;
}

/** `get` on the daemon at `path`. */
export async function espGet(path: string): Promise<EspStatus> {
  const res = await espRequest(path, { op: "get" });
  if (!("status" in res)) throw new PodcryptError("ECONTROL", `unexpected answer to get from ${path}`);
  return res.status;
}

/** `set` on the daemon at `path`; returns the status after the change. */
export async function espSet(path: string, request: Omit<EspSetRequest, "op">): Promise<EspStatus> {
  const res = await espRequest(path, { op: "set", ...request });
  if (!("status" in res)) throw new PodcryptError("ECONTROL", `unexpected answer to set from ${path}`);
  return res.status;
}

/** `export-sas` on the daemon at `path` (key material: for the tshark debug export only). */
export async function espExportSas(path: string): Promise<EspExportedSa[]> {
  const res = await espRequest(path, { op: "export-sas" });
  if (!("sas" in res)) throw new PodcryptError("ECONTROL", `unexpected answer to export-sas from ${path}`);
  return res.sas;
}
