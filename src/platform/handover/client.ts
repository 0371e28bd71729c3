/**
 * The successor's side of a daemon's planned restart: one request on the old daemon's control
 * socket, one JSON line back (the fds to take and the state), and the connection held open until
 * the successor has taken the fds: the old daemon exits when it closes.
 */
import { connect, type Socket } from "node:net";
import { PodcryptError } from "../../errors/index.js";

/** The old daemon's answer and how to let it go. */
export interface HandoverSession {
  /** The answer line, parsed as JSON. Holds key material: never log it. */
  readonly answer: unknown;
  /** Closes the connection: the old daemon exits (its fds already taken). */
  release(): void;
}

/** Longest answer accepted (hundreds of peers and SAs fit easily). */
const MAX_ANSWER = 16 * 1024 * 1024;

/**
 * Sends `request` (ending with a newline) to the daemon listening on `path` and resolves with its
 * first answer line. Rejects with PodcryptError EHANDOVER when nothing listens, the daemon closes
 * first, the answer is not JSON, or no answer comes within `timeoutMs`.
 */
export async function requestHandover(
  path: string,
  request: string,
  timeoutMs = 10_000,
): Promise<HandoverSession> {
  return new Promise((resolve, reject) => {
    const c: Socket = connect(path);
    let buf = "";
    let settled = false;
    const fail = (message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      c.destroy();
      reject(
        new PodcryptError("EHANDOVER", `handover from the daemon at ${path}: ${message}`, {
          cause,
          context: { path },
        }),
      );
    };
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    c.setEncoding("utf8");
    c.on("connect", () => c.write(request));
    c.on("error", (e) => fail(e.message, e));
    c.on("end", () => fail("the daemon closed the connection without answering"));
    c.on("data", (d: string) => {
      if (settled) return;
      buf += d;
      if (buf.length > MAX_ANSWER) return fail("answer too long");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      let answer: unknown;
      try {
        answer = JSON.parse(buf.slice(0, nl));
      } catch (e) {
        return fail("the answer is not JSON", e);
      }
      settled = true;
      clearTimeout(timer);
      c.removeAllListeners("end");
      resolve({ answer, release: () => c.destroy() });
    });
  });
}

/** How {@link startOrTakeOver} starts one daemon. */
export interface DaemonStart {
  /** Whether to take over from the daemon serving `path` (a planned restart). */
  readonly takeOver: boolean;
  /** The old daemon's control socket. */
  readonly path: string;
  /** The handover request, ending with a newline. */
  readonly request: string;
  /** Takes over from the old daemon's answer (its fds and state); throws EHANDOVER when it refused. */
  resume(answer: unknown): void;
  /** Opens the interface and socket afresh. */
  fresh(): void;
  /** Starts serving the control socket(s). */
  listen(): Promise<void>;
  /** Closes whatever was opened, after a failure. */
  close(): Promise<void>;
}

/**
 * Starts a daemon, with `takeOver` from the answer of the daemon serving `path`, and then listens.
 * The old daemon is let go (and exits) only once this one listens or has failed, so the socket is
 * never without a daemon that answers; on failure what was opened is closed and the error rethrown.
 */
export async function startOrTakeOver(o: DaemonStart): Promise<void> {
  const session = o.takeOver ? await requestHandover(o.path, o.request) : undefined;
  try {
    if (session !== undefined) o.resume(session.answer);
    else o.fresh();
    await o.listen();
  } catch (e) {
    await o.close();
    throw e;
  } finally {
    session?.release();
  }
}
