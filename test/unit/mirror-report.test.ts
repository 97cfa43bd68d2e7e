// The mirror report's pure parts: fingerprints, log-scale latency percentiles, per-fingerprint counts
// with a cap, and the text table.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyHistogram, MirrorReport, OTHER, fingerprint, formatReport } from '../../src/mirror/report.js';

test('fingerprints: constants and constant lists replaced, whitespace collapsed, everything else kept', () => {
  const cases: [string, string][] = [
    ['SELECT * FROM t WHERE id = 1', 'SELECT * FROM t WHERE id = ?'],
    ["SELECT * FROM t WHERE name = 'x'  AND  n > 2.5", 'SELECT * FROM t WHERE name = ? AND n > ?'],
    ['SELECT * FROM t WHERE id IN (1, 2, 3, 4)', 'SELECT * FROM t WHERE id IN (...)'],
    ['SELECT $1::int', 'SELECT $1::int'],
    ['SELECT "Col1" FROM "T"', 'SELECT "Col1" FROM "T"'],
  ];
  for (const [sql, want] of cases) assert.equal(fingerprint(sql), want, sql);
  assert.equal(fingerprint('SELECT * FROM t WHERE id = 1'), fingerprint('SELECT *  FROM t WHERE id = 987'));
  assert.notEqual(fingerprint('SELECT a FROM t'), fingerprint('SELECT b FROM t'));
});

test('latency percentiles are within one bucket (about 9 %) of the exact ones and never above the maximum', () => {
  const h = new LatencyHistogram();
  assert.equal(h.percentile(50), undefined);
  const values: number[] = [];
  for (let i = 1; i <= 1000; i++) values.push(i * 0.1); // 0.1 .. 100 ms
  for (const v of values) h.record(v);
  const exact = (p: number) => values[Math.ceil((p / 100) * values.length) - 1]!;
  for (const p of [50, 95, 99]) {
    const got = h.percentile(p)!;
    assert.ok(got >= exact(p) && got <= exact(p) * 1.1, `p${p}: ${got} vs ${exact(p)}`);
  }
  assert.equal(h.percentile(100), 100);
  assert.equal(h.count, 1000);
  const tiny = new LatencyHistogram();
  tiny.record(0);
  tiny.record(0.0001);
  assert.ok(tiny.percentile(99)! <= 0.001);
});

test('counts per fingerprint; the most mirrored first; the cap sends new statements to one line', () => {
  const r = new MirrorReport({ maxFingerprints: 2 });
  r.record('SELECT 1', 'match', 1, 2);
  r.record('SELECT 2', 'mismatch', 1, 2); // same fingerprint as SELECT 1
  r.record('SELECT 3', 'lag', 3);
  r.record('SELECT a FROM t WHERE id = 5', 'error', 2);
  r.dropped('SELECT a FROM t WHERE id = 6');
  r.record('SELECT b FROM u', 'match', 1, 1); // a third fingerprint: over the cap
  const rows = r.rows();
  assert.deepEqual(
    rows.map((x) => [x.fingerprint, x.mirrored, x.matched, x.mismatched, x.lag, x.errors, x.dropped]),
    [
      ['SELECT ?', 3, 1, 1, 1, 0, 0],
      ['SELECT a FROM t WHERE id = ?', 1, 0, 0, 0, 1, 1],
      [OTHER, 1, 1, 0, 0, 0, 0],
    ],
  );
  assert.deepEqual(rows[0]!.mirror_ms, { p50: 2, p95: 2, p99: 2 });
  assert.deepEqual(rows[1]!.mirror_ms, { p50: null, p95: null, p99: null }, 'no mirror latency when the copy could not run');
  assert.equal(rows[0]!.primary_ms.p99, 3);
});

test('the text table: a header, a rule, one line per fingerprint, long statements cut', () => {
  const r = new MirrorReport();
  r.record(`SELECT ${'x, '.repeat(40)}y FROM t`, 'match', 1.234, 2.5);
  r.record('SELECT 1', 'mismatch', 12, 15);
  const text = formatReport(r.rows(), 30);
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^statement\s+mirrored\s+match\s+mismatch\s+lag\s+errors\s+dropped\s+primary p50\/p95\/p99 ms\s+mirror p50\/p95\/p99 ms$/);
  assert.match(lines[1]!, /^-+( +-+){8}$/);
  assert.ok(lines.some((l) => /^SELECT x, x, .*…\s+1\s+1\s+0/.test(l)), text);
  assert.ok(lines.some((l) => /^SELECT \?\s+1\s+0\s+1\s+0\s+0\s+0\s+12 \/ 12 \/ 12\s+15 \/ 15 \/ 15$/.test(l)), text);
});
