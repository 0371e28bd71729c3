import { badRequest, ApiStatusError } from "./status.js";

/** A JSON value as patches see it. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * RFC 7386 JSON merge patch: objects merge recursively, `null` deletes a key, anything else
 * (arrays included) replaces. Strategic merge patch is served with these semantics too (the
 * per-field list merge keys of built-in types are not modelled).
 */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) Reflect.deleteProperty(out, k);
    else out[k] = mergePatch(out[k] ?? null, v);
  }
  return out;
}

/** One RFC 6902 operation. */
export interface JsonPatchOp {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string;
  from?: string;
  value?: Json;
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw badRequest(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc: Json, tokens: string[], path: string): { parent: Json; key: string } {
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)] ?? null;
    else if (isObject(cur)) cur = cur[t] ?? null;
    else cur = null;
    if (cur === null) throw badRequest(`JSON patch: path "${path}" does not exist`);
  }
  return { parent: cur, key: tokens[tokens.length - 1] ?? "" };
}

function get(doc: Json, path: string): Json {
  let cur: Json = doc;
  for (const t of pointer(path)) {
    const next: Json | undefined = Array.isArray(cur) ? cur[Number(t)] : isObject(cur) ? cur[t] : undefined;
    if (next === undefined) throw badRequest(`JSON patch: path "${path}" does not exist`);
    cur = next;
  }
  return cur;
}

function arrayIndex(arr: Json[], key: string, path: string, forAdd: boolean): number {
  if (forAdd && key === "-") return arr.length;
  const i = Number(key);
  if (!/^(0|[1-9][0-9]*)$/.test(key) || i > arr.length || (!forAdd && i === arr.length)) {
    throw badRequest(`JSON patch: index out of range at "${path}"`);
  }
  return i;
}

function add(doc: Json, path: string, value: Json): Json {
  const tokens = pointer(path);
  if (tokens.length === 0) return value;
  const { parent, key } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, true), 0, value);
  else if (isObject(parent)) parent[key] = value;
  else throw badRequest(`JSON patch: cannot add at "${path}"`);
  return doc;
}

function remove(doc: Json, path: string): Json {
  const tokens = pointer(path);
  const { parent, key } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, path, false), 1);
  else if (isObject(parent) && Object.hasOwn(parent, key)) Reflect.deleteProperty(parent, key);
  else throw badRequest(`JSON patch: path "${path}" does not exist`);
  return doc;
}

/** Apply RFC 6902 operations; a failed `test` is a 422 as the API server answers it. */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw badRequest("JSON patch must be an array of operations");
  let doc = structuredClone(target);
  for (const raw of ops as JsonPatchOp[]) {
    const value = raw.value === undefined ? null : structuredClone(raw.value);
    switch (raw.op) {
      case "add":
        doc = add(doc, raw.path, value);
        break;
      case "remove":
        doc = remove(doc, raw.path);
        break;
      case "replace":
        get(doc, raw.path);
        if (raw.path === "") {
          doc = value;
          break;
        }
        doc = add(remove(doc, raw.path), raw.path, value);
        break;
      case "move": {
        const v = get(doc, raw.from ?? "");
        doc = add(remove(doc, raw.from ?? ""), raw.path, v);
        break;
      }
      case "copy":
        doc = add(doc, raw.path, structuredClone(get(doc, raw.from ?? "")));
        break;
      case "test":
        if (JSON.stringify(get(doc, raw.path)) !== JSON.stringify(value)) {
          throw new ApiStatusError({
            kind: "Status",
            apiVersion: "v1",
            metadata: {},
            status: "Failure",
            message: `the server rejected our request due to an error in our request: testing value at "${raw.path}" failed`,
            reason: "Invalid",
            code: 422,
          });
        }
        break;
      default:
        throw badRequest(`JSON patch: unknown operation "${String((raw as { op: unknown }).op)}"`);
    }
  }
  return doc;
}
