// Shadow traffic (issue 7) against real servers: a standalone mirror whose data differs in a few rows
// (mismatches with the right rows, identical statements matched, ordered and unordered, node-postgres
// simple / unnamed / named statements and postgres.js), a caught-up replica under pgbench -S (no
// mismatch) and one whose replay is paused while writes go on (lag, not mismatch), errors on one side,
// session settings and prepared statements carried to the mirror, the queue drop path with a stopped
// mirror server, a mirror server or replica that is down, copy timeouts, filters and switching at run
// time (API included), statements: all (autocommit writes only), and state a copy could not reproduce
// (SET LOCAL, an uncommitted SET, a cursor) keeping the statements after it from being copied.
//
// Two clusters per file: `cluster` (a primary and one replica: the client's side, and the replicas
// target) and `other` (a standalone server: the divergent mirror). Each test starts the gateway it
// needs and closes it; after() closes whatever a failed test left open.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { findPgBin, freePort, startCluster, type PgCluster, type PgNode } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway, testConfig, connectClient } from '../harness/gateway.js';
import { cleanPgEnv, run, type RunResult } from '../harness/exec.js';
import { assertPgbenchOk } from '../harness/checks.js';
import type { Gateway } from '../../src/gateway.js';
import type { Config } from '../../src/config/types.js';
import type { DeepPartial } from '../../src/config/load.js';
import type { MirrorMismatchEvent, MirrorReportView } from '../../src/mirror/mirror.js';
import type { ReportRow } from '../../src/mirror/report.js';

const PG_BIN = findPgBin();
const PGBENCH = PG_BIN ? path.join(PG_BIN, 'pgbench') : '/usr/lib/postgresql/15/bin/pgbench';

let cluster: PgCluster;
let other: PgCluster;
const open = new Set<Gateway>();
const clients = new Set<{ end(): Promise<unknown> }>();

/** Rows of t that differ on the mirror server. */
const CHANGED = [3, 7];

before(async () => {
  [cluster, other] = await Promise.all([startCluster({ replicas: 1 }), startCluster({})]);
  const common = `
    CREATE TABLE t (id int PRIMARY KEY, v text);
    INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g;
    CREATE SCHEMA sp;
    CREATE TABLE public.spx (x text); INSERT INTO public.spx VALUES ('public');
    CREATE TABLE sp.spx (x text); INSERT INTO sp.spx VALUES ('sp');
    CREATE TABLE w (id int PRIMARY KEY, note text);
    CREATE SEQUENCE mseq;`;
  await Promise.all([
    cluster.query(`${common}
      CREATE TABLE only_primary (x int); INSERT INTO only_primary VALUES (1);
      CREATE TABLE errdiff (x text); INSERT INTO errdiff VALUES ('abc');
      CREATE TABLE lagt (id int PRIMARY KEY, n int); INSERT INTO lagt VALUES (1, 0);`),
    other.query(`${common}
      UPDATE t SET v = 'changed' WHERE id IN (${CHANGED.join(', ')});
      CREATE TABLE only_mirror (x int); INSERT INTO only_mirror VALUES (1);
      CREATE TABLE errdiff (x text); INSERT INTO errdiff VALUES ('99999999999');`),
  ]);
  const init = await pgbench(cluster.primary.port, ['-i', '-s', '1', '-q']);
  assert.equal(init.code, 0, `pgbench -i failed:\n${init.stderr}`);
  await cluster.waitStreaming();
});

after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  for (const g of open) await g.close().catch(() => {});
  // destroy() resumes a server a failed test left stopped (pause()) before shutting it down.
  await Promise.all([cluster?.destroy(), other?.destroy()]);
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function pgbench(port: number, args: string[]): Promise<RunResult> {
  const env = cleanPgEnv({ PGPASSWORD: cluster.superuserPassword });
  return run(PGBENCH, ['-h', '127.0.0.1', '-p', String(port), '-U', cluster.superuser, ...args, 'postgres'], env);
}

/** The standalone server as a mirror target. */
function otherTarget() {
  return { name: 'other', host: other.primary.host, port: other.primary.port };
}

async function gateway(overrides: DeepPartial<Config>): Promise<Gateway> {
  const g = await startGateway(cluster, { pool: { mode: 'transaction' }, ...overrides });
  open.add(g);
  return g;
}

async function closeGateway(g: Gateway): Promise<void> {
  if (open.delete(g)) await g.close();
}

/** A gateway whose mirror is the divergent standalone server. */
function standaloneGateway(mirror: DeepPartial<Config['mirror']> = {}, overrides: DeepPartial<Config> = {}): Promise<Gateway> {
  return gateway({ ...overrides, mirror: { enabled: true, target: otherTarget(), ...mirror } });
}

/** A gateway in front of the cluster whose mirror is its replica: clients are answered by the primary (no split), copies run on the replica. */
function replicaGateway(mirror: DeepPartial<Config['mirror']> = {}): Promise<Gateway> {
  const r = cluster.replicas[0]!;
  return gateway({
    pool: { mode: 'transaction', size: 10 },
    replicas: [{ name: r.name, host: r.host, port: r.port }],
    routing: { read_write_split: false },
    monitor: { interval_ms: 50 },
    balancer: { ban_ms: 500 },
    mirror: { enabled: true, target: 'replicas', ...mirror },
  });
}

async function client(g: Gateway): Promise<pg.Client> {
  const c = await connectClient(g, cluster);
  clients.add(c);
  return c;
}

async function endClient(c: pg.Client): Promise<void> {
  clients.delete(c);
  await c.end();
}

function mismatches(g: Gateway): MirrorMismatchEvent[] {
  const seen: MirrorMismatchEvent[] = [];
  g.onEvent((e) => {
    if (e.type === 'mirror_mismatch') seen.push(e);
  });
  return seen;
}

/**
 * Wait until `offered` copies (mirrored + dropped, counted since the last resetReport()) have been
 * compared or dropped, and none is queued or running. The relay offers a copy when the server's
 * ReadyForQuery passes through it; node-postgres rejects a query on its ErrorResponse, which may come
 * before that, so a resolved client call alone does not mean the copy was offered.
 */
async function settle(g: Gateway, offered: number, timeoutMs = 15_000): Promise<MirrorReportView> {
  await until(
    `the mirror to finish ${offered} copies`,
    () => {
      const v = g.mirror.reportView();
      return v.queue.length === 0 && v.running === 0 && v.totals.mirrored + v.totals.dropped >= offered;
    },
    timeoutMs,
  ).catch((e: Error) => {
    throw new Error(`${e.message}: ${JSON.stringify(g.mirror.status())}`);
  });
  return g.mirror.reportView();
}

function row(v: MirrorReportView, fingerprint: string): ReportRow {
  const r = v.fingerprints.find((x) => x.fingerprint === fingerprint);
  assert.ok(r, `no report row for ${JSON.stringify(fingerprint)} in ${JSON.stringify(v.fingerprints.map((x) => x.fingerprint))}`);
  return r;
}

/** The counts of a report row, without latencies. */
function counts(r: ReportRow | MirrorReportView['totals']) {
  const { mirrored, matched, mismatched, lag, errors, dropped } = r;
  return { mirrored, matched, mismatched, lag, errors, dropped };
}

function totals(mirrored: number, matched: number, mismatched = 0, lag = 0, errors = 0, dropped = 0) {
  return { mirrored, matched, mismatched, lag, errors, dropped };
}

function eventFor(seen: MirrorMismatchEvent[], fingerprint: string): MirrorMismatchEvent[] {
  return seen.filter((e) => e.fingerprint === fingerprint);
}

/** Rows as a sorted list of JSON strings, to compare sets of differing rows whatever their order. */
function rowSet(rows: { side: string; row: string[] }[]): string[] {
  return rows.map((r) => JSON.stringify(r)).sort();
}

const TOKEN = 'mirror-test-token';

function api(g: Gateway, method: string, url: string, body?: unknown): Promise<Response> {
  return fetch(new URL(url, g.adminUrl), {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
}

const TEXT = 25;
const INT4 = 23;

// ------------------------------------------------------------------ divergent standalone mirror

test('a divergent standalone mirror: differing statements are mismatches with the right rows, identical ones match (node-postgres simple, unnamed and named statements)', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway();
  const seen = mismatches(g);
  const c = await client(g);

  // Simple protocol.
  const all = await c.query('SELECT id, v FROM t ORDER BY id');
  assert.equal(all.rowCount, 50);
  await c.query('SELECT id, v FROM t WHERE id BETWEEN 1 AND 10'); // unordered, differs
  await c.query('SELECT count(*) FROM t'); // same
  await c.query('SELECT id, v FROM t WHERE id > 10 ORDER BY id'); // ordered, same
  await c.query("SELECT v FROM t WHERE v LIKE 'v2%'"); // unordered, same
  // Unnamed extended statement (node-postgres with values, no name).
  await c.query({ text: 'SELECT id, v FROM t WHERE id = $1', values: [3] }); // differs
  await c.query({ text: 'SELECT id, v FROM t WHERE id = $1', values: [4] }); // same
  // Named statement: parsed once by the client, executed three times.
  await c.query({ name: 'byid', text: 'SELECT v FROM t WHERE id = $1 OR id = $2', values: [7, 8] }); // differs
  await c.query({ name: 'byid', text: 'SELECT v FROM t WHERE id = $1 OR id = $2', values: [8, 9] }); // same
  await c.query({ name: 'byid', text: 'SELECT v FROM t WHERE id = $1 OR id = $2', values: [3, 1] }); // differs

  const v = await settle(g, 10);
  assert.deepEqual(counts(v.totals), totals(10, 5, 5));

  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t ORDER BY id')), totals(1, 0, 1));
  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t WHERE id BETWEEN ? AND ?')), totals(1, 0, 1));
  assert.deepEqual(counts(row(v, 'SELECT count(*) FROM t')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t WHERE id > ? ORDER BY id')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'SELECT v FROM t WHERE v LIKE ?')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t WHERE id = $1')), totals(2, 1, 1));
  assert.deepEqual(counts(row(v, 'SELECT v FROM t WHERE id = $1 OR id = $2')), totals(3, 1, 2));
  const r = row(v, 'SELECT id, v FROM t ORDER BY id');
  assert.ok(r.primary_ms.p50! > 0 && r.mirror_ms.p50! > 0, `latencies on both sides: ${JSON.stringify(r)}`);

  assert.equal(seen.length, 5, `five mismatch events: ${JSON.stringify(seen.map((e) => e.sql))}`);

  // Ordered: position by position, both sides' rows 3 and 7.
  const [ordered] = eventFor(seen, 'SELECT id, v FROM t ORDER BY id');
  assert.ok(ordered);
  assert.equal(ordered.node, 'other');
  assert.equal(ordered.database, 'postgres');
  assert.equal(ordered.user, cluster.superuser);
  assert.equal(ordered.sql, 'SELECT id, v FROM t ORDER BY id');
  assert.deepEqual(ordered.differences, ['rows']);
  const summary = { ok: true, tag: 'SELECT 50', rows: 50, columns: [{ name: 'id', typeOid: INT4 }, { name: 'v', typeOid: TEXT }] };
  assert.deepEqual(ordered.primary, summary);
  assert.deepEqual(ordered.mirror, summary);
  assert.deepEqual(ordered.rows, [
    { side: 'primary', row: ['3', 'v3'] },
    { side: 'mirror', row: ['3', 'changed'] },
    { side: 'primary', row: ['7', 'v7'] },
    { side: 'mirror', row: ['7', 'changed'] },
  ]);
  assert.ok(ordered.primary_ms > 0 && ordered.mirror_ms !== null && ordered.mirror_ms > 0);

  // Unordered: the rows found on one side only.
  const [unordered] = eventFor(seen, 'SELECT id, v FROM t WHERE id BETWEEN ? AND ?');
  assert.ok(unordered);
  assert.deepEqual(unordered.differences, ['rows']);
  assert.equal(unordered.primary.rows, 10);
  assert.equal(unordered.mirror.rows, 10);
  assert.deepEqual(
    rowSet(unordered.rows),
    rowSet([
      { side: 'primary', row: ['3', 'v3'] },
      { side: 'primary', row: ['7', 'v7'] },
      { side: 'mirror', row: ['3', 'changed'] },
      { side: 'mirror', row: ['7', 'changed'] },
    ]),
  );

  const unnamed = eventFor(seen, 'SELECT id, v FROM t WHERE id = $1');
  assert.equal(unnamed.length, 1);
  assert.deepEqual(unnamed[0]!.rows, [
    { side: 'primary', row: ['3', 'v3'] },
    { side: 'mirror', row: ['3', 'changed'] },
  ]);

  // Copies run concurrently: events come in the order the copies finish.
  const named = eventFor(seen, 'SELECT v FROM t WHERE id = $1 OR id = $2');
  assert.equal(named.length, 2);
  assert.deepEqual(
    named.map((e) => rowSet(e.rows)).sort(),
    [rowSet([{ side: 'primary', row: ['v3'] }, { side: 'mirror', row: ['changed'] }]), rowSet([{ side: 'primary', row: ['v7'] }, { side: 'mirror', row: ['changed'] }])].sort(),
  );
  for (const e of named) assert.deepEqual(e.differences, ['rows']);

  await endClient(c);
  await closeGateway(g);
});

test('ordered vs unordered: the same rows in another order match without ORDER BY, and an ORDER BY whose order differs is a mismatch', { timeout: 60_000 }, async () => {
  // The mirror's updated rows sit at the end of its heap: a sequential scan returns them last.
  const seq = 'SELECT id FROM t';
  const onPrimary = (await cluster.query(seq)).split('\n');
  const onMirror = (await other.query(seq)).split('\n');
  assert.notDeepEqual(onMirror, onPrimary, 'the servers return t in different orders');
  assert.deepEqual([...onMirror].sort(), [...onPrimary].sort());

  const g = await standaloneGateway();
  const seen = mismatches(g);
  const c = await client(g);
  const got = await c.query(seq);
  assert.equal(got.rowCount, 50);
  await c.query({ text: 'SELECT id FROM t WHERE id > $1', values: [0] }); // extended, unordered, same multiset
  // Same rows, ordered by v: 'changed' sorts before 'v…' on the mirror only.
  await c.query('SELECT id FROM t ORDER BY v, id');
  const v = await settle(g, 3);
  assert.deepEqual(counts(v.totals), totals(3, 2, 1));
  assert.deepEqual(counts(row(v, 'SELECT id FROM t')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'SELECT id FROM t WHERE id > $1')), totals(1, 1));
  assert.equal(seen.length, 1);
  const e = seen[0]!;
  assert.equal(e.sql, 'SELECT id FROM t ORDER BY v, id');
  assert.deepEqual(e.differences, ['rows']);
  assert.equal(e.primary.rows, 50);
  assert.equal(e.mirror.rows, 50);
  // Primary order by text: 1, 10, 11, … ; the mirror starts with 3, 7 ('changed').
  assert.deepEqual(e.rows.slice(0, 2), [
    { side: 'primary', row: ['1'] },
    { side: 'mirror', row: ['3'] },
  ]);
  await endClient(c);
  await closeGateway(g);
});

test('a divergent standalone mirror with postgres.js (extended protocol, named statements)', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway();
  const seen = mismatches(g);
  const sql = postgres(gatewayUrl(g, cluster.superuser, cluster.superuserPassword), { max: 1, fetch_types: false, onnotice: () => {} });
  clients.add(sql);
  for (const id of [3, 4, 5, 7, 8]) {
    const rows = await sql`SELECT id, v FROM t WHERE id = ${id}`;
    assert.equal(rows.length, 1);
  }
  const ordered = await sql`SELECT id, v FROM t WHERE id <= ${10} ORDER BY id`;
  assert.equal(ordered.length, 10);
  await sql`SELECT count(*) FROM t WHERE id > ${0}`;
  const v = await settle(g, 7);
  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t WHERE id = $1')), totals(5, 3, 2));
  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t WHERE id <= $1 ORDER BY id')), totals(1, 0, 1));
  assert.deepEqual(counts(row(v, 'SELECT count(*) FROM t WHERE id > $1')), totals(1, 1));
  assert.deepEqual(counts(v.totals), totals(7, 4, 3));
  assert.equal(seen.length, 3);
  const byId = eventFor(seen, 'SELECT id, v FROM t WHERE id = $1');
  // Copies run concurrently: events come in the order the copies finish.
  assert.deepEqual(
    byId.map((e) => e.rows).sort((a, b) => Number(a[0]!.row[0]) - Number(b[0]!.row[0])),
    CHANGED.map((id) => [
      { side: 'primary', row: [String(id), `v${id}`] },
      { side: 'mirror', row: [String(id), 'changed'] },
    ]),
  );
  const [o] = eventFor(seen, 'SELECT id, v FROM t WHERE id <= $1 ORDER BY id');
  assert.deepEqual(o!.rows, [
    { side: 'primary', row: ['3', 'v3'] },
    { side: 'mirror', row: ['3', 'changed'] },
    { side: 'primary', row: ['7', 'v7'] },
    { side: 'mirror', row: ['7', 'changed'] },
  ]);
  clients.delete(sql);
  await sql.end();
  await closeGateway(g);
});

// ------------------------------------------------------------------ errors

test('errors on one side only are mismatches (success vs error, error vs success, different SQLSTATEs); the same SQLSTATE on both sides matches', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway();
  const seen = mismatches(g);
  const c = await client(g);
  const fail = (p: Promise<unknown>) => p.then(() => assert.fail('expected an error'), (e: pg.DatabaseError) => e.code);

  assert.equal((await c.query('SELECT x FROM only_primary')).rowCount, 1); // 42P01 on the mirror only
  assert.equal(await fail(c.query('SELECT x FROM only_mirror')), '42P01'); // succeeds on the mirror only
  assert.equal(await fail(c.query('SELECT x::int FROM errdiff')), '22P02'); // 22003 on the mirror
  assert.equal(await fail(c.query('SELECT x FROM no_such_table')), '42P01'); // both
  assert.equal(await fail(c.query({ text: 'SELECT 1 / $1::int', values: [0] })), '22012'); // both, extended
  assert.equal(await fail(c.query('SELECT nosuchcol FROM t')), '42703'); // both
  const v = await settle(g, 6);
  assert.deepEqual(counts(v.totals), totals(6, 3, 3), JSON.stringify(v.fingerprints.map((r) => [r.fingerprint, counts(r)])));
  assert.deepEqual(counts(row(v, 'SELECT x FROM no_such_table')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'SELECT ? / $1::int')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'SELECT nosuchcol FROM t')), totals(1, 1));

  assert.equal(seen.length, 3);
  const [onlyPrimary] = eventFor(seen, 'SELECT x FROM only_primary');
  assert.deepEqual(onlyPrimary!.differences, ['success vs error']);
  assert.equal(onlyPrimary!.primary.ok, true);
  assert.equal(onlyPrimary!.primary.tag, 'SELECT 1');
  assert.equal(onlyPrimary!.mirror.ok, false);
  assert.equal(onlyPrimary!.mirror.sqlstate, '42P01');
  assert.match(onlyPrimary!.mirror.message!, /only_primary/);
  const [onlyMirror] = eventFor(seen, 'SELECT x FROM only_mirror');
  assert.deepEqual(onlyMirror!.differences, ['error vs success']);
  assert.equal(onlyMirror!.primary.sqlstate, '42P01');
  assert.equal(onlyMirror!.mirror.rows, 1);
  const [states] = eventFor(seen, 'SELECT x::int FROM errdiff');
  assert.deepEqual(states!.differences, ['sqlstate 22P02 vs 22003']);
  await endClient(c);
  await closeGateway(g);
});

// ------------------------------------------------------------------ settings and prepared statements

test('session settings are carried to the mirror: TimeZone and search_path, and reset for a client that did not set them', { timeout: 60_000 }, async () => {
  const mirrorZone = await other.query('SHOW TimeZone');
  assert.notEqual(mirrorZone, 'Asia/Tokyo', 'the mirror server does not default to the zone the client sets');
  // One mirror connection: the two clients' copies share it, so the settings must be switched each time.
  const g = await standaloneGateway({ pool_size: 1 });
  const seen = mismatches(g);
  const tokyo = await client(g);
  const plain = await client(g);
  await tokyo.query("SET TimeZone = 'Asia/Tokyo'");
  await tokyo.query('SET search_path = sp, public');
  const ts = "SELECT '2024-01-01 00:00:00+00'::timestamptz::text AS ts";
  for (let i = 0; i < 3; i++) {
    assert.equal((await tokyo.query(ts)).rows[0].ts, '2024-01-01 09:00:00+09');
    assert.equal((await tokyo.query({ text: 'SELECT $1::timestamptz::text AS ts', values: ['2024-06-01 00:00:00+00'] })).rows[0].ts, '2024-06-01 09:00:00+09');
    assert.equal((await tokyo.query('SELECT x FROM spx')).rows[0].x, 'sp');
    assert.equal((await plain.query(ts)).rows[0].ts, (await cluster.query("SELECT '2024-01-01 00:00:00+00'::timestamptz::text")));
    assert.equal((await plain.query('SELECT x FROM spx')).rows[0].x, 'public');
  }
  const v = await settle(g, 15);
  assert.deepEqual(seen.map((e) => ({ sql: e.sql, differences: e.differences, rows: e.rows })), []);
  assert.deepEqual(counts(v.totals), totals(15, 15));
  await endClient(tokyo);
  await endClient(plain);
  await closeGateway(g);
});

/** ERROR lines of a server's log that are about prepared statements. */
function preparedErrors(node: PgNode): string[] {
  return fs
    .readFileSync(node.logFile, 'utf8')
    .split('\n')
    .filter((l) => /ERROR:.*prepared statement/.test(l));
}

test('prepared statements are carried to the mirror: a named statement executed many times, two clients with the same name for different statements', { timeout: 60_000 }, async () => {
  const errorsBefore = preparedErrors(other.primary).length;
  const g = await standaloneGateway({ pool_size: 1 });
  const seen = mismatches(g);
  const a = await client(g);
  const b = await client(g);
  for (let i = 10; i < 40; i++) {
    assert.equal((await a.query({ name: 'ps', text: 'SELECT id, v FROM t WHERE id = $1', values: [i] })).rows[0].v, `v${i}`);
    assert.equal((await b.query({ name: 'ps', text: 'SELECT id + 1000 AS x FROM t WHERE id = $1', values: [i] })).rows[0].x, 1000 + i);
  }
  const v = await settle(g, 60);
  assert.deepEqual(seen.map((e) => ({ sql: e.sql, differences: e.differences, mirror: e.mirror })), []);
  assert.deepEqual(counts(row(v, 'SELECT id, v FROM t WHERE id = $1')), totals(30, 30));
  assert.deepEqual(counts(row(v, 'SELECT id + ? AS x FROM t WHERE id = $1')), totals(30, 30));
  assert.deepEqual(counts(v.totals), totals(60, 60));
  assert.deepEqual(preparedErrors(other.primary).slice(errorsBefore), [], 'no Parse error on the mirror');

  // postgres.js: its own statement names, prepared on the first run of each text.
  const sql = postgres(gatewayUrl(g, cluster.superuser, cluster.superuserPassword), { max: 1, fetch_types: false, onnotice: () => {} });
  clients.add(sql);
  g.mirror.resetReport();
  for (let i = 10; i < 30; i++) assert.equal((await sql`SELECT v FROM t WHERE id = ${i}`)[0]!.v, `v${i}`);
  const w = await settle(g, 20);
  assert.deepEqual(counts(w.totals), totals(20, 20));
  assert.deepEqual(preparedErrors(other.primary).slice(errorsBefore), [], 'no Parse error on the mirror');
  clients.delete(sql);
  await sql.end();
  await endClient(a);
  await endClient(b);
  await closeGateway(g);
});

test('a named statement whose first execution fails on both sides still runs on the mirror afterwards', { timeout: 60_000 }, async () => {
  const errorsBefore = preparedErrors(other.primary).length;
  const g = await standaloneGateway({ pool_size: 1 });
  const seen = mismatches(g);
  const c = await client(g);
  const div = (n: number) => c.query({ name: 'div', text: 'SELECT 100 / $1::int AS q', values: [n] });
  await assert.rejects(div(0), { code: '22012' });
  assert.equal((await div(5)).rows[0].q, 20);
  assert.equal((await div(4)).rows[0].q, 25);
  const v = await settle(g, 3);
  assert.deepEqual(seen.map((e) => ({ differences: e.differences, mirror: e.mirror })), []);
  assert.deepEqual(counts(v.totals), totals(3, 3));
  assert.deepEqual(preparedErrors(other.primary).slice(errorsBefore), [], 'no Parse error on the mirror');
  await endClient(c);
  await closeGateway(g);
});

// ------------------------------------------------------------------ a replica as the mirror

/** Until the replica has replayed everything the primary had written when this was called. */
async function caughtUp(replica: PgNode): Promise<void> {
  // The harness runs with synchronous_commit off: a commit returns before its WAL is written, and
  // pg_current_wal_lsn() (the write position) can be behind it. A synchronous commit of a transaction
  // with an xid flushes everything before it (one psql -c is one transaction: the position is read after).
  await cluster.query('SET synchronous_commit = on; SELECT txid_current()');
  const lsn = await cluster.query('SELECT pg_current_wal_lsn()');
  assert.match(lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
  await until(`${replica.name} to replay ${lsn}`, async () => (await cluster.query(`SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn`, replica)) === 't');
}

test('a caught-up replica as the mirror under pgbench -S (simple and prepared): copies run there, no mismatch, no lag', { timeout: 90_000 }, async (t) => {
  const replica = cluster.replicas[0]!;
  await caughtUp(replica);
  const g = await replicaGateway();
  const seen = mismatches(g);
  const runs: string[] = [];
  for (const [mode, secs] of [
    ['simple', '3'],
    ['prepared', '2'],
  ] as const) {
    g.mirror.resetReport();
    const r = assertPgbenchOk(`pgbench -S -M ${mode}`, await pgbench(g.port, ['-S', '-M', mode, '-c', '4', '-j', '2', '-T', secs, '-n']));
    const v = await settle(g, r.processed);
    const { mirrored, matched, mismatched, lag, errors, dropped } = v.totals;
    runs.push(`-M ${mode}: ${r.processed} transactions (${r.tps} tps), mirrored ${mirrored} (matched ${matched}), dropped ${dropped}; ${v.fingerprints.map((f) => `${f.fingerprint}: ${f.mirrored}+${f.dropped} dropped, primary p50 ${f.primary_ms.p50} ms, mirror p50 ${f.mirror_ms.p50} ms`).join('; ')}`);
    assert.ok(mirrored > 0, `copies ran on the replica: ${JSON.stringify(v.totals)}`);
    assert.deepEqual({ mismatched, lag, errors }, { mismatched: 0, lag: 0, errors: 0 });
    assert.equal(matched, mirrored);
    // Every SELECT of the run was copied or dropped (the queue is bounded): none was lost on the way.
    const reads = v.fingerprints.filter((f) => f.fingerprint.startsWith('SELECT abalance FROM pgbench_accounts WHERE aid ='));
    assert.equal(reads.length, 1, JSON.stringify(v.fingerprints.map((f) => f.fingerprint)));
    assert.equal(reads[0]!.mirrored + reads[0]!.dropped, r.processed);
  }
  for (const line of runs) t.diagnostic(line);
  assert.equal(seen.length, 0, JSON.stringify(seen));

  // The copies really go to the replica: a statement whose answer names the server is a mismatch there
  // (the replica is caught up), and the event names the replica. WAL the primary writes on its own
  // (autovacuum, a checkpoint) just then could make one copy count as lag: a few tries.
  g.mirror.resetReport();
  const c = await client(g);
  for (let i = 1; i <= 5 && seen.length === 0; i++) {
    assert.equal((await c.query("SELECT current_setting('port') AS port")).rows[0].port, String(cluster.primary.port));
    const v = await settle(g, i);
    assert.equal(v.totals.matched + v.totals.errors, 0);
  }
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.node, replica.name);
  assert.deepEqual(seen[0]!.rows, [
    { side: 'primary', row: [String(cluster.primary.port)] },
    { side: 'mirror', row: [String(replica.port)] },
  ]);
  await endClient(c);
  await closeGateway(g);
});

test('replay paused on the replica while writes go on: the differences are lag, not mismatches; writes are never copied to a replica; resumed, the reads match', { timeout: 60_000 }, async () => {
  const replica = cluster.replicas[0]!;
  await caughtUp(replica);
  const g = await replicaGateway();
  const seen = mismatches(g);
  const c = await client(g);
  const read = async () => (await c.query('SELECT n FROM lagt WHERE id = 1')).rows[0].n as number;
  const base = await read();
  let v = await settle(g, 1);
  assert.deepEqual(counts(v.totals), totals(1, 1));

  // With mirroring of reads to replicas, writes stay on the primary, and 'all' is refused.
  assert.throws(() => g.configureMirror({ statements: 'all' }), { status: 400, code: 'invalid_mirror' });
  assert.equal(g.mirror.status().statements, 'reads');

  g.mirror.resetReport();
  await cluster.query('SELECT pg_wal_replay_pause()', replica);
  try {
    await until('replay paused', async () => (await cluster.query('SELECT pg_get_wal_replay_pause_state()', replica)) === 'paused');
    for (let i = 1; i <= 5; i++) {
      await c.query('UPDATE lagt SET n = n + 1 WHERE id = 1');
      await c.query({ text: 'UPDATE lagt SET n = n + $1 WHERE id = 1', values: [0] });
      assert.equal(await read(), base + i);
    }
    await c.query("SELECT nextval('mseq')"); // a read that writes: the primary's, never copied
    await c.query('SELECT count(*) FROM t'); // data the paused replica has: matches
    v = await settle(g, 6);
    assert.deepEqual(counts(v.totals), totals(6, 1, 0, 5));
    assert.deepEqual(counts(row(v, 'SELECT n FROM lagt WHERE id = ?')), totals(5, 0, 0, 5));
    assert.deepEqual(
      v.fingerprints.map((f) => f.fingerprint).sort(),
      ['SELECT count(*) FROM t', 'SELECT n FROM lagt WHERE id = ?'],
      'no write was copied',
    );
    assert.deepEqual(seen, [], 'lag raises no mismatch event');
    assert.equal(await cluster.query('SELECT n FROM lagt WHERE id = 1', replica), String(base), 'the replica had not replayed the writes');
  } finally {
    await cluster.query('SELECT pg_wal_replay_resume()', replica);
  }
  await caughtUp(replica);
  g.mirror.resetReport();
  assert.equal(await read(), base + 5);
  v = await settle(g, 1);
  // A lag outcome carries no event: say what the replica had, should this fail.
  const state = async () =>
    `replica: ${await cluster.query("SELECT pg_last_wal_replay_lsn()::text || ' ' || pg_get_wal_replay_pause_state() || ' n=' || (SELECT n FROM lagt WHERE id = 1)", replica)}; primary: ${await cluster.query('SELECT pg_current_wal_lsn()')}`;
  assert.deepEqual(counts(v.totals), totals(1, 1), v.totals.matched === 1 ? '' : await state());
  await endClient(c);
  await closeGateway(g);
});

test('a replica that is down takes no copies (dropped: no_target); restarted, copies run there again on fresh connections', { timeout: 90_000 }, async () => {
  const replica = cluster.replicas[0]!;
  await caughtUp(replica);
  const g = await replicaGateway();
  const c = await client(g);
  await c.query('SELECT count(*) FROM t');
  assert.deepEqual(counts((await settle(g, 1)).totals), totals(1, 1));
  const node = g.topology.node(replica.name)!;
  await cluster.stop(replica);
  try {
    await until('the replica seen down', () => !node.healthy || node.banned);
    g.mirror.resetReport();
    for (let i = 0; i < 5; i++) await c.query('SELECT count(*) FROM t');
    const v = await settle(g, 5);
    assert.deepEqual(counts(v.totals), totals(0, 0, 0, 0, 0, 5));
    assert.match(await g.metricsText(), /^switchyard_mirror_dropped_total\{reason="no_target"\} 5$/m);
  } finally {
    await cluster.start(replica);
  }
  await cluster.waitStreaming();
  await until('the replica seen up', () => node.healthy && !node.banned, 30_000);
  g.mirror.resetReport();
  for (let i = 0; i < 5; i++) await c.query('SELECT count(*) FROM t');
  const v = await settle(g, 5);
  assert.deepEqual(counts(v.totals), totals(5, 5), 'the mirror connections made before the restart are not used');
  await endClient(c);
  await closeGateway(g);
});

// ------------------------------------------------------------------ the queue

test('the queue drop path: with the mirror server stopped, copies beyond the queue are dropped and counted, and the client is not slowed', { timeout: 60_000 }, async (t) => {
  const g = await standaloneGateway({ pool_size: 1, queue_size: 1 });
  const c = await client(g);
  const q = (i: number) => c.query(`SELECT v FROM t WHERE id = ${10 + (i % 30)}`);
  await q(0); // the mirror's connection exists before the server stops
  await settle(g, 1);
  const N = 100;
  let elapsed = 0;
  let slowest = 0;
  other.pause(other.primary);
  try {
    const start = performance.now();
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      await q(i);
      slowest = Math.max(slowest, performance.now() - t0);
    }
    elapsed = performance.now() - start;
    // One copy waits on the stopped server, one waits in the queue (size 1), the rest were dropped.
    const s = g.mirror.status();
    assert.equal(s.running, 1);
    assert.equal(s.queue.length, 1);
    assert.deepEqual(counts(s.totals), totals(1, 1, 0, 0, 0, N - 2));
    const metrics = await g.metricsText();
    assert.match(metrics, new RegExp(`^switchyard_mirror_dropped_total\\{reason="queue_full"\\} ${N - 2}$`, 'm'));
    assert.match(metrics, /^switchyard_mirror_queue_length 1$/m);
  } finally {
    other.resume(other.primary);
  }
  t.diagnostic(`${N} queries while the mirror was stopped: ${elapsed.toFixed(0)} ms in all, slowest ${slowest.toFixed(1)} ms`);
  assert.ok(elapsed < 5000 && slowest < 1000, `the client was not held up by the stopped mirror: ${elapsed.toFixed(0)} ms, slowest ${slowest.toFixed(1)} ms`);
  // Resumed before mirror.timeout_ms (10 s): the two waiting copies run and match.
  const v = await settle(g, N + 1);
  assert.deepEqual(counts(v.totals), totals(3, 3, 0, 0, 0, N - 2));
  assert.deepEqual(counts(row(v, 'SELECT v FROM t WHERE id = ?')), totals(3, 3, 0, 0, 0, N - 2));
  assert.match(await g.metricsText(), /^switchyard_mirror_statements_total\{outcome="match"\} 3$/m);

  // A copy the stopped server does not answer within timeout_ms is abandoned as an error; its
  // connection is not reused, and the next copy runs on a fresh one.
  g.configureMirror({ timeout_ms: 500 });
  g.mirror.resetReport();
  other.pause(other.primary);
  try {
    await q(1);
    // Answered while its copy still waits on the stopped server (sent once the event loop's round is over).
    await until('the copy to start', () => g.mirror.status().running === 1, 2000);
    assert.equal(g.mirror.status().totals.errors, 0);
    await until('the copy to time out', () => g.mirror.status().totals.errors === 1, 5000);
  } finally {
    other.resume(other.primary);
  }
  await q(2);
  const w = await settle(g, 2);
  assert.deepEqual(counts(w.totals), totals(2, 1, 0, 0, 1));

  // timeout_ms covers the whole copy: here the stopped server never answers the statement that brings
  // the client's settings to the mirror connection.
  const tz = await client(g);
  await tz.query("SET TimeZone = 'Asia/Tokyo'");
  g.mirror.resetReport();
  other.pause(other.primary);
  try {
    await tz.query('SELECT count(*) FROM t');
    await until('the copy to time out while its settings are applied', () => g.mirror.status().totals.errors === 1, 5000);
  } finally {
    other.resume(other.primary);
  }
  await tz.query('SELECT count(*) FROM t');
  const x = await settle(g, 2);
  assert.deepEqual(counts(x.totals), totals(2, 1, 0, 0, 1));
  await endClient(tz);
  await endClient(c);
  await closeGateway(g);
});

test('a mirror server that is down: copies are errors, the client is answered as usual', { timeout: 60_000 }, async () => {
  const g = await gateway({ mirror: { enabled: true, target: { name: 'nowhere', host: '127.0.0.1', port: await freePort() } } });
  const seen = mismatches(g);
  const c = await client(g);
  for (let i = 0; i < 5; i++) assert.equal((await c.query(`SELECT v FROM t WHERE id = ${i + 1}`)).rows[0].v, `v${i + 1}`);
  const v = await settle(g, 5);
  assert.deepEqual(counts(v.totals), totals(5, 0, 0, 0, 5));
  assert.equal(seen.length, 0);
  assert.match(await g.metricsText(), /^switchyard_mirror_statements_total\{outcome="error"\} 5$/m);
  await endClient(c);
  await closeGateway(g);
});

test('max_events_per_second 0: mismatches are counted, no event is sent', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway({ max_events_per_second: 0 });
  const seen = mismatches(g);
  const c = await client(g);
  for (const id of [...CHANGED, 1]) await c.query(`SELECT v FROM t WHERE id = ${id}`);
  const v = await settle(g, 3);
  assert.deepEqual(counts(v.totals), totals(3, 1, 2));
  assert.equal(seen.length, 0);
  await endClient(c);
  await closeGateway(g);
});

// ------------------------------------------------------------------ filters and switching

test('filters (databases, users, sample_rate) and switching at run time (configureMirror, reload)', { timeout: 60_000 }, async () => {
  const mirror = { enabled: true, target: otherTarget(), sample_rate: 0 };
  const admin = { port: await freePort(), token: TOKEN };
  const g = await standaloneGateway(mirror, { admin });
  const c = await client(g);
  const burst = async (n: number) => {
    for (let i = 0; i < n; i++) await c.query(`SELECT v FROM t WHERE id = ${10 + (i % 30)}`);
  };
  const offered = () => g.mirror.status().totals.mirrored + g.mirror.status().totals.dropped;

  await burst(20);
  assert.equal(offered(), 0, 'sample_rate 0: nothing copied');

  g.configureMirror({ sample_rate: 1, databases: ['nosuchdb'] });
  await burst(10);
  assert.equal(offered(), 0, 'another database only: nothing copied');

  g.configureMirror({ databases: ['postgres'], users: ['nobody'] });
  await burst(10);
  assert.equal(offered(), 0, 'another user only: nothing copied');

  g.configureMirror({ users: [cluster.superuser] });
  await burst(10);
  assert.deepEqual(counts((await settle(g, 10)).totals), totals(10, 10));

  g.configureMirror({ enabled: false });
  assert.equal(g.mirror.status().enabled, false);
  await burst(10);
  assert.deepEqual(counts((await settle(g, 10)).totals), totals(10, 10), 'switched off: nothing more copied');

  g.configureMirror({ enabled: true, sample_rate: 0.5, databases: [], users: [] });
  await burst(200);
  const sampled = (await settle(g, 10)).totals.mirrored - 10;
  assert.ok(sampled > 50 && sampled < 150, `sample_rate 0.5: about half of 200 copied, got ${sampled}`);

  // A reload with the mirror section off, then on again.
  const base = { pool: { mode: 'transaction' as const }, admin };
  g.mirror.resetReport();
  const off = g.reload(testConfig(cluster, { ...base, mirror: { ...mirror, enabled: false } }));
  assert.ok(off.applied.includes('mirror'), JSON.stringify(off));
  assert.equal(g.mirror.status().enabled, false);
  await burst(10);
  assert.equal(offered(), 0, 'reloaded off: nothing copied');
  const on = g.reload(testConfig(cluster, { ...base, mirror: { ...mirror, sample_rate: 1 } }));
  assert.ok(on.applied.includes('mirror'), JSON.stringify(on));
  await burst(10);
  assert.deepEqual(counts((await settle(g, 10)).totals), totals(10, 10));

  // Invalid settings change nothing.
  assert.throws(() => g.configureMirror({ sample_rate: 2 }), { status: 400, code: 'invalid_mirror' });
  assert.throws(() => g.configureMirror({ statements: 'all', target: { name: 'self', host: cluster.primary.host, port: cluster.primary.port } }), { status: 400 });
  assert.equal(g.mirror.status().sample_rate, 1);

  // The same through the admin API.
  let res = await api(g, 'POST', '/api/v1/mirror', { enabled: false });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { enabled: boolean }).enabled, false);
  res = await api(g, 'DELETE', '/api/v1/mirror/report');
  assert.equal(res.status, 200);
  await burst(10);
  assert.equal(offered(), 0, 'switched off through the API: nothing copied');
  res = await api(g, 'POST', '/api/v1/mirror', { enabled: true, sample_rate: 1.5 });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as { error: string }).error, 'invalid_mirror');
  assert.equal(g.mirror.status().enabled, false, 'an invalid change changes nothing');
  assert.equal((await api(g, 'POST', '/api/v1/mirror', { enabled: true })).status, 200);
  await burst(10);
  await settle(g, 10);
  const report = (await (await api(g, 'GET', '/api/v1/mirror/report')).json()) as MirrorReportView;
  assert.deepEqual(counts(report.totals), totals(10, 10));
  assert.deepEqual(counts(row(report, 'SELECT v FROM t WHERE id = ?')), totals(10, 10));
  const text = await (await api(g, 'GET', '/api/v1/mirror/report?format=text')).text();
  assert.match(text, /SELECT v FROM t WHERE id = \?\s+10\s+10\s+0\s+0\s+0\s+0\s/);
  await endClient(c);
  await closeGateway(g);
});

// ------------------------------------------------------------------ statements: all

test("statements 'all' with a standalone mirror: autocommit writes are copied (the row appears there), writes in a transaction are not, nor reads after them", { timeout: 60_000 }, async () => {
  const g = await standaloneGateway({ statements: 'all' });
  const seen = mismatches(g);
  const c = await client(g);
  const onMirror = async () => (await other.query('SELECT id || \':\' || note FROM w ORDER BY id')).split('\n').filter(Boolean);

  await c.query("INSERT INTO w VALUES (1, 'auto')");
  await c.query({ text: 'INSERT INTO w VALUES ($1, $2)', values: [2, 'extended'] });
  await c.query({ name: 'ins', text: 'INSERT INTO w VALUES ($1, $2)', values: [3, 'named'] });
  await c.query('BEGIN');
  await c.query('SELECT count(*) FROM w'); // a read before any write in the transaction: copied
  await c.query("INSERT INTO w VALUES (4, 'in a transaction')");
  await c.query('SELECT count(*) FROM w'); // after a write: the mirror could not see it, not copied
  await c.query({ name: 'ins', text: 'INSERT INTO w VALUES ($1, $2)', values: [5, 'named in a transaction'] });
  await c.query('COMMIT');
  // Refused by the primary: not copied (on a mirror without the row it would insert it).
  await assert.rejects(c.query("INSERT INTO w VALUES (1, 'duplicate')"), { code: '23505' });
  let v = await settle(g, 4);
  assert.deepEqual(counts(v.totals), totals(4, 4), JSON.stringify(seen));
  assert.deepEqual(counts(row(v, 'INSERT INTO w VALUES (...)')), totals(1, 1));
  assert.deepEqual(counts(row(v, 'INSERT INTO w VALUES ($1, $2)')), totals(2, 2));
  assert.deepEqual(counts(row(v, 'SELECT count(*) FROM w')), totals(1, 1));
  assert.deepEqual(await onMirror(), ['1:auto', '2:extended', '3:named']);
  assert.equal(await cluster.query('SELECT count(*) FROM w'), '5');

  // A write whose effect differs: the command tags tell.
  g.mirror.resetReport();
  await c.query("UPDATE w SET note = note || '!' WHERE id <= 5");
  v = await settle(g, 1);
  assert.deepEqual(counts(v.totals), totals(1, 0, 1));
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0]!.differences, ['command tag UPDATE 5 vs UPDATE 3']);
  await endClient(c);
  await closeGateway(g);
});

// ------------------------------------------------------------------ state the mirror cannot reproduce is not copied

test('a read after SET LOCAL (or an uncommitted SET) in a transaction is not compared without that setting', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway();
  const seen = mismatches(g);
  const c = await client(g);
  const ts = "SELECT '2024-01-01 00:00:00+00'::timestamptz::text AS ts";
  await c.query('BEGIN');
  await c.query("SET LOCAL TimeZone = 'Asia/Tokyo'");
  assert.equal((await c.query(ts)).rows[0].ts, '2024-01-01 09:00:00+09');
  await c.query('COMMIT');
  await c.query('BEGIN');
  await c.query("SET TimeZone = 'Asia/Kolkata'");
  assert.equal((await c.query(ts)).rows[0].ts, '2024-01-01 05:30:00+05:30');
  await c.query('ROLLBACK');
  await c.query('SELECT count(*) FROM t'); // a copy after them, to wait for
  const v = await settle(g, 1);
  await sleep(200);
  assert.equal(v.totals.mismatched, 0, JSON.stringify(seen.map((e) => ({ sql: e.sql, rows: e.rows }))));
  await endClient(c);
  await closeGateway(g);
});

test('DECLARE CURSOR in a transaction is not copied', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway();
  const c = await client(g);
  await c.query('BEGIN');
  await c.query('DECLARE cur CURSOR FOR SELECT id FROM t');
  await c.query('FETCH 5 FROM cur');
  await c.query('COMMIT');
  await c.query('SELECT count(*) FROM t');
  const v = await settle(g, 1);
  await sleep(200);
  assert.deepEqual(counts(g.mirror.reportView().totals), totals(1, 1), JSON.stringify(v.fingerprints.map((f) => f.fingerprint)));
  await endClient(c);
  await closeGateway(g);
});

test("statements 'all' never copies a write to the primary itself, even under another name (found at run time by the server's start time)", { timeout: 60_000 }, async () => {
  await cluster.query('CREATE TABLE selfcopy (id int PRIMARY KEY)');
  const g = await gateway({ mirror: { enabled: true, statements: 'reads', target: otherTarget() } });
  // What the config and the API refuse by address (target: the primary's own host and port): applied
  // directly, as an alias of the primary (another name, a pooler in front of it) would get through.
  g.mirror.apply({ ...g.config.mirror, statements: 'all', target: { name: 'alias', host: cluster.primary.host, port: cluster.primary.port } });
  const c = await client(g);
  await c.query('INSERT INTO selfcopy VALUES (1)');
  await c.query({ text: 'INSERT INTO selfcopy VALUES ($1)', values: [2] });
  await c.query('SELECT count(*) FROM selfcopy'); // reads may go to the primary itself: copied and matched
  const v = await settle(g, 3);
  assert.deepEqual(counts(v.totals), totals(1, 1, 0, 0, 0, 2));
  assert.equal(await cluster.query('SELECT count(*) FROM selfcopy'), '2', 'each write ran once on the primary');
  assert.match(await g.metricsText(), /^switchyard_mirror_dropped_total\{reason="target_is_primary"\} 2$/m);
  await endClient(c);
  await closeGateway(g);
  await cluster.query('DROP TABLE selfcopy');
});

test('a prepared statement bound under other parse-shaping settings than it was parsed under is not copied', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway();
  const seen = mismatches(g);
  const c = await client(g);
  const d = { name: 'dmy', text: "SELECT '01/02/2020'::date::text AS d" };
  await c.query("SET DateStyle = 'ISO, DMY'");
  assert.equal((await c.query(d)).rows[0].d, '2020-02-01'); // parsed (and copied) under DMY
  await c.query("SET DateStyle = 'ISO, MDY'");
  assert.equal((await c.query(d)).rows[0].d, '2020-02-01'); // the literal was read at Parse: still DMY
  await c.query('SELECT count(*) FROM t');
  await settle(g, 2);
  await sleep(200);
  assert.deepEqual(counts(g.mirror.reportView().totals), totals(2, 2), JSON.stringify(seen.map((e) => e.rows)));
  await endClient(c);
  await closeGateway(g);
});

test('COPY is never copied (in or out), and under a REPEATABLE READ default only autocommit statements are', { timeout: 60_000 }, async () => {
  const g = await standaloneGateway({ statements: 'all' });
  const seen = mismatches(g);
  const sql = postgres(gatewayUrl(g, cluster.superuser, cluster.superuserPassword), { max: 1, fetch_types: false, onnotice: () => {} });
  clients.add(sql);
  const into = await sql`COPY w FROM STDIN`.writable();
  await new Promise<void>((resolve, reject) => {
    into.on('finish', resolve).on('error', reject);
    into.end('100\tby copy\n');
  });
  let out = '';
  for await (const chunk of await sql`COPY t TO STDOUT`.readable()) out += String(chunk);
  assert.ok(out.length > 0);
  await sql`SELECT count(*) FROM t`; // copied: what the mirror has done so far is settled with it
  let v = await settle(g, 1);
  await sleep(200);
  assert.deepEqual(counts(g.mirror.reportView().totals), totals(1, 1), JSON.stringify(v.fingerprints.map((f) => f.fingerprint)));
  assert.equal(await other.query('SELECT count(*) FROM w WHERE id = 100'), '0', 'COPY FROM STDIN did not reach the mirror');
  await cluster.query('DELETE FROM w WHERE id = 100');
  await sql.end();
  clients.delete(sql);

  // A transaction block reads the transaction's snapshot, which a copy run alone could not see.
  g.mirror.resetReport();
  const c = await client(g);
  await c.query("SET default_transaction_isolation = 'repeatable read'");
  await c.query('BEGIN');
  await c.query('SELECT count(*) FROM t');
  await c.query('COMMIT');
  await c.query('SELECT count(*) FROM t');
  v = await settle(g, 1);
  await sleep(200);
  assert.deepEqual(counts(g.mirror.reportView().totals), totals(1, 1), JSON.stringify(v.fingerprints.map((f) => f.fingerprint)));
  assert.deepEqual(seen, []);
  await endClient(c);
  await closeGateway(g);
});
