import type { KubeObject } from "./store.js";

function crd(
  group: string,
  kind: string,
  plural: string,
  scope: "Cluster" | "Namespaced",
  status: boolean,
): KubeObject {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope,
      names: { plural, singular: kind.toLowerCase(), kind, listKind: `${kind}List` },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
          ...(status ? { subresources: { status: {} } } : {}),
        },
      ],
    },
  };
}

/**
 * Minimal CRDs for the custom resources podcrypt uses (schemas left open): ClusterEncryption
 * (cluster-scoped) and EncryptionPolicy (namespaced) in podcrypt.io/v1 with status subresources,
 * and StarlingX's IPsecPolicy (namespaced, starlingx.io/v1). Tests that need the real manifests
 * should load them from `podcrypt manifests` instead.
 */
export function podcryptCrds(): KubeObject[] {
  return [
    crd("podcrypt.io", "ClusterEncryption", "clusterencryptions", "Cluster", true),
    crd("podcrypt.io", "EncryptionPolicy", "encryptionpolicies", "Namespaced", true),
    crd("starlingx.io", "IPsecPolicy", "ipsecpolicies", "Namespaced", false),
  ];
}
