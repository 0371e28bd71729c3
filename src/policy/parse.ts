import { parseAllDocuments } from "yaml";
import { ValidationError } from "../errors/index.js";
import { formatPortList, parsePortList } from "./ports.js";
import { POLICY_KINDS, type Policy, type PolicyKind, type PolicyRule, type StoredPolicy } from "./types.js";

/** DNS-1123 subdomain: object and rule names (at most 253 characters). */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** DNS-1123 label: namespaces (at most 63 characters). */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** DNS-1035 label: Service names (at most 63 characters, starting with a letter). */
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/** Field names of one rule in each format, in the order errors are reported. */
const RULE_FIELDS: Readonly<
  Record<PolicyKind, { name: string; service: string; namespace: string; ports: string }>
> = {
  EncryptionPolicy: { name: "name", service: "service", namespace: "namespace", ports: "ports" },
  IPsecPolicy: { name: "name", service: "servicename", namespace: "servicens", ports: "serviceports" },
};

/** Where a policy came from, for error messages: `IPsecPolicy "x", document 2 of FILE`. */
export interface PolicySource {
  /** 1-based document number in a multi-document stream. */
  readonly document?: number;
  /** A file name, `-` for stdin. */
  readonly file?: string;
}

/** A policy and where it was read. */
export interface ParsedPolicy {
  readonly policy: Policy;
  readonly source: PolicySource;
}

/** Every policy that validated and every error found; a caller applies nothing while `errors` is non-empty. */
export interface ParseResult {
  readonly policies: readonly ParsedPolicy[];
  readonly errors: readonly ValidationError[];
}

/** The identity of a policy object: `IPsecPolicy/NAME` or `EncryptionPolicy/NAMESPACE/NAME`. */
export function policyKey(p: Pick<Policy, "kind" | "name" | "namespace">): string {
  return p.namespace === undefined ? `${p.kind}/${p.name}` : `${p.kind}/${p.namespace}/${p.name}`;
}

/** The identity of one rule: `Kind/[namespace/]name#rule`. */
export function ruleKey(p: Pick<Policy, "kind" | "name" | "namespace">, rule: string): string {
  return `${policyKey(p)}#${rule}`;
}

function describe(kind: string | undefined, name: string | undefined, source: PolicySource): string {
  const parts: string[] = [];
  if (kind !== undefined) parts.push(name === undefined ? kind : `${kind} "${name}"`);
  if (source.document !== undefined) parts.push(`document ${source.document}`);
  if (source.file !== undefined) parts.push(source.file === "-" ? "stdin" : source.file);
  return parts.length === 0 ? "" : ` (${parts.join(", ")})`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "a map" : `a ${typeof v}`;
}

/** Collects errors for one document, each naming its field and the document. */
class Issues {
  readonly errors: ValidationError[] = [];
  kind: string | undefined;
  name: string | undefined;
  constructor(private readonly source: PolicySource) {}

  add(field: string, message: string, cause?: unknown): void {
    this.errors.push(
      new ValidationError(field, message + describe(this.kind, this.name, this.source), {
        cause,
        context: { ...this.source, kind: this.kind, name: this.name },
      }),
    );
  }

  addError(e: unknown): void {
    if (e instanceof ValidationError) this.add(e.field, e.message.slice(e.field.length + 2), e);
    else throw e;
  }

  name_(field: string, v: unknown, pattern: RegExp, max: number, what: string): string | undefined {
    if (v === undefined || v === null || v === "") {
      this.add(field, "is missing");
      return undefined;
    }
    if (typeof v !== "string") {
      this.add(field, `must be a string, got ${typeName(v)}`);
      return undefined;
    }
    if (v.length > max) this.add(field, `"${v}" is longer than ${max} characters`);
    else if (!pattern.test(v)) this.add(field, `"${v}" is not a valid ${what}`);
    else return v;
    return undefined;
  }
}

const NAME_WHAT = "name (a DNS-1123 subdomain: lower-case letters, digits, '-' and '.')";
const NAMESPACE_WHAT = "namespace (a DNS-1123 label: lower-case letters, digits and '-')";
const SERVICE_WHAT =
  "service name (a DNS-1035 label: lower-case letters, digits and '-', starting with a letter)";

function parseRule(kind: PolicyKind, raw: unknown, path: string, issues: Issues): PolicyRule | undefined {
  const f = RULE_FIELDS[kind];
  if (!isRecord(raw)) {
    issues.add(path, `must be a map with ${Object.values(f).join(", ")}, got ${typeName(raw)}`);
    return undefined;
  }
  const before = issues.errors.length;
  for (const k of Object.keys(raw))
    if (!Object.values(f).includes(k))
      issues.add(`${path}.${k}`, `unknown field (a ${kind} rule has ${Object.values(f).join(", ")})`);
  const name = issues.name_(`${path}.${f.name}`, raw[f.name], DNS1123_SUBDOMAIN, 253, NAME_WHAT);
  const service = issues.name_(`${path}.${f.service}`, raw[f.service], DNS1035_LABEL, 63, SERVICE_WHAT);
  const namespace = issues.name_(
    `${path}.${f.namespace}`,
    raw[f.namespace],
    DNS1123_LABEL,
    63,
    NAMESPACE_WHAT,
  );
  const portsField = `${path}.${f.ports}`;
  const rawPorts = raw[f.ports];
  let ports: PolicyRule["ports"] | undefined;
  if (rawPorts === undefined || rawPorts === null || rawPorts === "") issues.add(portsField, "is missing");
  else if (typeof rawPorts === "number")
    issues.add(portsField, `${rawPorts} has no protocol: write tcp/${rawPorts} or udp/${rawPorts}`);
  else if (typeof rawPorts === "string" || (kind === "EncryptionPolicy" && Array.isArray(rawPorts))) {
    if (Array.isArray(rawPorts) && !rawPorts.every((p) => typeof p === "string"))
      issues.add(portsField, "must be a list of proto/port strings");
    else
      try {
        ports = parsePortList(rawPorts as string | string[], portsField);
      } catch (e) {
        issues.addError(e);
      }
  } else
    issues.add(
      portsField,
      kind === "IPsecPolicy"
        ? `must be a string such as "udp/53,tcp/9153", got ${typeName(rawPorts)}`
        : `must be a string such as "udp/53,tcp/9153" or a list of proto/port, got ${typeName(rawPorts)}`,
    );
  if (issues.errors.length > before || !name || !service || !namespace || !ports) return undefined;
  return { name, service, namespace, ports };
}

/**
 * Validates one decoded object as an `EncryptionPolicy` (podcrypt.io/v1) or StarlingX `IPsecPolicy`
 * (starlingx.io/v1) and normalizes it. Returns the policy, or undefined with `errors` filled: every
 * problem found, each a ValidationError whose `field` is the path in the object
 * (`spec.policies[1].serviceports`).
 */
export function parsePolicyObject(
  obj: unknown,
  source: PolicySource = {},
  errors: ValidationError[] = [],
): Policy | undefined {
  const issues = new Issues(source);
  const done = (p: Policy | undefined): Policy | undefined => {
    errors.push(...issues.errors);
    return issues.errors.length === 0 ? p : undefined;
  };
  if (!isRecord(obj)) {
    issues.add("", `a policy document must be a map, got ${typeName(obj)}`);
    return done(undefined);
  }
  const kindRaw = obj["kind"];
  if (typeof kindRaw !== "string" || !(kindRaw in POLICY_KINDS)) {
    issues.add(
      "kind",
      kindRaw === undefined
        ? "is missing (expected EncryptionPolicy or IPsecPolicy)"
        : `unsupported kind ${JSON.stringify(kindRaw)} (expected EncryptionPolicy or IPsecPolicy)`,
    );
    return done(undefined);
  }
  const kind = kindRaw as PolicyKind;
  issues.kind = kind;
  const meta = obj["metadata"];
  if (isRecord(meta) && typeof meta["name"] === "string") issues.name = meta["name"];
  if (obj["apiVersion"] !== POLICY_KINDS[kind])
    issues.add(
      "apiVersion",
      obj["apiVersion"] === undefined
        ? `is missing (${kind} is ${POLICY_KINDS[kind]})`
        : `${JSON.stringify(obj["apiVersion"])} is not ${POLICY_KINDS[kind]}`,
    );
  for (const k of Object.keys(obj))
    if (!["apiVersion", "kind", "metadata", "spec", "status"].includes(k)) issues.add(k, "unknown field");
  let name: string | undefined;
  let namespace: string | undefined;
  if (!isRecord(meta)) issues.add("metadata", meta === undefined ? "is missing" : "must be a map");
  else {
    name = issues.name_("metadata.name", meta["name"], DNS1123_SUBDOMAIN, 253, NAME_WHAT);
    // IPsecPolicy is cluster-scoped: a namespace in its metadata is ignored, as kubectl does.
    if (kind === "EncryptionPolicy")
      namespace =
        meta["namespace"] === undefined
          ? "default"
          : issues.name_("metadata.namespace", meta["namespace"], DNS1123_LABEL, 63, NAMESPACE_WHAT);
  }
  const spec = obj["spec"];
  const rules: PolicyRule[] = [];
  if (!isRecord(spec)) issues.add("spec", spec === undefined ? "is missing" : "must be a map");
  else {
    for (const k of Object.keys(spec))
      if (k !== "policies") issues.add(`spec.${k}`, "unknown field (spec has only policies)");
    const list = spec["policies"];
    if (!Array.isArray(list))
      issues.add(
        "spec.policies",
        list === undefined ? "is missing" : `must be a list, got ${typeName(list)}`,
      );
    else if (list.length === 0) issues.add("spec.policies", "must hold at least one rule");
    else {
      const firstIndex = new Map<string, number>();
      list.forEach((raw, i) => {
        const rule = parseRule(kind, raw, `spec.policies[${i}]`, issues);
        const ruleName = isRecord(raw) && typeof raw["name"] === "string" ? raw["name"] : undefined;
        if (ruleName !== undefined) {
          const first = firstIndex.get(ruleName);
          if (first !== undefined)
            issues.add(
              `spec.policies[${i}].name`,
              `duplicate rule name "${ruleName}" (also spec.policies[${first}])`,
            );
          else firstIndex.set(ruleName, i);
        }
        if (rule) rules.push(rule);
      });
    }
  }
  return done(name === undefined ? undefined : { kind, name, namespace, rules });
}

/**
 * Checks a set of policies together: no policy twice, and no rule name used by two policies (rule
 * names name data-plane objects cluster-wide). Errors name the field of the later occurrence.
 */
export function checkPolicySet(policies: readonly ParsedPolicy[]): ValidationError[] {
  const errors: ValidationError[] = [];
  const byKey = new Map<string, PolicySource>();
  const byRule = new Map<string, { policy: Policy; index: number }>();
  for (const { policy, source } of policies) {
    const key = policyKey(policy);
    const where = describe(policy.kind, policy.name, source);
    const earlier = byKey.get(key);
    if (earlier !== undefined) {
      errors.push(
        new ValidationError(
          "metadata.name",
          `duplicate policy ${key}${where}, already given${describe(undefined, undefined, earlier)}`,
          {
            context: { ...source, kind: policy.kind, name: policy.name },
          },
        ),
      );
      continue;
    }
    byKey.set(key, source);
    policy.rules.forEach((rule, index) => {
      const other = byRule.get(rule.name);
      if (other !== undefined)
        errors.push(
          new ValidationError(
            `spec.policies[${index}].name`,
            `rule name "${rule.name}" is already used by ${policyKey(other.policy)} spec.policies[${other.index}]${where}`,
            { context: { ...source, kind: policy.kind, name: policy.name } },
          ),
        );
      else byRule.set(rule.name, { policy, index });
    });
  }
  return errors;
}

/**
 * Parses a YAML or JSON stream of one or more policy documents (`---` separated; a `kind: List`
 * with `items` is flattened, as `kubectl get -o yaml` prints). Empty documents are skipped. Returns
 * every valid policy and every error (syntax, per-field, and duplicates across the stream).
 */
export function parsePolicyText(text: string, file?: string): ParseResult {
  const errors: ValidationError[] = [];
  const policies: ParsedPolicy[] = [];
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const source: PolicySource = file === undefined ? { document: i + 1 } : { document: i + 1, file };
    const syntax = doc.errors[0];
    if (syntax !== undefined) {
      errors.push(
        new ValidationError("", `${syntax.message.split("\n")[0]}${describe(undefined, undefined, source)}`, {
          cause: syntax,
          context: { ...source },
        }),
      );
      return;
    }
    let value: unknown;
    try {
      // Aliases resolve here: an alias to an anchor not (yet) defined, or more aliases than the
      // parser's limit (maxAliasCount, its guard against exponential expansion), throw a
      // ReferenceError, which is bad input like any syntax error.
      value = doc.toJS();
    } catch (cause) {
      errors.push(
        new ValidationError("", `${(cause as Error).message}${describe(undefined, undefined, source)}`, {
          cause,
          context: { ...source },
        }),
      );
      return;
    }
    if (value === null || value === undefined) return;
    const items =
      isRecord(value) && value["kind"] === "List" && Array.isArray(value["items"]) ? value["items"] : [value];
    for (const item of items) {
      const p = parsePolicyObject(item, source, errors);
      if (p) policies.push({ policy: p, source });
    }
  });
  if (errors.length === 0 && policies.length === 0)
    errors.push(
      new ValidationError("", `no policy document found${file === undefined ? "" : ` in ${file}`}`),
    );
  errors.push(...checkPolicySet(policies));
  return { policies: errors.length === 0 ? policies : [], errors };
}

/**
 * Like parsePolicyText, but throws the first ValidationError (the others ride along in its
 * context as `errors`, messages only).
 */
export function parsePoliciesOrThrow(text: string, file?: string): Policy[] {
  const r = parsePolicyText(text, file);
  const first = r.errors[0];
  if (first !== undefined) {
    if (r.errors.length === 1) throw first;
    throw new ValidationError(
      first.field,
      first.message.slice(first.field === "" ? 0 : first.field.length + 2),
      {
        cause: first,
        context: { ...first.context, errors: r.errors.map((e) => e.message) },
      },
    );
  }
  return r.policies.map((p) => p.policy);
}

/** The datastore form of a policy (src/model's EncryptionPolicy shape). */
export function toStored(p: Policy): StoredPolicy {
  return {
    name: p.name,
    ...(p.namespace === undefined ? {} : { namespace: p.namespace }),
    policies: p.rules.map((r) => ({
      name: r.name,
      service: r.service,
      namespace: r.namespace,
      ports: formatPortList(r.ports),
    })),
  };
}

/**
 * Back from the datastore form. Stored policies without a namespace are cluster-scoped, as
 * IPsecPolicy; with one, EncryptionPolicy. Ports are validated again: a hand-edited store gets the
 * same errors as a file.
 */
export function fromStored(s: StoredPolicy): Policy {
  const kind: PolicyKind = s.namespace === undefined ? "IPsecPolicy" : "EncryptionPolicy";
  return {
    kind,
    name: s.name,
    namespace: s.namespace,
    rules: s.policies.map((r, i) => ({
      name: r.name,
      service: r.service,
      namespace: r.namespace,
      ports: parsePortList(r.ports, `policies[${i}].ports`),
    })),
  };
}

/** The normalized policy as a Kubernetes object of its own kind, as `--dry-run` prints it. */
export function toManifest(p: Policy): Record<string, unknown> {
  const f = RULE_FIELDS[p.kind];
  return {
    apiVersion: POLICY_KINDS[p.kind],
    kind: p.kind,
    metadata: p.namespace === undefined ? { name: p.name } : { name: p.name, namespace: p.namespace },
    spec: {
      policies: p.rules.map((r) => ({
        [f.name]: r.name,
        [f.service]: r.service,
        [f.namespace]: r.namespace,
        [f.ports]: formatPortList(r.ports),
      })),
    },
  };
}
