import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Sets a sysctl of this process's network namespace (/proc/sys/net is per namespace: the
 * namespace of the process that opens the file), writing only when the value differs. `path` is
 * the key's components, e.g. `["net", "ipv4", "conf", ifname, "rp_filter"]` (an interface name
 * may contain dots, so no dotted form).
 */
export async function setSysctl(path: readonly string[], value: string): Promise<void> {
  for (const p of path)
    if (p === "" || p.includes("/") || p === "..") throw new Error(`bad sysctl path ${path.join("/")}`);
  const file = join("/proc/sys", ...path);
  if ((await readFile(file, "utf8")).trim() === value) return;
  await writeFile(file, value);
}
