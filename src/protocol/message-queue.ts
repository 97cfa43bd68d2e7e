// Hands whole messages, one at a time, to an async reader (used only during startup and login).

export class MessageQueue {
  private readonly items: Buffer[] = [];
  private waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  push(msg: Buffer): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.resolve(msg);
    } else this.items.push(msg);
  }

  /** Every later next() rejects with err (the first failure wins). */
  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  next(): Promise<Buffer> {
    const item = this.items.shift();
    if (item) return Promise.resolve(item);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Messages that arrived but were never read. */
  takeAll(): Buffer[] {
    return this.items.splice(0);
  }
}
