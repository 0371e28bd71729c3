/**
 * Parsers for `ip xfrm state` / `ip -s xfrm state` and `ip xfrm policy` text (iproute2 has no JSON
 * output for xfrm). Blocks start at an unindented line; fields are matched by keyword, so the
 * extra detail of `-s` (decimal SPIs, lifetimes, stats) is read where useful and ignored otherwise.
 */

/** One XFRM state as installed (the fields podcrypt programs and reads back). */
export interface InstalledXfrmState {
  src: string;
  dst: string;
  proto: string;
  spi: number;
  reqid: number;
  mode: string;
  /** AEAD algorithm name, key (hex, without 0x) and ICV length in bits, when the state has one. */
  aead?: { name: string; keyHex: string; icvBits: number };
  encap?: { type: string; sport: number; dport: number };
  mark?: { value: number; mask: number };
  /** XFRM interface ID (`if_id`), when the state has one (route-based IPsec). */
  ifId?: number;
  /** `flag af-unspec`: the state carries inner packets of either family (src/dataplane/xfrm/plan.ts). */
  afUnspec?: true;
  /** Counters from `lifetime current` (only with `ip -s`). */
  bytes?: number;
  packets?: number;
}

/** One XFRM policy as installed. */
export interface InstalledXfrmPolicy {
  src: string;
  dst: string;
  /** Upper-layer selector, when the policy has one. */
  proto?: string;
  sport?: number;
  dport?: number;
  dir: "in" | "out" | "fwd";
  priority: number;
  mark?: { value: number; mask: number };
  /** XFRM interface ID (`if_id`), when the policy has one: it then only applies to that interface's traffic. */
  ifId?: number;
  /** Templates in order (podcrypt installs exactly one). */
  tmpls: { src: string; dst: string; proto: string; spi?: number; reqid: number; mode: string }[];
}

function blocks(text: string): string[][] {
  const out: string[][] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (!/^\s/.test(line)) out.push([line]);
    else out[out.length - 1]?.push(line);
  }
  return out;
}

function parseIfId(body: string): number | undefined {
  const m = /^\s+if_id (0x[0-9a-f]+)/m.exec(body);
  return m ? Number(m[1]) : undefined;
}

function parseMark(text: string): { value: number; mask: number } | undefined {
  const m = /\bmark (0x[0-9a-f]+)\/(0x[0-9a-f]+)/.exec(text);
  return m ? { value: Number(m[1]), mask: Number(m[2]) } : undefined;
}

/** Parses `ip [-s] xfrm state [list]` output. */
export function parseXfrmStates(text: string): InstalledXfrmState[] {
  const states: InstalledXfrmState[] = [];
  for (const block of blocks(text)) {
    const head = /^src (\S+) dst (\S+)/.exec(block[0]!);
    const body = block.join("\n");
    const id = /\bproto (\S+) spi (0x[0-9a-f]+)\S* reqid (\d+)\S* mode (\S+)/.exec(body);
    if (!head || !id) continue;
    const state: InstalledXfrmState = {
      src: head[1]!,
      dst: head[2]!,
      proto: id[1]!,
      spi: Number(id[2]),
      reqid: Number(id[3]),
      mode: id[4]!,
    };
    const aead = /^\s+aead (\S+) 0x([0-9a-f]+)(?: \(\d+ bits\))? (\d+)/m.exec(body);
    if (aead) state.aead = { name: aead[1]!, keyHex: aead[2]!, icvBits: Number(aead[3]) };
    const encap = /^\s+encap type (\S+) sport (\d+) dport (\d+)/m.exec(body);
    if (encap) state.encap = { type: encap[1]!, sport: Number(encap[2]), dport: Number(encap[3]) };
    const mark = parseMark(body.replace(/output-mark \S+/g, ""));
    if (mark) state.mark = mark;
    const ifId = parseIfId(body);
    if (ifId !== undefined && ifId !== 0) state.ifId = ifId;
    if (/\bflag [^\n(]*\baf-unspec\b/.test(body)) state.afUnspec = true;
    const cur = /lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)/.exec(body);
    if (cur) {
      state.bytes = Number(cur[1]);
      state.packets = Number(cur[2]);
    }
    states.push(state);
  }
  return states;
}

/** Parses `ip xfrm policy [list]` output; socket policies and other kinds are skipped. */
export function parseXfrmPolicies(text: string): InstalledXfrmPolicy[] {
  const policies: InstalledXfrmPolicy[] = [];
  for (const block of blocks(text)) {
    const head = /^src (\S+) dst (\S+)(.*)$/.exec(block[0]!);
    const body = block.join("\n");
    const dir = /^\s+dir (in|out|fwd) priority (\d+)/m.exec(body);
    if (!head || !dir) continue;
    const policy: InstalledXfrmPolicy = {
      src: head[1]!,
      dst: head[2]!,
      dir: dir[1] as "in" | "out" | "fwd",
      priority: Number(dir[2]),
      tmpls: [],
    };
    const rest = head[3]!;
    const proto = /\bproto (\S+)/.exec(rest);
    if (proto) policy.proto = proto[1]!;
    const sport = /\bsport (\d+)/.exec(rest);
    if (sport) policy.sport = Number(sport[1]);
    const dport = /\bdport (\d+)/.exec(rest);
    if (dport) policy.dport = Number(dport[1]);
    const mark = parseMark(body);
    if (mark) policy.mark = mark;
    const ifId = parseIfId(body);
    if (ifId !== undefined && ifId !== 0) policy.ifId = ifId;
    const tmplRe =
      /^\s+tmpl src (\S+) dst (\S+)\s*\n\s+proto (\S+)(?: spi (0x[0-9a-f]+))? reqid (\d+) mode (\S+)/gm;
    for (const t of body.matchAll(tmplRe)) {
      policy.tmpls.push({
        src: t[1]!,
        dst: t[2]!,
        proto: t[3]!,
        ...(t[4] !== undefined && Number(t[4]) !== 0 ? { spi: Number(t[4]) } : {}),
        reqid: Number(t[5]),
        mode: t[6]!,
      });
    }
    policies.push(policy);
  }
  return policies;
}
