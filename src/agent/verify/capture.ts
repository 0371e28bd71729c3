import { native, type FdWatcher } from "../../native.js";

/** Receive buffer of the capture socket: a run's frames must not be dropped by a slow reader. */
const CAPTURE_RCVBUF = 16 << 20;
/** Bytes kept of each frame: markers are within the first datagram of any probe. */
const SNAPLEN = 65_536;

/** Where and when the capture saw one marker in plaintext. */
export interface SeenMarker {
  marker: string;
  first: number;
  last: number;
  /** The last time per IPv4 source address. */
  lastBySource: Record<string, number>;
}

/** The IPv4 source address of an Ethernet frame, if it carries IPv4. */
function ipv4Source(frame: Buffer): string | undefined {
  if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) return undefined;
  return [...frame.subarray(26, 30)].join(".");
}

/**
 * The markers starting with `prefix` in `frame` (each up to its `#` sequence separator or the
 * first byte that cannot be part of one). Pure.
 */
export function markersIn(frame: Buffer, prefix: string): string[] {
  const out: string[] = [];
  const p = Buffer.from(prefix);
  for (let at = frame.indexOf(p); at >= 0; at = frame.indexOf(p, at + p.length)) {
    let end = at + p.length;
    while (end < frame.length && end - at < 256) {
      const c = frame[end]!;
      // Markers are [A-Za-z0-9.:-]: anything else ends one.
      if (!(
        c === 0x2d ||
        c === 0x2e ||
        c === 0x3a ||
        (c >= 0x30 && c <= 0x39) ||
        (c >= 0x41 && c <= 0x5a) ||
        (c >= 0x61 && c <= 0x7a)
      ))
        break;
      end++;
    }
    out.push(frame.toString("latin1", at, end));
  }
  return out;
}

/**
 * A bounded capture of one interface for one verify run: an AF_PACKET socket (native
 * capture.cc) read whenever it is readable, keeping only counts and where the run's markers were
 * seen. `close` ends it; nothing is captured outside a run.
 */
export class UnderlayCapture {
  packets = 0;
  bytes = 0;
  private readonly seen = new Map<string, SeenMarker>();
  private readonly buf = Buffer.allocUnsafe(SNAPLEN);
  private readonly fd: number;
  private readonly watcher: FdWatcher;
  private closed = false;

  constructor(
    readonly ifname: string,
    private readonly prefix: string,
  ) {
    const n = native();
    this.fd = n.packetCaptureOpen(ifname, CAPTURE_RCVBUF);
    this.watcher = new n.FdWatcher(this.fd, (status) => {
      if (status < 0) this.watcher.stop();
      else this.drain();
    });
    this.watcher.start();
  }

  private drain(): void {
    const n = native();
    for (;;) {
      const len = n.packetCaptureRead(this.fd, this.buf);
      if (len <= 0) return;
      this.packets++;
      this.bytes += len;
      const frame = this.buf.subarray(0, len);
      const markers = markersIn(frame, this.prefix);
      if (markers.length === 0) continue;
      const now = Date.now();
      const src = ipv4Source(frame);
      for (const m of markers) {
        const s = this.seen.get(m) ?? { marker: m, first: now, last: now, lastBySource: {} };
        s.last = now;
        if (src !== undefined) s.lastBySource[src] = now;
        this.seen.set(m, s);
      }
    }
  }

  /** The markers seen so far. */
  markers(): SeenMarker[] {
    return [...this.seen.values()];
  }

  /** Reads what is still queued and ends the capture. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.drain();
    this.closed = true;
    this.watcher.close();
    native().closeFd(this.fd);
  }
}
