import { z } from "zod";
import { namespaceName, objectName, portList, timestamp } from "./common.js";

/** One rule: encrypt traffic to `service` in `namespace` on `ports` (`"udp/53,tcp/9153"`). */
export const policyRuleSchema = z.strictObject({
  name: objectName,
  service: objectName,
  namespace: namespaceName,
  ports: portList,
});
/** One rule of an EncryptionPolicy. */
export type PolicyRule = z.infer<typeof policyRuleSchema>;

/** The condition types the controller writes on policies. */
export const POLICY_CONDITION_TYPES = ["Accepted", "Programmed"] as const;

/**
 * A Kubernetes-style condition (metav1.Condition) of a policy:
 * - `Accepted`: True when the stored object validates; False with the validation error (naming
 *   the field) otherwise.
 * - `Programmed`: True when every live node installed the selector set the policies resolve to
 *   ("programmed on N of M nodes"), False while some have not (or when the policy cannot be).
 */
export const policyConditionSchema = z.strictObject({
  type: z.enum(POLICY_CONDITION_TYPES),
  status: z.enum(["True", "False", "Unknown"]),
  /** CamelCase reason (`Valid`, `Invalid`, `Programmed`, `Pending`, `NotSelective` ...). */
  reason: z
    .string()
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/, "must be a CamelCase reason")
    .max(1024),
  message: z.string().max(32768),
  /** When `status` last changed. */
  lastTransitionTime: timestamp,
  /** The object generation the condition was computed for (Kubernetes only). */
  observedGeneration: z.number().int().min(0).optional(),
});
/** A condition of a policy. */
export type PolicyCondition = z.infer<typeof policyConditionSchema>;

/**
 * What the controller reports about a policy (docs/design.md#selective-encryption), as the CRDs' `.status`.
 * `observedGeneration` only where the store keeps generations (Kubernetes); elsewhere an update of
 * the policy replaces the object, status included, so a status present always describes the
 * policy as stored.
 */
export const policyStatusSchema = z.strictObject({
  conditions: z.array(policyConditionSchema).max(8),
  /** Live nodes whose data plane has installed the selector set of the policies (N of "N of M"). */
  programmedNodes: z.number().int().min(0),
  /** Live nodes (M). */
  nodes: z.number().int().min(0),
  /** Pod IPs the policy's rules select right now. */
  selectedEndpoints: z.number().int().min(0),
  observedGeneration: z.number().int().min(0).optional(),
});
/** What the controller reports about a policy. */
export type PolicyStatus = z.infer<typeof policyStatusSchema>;

/**
 * Selective encryption (docs/design.md#selective-encryption): the traffic these rules select is encrypted when
 * ClusterEncryption.encryption is `selective`. Resolution to pod IPs lives in src/policy/.
 */
export const encryptionPolicySchema = z
  .strictObject({
    name: objectName,
    /** Absent for a cluster-scoped policy. */
    namespace: namespaceName.optional(),
    policies: z.array(policyRuleSchema).min(1, "must hold at least one rule"),
    /**
     * Written by the controller only (Datastore.writePolicyStatus); an update of the policy keeps
     * it in Kubernetes (status subresource) and drops it elsewhere.
     */
    status: policyStatusSchema.optional(),
  })
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.policies.forEach((r, i) => {
      if (seen.has(r.name))
        ctx.addIssue({
          code: "custom",
          path: ["policies", i, "name"],
          message: `duplicate rule name "${r.name}"`,
        });
      seen.add(r.name);
    });
  });

/** A selective-encryption policy. */
export type EncryptionPolicy = z.infer<typeof encryptionPolicySchema>;

/** One condition of `status`, if set. */
export function policyCondition(
  status: PolicyStatus | undefined,
  type: PolicyCondition["type"],
): PolicyCondition | undefined {
  return status?.conditions.find((c) => c.type === type);
}
