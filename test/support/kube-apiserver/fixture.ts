/**
 * The set-up the Kubernetes tests share: podcrypt installed on a fresh API test server
 * ({@link installPodcrypt}: CRDs, generated RBAC and admission policies), datastores and raw API
 * calls as one of the installed tokens, kubeconfig files for the CLI, and one `close()` for all of
 * it. Not in ./index.ts: this module loads the Kubernetes client, which the server does not need.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { KubernetesDatastore } from "../../../src/datastore/kubernetes/index.js";
import { installPodcrypt, kubeconfigYaml, type InstallOptions } from "./rbac.js";
import type { KubeApiServer } from "./server.js";

/** The namespace the generated manifests install podcrypt in. */
export const PODCRYPT_NAMESPACE = "podcrypt-system";

/** What a raw API call answered: its HTTP status and JSON body. */
export interface ApiAnswer {
  code: number;
  body: { message?: string } & Record<string, unknown>;
}

/** podcrypt on an API test server, with the datastores and calls a test makes through it. */
export class PodcryptApi {
  private readonly stores: KubernetesDatastore[] = [];

  private constructor(
    /** The server: its object store, its request log, its URL. */
    readonly server: KubeApiServer,
  ) {}

  /** Starts a server knowing `o`'s tokens and installs podcrypt on it. Close it with `close()`. */
  static async start(o: InstallOptions): Promise<PodcryptApi> {
    return new PodcryptApi(await installPodcrypt(o));
  }

  /** The server's base URL (plain HTTP on 127.0.0.1). */
  get url(): string {
    return this.server.url;
  }

  /**
   * A Kubernetes datastore on the server as `token`, in podcrypt's namespace, with the
   * datastore's own defaults where `options` says nothing (agents pass `expireLeases: false`);
   * `close()` closes it.
   */
  async connect(
    token: string,
    options: { leaseCheckMs?: number; expireLeases?: boolean } = {},
  ): Promise<KubernetesDatastore> {
    const kc = new KubeConfig();
    kc.loadFromOptions(this.server.kubeconfig(token));
    const store = await KubernetesDatastore.connect({
      kubeConfig: kc,
      namespace: PODCRYPT_NAMESPACE,
      ...options,
    });
    this.stores.push(store);
    return store;
  }

  /**
   * A raw request as `token` (what kubectl would send), `body` as JSON; the content type defaults
   * to a merge patch for PATCH and to JSON otherwise. Answers whatever the server says, errors
   * included: tests assert on denials.
   */
  async call(
    token: string,
    method: string,
    path: string,
    body?: unknown,
    contentType = method === "PATCH" ? "application/merge-patch+json" : "application/json",
  ): Promise<ApiAnswer> {
    const res = await fetch(`${this.server.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": contentType },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { code: res.status, body: (await res.json()) as ApiAnswer["body"] };
  }

  /**
   * Writes `DIR/USER.kubeconfig` (mode 0600) for `user` with `token`, as a service account's
   * kubeconfig would be, and returns its path.
   */
  writeKubeconfig(dir: string, user: string, token: string): string {
    const file = join(dir, `${user}.kubeconfig`);
    writeFileSync(file, kubeconfigYaml(this.server.url, user, token), { mode: 0o600 });
    return file;
  }

  /** Closes every datastore `connect` made (failures ignored: they may be closed already), then the server. */
  async close(): Promise<void> {
    await Promise.allSettled(this.stores.map((s) => s.close()));
    await this.server.close();
  }
}
