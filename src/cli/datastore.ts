import { Option } from "commander";
import { ValidationError } from "../errors/index.js";
import { EtcdDatastore } from "../datastore/etcd/index.js";
import type { Datastore } from "../datastore/types.js";
import { LocalDatastore } from "../datastore/local/index.js";

/** Default directory of the `local` datastore outside the local cluster. */
export const DEFAULT_LOCAL_STORE = "/var/lib/podcrypt/store";

/**
 * Daemons see changes through fs.watch at once; the rescan and lease sweep are only fallbacks, so
 * they run once a second (a dozen processes polling every 200 ms cost a core on a small machine).
 */
const LOCAL_POLLING = { pollIntervalMs: 1000, sweepIntervalMs: 1000 };

/** The `--datastore` flag (DESIGN.md section 9): `local`, `local:DIR` or `etcd://HOST:PORT[,HOST:PORT]`. */
export function datastoreOption(): Option {
  return new Option("--datastore <url>", "datastore: local, local:DIR or etcd://HOST:PORT").default("local");
}

/** Opens the datastore a `--datastore` value names; the error names the flag when it is malformed. */
export async function openDatastore(url: string): Promise<Datastore> {
  if (url === "local") return LocalDatastore.open({ dir: DEFAULT_LOCAL_STORE, ...LOCAL_POLLING });
  if (url.startsWith("local:")) {
    const dir = url.slice("local:".length);
    if (!dir.startsWith("/"))
      throw new ValidationError("--datastore", `local:DIR needs an absolute directory, got "${dir}"`);
    return LocalDatastore.open({ dir, ...LOCAL_POLLING });
  }
  if (url.startsWith("etcd://")) {
    const hosts = url.slice("etcd://".length).split(",");
    if (hosts.some((h) => !/^[\w.-]+:\d{1,5}$/.test(h)))
      throw new ValidationError("--datastore", `"${url}" is not etcd://HOST:PORT[,HOST:PORT...]`);
    return new EtcdDatastore({ hosts: hosts.map((h) => `http://${h}`) });
  }
  throw new ValidationError("--datastore", `"${url}" is not one of local, local:DIR, etcd://HOST:PORT`);
}
