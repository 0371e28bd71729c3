import { ValidationError } from "../../errors/index.js";
import { canonicalCidr, canonicalIp } from "../../platform/netlink/addr.js";
import type { InstalledXfrmPolicy, InstalledXfrmState } from "../../platform/netlink/xfrm-text.js";
import type { XfrmDesired, XfrmLinkSpec, XfrmPolicySpec, XfrmSaSpec } from "./types.js";

/** Range of reqids the backend owns: states and policies with others are never touched. */
export interface ReqidRange {
  min: number;
  max: number;
}

export const AEAD_NAME = "rfc4106(gcm(aes))";

/** A link as `ip -j -d link show` reports it (only what the plan compares). */
export interface InstalledXfrmLink {
  ifname: string;
  /** `linkinfo.info_kind` ("xfrm", "wireguard", "tun", ... or "" for none). */
  kind: string;
  /** `if_id` of an XFRM interface. */
  ifId?: number;
  /** The lower device of an XFRM interface (`link`). */
  dev?: string;
  mtu: number;
  up: boolean;
}

/** What is installed, as read in one pass. */
export interface XfrmInstalled {
  states: InstalledXfrmState[];
  policies: InstalledXfrmPolicy[];
  /** Every link of the namespace by name (absent: links are not planned). */
  links?: Map<string, InstalledXfrmLink>;
}

/** What a pass may remove besides replacing what differs. */
export interface PruneOptions {
  /**
   * Owned states, policies and XFRM interfaces that are not desired are removed: all of them
   * ("all", the default), or only those whose `if_id` is in the set (a generation backend
   * installing some generations must not remove another's).
   */
  prune?: "all" | ReadonlySet<number>;
  /** Whether an XFRM interface of that name is the backend's. Default: none is. */
  ownsLink?: (ifname: string) => boolean;
  /**
   * Outbound states (source `src`) of these reqids stay even when not desired: the SA of a peer
   * that left, kept until its key generation retires, so that a peer re-added within the epoch
   * gets the same state back and its sequence numbers (GCM nonces) go on instead of restarting
   * under the same key (src/keys/derive.ts). Not when a desired state has the same source,
   * destination and reqid: that one replaces it (a new SA instance).
   */
  keepOutbound?: { src: string; reqids: ReadonlySet<number> };
}

/** Validates and canonicalises `desired` (addresses as the kernel prints them). */
export function normaliseXfrm(desired: XfrmDesired, owned: ReqidRange): XfrmDesired {
  const checkReqid = (reqid: number, field: string): void => {
    if (!Number.isInteger(reqid) || reqid < owned.min || reqid > owned.max)
      throw new ValidationError(field, `reqid ${reqid} outside the owned range ${owned.min}..${owned.max}`);
  };
  const checkIfId = (ifId: number | undefined, field: string): void => {
    if (ifId !== undefined && (!Number.isInteger(ifId) || ifId < 1 || ifId > 0xffffffff))
      throw new ValidationError(field, "must be 1..2^32-1");
  };
  const states = desired.states.map((s, i): XfrmSaSpec => {
    const at = `states[${i}]`;
    if (s.key.length !== 20) throw new ValidationError(`${at}.key`, "must be 20 bytes (16 key + 4 salt)");
    if (!Number.isInteger(s.spi) || s.spi < 256 || s.spi > 0xffffffff)
      throw new ValidationError(`${at}.spi`, "must be 256..2^32-1 (RFC 4303: 1..255 reserved)");
    checkReqid(s.reqid, `${at}.reqid`);
    checkIfId(s.ifId, `${at}.ifId`);
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
    checkIfId(p.ifId, `${at}.ifId`);
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
  const names = new Set<string>();
  const links = (desired.links ?? []).map((l, i): XfrmLinkSpec => {
    const at = `links[${i}]`;
    if (!/^[\w.-]{1,15}$/.test(l.ifname)) throw new ValidationError(`${at}.ifname`, "not an interface name");
    if (names.has(l.ifname)) throw new ValidationError(`${at}.ifname`, `duplicate ${l.ifname}`);
    names.add(l.ifname);
    if (!/^[\w.-]{1,15}$/.test(l.dev)) throw new ValidationError(`${at}.dev`, "not an interface name");
    checkIfId(l.ifId, `${at}.ifId`);
    if (!Number.isInteger(l.mtu) || l.mtu < 576 || l.mtu > 65535)
      throw new ValidationError(`${at}.mtu`, "out of range");
    return { ...l };
  });
  return { states, policies, ...(desired.links === undefined ? {} : { links }) };
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const stateKey = (s: { src: string; dst: string; spi: number }): string => `${s.src}|${s.dst}|${s.spi}`;
const markText = (m?: { value: number; mask: number }): string =>
  m ? `${hex(m.value)}/${hex(m.mask)}` : "-";
const policyKey = (p: {
  dir: string;
  src: string;
  dst: string;
  proto?: string;
  sport?: number;
  dport?: number;
  mark?: { value: number; mask: number };
  ifId?: number;
}): string =>
  [p.dir, p.src, p.dst, p.proto ?? "-", p.sport ?? "-", p.dport ?? "-", markText(p.mark), p.ifId ?? 0].join(
    "|",
  );

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
    markText(have.mark) === markText(want.mark) &&
    (have.ifId ?? 0) === (want.ifId ?? 0)
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

/** The selector, direction, mark and interface ID: what identifies a policy. */
function selector(p: XfrmPolicySpec | InstalledXfrmPolicy): string {
  let s = `src ${p.src} dst ${p.dst}`;
  if (p.proto !== undefined) s += ` proto ${p.proto}`;
  if (p.sport !== undefined) s += ` sport ${p.sport}`;
  if (p.dport !== undefined) s += ` dport ${p.dport}`;
  s += ` dir ${p.dir}`;
  if (p.mark) s += ` mark ${hex(p.mark.value)} mask ${hex(p.mark.mask)}`;
  if (p.ifId !== undefined) s += ` if_id ${hex(p.ifId)}`;
  return s;
}

/**
 * The `ip xfrm state add` line of an SA. Contains key material: only ever fed to `ip -batch` on stdin.
 *
 * Every SA is made with `flag af-unspec`: one tunnel carries the pods (and host addresses) of both
 * families over one underlay family, and without the flag the kernel gives the state a selector of
 * its outer family (xfrm_user's copy_from_user_state), so an outbound IPv6 packet of an IPv4
 * tunnel finds no state (XfrmOutNoStates) and an inbound one cannot be decapsulated. With it the
 * selector stays AF_UNSPEC: the policies (by `if_id` and CIDR) select, and the inner family is
 * taken from each packet. The original-address argument of `encap` is of the outer family.
 */
export function stateAddLine(s: XfrmSaSpec): string {
  let line = `xfrm state add src ${s.src} dst ${s.dst} proto esp spi ${hex(s.spi)} reqid ${s.reqid} mode tunnel`;
  if (s.replayWindow !== undefined && s.replayWindow > 0) line += ` replay-window ${s.replayWindow}`;
  line += ` aead ${AEAD_NAME} 0x${s.key.toString("hex")} ${s.icvBits ?? 128}`;
  if (s.encap)
    line += ` encap espinudp ${s.encap.sport} ${s.encap.dport} ${s.dst.includes(":") ? "::" : "0.0.0.0"}`;
  if (s.mark) line += ` mark ${hex(s.mark.value)} mask ${hex(s.mark.mask)}`;
  if (s.ifId !== undefined) line += ` if_id ${hex(s.ifId)}`;
  return `${line} flag af-unspec`;
}

function stateDeleteLine(s: { src: string; dst: string; spi: number }): string {
  return `xfrm state delete src ${s.src} dst ${s.dst} proto esp spi ${hex(s.spi)}`;
}

function policyLine(verb: "add" | "update", p: XfrmPolicySpec): string {
  return (
    `xfrm policy ${verb} ${selector(p)} priority ${p.priority ?? 0}` +
    ` tmpl src ${p.tmpl.src} dst ${p.tmpl.dst} proto esp reqid ${p.tmpl.reqid} mode tunnel`
  );
}

/**
 * `ip -batch` lines that turn `installed` into `desired` (normalised), touching only states and
 * policies whose reqid is in `owned` and XFRM interfaces `ownsLink` accepts. Order keeps traffic
 * flowing: interfaces exist before SAs name their `if_id`, changed SAs are replaced and new ones
 * added before policies point at them; stale policies go before stale SAs, stale interfaces last.
 */
export function planXfrm(
  desired: XfrmDesired,
  installed: XfrmInstalled,
  owned: ReqidRange,
  options: PruneOptions = {},
): string[] {
  const prune = options.prune ?? "all";
  const prunable = (ifId: number | undefined): boolean => prune === "all" || prune.has(ifId ?? 0);
  const isOwned = (reqid: number): boolean => reqid >= owned.min && reqid <= owned.max;
  const keep = options.keepOutbound;
  // A desired state of the same peer and key generation supersedes a kept one (the peer's new SA
  // instance: the old key never comes back), and the kernel must not pick the old one for it.
  const superseded = new Set(desired.states.map((st) => `${st.src}|${st.dst}|${st.reqid}`));
  const kept = (st: InstalledXfrmState): boolean =>
    keep !== undefined &&
    st.src === keep.src &&
    keep.reqids.has(st.reqid) &&
    !superseded.has(`${st.src}|${st.dst}|${st.reqid}`);
  const lines: string[] = [];

  const links = installed.links;
  const wantLinks = new Map((desired.links ?? []).map((l) => [l.ifname, l]));
  if (links !== undefined) {
    for (const want of wantLinks.values()) {
      const have = links.get(want.ifname);
      const same = have?.kind === "xfrm" && have.ifId === want.ifId && have.dev === want.dev;
      // A leftover of our name but another kind or if_id cannot be changed in place.
      if (have !== undefined && !same) lines.push(`link del dev ${want.ifname}`);
      if (!same) lines.push(`link add name ${want.ifname} type xfrm dev ${want.dev} if_id ${hex(want.ifId)}`);
      if (!same || have.mtu !== want.mtu) lines.push(`link set dev ${want.ifname} mtu ${want.mtu}`);
      if (!same || !have.up) lines.push(`link set dev ${want.ifname} up`);
    }
  }

  const haveStates = new Map(installed.states.filter((s) => s.proto === "esp").map((s) => [stateKey(s), s]));
  const wantStates = new Map(desired.states.map((s) => [stateKey(s), s]));
  for (const [key, want] of wantStates) {
    const have = haveStates.get(key);
    if (have && stateMatches(want, have)) continue;
    if (have) lines.push(stateDeleteLine(have)); // keys and algorithms cannot be updated in place
    lines.push(stateAddLine(want));
  }
  const havePolicies = new Map(installed.policies.map((p) => [policyKey(p), p]));
  const wantPolicies = new Map(desired.policies.map((p) => [policyKey(p), p]));
  for (const [key, want] of wantPolicies) {
    const have = havePolicies.get(key);
    if (!have) lines.push(policyLine("add", want));
    else if (!policyMatches(want, have)) lines.push(policyLine("update", want));
  }
  for (const p of installed.policies)
    if (p.tmpls.some((t) => isOwned(t.reqid)) && !wantPolicies.has(policyKey(p)) && prunable(p.ifId))
      lines.push(`xfrm policy delete ${selector(p)}`);
  for (const [key, have] of haveStates)
    if (isOwned(have.reqid) && !wantStates.has(key) && prunable(have.ifId) && !kept(have))
      lines.push(stateDeleteLine(have));
  if (links !== undefined && options.ownsLink !== undefined) {
    for (const l of links.values())
      if (l.kind === "xfrm" && options.ownsLink(l.ifname) && !wantLinks.has(l.ifname) && prunable(l.ifId))
        lines.push(`link del dev ${l.ifname}`);
  }
  return lines;
}

interface IpLinkJson {
  ifname: string;
  mtu: number;
  link?: string | null;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { if_id?: string | number } };
}

/** Parses `ip -j -d link show` output. */
export function parseLinks(json: string): Map<string, InstalledXfrmLink> {
  const t = json.trim();
  const out = new Map<string, InstalledXfrmLink>();
  if (t === "") return out;
  for (const l of JSON.parse(t) as IpLinkJson[]) {
    const ifId = l.linkinfo?.info_data?.if_id;
    out.set(l.ifname, {
      ifname: l.ifname,
      kind: l.linkinfo?.info_kind ?? "",
      ...(ifId === undefined ? {} : { ifId: Number(ifId) }),
      ...(typeof l.link === "string" ? { dev: l.link } : {}),
      mtu: l.mtu,
      up: (l.flags ?? []).includes("UP"),
    });
  }
  return out;
}
