import { createSocket, type Socket } from "node:dgram";
import { connect, isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** What `podcrypt debug probe` prints on stderr once its first messages are out (verify waits for it). */
export const PROBE_SENDING = "sending";

/** Receive buffer of the probe's and the echo servers' UDP sockets, in bytes. */
export const PROBE_SOCKET_BUFFER = 4 << 20;

/**
 * One marked probe: messages carrying `marker` to `ip:port`, echoed back by the pod's echo
 * service: UDP datagrams, or lines on one TCP connection.
 */
export interface ProbeTarget {
  protocol: "udp" | "tcp";
  ip: string;
  port: number;
  marker: string;
}

/** What came back for one target. */
export interface ProbeResult {
  /** How many messages went out: the run's count, or fewer when it was stopped early. */
  sent: number;
  echoed: number;
  /**
   * Runs of consecutive datagrams that never came back, as `[first, last]` sequence numbers
   * (0-based, sent `seconds / count` apart), so a loss can be placed in time.
   */
  lost: Array<[number, number]>;
  /** When the first datagram was sent (ms since the epoch), to place losses in wall-clock time. */
  startedAt: number;
}

/**
 * The payload of probe `seq` to `marker`: the marker, `#`, the sequence number, padded with dots
 * to `size` bytes (so full-sized packets test the MTU of the whole path).
 */
export function probePayload(marker: string, seq: number, size = 0): string {
  const text = `${marker}#${seq}`;
  return text.length >= size ? text : text.padEnd(size, ".");
}

/** Runs of missing sequence numbers in `0..count-1`. Pure. */
export function missingRuns(seen: Uint8Array): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < seen.length; i++) {
    if (seen[i] === 1) continue;
    const start = i;
    while (i + 1 < seen.length && seen[i + 1] !== 1) i++;
    runs.push([start, i]);
  }
  return runs;
}

/** Marks `seq` of `seen` when `text` is `marker#seq` for a marker in `seen`. */
function record(seen: ReadonlyMap<string, Uint8Array>, padded: string): void {
  const text = padded.replace(/\.+$/, "");
  const hash = text.lastIndexOf("#");
  const got = seen.get(text.slice(0, hash));
  const seq = Number(text.slice(hash + 1));
  if (got !== undefined && Number.isInteger(seq) && seq >= 0 && seq < got.length) got[seq] = 1;
}

/** A TCP connection to `t` that sends probe lines (of `size` bytes) and records the echoed ones. */
function tcpProbe(
  t: ProbeTarget,
  seen: ReadonlyMap<string, Uint8Array>,
  size: number,
  localAddress: string | undefined,
): { send(i: number): void; close(): void } {
  const sock = connect({ host: t.ip, port: t.port, ...(localAddress === undefined ? {} : { localAddress }) });
  sock.setNoDelay(true);
  sock.on("error", () => undefined); // counted as lost
  let buffered = "";
  sock.setEncoding("utf8");
  sock.on("data", (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      record(seen, buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  return {
    send: (i) => void (sock.writable && sock.write(probePayload(t.marker, i, size - 1) + "\n")),
    close: () => sock.destroy(),
  };
}

/** How {@link probe} sends, besides what and how many. */
export interface ProbeOptions {
  /** Pad each message to this many bytes (default 0: no padding). */
  size?: number;
  /** The source address of every message (an agent's probe endpoint); default any. */
  localAddress?: string;
  /** Ends the run early when it fires: see {@link probe}. */
  stop?: AbortSignal;
  /** Called once the first messages are on their way. */
  sending?: () => void;
}

/**
 * Sends `count` messages carrying each target's marker and a sequence number, spread over
 * `seconds` (UDP: one datagram each; TCP: one line each on a connection per target), and reports
 * for each marker how many distinct ones were echoed back and which were not. Runs inside a pod's
 * namespace, or in an agent bound to its probe endpoint (`localAddress`). When `stop` fires the
 * run ends early: nothing more is sent, what was sent still gets its time to come back, and the
 * report covers only what was sent.
 */
export async function probe(
  targets: ProbeTarget[],
  count: number,
  seconds: number,
  o: ProbeOptions = {},
): Promise<Record<string, ProbeResult>> {
  const { size = 0, localAddress, stop } = o;
  // A measuring socket must not lose what the network delivered: a deep receive queue rides out
  // a starved process (the kernel caps it at net.core.rmem_max).
  const seen = new Map(targets.map((t) => [t.marker, new Uint8Array(count)]));
  // One socket per family the targets need (IPv6 pods of a dual-stack cluster), bound to
  // `localAddress` where it is of that family.
  const open = async (family: 4 | 6) => {
    const s = createSocket({ type: family === 4 ? "udp4" : "udp6", recvBufferSize: PROBE_SOCKET_BUFFER });
    s.on("message", (msg) => record(seen, msg.toString("utf8")));
    const local = localAddress !== undefined && isIP(localAddress) === family ? localAddress : undefined;
    await new Promise<void>((resolve) => s.bind(0, local, resolve));
    return s;
  };
  const sockets = new Map<4 | 6, Socket>();
  for (const family of new Set(targets.map((t) => (isIP(t.ip) === 6 ? 6 : 4))))
    sockets.set(family, await open(family));
  const tcp = new Map(
    targets.filter((t) => t.protocol === "tcp").map((t) => [t.marker, tcpProbe(t, seen, size, localAddress)]),
  );
  const gap = (seconds * 1000) / Math.max(1, count);
  const start = Date.now();
  let sent = 0;
  while (sent < count && stop?.aborted !== true) {
    for (const t of targets) {
      if (t.protocol === "udp")
        sockets.get(isIP(t.ip) === 6 ? 6 : 4)!.send(probePayload(t.marker, sent, size), t.port, t.ip);
      else tcp.get(t.marker)!.send(sent);
    }
    if (sent++ === 0) o.sending?.();
    // Paced against the start, so a slow wake-up does not stretch the run; `stop` cuts the wait short.
    const wait = start + sent * gap - Date.now();
    await sleep(Math.max(0, wait), undefined, stop === undefined ? {} : { signal: stop }).catch(
      () => undefined,
    );
  }
  // Echoes still in flight (a handshake in progress, a loaded machine) get two seconds to return.
  await sleep(2000);
  for (const s of sockets.values()) s.close();
  for (const c of tcp.values()) c.close();
  return Object.fromEntries(
    [...seen].map(([marker, all]) => {
      const got = all.subarray(0, sent);
      return [
        marker,
        { sent, echoed: got.reduce((a, b) => a + b, 0), lost: missingRuns(got), startedAt: start },
      ];
    }),
  );
}
