/** Time as the logic sees it. Production uses `systemClock`; tests pass a `ManualClock`. */
export interface Clock {
  /** Monotonic milliseconds (for timers and ages). */
  now(): number;
  /** Wall-clock milliseconds since the epoch (for timestamps shown to people and TAI64N). */
  wallNow(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
};

/** A clock that moves only when told: tests advance it past REKEY_AFTER_TIME instead of sleeping. */
export class ManualClock implements Clock {
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
  advance(ms: number): void {
    this.mono += ms;
    this.wall += ms;
  }
}

/** Randomness source, injected so tests are repeatable. */
export type RandomBytes = (n: number) => Buffer;
