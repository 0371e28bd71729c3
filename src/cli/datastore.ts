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

/** The `--datastore` flag of the long-running commands (agent, controller), its default from their config. */
export function daemonDatastoreOption(defaultDatastore: string): Option {
  return new Option(
    "--datastore <url>",
    `datastore: local, local:DIR, etcd://HOST:PORT, kubernetes or kubernetes:KUBECONFIG (config: datastore; default ${defaultDatastore})`,
  );
}

/** The `--namespace` flag of the long-running commands: where their Leases live on Kubernetes. */
export function leaseNamespaceOption(): Option {
  return new Option(
    "--namespace <ns>",
    "kubernetes datastore: namespace of podcrypt's Leases (config: namespace; default $POD_NAMESPACE, else podcrypt-system)",
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

/** How long a command waits for the datastore when it has no `--timeout`, in seconds. */
export const DEFAULT_DATASTORE_TIMEOUT_S = 10;

/** The datastore a cluster-operating command talks to, for messages. */
export function clusterDatastoreName(flag: string | undefined): string {
  return flag ?? readClusterState()?.datastore ?? "(none)";
}

/**
 * `p`, or a clear error: a PodcryptError `EDATASTORE_TIMEOUT` naming the datastore and what it did
 * not answer when `p` takes longer than `ms`, `ENOSPC` naming the path when the disk is full, and
 * the file and errno when the local datastore's files cannot be read or written. A client that
 * keeps retrying after the deadline (etcd's does) would hold the process open: an unreferenced
 * timer then ends it a moment after the error was printed.
 */
export async function answered<T>(
  datastore: string,
  what: string,
  ms: number,
  p: Promise<T>,
  /** The timeout to name in the message (the command's, when `ms` is what is left of it). */
  timeoutS = ms / 1000,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      setTimeout(() => process.exit(process.exitCode ?? 1), 200).unref();
      reject(
        new PodcryptError(
          "EDATASTORE_TIMEOUT",
          `the datastore ${datastore} did not answer within ${timeoutS} s (${what}): is it running and reachable?`,
          { context: { datastore, what } },
        ),
      );
    }, ms);
  });
  try {
    return await Promise.race([p.catch((e: unknown) => Promise.reject(storeError(datastore, e))), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A file-system error of the datastore as a PodcryptError naming the path; anything else as is. */
function storeError(datastore: string, e: unknown): unknown {
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code !== "string" || !/^E[A-Z]+$/.test(err.code) || err.code.startsWith("EDATASTORE"))
    return e;
  const where = err.path ?? datastore;
  if (err.code === "ENOSPC")
    return new PodcryptError(
      "ENOSPC",
      `${where}: the disk is full (ENOSPC): free space for the datastore ${datastore}`,
      {
        cause: e,
        context: { path: where },
      },
    );
  if (err.code === "EACCES" || err.code === "EPERM" || err.code === "EIO" || err.code === "EROFS")
    return new PodcryptError(err.code, `the datastore ${datastore}: cannot use ${where} (${err.code})`, {
      cause: e,
      context: { path: where },
    });
  return e;
}

/**
 * Runs `fn` on the datastore {@link openClusterDatastore} opens, closing it afterwards, all within
 * `timeoutS` seconds (see {@link answered}).
 */
export async function withClusterDatastore<T>(
  flag: string | undefined,
  fn: (s: Datastore) => Promise<T>,
  timeoutS = DEFAULT_DATASTORE_TIMEOUT_S,
  what = "the command's reads and writes",
): Promise<T> {
  const run = async (): Promise<T> => {
    const store = await openClusterDatastore(flag);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };
  return answered(clusterDatastoreName(flag), what, timeoutS * 1000, run());
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
