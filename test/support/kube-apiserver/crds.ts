import { customResourceDefinitions } from "../../../src/cli/manifests/crds.js";
import type { KubeObject } from "./store.js";

/**
 * The CustomResourceDefinitions `podcrypt manifests` installs: ClusterEncryption (cluster-scoped)
 * and EncryptionPolicy (namespaced) in podcrypt.io/v1, StarlingX's IPsecPolicy (starlingx.io/v1,
 * cluster-scoped), each with a status subresource. The server serves their resources; it does not
 * validate objects against their schemas (test/manifests does that).
 */
export function podcryptCrds(): KubeObject[] {
  return customResourceDefinitions() as unknown as KubeObject[];
}
