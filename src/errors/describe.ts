import { PodcryptError } from "./podcrypt-error.js";

/**
 * One error of a cause chain as logs and status show it: what failed, and for a command that
 * failed, its command line, exit status and what it printed on stderr (all redacted where they
 * are produced, src/platform/netns/netns.ts and src/platform/netlink/kernel-commands.ts).
 */
export interface ErrorLink {
  message: string;
  /** The stable code of a PodcryptError, or a system error's code (`ENOENT`, ...). */
  code?: string;
  /** The command that failed (secrets redacted). */
  command?: string;
  exitCode?: number;
  signal?: string;
  stderr?: string;
}

/** An error with its causes, outermost first, as the `err` of a log record. */
export interface ErrorReport extends ErrorLink {
  type: string;
  cause?: ErrorReport;
}

/** How deep a chain is followed: real chains are 2-4 long; a cycle must not loop. */
const MAX_DEPTH = 8;
const MAX_TEXT = 1000;

function clip(s: string): string {
  return s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}...` : s;
}

function link(e: unknown): ErrorLink & { type: string } {
  if (!(e instanceof Error)) return { type: typeof e, message: clip(String(e)) };
  const out: ErrorLink & { type: string } = { type: e.name, message: clip(e.message) };
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string") out.code = code;
  if (e instanceof PodcryptError) {
    const c = e.context;
    if (typeof c["command"] === "string") out.command = clip(c["command"]);
    if (typeof c["exitCode"] === "number") out.exitCode = c["exitCode"];
    if (typeof c["signal"] === "string") out.signal = c["signal"];
    if (typeof c["stderr"] === "string" && c["stderr"] !== "") out.stderr = clip(c["stderr"]);
  }
  return out;
}

/**
 * The chain of `e` (`Error.cause`, outermost first) as plain data. A command's failure ends the
 * chain: what it wraps is the child process's raw error, whose command line and output are not
 * redacted.
 */
export function describeError(e: unknown): ErrorReport {
  const chain: Array<ErrorLink & { type: string }> = [];
  const seen = new Set<unknown>();
  let cur: unknown = e;
  while (cur !== undefined && cur !== null && chain.length < MAX_DEPTH && !seen.has(cur)) {
    seen.add(cur);
    const l = link(cur);
    chain.push(l);
    if (l.command !== undefined || !(cur instanceof Error)) break;
    cur = cur.cause;
  }
  let report: ErrorReport | undefined;
  for (let i = chain.length - 1; i >= 0; i--) report = { ...chain[i]!, ...(report ? { cause: report } : {}) };
  return report!;
}

/** The links of a report, outermost first. */
export function errorLinks(r: ErrorReport): ErrorLink[] {
  const out: ErrorLink[] = [];
  for (let cur: ErrorReport | undefined = r; cur !== undefined; cur = cur.cause) {
    const { type: _type, cause: _cause, ...l } = cur;
    out.push(l);
  }
  return out;
}

/**
 * One line for a link: its message, plus the exit status and stderr when the message does not
 * already say them.
 */
export function linkText(l: ErrorLink): string {
  let s = l.message;
  if (l.command !== undefined && !s.includes(l.command.slice(0, 40))) s = `${l.command}: ${s}`;
  if (l.stderr !== undefined && !s.includes(l.stderr)) s += `: ${l.stderr}`;
  return s;
}

/** The innermost cause of a chain, as one line: what actually failed. */
export function rootCauseText(links: readonly ErrorLink[]): string {
  const last = links[links.length - 1];
  return last === undefined ? "" : linkText(last).replace(/\s*\n\s*/g, " ");
}

/**
 * The whole chain as one line, `outer: cause: root cause`, skipping a cause whose text its outer
 * error already quotes.
 */
export function chainText(e: unknown): string {
  const parts: string[] = [];
  for (const l of errorLinks(describeError(e))) {
    const t = linkText(l);
    if (!parts.some((p) => p.includes(t))) parts.push(t);
  }
  return parts.join(": ").replace(/\s*\n\s*/g, " ");
}
