/** Options of `podcrypt manifests`, with their defaults. */
export interface ManifestOptions {
  /** Data plane mode written into the configuration. Default `wireguard`. */
  readonly mode: "wireguard" | "ipsec";
  /** Namespace of the controller, agents, their leases and configuration. Default `podcrypt-system`. */
  readonly namespace: string;
  /** Container image of both components. Default `podcrypt/podcrypt:<package version>`. */
  readonly image: string;
  /** Controller replicas (leader-elected; 2 gives a warm standby). Default 2. */
  readonly controllerReplicas: number;
  /**
   * Node-to-node encryption (docs/design.md#host-encryption) the controller seeds
   * ClusterEncryption with (config `cluster.hostEncryption`). Default false.
   */
  readonly hostEncryption: boolean;
}

/** Names of the two components' objects (ServiceAccount, roles, workloads). */
export const COMPONENT_NAMES = { controller: "podcrypt-controller", agent: "podcrypt-agent" } as const;

/** Name of the ConfigMap holding config.yaml. */
export const CONFIG_MAP_NAME = "podcrypt-config";

/** Health ports: the agent runs in the host network, so its port must be free on every node. */
export const HEALTH_PORTS = { controller: 9808, agent: 9809 } as const;

/** The defaults, with the image tagged by `version`. */
export function defaultManifestOptions(version: string): ManifestOptions {
  return {
    mode: "wireguard",
    namespace: "podcrypt-system",
    image: `podcrypt/podcrypt:${version}`,
    controllerReplicas: 2,
    hostEncryption: false,
  };
}
