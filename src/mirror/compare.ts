// Summaries of one statement's backend answer (outcome, tag, columns, a hash of the rows, a bounded sample) and their comparison between primary and mirror.
//
// Pure: Buffers in, plain objects out. The summaries are what a mismatch event carries, so every field
// is bounded in size whatever the size of the result.

import { createHash, hash as oneShotHash, type Hash } from 'node:crypto';
import { readDataRowBytes, readErrorFields } from '../protocol/messages.js';

/** What one statement's answer looked like, built from the backend messages of that statement. */
export interface ResultSummary {
  ok: boolean;
  /** SQLSTATE of the ErrorResponse, when !ok. */
  sqlstate?: string;
  /** The error message, when !ok. */
  message?: string;
  /** CommandComplete tag, e.g. 'SELECT 3', 'INSERT 0 1'; absent when none came (error, empty query). */
  tag?: string;
  /** DataRows seen. */
  rows: number;
  /** From RowDescription; empty when none came. */
  columns: { name: string; typeOid: number }[];
  /** Hex SHA-256 of the rows: order-sensitive or not, per `ordered`. */
  hash: string;
  ordered: boolean;
  /**
   * A few rows as text (null as '\N', binary cells as '\x' + hex, cells longer than maxCellChars cut
   * and ended with '…'): the first ones when ordered, the ones with the smallest row digest otherwise.
   */
  sample: string[][];
  /**
   * Digest of each sample row (hex, 128 bits), same index as `sample`. compare() matches rows by these,
   * not by their text, which truncation and the '\N' spelling make ambiguous. Ascending when unordered.
   */
  sampleDigests: string[];
}

export interface SummaryOptions {
  /** Hash the rows in arrival order (the router's Decision.ordered: a top-level ORDER BY), or as a multiset. */
  ordered: boolean;
  /** Rows recorded as text. Default 20. */
  sampleRows?: number;
  /** Characters kept of each sampled cell. Default 200. */
  maxCellChars?: number;
}

const NULL_CELL = '\\N';
const MULTISET = Buffer.from('multiset\0');

interface Kept {
  /** First 16 bytes of the SHA-256 of the row's canonical encoding. */
  digest: Buffer;
  row: string[];
}

/**
 * Builds a ResultSummary from the backend messages of one statement, fed in order.
 *
 * A row's canonical encoding is its DataRow body as PostgreSQL sent it: Int16 cell count, then per cell
 * an Int32 length (-1 for NULL) and the bytes. Every cell is length-prefixed, so ('ab','c') and
 * ('a','bc') encode differently and NULL (-1) differs from '' (0); and each row is self-delimiting, so
 * a concatenation of rows is too. Hashing these bytes needs no decoding: a DataRow is decoded only
 * when it goes into the sample.
 *
 * Ordered: one running SHA-256 over the rows' encodings, in arrival order.
 *
 * Unordered: each row's SHA-256, its first 16 bytes read as a 128-bit integer, summed modulo 2^128;
 * the hash is then SHA-256 of that sum and the row count. A sum is commutative, so arrival order does
 * not matter, and unlike XOR it keeps multiplicity: XOR would cancel a pair of duplicate rows, so
 * {a,a,b} and {b} would look equal; with a sum, {a,a,b} and {a,b,b} differ. Sorting the digests
 * would be exact too but holds every row's digest in memory; the sum is constant memory. 128 bits make
 * an accidental collision negligible; the sum is not collision-resistant against someone choosing
 * rows to collide (generalised birthday attacks), which is not the threat when comparing two servers'
 * answers to the same statement. The row count is added so that counts never cancel out.
 */
export class SummaryBuilder {
  private readonly ordered: boolean;
  private readonly sampleRows: number;
  private readonly maxCellChars: number;

  private ok = true;
  private sqlstate?: string;
  private message?: string;
  private tag?: string;
  private rows = 0;
  private columns: { name: string; typeOid: number }[] = [];
  /** Per column: true when its values come in binary format. */
  private binary: boolean[] = [];

  private readonly running: Hash | undefined;
  /** The 128-bit sum as four 32-bit limbs, most significant first (plain numbers: no BigInt per row). */
  private readonly sum = [0, 0, 0, 0];
  /** Ordered: the first rows. Unordered: the rows with the smallest digests, ascending. */
  private readonly kept: Kept[] = [];
  private finished?: ResultSummary;

  constructor(opts: SummaryOptions) {
    const sampleRows = opts.sampleRows ?? 20;
    const maxCellChars = opts.maxCellChars ?? 200;
    if (!Number.isInteger(sampleRows) || sampleRows < 0) throw new RangeError(`sampleRows must be an integer >= 0, not ${sampleRows}`);
    if (!Number.isInteger(maxCellChars) || maxCellChars < 1) throw new RangeError(`maxCellChars must be an integer >= 1, not ${maxCellChars}`);
    this.ordered = opts.ordered;
    this.sampleRows = sampleRows;
    this.maxCellChars = maxCellChars;
    this.running = opts.ordered ? createHash('sha256') : undefined;
  }

  /** Feed one whole backend message (type byte + length + body), in order. Messages that do not shape the answer are ignored. */
  add(msg: Buffer): void {
    if (this.finished) throw new Error('SummaryBuilder.add() after finish()');
    if (msg.length < 5) throw new RangeError('truncated message');
    switch (msg[0]) {
      case 0x44: // 'D' DataRow
        this.dataRow(msg);
        break;
      case 0x54: // 'T' RowDescription
        this.rowDescription(msg);
        break;
      case 0x43: // 'C' CommandComplete (from a backend; from a frontend 'C' is Close)
        this.tag = msg.toString('utf8', 5, cstringEnd(msg, 5));
        break;
      case 0x45: {
        // 'E' ErrorResponse
        const f = readErrorFields(msg);
        this.ok = false;
        this.sqlstate = f.get('C') ?? '';
        this.message = f.get('M') ?? '';
        break;
      }
      default:
      // NoticeResponse, ParameterStatus, ParseComplete, BindComplete, NoData, EmptyQueryResponse,
      // ReadyForQuery…: they say nothing about the answer that both sides must share.
    }
  }

  finish(): ResultSummary {
    if (this.finished) return this.finished;
    let hash: string;
    if (this.running) hash = this.running.digest('hex');
    else {
      const tail = Buffer.alloc(24);
      for (let i = 0; i < 4; i++) tail.writeUInt32BE(this.sum[i]!, 4 * i);
      tail.writeBigUInt64BE(BigInt(this.rows), 16);
      hash = oneShotHash('sha256', Buffer.concat([MULTISET, tail]), 'hex');
    }
    const s: ResultSummary = {
      ok: this.ok,
      rows: this.rows,
      columns: this.columns,
      hash,
      ordered: this.ordered,
      sample: this.kept.map((k) => k.row),
      sampleDigests: this.kept.map((k) => k.digest.toString('hex')),
    };
    if (!this.ok) {
      s.sqlstate = this.sqlstate;
      s.message = this.message;
    }
    if (this.tag !== undefined) s.tag = this.tag;
    this.finished = s;
    return s;
  }

  private dataRow(msg: Buffer): void {
    this.rows++;
    const body = msg.subarray(5);
    if (this.running) {
      this.running.update(body);
      if (this.kept.length < this.sampleRows) this.kept.push({ digest: rowDigest(body), row: this.text(msg) });
      return;
    }
    const digest = rowDigest(body);
    // Add modulo 2^128, limb by limb from the least significant, carrying.
    let carry = 0;
    for (let i = 3; i >= 0; i--) {
      const v = this.sum[i]! + digest.readUInt32BE(4 * i) + carry;
      carry = v >= 0x1_0000_0000 ? 1 : 0;
      this.sum[i] = v >>> 0;
    }
    // Keep the sampleRows smallest digests: both sides then sample the same rows whatever their order.
    const kept = this.kept;
    if (kept.length === this.sampleRows && (kept.length === 0 || Buffer.compare(digest, kept[kept.length - 1]!.digest) >= 0)) return;
    let i = kept.length;
    while (i > 0 && Buffer.compare(digest, kept[i - 1]!.digest) < 0) i--;
    kept.splice(i, 0, { digest, row: this.text(msg) });
    if (kept.length > this.sampleRows) kept.pop();
  }

  private rowDescription(msg: Buffer): void {
    const n = msg.readInt16BE(5);
    const columns: { name: string; typeOid: number }[] = [];
    const binary: boolean[] = [];
    let off = 7;
    for (let i = 0; i < n; i++) {
      const end = cstringEnd(msg, off);
      const name = msg.toString('utf8', off, end);
      off = end + 1;
      // table OID (4), column number (2), type OID (4), type size (2), type modifier (4), format (2)
      if (off + 18 > msg.length) throw new RangeError('truncated message');
      columns.push({ name, typeOid: msg.readUInt32BE(off + 6) });
      binary.push(msg.readInt16BE(off + 16) === 1);
      off += 18;
    }
    this.columns = columns;
    this.binary = binary;
  }

  /** The row as bounded text, for people to read. */
  private text(msg: Buffer): string[] {
    return readDataRowBytes(msg).map((b, i) => {
      if (b === null) return NULL_CELL;
      const max = this.maxCellChars;
      if (this.binary[i]) {
        // Two hex digits per byte: decode no more bytes than the cut keeps.
        const hex = '\\x' + b.toString('hex', 0, Math.min(b.length, Math.ceil(max / 2)));
        return 2 + 2 * b.length > max ? hex.slice(0, max) + '…' : hex;
      }
      // A cell of UTF-8 has at least as many bytes as UTF-16 code units: decode only a bounded prefix.
      const s = b.toString('utf8', 0, Math.min(b.length, 4 * (max + 1)));
      if (s.length <= max) return s;
      let cut = max;
      const c = s.charCodeAt(cut - 1);
      if (c >= 0xd800 && c <= 0xdbff) cut--; // do not split a surrogate pair
      return s.slice(0, cut) + '…';
    });
  }
}

function rowDigest(body: Buffer): Buffer {
  return oneShotHash('sha256', body, 'buffer').subarray(0, 16);
}

function cstringEnd(msg: Buffer, off: number): number {
  const end = msg.indexOf(0, off);
  if (end < 0) throw new RangeError('unterminated string');
  return end;
}

// ---------------------------------------------------------------------------------------- comparison

export type Verdict = 'match' | 'mismatch';

export interface Comparison {
  verdict: Verdict;
  /** What differs, in words: 'error vs success', 'sqlstate 23505 vs 42P01', 'command tag …', 'row count 3 vs 4', 'columns …', 'rows'. */
  differences: string[];
  /** Up to `limit` rows present on one side and not the other (from the samples), each marked with its side. */
  rows: { side: 'primary' | 'mirror'; row: string[] }[];
}

/** The OID field of 'INSERT oid n' is 0 on modern servers but not guaranteed equal across servers. */
function normalTag(tag: string | undefined): string | undefined {
  const m = tag === undefined ? null : /^INSERT \d+ (\d+)$/.exec(tag);
  return m ? `INSERT ${m[1]}` : tag;
}

function describeColumn(c: { name: string; typeOid: number } | undefined): string {
  return c === undefined ? 'none' : `${c.name}/${c.typeOid}`;
}

/**
 * Compare two summaries of the same statement. Both must have been built with the same `ordered`.
 *
 * Both errors with the same SQLSTATE match (messages carry names and values that may differ in detail).
 * Otherwise: success vs error, command tag (INSERT's OID ignored), row count, column names and type
 * OIDs, and the row hash.
 */
export function compare(primary: ResultSummary, mirror: ResultSummary, limit = 5): Comparison {
  if (primary.ordered !== mirror.ordered) throw new TypeError('compare(): one summary is ordered and the other is not');
  const differences: string[] = [];
  if (primary.ok !== mirror.ok) {
    differences.push(primary.ok ? 'success vs error' : 'error vs success');
    return { verdict: 'mismatch', differences, rows: [] };
  }
  if (!primary.ok) {
    if (primary.sqlstate !== mirror.sqlstate) differences.push(`sqlstate ${primary.sqlstate} vs ${mirror.sqlstate}`);
    return { verdict: differences.length ? 'mismatch' : 'match', differences, rows: [] };
  }
  if (normalTag(primary.tag) !== normalTag(mirror.tag)) differences.push(`command tag ${primary.tag ?? 'none'} vs ${mirror.tag ?? 'none'}`);
  if (primary.rows !== mirror.rows) differences.push(`row count ${primary.rows} vs ${mirror.rows}`);
  const pc = primary.columns;
  const mc = mirror.columns;
  for (let i = 0; i < Math.max(pc.length, mc.length); i++) {
    if (pc[i]?.name !== mc[i]?.name || pc[i]?.typeOid !== mc[i]?.typeOid) {
      differences.push(`columns: #${i + 1} ${describeColumn(pc[i])} vs ${describeColumn(mc[i])}`);
      break;
    }
  }
  let rows: Comparison['rows'] = [];
  if (primary.hash !== mirror.hash) {
    differences.push('rows');
    rows = primary.ordered ? orderedRowDiff(primary, mirror, limit) : unorderedRowDiff(primary, mirror, limit);
  }
  return { verdict: differences.length ? 'mismatch' : 'match', differences, rows };
}

/*
 * Differing rows are found from the samples only; rows beyond the samples are known to differ only
 * through the hash, so a mismatch may come with fewer differing rows than there are, or none.
 */

/** Position by position: row i of one side against row i of the other, where both are known. */
function orderedRowDiff(p: ResultSummary, m: ResultSummary, limit: number): Comparison['rows'] {
  const out: Comparison['rows'] = [];
  const n = Math.max(p.sample.length, m.sample.length);
  for (let i = 0; i < n && out.length < limit; i++) {
    const inP = i < p.sample.length;
    const inM = i < m.sample.length;
    if (inP && inM) {
      if (p.sampleDigests[i] === m.sampleDigests[i]) continue;
      out.push({ side: 'primary', row: p.sample[i]! });
      if (out.length < limit) out.push({ side: 'mirror', row: m.sample[i]! });
    } else if (inP && i >= m.rows) out.push({ side: 'primary', row: p.sample[i]! }); // the mirror has no row i
    else if (inM && i >= p.rows) out.push({ side: 'mirror', row: m.sample[i]! });
    // else: the other side has a row i beyond its sample; unknown.
  }
  return out;
}

/**
 * Multiset difference by digest, limited to the digests both samples cover: each sample holds the
 * smallest digests of its side, so below the smaller of the two cut-offs (the last digest of a sample
 * that did not hold every row) both sides' rows are fully known. Without that limit, a row present on
 * both sides but pushed out of one sample by a smaller extra row would be reported as missing.
 */
function unorderedRowDiff(p: ResultSummary, m: ResultSummary, limit: number): Comparison['rows'] {
  const cutoff = (s: ResultSummary): string | undefined => (s.sample.length < s.rows ? s.sampleDigests[s.sampleDigests.length - 1] ?? '' : undefined);
  const cp = cutoff(p);
  const cm = cutoff(m);
  const bound = cp === undefined ? cm : cm === undefined ? cp : cp < cm ? cp : cm;
  const known = (d: string): boolean => bound === undefined || d <= bound; // equal-length lowercase hex: string order is numeric order
  const counts = new Map<string, number>();
  m.sampleDigests.forEach((d) => {
    if (known(d)) counts.set(d, (counts.get(d) ?? 0) + 1);
  });
  const out: Comparison['rows'] = [];
  p.sampleDigests.forEach((d, i) => {
    if (!known(d)) return;
    const c = counts.get(d) ?? 0;
    if (c > 0) counts.set(d, c - 1);
    else if (out.length < limit) out.push({ side: 'primary', row: p.sample[i]! });
  });
  m.sampleDigests.forEach((d, i) => {
    const c = counts.get(d) ?? 0;
    if (c > 0 && out.length < limit) {
      counts.set(d, c - 1);
      out.push({ side: 'mirror', row: m.sample[i]! });
    }
  });
  return out;
}
