import { z } from "zod";
import { namespaceName, objectName, portList } from "./common.js";

/** One rule: encrypt traffic to `service` in `namespace` on `ports` (`"udp/53,tcp/9153"`). */
export const policyRuleSchema = z.strictObject({
  name: objectName,
  service: objectName,
  namespace: namespaceName,
  ports: portList,
});
/** One rule of an EncryptionPolicy. */
export type PolicyRule = z.infer<typeof policyRuleSchema>;

/**
 * Selective encryption (DESIGN.md section 5): the traffic these rules select is encrypted when
 * ClusterEncryption.encryption is `selective`. Resolution to pod IPs lives in src/policy/.
 */
export const encryptionPolicySchema = z
  .strictObject({
    name: objectName,
    /** Absent for a cluster-scoped policy. */
    namespace: namespaceName.optional(),
    policies: z.array(policyRuleSchema).min(1, "must hold at least one rule"),
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
