import { connect, type Socket } from "node:net";

/**
 * Notices at once when a userspace data-plane daemon (`podcrypt wireguard`, `podcrypt esp`) dies,
 * without polling and whether or not this process started it (the daemons outlive the agent, so a
 * restarted agent watches daemons an earlier one started): one idle connection to the daemon's
 * control socket (UAPI or ESP control), which the kernel closes when the process ends, however it
 * ends. Both servers keep an idle connection open until then.
 */
export class DaemonWatch {
  private readonly sockets = new Map<string, Socket>();

  /** `onDeath(ifname)` runs once per watched daemon that goes away without {@link forget}. */
  constructor(private readonly onDeath: (ifname: string) => void) {}

  /** Watches the daemon of `ifname` through its control socket `path`, unless it is watched already. */
  watch(ifname: string, path: string): void {
    if (this.sockets.has(ifname)) return;
    const s = connect(path);
    this.sockets.set(ifname, s);
    s.on("error", () => s.destroy());
    s.on("close", () => {
      if (this.sockets.get(ifname) !== s) return; // forgotten on purpose
      this.sockets.delete(ifname);
      this.onDeath(ifname);
    });
    // Watching never keeps the agent running.
    s.unref();
  }

  /** Stops watching `ifname` (its daemon is about to be stopped on purpose). */
  forget(ifname: string): void {
    const s = this.sockets.get(ifname);
    this.sockets.delete(ifname);
    s?.destroy();
  }

  /** Stops watching every daemon. */
  close(): void {
    for (const ifname of [...this.sockets.keys()]) this.forget(ifname);
  }
}
