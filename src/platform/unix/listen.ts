/**
 * Owner-only unix socket servers, for the data-plane daemons' control sockets (the WireGuard UAPI,
 * the ESP control socket).
 */
import { chmodSync, unlinkSync } from "node:fs";
import { connect, type Server } from "node:net";
import { PodcryptError } from "../../errors/index.js";

/** Opens a unix socket server at `path` like wireguard-go's UAPIOpen: owner-only, stale sockets replaced. */
export async function listenUnixOwnerOnly(server: Server, path: string): Promise<void> {
  const attempt = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once("error", onError);
      // umask 077 while binding so the socket is never reachable by others, not even briefly.
      const old = process.umask(0o077);
      try {
        server.listen(path, () => {
          server.removeListener("error", onError);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    });
  try {
    await attempt();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    const live = await new Promise<boolean>((resolve) => {
      const c = connect(path);
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (live)
      throw new PodcryptError("EUAPI_IN_USE", `UAPI socket ${path} is in use by another process`, {
        context: { path },
      });
    unlinkSync(path);
    await attempt();
  }
  chmodSync(path, 0o600);
}
