/**
 * Native readiness callbacks (FdWatcher, native/poll.cc) run straight from the libuv loop: an
 * exception escaping one is reported with napi_fatal_exception, which ends the process. A data
 * plane daemon must not die for one bad packet or one bug on its packet path, so every watcher
 * callback of src/platform goes through {@link guardPollCallback}: the exception is handed to
 * `onError` (which logs it and counts it) and the batch in flight is dropped.
 */

import type { Logger } from "../../log/logger.js";

/** What a packet path does with an exception thrown by its readiness callback. */
export type PollErrorHandler = (error: unknown) => void;

/**
 * Wraps `callback` so that nothing it throws leaves it: the exception goes to `onError`; should
 * `onError` throw too, that second exception is swallowed (there is nothing left to report with,
 * and a fatal exception is what this exists to prevent).
 */
export function guardPollCallback(
  callback: (status: number) => void,
  onError: PollErrorHandler,
): (status: number) => void {
  return (status) => {
    try {
      callback(status);
    } catch (error) {
      try {
        onError(error);
      } catch {
        // onError failed as well (a logger that throws): keep the daemon alive regardless.
      }
    }
  };
}

/**
 * Logs the `count`-th exception caught in the packet path `where`: the first ten and then one in
 * every thousand (a bug hit by every packet must not flood the log); the caller counts them all.
 */
export function logPollError(logger: Logger, where: string, count: number, error: unknown): void {
  if (count > 10 && count % 1000 !== 0) return;
  const e = error instanceof Error ? error : new Error(String(error));
  logger.error(
    { err: { name: e.name, message: e.message, stack: e.stack }, count, where },
    "exception in a packet path callback: batch dropped",
  );
}
