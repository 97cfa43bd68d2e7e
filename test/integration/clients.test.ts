// Real clients through the gateway: every scenario runs against the primary directly AND through the
// gateway, and the results must be identical (only backend pids and similar legitimately differ).
//
// Clients: node-postgres (pg), postgres.js, psql. One cluster and two gateways per file: `gw` with the
// default pool, `gw1` with pool.size 1 so that server-connection reuse between clients is guaranteed.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { findPgBin, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway } from '../harness/gateway.js';
import { trackParams } from '../harness/checks.js';
import type { Gateway } from '../../src/gateway.js';
import { readDataRowBytes } from '../../src/protocol/messages.js';
import { cleanPgEnv, run, type RunResult } from '../harness/exec.js';

const PSQL = fs.existsSync('/usr/bin/psql') ? '/usr/bin/psql' : path.join(findPgBin() ?? '', 'psql');

let cluster: PgCluster;
let gw: Gateway;
let gw1: Gateway;
let tmpDir: string;

interface Target {
  name: 'direct' | 'gateway';
  url: string;
}
let direct: Target;
let gateway: Target;
let gateway1: Target;

before(async () => {
  cluster = await startCluster();
  gw = await startGateway(cluster);
  gw1 = await startGateway(cluster, { pool: { size: 1 } });
  direct = { name: 'direct', url: cluster.primary.url() };
  gateway = { name: 'gateway', url: gatewayUrl(gw, cluster.superuser, cluster.superuserPassword) };
  gateway1 = { name: 'gateway', url: gatewayUrl(gw1, cluster.superuser, cluster.superuserPassword) };
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-clients-'));
});

after(async () => {
  await gw1?.close();
  await gw?.close();
  await cluster?.destroy();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Run fn against the primary directly, then through the gateway; return both results. */
async function both<T>(fn: (t: Target) => Promise<T>, gwTarget: Target = gateway): Promise<{ direct: T; gateway: T }> {
  const d = await fn(direct);
  const g = await fn(gwTarget);
  return { direct: d, gateway: g };
}

/** Run fn on both and assert the results are deep-equal; returns the (common) result. */
async function same<T>(what: string, fn: (t: Target) => Promise<T>, gwTarget: Target = gateway): Promise<T> {
  const r = await both(fn, gwTarget);
  assert.deepEqual(r.gateway, r.direct, `${what}: gateway result differs from direct`);
  return r.direct;
}

async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>, opts: pg.ClientConfig & { binary?: boolean } = {}): Promise<T> {
  const c = new pg.Client({ connectionString: url, ...opts });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>, opts: postgres.Options<{}> = {}): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, ...opts });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

interface Field {
  name: string;
  tableID: number;
  columnID: number;
  dataTypeID: number;
  dataTypeSize: number;
  dataTypeModifier: number;
  format: string;
}

/** The parts of a pg result that must be identical (Result objects also carry parser functions). */
function pgResult(r: pg.QueryResult | pg.QueryArrayResult): { command: string; rowCount: number | null; rows: unknown[]; fields: Field[] } {
  return {
    command: r.command,
    rowCount: r.rowCount,
    rows: r.rows,
    fields: r.fields.map((f) => ({
      name: f.name,
      tableID: f.tableID,
      columnID: f.columnID,
      dataTypeID: f.dataTypeID,
      dataTypeSize: f.dataTypeSize,
      dataTypeModifier: f.dataTypeModifier,
      format: f.format,
    })),
  };
}

/** The parts of a postgres.js result that must be identical. */
function pjResult(r: postgres.RowList<postgres.Row[]>): unknown {
  return {
    rows: [...r],
    count: r.count,
    command: r.command,
    columns: r.columns?.map((c) => ({ name: c.name, type: c.type, table: c.table, number: c.number })),
  };
}

function pgError(e: unknown): { code?: string; message: string; severity?: string } {
  const err = e as pg.DatabaseError;
  return { code: err.code, message: err.message, severity: err.severity };
}

/** A plain object of a postgres.js error's server fields (no stack, no query). */
function pjError(e: unknown): { code?: string; message: string; severity?: string } {
  const err = e as postgres.PostgresError;
  return { code: err.code, message: err.message, severity: err.severity };
}

/** Settle a promise into a comparable value. */
async function settle<T>(p: Promise<T>, mapOk: (v: T) => unknown, mapErr: (e: unknown) => unknown): Promise<unknown> {
  try {
    return { ok: mapOk(await p) };
  } catch (e) {
    return { error: mapErr(e) };
  }
}


/** Run psql -X with args against url (the URL carries the password). */
function psql(url: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(PSQL, ['-X', '-d', url, ...args], cleanPgEnv(env));
}

/** Run psql and hash its stdout as it streams (no 100 MB strings). */
function psqlHash(url: string, args: string[]): Promise<{ code: number | null; md5: string; bytes: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PSQL, ['-X', '-d', url, ...args], { env: cleanPgEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = crypto.createHash('md5');
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, md5: hash.digest('hex'), bytes, stderr }));
  });
}

function once<T>(emitter: NodeJS.EventEmitter, event: string, n: number, timeoutMs = 5000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const got: T[] = [];
    const t = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out waiting for ${n} '${event}' events (got ${got.length})`));
    }, timeoutMs);
    const on = (v: T) => {
      got.push(v);
      if (got.length >= n) {
        clearTimeout(t);
        emitter.off(event, on);
        resolve(got);
      }
    };
    emitter.on(event, on);
  });
}

/** A protocol message: type byte, int32 length, body. */
function msg(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstr = (v: string): Buffer => Buffer.from(v + '\0', 'utf8');
const i16 = (...v: number[]): Buffer => {
  const b = Buffer.alloc(2 * v.length);
  v.forEach((x, i) => b.writeInt16BE(x, 2 * i));
  return b;
};
const i32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};

/**
 * Run one extended-protocol query with binary parameters and binary results on a connection that pg
 * logged in (pg itself cannot hand out binary result bytes: it decodes every value as UTF-8), and
 * return every message the server sent, up to and including ReadyForQuery.
 */
async function rawBinaryQuery(url: string, text: string, params: (Buffer | null)[]): Promise<Buffer[]> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  const stream = (c as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream;
  stream.removeAllListeners('data');
  try {
    return await new Promise<Buffer[]>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let held = 0;
      stream.on('data', (d: Buffer) => {
        chunks.push(d);
        held += d.length;
        // ReadyForQuery is 6 bytes: 'Z' 0 0 0 5 status
        const last = d.length >= 6 ? d.subarray(d.length - 6) : Buffer.concat(chunks).subarray(held - 6);
        if (last[0] !== 0x5a || last.readInt32BE(1) !== 5) return;
        const all = Buffer.concat(chunks, held);
        const out: Buffer[] = [];
        for (let off = 0; off < all.length; ) {
          const len = all.readInt32BE(off + 1) + 1;
          out.push(all.subarray(off, off + len));
          off += len;
        }
        if (out.at(-1)?.[0] === 0x5a) resolve(out);
      });
      stream.once('error', reject);
      stream.once('close', () => reject(new Error('connection closed before ReadyForQuery')));
      const values = params.map((p) => (p === null ? i32(-1) : Buffer.concat([i32(p.length), p])));
      stream.write(
        Buffer.concat([
          msg('P', cstr(''), cstr(text), i16(0)),
          msg('B', cstr(''), cstr(''), i16(1, 1), i16(params.length), ...values, i16(1, 1)),
          msg('D', Buffer.from('P\0', 'latin1')),
          msg('E', cstr(''), i32(0)),
          msg('S'),
        ]),
      );
    });
  } finally {
    stream.destroy();
  }
}


// ------------------------------------------------------------------ simple and extended queries

/** Type parsers that keep every value as it came off the wire: binary values as hex, text as text. */
const RAW_TYPES = {
  getTypeParser: () => (v: Buffer | string) => (Buffer.isBuffer(v) ? v.toString('hex') : v),
};

const TYPED_SELECT = `SELECT 1::int AS i, 9007199254740993::bigint AS big, (-32768)::smallint AS small,
  'héllo wörld ✓'::text AS t, ''::text AS empty, 12345.678901234567890123::numeric AS n, 'NaN'::numeric AS nan,
  1.5::float8 AS f, true AS b, '2024-02-29 12:34:56.789+02'::timestamptz AS ts, '2024-02-29 12:34:56'::timestamp AS tsl,
  '2024-01-01'::date AS d, interval '1 day 02:03:04' AS iv, '{"a":[1,2,{"b":null}],"c":"\\u00e9"}'::json AS j,
  '{"x":1,"y":[true,false]}'::jsonb AS jb, ARRAY[1,2,NULL,4]::int[] AS arr, ARRAY['a','b c',NULL,'"q"']::text[] AS tarr,
  ARRAY[[1,2],[3,4]]::int[] AS arr2, NULL::text AS nul, '\\xdeadbeef00ff'::bytea AS by,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '192.168.0.1/24'::inet AS ip, point(1.5, 2) AS pt`;

test('pg: simple-protocol queries with many result types are identical', { timeout: 30_000 }, async () => {
  const r = await same('typed select', (t) => withPg(t.url, async (c) => pgResult(await c.query(TYPED_SELECT))));
  assert.equal(r.rows.length, 1);
  assert.equal((r.rows[0] as Record<string, unknown>).t, 'héllo wörld ✓');
  assert.equal((r.rows[0] as Record<string, unknown>).nul, null);
  assert.deepEqual((r.rows[0] as Record<string, unknown>).by, Buffer.from('deadbeef00ff', 'hex'));
  // rowMode array, a multi-row result, and DDL/DML command tags
  await same('generate_series', (t) =>
    withPg(t.url, async (c) => pgResult(await c.query({ text: 'SELECT g, g::text || $$x$$ AS s, g % 3 = 0 AS m FROM generate_series(1, 500) g', rowMode: 'array' }))),
  );
  await same('empty query', (t) => withPg(t.url, async (c) => pgResult(await c.query(''))));
  await same('comment-only query', (t) => withPg(t.url, async (c) => pgResult(await c.query('-- nothing'))));
  await same('command tags', (t) =>
    withPg(t.url, async (c) => {
      const tbl = `tags_${t.name}`;
      const out = [];
      out.push(pgResult(await c.query(`CREATE TEMP TABLE ${tbl} (id int primary key, v text)`)));
      out.push(pgResult(await c.query(`INSERT INTO ${tbl} SELECT g, 'v' || g FROM generate_series(1, 10) g`)));
      out.push(pgResult(await c.query(`UPDATE ${tbl} SET v = 'u' WHERE id <= 3`)));
      out.push(pgResult(await c.query(`DELETE FROM ${tbl} WHERE id > 8`)));
      out.push(pgResult(await c.query(`SELECT * FROM ${tbl} ORDER BY id`)));
      // temp table oids differ between the runs
      return out.map((o) => ({ ...o, fields: o.fields.map((f) => ({ ...f, tableID: 0 })) }));
    }),
  );
});

test('pg: extended-protocol (parameterised) queries are identical', { timeout: 30_000 }, async () => {
  const values = [
    42,
    '9007199254740993',
    'text with \'quotes\' and "double" and ✓',
    '12345.678901234567890123',
    '2024-02-29T12:34:56.789Z',
    JSON.stringify({ a: [1, 2, { b: null }] }),
    [1, 2, null, 4],
    ['a', 'b c', null],
    null,
    true,
  ];
  const text =
    'SELECT $1::int AS i, $2::bigint AS big, $3::text AS t, $4::numeric AS n, $5::timestamptz AS ts, $6::json AS j, ' +
    '$7::int[] AS arr, $8::text[] AS tarr, $9::text AS nul, $10::bool AS b, $1::int + 1 AS i2';
  const r = await same('parameterised select', (t) => withPg(t.url, async (c) => pgResult(await c.query(text, values))));
  assert.equal((r.rows[0] as Record<string, unknown>).i2, 43);
  // a named prepared statement run several times with different parameters
  await same('named statement', (t) =>
    withPg(t.url, async (c) => {
      const out = [];
      for (let i = 0; i < 5; i++) {
        out.push(pgResult(await c.query({ name: 'stmt1', text: 'SELECT $1::int * 2 AS d, repeat($2::text, $1::int) AS s', values: [i, 'ab'] })));
      }
      return out;
    }),
  );
  // an error in an extended query, then the connection is still usable
  await same('extended error then reuse', (t) =>
    withPg(t.url, async (c) => [
      await settle(c.query('SELECT $1::int / 0 AS x', [1]), pgResult, pgError),
      await settle(c.query('SELECT $1::int AS bad', ['not a number']), pgResult, pgError),
      await settle(c.query('SELECT $1::text AS ok', ['still works']), pgResult, pgError),
    ]),
  );
});

test('pg: binary parameters and binary results are identical', { timeout: 30_000 }, async () => {
  const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const r = await same('binary bytea param', (t) =>
    withPg(t.url, async (c) =>
      pgResult(await c.query('SELECT $1::bytea AS b, length($1::bytea) AS len, md5($1::bytea) AS h, $2::bytea AS empty', [allBytes, Buffer.alloc(0)])),
    ),
  );
  const row = r.rows[0] as Record<string, unknown>;
  assert.deepEqual(row.b, allBytes);
  assert.equal(row.len, 256);
  assert.equal(row.h, crypto.createHash('md5').update(allBytes).digest('hex'));
  assert.deepEqual(row.empty, Buffer.alloc(0));

  // pg's binary mode: the server sends binary, pg decodes (lossily, as UTF-8 text) — identical either way
  const bin = await same('pg binary mode', (t) =>
    withPg(
      t.url,
      async (c) => pgResult(await c.query('SELECT $1::int4 AS i, $2::text AS t, $3::float8 AS f, true AS bool, NULL::int AS nul, 7::int2 AS small', [7, 'binary ✓', 2.25])),
      { binary: true, types: RAW_TYPES },
    ),
  );
  assert.ok(bin.fields.every((f) => f.format === 'binary'), 'results came back in binary format');
  assert.deepEqual(bin.rows[0], { i: '00000007', t: Buffer.from('binary ✓').toString('hex'), f: '4002000000000000', bool: '01', nul: null, small: '0007' });

  // Byte-exact binary results (and binary parameters) on the wire
  const raw = await same('raw binary results', async (t) =>
    (
      await rawBinaryQuery(
        t.url,
        "SELECT $1::int4 AS i, $2::int8 AS big, $3::bytea AS b, $4::text AS t, $5::int AS nul, '2024-02-29 12:34:56.789+00'::timestamptz AS ts, ARRAY[1,2,3]::int[] AS arr, 1.5::numeric AS n",
        [i32(7), Buffer.from('0000001cbe991a14', 'hex'), allBytes, Buffer.from('binary ✓'), null],
      )
    ).map((m) => m.toString('hex')),
  );
  assert.deepEqual(
    raw.map((h) => String.fromCharCode(parseInt(h.slice(0, 2), 16))),
    ['1', '2', 'T', 'D', 'C', 'Z'],
  );
  const vals = readDataRowBytes(Buffer.from(raw[3]!, 'hex'));
  assert.equal(vals[0]!.toString('hex'), '00000007');
  assert.equal(vals[1]!.toString('hex'), '0000001cbe991a14');
  assert.deepEqual(vals[2], allBytes);
  assert.equal(vals[3]!.toString(), 'binary ✓');
  assert.equal(vals[4], null);
  // 2024-02-29 12:34:56.789 UTC in microseconds since 2000-01-01
  const us = (BigInt(Date.parse('2024-02-29T12:34:56.789Z')) - BigInt(Date.parse('2000-01-01T00:00:00Z'))) * 1000n;
  assert.equal(vals[5]!.toString('hex'), us.toString(16).padStart(16, '0'));
});

test('postgres.js: extended-protocol queries with typed parameters are identical', { timeout: 30_000 }, async () => {
  const blob = crypto.createHash('sha512').update('seed').digest();
  const r = await same('postgres.js typed', (t) =>
    withSql(t.url, async (sql) => {
      const out = [];
      out.push(
        pjResult(
          await sql`SELECT ${1}::int AS i, ${'héllo ✓'} AS t, ${blob} AS b, ${new Date('2024-02-29T12:34:56.789Z')}::timestamptz AS ts,
            ${sql.json({ a: [1, 2, { b: null }] })} AS j, ${[1, 2, 3]}::int[] AS arr, ${null}::text AS nul, ${true} AS bool,
            ${'12345.6789012345678901'}::numeric AS n, ${'9007199254740993'}::bigint AS big`,
        ),
      );
      out.push(pjResult(await sql`SELECT g, md5(g::text) AS h FROM generate_series(1, ${200}) g`));
      out.push(pjResult(await sql`SELECT ${'a'}::text || ${'b'}::text AS ab`));
      out.push(pjResult(await sql.unsafe('SELECT 1 AS one, $1::text AS p', ['unsafe'])));
      return out;
    }),
  );
  assert.deepEqual((r[0] as { rows: Record<string, unknown>[] }).rows[0]!.b, blob);
});

// ------------------------------------------------------------------ pipelining

test('postgres.js: 50 pipelined queries on one connection are identical', { timeout: 30_000 }, async () => {
  await same('pipeline of 50', (t) =>
    withSql(t.url, async (sql) => {
      const rs = await Promise.all(
        Array.from({ length: 50 }, (_, i) => sql`SELECT ${i}::int AS i, repeat(${'x'}, ${i * 37}) AS s, md5(${String(i)}) AS h, pg_backend_pid() AS pid`),
      );
      const pids = new Set(rs.map((r) => r[0]!.pid));
      assert.equal(pids.size, 1, 'all 50 queries ran on one server connection');
      return rs.map((r) => r.map((row) => ({ ...row, pid: 0 })));
    }),
  );
  // bigger: 500 in flight with mixed result sizes
  await same('pipeline of 500', (t) =>
    withSql(t.url, async (sql) => {
      const rs = await Promise.all(Array.from({ length: 500 }, (_, i) => sql`SELECT g FROM generate_series(1, ${i % 50}) g`));
      return rs.map((r) => [...r]);
    }),
  );
});

test('pg: 300 extended queries in flight on one client are identical', { timeout: 30_000 }, async () => {
  await same('pg in flight', (t) =>
    withPg(t.url, async (c) => {
      const rs = await Promise.all(Array.from({ length: 300 }, (_, i) => c.query('SELECT $1::int * 2 AS d, $2::text AS t', [i, `row ${i}`])));
      return rs.map((r) => r.rows);
    }),
  );
});

test('postgres.js: an error in the middle of a pipeline fails only that query', { timeout: 30_000 }, async () => {
  const r = await same('pipeline error', (t) =>
    withSql(t.url, async (sql) => {
      const settled = await Promise.allSettled([sql`SELECT 1 AS a`, sql`SELECT 1/0 AS boom`, sql`SELECT ${3}::int AS c`]);
      const out = settled.map((s) => (s.status === 'fulfilled' ? { ok: [...s.value] } : { error: pjError(s.reason) }));
      out.push({ ok: [...(await sql`SELECT 'usable' AS after`)] });
      return out;
    }),
  );
  assert.deepEqual(r[0], { ok: [{ a: 1 }] });
  assert.equal((r[1] as { error: { code: string } }).error.code, '22012');
  assert.deepEqual(r[2], { ok: [{ c: 3 }] });
  assert.deepEqual(r[3], { ok: [{ after: 'usable' }] });
});

test('postgres.js: an error mid-transaction aborts it (25P02) and ROLLBACK works', { timeout: 30_000 }, async () => {
  await cluster.query('CREATE TABLE IF NOT EXISTS pipe_tx (id int)');
  const r = await same('transaction error', (t) =>
    withSql(t.url, async (sql) => {
      let inside: unknown[] = [];
      const begin = await settle(
        sql.begin(async (tx) => {
          await tx`INSERT INTO pipe_tx VALUES (1)`;
          const settled = await Promise.allSettled([tx`SELECT 1 AS a`, tx`SELECT 1/0 AS boom`, tx`SELECT 2 AS b`, tx`INSERT INTO pipe_tx VALUES (2)`]);
          inside = settled.map((s) => (s.status === 'fulfilled' ? { ok: [...s.value] } : { error: pjError(s.reason) }));
          throw new Error('give up');
        }),
        () => 'committed',
        (e) => (e as Error).message,
      );
      // the same by hand on the single connection: BEGIN, error, later statements fail, ROLLBACK succeeds
      await sql`BEGIN`;
      await sql`INSERT INTO pipe_tx VALUES (3)`;
      const manual = await Promise.allSettled([sql`SELECT 1/0 AS boom`, sql`SELECT 1 AS a`]);
      const rollback = await sql`ROLLBACK`;
      const count = await sql`SELECT count(*)::int AS n FROM pipe_tx`;
      const usable = await sql`SELECT 'usable' AS after`;
      return {
        inside,
        begin,
        manual: manual.map((s) => (s.status === 'fulfilled' ? { ok: [...s.value] } : { error: pjError(s.reason) })),
        rollback: rollback.command,
        count: [...count],
        usable: [...usable],
      };
    }),
  );
  assert.deepEqual(r.inside[0], { ok: [{ a: 1 }] });
  assert.equal((r.inside[1] as { error: { code: string } }).error.code, '22012');
  assert.equal((r.inside[2] as { error: { code: string } }).error.code, '25P02');
  assert.equal((r.inside[3] as { error: { code: string } }).error.code, '25P02');
  assert.deepEqual(r.begin, { error: 'give up' });
  assert.equal((r.manual[0] as { error: { code: string } }).error.code, '22012');
  assert.equal((r.manual[1] as { error: { code: string } }).error.code, '25P02');
  assert.equal(r.rollback, 'ROLLBACK');
  assert.deepEqual(r.count, [{ n: 0 }]);
  assert.deepEqual(r.usable, [{ after: 'usable' }]);
});

// ------------------------------------------------------------------ multi-statement, notices, notify

test('multi-statement simple queries: pg result arrays and psql -c', { timeout: 30_000 }, async () => {
  const r = await same('pg multi', (t) =>
    withPg(t.url, async (c) => {
      const res = (await c.query('SELECT 1 AS a; SELECT 2 AS b, \'two\' AS c; SELECT g FROM generate_series(1,3) g')) as unknown as pg.QueryResult[];
      const err = await settle(c.query('SELECT 1; SELECT 1/0; SELECT 3'), () => 'ok', pgError);
      const after = await c.query('SELECT 42 AS after');
      return { res: res.map(pgResult), err, after: after.rows };
    }),
  );
  assert.equal(r.res.length, 3);
  assert.deepEqual(r.res[0]!.rows, [{ a: 1 }]);
  assert.deepEqual(r.res[1]!.rows, [{ b: 2, c: 'two' }]);
  assert.equal((r.err as { error: { code: string } }).error.code, '22012');
  assert.deepEqual(r.after, [{ after: 42 }]);

  const p = await same('psql multi', (t) => psql(t.url, ['-c', 'SELECT 1 AS a; SELECT 2 AS b, \'two\' AS c']));
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /two/);
  const perr = await same('psql multi error', (t) => psql(t.url, ['-v', 'ON_ERROR_STOP=1', '-c', 'SELECT 1 AS a; SELECT 1/0; SELECT 3']));
  assert.notEqual(perr.code, 0);
  assert.match(perr.stderr, /division by zero/);
});

test('NOTICE and WARNING messages reach the client unchanged', { timeout: 30_000 }, async () => {
  const r = await same('notices', (t) =>
    withPg(t.url, async (c) => {
      const notices: Record<string, unknown>[] = [];
      c.on('notice', (n) => notices.push({ ...n }));
      await c.query("DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE WARNING 'careful %', 'there' USING DETAIL = 'some detail', HINT = 'a hint'; END $$");
      await c.query('SET client_min_messages = notice');
      await c.query('DROP TABLE IF EXISTS surely_not_there_table');
      return notices;
    }),
  );
  assert.equal(r.length, 3);
  assert.equal(r[0]!.severity, 'NOTICE');
  assert.equal(r[0]!.message, 'hello 1');
  assert.equal(r[1]!.severity, 'WARNING');
  assert.equal(r[1]!.message, 'careful there');
  assert.equal(r[1]!.detail, 'some detail');
  assert.equal(r[2]!.code, '00000');
});

test('LISTEN/NOTIFY and pg_notify through the gateway', { timeout: 30_000 }, async () => {
  const r = await same('notify', async (t) => {
    const listener = new pg.Client({ connectionString: t.url });
    const notifier = new pg.Client({ connectionString: t.url });
    listener.on('error', () => {});
    notifier.on('error', () => {});
    await listener.connect();
    await notifier.connect();
    try {
      await listener.query('LISTEN chan_a');
      await listener.query('LISTEN "Chan B"');
      const pid = (await notifier.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const got = once<pg.Notification>(listener, 'notification', 4);
      await notifier.query("NOTIFY chan_a, 'payload one'");
      await notifier.query("SELECT pg_notify('Chan B', 'payload two ✓')");
      await notifier.query("BEGIN; NOTIFY chan_a, 'in tx'; SELECT pg_notify('chan_a', repeat('p', 7000)); COMMIT");
      await notifier.query("NOTIFY chan_not_listened, 'ignored'");
      const ns = await got;
      // The notifying backend's pid: in transaction pooling each statement may run on another server
      // connection, so only a session-pooled or direct client can compare it with its own.
      for (const n of ns) assert.ok(t.name !== 'direct' ? n.processId > 0 : n.processId === pid, 'processId is the notifying backend');
      // after UNLISTEN nothing more arrives
      await listener.query('UNLISTEN *');
      let extra = 0;
      listener.on('notification', () => extra++);
      await notifier.query("NOTIFY chan_a, 'late'");
      await listener.query('SELECT 1');
      await sleep(100);
      return { ns: ns.map((n) => ({ channel: n.channel, payload: n.payload })), extra };
    } finally {
      await listener.end().catch(() => {});
      await notifier.end().catch(() => {});
    }
  });
  assert.deepEqual(r.ns.slice(0, 3), [
    { channel: 'chan_a', payload: 'payload one' },
    { channel: 'Chan B', payload: 'payload two ✓' },
    { channel: 'chan_a', payload: 'in tx' },
  ]);
  assert.equal(r.ns[3]!.payload, 'p'.repeat(7000));
  assert.equal(r.extra, 0);
});

// ------------------------------------------------------------------ COPY, large values

test('COPY FROM STDIN and COPY TO STDOUT of a 100 MB table with psql', { timeout: 120_000 }, async (t) => {
  const file = path.join(tmpDir, 'copy.csv');
  const ROWS = 1_000_000;
  const tGen = Date.now();
  // ~100 MB: id + 90 pseudo-random chars per row, ids ascending so COPY ... ORDER BY id reproduces the file
  {
    const alphabet = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-');
    const pool = Buffer.alloc(1 << 20);
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let i = 0; i < pool.length; i++) pool[i] = alphabet[rnd() % alphabet.length]!;
    const fd = fs.openSync(file, 'w');
    const block = Buffer.alloc(4 << 20);
    let used = 0;
    for (let i = 1; i <= ROWS; i++) {
      if (used + 110 > block.length) {
        fs.writeSync(fd, block, 0, used);
        used = 0;
      }
      used += block.write(`${i},`, used, 'latin1');
      const off = rnd() % (pool.length - 90);
      used += pool.copy(block, used, off, off + 90);
      block[used++] = 0x0a;
    }
    fs.writeSync(fd, block, 0, used);
    fs.closeSync(fd);
  }
  t.diagnostic(`generated in ${Date.now() - tGen} ms`);
  const fileHash = await new Promise<string>((resolve, reject) => {
    const h = crypto.createHash('md5');
    fs.createReadStream(file)
      .on('data', (d) => h.update(d))
      .once('end', () => resolve(h.digest('hex')))
      .once('error', reject);
  });
  const size = fs.statSync(file).size;
  t.diagnostic(`CSV file: ${(size / 1e6).toFixed(1)} MB, md5 ${fileHash}`);
  assert.ok(size > 95e6, 'file is ~100 MB');

  await cluster.query('CREATE TABLE copy_gw (id int, v text); CREATE TABLE copy_direct (id int, v text)');
  try {
    const t0 = Date.now();
    const loadGw = await psql(gateway.url, ['-v', 'ON_ERROR_STOP=1', '-c', `\\copy copy_gw FROM '${file}' WITH (FORMAT csv)`]);
    const gwMs = Date.now() - t0;
    assert.equal(loadGw.code, 0, loadGw.stderr);
    const t1 = Date.now();
    const loadDirect = await psql(direct.url, ['-v', 'ON_ERROR_STOP=1', '-c', `\\copy copy_direct FROM '${file}' WITH (FORMAT csv)`]);
    t.diagnostic(`COPY FROM: gateway ${gwMs} ms, direct ${Date.now() - t1} ms`);
    assert.equal(loadDirect.code, 0, loadDirect.stderr);
    assert.equal(loadGw.stdout, loadDirect.stdout);
    assert.equal(loadGw.stdout.trim(), `COPY ${ROWS}`);

    const counts = await same('count', (x) => psql(x.url, ['-A', '-t', '-c', 'SELECT count(*), count(DISTINCT id), sum(length(v)) FROM copy_gw']));
    assert.equal(counts.stdout.trim(), `${ROWS}|${ROWS}|${ROWS * 90}`);

    const out = (tbl: string) => ['-v', 'ON_ERROR_STOP=1', '-c', `COPY (SELECT * FROM ${tbl} ORDER BY id) TO STDOUT WITH (FORMAT csv)`];
    const t2 = Date.now();
    const gwOut = await psqlHash(gateway.url, out('copy_gw'));
    const gwOutMs = Date.now() - t2;
    const t3 = Date.now();
    const directOut = await psqlHash(direct.url, out('copy_gw'));
    t.diagnostic(`COPY TO: gateway ${gwOutMs} ms, direct ${Date.now() - t3} ms`);
    const t4 = Date.now();
    const gwOutOfDirect = await psqlHash(gateway.url, out('copy_direct'));
    t.diagnostic(`COPY TO (table loaded directly) through the gateway: ${Date.now() - t4} ms`);
    for (const r of [gwOut, directOut, gwOutOfDirect]) assert.equal(r.code, 0, r.stderr);
    assert.equal(gwOut.bytes, size);
    assert.equal(gwOut.md5, directOut.md5, 'COPY TO through the gateway equals direct');
    assert.equal(gwOut.md5, fileHash, 'the table loaded through the gateway equals the file');
    assert.equal(gwOutOfDirect.md5, fileHash, 'the table loaded directly, read through the gateway, equals the file');
  } finally {
    fs.rmSync(file, { force: true });
    await cluster.query('DROP TABLE IF EXISTS copy_gw; DROP TABLE IF EXISTS copy_direct');
  }
});

test('COPY FROM STDIN with a bad row fails identically and loads nothing', { timeout: 30_000 }, async () => {
  await cluster.query('CREATE TABLE IF NOT EXISTS copy_err (id int primary key, v text)');
  const file = path.join(tmpDir, 'bad.csv');
  fs.writeFileSync(file, '1,a\n2,b\nnot-an-int,c\n4,d\n');
  try {
    const r = await same('copy error', async (x) => {
      const res = await psql(x.url, ['-c', `\\copy copy_err FROM '${file}' WITH (FORMAT csv)`]);
      const count = await psql(x.url, ['-A', '-t', '-c', 'SELECT count(*) FROM copy_err']);
      return { code: res.code, stderr: res.stderr.replace(/^psql:[^:]*:/gm, 'psql:'), count: count.stdout };
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid input syntax for type integer/);
    assert.equal(r.count.trim(), '0');
  } finally {
    fs.rmSync(file, { force: true });
  }
});

test('large values: a 50 MB text value and a 20 MB bytea round-trip with pg', { timeout: 60_000 }, async () => {
  const SIZE = 50 * 1024 * 1024;
  const text = await both((t) =>
    withPg(t.url, async (c) => {
      const r = await c.query({ text: `SELECT repeat('x', ${SIZE}) AS big, 'tail' AS tail`, rowMode: 'array' });
      return r.rows[0] as [string, string];
    }),
  );
  assert.equal(text.gateway[0].length, SIZE);
  assert.ok(text.gateway[0] === text.direct[0], '50 MB value identical');
  assert.equal(text.gateway[1], 'tail');
  assert.equal(text.gateway[0].replaceAll('x', ''), '');

  await cluster.query('CREATE TABLE IF NOT EXISTS big_bytea (k text primary key, b bytea)');
  const blob = crypto.randomBytes(20 * 1024 * 1024);
  const md5 = crypto.createHash('md5').update(blob).digest('hex');
  const r = await both((t) =>
    withPg(t.url, async (c) => {
      const echo = (await c.query('SELECT $1::bytea AS b', [blob])).rows[0].b as Buffer;
      await c.query('INSERT INTO big_bytea VALUES ($1, $2)', [t.name, blob]);
      const back = (await c.query('SELECT b, md5(b) AS h, length(b) AS n FROM big_bytea WHERE k = $1', [t.name])).rows[0] as { b: Buffer; h: string; n: number };
      const rawMsgs = await rawBinaryQuery(t.url, 'SELECT b FROM big_bytea WHERE k = $1', [Buffer.from(t.name)]);
      const binOk = rawMsgs.filter((x) => x[0] === 0x44).length === 1 && readDataRowBytes(rawMsgs.find((x) => x[0] === 0x44)!)[0]!.equals(blob);
      return { echoOk: echo.equals(blob), backOk: back.b.equals(blob), binOk, h: back.h, n: back.n };
    }),
  );
  assert.deepEqual(r.gateway, r.direct);
  assert.deepEqual(r.gateway, { echoOk: true, backOk: true, binOk: true, h: md5, n: blob.length });
});

// ------------------------------------------------------------------ psql

test('psql: \\d, -A -t queries and meta-commands give identical output', { timeout: 30_000 }, async () => {
  await cluster.query(
    "CREATE TABLE IF NOT EXISTS psql_t (id serial primary key, name text not null default 'x', created timestamptz default now()); CREATE INDEX IF NOT EXISTS psql_t_name ON psql_t(name); CREATE OR REPLACE VIEW psql_v AS SELECT id, name FROM psql_t",
  );
  const script = path.join(tmpDir, 'script.sql');
  fs.writeFileSync(script, 'SELECT 7 AS seven \\gset\n\\echo :seven\nSELECT :seven * 6 AS answer;\n');
  const checks: [string, string[]][] = [
    ['\\d', ['-c', '\\d']],
    ['\\d psql_t', ['-c', '\\d psql_t']],
    ['\\dn', ['-c', '\\dn']],
    ['\\df', ['-c', '\\df pg_catalog.pg_sleep*']],
    ['-A -t', ['-A', '-t', '-c', "SELECT g, g * 2, 'x' || g FROM generate_series(1, 20) g"]],
    ['-A -F', ['-A', '-F', ',', '-c', "SELECT 1 AS a, 'two' AS b, NULL AS c, now() IS NOT NULL AS d"]],
    ['aligned', ['-c', "SELECT 'aligned' AS col, 1.5::numeric AS n, ARRAY[1,2] AS arr"]],
    ['\\gset + echo (-f script)', ['-A', '-t', '-v', 'ON_ERROR_STOP=1', '-f', script]],
    ['BEGIN/INSERT RETURNING/ROLLBACK', ['-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', 'BEGIN', '-c', 'INSERT INTO psql_t(name) VALUES ($$p$$) RETURNING name', '-c', 'ROLLBACK']],
  ];
  const outputs = new Map<string, string>();
  for (const [what, args] of checks) {
    const r = await same(`psql ${what}`, (t) => psql(t.url, args));
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
    assert.ok(r.stdout.length > 0, `${what}: some output`);
    outputs.set(what, r.stdout);
  }
  assert.match(outputs.get('\\d psql_t')!, /psql_t_name/);
  assert.equal(outputs.get('\\gset + echo (-f script)')!, '7\n42\n');
  assert.equal(outputs.get('BEGIN/INSERT RETURNING/ROLLBACK')!, 'BEGIN\np\nINSERT 0 1\nROLLBACK\n');
  assert.equal(outputs.get('-A -t')!.split('\n')[0], '1|2|x1');
  const d = await psql(gateway.url, ['-c', '\\d']);
  assert.match(d.stdout, /psql_t/);
  assert.match(d.stdout, /psql_v/);
});

// ------------------------------------------------------------------ startup parameters and reset

const SHOW_SQL =
  "SELECT current_setting('application_name') AS application_name, current_setting('client_encoding') AS client_encoding, " +
  "current_setting('search_path') AS search_path, current_setting('DateStyle') AS datestyle, current_setting('TimeZone') AS timezone, " +
  "current_setting('statement_timeout') AS statement_timeout, current_setting('lock_timeout') AS lock_timeout, to_char('2024-03-01 10:00:00+00'::timestamptz, 'YYYY-MM-DD HH24:MI TZ') AS local_time";

test('startup parameters reach the server, and are reset for the next client of a pooled connection', { timeout: 30_000 }, async () => {
  await cluster.query('CREATE SCHEMA IF NOT EXISTS myschema; CREATE TABLE IF NOT EXISTS myschema.only_here (v text); TRUNCATE myschema.only_here; INSERT INTO myschema.only_here VALUES ($$found in myschema$$)');
  const custom: pg.ClientConfig = {
    application_name: 'switchyard-test-app',
    statement_timeout: 12345,
    // (client_encoding is covered with psql below: pg always sends client_encoding=UTF8 as a startup key)
    options: '-c search_path=myschema -c DateStyle=SQL,DMY -c TimeZone=America/New_York -c lock_timeout=4321',
  };
  const session = async (t: Target, opts: pg.ClientConfig) => {
    const c = new pg.Client({ connectionString: t.url, ...opts });
    c.on('error', () => {});
    const params = trackParams(c);
    await c.connect();
    try {
      const show = (await c.query(SHOW_SQL)).rows[0] as Record<string, string>;
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const unqualified = await settle(c.query('SELECT v FROM only_here'), (r) => r.rows, pgError);
      const dateText = (await c.query("SELECT '2024-03-01 10:00:00+00'::timestamptz::text AS t")).rows[0].t as string;
      return { show, params: Object.fromEntries([...params].sort()), unqualified, dateText, pid };
    } finally {
      await c.end().catch(() => {});
    }
  };
  const withClientValues = await both((t) => session(t, custom), gateway1);
  const { pid: pidA, ...gwA } = withClientValues.gateway;
  const { pid: _d, ...directA } = withClientValues.direct;
  assert.deepEqual(gwA, directA, 'a client with startup parameters sees the same settings as directly');
  assert.deepEqual(gwA.show, {
    application_name: 'switchyard-test-app',
    client_encoding: 'UTF8',
    search_path: 'myschema',
    datestyle: 'SQL, DMY',
    timezone: 'America/New_York',
    statement_timeout: '12345ms',
    lock_timeout: '4321ms',
    local_time: '2024-03-01 05:00 EST',
  });
  assert.deepEqual(gwA.unqualified, { ok: [{ v: 'found in myschema' }] });
  assert.equal(gwA.params.application_name, 'switchyard-test-app');
  assert.equal(gwA.params.DateStyle, 'SQL, DMY');
  assert.equal(gwA.params.TimeZone, 'America/New_York');

  // A second client on the same (pool size 1) server connection, without those parameters.
  const plain = await both((t) => session(t, {}), gateway1);
  const { pid: pidB, ...gwB } = plain.gateway;
  const { pid: _d2, ...directB } = plain.direct;
  assert.equal(pidB, pidA, 'the second client reuses the pooled server connection');
  assert.deepEqual(gwB, directB, 'the next client of the connection sees none of the previous client settings');
  assert.notEqual(gwB.show.application_name, 'switchyard-test-app');
  assert.notEqual(gwB.show.search_path, 'myschema');
  assert.notEqual(gwB.show.datestyle, 'SQL, DMY');
  assert.notEqual(gwB.show.timezone, 'America/New_York');
  assert.equal(gwB.show.statement_timeout, '0');
  assert.equal((gwB.unqualified as { error: { code: string } }).error.code, '42P01');
});

test('startup parameters as plain startup-packet keys (psql env, postgres.js connection) are carried and reset', { timeout: 30_000 }, async () => {
  // psql: PGCLIENTENCODING/PGAPPNAME/PGOPTIONS/PGDATESTYLE/PGTZ become startup parameters
  const env = { PGCLIENTENCODING: 'LATIN1', PGAPPNAME: 'psql-app', PGDATESTYLE: 'German', PGTZ: 'Asia/Tokyo', PGOPTIONS: '-c search_path=myschema' };
  const q = ['-A', '-t', '-F', '|', '-c', SHOW_SQL];
  const p = await same('psql with env', (t) => psql(t.url, q, env), gateway1);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.stdout.trim(), 'psql-app|LATIN1|myschema|German, DMY|Asia/Tokyo|0|0|2024-03-01 19:00 JST');
  const p2 = await same('psql without env', (t) => psql(t.url, q), gateway1);
  assert.equal(p2.code, 0, p2.stderr);
  assert.doesNotMatch(p2.stdout, /LATIN1|myschema|German|Tokyo|psql-app/);

  // postgres.js: connection parameters go into the startup packet as they are
  const connection = { application_name: 'pjs-app', TimeZone: 'Pacific/Auckland', DateStyle: 'Postgres, DMY', search_path: 'myschema' };
  const r = await same(
    'postgres.js connection params',
    (t) =>
      withSql(
        t.url,
        async (sql) => {
          const rows = [...(await sql.unsafe(SHOW_SQL))];
          const ps = { ...sql.parameters } as Record<string, string>;
          return { rows, ps: Object.fromEntries(Object.entries(ps).sort()) };
        },
        { connection },
      ),
    gateway1,
  );
  assert.equal((r.rows[0] as Record<string, string>).timezone, 'Pacific/Auckland');
  assert.equal(r.ps.TimeZone, 'Pacific/Auckland');
  assert.equal(r.ps.DateStyle, 'Postgres, DMY');
  assert.equal(r.ps.application_name, 'pjs-app');
  const r2 = await same('postgres.js without params', (t) => withSql(t.url, async (sql) => [...(await sql.unsafe(SHOW_SQL))]), gateway1);
  assert.notEqual((r2[0] as Record<string, string>).timezone, 'Pacific/Auckland');
});

test('a setting given both as a startup-packet key and in options: the key wins, as in PostgreSQL', { timeout: 30_000 }, async () => {
  // PostgreSQL applies the options switches first and the plain startup-packet keys after them
  // (process_startup_options in postinit.c), so a key overrides the same setting in options.
  const p = await same('psql PGAPPNAME + PGOPTIONS', (t) =>
    psql(t.url, ['-A', '-t', '-c', "SELECT current_setting('application_name')"], { PGAPPNAME: 'from_key', PGOPTIONS: '-c application_name=from_options' }),
  );
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.stdout.trim(), 'from_key');
  // pg always puts client_encoding=UTF8 in its startup packet
  const r = await same('pg options client_encoding', (t) =>
    withPg(
      t.url,
      async (c) => (await c.query("SELECT current_setting('client_encoding') AS ce, current_setting('application_name') AS an")).rows[0],
      { application_name: 'from_key', options: '-c client_encoding=LATIN1 -c application_name=from_options' },
    ),
  );
  assert.deepEqual(r, { ce: 'UTF8', an: 'from_key' });
});

test('options syntax variants and unusual values are carried as PostgreSQL applies them', { timeout: 30_000 }, async () => {
  const cases: pg.ClientConfig[] = [
    { options: '--search-path=myschema -cstatement_timeout=1min -c application_name=with\\ escaped\\ spaces' },
    { options: '  -c   DateStyle=Postgres,YMD\t-c lock_timeout=0  ' },
    { application_name: 'äpp ☃ with non-ASCII characters' },
    { application_name: 'a'.repeat(100) },
    { options: '-c myapp.custom_setting=hello -c search_path=myschema,public' },
  ];
  for (const opts of cases) {
    const r = await same(`startup ${JSON.stringify(opts)}`, (t) =>
      settle(
        withPg(t.url, async (c) => (await c.query(SHOW_SQL + ", current_setting('myapp.custom_setting', true) AS custom")).rows[0], opts),
        (v) => v,
        pgError,
      ),
    );
    assert.ok('ok' in (r as object), `${JSON.stringify(opts)}: connected (${JSON.stringify(r)})`);
  }
});

test('an invalid startup setting is refused as PostgreSQL refuses it', { timeout: 30_000 }, async () => {
  for (const options of ['-c work_mem=bogus', '-c no_such_parameter=1']) {
    const r = await same(`options ${options}`, (t) => settle(withPg(t.url, async (c) => (await c.query('SELECT 1 AS one')).rows, { options }), (v) => v, pgError), gateway1);
    const err = (r as { error?: { code: string; severity: string } }).error;
    assert.ok(err, `${options}: the connection is refused`);
    assert.equal(err.severity, 'FATAL');
  }
  // and the pool (size 1) still serves the next client
  const ok = await withPg(gateway1.url, async (c) => (await c.query('SELECT 1 AS one')).rows);
  assert.deepEqual(ok, [{ one: 1 }]);
});

test('session state does not leak to the next client of a pooled connection', { timeout: 30_000 }, async () => {
  await cluster.query(
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leak_role') THEN CREATE ROLE leak_role; END IF; END $$; CREATE SEQUENCE IF NOT EXISTS leak_seq",
  );
  const CHECK = `SELECT
      (SELECT count(*)::int FROM pg_prepared_statements) AS prepared,
      (SELECT count(*)::int FROM pg_cursors) AS cursors,
      (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory,
      (SELECT count(*)::int FROM pg_listening_channels()) AS listening,
      to_regclass('pg_temp.leak_tmp') IS NULL AS no_temp_table,
      current_user::text AS cur_user, session_user::text AS sess_user,
      current_setting('statement_timeout') AS statement_timeout,
      current_setting('default_transaction_isolation') AS isolation,
      current_setting('application_name') AS application_name`;
  const r = await both(async (t) => {
    // a client that leaves plenty of session state behind
    let pidA = 0;
    await withPg(t.url, async (a) => {
      pidA = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await a.query('CREATE TEMP TABLE leak_tmp (x int)');
      await a.query('PREPARE leak_stmt AS SELECT 1');
      await a.query('SELECT pg_advisory_lock(4242)');
      await a.query('LISTEN leak_chan');
      await a.query("SELECT nextval('leak_seq')");
      await a.query('BEGIN; DECLARE leak_cur CURSOR WITH HOLD FOR SELECT 1; COMMIT');
      await a.query("SET statement_timeout = '7s'");
      await a.query('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE');
      await a.query("SET application_name = 'leaky'");
      await a.query('SET ROLE leak_role');
    });
    return withPg(t.url, async (b) => {
      const pidB = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const state = (await b.query(CHECK)).rows[0];
      const currval = await settle(b.query("SELECT currval('leak_seq')"), (x) => x.rows, (e) => pgError(e).code);
      // the advisory lock is free for others
      const lock = (await b.query('SELECT pg_try_advisory_lock(4242) AS got')).rows[0].got as boolean;
      await b.query('SELECT pg_advisory_unlock_all()');
      const notified: string[] = [];
      b.on('notification', (n) => notified.push(n.channel));
      await cluster.query("NOTIFY leak_chan, 'x'");
      await b.query('SELECT 1');
      await sleep(50);
      return { state, currval, lock, notified, reused: pidA === pidB };
    });
  }, gateway1);
  assert.equal(r.gateway.reused, true, 'the second client got the same server connection (pool size 1)');
  assert.deepEqual({ ...r.gateway, reused: null }, { ...r.direct, reused: null });
  assert.deepEqual(r.gateway.state, {
    prepared: 0,
    cursors: 0,
    advisory: 0,
    listening: 0,
    no_temp_table: true,
    cur_user: cluster.superuser,
    sess_user: cluster.superuser,
    statement_timeout: '0',
    isolation: 'read committed',
    application_name: '',
  });
  assert.deepEqual(r.gateway.currval, { error: '55000' });
  assert.equal(r.gateway.lock, true);
  assert.deepEqual(r.gateway.notified, []);
});

test('query cancellation through the gateway (postgres.js query.cancel())', { timeout: 30_000 }, async () => {
  const r = await same('cancel', (t) =>
    withSql(t.url, async (sql) => {
      const started = Date.now();
      const q = sql`SELECT pg_sleep(10)`;
      setTimeout(() => q.cancel(), 300);
      const res = await settle(q, (x) => [...x], pjError);
      const elapsed = Date.now() - started;
      const after = [...(await sql`SELECT 'usable' AS after`)];
      return { res, fast: elapsed < 5000, after };
    }),
  );
  assert.equal((r.res as { error: { code: string } }).error.code, '57014');
  assert.equal(r.fast, true);
  assert.deepEqual(r.after, [{ after: 'usable' }]);
});

test('a client that disconnects inside a transaction has it rolled back', { timeout: 30_000 }, async () => {
  await cluster.query('CREATE TABLE IF NOT EXISTS dtx (id int, how text)');
  for (const how of ['end', 'destroy', 'failed-tx'] as const) {
    const r = await both(async (t) => {
      const a = new pg.Client({ connectionString: t.url });
      a.on('error', () => {});
      await a.connect();
      const pidA = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await a.query('BEGIN');
      await a.query('INSERT INTO dtx VALUES (1, $1)', [`${t.name}-${how}`]);
      await a.query("SET LOCAL application_name = 'in-doomed-tx'");
      await a.query('SET search_path = doomed_session_setting');
      if (how === 'failed-tx') {
        // leave with the transaction in the failed state ('E')
        await assert.rejects(a.query('SELECT 1/0'), { code: '22012' });
        await a.end();
      } else if (how === 'end') await a.end();
      else {
        const ended = new Promise((res) => a.once('end', res));
        (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
        await ended;
      }
      // the next client (pool size 1 through the gateway: the same server connection)
      return withPg(t.url, async (b) => {
        const notices: string[] = [];
        b.on('notice', (n) => notices.push(`${n.code}: ${n.message}`));
        const pidB = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
        const fresh = (await b.query('SELECT now() = statement_timestamp() AS fresh, txid_current_if_assigned() AS xid, current_setting($$search_path$$) AS sp')).rows[0];
        // BEGIN inside an open transaction would warn 25001
        await b.query('BEGIN');
        await b.query('COMMIT');
        let visible = 0;
        for (let i = 0; i < 50; i++) {
          // a direct disconnect is rolled back by the server asynchronously: give it a moment
          visible = Number((await b.query('SELECT count(*)::int AS n FROM dtx WHERE how = $1', [`${t.name}-${how}`])).rows[0].n);
          if (visible === 0) break;
          await sleep(20);
        }
        return { visible, fresh, notices, reused: pidA === pidB };
      });
    }, gateway1);
    assert.equal(r.gateway.visible, 0, `${how}: the row inserted in the abandoned transaction is not visible`);
    assert.deepEqual(r.gateway.fresh, { fresh: true, xid: null, sp: '"$user", public' }, `${how}: next client starts outside a transaction, with a reset session`);
    assert.deepEqual(r.gateway.notices, [], `${how}: no "already a transaction in progress" warning`);
    assert.equal(r.gateway.reused, true, `${how}: the server connection was reset and reused (pool size 1)`);
    assert.equal(r.direct.visible, 0);
    assert.deepEqual({ ...r.gateway, reused: null }, { ...r.direct, reused: null });
  }
  assert.equal(await cluster.query('SELECT count(*) FROM dtx'), '0');
});

// ------------------------------------------------------------------ ParameterStatus

test('ParameterStatus values equal those of a direct connection (pg and postgres.js)', { timeout: 30_000 }, async () => {
  const pgParams = await both(async (t) => {
    const c = new pg.Client({ connectionString: t.url });
    const params = trackParams(c);
    await c.connect();
    await c.end();
    return Object.fromEntries([...params].sort());
  });
  assert.ok(pgParams.direct.server_version, 'direct reports server_version');
  assert.equal(pgParams.gateway.server_version, pgParams.direct.server_version);
  assert.equal(pgParams.gateway.integer_datetimes, pgParams.direct.integer_datetimes);
  assert.deepEqual(pgParams.gateway, pgParams.direct, 'every ParameterStatus equals the direct one');

  const pj = await both((t) =>
    withSql(t.url, async (sql) => {
      await sql`SELECT 1`;
      return Object.fromEntries(Object.entries({ ...sql.parameters } as Record<string, string>).sort());
    }),
  );
  assert.equal(pj.gateway.server_version, pj.direct.server_version);
  assert.equal(pj.gateway.integer_datetimes, 'on');
  assert.deepEqual(pj.gateway, pj.direct);
});
