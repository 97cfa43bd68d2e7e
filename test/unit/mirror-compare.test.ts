// Mirror comparison tests: summaries built from real backend message bytes, their comparison, and which statements are ordered.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as m from '../../src/protocol/messages.js';
import { SummaryBuilder, compare, type ResultSummary, type SummaryOptions } from '../../src/mirror/compare.js';
import { Router, loadParser } from '../../src/router/router.js';

await loadParser();

type Row = (string | null)[];

/** RowDescription with chosen type OIDs (messages.rowDescription makes every column text). */
function rowDesc(cols: [name: string, typeOid: number][], format = 0): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.alloc(2);
  n.writeInt16BE(cols.length);
  parts.push(n);
  for (const [name, oid] of cols) {
    const f = Buffer.alloc(18);
    f.writeUInt32BE(oid, 6);
    f.writeInt16BE(-1, 10);
    f.writeInt32BE(-1, 12);
    f.writeInt16BE(format, 16);
    parts.push(Buffer.from(name + '\0'), f);
  }
  return m.frame('T', Buffer.concat(parts));
}

/** The messages of a successful SELECT of text columns a, b, … */
function select(rows: Row[], cols = ['a', 'b']): Buffer[] {
  return [m.rowDescription(cols), ...rows.map((r) => m.dataRow(r)), m.commandComplete(`SELECT ${rows.length}`), m.readyForQuery('I')];
}

function summarize(msgs: Buffer[], opts: SummaryOptions): ResultSummary {
  const b = new SummaryBuilder(opts);
  for (const msg of msgs) b.add(msg);
  return b.finish();
}

const U = { ordered: false };
const O = { ordered: true };

function err(code: string, message: string): Buffer[] {
  return [m.errorResponse({ severity: 'ERROR', code, message }), m.readyForQuery('I')];
}

/** The digest the builder keeps for a row: the first 16 bytes of SHA-256 over the DataRow body. */
function digestOf(r: Row): string {
  return createHash('sha256').update(m.dataRow(r).subarray(5)).digest().subarray(0, 16).toString('hex');
}

const ROWS: Row[] = [
  ['1', 'one'],
  ['2', 'two'],
  ['3', null],
];

test('the builder reads outcome, tag, row count and columns from the messages', () => {
  const s = summarize(
    [m.parseComplete(), m.frame('2'), rowDesc([['id', 23], ['name', 25]]), m.frame('N', Buffer.from('SNOTICE\0Mhi\0\0')), ...ROWS.map((r) => m.dataRow(r)), m.commandComplete('SELECT 3'), m.readyForQuery('I')],
    O,
  );
  assert.equal(s.ok, true);
  assert.equal(s.tag, 'SELECT 3');
  assert.equal(s.rows, 3);
  assert.deepEqual(s.columns, [{ name: 'id', typeOid: 23 }, { name: 'name', typeOid: 25 }]);
  assert.match(s.hash, /^[0-9a-f]{64}$/);
  assert.deepEqual(s.sample, [['1', 'one'], ['2', 'two'], ['3', '\\N']]);
  assert.equal(s.sqlstate, undefined);

  const e = summarize(err('42P01', 'relation "t" does not exist'), U);
  assert.deepEqual([e.ok, e.sqlstate, e.message, e.tag, e.rows, e.columns], [false, '42P01', 'relation "t" does not exist', undefined, 0, []]);

  const empty = summarize([m.frame('I'), m.readyForQuery('I')], U);
  assert.deepEqual([empty.ok, empty.tag, empty.rows, empty.sample], [true, undefined, 0, []]);
});

test('identical results match, ordered or not', () => {
  for (const opts of [O, U]) {
    const c = compare(summarize(select(ROWS), opts), summarize(select(ROWS), opts));
    assert.deepEqual(c, { verdict: 'match', differences: [], rows: [] }, JSON.stringify(opts));
  }
});

test('the same rows in another order match when unordered and not when ordered', () => {
  const shuffled = [ROWS[2]!, ROWS[0]!, ROWS[1]!];
  const u = compare(summarize(select(ROWS), U), summarize(select(shuffled), U));
  assert.equal(u.verdict, 'match');
  const o = compare(summarize(select(ROWS), O), summarize(select(shuffled), O));
  assert.equal(o.verdict, 'mismatch');
  assert.deepEqual(o.differences, ['rows']);
  // Position-wise: row 0 differs first.
  assert.deepEqual(o.rows.slice(0, 2), [
    { side: 'primary', row: ['1', 'one'] },
    { side: 'mirror', row: ['3', '\\N'] },
  ]);
});

// Pairs of row sets with the same row count whose contents differ: each must be a mismatch of the rows.
const DIFFERING: { name: string; primary: Row[]; mirror: Row[]; expect: { side: 'primary' | 'mirror'; row: string[] }[] }[] = [
  {
    // XOR of row digests would cancel the pairs; a multiset keeps them.
    name: 'duplicates count',
    primary: [['a', 'x'], ['a', 'x'], ['b', 'y']],
    mirror: [['a', 'x'], ['b', 'y'], ['b', 'y']],
    expect: [
      { side: 'primary', row: ['a', 'x'] },
      { side: 'mirror', row: ['b', 'y'] },
    ],
  },
  {
    // Pairs of equal rows cancel under XOR, leaving ['c'] on both sides.
    name: 'pairs of duplicates do not cancel',
    primary: [['a', 'x'], ['a', 'x'], ['c', 'z']],
    mirror: [['b', 'y'], ['b', 'y'], ['c', 'z']],
    expect: [
      { side: 'primary', row: ['a', 'x'] },
      { side: 'primary', row: ['a', 'x'] },
      { side: 'mirror', row: ['b', 'y'] },
      { side: 'mirror', row: ['b', 'y'] },
    ],
  },
  {
    name: 'null differs from the empty string',
    primary: [['1', null]],
    mirror: [['1', '']],
    expect: [
      { side: 'primary', row: ['1', '\\N'] },
      { side: 'mirror', row: ['1', ''] },
    ],
  },
  {
    name: 'null differs from the text \\N',
    primary: [['1', null]],
    mirror: [['1', '\\N']],
    expect: [
      { side: 'primary', row: ['1', '\\N'] },
      { side: 'mirror', row: ['1', '\\N'] },
    ],
  },
  {
    name: 'cell boundaries cannot collide',
    primary: [['ab', 'c']],
    mirror: [['a', 'bc']],
    expect: [
      { side: 'primary', row: ['ab', 'c'] },
      { side: 'mirror', row: ['a', 'bc'] },
    ],
  },
];

for (const t of DIFFERING) {
  for (const opts of [O, U]) {
    test(`${t.name} (${opts.ordered ? 'ordered' : 'unordered'})`, () => {
      const p = summarize(select(t.primary), opts);
      const q = summarize(select(t.mirror), opts);
      assert.notEqual(p.hash, q.hash);
      const c = compare(p, q);
      assert.equal(c.verdict, 'mismatch');
      assert.deepEqual(c.differences, ['rows']);
      const key = (r: { side: string; row: string[] }): string => JSON.stringify(r);
      assert.deepEqual(c.rows.map(key).sort(), t.expect.map(key).sort());
    });
  }
}

test('a changed column type or name differs; the rows alone do not', () => {
  const rows = ROWS.map((r) => m.dataRow(r));
  const p = summarize([rowDesc([['id', 23], ['name', 25]]), ...rows, m.commandComplete('SELECT 3')], U);
  const typed = summarize([rowDesc([['id', 20], ['name', 25]]), ...rows, m.commandComplete('SELECT 3')], U);
  const named = summarize([rowDesc([['id', 23], ['label', 25]]), ...rows, m.commandComplete('SELECT 3')], U);
  const fewer = summarize([rowDesc([['id', 23]]), ...rows, m.commandComplete('SELECT 3')], U);
  assert.deepEqual(compare(p, typed), { verdict: 'mismatch', differences: ['columns: #1 id/23 vs id/20'], rows: [] });
  assert.deepEqual(compare(p, named).differences, ['columns: #2 name/25 vs label/25']);
  assert.deepEqual(compare(p, fewer).differences, ['columns: #2 name/25 vs none']);
});

const OUTCOMES: { name: string; primary: Buffer[]; mirror: Buffer[]; verdict: 'match' | 'mismatch'; differences: string[] }[] = [
  { name: 'error vs success', primary: err('42P01', 'no table'), mirror: select(ROWS), verdict: 'mismatch', differences: ['error vs success'] },
  { name: 'success vs error', primary: select(ROWS), mirror: err('42P01', 'no table'), verdict: 'mismatch', differences: ['success vs error'] },
  { name: 'different SQLSTATEs', primary: err('23505', 'duplicate key'), mirror: err('42P01', 'no table'), verdict: 'mismatch', differences: ['sqlstate 23505 vs 42P01'] },
  {
    name: 'same SQLSTATE, different message',
    primary: err('23505', 'duplicate key value violates unique constraint "t_pkey"'),
    mirror: err('23505', 'duplicate key value violates unique constraint "t_pkey1"'),
    verdict: 'match',
    differences: [],
  },
  {
    name: 'an error after some rows still compares as an error',
    primary: [m.rowDescription(['a']), m.dataRow(['1']), ...err('22012', 'division by zero')],
    mirror: err('22012', 'division by zero'),
    verdict: 'match',
    differences: [],
  },
  { name: 'INSERT tag OID ignored', primary: [m.commandComplete('INSERT 0 1')], mirror: [m.commandComplete('INSERT 16384 1')], verdict: 'match', differences: [] },
  {
    name: 'INSERT row count in the tag compared',
    primary: [m.commandComplete('INSERT 0 1')],
    mirror: [m.commandComplete('INSERT 0 2')],
    verdict: 'mismatch',
    differences: ['command tag INSERT 0 1 vs INSERT 0 2'],
  },
  { name: 'other tags exactly', primary: [m.commandComplete('UPDATE 3')], mirror: [m.commandComplete('UPDATE 4')], verdict: 'mismatch', differences: ['command tag UPDATE 3 vs UPDATE 4'] },
  {
    name: 'a missing row',
    primary: select(ROWS),
    mirror: select(ROWS.slice(0, 2)),
    verdict: 'mismatch',
    differences: ['command tag SELECT 3 vs SELECT 2', 'row count 3 vs 2', 'rows'],
  },
];

for (const t of OUTCOMES) {
  test(`outcome: ${t.name}`, () => {
    const c = compare(summarize(t.primary, U), summarize(t.mirror, U));
    assert.equal(c.verdict, t.verdict);
    assert.deepEqual(c.differences, t.differences);
  });
}

test('differing rows are marked with their side and bounded by the limit', () => {
  const p = summarize(select(Array.from({ length: 10 }, (_, i) => [`p${i}`, 'x'])), U);
  const q = summarize(select(Array.from({ length: 10 }, (_, i) => [`q${i}`, 'x'])), U);
  const all = compare(p, q, 100);
  assert.equal(all.rows.length, 20);
  assert.deepEqual(new Set(all.rows.filter((r) => r.side === 'primary').map((r) => r.row[0]!.charAt(0))), new Set(['p']));
  assert.deepEqual(new Set(all.rows.filter((r) => r.side === 'mirror').map((r) => r.row[0]!.charAt(0))), new Set(['q']));
  assert.equal(compare(p, q).rows.length, 5, 'default limit');
  assert.equal(compare(p, q, 3).rows.length, 3);
  assert.equal(compare(p, q, 0).rows.length, 0);
  const po = summarize(select(Array.from({ length: 10 }, (_, i) => [`p${i}`, 'x'])), O);
  const qo = summarize(select(Array.from({ length: 10 }, (_, i) => [`q${i}`, 'x'])), O);
  assert.equal(compare(po, qo, 3).rows.length, 3);
});

test('samples are bounded and long cells cut', () => {
  const rows: Row[] = Array.from({ length: 50 }, (_, i) => [String(i), 'x'.repeat(300)]);
  const o = summarize(select(rows), { ordered: true, sampleRows: 4, maxCellChars: 10 });
  assert.equal(o.rows, 50);
  assert.deepEqual(o.sample, [0, 1, 2, 3].map((i) => [String(i), 'x'.repeat(10) + '…']));
  assert.equal(o.sampleDigests.length, 4);
  const u = summarize(select(rows), { ordered: false, sampleRows: 4, maxCellChars: 10 });
  assert.equal(u.sample.length, 4);
  for (const r of u.sample) assert.equal(r[1], 'x'.repeat(10) + '…');
  const d = summarize(select(rows), U);
  assert.equal(d.sample.length, 20, 'default sampleRows');
  assert.equal(d.sample[0]![1]!.length, 201, 'default maxCellChars, plus the ellipsis');
  // A cut never splits a surrogate pair.
  const emoji = summarize(select([['😀😀😀']], ['a']), { ordered: true, maxCellChars: 3 });
  assert.equal(emoji.sample[0]![0], '😀…');
  // Binary cells show as hex.
  const bin = summarize([rowDesc([['b', 17]], 1), m.dataRow(['\x01\x02']), m.commandComplete('SELECT 1')], O);
  assert.deepEqual(bin.sample, [['\\x0102']]);
});

test('unordered samples hold the same rows whatever order they came in: the smallest digests', () => {
  const rows: Row[] = Array.from({ length: 100 }, (_, i) => [String(i), i % 3 === 0 ? null : `v${i}`]);
  const reversed = [...rows].reverse();
  const rotated = [...rows.slice(37), ...rows.slice(0, 37)];
  const a = summarize(select(rows), { ordered: false, sampleRows: 5 });
  const b = summarize(select(reversed), { ordered: false, sampleRows: 5 });
  const c = summarize(select(rotated), { ordered: false, sampleRows: 5 });
  assert.deepEqual(b.sample, a.sample);
  assert.deepEqual(c.sample, a.sample);
  const smallest = [...rows].sort((x, y) => (digestOf(x) < digestOf(y) ? -1 : 1)).slice(0, 5);
  assert.deepEqual(a.sampleDigests, smallest.map(digestOf));
  assert.deepEqual(a.sample, smallest.map((r) => r.map((v) => v ?? '\\N')));
});

test('a row beyond one sample is not reported as missing when an extra row pushed it out of the other', () => {
  const common: Row[] = Array.from({ length: 30 }, (_, i) => [String(i), 'c']);
  const floor = common.map(digestOf).sort()[0]!;
  let extra: Row | undefined;
  for (let i = 0; extra === undefined; i++) if (digestOf([`x${i}`, 'e']) < floor) extra = [`x${i}`, 'e'];
  const opts = { ordered: false, sampleRows: 5 };
  const p = summarize(select(common), opts);
  const q = summarize(select([...common, extra]), opts);
  const c = compare(p, q);
  assert.equal(c.verdict, 'mismatch');
  assert.deepEqual(c.differences, ['command tag SELECT 30 vs SELECT 31', 'row count 30 vs 31', 'rows']);
  assert.deepEqual(c.rows, [{ side: 'mirror', row: extra }]);
});

test('ordered: rows past the end of the other side are reported; rows past its sample are not', () => {
  const p = summarize(select(ROWS), O);
  const q = summarize(select([...ROWS, ['4', 'four']]), O);
  assert.deepEqual(compare(p, q).rows, [{ side: 'mirror', row: ['4', 'four'] }]);
  assert.deepEqual(compare(q, p).rows, [{ side: 'primary', row: ['4', 'four'] }]);
  // The primary's sample stops at 2 rows of 3: its row 2 is unknown, so the mirror's row 2 is not reported.
  const short = summarize(select(ROWS), { ordered: true, sampleRows: 2 });
  const changed = summarize(select([ROWS[0]!, ROWS[1]!, ['3', 'changed']]), O);
  const c = compare(short, changed);
  assert.deepEqual([c.differences, c.rows], [['rows'], []]);
});

test('ordered and unordered hashes of the same rows differ, and comparing them is refused', () => {
  const o = summarize(select(ROWS), O);
  const u = summarize(select(ROWS), U);
  assert.notEqual(o.hash, u.hash);
  assert.throws(() => compare(o, u), TypeError);
});

test('the hashes are the documented functions of the rows', () => {
  const rows: Row[] = [...ROWS, ['1', 'one']];
  const bodies = rows.map((r) => m.dataRow(r).subarray(5));
  const ordered = createHash('sha256');
  for (const b of bodies) ordered.update(b);
  assert.equal(summarize(select(rows), O).hash, ordered.digest('hex'));
  // Unordered: SHA-256 of 'multiset\0', the 128-bit sum of the row digests and the 64-bit row count.
  const sum = rows.reduce((acc, r) => (acc + BigInt('0x' + digestOf(r))) % (1n << 128n), 0n);
  const tail = Buffer.from(sum.toString(16).padStart(32, '0') + rows.length.toString(16).padStart(16, '0'), 'hex');
  assert.equal(summarize(select(rows), U).hash, createHash('sha256').update('multiset\0').update(tail).digest('hex'));
});

test('the builder refuses bad options and messages after finish()', () => {
  assert.throws(() => new SummaryBuilder({ ordered: true, sampleRows: -1 }), RangeError);
  assert.throws(() => new SummaryBuilder({ ordered: true, maxCellChars: 0 }), RangeError);
  const b = new SummaryBuilder(U);
  const s = b.finish();
  assert.equal(b.finish(), s);
  assert.throws(() => b.add(m.dataRow(['1'])), /after finish/);
});

const ORDERED: [sql: string, ordered: boolean][] = [
  ['SELECT a FROM t ORDER BY a', true],
  ['select a from t order by a desc limit 10', true],
  ['(SELECT a FROM t ORDER BY a)', true],
  ['SELECT a FROM t', false],
  ['SELECT a FROM t UNION SELECT b FROM u ORDER BY 1', true],
  ['SELECT a FROM t UNION ALL SELECT b FROM u', false],
  ['SELECT a FROM t UNION ALL (SELECT b FROM u ORDER BY b)', false],
  ['WITH x AS (SELECT a FROM t) SELECT a FROM x ORDER BY a', true],
  ['WITH x AS (SELECT a FROM t ORDER BY a) SELECT a FROM x', false],
  ['SELECT * FROM (SELECT a FROM t ORDER BY a) s', false],
  ['VALUES (2), (1)', false],
  ['VALUES (2), (1) ORDER BY 1', true],
  ['EXPLAIN SELECT a FROM t ORDER BY a', false],
  ['EXPLAIN ANALYZE SELECT a FROM t ORDER BY a', false],
  ['SELECT a FROM t ORDER BY a FOR UPDATE', true],
  ['DELETE FROM t WHERE a IN (SELECT a FROM t ORDER BY a LIMIT 1) RETURNING a', false],
  ['SELECT a FROM t ORDER BY a; SELECT 1', false],
  ['SELECT a FROM t ORDER BY', false],
  ['', false],
  ['-- only a comment', false],
];

// The router decides it with the statement's route (and caches it with the decision): what the mirror uses.
const router = new Router();
for (const [sql, ordered] of ORDERED) {
  test(`route(${JSON.stringify(sql)}).ordered is ${ordered}`, () => {
    assert.equal(router.route(sql).ordered === true, ordered);
  });
}
