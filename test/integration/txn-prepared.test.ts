// Transaction pooling with prepared statements, against a real primary: pgbench in every protocol mode,
// node-postgres and postgres.js named statements over a tiny pool, Describe / Close / DEALLOCATE
// semantics compared with a direct connection, SQL-level PREPARE / EXECUTE across connections, the
// per-connection statement cache, and per-user / per-database pool mode overrides.
//
// One cluster per file; each test starts the gateway(s) it needs and closes them when done (after()
// closes whatever a failed test left open).

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { findPgBin, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway } from '../harness/gateway.js';
import { RawClient, passwordLogin, replyLabel } from '../harness/raw-client.js';
import { cleanPgEnv, run, type RunResult } from '../harness/exec.js';
import { assertPgbenchOk, connectError } from '../harness/checks.js';
import * as m from '../../src/protocol/messages.js';
import type { Gateway } from '../../src/gateway.js';

const PG_BIN = findPgBin();
const PGBENCH = PG_BIN ? path.join(PG_BIN, 'pgbench') : '/usr/lib/postgresql/15/bin/pgbench';

let cluster: PgCluster;
const open = new Set<Gateway>();

before(async () => {
  cluster = await startCluster();
  const init = await pgbench(cluster.primary.port, ['-i', '-s', '1', '-q']);
  assert.equal(init.code, 0, `pgbench -i failed:\n${init.stderr}`);
  await cluster.query('CREATE TABLE np_log (client int, k int)');
  await cluster.query('CREATE TABLE pj_log (run int, i int)');
});

after(async () => {
  for (const gw of open) await gw.close().catch(() => {});
  open.clear();
  await cluster?.destroy();
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function gateway(overrides: Parameters<typeof startGateway>[1] = {}): Promise<Gateway> {
  const gw = await startGateway(cluster, overrides);
  open.add(gw);
  return gw;
}

async function closeGateway(gw: Gateway): Promise<void> {
  if (!open.delete(gw)) return;
  await gw.close();
}

function url(gw: Gateway): string {
  return gatewayUrl(gw, cluster.superuser, cluster.superuserPassword);
}

async function pgClient(connectionString: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString });
  c.on('error', () => {});
  await c.connect();
  return c;
}

function pgbench(port: number, args: string[]): Promise<RunResult> {
  const env = cleanPgEnv({ PGPASSWORD: cluster.superuserPassword });
  return run(PGBENCH, ['-h', '127.0.0.1', '-p', String(port), '-U', cluster.superuser, ...args, 'postgres'], env);
}

// ---- raw protocol

const { bind, execute, describe } = m;

/** A raw protocol session that logged in with a password (SCRAM, MD5 or cleartext, whatever is asked). */
async function rawLogin(port: number, user = cluster.superuser, password = cluster.superuserPassword): Promise<RawClient> {
  return passwordLogin(await RawClient.connect(port), user, password);
}

function rawEnd(c: RawClient): void {
  c.send(m.terminate());
  c.end();
}

interface Reply {
  /** One entry per message up to and including ReadyForQuery: 'E:<sqlstate>', 'D:<values>', 'C:<tag>', 'Z:<status>', 't:/T:<hex body>', or the type letter. */
  seq: string[];
  /** Messages of the ErrorResponses, in order. */
  errors: string[];
}

/** Send messages (ending with Sync or a Query) and read everything up to ReadyForQuery. Notices and ParameterStatus are left out. */
async function roundtrip(c: RawClient, ...msgs: Buffer[]): Promise<Reply> {
  c.send(Buffer.concat(msgs));
  const seq: string[] = [];
  const errors: string[] = [];
  for (;;) {
    const msg = await c.next();
    const label = replyLabel(msg);
    if (label === undefined) continue;
    seq.push(label);
    if (label.startsWith('E:')) errors.push(m.readErrorFields(msg).get('M') ?? '');
    if (label.startsWith('Z:')) return { seq, errors };
  }
}

/** Parse/Bind/Execute of SELECT pg_backend_pid() on the unnamed statement (append before Sync). */
const PID_MSGS = (): Buffer[] => [m.parse('', 'SELECT pg_backend_pid()'), bind(''), execute()];

function pidOf(r: Reply): number {
  const rows = r.seq.filter((s) => s.startsWith('D:'));
  const last = rows[rows.length - 1];
  assert.ok(last, `no row with a backend pid in ${JSON.stringify(r.seq)}`);
  return Number(last.slice(2));
}

/**
 * Make a pool of `poolSize` server connections hold the one with backend pid `pid` in an open
 * transaction (so the next lease of anyone else lands elsewhere). Returns the function that lets it go.
 */
async function holdConnection(connectionString: string, pid: number, poolSize: number): Promise<() => Promise<void>> {
  const clients = await Promise.all(Array.from({ length: poolSize }, () => pgClient(connectionString)));
  const endAll = async () => {
    for (const c of clients) await c.end().catch(() => {});
  };
  const held: pg.Client[] = [];
  try {
    for (const c of clients) {
      await c.query('BEGIN');
      const p = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
      if (p === pid) {
        for (const o of held) await o.query('COMMIT');
        return async () => {
          await c.query('COMMIT');
          await endAll();
        };
      }
      held.push(c);
    }
  } catch (e) {
    await endAll();
    throw e;
  }
  await endAll();
  throw new Error(`none of ${poolSize} transactions got the server connection with pid ${pid}`);
}

/** Sum of the gateway's server connections (idle, leased, opening) over all pools. */
function serverConnections(gw: Gateway): number {
  return gw.pools.stats().reduce((n, p) => n + p.idle + p.active + p.opening, 0);
}

// ------------------------------------------------------------------ 1. pgbench

const BENCH_POOL = { mode: 'transaction' as const, size: 10, max_db_connections: 10, queue_timeout_ms: 20_000 };

/**
 * Run pgbench through gw while watching the gateway's pool and pg_stat_activity on the primary;
 * asserts exit 0, zero failed transactions, some processed, and never more than 10 server connections.
 */
async function benchCapped(t: test.TestContext, gw: Gateway, label: string, args: string[]): Promise<void> {
  let maxPool = 0;
  let maxActivity = 0;
  let running = true;
  const poll = setInterval(() => {
    maxPool = Math.max(maxPool, serverConnections(gw));
  }, 5);
  const activity = (async () => {
    while (running) {
      const n = Number(
        await cluster.query(
          "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = 'postgres' AND application_name <> 'switchyard-harness'",
        ),
      );
      maxActivity = Math.max(maxActivity, n);
      await sleep(250);
    }
  })();
  let r: RunResult;
  try {
    r = await pgbench(gw.port, args);
  } finally {
    running = false;
    clearInterval(poll);
    await activity;
  }
  maxPool = Math.max(maxPool, serverConnections(gw));
  const { tps, processed } = assertPgbenchOk(label, r);
  assert.ok(maxPool <= 10, `${label}: the gateway had ${maxPool} server connections (pool.size 10)`);
  assert.ok(maxActivity <= 10, `${label}: the primary saw ${maxActivity} client backends of the gateway (pool.size 10)`);
  assert.ok(maxActivity > 0, `${label}: the primary saw the gateway's connections at all`);
  t.diagnostic(`${label}: tps ${tps}, ${processed} transactions, max server connections: gateway ${maxPool}, pg_stat_activity ${maxActivity}`);
}

for (const mode of ['simple', 'extended', 'prepared'] as const) {
  test(`pgbench -S -M ${mode}: 100 clients over pool.size 10 in transaction mode, never more than 10 server connections`, { timeout: 60_000 }, async (t) => {
    const gw = await gateway({ pool: BENCH_POOL });
    try {
      await benchCapped(t, gw, `select-only -M ${mode}`, ['-S', '-M', mode, '-c', '100', '-j', '2', '-T', '3', '-n']);
    } finally {
      await closeGateway(gw);
    }
  });
}

for (const mode of ['simple', 'extended'] as const) {
  test(`pgbench tpcb-like -M ${mode}: 20 clients over pool.size 10 in transaction mode`, { timeout: 60_000 }, async (t) => {
    const gw = await gateway({ pool: BENCH_POOL });
    try {
      const before = Number(await cluster.query('SELECT count(*) FROM pgbench_history'));
      await benchCapped(t, gw, `tpcb-like -M ${mode}`, ['-M', mode, '-c', '20', '-j', '2', '-T', '3', '-n']);
      const after = Number(await cluster.query('SELECT count(*) FROM pgbench_history'));
      assert.ok(after > before, 'history rows were written through the gateway');
      const sums = await cluster.query(
        'SELECT (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers) AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(abalance) FROM pgbench_accounts)',
      );
      assert.equal(sums, 't', 'balances are consistent (every transaction applied whole)');
    } finally {
      await closeGateway(gw);
    }
  });
}

// ------------------------------------------------------------------ 2. node-postgres named statements

test('node-postgres: 5 clients x 3 named statements, 200 statements over pool.size 2, in and out of transactions', { timeout: 60_000 }, async () => {
  const gw = await gateway({ pool: { size: 2 } });
  const clients: pg.Client[] = [];
  try {
    for (let i = 0; i < 5; i++) clients.push(await pgClient(url(gw)));
    const errors: string[] = [];
    const PER_CLIENT = 40;
    let inserted = 0;
    await Promise.all(
      clients.map(async (c, ci) => {
        for (let k = 0; k < PER_CLIENT; k++) {
          try {
            if (k % 4 === 0) {
              // In an explicit transaction: a client-specific text under a shared name, a write, and a read of it;
              // every other one is rolled back.
              const rollback = k % 8 === 4;
              await c.query('BEGIN');
              const id1 = (await c.query('SELECT txid_current() AS x, pg_backend_pid() AS p')).rows[0];
              const a = await c.query({ name: 'q1', text: `SELECT $1::int + ${ci * 1000} AS v`, values: [k] });
              assert.equal(a.rows[0].v, k + ci * 1000, `client ${ci} q1(${k})`);
              await c.query({ name: 'q3', text: 'INSERT INTO np_log (client, k) VALUES ($1, $2)', values: [ci, k] });
              const b = await c.query({ name: 'q2', text: 'SELECT count(*)::int AS n FROM np_log WHERE client = $1 AND k = $2', values: [ci, k] });
              assert.equal(b.rows[0].n, 1, `client ${ci} sees its own insert ${k} inside the transaction`);
              const id2 = (await c.query('SELECT txid_current() AS x, pg_backend_pid() AS p')).rows[0];
              assert.deepEqual(id2, id1, `client ${ci} step ${k}: one transaction on one server connection`);
              await c.query(rollback ? 'ROLLBACK' : 'COMMIT');
              if (!rollback) inserted++;
            } else if (k % 4 === 1) {
              const a = await c.query({ name: 'q1', text: `SELECT $1::int + ${ci * 1000} AS v`, values: [k] });
              assert.equal(a.rows[0].v, k + ci * 1000, `client ${ci} q1(${k})`);
            } else if (k % 4 === 2) {
              const b = await c.query({ name: 'q2', text: 'SELECT count(*)::int AS n FROM np_log WHERE client = $1 AND k = $2', values: [ci, k - 2] });
              const want = (k - 2) % 8 === 4 ? 0 : 1;
              assert.equal(b.rows[0].n, want, `client ${ci}: insert ${k - 2} was ${want ? 'committed' : 'rolled back'}`);
            } else {
              const a = await c.query({ name: 'q1', text: `SELECT $1::int + ${ci * 1000} AS v`, values: [-k] });
              assert.equal(a.rows[0].v, -k + ci * 1000, `client ${ci} q1(${-k})`);
            }
          } catch (e) {
            errors.push(`client ${ci} step ${k}: ${(e as Error).message}`);
            await c.query('ROLLBACK').catch(() => {});
          }
        }
      }),
    );
    assert.deepEqual(errors.filter((e) => /prepared statement .* does not exist/.test(e)), [], 'no "prepared statement ... does not exist"');
    assert.deepEqual(errors, [], 'every statement succeeded with the right result');
    assert.equal(inserted, 5 * (PER_CLIENT / 8));
    assert.equal(Number(await cluster.query('SELECT count(*) FROM np_log')), inserted, 'every committed insert is there');
    assert.ok(serverConnections(gw) <= 2, 'pool.size 2 respected');
  } finally {
    for (const c of clients) await c.end().catch(() => {});
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 3. postgres.js

test('postgres.js (prepare: true): 3 clients x 4 connections + 3 single-connection clients with their own statements, concurrent queries and sql.begin() over pool.size 2', { timeout: 60_000 }, async () => {
  const gw = await gateway({ pool: { size: 2, queue_timeout_ms: 20_000 } });
  const sqls = [0, 1, 2].map(() => postgres(url(gw), { max: 4, prepare: true, onnotice: () => {} }));
  // One connection each and statement texts no other client uses: each statement is parsed once, on
  // one server connection, and every later use (Bind only) may land on the other one.
  const solos = [0, 1, 2].map(() => postgres(url(gw), { max: 1, prepare: true, onnotice: () => {} }));
  try {
    const work: Promise<void>[] = [];
    solos.forEach((sql, si) => {
      const mul = 10 + si;
      for (let i = 0; i < 60; i++) {
        if (i % 10 === 5) {
          const run = 100_000 + si * 1000 + i;
          work.push(
            sql.begin(async (tx) => {
              await tx.unsafe(`INSERT INTO pj_log (run, i) SELECT $1::int, g * ${mul} FROM generate_series(1, 3) AS g`, [run], { prepare: true });
              const [r] = await tx.unsafe(`SELECT count(*)::int AS n, sum(i)::int AS s, ${mul} AS m FROM pj_log WHERE run = $1`, [run], { prepare: true });
              assert.deepEqual({ n: r!.n, s: r!.s, m: r!.m }, { n: 3, s: 6 * mul, m: mul }, `solo run ${run}: the transaction sees its own rows`);
            }).then(() => undefined),
          );
        } else {
          work.push(
            (async () => {
              const [r] = await sql.unsafe(`SELECT $1::int * ${mul} AS v, $2::text AS s`, [i, `solo${si}-${i}`], { prepare: true });
              assert.deepEqual({ v: r!.v, s: r!.s }, { v: i * mul, s: `solo${si}-${i}` });
            })(),
          );
        }
      }
    });
    sqls.forEach((sql, si) => {
      for (let i = 0; i < 60; i++) {
        if (i % 10 === 0) {
          const run = si * 1000 + i;
          work.push(
            sql.begin(async (tx) => {
              await tx`INSERT INTO pj_log (run, i) SELECT ${run}::int, g FROM generate_series(1, 3) AS g`;
              const [r] = await tx`SELECT count(*)::int AS n, sum(i)::int AS s FROM pj_log WHERE run = ${run}`;
              assert.deepEqual({ n: r!.n, s: r!.s }, { n: 3, s: 6 }, `run ${run}: the transaction sees its own rows`);
              const [x] = await tx`SELECT ${i}::int * 2 AS v, ${'t' + i}::text AS s`;
              assert.deepEqual({ v: x!.v, s: x!.s }, { v: i * 2, s: 't' + i });
            }).then(() => undefined),
          );
        } else if (i % 3 === 0) {
          work.push(
            (async () => {
              const rows = await sql`SELECT g, ${si}::int AS client FROM generate_series(1, ${i}::int) AS g ORDER BY g`;
              assert.equal(rows.length, i);
              assert.deepEqual(
                rows.map((r) => [r.g, r.client]),
                Array.from({ length: i }, (_, k) => [k + 1, si]),
              );
            })(),
          );
        } else {
          work.push(
            (async () => {
              const [r] = await sql`SELECT ${i}::int * 2 AS v, ${'s' + si + '-' + i}::text AS s`;
              assert.deepEqual({ v: r!.v, s: r!.s }, { v: i * 2, s: `s${si}-${i}` });
            })(),
          );
        }
      }
    });
    const results = await Promise.allSettled(work);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${results.length} operations failed`);
    const committed = await cluster.query('SELECT count(*) FROM pj_log');
    assert.equal(Number(committed), 3 * 6 * 3 + 3 * 6 * 3, 'every sql.begin() committed its 3 rows');
    assert.ok(serverConnections(gw) <= 2, 'pool.size 2 respected');
  } finally {
    for (const sql of [...sqls, ...solos]) await sql.end({ timeout: 5 });
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 4. Describe

test('Describe of a named statement on a connection that never saw its Parse: same descriptions as PostgreSQL', { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 2 } });
  const sql = 'SELECT $1::int AS a, $2::text AS b';
  const direct = await rawLogin(cluster.primary.port);
  const viaGw = await rawLogin(gw.port);
  try {
    // Directly: Parse, then Describe in a later request.
    assert.deepEqual((await roundtrip(direct, m.parse('d1', sql), m.sync())).seq, ['1', 'Z:I']);
    const want = await roundtrip(direct, describe('S', 'd1'), m.sync());
    assert.equal(want.seq.length, 3);
    assert.match(want.seq[0]!, /^t:/);
    assert.match(want.seq[1]!, /^T:/);

    // Through the gateway: Parse on one server connection...
    const first = await roundtrip(viaGw, m.parse('d1', sql), ...PID_MSGS(), m.sync());
    assert.deepEqual(first.seq.slice(0, 3), ['1', '1', '2']);
    const pid1 = pidOf(first);
    // ...Describe while another client holds that connection in a transaction.
    const release = await holdConnection(url(gw), pid1, 2);
    let second: Reply;
    try {
      second = await roundtrip(viaGw, describe('S', 'd1'), ...PID_MSGS(), m.sync());
    } finally {
      await release();
    }
    assert.notEqual(pidOf(second), pid1, 'the Describe ran on another server connection');
    assert.deepEqual(second.seq.slice(0, 2), want.seq.slice(0, 2), 'ParameterDescription and RowDescription as from PostgreSQL');
    assert.deepEqual(second.seq.slice(2, 4), ['1', '2'], 'no stray ParseComplete from the gateway');

    // And the statement still runs there.
    const exec = await roundtrip(viaGw, bind('d1', ['7', 'x']), execute(), m.sync());
    assert.deepEqual(exec.seq, ['2', 'D:7,x', 'C:SELECT 1', 'Z:I']);
  } finally {
    rawEnd(direct);
    rawEnd(viaGw);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 5. Close, redefinition, failed Parse

/** Run the same scenario on a direct connection and through the gateway, step by step; returns both replies per step. */
async function compareSteps(
  gw: Gateway,
  steps: Buffer[][],
): Promise<{ direct: Reply[]; gateway: Reply[] }> {
  const direct = await rawLogin(cluster.primary.port);
  const viaGw = await rawLogin(gw.port);
  try {
    const d: Reply[] = [];
    const g: Reply[] = [];
    for (const s of steps) {
      d.push(await roundtrip(direct, ...s));
      g.push(await roundtrip(viaGw, ...s));
    }
    return { direct: d, gateway: g };
  } finally {
    rawEnd(direct);
    rawEnd(viaGw);
  }
}

test('Close of a statement: later Bind/Describe give 26000 as in PostgreSQL, and the name can be parsed again', { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 2 } });
  try {
    const steps = [
      [m.parse('c1', 'SELECT 1 AS one'), m.sync()],
      [bind('c1'), execute(), m.sync()],
      [m.close('S', 'c1'), m.sync()],
      [bind('c1'), execute(), m.sync()],
      [describe('S', 'c1'), m.sync()],
      [m.close('S', 'never_prepared'), m.sync()], // PostgreSQL: CloseComplete for an unknown name
      [m.parse('c1', 'SELECT 2 AS two'), m.sync()],
      [bind('c1'), execute(), m.sync()],
    ];
    const r = await compareSteps(gw, steps);
    const g = r.gateway.map((x) => x.seq);
    assert.deepEqual(
      g,
      [
        ['1', 'Z:I'],
        ['2', 'D:1', 'C:SELECT 1', 'Z:I'],
        ['3', 'Z:I'],
        ['E:26000', 'Z:I'],
        ['E:26000', 'Z:I'],
        ['3', 'Z:I'],
        ['1', 'Z:I'],
        ['2', 'D:2', 'C:SELECT 1', 'Z:I'],
      ],
      'gateway replies',
    );
    assert.deepEqual(g, r.direct.map((x) => x.seq), 'gateway replies are those of PostgreSQL');
    assert.deepEqual(r.gateway[3]!.errors, r.direct[3]!.errors, 'the same error message');
    assert.match(r.gateway[3]!.errors[0]!, /prepared statement "c1" does not exist/);
  } finally {
    await closeGateway(gw);
  }
});

test('Parse of a name the client already has gives 42P05 as in PostgreSQL; the first definition stays', { timeout: 30_000 }, async (t) => {
  const gw = await gateway({ pool: { size: 2 } });
  try {
    const steps = [
      [m.parse('dup', 'SELECT 1 AS v'), m.sync()],
      [m.parse('dup', 'SELECT 1 AS v'), m.sync()], // same text
      [m.parse('dup', 'SELECT 2 AS v'), m.sync()], // other text
      [bind('dup'), execute(), m.sync()],
    ];
    const r = await compareSteps(gw, steps);
    const g = r.gateway.map((x) => x.seq);
    assert.deepEqual(g, [['1', 'Z:I'], ['E:42P05', 'Z:I'], ['E:42P05', 'Z:I'], ['2', 'D:1', 'C:SELECT 1', 'Z:I']]);
    assert.deepEqual(g, r.direct.map((x) => x.seq));
    t.diagnostic(`42P05 message: direct ${JSON.stringify(r.direct[1]!.errors[0])}, gateway ${JSON.stringify(r.gateway[1]!.errors[0])}`);
  } finally {
    await closeGateway(gw);
  }
});

test('a statement whose Parse failed, or that was skipped after an error in the pipeline, does not exist afterwards', { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 2 } });
  try {
    const steps = [
      // Parse with a syntax error, alone and in a pipeline ahead of another Parse (skipped by the server).
      [m.parse('bad', 'SELEC 1'), m.sync()],
      [bind('bad'), execute(), m.sync()],
      [m.parse('bad2', 'SELEC 1'), m.parse('after_bad', 'SELECT 3'), m.sync()],
      [bind('after_bad'), execute(), m.sync()],
      [m.parse('bad2', 'SELECT 4'), m.sync()], // the failed name is free
      [bind('bad2'), execute(), m.sync()],
      // Parse ok / Bind / Execute failing at run time / Parse another / Sync: the second Parse is skipped.
      [m.parse('r1', 'SELECT 1 / count(*)::int FROM pg_class WHERE false'), bind('r1'), execute(), m.parse('r2', 'SELECT 2'), m.sync()],
      [bind('r2'), execute(), m.sync()],
      [m.parse('r2', 'SELECT 22'), m.sync()], // and so its name is free
      [bind('r2'), execute(), m.sync()],
      [bind('r1'), execute(), m.sync()], // r1 was parsed before the error: it exists (and fails again at run time)
      // A Close skipped after an error leaves the statement in place.
      [m.parse('k1', 'SELECT 5'), m.sync()],
      [m.parse('', 'SELEC'), m.close('S', 'k1'), m.sync()],
      [bind('k1'), execute(), m.sync()],
    ];
    const r = await compareSteps(gw, steps);
    const g = r.gateway.map((x) => x.seq);
    assert.deepEqual(g, [
      ['E:42601', 'Z:I'],
      ['E:26000', 'Z:I'],
      ['E:42601', 'Z:I'],
      ['E:26000', 'Z:I'],
      ['1', 'Z:I'],
      ['2', 'D:4', 'C:SELECT 1', 'Z:I'],
      ['1', '2', 'E:22012', 'Z:I'],
      ['E:26000', 'Z:I'],
      ['1', 'Z:I'],
      ['2', 'D:22', 'C:SELECT 1', 'Z:I'],
      ['2', 'E:22012', 'Z:I'],
      ['1', 'Z:I'],
      ['E:42601', 'Z:I'],
      ['2', 'D:5', 'C:SELECT 1', 'Z:I'],
    ]);
    assert.deepEqual(g, r.direct.map((x) => x.seq), 'gateway replies are those of PostgreSQL');
  } finally {
    await closeGateway(gw);
  }
});

test("a client cannot use another client's statement through its shared server-side name", { timeout: 30_000 }, async () => {
  // A fresh gateway: the first statement text gets the server-side name sy:1.
  const gw = await gateway({ pool: { size: 1 } });
  const a = await rawLogin(gw.port);
  const b = await rawLogin(gw.port);
  try {
    assert.deepEqual((await roundtrip(a, m.parse('secret', "SELECT 'a-only' AS v"), m.sync())).seq, ['1', 'Z:I']);
    // b never prepared anything: to PostgreSQL, sy:1 does not exist in b's session.
    const r = await roundtrip(b, bind('sy:1'), execute(), m.sync());
    assert.deepEqual(r.seq, ['E:26000', 'Z:I'], `Bind to "sy:1" from another client: ${JSON.stringify(r.seq)}`);
    const d = await roundtrip(b, describe('S', 'sy:1'), m.sync());
    assert.deepEqual(d.seq, ['E:26000', 'Z:I'], `Describe of "sy:1" from another client: ${JSON.stringify(d.seq)}`);
    // nor through SQL
    assert.deepEqual((await roundtrip(b, m.query('EXECUTE "sy:1"'))).seq, ['E:26000', 'Z:I']);
  } finally {
    rawEnd(a);
    rawEnd(b);
    await closeGateway(gw);
  }
});

test("SQL DEALLOCATE of a shared server-side name by another client: 26000 for it, the owner's statement keeps working", { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 1 } });
  const a = await rawLogin(gw.port);
  const b = await rawLogin(gw.port);
  try {
    assert.deepEqual((await roundtrip(a, m.parse('mine', "SELECT 'a' AS v"), m.sync())).seq, ['1', 'Z:I']);
    // To PostgreSQL, b has no statement sy:1.
    const d = await roundtrip(b, m.query('DEALLOCATE "sy:1"'));
    assert.deepEqual(d.seq, ['E:26000', 'Z:I'], `DEALLOCATE "sy:1" from another client: ${JSON.stringify(d.seq)}`);
    const r = await roundtrip(a, bind('mine'), execute(), m.sync());
    assert.deepEqual(r.seq, ['2', 'D:a', 'C:SELECT 1', 'Z:I'], `the owner's statement after another client's DEALLOCATE "sy:1": ${JSON.stringify(r)}`);
  } finally {
    rawEnd(a);
    rawEnd(b);
    await closeGateway(gw);
  }
});

test('SQL-level names a client chooses do not collide with the shared protocol-level statements; the shared namespace is refused', { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 1 } });
  const a = await rawLogin(gw.port);
  const b = await rawLogin(gw.port);
  try {
    // b takes the names the gateway will give the next protocol-level statements.
    assert.deepEqual((await roundtrip(b, m.query("PREPARE sy_1 AS SELECT 'b1' AS v; PREPARE sy_2 AS SELECT 'b2' AS v"))).seq, ['C:PREPARE', 'C:PREPARE', 'Z:I']);
    const p = await roundtrip(a, m.parse('mine', "SELECT 'a' AS v"), m.sync());
    assert.deepEqual(p.seq, ['1', 'Z:I'], `a's Parse after b's PREPARE sy_1: ${JSON.stringify(p)}`);
    assert.deepEqual((await roundtrip(a, bind('mine'), execute(), m.sync())).seq, ['2', 'D:a', 'C:SELECT 1', 'Z:I']);
    assert.deepEqual((await roundtrip(b, m.query('EXECUTE sy_1'))).seq.filter((x) => !x.startsWith('T:')), ['D:b1', 'C:SELECT 1', 'Z:I']);
    // And the other way round: a protocol-level statement exists first, then b PREPAREs its name by SQL.
    const c = await roundtrip(a, m.parse('second', "SELECT 'a2' AS v"), ...PID_MSGS(), m.sync());
    assert.deepEqual(c.seq.slice(0, 1), ['1']);
    const q = await roundtrip(b, m.query("PREPARE sy_3 AS SELECT 'b3' AS v; PREPARE sy_4 AS SELECT 'b4' AS v"));
    assert.deepEqual(q.seq, ['C:PREPARE', 'C:PREPARE', 'Z:I'], `b's PREPARE sy_3/sy_4 while a has a protocol-level statement: ${JSON.stringify(q)}`);
    assert.deepEqual((await roundtrip(a, bind('second'), execute(), m.sync())).seq, ['2', 'D:a2', 'C:SELECT 1', 'Z:I']);
    // The gateway's own namespace cannot be taken by SQL: it would shadow or reach other clients' statements.
    assert.deepEqual((await roundtrip(b, m.query(`PREPARE "sy:1" AS SELECT 'b' AS v`))).seq, ['E:42939', 'Z:I']);
    assert.deepEqual((await roundtrip(a, bind('mine'), execute(), m.sync())).seq, ['2', 'D:a', 'C:SELECT 1', 'Z:I']);
  } finally {
    rawEnd(a);
    rawEnd(b);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 6. SQL-level PREPARE / EXECUTE

/** Run `stmt; SELECT pg_backend_pid()` in one simple Query: the first result and the backend pid. */
async function withPid(c: pg.Client, stmt: string): Promise<{ rows: Record<string, unknown>[]; pid: number }> {
  const res = (await c.query(`${stmt}; SELECT pg_backend_pid() AS pid`)) as unknown as pg.QueryResult[];
  return { rows: res[0]!.rows, pid: res[1]!.rows[0].pid as number };
}

test('SQL-level PREPARE follows the client to other connections; DEALLOCATE ends it everywhere; same name, two definitions', { timeout: 60_000 }, async () => {
  const gw = await gateway({ pool: { size: 2 } });
  const a = await pgClient(url(gw));
  const b = await pgClient(url(gw));
  try {
    const prep = await withPid(a, 'PREPARE p1(int) AS SELECT $1 * 2');
    // On a connection that never saw the PREPARE.
    const release = await holdConnection(url(gw), prep.pid, 2);
    try {
      const r = await withPid(a, 'EXECUTE p1(21)');
      assert.notEqual(r.pid, prep.pid, 'EXECUTE ran on another server connection');
      assert.equal(r.rows[0]!['?column?'], 42);
    } finally {
      await release();
    }

    // Many EXECUTEs while another client keeps transactions going.
    let busy = true;
    const churn = (async () => {
      let n = 0;
      while (busy) {
        await b.query('BEGIN');
        await b.query('SELECT pg_sleep(0.002)');
        await b.query('COMMIT');
        n++;
      }
      return n;
    })();
    const pids = new Set<number>();
    try {
      for (let i = 0; i < 100; i++) {
        if (i % 2 === 0) {
          const r = await withPid(a, 'EXECUTE p1(21)');
          pids.add(r.pid);
          assert.equal(r.rows[0]!['?column?'], 42, `EXECUTE #${i}`);
        } else {
          assert.equal((await a.query('EXECUTE p1(21)')).rows[0]['?column?'], 42, `EXECUTE #${i}`);
        }
      }
    } finally {
      busy = false;
    }
    const churned = await churn;
    assert.ok(churned > 0);

    // DEALLOCATE: afterwards EXECUTE fails with 26000 on every connection, including those that had it.
    const dealloc = await withPid(a, 'DEALLOCATE p1');
    for (const pid of new Set([dealloc.pid, ...pids, prep.pid])) {
      const rel = await holdConnection(url(gw), pid, 2);
      try {
        const err = await a.query('EXECUTE p1(21)').then(
          () => undefined,
          (e: pg.DatabaseError) => e,
        );
        assert.ok(err, `EXECUTE after DEALLOCATE (other connection than pid ${pid}) was expected to fail`);
        assert.equal(err.code, '26000', err.message);
      } finally {
        await rel();
      }
    }
    const err = await a.query('EXECUTE p1(21)').then(
      () => undefined,
      (e: pg.DatabaseError) => e,
    );
    assert.equal(err?.code, '26000');

    // Two clients, the same name, different definitions, interleaved.
    await a.query('PREPARE same(int) AS SELECT $1 + 1000 AS v');
    await b.query('PREPARE same(int) AS SELECT $1 + 2000 AS v');
    for (let i = 0; i < 30; i++) {
      const [ra, rb] = await Promise.all([a.query(`EXECUTE same(${i})`), b.query(`EXECUTE same(${i})`)]);
      assert.equal(ra.rows[0].v, 1000 + i, `client a, EXECUTE same(${i})`);
      assert.equal(rb.rows[0].v, 2000 + i, `client b, EXECUTE same(${i})`);
    }
  } finally {
    await a.end().catch(() => {});
    await b.end().catch(() => {});
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 7. DEALLOCATE of a protocol-level statement

test('DEALLOCATE of a protocol-level statement: succeeds, the name is gone (26000), and it can be parsed again', { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 2 } });
  try {
    // node-postgres: a named statement, then DEALLOCATE by SQL; pg still believes q1 exists and sends only Bind.
    const viaPg = async (connectionString: string) => {
      const c = await pgClient(connectionString);
      try {
        const first = (await c.query({ name: 'q1', text: 'SELECT $1::int + 1 AS v', values: [1] })).rows[0].v as number;
        const dealloc = (await c.query('DEALLOCATE q1')).command;
        const again = await c.query({ name: 'q1', text: 'SELECT $1::int + 1 AS v', values: [2] }).then(
          (r) => ({ ok: r.rows[0].v as number }),
          (e: pg.DatabaseError) => ({ code: e.code }),
        );
        const after = await c.query('SELECT 1 AS x').then((r) => r.rows[0].x as number);
        return { first, dealloc, again, after };
      } finally {
        await c.end().catch(() => {});
      }
    };
    const pgDirect = await viaPg(cluster.primary.url());
    const pgGw = await viaPg(url(gw));
    assert.deepEqual(pgDirect, { first: 2, dealloc: 'DEALLOCATE', again: { code: '26000' }, after: 1 });
    assert.deepEqual(pgGw, pgDirect, 'node-postgres sees the same as with PostgreSQL');

    // Raw protocol: Parse x, DEALLOCATE x, Bind x → 26000; Parse x again works.
    const steps = [
      [m.parse('x', 'SELECT 10 AS v'), m.sync()],
      [m.query('DEALLOCATE x')],
      [bind('x'), execute(), m.sync()],
      [m.parse('x', 'SELECT 11 AS v'), m.sync()],
      [bind('x'), execute(), m.sync()],
      [m.query('DEALLOCATE nothing_here')],
      // inside a transaction block
      [m.query('BEGIN')],
      [m.query('DEALLOCATE x')],
      [bind('x'), execute(), m.sync()],
      [m.query('ROLLBACK')],
      [m.parse('x', 'SELECT 12 AS v'), m.sync()],
      [bind('x'), execute(), m.sync()],
    ];
    const r = await compareSteps(gw, steps);
    const g = r.gateway.map((x) => x.seq);
    assert.deepEqual(g, [
      ['1', 'Z:I'],
      ['C:DEALLOCATE', 'Z:I'],
      ['E:26000', 'Z:I'],
      ['1', 'Z:I'],
      ['2', 'D:11', 'C:SELECT 1', 'Z:I'],
      ['E:26000', 'Z:I'],
      ['C:BEGIN', 'Z:T'],
      ['C:DEALLOCATE', 'Z:T'],
      ['E:26000', 'Z:E'],
      ['C:ROLLBACK', 'Z:I'],
      ['1', 'Z:I'],
      ['2', 'D:12', 'C:SELECT 1', 'Z:I'],
    ]);
    assert.deepEqual(g, r.direct.map((x) => x.seq), 'gateway replies are those of PostgreSQL');
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 8. statement cache

test('prepared_statements_cache_size 3: 10 named statements cycled over one connection, at most 3 prepared there', { timeout: 30_000 }, async () => {
  const gw = await gateway({ pool: { size: 1, prepared_statements_cache_size: 3 } });
  const c = await pgClient(url(gw));
  try {
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k < 10; k++) {
        const r = await c.query({ name: `n${k}`, text: `SELECT $1::int + ${k * 100} AS v, '${k}'::text AS k`, values: [round] });
        assert.deepEqual(r.rows[0], { v: round + k * 100, k: String(k) }, `round ${round}, statement n${k}`);
      }
    }
    // Out of order, inside a transaction too.
    await c.query('BEGIN');
    for (const k of [7, 2, 9, 0, 5, 2, 7]) {
      const r = await c.query({ name: `n${k}`, text: `SELECT $1::int + ${k * 100} AS v, '${k}'::text AS k`, values: [5] });
      assert.equal(r.rows[0].v, 5 + k * 100);
    }
    await c.query('COMMIT');
    const rows = (await c.query('SELECT name, from_sql FROM pg_prepared_statements ORDER BY name')).rows as { name: string; from_sql: boolean }[];
    assert.ok(rows.length <= 3, `prepared on the server connection: ${JSON.stringify(rows)}`);
    assert.ok(rows.length > 0, 'the statements are really prepared on the server');
    for (const r of rows) {
      assert.match(r.name, /^sy:\d+$/, 'only the gateway\'s own statements');
      assert.equal(r.from_sql, false);
    }
    assert.equal(serverConnections(gw), 1);
  } finally {
    await c.end().catch(() => {});
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 9. pool mode per user / per database


/** Two clients over pool.size 1, interleaved: both must work (transaction pooling). */
async function twoClientsInterleaved(gw: Gateway): Promise<void> {
  const x = await pgClient(url(gw));
  const y = await pgClient(url(gw));
  try {
    for (let i = 0; i < 10; i++) {
      assert.equal((await x.query('SELECT $1::int AS v', [i])).rows[0].v, i);
      assert.equal((await y.query('SELECT $1::int AS v', [100 + i])).rows[0].v, 100 + i);
    }
    const [px, py] = await Promise.all([x.query('SELECT pg_backend_pid() AS p'), y.query('SELECT pg_backend_pid() AS p')]);
    assert.equal(px.rows[0].p, py.rows[0].p, 'both used the one server connection');
    for (const s of gw.status().clients) assert.equal(s.pool_mode, 'transaction');
  } finally {
    await x.end().catch(() => {});
    await y.end().catch(() => {});
  }
}

test('pool mode per user (session) makes a second client wait for 53300; transaction mode shares one connection', { timeout: 30_000 }, async () => {
  // users: { postgres: session } over the default transaction mode.
  const gwS = await gateway({ pool: { size: 1, queue_timeout_ms: 500, users: { postgres: { mode: 'session' } } } });
  try {
    const first = await pgClient(url(gwS));
    try {
      const pid = (await first.query('SELECT pg_backend_pid() AS p')).rows[0].p;
      assert.equal(gwS.status().clients[0]?.pool_mode, 'session');
      const t0 = Date.now();
      const err = await connectError(url(gwS));
      const waited = Date.now() - t0;
      assert.equal(err.code, '53300', err.message);
      assert.ok(waited >= 450, `the second client waited ${waited} ms (queue_timeout_ms 500)`);
      assert.equal((await first.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid, 'the first client keeps its connection');
    } finally {
      await first.end().catch(() => {});
    }
  } finally {
    await closeGateway(gwS);
  }

  // databases: { postgres: session } alone does the same...
  const gwD = await gateway({ pool: { size: 1, queue_timeout_ms: 500, databases: { postgres: { mode: 'session' } } } });
  try {
    const first = await pgClient(url(gwD));
    try {
      assert.equal((await connectError(url(gwD))).code, '53300');
    } finally {
      await first.end().catch(() => {});
    }
  } finally {
    await closeGateway(gwD);
  }

  // ...but the user's mode wins over the database's.
  const gwU = await gateway({
    pool: { size: 1, queue_timeout_ms: 500, databases: { postgres: { mode: 'session' } }, users: { postgres: { mode: 'transaction' } } },
  });
  try {
    await twoClientsInterleaved(gwU);
  } finally {
    await closeGateway(gwU);
  }

  // The default (transaction) mode with pool.size 1: two clients both work, interleaved.
  const gwT = await gateway({ pool: { size: 1, queue_timeout_ms: 500 } });
  try {
    await twoClientsInterleaved(gwT);
  } finally {
    await closeGateway(gwT);
  }
});
