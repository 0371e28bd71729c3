import { UapiErrno, UapiError, isUapiError, type UapiErrnoValue } from "./errors.js";
import { parseSetRequest, serializeGet, type UapiSetOperation } from "./protocol.js";
import type { UapiDevice } from "./types.js";

/** The outcome of one UAPI request: the errno sent back and, on failure, why (for the log). */
export interface UapiResult {
  readonly errno: UapiErrnoValue;
  readonly error?: UapiError;
}

function asUapiError(e: unknown, fallback: UapiErrnoValue, what: string): UapiError {
  if (isUapiError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new UapiError(fallback, `${what}: ${message}`, { cause: e });
}

/**
 * Applies validated operations in request order. A failure stops the request there and is
 * returned, the operations before it stay applied (as in wireguard-go); since the whole request was
 * validated first, only the device refusing a change (port in use, ...) can stop it half-way.
 */
export async function applySetOperations(
  device: UapiDevice,
  ops: readonly UapiSetOperation[],
): Promise<UapiResult> {
  for (const op of ops) {
    try {
      switch (op.kind) {
        case "private_key":
          device.setPrivateKey(op.key);
          break;
        case "listen_port":
          try {
            await device.setListenPort(op.port);
          } catch (e) {
            throw asUapiError(e, UapiErrno.PORT_IN_USE, "failed to set listen_port");
          }
          break;
        case "fwmark":
          try {
            await device.setFwmark(op.mark);
          } catch (e) {
            throw asUapiError(e, UapiErrno.PORT_IN_USE, "failed to update fwmark");
          }
          break;
        case "replace_peers":
          device.removeAllPeers();
          break;
        case "peer": {
          const p = op.peer;
          const own = device.publicKey();
          // A peer with the device's own public key is ignored (wireguard-go's "dummy" peer).
          if (own !== undefined && own.equals(p.publicKey)) break;
          if (p.remove) {
            device.removePeer(p.publicKey);
            break;
          }
          if (p.updateOnly && !device.hasPeer(p.publicKey)) break;
          device.upsertPeer({
            publicKey: p.publicKey,
            ...(p.presharedKey !== undefined ? { presharedKey: p.presharedKey } : {}),
            ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}),
            ...(p.persistentKeepalive !== undefined ? { persistentKeepalive: p.persistentKeepalive } : {}),
            replaceAllowedIps: p.replaceAllowedIps,
            allowedIps: p.allowedIps,
          });
          break;
        }
      }
    } catch (e) {
      const error = asUapiError(e, UapiErrno.UNKNOWN, `failed to apply ${op.kind}`);
      return { errno: error.errno, error };
    }
  }
  return { errno: UapiErrno.OK };
}

/** Runs a `set=1` request body against `device`: parse and validate all of it, then apply. */
export async function executeSet(device: UapiDevice, body: string): Promise<UapiResult> {
  let ops: UapiSetOperation[];
  try {
    ops = parseSetRequest(body);
  } catch (e) {
    const error = asUapiError(e, UapiErrno.INVALID, "invalid request");
    return { errno: error.errno, error };
  }
  return applySetOperations(device, ops);
}

/** Runs a `get=1` request: the answer lines, or an error if the device could not be read. */
export function executeGet(device: UapiDevice): { text: string } & UapiResult {
  try {
    return { text: serializeGet(device.state()), errno: UapiErrno.OK };
  } catch (e) {
    const error = asUapiError(e, UapiErrno.UNKNOWN, "failed to read device state");
    return { text: "", errno: error.errno, error };
  }
}
