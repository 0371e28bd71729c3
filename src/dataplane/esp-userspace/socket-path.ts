/**
 * Where the userspace ESP daemons' control sockets live, apart from the control protocol itself
 * (control.ts, whose schemas load zod): processes that only need the path, such as the pods' echo
 * servers and probes under `podcrypt debug`, start without it.
 */
import { join } from "node:path";

/** Directory of the ESP daemons' control sockets (all nodes of the local cluster share it). */
export const DEFAULT_ESP_SOCKET_DIR = "/var/run/podcrypt/esp";

/** The control socket path of interface `ifname`. */
export function espSocketPath(ifname: string, dir = DEFAULT_ESP_SOCKET_DIR): string {
  return join(dir, `${ifname}.sock`);
}
