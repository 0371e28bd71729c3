/**
 * ValidatingAdmissionPolicies for the test API server: the policies and bindings stored in the
 * server, evaluated as the API server's admission plugin does, with a real CEL evaluator
 * (@marcbachmann/cel-js). Modelled: `matchConstraints.resourceRules` (apiGroups, apiVersions,
 * operations, resources, each with `*`), `matchConditions` (all must hold), `validations` (the
 * first that does not hold denies, with its `messageExpression` or `message`), bindings with
 * `validationActions` Deny, `failurePolicy` Fail (an expression that errors denies). CEL variables:
 * `request` (operation, name, namespace, userInfo, resource), `object` (a PATCH's as patched) and
 * `oldObject` (UPDATE, DELETE). Not modelled: `paramKind`, binding `matchResources`, variables,
 * audit annotations. The CEL is untyped here (the API server types `object` of built-in kinds by
 * their schema): an expression that type-checks there also evaluates here, not always conversely.
 */
import { evaluate } from "@marcbachmann/cel-js";
import type { AdmissionRequest } from "./server.js";
import type { KubeObject, ObjectStore } from "./store.js";

interface ResourceRule {
  apiGroups?: string[];
  apiVersions?: string[];
  operations?: string[];
  resources?: string[];
}
interface PolicySpec {
  failurePolicy?: "Fail" | "Ignore";
  matchConstraints?: { resourceRules?: ResourceRule[] };
  matchConditions?: { name: string; expression: string }[];
  validations?: { expression: string; message?: string; messageExpression?: string }[];
}

const has = (list: string[] | undefined, v: string): boolean =>
  (list ?? []).some((x) => x === "*" || x === v);

function matches(rule: ResourceRule, r: AdmissionRequest): boolean {
  const resource = r.subresource === "" ? r.resource : `${r.resource}/${r.subresource}`;
  return (
    has(rule.apiGroups, r.group) &&
    has(rule.apiVersions, r.version) &&
    has(rule.operations, r.operation) &&
    has(rule.resources, resource)
  );
}

/** The admission function of the server for the policies stored in `store`. */
export function validatingAdmission(
  store: ObjectStore,
): (r: AdmissionRequest) => { policy: string; message: string } | undefined {
  const all = (resource: string): KubeObject[] =>
    store.list(store.lookup("admissionregistration.k8s.io", "v1", resource)!, "", [], []).items;
  return (r) => {
    const bindings = all("validatingadmissionpolicybindings").filter((b) =>
      ((b["spec"] as { validationActions?: string[] }).validationActions ?? []).includes("Deny"),
    );
    for (const p of all("validatingadmissionpolicies")) {
      const name = p.metadata.name!;
      if (!bindings.some((b) => (b["spec"] as { policyName?: string }).policyName === name)) continue;
      const spec = p["spec"] as PolicySpec;
      if (!(spec.matchConstraints?.resourceRules ?? []).some((rule) => matches(rule, r))) continue;
      const vars = {
        request: {
          operation: r.operation,
          name: r.name,
          namespace: r.namespace,
          userInfo: r.userInfo,
          resource: { group: r.group, version: r.version, resource: r.resource },
        },
        object: r.object,
        oldObject: r.oldObject,
      };
      const holds = (expression: string): boolean | Error => {
        try {
          return evaluate(expression, vars) === true;
        } catch (e) {
          return e as Error;
        }
      };
      const failed = (v: boolean | Error): boolean =>
        v === false || (v instanceof Error && spec.failurePolicy !== "Ignore");
      if ((spec.matchConditions ?? []).some((c) => holds(c.expression) !== true)) continue;
      for (const v of spec.validations ?? []) {
        const ok = holds(v.expression);
        if (!failed(ok)) continue;
        let message = v.message ?? `failed expression: ${v.expression}`;
        if (ok instanceof Error) message = `expression '${v.expression}' resulted in error: ${ok.message}`;
        else if (v.messageExpression !== undefined) {
          try {
            message = String(evaluate(v.messageExpression, vars));
          } catch {
            // the API server falls back to the static message
          }
        }
        return { policy: name, message };
      }
    }
    return undefined;
  };
}
