import { describeError, errorLinks, type ErrorLink, type ErrorReport } from "../errors/describe.js";

/**
 * A failure that keeps happening (a reconcile pass that fails the same way every second), as the
 * node's status record shows it: the error (a failed command with its command line, exit code and
 * stderr) and its causes, when it began, how often it happened and when last; `clearedAt` once a
 * pass succeeded again.
 */
export interface RepeatedFailure extends ErrorLink {
  /** The causes of `message`, outermost first (the last one is what actually failed). */
  causes: ErrorLink[];
  since: string;
  last: string;
  count: number;
  clearedAt?: string;
}

/** What the caller should log after {@link FailureTracker.failed} or {@link FailureTracker.succeeded}. */
export type FailureNews =
  | { kind: "new"; report: ErrorReport; failure: RepeatedFailure; replaced?: RepeatedFailure }
  | { kind: "repeat"; failure: RepeatedFailure }
  | { kind: "cleared"; failure: RepeatedFailure }
  | { kind: "none" };

/**
 * Counts a failure that repeats instead of reporting it again: the first occurrence is news, as
 * is a different failure (with the count of the one it replaces) and the first success after a
 * failure (with its count); the same failure again is only counted. Two failures are the same
 * when their whole chains (messages, commands, exit codes, stderr) are equal.
 */
export class FailureTracker {
  private current: { signature: string; failure: RepeatedFailure } | undefined;
  private lastCleared: RepeatedFailure | undefined;

  /** `now`: wall-clock ms (the agent's clock), for `since`/`last`/`clearedAt`. */
  constructor(private readonly now: () => number) {}

  /** The failure going on, else the last one that cleared (with `clearedAt`), else undefined. */
  get state(): RepeatedFailure | undefined {
    return this.current?.failure ?? this.lastCleared;
  }

  /** Whether a failure is going on. */
  get failing(): boolean {
    return this.current !== undefined;
  }

  failed(e: unknown): FailureNews {
    const report = describeError(e);
    const [head, ...causes] = errorLinks(report);
    const signature = JSON.stringify([head, causes]);
    const at = new Date(this.now()).toISOString();
    if (this.current?.signature === signature) {
      const f = this.current.failure;
      f.count++;
      f.last = at;
      return { kind: "repeat", failure: f };
    }
    const replaced = this.current?.failure;
    const failure: RepeatedFailure = {
      ...head!,
      causes,
      since: at,
      last: at,
      count: 1,
    };
    this.current = { signature, failure };
    return { kind: "new", report, failure, ...(replaced === undefined ? {} : { replaced }) };
  }

  succeeded(): FailureNews {
    if (this.current === undefined) return { kind: "none" };
    const failure = { ...this.current.failure, clearedAt: new Date(this.now()).toISOString() };
    this.current = undefined;
    this.lastCleared = failure;
    return { kind: "cleared", failure };
  }
}

/** The failure's whole chain, outermost first: the failure itself, then its causes. */
export function failureChain(f: RepeatedFailure): ErrorLink[] {
  const { causes, since: _s, last: _l, count: _c, clearedAt: _x, ...head } = f;
  return [head, ...causes];
}
