/** What the suites share about tshark captures. */
import type { ChildProcess } from "node:child_process";

/**
 * Resolves once `t` (a tshark started with its stderr piped) says "Capturing on"; rejects when it
 * exits first or has not said so within `timeoutMs`, with what it printed. tshark says so a moment
 * before it really captures: callers send more than they need at first.
 */
export function tsharkCapturing(t: ChildProcess, timeoutMs = 30_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let err = "";
    const done = (e?: Error): void => {
      clearTimeout(timer);
      t.stderr!.off("data", onData);
      t.off("exit", onExit);
      if (e === undefined) resolve();
      else reject(e);
    };
    const onData = (d: Buffer): void => {
      err += d.toString();
      if (err.includes("Capturing on")) done();
    };
    const onExit = (code: number | null): void => done(new Error(`tshark exited with ${code}: ${err}`));
    const timer = setTimeout(() => done(new Error(`tshark did not start: ${err}`)), timeoutMs);
    t.stderr!.on("data", onData);
    t.once("exit", onExit);
  });
}
