/**
 * Time as the logic sees it: readings and timers. Production uses `systemClock`; tests pass a
 * `ManualClock`, whose timers fire only when the test advances it.
 */
export interface Clock {
  /** Monotonic milliseconds (for timers and ages). */
  now(): number;
  /** Wall-clock milliseconds since the epoch (for timestamps shown to people and TAI64N). */
  wallNow(): number;
  /**
   * Calls `fn` once, `ms` monotonic milliseconds from now (like setTimeout; the system clock's
   * timers keep the process alive as setTimeout's do).
   */
  after(ms: number, fn: () => void): Timer;
}

/** A timer of a {@link Clock}. */
export interface Timer {
  /** Stops the timer; it does not fire (again). Idempotent. */
  cancel(): void;
  /** Re-arms the timer for its delay from now, whether or not it fired already. */
  refresh(): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t), refresh: () => void t.refresh() };
  },
};

interface ManualTimer {
  at: number;
  readonly ms: number;
  readonly fn: () => void;
  seq: number;
  armed: boolean;
}

/**
 * A clock that moves only when told: tests advance it past REKEY_AFTER_TIME instead of sleeping.
 * `advance` fires the timers that fall due on the way, earliest first, each with the clock reading
 * its due time (so a timer armed by another's callback fires in the same advance when it is due).
 */
export class ManualClock implements Clock {
  private readonly timers: ManualTimer[] = [];
  private seq = 0;

  constructor(
    private mono = 0,
    private wall = 1_700_000_000_000,
  ) {}
  now(): number {
    return this.mono;
  }
  wallNow(): number {
    return this.wall;
  }
  after(ms: number, fn: () => void): Timer {
    const timer: ManualTimer = {
      at: this.mono + Math.max(0, ms),
      ms: Math.max(0, ms),
      fn,
      seq: this.seq++,
      armed: true,
    };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.armed = false;
      },
      refresh: () => {
        timer.at = this.mono + timer.ms;
        timer.seq = this.seq++;
        timer.armed = true;
        if (!this.timers.includes(timer)) this.timers.push(timer);
      },
    };
  }
  /** Moves both readings forward by `ms`, firing the timers due on the way. */
  advance(ms: number): void {
    const end = this.mono + ms;
    for (;;) {
      const next = this.nextDue(end);
      if (next === undefined) break;
      this.moveTo(next.at);
      next.armed = false;
      this.timers.splice(this.timers.indexOf(next), 1);
      next.fn();
    }
    this.moveTo(end);
  }
  /** The monotonic time the earliest armed timer fires at (undefined: none armed). */
  nextTimerAt(): number | undefined {
    return this.nextDue(Infinity)?.at;
  }
  private nextDue(limit: number): ManualTimer | undefined {
    for (let i = this.timers.length - 1; i >= 0; i--) if (!this.timers[i]!.armed) this.timers.splice(i, 1);
    let best: ManualTimer | undefined;
    for (const t of this.timers)
      if (t.at <= limit && (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)))
        best = t;
    return best;
  }
  private moveTo(mono: number): void {
    if (mono <= this.mono) return;
    this.wall += mono - this.mono;
    this.mono = mono;
  }
}

/** Randomness source, injected so tests are repeatable. */
export type RandomBytes = (n: number) => Buffer;
