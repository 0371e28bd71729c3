import { ValidationError } from "../../errors/index.js";
import { canonicalCidr, canonicalIp } from "../../platform/netlink/addr.js";
import type { InstalledXfrmPolicy, InstalledXfrmState } from "../../platform/netlink/xfrm-text.js";
import type { XfrmDesired, XfrmPolicySpec, XfrmSaSpec } from "./types.js";

/** Range of reqids the backend owns: states and policies with others are never touched. */
export interface ReqidRange {
  min: number;
  max: number;
}

export const AEAD_NAME = "rfc4106(gcm(aes))";

/** Validates and canonicalises `desired` (addresses as the kernel prints them). */
export function normaliseXfrm(desired: XfrmDesired, owned: ReqidRange): XfrmDesired {
  const checkReqid = (reqid: number, field: string): void => {
    if (!Number.isInteger(reqid) || reqid < owned.min || reqid > owned.max)
      throw new ValidationError(field, `reqid ${reqid} outside the owned range ${owned.min}..${owned.max}`);
  };
  const states = desired.states.map((s, i): XfrmSaSpec => {
    const at = `states[${i}]`;
    if (s.key.length !== 20) throw new ValidationError(`${at}.key`, "must be 20 bytes (16 key + 4 salt)");
    if (!Number.isInteger(s.spi) || s.spi < 256 || s.spi > 0xffffffff)
      throw new ValidationError(`${at}.spi`, "must be 256..2^32-1 (RFC 4303: 1..255 reserved)");
    checkReqid(s.reqid, `${at}.reqid`);
    return {
      ...s,
      src: canonicalIp(s.src, `${at}.src`),
      dst: canonicalIp(s.dst, `${at}.dst`),
      icvBits: s.icvBits ?? 128,
    };
  });
  const policies = desired.policies.map((p, i): XfrmPolicySpec => {
    const at = `policies[${i}]`;
    checkReqid(p.tmpl.reqid, `${at}.tmpl.reqid`);
    if ((p.sport !== undefined || p.dport !== undefined) && p.proto === undefined)
      throw new ValidationError(`${at}.proto`, "ports need a protocol");
    return {
      ...p,
      src: canonicalCidr(p.src, `${at}.src`),
      dst: canonicalCidr(p.dst, `${at}.dst`),
      priority: p.priority ?? 0,
      tmpl: {
        ...p.tmpl,
        src: canonicalIp(p.tmpl.src, `${at}.tmpl.src`),
        dst: canonicalIp(p.tmpl.dst, `${at}.tmpl.dst`),
      },
    };
  });
  return { states, policies };
}

const stateKey = (s: { src: string; dst: string; spi: number }): string => `${s.src}|${s.dst}|${s.spi}`;
const markText = (m?: { value: number; mask: number }): string =>
  m ? `0x${m.value.toString(16)}/0x${m.mask.toString(16)}` : "-";
const policyKey = (p: {
  dir: string;
  src: string;
  dst: string;
  proto?: string;
  sport?: number;
  dport?: number;
  mark?: { value: number; mask: number };
}): string =>
  [p.dir, p.src, p.dst, p.proto ?? "-", p.sport ?? "-", p.dport ?? "-", markText(p.mark)].join("|");

function stateMatches(want: XfrmSaSpec, have: InstalledXfrmState): boolean {
  return (
    have.proto === "esp" &&
    have.mode === "tunnel" &&
    have.reqid === want.reqid &&
    have.aead?.name === AEAD_NAME &&
    have.aead.keyHex === want.key.toString("hex") &&
    have.aead.icvBits === want.icvBits &&
    (want.encap
      ? have.encap?.type === "espinudp" &&
        have.encap.sport === want.encap.sport &&
        have.encap.dport === want.encap.dport
      : have.encap === undefined) &&
    markText(have.mark) === markText(want.mark)
  );
}

function policyMatches(want: XfrmPolicySpec, have: InstalledXfrmPolicy): boolean {
  const t = have.tmpls;
  return (
    have.priority === want.priority &&
    t.length === 1 &&
    t[0]!.src === want.tmpl.src &&
    t[0]!.dst === want.tmpl.dst &&
    t[0]!.proto === "esp" &&
    t[0]!.mode === "tunnel" &&
    t[0]!.reqid === want.tmpl.reqid &&
    t[0]!.spi === undefined
  );
}

function selector(p: XfrmPolicySpec | InstalledXfrmPolicy): string {
  let s = `src ${p.src} dst ${p.dst}`;
  if (p.proto !== undefined) s += ` proto ${p.proto}`;
  if (p.sport !== undefined) s += ` sport ${p.sport}`;
  if (p.dport !== undefined) s += ` dport ${p.dport}`;
  s += ` dir ${p.dir}`;
  if (p.mark) s += ` mark 0x${p.mark.value.toString(16)} mask 0x${p.mark.mask.toString(16)}`;
  return s;
}

/** The `ip xfrm state add` line of an SA. Contains key material. */
export function stateAddLine(s: XfrmSaSpec): string {
  let line =
    `xfrm state add src ${s.src} dst ${s.dst} proto esp spi 0x${s.spi.toString(16)} reqid ${s.reqid} mode tunnel` +
    ` aead ${AEAD_NAME} 0x${s.key.toString("hex")} ${s.icvBits ?? 128}`;
  if (s.encap) line += ` encap espinudp ${s.encap.sport} ${s.encap.dport} 0.0.0.0`;
  if (s.mark) line += ` mark 0x${s.mark.value.toString(16)} mask 0x${s.mark.mask.toString(16)}`;
  return line;
}

function stateDeleteLine(s: { src: string; dst: string; spi: number }): string {
  return `xfrm state delete src ${s.src} dst ${s.dst} proto esp spi 0x${s.spi.toString(16)}`;
}

function policyLine(verb: "add" | "update", p: XfrmPolicySpec): string {
  return (
    `xfrm policy ${verb} ${selector(p)} priority ${p.priority ?? 0}` +
    ` tmpl src ${p.tmpl.src} dst ${p.tmpl.dst} proto esp reqid ${p.tmpl.reqid} mode tunnel`
  );
}

/**
 * `ip -batch` lines that turn `installed` into `desired` (normalised), touching only states and
 * policies whose reqid is in `owned`. Order keeps traffic flowing: changed SAs are replaced and new
 * ones added before policies point at them; stale policies go before stale SAs.
 */
export function planXfrm(
  desired: XfrmDesired,
  installed: { states: InstalledXfrmState[]; policies: InstalledXfrmPolicy[] },
  owned: ReqidRange,
): string[] {
  const isOwned = (reqid: number): boolean => reqid >= owned.min && reqid <= owned.max;
  const haveStates = new Map(installed.states.filter((s) => s.proto === "esp").map((s) => [stateKey(s), s]));
  const wantStates = new Map(desired.states.map((s) => [stateKey(s), s]));
  const lines: string[] = [];
  for (const [key, want] of wantStates) {
    const have = haveStates.get(key);
    if (have && stateMatches(want, have)) continue;
    if (have) lines.push(stateDeleteLine(have)); // keys and algorithms cannot be updated in place
    lines.push(stateAddLine(want));
  }
  const ownedPolicies = installed.policies.filter((p) => p.tmpls.some((t) => isOwned(t.reqid)));
  const havePolicies = new Map(installed.policies.map((p) => [policyKey(p), p]));
  const wantPolicies = new Map(desired.policies.map((p) => [policyKey(p), p]));
  for (const [key, want] of wantPolicies) {
    const have = havePolicies.get(key);
    if (!have) lines.push(policyLine("add", want));
    else if (!policyMatches(want, have)) lines.push(policyLine("update", want));
  }
  for (const p of ownedPolicies)
    if (!wantPolicies.has(policyKey(p))) lines.push(`xfrm policy delete ${selector(p)}`);
  for (const [key, have] of haveStates)
    if (isOwned(have.reqid) && !wantStates.has(key)) lines.push(stateDeleteLine(have));
  return lines;
}
