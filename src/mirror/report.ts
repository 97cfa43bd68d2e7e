// The mirror report (issue 7): per statement fingerprint, how the mirrored copies compared and how long
// each side took, in bounded memory — latencies go into log-scale buckets, fingerprints are capped.

import { cacheKey } from '../router/cache-key.js';

/** How one mirrored statement came out. error: the mirror copy could not run (connection, timeout), not a SQL error. */
export type Outcome = 'match' | 'mismatch' | 'lag' | 'error';

/**
 * A statement's text with its constants replaced (the routing cache's normalisation) and whitespace
 * collapsed, for people to read: queries that differ only in constants share one line of the report.
 */
export function fingerprint(sql: string): string {
  return cacheKey(sql)
    .replace(/\0l/g, '...')
    .replace(/\0[ns]/g, '?')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Buckets per doubling: each bucket spans 2^(1/8), so a percentile is within about 9 % of the truth. */
const PER_DOUBLING = 8;
/** The smallest latency told apart: 1 µs (below it everything shares the first bucket). */
const FLOOR_MS = 0.001;

/** Latencies in log-scale buckets: fixed memory per histogram whatever the number of samples. */
export class LatencyHistogram {
  private readonly buckets = new Map<number, number>();
  count = 0;
  max = 0;

  record(ms: number): void {
    const b = ms <= FLOOR_MS ? 0 : Math.ceil(Math.log2(ms / FLOOR_MS) * PER_DOUBLING);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** The p-th percentile (0 < p ≤ 100) as its bucket's upper bound, never above the largest value seen; undefined when empty. */
  percentile(p: number): number | undefined {
    if (this.count === 0) return undefined;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (const b of [...this.buckets.keys()].sort((x, y) => x - y)) {
      seen += this.buckets.get(b)!;
      if (seen >= rank) return Math.min(this.max, FLOOR_MS * 2 ** (b / PER_DOUBLING));
    }
    return this.max;
  }
}

/** How copies came out: mirrored (run and compared) = matched + mismatched + lag + errors; dropped were never run. */
export interface OutcomeCounts {
  mirrored: number;
  matched: number;
  mismatched: number;
  lag: number;
  errors: number;
  dropped: number;
}

export interface ReportRow extends OutcomeCounts {
  fingerprint: string;
  primary_ms: { p50: number | null; p95: number | null; p99: number | null };
  mirror_ms: { p50: number | null; p95: number | null; p99: number | null };
}

class Entry {
  mirrored = 0;
  matched = 0;
  mismatched = 0;
  lag = 0;
  errors = 0;
  dropped = 0;
  readonly primary = new LatencyHistogram();
  readonly mirror = new LatencyHistogram();
}

/** Statements beyond the fingerprint cap are counted under this line. */
export const OTHER = '(other statements)';

export class MirrorReport {
  private readonly entries = new Map<string, Entry>();
  private readonly maxFingerprints: number;

  constructor(opts: { maxFingerprints?: number } = {}) {
    this.maxFingerprints = opts.maxFingerprints ?? 1000;
  }

  private entry(fp: string): Entry {
    let key = fp;
    let e = this.entries.get(key);
    if (e) return e;
    if (this.entries.size >= this.maxFingerprints) key = OTHER;
    e = this.entries.get(key);
    if (!e) {
      e = new Entry();
      this.entries.set(key, e);
    }
    return e;
  }

  /** A mirrored statement compared: its outcome and both latencies (the mirror's is absent when it could not run). */
  record(sql: string, outcome: Outcome, primaryMs: number, mirrorMs?: number, fp: string = fingerprint(sql)): void {
    const e = this.entry(fp);
    e.mirrored++;
    if (outcome === 'match') e.matched++;
    else if (outcome === 'mismatch') e.mismatched++;
    else if (outcome === 'lag') e.lag++;
    else e.errors++;
    e.primary.record(primaryMs);
    if (mirrorMs !== undefined) e.mirror.record(mirrorMs);
  }

  /** A copy the mirror's queue had no room for. */
  dropped(sql: string, fp: string = fingerprint(sql)): void {
    this.entry(fp).dropped++;
  }

  /** One row per fingerprint, the most mirrored first. */
  rows(): ReportRow[] {
    const pct = (h: LatencyHistogram) => {
      const r = (p: number) => {
        const v = h.percentile(p);
        return v === undefined ? null : Math.round(v * 1000) / 1000;
      };
      return { p50: r(50), p95: r(95), p99: r(99) };
    };
    return [...this.entries]
      .map(([fp, e]) => ({
        fingerprint: fp,
        mirrored: e.mirrored,
        matched: e.matched,
        mismatched: e.mismatched,
        lag: e.lag,
        errors: e.errors,
        dropped: e.dropped,
        primary_ms: pct(e.primary),
        mirror_ms: pct(e.mirror),
      }))
      .sort((a, b) => b.mirrored + b.dropped - (a.mirrored + a.dropped) || a.fingerprint.localeCompare(b.fingerprint));
  }
}

/** The report as a text table (for `switchyard mirror report`): counts, then p50/p95/p99 in ms on each side. */
export function formatReport(rows: ReportRow[], width = 60): string {
  const ms = (v: number | null) => (v === null ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(0));
  const head = ['statement', 'mirrored', 'match', 'mismatch', 'lag', 'errors', 'dropped', 'primary p50/p95/p99 ms', 'mirror p50/p95/p99 ms'];
  const lines = rows.map((r) => [
    r.fingerprint.length > width ? r.fingerprint.slice(0, width - 1) + '…' : r.fingerprint,
    String(r.mirrored),
    String(r.matched),
    String(r.mismatched),
    String(r.lag),
    String(r.errors),
    String(r.dropped),
    `${ms(r.primary_ms.p50)} / ${ms(r.primary_ms.p95)} / ${ms(r.primary_ms.p99)}`,
    `${ms(r.mirror_ms.p50)} / ${ms(r.mirror_ms.p95)} / ${ms(r.mirror_ms.p99)}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(fmt)].join('\n') + '\n';
}
