// Per-address failed-login throttling: after a burst of failures, answers are delayed with exponential backoff.

export interface LoginThrottleOptions {
  /** Failures within the window before delays start; 0 or less disables throttling. */
  threshold: number;
  windowMs: number;
  /** Upper bound on one delay; 0 or less disables throttling. */
  maxDelayMs: number;
}

const BASE_DELAY_MS = 100;
// Memory is bounded whatever arrives: one entry per address up to this many addresses, the least
// recently failed evicted first. An attacker with that many addresses can push an entry out, but then
// also already has that many parallel guesses, so the throttle was never going to stop them.
const MAX_ADDRESSES = 10_000;
// Expired entries are swept every this many failures, so the cost is amortised rather than paid per call.
const SWEEP_EVERY = 1_000;

export class LoginThrottle {
  private readonly threshold: number;
  private readonly windowMs: number;
  private readonly maxDelayMs: number;
  private readonly now: () => number;
  // Failure timestamps per address, oldest first; Map order doubles as least-recently-failed order.
  private readonly failures = new Map<string, number[]>();
  // Past this many remembered failures the delay is already at its cap, so older ones need not be kept.
  private readonly keepPerAddress: number;
  private failuresSinceSweep = 0;

  constructor(opts: LoginThrottleOptions, now: () => number = Date.now) {
    this.threshold = opts.threshold;
    this.windowMs = Math.max(0, opts.windowMs);
    this.maxDelayMs = opts.maxDelayMs;
    this.now = now;
    const doublings = this.maxDelayMs > BASE_DELAY_MS ? Math.ceil(Math.log2(this.maxDelayMs / BASE_DELAY_MS)) : 0;
    this.keepPerAddress = Math.max(1, this.threshold) + doublings + 1;
  }

  private get disabled(): boolean {
    return this.threshold <= 0 || this.maxDelayMs <= 0 || this.windowMs <= 0;
  }

  /** Failures of this address still inside the window; drops the expired ones. */
  private live(address: string, now: number): number[] | undefined {
    const times = this.failures.get(address);
    if (!times) return undefined;
    const cutoff = now - this.windowMs;
    let drop = 0;
    while (drop < times.length && times[drop]! <= cutoff) drop++;
    if (drop === times.length) {
      this.failures.delete(address);
      return undefined;
    }
    if (drop > 0) times.splice(0, drop);
    return times;
  }

  /** How long to hold this address's next login attempt before answering it, in ms. */
  delayMs(address: string): number {
    if (this.disabled) return 0;
    const n = this.live(address, this.now())?.length ?? 0;
    if (n < this.threshold) return 0;
    // Exponent clamped so the arithmetic stays finite; the cap applies long before that anyway.
    return Math.min(this.maxDelayMs, BASE_DELAY_MS * 2 ** Math.min(n - this.threshold, 40));
  }

  failure(address: string): void {
    if (this.disabled) return;
    const now = this.now();
    const times = this.live(address, now) ?? [];
    times.push(now);
    if (times.length > this.keepPerAddress) times.splice(0, times.length - this.keepPerAddress);
    // Re-insert so Map order stays least-recently-failed first.
    this.failures.delete(address);
    this.failures.set(address, times);

    if (++this.failuresSinceSweep >= SWEEP_EVERY) {
      this.failuresSinceSweep = 0;
      for (const a of [...this.failures.keys()]) this.live(a, now);
    }
    while (this.failures.size > MAX_ADDRESSES) this.failures.delete(this.failures.keys().next().value!);
  }

  success(address: string): void {
    this.failures.delete(address);
  }

  /** Number of addresses currently tracked (for metrics and tests). */
  get size(): number {
    return this.failures.size;
  }
}
