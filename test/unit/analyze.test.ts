// Unit tests for the session-effect analysis of SQL text (src/session/analyze.ts), its prefilter and its speed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyze, loadParser, mayHaveEffects, type SessionEffects } from '../../src/session/analyze.js';

await loadParser();

type Expected = Partial<Omit<SessionEffects, 'plain'>>;

/** The full result a case expects: the fields it names, everything else empty; plain when it names none. */
function full(e: Expected): SessionEffects {
  return {
    set: [], reset: [], resetAll: false, discardAll: false, prepare: [], deallocate: [], deallocateAll: false,
    execute: [], listen: [], unlisten: [], unlistenAll: false, pins: [], mayUnpin: false,
    ...e,
    plain: Object.keys(e).length === 0,
  };
}

const PLAIN: Expected = {};

// [sql, expected]: every effect, and look-alikes that have none.
const cases: Array<[string, Expected]> = [
  // --- set
  ['SET search_path TO a, b', { set: ['search_path'] }],
  ['SET SESSION statement_timeout = 5000', { set: ['statement_timeout'] }],
  ['set Statement_Timeout to 5', { set: ['statement_timeout'] }],
  ['SET work_mem FROM CURRENT', { set: ['work_mem'] }],
  ["SELECT set_config('app.user', '42', false)", { set: ['app.user'] }],
  ["SELECT pg_catalog.set_config('app.user', '42', 'false')", { set: ['app.user'] }],
  ["SELECT set_config('app.user', '42', 'off'::boolean)", { set: ['app.user'] }],
  ["SELECT set_config('app.user'::text, '42', 'f')", { set: ['app.user'] }],
  ["SELECT count(*) FROM t WHERE set_config('app.user', t.v, false) IS NOT NULL", { set: ['app.user'] }],
  ["SET TIME ZONE 'UTC'", { set: ['timezone'] }],
  ["SET NAMES 'UTF8'", { set: ['client_encoding'] }],
  ["SET SCHEMA 'app'", { set: ['search_path'] }],
  ['SET XML OPTION CONTENT', { set: ['xmloption'] }],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE', { set: ['default_transaction_isolation'] }],
  [
    'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, DEFERRABLE',
    { set: ['default_transaction_read_only', 'default_transaction_deferrable'] },
  ],
  // GUC names are case-insensitive in PostgreSQL: lowercased whether quoted or not.
  ['SET "MyApp".Tenant = 5', { set: ['myapp.tenant'] }],
  ['SET "Search_Path" = a', { set: ['search_path'] }],
  ["SELECT set_config('MyApp.Tenant', '1', false)", { set: ['myapp.tenant'] }],
  // A function name spelt with Unicode escapes is still set_config.
  [`SELECT U&"set_confi\\0067"('a.b', 'c', false)`, { set: ['a.b'] }],
  // --- reset
  ['RESET work_mem', { reset: ['work_mem'] }],
  ['SET work_mem TO DEFAULT', { reset: ['work_mem'] }],
  ['SET search_path = DEFAULT', { reset: ['search_path'] }],
  ['SET TIME ZONE LOCAL', { reset: ['timezone'] }],
  ['RESET TIME ZONE', { reset: ['timezone'] }],
  ["SELECT set_config('work_mem', NULL, false)", { reset: ['work_mem'] }],
  ['RESET ALL', { resetAll: true, mayUnpin: true }],
  // --- discard
  ['DISCARD ALL', { resetAll: true, discardAll: true, deallocateAll: true, unlistenAll: true, mayUnpin: true }],
  ['DISCARD PLANS', { mayUnpin: true }],
  ['DISCARD TEMP', { mayUnpin: true }],
  ['DISCARD SEQUENCES', { mayUnpin: true }],
  // --- prepare / deallocate / execute
  ['PREPARE q(int) AS SELECT $1', { prepare: [{ name: 'q', text: 'PREPARE q(int) AS SELECT $1' }] }],
  ['  PREPARE q AS SELECT 1 ;  ', { prepare: [{ name: 'q', text: 'PREPARE q AS SELECT 1' }] }],
  ['PREPARE "Mixed" AS SELECT 1', { prepare: [{ name: 'Mixed', text: 'PREPARE "Mixed" AS SELECT 1' }] }],
  // Offsets are UTF-8 bytes; trailing comments are cut (a `--` one would swallow what follows when joined).
  [
    "SELECT 'é'; PREPARE p AS SELECT 'ü' -- trailing\n; SELECT 2",
    { prepare: [{ name: 'p', text: "PREPARE p AS SELECT 'ü'" }] },
  ],
  ['/* lead */ PREPARE p AS SELECT 1 /* trail */ -- more', { prepare: [{ name: 'p', text: 'PREPARE p AS SELECT 1' }] }],
  ["PREPARE p AS SELECT '--' /* x */ || 'y'", { prepare: [{ name: 'p', text: "PREPARE p AS SELECT '--' /* x */ || 'y'" }] }],
  ['DEALLOCATE q', { deallocate: ['q'] }],
  ['DEALLOCATE PREPARE q', { deallocate: ['q'] }],
  ['DEALLOCATE ALL', { deallocateAll: true }],
  ['EXECUTE q(1)', { execute: ['q'] }],
  ['EXPLAIN ANALYZE EXECUTE q(1)', { execute: ['q'] }],
  ['EXPLAIN (ANALYZE, BUFFERS) EXECUTE q', { execute: ['q'] }],
  ['CREATE TABLE t AS EXECUTE q', { execute: ['q'] }],
  ['CREATE TEMP TABLE t AS EXECUTE q', { execute: ['q'], pins: ['temp_table'] }],
  // --- listen
  ['LISTEN jobs', { listen: ['jobs'] }],
  ['LISTEN "Jobs"', { listen: ['Jobs'] }],
  ['UNLISTEN jobs', { unlisten: ['jobs'] }],
  ['UNLISTEN *', { unlistenAll: true }],
  // --- pins: advisory locks, anywhere in the tree
  ['SELECT pg_advisory_lock(1)', { pins: ['advisory_lock'] }],
  ['SELECT pg_catalog.pg_advisory_lock_shared(1, 2)', { pins: ['advisory_lock'] }],
  ['SELECT pg_try_advisory_lock(42)', { pins: ['advisory_lock'] }],
  ['SELECT pg_try_advisory_lock_shared(42)', { pins: ['advisory_lock'] }],
  ['WITH x AS (SELECT pg_try_advisory_lock(7) AS ok) SELECT ok FROM x', { pins: ['advisory_lock'] }],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE pg_try_advisory_lock(u.id))', { pins: ['advisory_lock'] }],
  ["SELECT length(pg_advisory_lock(hashtext('k'))::text)", { pins: ['advisory_lock'] }],
  ['SELECT CASE WHEN x THEN pg_advisory_lock(1) END FROM t', { pins: ['advisory_lock'] }],
  // --- pins: temporary objects
  ['CREATE TEMP TABLE t (a int)', { pins: ['temp_table'] }],
  ['CREATE TEMPORARY TABLE IF NOT EXISTS t (a int)', { pins: ['temp_table'] }],
  ['CREATE LOCAL TEMP TABLE t (a int)', { pins: ['temp_table'] }],
  ['CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS', { pins: ['temp_table'] }],
  ['CREATE TEMP VIEW v AS SELECT 1', { pins: ['temp_table'] }],
  ['CREATE OR REPLACE TEMP VIEW v AS SELECT 1', { pins: ['temp_table'] }],
  ['CREATE TEMPORARY SEQUENCE s', { pins: ['temp_table'] }],
  ['CREATE TABLE pg_temp.t (a int)', { pins: ['temp_table'] }],
  ['CREATE SEQUENCE pg_temp.s', { pins: ['temp_table'] }],
  ['CREATE TEMP TABLE t AS SELECT 1', { pins: ['temp_table'] }],
  ['SELECT 1 AS a INTO TEMP t', { pins: ['temp_table'] }],
  ['SELECT * INTO TEMPORARY TABLE t FROM u', { pins: ['temp_table'] }],
  ['SELECT 1 INTO TEMP t UNION SELECT 2', { pins: ['temp_table'] }],
  ['EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1', { pins: ['temp_table'] }],
  ["CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'select 1'", { pins: ['temp_table'] }],
  ['CREATE TYPE pg_temp.ty AS (a int)', { pins: ['temp_table'] }],
  // --- pins: cursors WITH HOLD
  ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', { pins: ['cursor_with_hold'] }],
  ['DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t', { pins: ['cursor_with_hold'] }],
  // --- pins: role and session authorization
  ['SET ROLE admin', { pins: ['set_role'] }],
  ['SET SESSION ROLE admin', { pins: ['set_role'] }],
  ["SET role = 'admin'", { pins: ['set_role'] }],
  ["SET ROLE 'NONE'", { pins: ['set_role'] }], // a role named NONE: check_role only treats lower-case none as RESET
  ["SELECT set_config('role', 'admin', false)", { pins: ['set_role'] }],
  ['SET SESSION AUTHORIZATION alice', { pins: ['session_authorization'] }],
  ["SET SESSION AUTHORIZATION 'alice'", { pins: ['session_authorization'] }],
  ["SELECT set_config('session_authorization', 'alice', false)", { pins: ['session_authorization'] }],
  // --- pins: set_config the text cannot settle
  ["SELECT set_config(name, 'x', false) FROM t", { pins: ['dynamic_set_config'] }],
  ["SELECT set_config('a.b', 'x', is_local) FROM t", { pins: ['dynamic_set_config'] }],
  ["SELECT set_config('a.b', 'x', NULL)", { pins: ['dynamic_set_config'] }],
  ["SELECT set_config('a.b', 'x', 'maybe')", { pins: ['dynamic_set_config'] }],
  ["SELECT set_config('a.' || 'b', 'x', false)", { pins: ['dynamic_set_config'] }],
  ["SELECT set_config(setting_name => 'a.b', new_value => 'x', is_local => false)", { pins: ['dynamic_set_config'] }],
  // --- pins: unique, in order of appearance
  ['SELECT pg_advisory_lock(1); SET ROLE x; SELECT pg_advisory_lock(2)', { pins: ['advisory_lock', 'set_role'] }],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT pg_advisory_lock(1)', { pins: ['cursor_with_hold', 'advisory_lock'] }],
  // --- mayUnpin
  ['SELECT pg_advisory_unlock(1)', { mayUnpin: true }],
  ['SELECT pg_advisory_unlock_shared(1)', { mayUnpin: true }],
  ['SELECT pg_advisory_unlock_all()', { mayUnpin: true }],
  ['DROP TABLE t', { mayUnpin: true }],
  ['DROP TABLE IF EXISTS pg_temp.t, u CASCADE', { mayUnpin: true }],
  ['DROP OWNED BY CURRENT_USER', { mayUnpin: true }],
  ['DROP SEQUENCE s', { mayUnpin: true }],
  ['CLOSE c', { mayUnpin: true }],
  ['CLOSE ALL', { mayUnpin: true }],
  ['RESET ROLE', { mayUnpin: true }],
  ['SET ROLE NONE', { mayUnpin: true }],
  ['SET role TO DEFAULT', { mayUnpin: true }],
  ['RESET SESSION AUTHORIZATION', { mayUnpin: true }],
  ['SET SESSION AUTHORIZATION DEFAULT', { mayUnpin: true }],
  ["SELECT set_config('role', 'none', false)", { mayUnpin: true }],
  // --- no session effect
  ['SELECT 1', PLAIN],
  ['SET LOCAL work_mem = 1', PLAIN],
  ['SET LOCAL search_path TO a', PLAIN],
  ['SET LOCAL ROLE admin', PLAIN],
  ['SET LOCAL SESSION AUTHORIZATION alice', PLAIN],
  ["SELECT set_config('a.b', 'x', true)", PLAIN],
  ["SELECT set_config('a.b', 'x', 'on')", PLAIN],
  ["SELECT set_config('role', 'admin', true)", PLAIN],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', PLAIN],
  ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", PLAIN],
  ['SET CONSTRAINTS ALL DEFERRED', PLAIN],
  ['SELECT pg_advisory_xact_lock(1)', PLAIN],
  ['SELECT pg_try_advisory_xact_lock_shared(1)', PLAIN],
  ['CREATE TABLE t (a int)', PLAIN],
  ['CREATE UNLOGGED TABLE t (a int)', PLAIN],
  ['CREATE TABLE t AS SELECT 1', PLAIN],
  ['SELECT 1 AS a INTO t', PLAIN],
  ['CREATE TEMP TABLE t (a int) ON COMMIT DROP', PLAIN], // gone when its transaction ends
  ['DECLARE c CURSOR FOR SELECT 1', PLAIN],
  ['DECLARE c SCROLL CURSOR WITHOUT HOLD FOR SELECT 1', PLAIN],
  ['SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 20', PLAIN],
  ['UPDATE t SET a = 1 WHERE b = 2', PLAIN],
  ['UPDATE t\nSET a = 1', PLAIN],
  ['UPDATE t /* set */ SET a = 1', PLAIN],
  ['INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b', PLAIN],
  ['ALTER TABLE t ALTER COLUMN a SET DEFAULT 1', PLAIN],
  ['ALTER TABLE t DROP COLUMN a', PLAIN],
  ['ALTER ROLE r SET work_mem = 1', PLAIN],
  ["CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'select 1'", PLAIN],
  ['SELECT temp FROM weather', PLAIN],
  ['INSERT INTO readings (temp) VALUES (21.5)', PLAIN],
  ['SELECT * FROM pg_temp.t', PLAIN],
  ["SELECT 'SET x = 1'", PLAIN],
  ["SELECT 'a; SET x = 1; PREPARE p AS SELECT 1'", PLAIN],
  ['SELECT settings, offset_x, reset_at, closed, dropped, temperature FROM t', PLAIN],
  ['SHOW search_path', PLAIN],
  ['BEGIN; SELECT 1; COMMIT', PLAIN],
  ["PREPARE TRANSACTION 'tx1'", PLAIN],
  ["COMMIT PREPARED 'tx1'", PLAIN],
  ['GRANT EXECUTE ON FUNCTION f() TO r', PLAIN],
  ['CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', PLAIN],
  ['NOTIFY jobs', PLAIN],
  ['', PLAIN],
  // --- several statements: the net effect, in order
  ['BEGIN; SET search_path = a; COMMIT', { set: ['search_path'] }],
  ['SET a.b = 1; SET a.b = 2', { set: ['a.b'] }],
  ['SET a.x = 1; RESET a.x', { reset: ['a.x'] }],
  ['RESET a.x; SET a.x = 1', { set: ['a.x'] }],
  ['SET a.x = 1; RESET ALL; SET a.y = 2', { set: ['a.y'], resetAll: true, mayUnpin: true }],
  ['SET a.x = 1; LISTEN c; PREPARE p AS SELECT 1; DISCARD ALL', {
    resetAll: true, discardAll: true, deallocateAll: true, unlistenAll: true, mayUnpin: true,
  }],
  ['LISTEN a; UNLISTEN a', { unlisten: ['a'] }],
  ['UNLISTEN *; LISTEN a', { listen: ['a'], unlistenAll: true }],
  ['PREPARE p AS SELECT 1; DEALLOCATE p', { deallocate: ['p'] }],
  ['DEALLOCATE ALL; PREPARE p AS SELECT 1', { deallocateAll: true, prepare: [{ name: 'p', text: 'PREPARE p AS SELECT 1' }] }],
  // EXECUTE lists only statements that must exist before the string runs.
  ['PREPARE p AS SELECT 1; EXECUTE p; EXECUTE q', { prepare: [{ name: 'p', text: 'PREPARE p AS SELECT 1' }], execute: ['q'] }],
  ['CREATE TEMP TABLE t (a int); DROP TABLE t', { pins: ['temp_table'], mayUnpin: true }],
  ['SELECT 1; SET application_name = \'x\'; SELECT pg_advisory_lock(1)', { set: ['application_name'], pins: ['advisory_lock'] }],
  // --- comments before the statement
  ['/* app:web */ SET search_path = a', { set: ['search_path'] }],
  ['-- app:web\nSET search_path = a', { set: ['search_path'] }],
  ["-- c1\n/* c2 /* nested */ */\n  set application_name = 'x'", { set: ['application_name'] }],
  ['SELECT 1; /* x */ RESET work_mem', { reset: ['work_mem'] }],
  ['SELECT 1 -- c\n; DEALLOCATE p', { deallocate: ['p'] }],
  ['/* x */ LISTEN a', { listen: ['a'] }],
];

for (const [sql, expected] of cases) {
  test(`analyze ${JSON.stringify(sql)}`, () => {
    assert.deepEqual({ ...analyze(sql) }, full(expected));
  });
}

test('every case with an effect passes the prefilter', () => {
  for (const [sql, expected] of cases) {
    if (Object.keys(expected).length > 0) assert.ok(mayHaveEffects(sql), sql);
  }
});

test('the hot path skips the parser for common statements', () => {
  for (const sql of [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 12345;',
    'UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 5678;',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);',
    'SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 20',
    'BEGIN',
    'COMMIT',
    'SELECT temp FROM weather',
  ]) {
    assert.equal(mayHaveEffects(sql), false, sql);
  }
});

test('prefilter: statement words count at a statement start only; stems inside other words do not count', () => {
  const cases: Array<[string, boolean]> = [
    ['SELECT 1;RESET a', true],
    ['SELECT 1;\tUNLISTEN a', true],
    ['select 1;\n\n  close c', true],
    ['/*x*/DROP TABLE t', true],
    ['-- note\nUPDATE t\nSET a = 1', true], // a line comment might end just before SET: parse to be sure
    ['UPDATE t SET a = 1 -- note', false],
    ['SELECT dataset, preset, upset, offset_v, settings, resets, closet, dropped FROM t', false],
    ['SELECT a FROM settemp', false],
    ['SELECT a FROM t WHERE prepared AND discarded AND listened', false],
    ['SELECT * FROM t WHERE note = \'pg_temp\'', false],
    ['CREATE TABLE temperatures (t int)', false],
    ['INSERT INTO pg_temp_3.t VALUES (1)', true],
    ['CREATE TEMPORARY TABLE t (a int)', true],
    ['SELECT x FROM U&"t"', true],
    ['SELECT my_set_config(1)', true],
    ['SELECT pg_advisory_lock(1)', true],
    ['EXPLAIN EXECUTE p', true],
    ['SELECT executed FROM t', false],
  ];
  for (const [sql, expected] of cases) assert.equal(mayHaveEffects(sql), expected, sql);
});

test('a parse error is reported with the parser message and nothing else', () => {
  const fx = analyze('SET search_path = ');
  assert.match(fx.parseError ?? '', /syntax error/);
  const { parseError: _, ...rest } = fx;
  assert.deepEqual(rest, { ...full({}), plain: false });
  assert.match(analyze('SELECT 1; sel; SET a.b = 1').parseError ?? '', /syntax error at or near "sel"/);
  assert.match(analyze('PREPARE').parseError ?? '', /syntax error/);
});

test('results are frozen; plain results are one shared object; repeated texts come from the cache', () => {
  const plain = analyze('SELECT 1');
  assert.equal(plain.plain, true);
  assert.ok(Object.isFrozen(plain) && Object.isFrozen(plain.set) && Object.isFrozen(plain.pins));
  assert.equal(analyze('SELECT 2'), plain); // prefilter
  assert.equal(analyze("SELECT 'x; SET a = 1'"), plain); // parsed, no effect
  assert.equal(analyze('SET LOCAL work_mem = 1'), plain);
  const fx = analyze('PREPARE c1 AS SELECT 1');
  assert.ok(Object.isFrozen(fx) && Object.isFrozen(fx.prepare) && Object.isFrozen(fx.prepare[0]));
  assert.equal(analyze('PREPARE c1 AS SELECT 1'), fx);
  assert.throws(() => (fx.set as string[]).push('x'), TypeError);
});

test('the cache is bounded at 2000 texts and keeps the recently used ones', () => {
  const first = analyze('SET cache.first = 1');
  for (let i = 0; i < 1999; i++) {
    analyze(`SET cache.filler = ${i}`);
    if (i % 100 === 0) assert.equal(analyze('SET cache.first = 1'), first); // used again: not evicted
  }
  const second = analyze('SET cache.second = 1');
  for (let i = 0; i < 2000; i++) analyze(`SET cache.other = ${i}`);
  assert.notEqual(analyze('SET cache.second = 1'), second); // evicted: analysed again, a new object
  assert.deepEqual({ ...analyze('SET cache.second = 1') }, { ...second });
});

test('loadParser is idempotent', async () => {
  await loadParser();
  await loadParser();
  assert.deepEqual(analyze('RESET idem.x').reset, ['idem.x']);
});

test('benchmark: ns per analyze() on pgbench statements (not an assertion)', () => {
  // Flat strings, as decoded from a Query message (template literals would be ropes, slower to scan),
  // 1000 of each cycled: results for plain texts are never cached, so repeating a text does not help
  // analyze(); it only keeps the texts in the CPU cache, as a query decoded a moment ago is.
  const flat = (s: string) => Buffer.from(s).toString();
  const select = Array.from({ length: 1000 }, (_, i) => flat(`SELECT abalance FROM pgbench_accounts WHERE aid = ${(i * 7919) % 100000};`));
  const update = Array.from({ length: 1000 }, (_, i) =>
    flat(`UPDATE pgbench_accounts SET abalance = abalance + ${(i % 10000) - 5000} WHERE aid = ${(i * 7919) % 100000};`),
  );
  // The best of 5 runs, after a warm-up long enough for V8 to optimise: the machine may be busy.
  const perCall = (texts: string[], rounds: number): number => {
    for (let r = 0; r < 50; r++) for (const t of texts) analyze(t);
    let best = Infinity;
    for (let run = 0; run < 5; run++) {
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) for (const t of texts) analyze(t);
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / (texts.length * rounds));
    }
    return best;
  };
  // Past the prefilter and the cache: every text new, so every one is parsed.
  const parsed = Array.from({ length: 6000 }, (_, i) => flat(`SET application_name = 'bench ${i}'`));
  for (let i = 0; i < 1000; i++) analyze(parsed[i]!); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 1000; i < parsed.length; i++) analyze(parsed[i]!);
  const parsedNs = Number(process.hrtime.bigint() - t0) / (parsed.length - 1000);
  const selectNs = perCall(select, 100);
  const updateNs = perCall(update, 100);
  console.log(
    `analyze(): pgbench SELECT ${selectNs.toFixed(0)} ns, pgbench UPDATE ... SET ${updateNs.toFixed(0)} ns, ` +
      `SET past prefilter and cache (parsed) ${(parsedNs / 1000).toFixed(1)} µs`,
  );
});
