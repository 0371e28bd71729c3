import { Option } from "commander";
import type { Datastore } from "../datastore/types.js";
import { LocalDatastore } from "../datastore/local/index.js";
import { etcdConnection, isEtcdUrl, parseEtcdUrl } from "../datastore/etcd/url.js";
import { PodcryptError, ValidationError } from "../errors/index.js";
import { readClusterState } from "../localcluster/state.js";

/** Default directory of the `local` datastore outside the local cluster. */
export const DEFAULT_LOCAL_STORE = "/var/lib/podcrypt/store";

/**
 * Daemons see changes through fs.watch at once; the rescan and lease sweep are only fallbacks, so
 * they run once a second (a dozen processes polling every 200 ms cost a core on a small machine).
 */
const LOCAL_POLLING = { pollIntervalMs: 1000, sweepIntervalMs: 1000 };

/**
 * The `--datastore` flag of commands that act on a running cluster (rotate, enable, disable,
 * policy): no default, since without it they act on the local cluster.
 */
export function clusterDatastoreOption(): Option {
  return new Option(
    "--datastore <url>",
    "the cluster's datastore: local:DIR, etcds://HOST:PORT?ca=FILE&cert=FILE&key=FILE&user=NAME&password-file=FILE, etcd://HOST:PORT (plaintext: loopback only unless ?allow-insecure=true), kubernetes or kubernetes:KUBECONFIG (default: the running local cluster's)",
  );
}

/** Opens the datastore of a cluster-operating command: `--datastore` when given, else the local cluster's. */
export async function openClusterDatastore(flag: string | undefined): Promise<Datastore> {
  if (flag !== undefined) return openDatastore(flag);
  const state = readClusterState();
  if (state === undefined)
    throw new PodcryptError(
      "ENOCLUSTER",
      "no local cluster is running: start one with `podcrypt cluster up`, or name a cluster's datastore with --datastore",
    );
  return openDatastore(state.datastore);
}

/** Runs `fn` on the datastore {@link openClusterDatastore} opens, closing it afterwards. */
export async function withClusterDatastore<T>(
  flag: string | undefined,
  fn: (s: Datastore) => Promise<T>,
): Promise<T> {
  const store = await openClusterDatastore(flag);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Options of {@link openDatastore} that only some backends use. */
export interface OpenDatastoreOptions {
  /** kubernetes: namespace of the datastore's Leases (default podcrypt-system). */
  namespace?: string | undefined;
  /** kubernetes: holder identity written into the Leases it grants (default the host name). */
  identity?: string | undefined;
  /** kubernetes: whether this client expires Leases (default true; agents may not write Leases). */
  expireLeases?: boolean;
}

/** Opens the datastore a `--datastore` value names; the error names the flag when it is malformed. */
export async function openDatastore(url: string, options: OpenDatastoreOptions = {}): Promise<Datastore> {
  if (url === "local") return LocalDatastore.open({ dir: DEFAULT_LOCAL_STORE, ...LOCAL_POLLING });
  if (url.startsWith("local:")) {
    const dir = url.slice("local:".length);
    if (!dir.startsWith("/"))
      throw new ValidationError("--datastore", `local:DIR needs an absolute directory, got "${dir}"`);
    return LocalDatastore.open({ dir, ...LOCAL_POLLING });
  }
  if (isEtcdUrl(url)) {
    const { hosts, ...client } = etcdConnection(parseEtcdUrl(url));
    // Loaded on use: the client libraries cost a second or more of start-up each.
    const { EtcdDatastore } = await import("../datastore/etcd/index.js");
    return new EtcdDatastore({ hosts, client });
  }
  if (url === "kubernetes" || url.startsWith("kubernetes:")) {
    const { KubernetesDatastore, kubeConfigOf } = await import("../datastore/kubernetes/index.js");
    return KubernetesDatastore.connect({
      kubeConfig: kubeConfigOf(url),
      ...(options.namespace === undefined || options.namespace === ""
        ? {}
        : { namespace: options.namespace }),
      ...(options.identity === undefined ? {} : { identity: options.identity }),
      ...(options.expireLeases === undefined ? {} : { expireLeases: options.expireLeases }),
    });
  }
  throw new ValidationError(
    "--datastore",
    `"${url}" is not one of local, local:DIR, etcds://HOST:PORT[?...], etcd://HOST:PORT, kubernetes, kubernetes:KUBECONFIG`,
  );
}
