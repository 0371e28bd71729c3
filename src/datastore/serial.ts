/**
 * Runs tasks one after another in submission order; a task's failure goes to `onError` and does
 * not stop the queue. Watches use it so a listener returning a promise is never re-entered.
 */
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly onError: (e: unknown) => void) {}

  /** Queues `task`; ignored once closed. */
  push(task: () => void | Promise<void>): void {
    if (this.closed) return;
    this.tail = this.tail.then(async () => {
      if (this.closed) return;
      try {
        await task();
      } catch (e) {
        this.onError(e);
      }
    });
  }

  /** Resolves when every task queued so far has run. */
  drain(): Promise<void> {
    return this.tail;
  }

  /** Drops queued tasks that have not started; waits for the running one. */
  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
  }
}
