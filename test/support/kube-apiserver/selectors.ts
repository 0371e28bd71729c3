import { badRequest } from "./status.js";

/** One requirement of a label selector, as `k8s.io/apimachinery/pkg/labels` parses it. */
export type LabelRequirement =
  | { key: string; op: "=" | "!="; value: string }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "exists" | "!exists" };

/** A parsed label selector: every requirement must hold (an empty one matches everything). */
export type LabelSelector = LabelRequirement[];

/** Split on commas that are not inside parentheses (`a in (x,y),b` has two terms). */
function splitTerms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== "");
}

const KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function checkKey(key: string, selector: string): string {
  if (!KEY.test(key))
    throw badRequest(`unable to parse requirement: invalid label key "${key}" in selector "${selector}"`);
  return key;
}

function checkValue(value: string, selector: string): string {
  if (!VALUE.test(value) || value.length > 63) {
    throw badRequest(`unable to parse requirement: invalid label value "${value}" in selector "${selector}"`);
  }
  return value;
}

/**
 * Parse a label selector string: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
 * comma-separated. Throws a 400 Status on syntax it does not accept.
 */
export function parseLabelSelector(s: string): LabelSelector {
  const reqs: LabelSelector = [];
  for (const term of splitTerms(s)) {
    let m: RegExpMatchArray | null;
    if ((m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(term)) !== null) {
      const values = m[3]!.split(",").map((v) => checkValue(v.trim(), s));
      reqs.push({ key: checkKey(m[1]!, s), op: m[2] as "in" | "notin", values });
    } else if ((m = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term)) !== null) {
      reqs.push({ key: checkKey(m[1]!, s), op: m[2] === "!=" ? "!=" : "=", value: checkValue(m[3]!, s) });
    } else if ((m = /^!\s*(\S+)$/.exec(term)) !== null) {
      reqs.push({ key: checkKey(m[1]!, s), op: "!exists" });
    } else if (/^\S+$/.test(term)) {
      reqs.push({ key: checkKey(term, s), op: "exists" });
    } else {
      throw badRequest(`unable to parse requirement: "${term}" in selector "${s}"`);
    }
  }
  return reqs;
}

/** Whether `labels` satisfy every requirement (Kubernetes semantics: `!=` and `notin` match absent keys). */
export function matchLabels(
  sel: LabelSelector,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  const l = labels ?? {};
  return sel.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case "=":
        return has && v === r.value;
      case "!=":
        return !has || v !== r.value;
      case "in":
        return has && r.values.includes(v!);
      case "notin":
        return !has || !r.values.includes(v!);
      case "exists":
        return has;
      case "!exists":
        return !has;
    }
  });
}

/** One requirement of a field selector. */
export interface FieldRequirement {
  field: string;
  op: "=" | "!=";
  value: string;
}

/** A parsed field selector. */
export type FieldSelector = FieldRequirement[];

/** The fields every resource supports in field selectors. */
export const COMMON_FIELDS = ["metadata.name", "metadata.namespace"] as const;

/**
 * Parse a field selector (`metadata.name=x,metadata.namespace!=y`). `supported` lists the field
 * paths the resource accepts; others are a 400, as the API server answers.
 */
export function parseFieldSelector(s: string, supported: readonly string[]): FieldSelector {
  const reqs: FieldSelector = [];
  for (const term of splitTerms(s)) {
    const m = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (m === null) throw badRequest(`invalid selector: '${s}'; can't understand '${term}'`);
    const field = m[1]!.trim();
    if (!supported.includes(field)) throw badRequest(`field label not supported: ${field}`);
    reqs.push({ field, op: m[2] === "!=" ? "!=" : "=", value: m[3]!.trim() });
  }
  return reqs;
}

/** Read a dotted path (`spec.nodeName`) from an object; absent values read as "". */
function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return "";
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur === undefined || cur === null ? "" : String(cur);
}

/** Whether `obj` satisfies every field requirement. */
export function matchFields(sel: FieldSelector, obj: unknown): boolean {
  return sel.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === "="));
}
