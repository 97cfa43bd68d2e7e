// Transaction pooling against a real primary: session state carried per client across shared server
// connections (settings, startup parameters), pins, LISTEN/NOTIFY through the listening connection, and
// the safety nets (disconnect inside a transaction, idle-in-transaction timeout, queue timeout).
//
// Every test starts its own gateway in `pool.mode: transaction` with a small pool, so that server
// connections are shared between clients for certain; one cluster for the whole file.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway } from '../harness/gateway.js';
import { trackParams } from '../harness/checks.js';
import type { Gateway } from '../../src/gateway.js';
import type { GatewayEvent } from '../../src/observability/events.js';
import type { PoolConfig } from '../../src/config/types.js';
import { seededRandom } from '../harness/random.js';

let cluster: PgCluster;
const gateways = new Set<Gateway>();
const pgClients = new Set<pg.Client>();
const pjClients = new Set<postgres.Sql>();

/** Clients of test 1: 50 node-postgres clients plus a few postgres.js clients, each with its own schema. */
const N_PG = 50;
const N_PJ = 6;

before(async () => {
  cluster = await startCluster();
  const schemas: string[] = [];
  for (let i = 0; i < N_PG + N_PJ; i++) schemas.push(`CREATE SCHEMA s${i}; CREATE TABLE s${i}.t (n int); INSERT INTO s${i}.t VALUES (${i});`);
  await cluster.query(schemas.join('\n'));
  await cluster.query('CREATE ROLE pin_role; CREATE TABLE safety_t (id serial, who text); CREATE TABLE pin_guard (x int)');
});

after(async () => {
  for (const c of pgClients) await c.end().catch(() => {});
  for (const s of pjClients) await s.end({ timeout: 1 }).catch(() => {});
  for (const gw of gateways) await gw.close().catch(() => {});
  await cluster?.destroy();
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A gateway in transaction pooling with the given pool settings. */
async function gateway(pool: Partial<PoolConfig>): Promise<Gateway> {
  const gw = await startGateway(cluster, { pool: { mode: 'transaction', ...pool } });
  gateways.add(gw);
  return gw;
}

async function closeGateway(gw: Gateway): Promise<void> {
  gateways.delete(gw);
  await gw.close();
}

function url(gw: Gateway, params = ''): string {
  return gatewayUrl(gw, cluster.superuser, cluster.superuserPassword, 'postgres', params);
}

function directUrl(): string {
  return cluster.primary.url();
}

/** A connected node-postgres client; closed by after() if the test does not. */
async function pgConnect(connectionString: string, opts: pg.ClientConfig = {}, onCreate?: (c: pg.Client) => void): Promise<pg.Client> {
  const c = new pg.Client({ connectionString, ...opts });
  c.on('error', () => {});
  onCreate?.(c);
  pgClients.add(c);
  await c.connect();
  return c;
}

async function pgEnd(...cs: pg.Client[]): Promise<void> {
  for (const c of cs) {
    pgClients.delete(c);
    await c.end().catch(() => {});
  }
}

function pjConnect(connectionString: string, opts: postgres.Options<{}> = {}): postgres.Sql {
  const sql = postgres(connectionString, { max: 1, onnotice: () => {}, ...opts });
  pjClients.add(sql);
  return sql;
}

async function pjEnd(sql: postgres.Sql): Promise<void> {
  pjClients.delete(sql);
  await sql.end({ timeout: 5 });
}


/** Every event the gateway emits from now on. */
function record(gw: Gateway): { events: GatewayEvent[]; stop: () => void } {
  const events: GatewayEvent[] = [];
  const stop = gw.events.on((e) => events.push(e));
  return { events, stop };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A promise whose outcome can be looked at without awaiting it. */
function track<T>(p: Promise<T>): { p: Promise<T>; done: boolean; value?: T; error?: unknown } {
  const s: { p: Promise<T>; done: boolean; value?: T; error?: unknown } = { p, done: false };
  p.then(
    (v) => {
      s.done = true;
      s.value = v;
    },
    (e: unknown) => {
      s.done = true;
      s.error = e;
    },
  );
  p.catch(() => {}); // observed through s.error
  return s;
}

async function pid(c: pg.Client): Promise<number> {
  return (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
}

type StatusClient = ReturnType<Gateway['status']>['clients'][number];
function statusOf(gw: Gateway, applicationName: string): StatusClient {
  const s = gw.status().clients.find((c) => c.application_name === applicationName);
  assert.ok(s, `gateway status lists the client with application_name ${applicationName}`);
  return s;
}

// ------------------------------------------------------------------ 1. no leaks between 50+ clients on 3 connections

const ZONES = [
  'Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'Australia/Sydney', 'America/Sao_Paulo', 'Africa/Cairo', 'Asia/Kolkata',
  'Pacific/Auckland', 'Europe/London', 'America/Los_Angeles', 'Asia/Singapore', 'Europe/Moscow', 'America/Chicago', 'Asia/Dubai',
  'UTC', 'Europe/Paris', 'America/Denver', 'Asia/Shanghai', 'Africa/Johannesburg', 'America/Anchorage',
];
const DATESTYLES = ['ISO, MDY', 'ISO, DMY', 'ISO, YMD', 'SQL, MDY', 'SQL, DMY', 'Postgres, MDY', 'Postgres, DMY', 'German, DMY'];

const CHECK =
  "SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz, current_setting('application_name') AS an, " +
  "current_setting('DateStyle') AS ds, current_setting('myapp.tenant') AS tenant, (SELECT n FROM t) AS n, pg_backend_pid() AS pid";

interface Expect {
  sp: string;
  tz: string;
  an: string;
  ds: string;
  tenant: string;
  n: number;
}

test('50 concurrent clients on 3 server connections each keep their own search_path, TimeZone, application_name, DateStyle and custom setting', { timeout: 180_000 }, async () => {
  const gw = await gateway({ size: 3, max_db_connections: 3, queue_timeout_ms: 30_000 });
  const mismatches: string[] = [];
  const pids = new Set<number>();
  const pidsPerClient: number[] = [];
  const paramProblems: string[] = [];
  const seed = Number(process.env.TXN_STATE_SEED ?? 20240229);

  const own = (i: number): Expect => ({
    sp: `s${i}`,
    tz: ZONES[i % ZONES.length]!,
    an: `app-${i}`,
    ds: DATESTYLES[i % DATESTYLES.length]!,
    tenant: `tenant-${i}`,
    n: i,
  });

  function compare(who: string, step: string, row: Record<string, unknown>, want: Expect): void {
    const got = { sp: row.sp, tz: row.tz, an: row.an, ds: row.ds, tenant: row.tenant, n: row.n };
    if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${who} ${step}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }

  // ---- node-postgres clients
  async function pgWorker(i: number): Promise<void> {
    const rand = seededRandom(seed + i);
    const want = own(i);
    const who = `pg client ${i}`;
    const options: string[] = [];
    const sets: { text: string; values?: unknown[] }[] = [];
    // search_path: startup option, SET, or SET SCHEMA
    if (i % 3 === 0) options.push(`-c search_path=${want.sp}`);
    else if (i % 3 === 1) sets.push({ text: `SET search_path = ${want.sp}` });
    else sets.push({ text: `SET SCHEMA '${want.sp}'` });
    // TimeZone: startup option, SET TIME ZONE, or SET TimeZone
    if (i % 2 === 0) options.push(`-c TimeZone=${want.tz}`);
    else if (i % 4 === 1) sets.push({ text: `SET TIME ZONE '${want.tz}'` });
    else sets.push({ text: `SET TimeZone = '${want.tz}'` });
    // application_name: startup parameter or SET
    const startupApp = i % 2 === 1;
    if (!startupApp) sets.push({ text: `SET application_name = '${want.an}'` });
    // DateStyle: startup option (no spaces allowed there) or SET
    if (i % 5 === 0) options.push(`-c DateStyle=${want.ds.replace(/ /g, '')}`);
    else sets.push({ text: `SET DateStyle = '${want.ds}'` });
    // myapp.tenant: SET, set_config with a literal, set_config with a parameter
    if (i % 3 === 0) sets.push({ text: `SET myapp.tenant = '${want.tenant}'` });
    else if (i % 3 === 1) sets.push({ text: `SELECT set_config('myapp.tenant', '${want.tenant}', false)` });
    else sets.push({ text: "SELECT set_config('myapp.tenant', $1, false)", values: [want.tenant] });

    let params!: Map<string, string>;
    const c = await pgConnect(
      url(gw),
      { ...(startupApp ? { application_name: want.an } : {}), ...(options.length ? { options: options.join(' ') } : {}) },
      (cl) => (params = trackParams(cl)),
    );
    const seen = new Set<number>();
    try {
      // Apply the settings: one statement at a time, as one multi-statement string, or in a transaction,
      // after a decoy transaction that sets other values and is rolled back.
      const how = i % 4;
      if (how === 3) {
        await c.query('BEGIN');
        await c.query(`SET search_path = s${(i + 1) % N_PG}; SET application_name = 'decoy'; SET myapp.tenant = 'decoy'`);
        await c.query('ROLLBACK');
      }
      if (how === 1) {
        const literal = sets.filter((s) => !s.values);
        await c.query(literal.map((s) => s.text).join('; '));
        for (const s of sets.filter((s) => s.values)) await c.query(s.text, s.values);
      } else if (how === 2) {
        await c.query('BEGIN');
        for (const s of sets) await c.query(s.text, s.values);
        await c.query('COMMIT');
      } else {
        for (const s of sets) await c.query(s.text, s.values);
      }

      const check = async (step: string, expected: Expect = want, extended = false) => {
        const r = extended ? await c.query(`${CHECK}, $1::int AS k`, [i]) : await c.query(CHECK);
        const row = r.rows[0] as Record<string, unknown>;
        seen.add(row.pid as number);
        pids.add(row.pid as number);
        compare(who, step, row, expected);
      };

      await check('after setup');
      for (let k = 0; k < 20; k++) {
        const kind = Math.floor(rand() * 7);
        const step = `txn ${k} (kind ${kind})`;
        switch (kind) {
          case 0:
            await check(step);
            break;
          case 1:
            await check(step, want, true);
            break;
          case 2: // a transaction of 2-3 statements
            await c.query('BEGIN');
            await check(step);
            if (rand() < 0.5) await sleep(Math.floor(rand() * 3));
            await check(step, want, true);
            if (rand() < 0.5) await check(step);
            await c.query('COMMIT');
            break;
          case 3: { // SET LOCAL lasts only for its transaction
            const other = (i + 7) % N_PG;
            await c.query('BEGIN');
            await c.query(`SET LOCAL search_path = s${other}`);
            await c.query("SET LOCAL TimeZone = 'Pacific/Chatham'");
            await check(`${step} inside`, { ...want, sp: `s${other}`, tz: 'Pacific/Chatham', n: other });
            await c.query('COMMIT');
            await check(`${step} after`);
            break;
          }
          case 4: // session SETs rolled back
            await c.query('BEGIN');
            await c.query("SET application_name = 'rolled-back'");
            await c.query("SELECT set_config('myapp.tenant', 'rolled-back', false)");
            await c.query("SET DateStyle = 'SQL, YMD'");
            await check(`${step} inside`, { ...want, an: 'rolled-back', tenant: 'rolled-back', ds: 'SQL, YMD' });
            await c.query('ROLLBACK');
            await check(`${step} after`);
            break;
          case 5: // the same value set again
            await c.query(`SET myapp.tenant = '${want.tenant}'`);
            await check(step, want, true);
            break;
          case 6: // a SET in a simple-query string that fails as a whole
            await assert.rejects(c.query(`SET search_path = s${(i + 3) % N_PG}; SET application_name = 'failed'; SELECT 1/0`), { code: '22012' });
            await check(step);
            break;
        }
        await sleep(Math.floor(rand() * 8));
      }
      // ParameterStatus: the values this client last heard are its own, not another client's.
      for (const [k, v] of [['application_name', want.an], ['TimeZone', want.tz], ['DateStyle', want.ds]] as const) {
        if (params.get(k) !== v) paramProblems.push(`${who}: ParameterStatus ${k} = ${JSON.stringify(params.get(k))}, want ${JSON.stringify(v)}`);
      }
    } finally {
      pidsPerClient.push(seen.size);
      await pgEnd(c);
    }
  }

  // ---- postgres.js clients (extended protocol with named prepared statements, sql.parameters)
  async function pjWorker(i: number): Promise<void> {
    const rand = seededRandom(seed + 1000 + i);
    const want = own(i);
    const who = `postgres.js client ${i}`;
    const startup = i % 2 === 0;
    const sql = pjConnect(url(gw), startup ? { connection: { application_name: want.an, TimeZone: want.tz, DateStyle: want.ds, search_path: want.sp } } : {});
    try {
      if (!startup) {
        await sql.unsafe(`SET application_name = '${want.an}'`);
        await sql.unsafe(`SET TimeZone = '${want.tz}'`);
        await sql.unsafe(`SET DateStyle = '${want.ds}'`);
        await sql.unsafe(`SET search_path = ${want.sp}`);
      }
      await sql`SELECT set_config('myapp.tenant', ${want.tenant}, false)`;
      const check = async (q: postgres.Sql | postgres.TransactionSql, step: string, expected: Expect = want) => {
        const rows = await q.unsafe(CHECK, [], { prepare: rand() < 0.5 });
        pids.add(rows[0]!.pid as number);
        compare(who, step, rows[0]!, expected);
      };
      await check(sql, 'after setup');
      for (let k = 0; k < 20; k++) {
        const kind = Math.floor(rand() * 4);
        const step = `txn ${k} (kind ${kind})`;
        if (kind === 0) await check(sql, step);
        else if (kind === 1) {
          await sql.begin(async (tx) => {
            await check(tx, step);
            await check(tx, step);
          });
        } else if (kind === 2) {
          await sql.begin(async (tx) => {
            await tx.unsafe("SET LOCAL TimeZone = 'Asia/Kathmandu'");
            await check(tx, `${step} inside`, { ...want, tz: 'Asia/Kathmandu' });
          });
          await check(sql, `${step} after`);
        } else {
          await assert.rejects(
            sql.begin(async (tx) => {
              await tx.unsafe("SET application_name = 'rolled-back'");
              await tx.unsafe('SELECT 1/0');
            }),
            { code: '22012' },
          );
          await check(sql, `${step} after`);
        }
        await sleep(Math.floor(rand() * 8));
      }
      const ps = sql.parameters as Record<string, string>;
      for (const [k, v] of [['application_name', want.an], ['TimeZone', want.tz], ['DateStyle', want.ds]] as const) {
        if (ps[k] !== v) paramProblems.push(`${who}: sql.parameters.${k} = ${JSON.stringify(ps[k])}, want ${JSON.stringify(v)}`);
      }
    } finally {
      await pjEnd(sql);
    }
  }

  try {
    const workers: Promise<void>[] = [];
    for (let i = 0; i < N_PG; i++) workers.push(pgWorker(i));
    for (let i = N_PG; i < N_PG + N_PJ; i++) workers.push(pjWorker(i));
    const results = await Promise.allSettled(workers);
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`client ${i}: ${(r.reason as Error).message}`] : []));
    assert.deepEqual(failed, [], 'every client ran all its transactions');
    assert.deepEqual(mismatches.slice(0, 20), [], `${mismatches.length} checks saw another client's settings (seed ${seed})`);
    assert.deepEqual(paramProblems, [], 'ParameterStatus values seen by clients are their own');
    assert.ok(pids.size <= 3, `at most 3 server connections were used (saw ${pids.size})`);
    assert.ok(
      pidsPerClient.filter((n) => n > 1).length >= 10,
      `transaction pooling: many clients ran on more than one server connection (${pidsPerClient.filter((n) => n > 1).length} did)`,
    );
    assert.ok(gw.status().clients.every((c) => c.pins.length === 0), 'nobody is pinned');
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 2. settings semantics, compared with a direct connection

const SEMANTICS_CHECK =
  "SELECT current_setting('work_mem') AS work_mem, current_setting('statement_timeout') AS statement_timeout, " +
  "current_setting('search_path') AS search_path, current_setting('application_name') AS application_name, " +
  "current_setting('TimeZone') AS timezone, current_setting('myapp.x', true) AS x, current_setting('myapp.y', true) AS y, " +
  "current_setting('default_transaction_isolation') AS isolation";

interface Step {
  name: string;
  queries: (string | { text: string; values: unknown[] })[];
}

const SEMANTICS_STEPS: Step[] = [
  { name: 'start', queries: [] },
  { name: 'SET in a rolled-back transaction', queries: ['BEGIN', "SET work_mem = '16MB'", 'SHOW work_mem', 'ROLLBACK'] },
  { name: 'SET in a committed transaction', queries: ['BEGIN', "SET work_mem = '16MB'", 'COMMIT'] },
  {
    name: 'SET LOCAL in a transaction',
    queries: ['BEGIN', "SET LOCAL statement_timeout = '1min'", 'SET LOCAL search_path = pg_catalog', 'SHOW statement_timeout', 'COMMIT'],
  },
  { name: 'SET LOCAL outside a transaction', queries: ["SET LOCAL work_mem = '32MB'"] },
  { name: 'SET search_path', queries: ['SET search_path = a, b'] },
  { name: 'RESET search_path', queries: ['RESET search_path'] },
  { name: 'SET a startup parameter', queries: ["SET statement_timeout = '7s'"] },
  { name: 'RESET a startup parameter', queries: ['RESET statement_timeout'] },
  {
    name: 'SET several',
    queries: ["SET work_mem = '9MB'", "SET application_name = 'changed'", "SET TimeZone = 'Asia/Tokyo'", "SELECT set_config('myapp.x', 'before-reset-all', false)"],
  },
  { name: 'RESET ALL', queries: ['RESET ALL'] },
  { name: 'set_config(..., false)', queries: ["SELECT set_config('myapp.x', 'v', false)"] },
  { name: 'set_config(..., true) outside a transaction', queries: ["SELECT set_config('myapp.y', 'w', true)"] },
  {
    name: 'set_config(..., true) in a transaction',
    queries: ['BEGIN', "SELECT set_config('myapp.x', 'local', true)", "SELECT current_setting('myapp.x') AS inside", 'COMMIT'],
  },
  {
    name: 'SET in a savepoint rolled back to',
    queries: [
      'BEGIN', "SET work_mem = '20MB'", 'SAVEPOINT s1', "SET work_mem = '30MB'", "SET myapp.x = 'inner'", 'SHOW work_mem',
      'ROLLBACK TO SAVEPOINT s1', 'SHOW work_mem', 'COMMIT',
    ],
  },
  { name: 'SET in a released savepoint', queries: ['BEGIN', 'SAVEPOINT s1', "SET work_mem = '40MB'", 'RELEASE SAVEPOINT s1', 'COMMIT'] },
  { name: 'SET; failing statement in one simple query', queries: ["SET work_mem = '8MB'; SELECT 1/0"] },
  { name: 'SET; good statement in one simple query', queries: ["SET work_mem = '8MB'; SELECT 1"] },
  { name: 'SET in a transaction that fails, then COMMIT', queries: ['BEGIN', "SET work_mem = '11MB'", 'SELECT 1/0', 'COMMIT'] },
  {
    name: 'committed transaction then a failing implicit one in one string',
    queries: ["BEGIN; SET application_name = 'in-multi'; COMMIT; SET work_mem = '12MB'; SELECT 1/0"],
  },
  { name: 'SET TO DEFAULT of a startup parameter', queries: ['SET work_mem TO DEFAULT'] },
  { name: 'set_config with a parameter (extended protocol)', queries: [{ text: "SELECT set_config('myapp.x', $1, false)", values: ['ext'] }] },
  {
    name: 'failing extended query with set_config',
    queries: [{ text: "SELECT set_config('myapp.x', $1, false), 1 / $2::int AS boom", values: ['bad', 0] }],
  },
  { name: 'SET SESSION CHARACTERISTICS', queries: ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ'] },
  { name: 'SET statement_timeout then DISCARD ALL', queries: ["SET statement_timeout = '3s'", "SET search_path = c", 'DISCARD ALL'] },
];

const INTRUDER_SETUP =
  "SET work_mem = '1MB'; SET search_path = intruder; SET application_name = 'intruder'; SET TimeZone = 'Pacific/Chatham'; " +
  "SET statement_timeout = '2s'; SET myapp.intr = 'i'; SET default_transaction_isolation = 'serializable'";
const INTRUDER_CHECK =
  "SELECT current_setting('work_mem') AS wm, current_setting('search_path') AS sp, current_setting('application_name') AS an, " +
  "current_setting('TimeZone') AS tz, current_setting('statement_timeout') AS st, current_setting('myapp.intr') AS i, " +
  "current_setting('default_transaction_isolation') AS iso, pg_backend_pid() AS pid";
const INTRUDER_WANT = { wm: '1MB', sp: 'intruder', an: 'intruder', tz: 'Pacific/Chatham', st: '2s', i: 'i', iso: 'serializable' };

/** Runs the steps; between steps another client (the intruder) runs on the same server connection when through the gateway. */
async function runSemantics(target: string): Promise<{ log: unknown[]; intruderProblems: string[]; reused: boolean }> {
  const subject = await pgConnect(target, { application_name: 'subject', options: '-c statement_timeout=5s -c work_mem=3MB' });
  const intruder = await pgConnect(target, { application_name: 'intruder-startup' });
  const log: unknown[] = [];
  const intruderProblems: string[] = [];
  let reused = true;
  try {
    await intruder.query(INTRUDER_SETUP);
    for (const step of SEMANTICS_STEPS) {
      const results: unknown[] = [];
      for (const q of step.queries) {
        try {
          const r = typeof q === 'string' ? await subject.query(q) : await subject.query(q.text, q.values);
          const last = Array.isArray(r) ? r[r.length - 1]! : r;
          results.push({ command: last.command, rows: last.rows });
        } catch (e) {
          results.push({ error: (e as pg.DatabaseError).code });
        }
      }
      // Another client uses the (only) server connection between the steps, with settings of its own.
      const ir = (await intruder.query(INTRUDER_CHECK)).rows[0] as Record<string, unknown>;
      const { pid: intruderPid, ...intruderState } = ir;
      if (JSON.stringify(intruderState) !== JSON.stringify(INTRUDER_WANT)) {
        intruderProblems.push(`after "${step.name}": ${JSON.stringify(intruderState)}`);
      }
      const s = (await subject.query(`${SEMANTICS_CHECK}, pg_backend_pid() AS pid`)).rows[0] as Record<string, unknown>;
      const { pid: subjectPid, ...state } = s;
      if (subjectPid !== intruderPid) reused = false;
      log.push({ step: step.name, results, state });
    }
  } finally {
    await pgEnd(subject, intruder);
  }
  return { log, intruderProblems, reused };
}

test('settings semantics match a direct connection while another client shares the server connection', { timeout: 60_000 }, async () => {
  const gw = await gateway({ size: 1, queue_timeout_ms: 10_000 });
  try {
    const direct = await runSemantics(directUrl());
    const through = await runSemantics(url(gw));
    assert.deepEqual(direct.intruderProblems, []);
    assert.equal(through.reused, true, 'the subject and the intruder shared the one server connection (pool.size 1)');
    assert.deepEqual(through.intruderProblems, [], "the intruder's settings survive the subject's steps");
    // Step by step, so a failure names the first step that differs.
    for (let k = 0; k < SEMANTICS_STEPS.length; k++) {
      assert.deepEqual(through.log[k], direct.log[k], `step "${SEMANTICS_STEPS[k]!.name}": gateway differs from direct`);
    }
    // The values that matter, spelled out (the direct run is the reference; these document it).
    const state = (name: string) => (direct.log.find((l) => (l as { step: string }).step === name) as { state: Record<string, string> }).state;
    assert.equal(state('SET in a rolled-back transaction').work_mem, '3MB');
    assert.equal(state('SET LOCAL in a transaction').statement_timeout, '5s');
    assert.equal(state('RESET a startup parameter').statement_timeout, '5s');
    assert.deepEqual(
      [state('RESET ALL').work_mem, state('RESET ALL').statement_timeout, state('RESET ALL').application_name],
      ['3MB', '5s', 'subject'],
    );
    assert.equal(state('set_config(..., false)').x, 'v');
    assert.equal(state('set_config(..., true) in a transaction').x, 'v');
    assert.equal(state('SET in a savepoint rolled back to').work_mem, '20MB');
    assert.equal(state('SET in a savepoint rolled back to').x, 'v');
    assert.equal(state('SET; failing statement in one simple query').work_mem, '40MB');
    assert.equal(state('SET; good statement in one simple query').work_mem, '8MB');
    assert.equal(state('committed transaction then a failing implicit one in one string').application_name, 'in-multi');
    assert.equal(state('SET statement_timeout then DISCARD ALL').statement_timeout, '5s');
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 3. pins

interface PinCase {
  name: string;
  reason: string;
  pin: (string | { text: string; values: unknown[] })[];
  /** Runs while pinned (several transactions): the pinned state is there, on the same server connection. */
  whilePinned?: (a: pg.Client) => Promise<void>;
  /** Statements after which the client is still pinned. */
  stillPinned?: string[];
  /** The statements that end the pin; undefined: the client disconnects. */
  unpin?: string[];
  /** After the pin ended: the state is really gone (run by client A or, after a disconnect, B). */
  afterwards?: (c: pg.Client) => Promise<void>;
}

const value = async (c: pg.Client, sql: string): Promise<unknown> => Object.values((await c.query(sql)).rows[0] as object)[0];

/**
 * pool.size 1: client A pins the one server connection; B's query waits; A's pin-ending action emits
 * pin_ended, and B's query runs. Also status().clients[].pins, the server A holds, and the event counts.
 */
async function pinScenario(pc: PinCase): Promise<void> {
  const gw = await gateway({ size: 1, queue_timeout_ms: 10_000 });
  const rec = record(gw);
  const appA = `pin-A-${pc.name.replace(/\W+/g, '-')}`;
  const a = await pgConnect(url(gw), { application_name: appA });
  const b = await pgConnect(url(gw), { application_name: 'pin-B' });
  try {
    const idA = statusOf(gw, appA).id;
    const started = () => rec.events.filter((e) => e.type === 'pin_started' && e.client === idA);
    const ended = () => rec.events.filter((e) => e.type === 'pin_ended' && e.client === idA);
    assert.equal((await b.query('SELECT 1 AS one')).rows[0].one, 1, 'B runs while A is not pinned');

    for (const q of pc.pin) {
      if (typeof q === 'string') await a.query(q);
      else await a.query(q.text, q.values);
    }
    await waitFor(`pin_started (${pc.reason}) for A`, () => started().length > 0);
    assert.deepEqual(
      started().map((e) => (e as { reason: string }).reason),
      [pc.reason],
      `one pin_started event, reason ${pc.reason}`,
    );
    assert.deepEqual(statusOf(gw, appA).pins, [pc.reason], 'status lists the pin reason');
    assert.notEqual(statusOf(gw, appA).server, null, 'A holds its server connection while idle');
    assert.ok((gw.status().events.pin_started ?? 0) >= 1, 'status().events counts pin_started');
    assert.equal(gw.status().pins_started_by_reason[pc.reason], 1, 'status() counts pins by reason');

    // Pinned: several transactions of A run on one backend, with the state in place.
    const pinnedPid = await pid(a);
    await pc.whilePinned?.(a);
    assert.equal(await pid(a), pinnedPid, 'A stays on its server connection');

    // B waits for the connection.
    const bq = track(b.query('SELECT 2 AS two'));
    await sleep(300);
    assert.equal(bq.done, false, `B's query waits while A is pinned (${bq.error ? (bq.error as Error).message : 'it ran'})`);

    for (const q of pc.stillPinned ?? []) {
      await a.query(q);
      await sleep(100);
      assert.deepEqual(statusOf(gw, appA).pins, [pc.reason], `still pinned after ${q}`);
      assert.equal(ended().length, 0, `no pin_ended after ${q}`);
      assert.equal(bq.done, false, `B still waits after ${q}`);
    }

    if (pc.unpin) {
      for (const q of pc.unpin) await a.query(q);
      await waitFor(`pin_ended (${pc.reason}) for A`, () => ended().length > 0);
      assert.deepEqual(
        ended().map((e) => (e as { reason: string }).reason),
        [pc.reason],
        `one pin_ended event, reason ${pc.reason}`,
      );
      assert.deepEqual(statusOf(gw, appA).pins, [], 'status lists no pin once it ended');
      assert.ok((gw.status().events.pin_ended ?? 0) >= 1, 'status().events counts pin_ended');
    } else {
      await pgEnd(a);
    }
    await Promise.race([bq.p, sleep(3000).then(() => assert.fail("B's query did not run within 3 s of the pin ending"))]);
    assert.equal((await bq.p).rows[0].two, 2);
    if (pc.unpin) {
      await waitFor('A to give its server connection back', () => statusOf(gw, appA).server === null, 2000);
      await pc.afterwards?.(a);
      assert.equal((await a.query('SELECT 3 AS three')).rows[0].three, 3, 'A goes on working unpinned');
    } else {
      await pc.afterwards?.(b);
    }
  } finally {
    rec.stop();
    await pgEnd(a, b);
    await closeGateway(gw);
  }
}

test('pin: session advisory locks (pg_advisory_unlock, pg_advisory_unlock_all, re-entrant locks, extended protocol)', { timeout: 60_000 }, async () => {
  await pinScenario({
    name: 'advisory-unlock',
    reason: 'advisory_lock',
    pin: ['SELECT pg_advisory_lock(101)'],
    whilePinned: async (a) => {
      // Held by A's own backend only.
      assert.equal(await value(a, "SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"), 1);
      assert.equal(await cluster.query('SELECT pg_try_advisory_lock(101)'), 'f', 'the lock is held');
    },
    unpin: ['SELECT pg_advisory_unlock(101)'],
    afterwards: async () => assert.equal(await cluster.query('SELECT pg_try_advisory_lock(101)'), 't', 'the lock is free'),
  });
  await pinScenario({
    name: 'advisory-unlock-all',
    reason: 'advisory_lock',
    pin: [{ text: 'SELECT pg_advisory_lock($1)', values: [102] }, 'SELECT pg_try_advisory_lock_shared(103)'],
    stillPinned: ['SELECT pg_advisory_unlock(102)'],
    unpin: ['SELECT pg_advisory_unlock_all()'],
  });
  await pinScenario({
    name: 'advisory-reentrant',
    reason: 'advisory_lock',
    pin: ['SELECT pg_advisory_lock(104)', 'SELECT pg_advisory_lock(104)'],
    stillPinned: ['SELECT pg_advisory_unlock(104)'],
    unpin: ['SELECT pg_advisory_unlock(104)'],
  });
});

test('pin: a session advisory lock keeps the connection; another client gets 53300 after pool.queue_timeout_ms', { timeout: 30_000 }, async () => {
  const gw = await gateway({ size: 1, queue_timeout_ms: 500 });
  const a = await pgConnect(url(gw), { application_name: 'lock-holder' });
  const b = await pgConnect(url(gw), { application_name: 'lock-waiter' });
  try {
    await a.query('SELECT pg_advisory_lock(201)');
    await waitFor('the pin', () => statusOf(gw, 'lock-holder').pins.length > 0);
    const t0 = Date.now();
    await assert.rejects(b.query('SELECT 1'), (e: pg.DatabaseError) => {
      assert.equal(e.code, '53300');
      assert.match(e.message, /pool\.queue_timeout_ms \(500 ms\)/);
      return true;
    });
    assert.ok(Date.now() - t0 >= 450, `B waited for the queue timeout (${Date.now() - t0} ms)`);
    await a.query('SELECT pg_advisory_unlock(201)');
    await waitFor('the pin to end', () => statusOf(gw, 'lock-holder').pins.length === 0);
    const c = await pgConnect(url(gw));
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1, 'a new client works once the pin ended');
    await pgEnd(c);
  } finally {
    await pgEnd(a, b);
    await closeGateway(gw);
  }
});

test('pin: temporary tables (DROP TABLE, DISCARD TEMP)', { timeout: 60_000 }, async () => {
  await pinScenario({
    name: 'temp-drop',
    reason: 'temp_table',
    pin: ['CREATE TEMP TABLE pin_tmp (id serial PRIMARY KEY, v text)', "INSERT INTO pin_tmp (v) VALUES ('kept')"],
    whilePinned: async (a) => {
      assert.equal(await value(a, 'SELECT v FROM pin_tmp'), 'kept');
      await a.query("INSERT INTO pin_tmp (v) VALUES ('again')");
      assert.equal(await value(a, 'SELECT count(*)::int FROM pin_tmp'), 2);
    },
    unpin: ['DROP TABLE pin_tmp'],
    afterwards: async (a) => assert.equal(await value(a, "SELECT to_regclass('pg_temp.pin_tmp') IS NULL"), true),
  });
  await pinScenario({
    name: 'temp-discard',
    reason: 'temp_table',
    pin: ['CREATE TEMPORARY TABLE pin_tmp2 AS SELECT 1 AS x'],
    whilePinned: async (a) => assert.equal(await value(a, 'SELECT x FROM pin_tmp2'), 1),
    unpin: ['DISCARD TEMP'],
  });
});

test('pin: cursors WITH HOLD (CLOSE, CLOSE ALL)', { timeout: 60_000 }, async () => {
  await pinScenario({
    name: 'cursor-close',
    reason: 'cursor_with_hold',
    pin: ['BEGIN', 'DECLARE hc CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g', 'COMMIT'],
    whilePinned: async (a) => {
      assert.deepEqual((await a.query('FETCH 3 FROM hc')).rows, [{ g: 1 }, { g: 2 }, { g: 3 }]);
      assert.deepEqual((await a.query('FETCH 3 FROM hc')).rows, [{ g: 4 }, { g: 5 }, { g: 6 }], 'the cursor position survives between transactions');
    },
    unpin: ['CLOSE hc'],
  });
  await pinScenario({
    name: 'cursor-close-all',
    reason: 'cursor_with_hold',
    pin: ['DECLARE hc2 CURSOR WITH HOLD FOR SELECT 42 AS v'],
    whilePinned: async (a) => assert.deepEqual((await a.query('FETCH 1 FROM hc2')).rows, [{ v: 42 }]),
    unpin: ['CLOSE ALL'],
  });
});

test('pin: SET ROLE (RESET ROLE, SET ROLE NONE)', { timeout: 60_000 }, async () => {
  for (const [name, unpin] of [['reset-role', 'RESET ROLE'], ['role-none', 'SET ROLE NONE']] as const) {
    await pinScenario({
      name,
      reason: 'set_role',
      pin: ['SET ROLE pin_role'],
      whilePinned: async (a) => {
        assert.equal(await value(a, 'SELECT current_user::text'), 'pin_role');
        assert.equal(await value(a, 'SELECT current_user::text'), 'pin_role');
      },
      unpin: [unpin],
      afterwards: async (a) => assert.equal(await value(a, 'SELECT current_user::text'), cluster.superuser),
    });
  }
});

test('pin: SET SESSION AUTHORIZATION (RESET SESSION AUTHORIZATION)', { timeout: 30_000 }, async () => {
  await pinScenario({
    name: 'session-authorization',
    reason: 'session_authorization',
    pin: ['SET SESSION AUTHORIZATION pin_role'],
    whilePinned: async (a) => assert.equal(await value(a, 'SELECT session_user::text'), 'pin_role'),
    unpin: ['RESET SESSION AUTHORIZATION'],
    afterwards: async (a) => assert.equal(await value(a, 'SELECT session_user::text'), cluster.superuser),
  });
});

test('pin: set_config with a non-literal name (until the client leaves)', { timeout: 30_000 }, async () => {
  await pinScenario({
    name: 'dynamic-set-config',
    reason: 'dynamic_set_config',
    pin: ["SELECT set_config(n, 'dyn', false) FROM (VALUES ('myapp.dyn')) AS v(n)"],
    whilePinned: async (a) => assert.equal(await value(a, "SELECT current_setting('myapp.dyn')"), 'dyn'),
    unpin: undefined,
    // The next client of the connection does not see the setting.
    afterwards: async (b) => assert.notEqual(await value(b, "SELECT current_setting('myapp.dyn', true)"), 'dyn'),
  });
});

test('no pin: transaction-level advisory locks, ON COMMIT DROP temp tables, SET LOCAL ROLE, plain cursors, state gone by the end', { timeout: 60_000 }, async () => {
  const gw = await gateway({ size: 1, queue_timeout_ms: 10_000 });
  const rec = record(gw);
  const a = await pgConnect(url(gw), { application_name: 'no-pin-A' });
  const b = await pgConnect(url(gw), { application_name: 'no-pin-B' });
  const cases: string[][] = [
    ['BEGIN', 'SELECT pg_advisory_xact_lock(301)', 'SELECT pg_try_advisory_xact_lock_shared(302)', 'COMMIT'],
    ['SELECT pg_advisory_xact_lock(303)'],
    ['BEGIN', 'CREATE TEMP TABLE tmp_ocd (x int) ON COMMIT DROP', 'INSERT INTO tmp_ocd VALUES (1)', 'COMMIT'],
    ['BEGIN', 'CREATE TEMP TABLE tmp_ocd2 ON COMMIT DROP AS SELECT 1 AS x', 'COMMIT'],
    ['BEGIN', 'SET LOCAL ROLE pin_role', 'SELECT current_user', 'COMMIT'],
    ['BEGIN', 'DECLARE c1 CURSOR FOR SELECT 1', 'FETCH c1', 'COMMIT'],
    ["SELECT set_config('myapp.local', 'x', true)"],
    ['SELECT pg_advisory_lock(304), pg_advisory_unlock(304)'],
    ['BEGIN', 'SELECT pg_advisory_lock(305)', 'SELECT pg_advisory_unlock(305)', 'COMMIT'],
    ['CREATE TEMP TABLE tmp_gone (x int); DROP TABLE tmp_gone'],
  ];
  try {
    for (const qs of cases) {
      for (const q of qs) await a.query(q);
      await sleep(50); // the gateway's state read-back after the transaction
      assert.deepEqual(statusOf(gw, 'no-pin-A').pins, [], `no pin after ${qs.join('; ')}`);
      const t0 = Date.now();
      assert.equal((await b.query('SELECT 1 AS one')).rows[0].one, 1);
      assert.ok(Date.now() - t0 < 1000, `B ran at once after ${qs.join('; ')} (${Date.now() - t0} ms)`);
    }
    const pins = rec.events.filter((e) => e.type === 'pin_started');
    assert.deepEqual(pins, [], 'no pin_started event');
  } finally {
    rec.stop();
    await pgEnd(a, b);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 4. LISTEN / NOTIFY

test('LISTEN/NOTIFY: 20 listeners on pool.size 2, shared and own channels, transactions, UNLISTEN, disconnects, postgres.js', { timeout: 90_000 }, async () => {
  const gw = await gateway({ size: 2, queue_timeout_ms: 10_000 });
  const N = 20;
  const ownChannel = (i: number) => (i % 5 === 4 ? `Own Chan ${i}` : `own_${i}`);
  const quoted = (ch: string) => `"${ch.replace(/"/g, '""')}"`;
  const listeners: pg.Client[] = [];
  const got: { channel: string; payload: string }[][] = [];
  const notifier = await pgConnect(url(gw), { application_name: 'notifier' });
  const w1 = await pgConnect(url(gw), { application_name: 'worker-1' });
  const w2 = await pgConnect(url(gw), { application_name: 'worker-2' });
  let pj: postgres.Sql | undefined;
  const count = (i: number, payload: string) => got[i]!.filter((n) => n.payload === payload).length;
  /** Waits until every listener in `who` has `payload` once, then a little longer to catch duplicates. */
  const expectDelivered = async (payload: string, who: number[], what: string) => {
    await waitFor(`${what}: delivered to ${who.length} listeners`, () => who.every((i) => count(i, payload) >= 1));
    await sleep(300);
    const counts = got.map((_, i) => count(i, payload));
    assert.deepEqual(counts, got.map((_, i) => (who.includes(i) ? 1 : 0)), `${what}: exactly once to exactly these listeners`);
  };
  try {
    for (let i = 0; i < N; i++) {
      const c = await pgConnect(url(gw), { application_name: `listener-${i}` });
      const mine: { channel: string; payload: string }[] = [];
      c.on('notification', (n) => mine.push({ channel: n.channel, payload: n.payload ?? '' }));
      listeners.push(c);
      got.push(mine);
      const own = quoted(ownChannel(i));
      if (i % 3 === 0) {
        await c.query('LISTEN shared');
        await c.query(`LISTEN ${own}`);
      } else if (i % 3 === 1) {
        await c.query(`LISTEN shared; LISTEN ${own}`);
      } else {
        await c.query('BEGIN');
        await c.query('LISTEN shared');
        await c.query(`LISTEN ${own}`);
        await c.query('COMMIT');
      }
    }
    const all = [...Array(N).keys()];

    // Listeners are not pinned and hold no server connection (once the gateway's read-back after the
    // LISTEN transaction is done).
    for (let i = 0; i < N; i++) assert.deepEqual(statusOf(gw, `listener-${i}`).pins, [], `listener ${i} is not pinned`);
    await waitFor('every listener to give its server connection back', () => listeners.every((_, i) => statusOf(gw, `listener-${i}`).server === null), 2000);
    // Two other clients run transactions at the same time (pool.size 2): listeners do not hold connections.
    const t0 = Date.now();
    await Promise.all(
      [w1, w2].map(async (w) => {
        await w.query('BEGIN');
        await w.query('SELECT pg_sleep(0.5)');
        await w.query('COMMIT');
      }),
    );
    const took = Date.now() - t0;
    assert.ok(took < 950, `two transactions of 0.5 s ran side by side while 20 clients listen (${took} ms)`);

    await notifier.query("NOTIFY shared, 'hello all'");
    await expectDelivered('hello all', all, 'NOTIFY on the shared channel');
    for (const n of got[0]!) assert.equal(n.channel, 'shared');

    for (let i = 0; i < N; i++) await notifier.query(`NOTIFY ${quoted(ownChannel(i))}, 'own-${i}'`);
    await waitFor('every own-channel notification', () => all.every((i) => count(i, `own-${i}`) >= 1));
    await sleep(300);
    for (let i = 0; i < N; i++) {
      assert.deepEqual(got.map((_, j) => count(j, `own-${i}`)), got.map((_, j) => (j === i ? 1 : 0)), `NOTIFY on ${ownChannel(i)}: exactly once, to listener ${i} only`);
    }
    assert.deepEqual(got[4]!.find((n) => n.payload === 'own-4'), { channel: 'Own Chan 4', payload: 'own-4' });

    // pg_notify through the extended protocol
    await notifier.query('SELECT pg_notify($1, $2)', ['shared', 'via pg_notify ✓']);
    await expectDelivered('via pg_notify ✓', all, 'pg_notify');

    // Rolled back: nobody; committed: everybody, and only after the commit.
    await notifier.query('BEGIN');
    await notifier.query("NOTIFY shared, 'rolled back'");
    await notifier.query('ROLLBACK');
    await notifier.query('BEGIN');
    await notifier.query("NOTIFY shared, 'committed'");
    await sleep(300);
    assert.deepEqual(got.map((_, i) => count(i, 'committed')), got.map(() => 0), 'nothing before COMMIT');
    await notifier.query('COMMIT');
    await expectDelivered('committed', all, 'NOTIFY in a committed transaction');
    assert.deepEqual(got.map((_, i) => count(i, 'rolled back')), got.map(() => 0), 'NOTIFY in a rolled-back transaction reaches nobody');

    // A listener inside a transaction gets the notification after its transaction, as from PostgreSQL.
    await listeners[3]!.query('BEGIN');
    await listeners[3]!.query('SELECT 1');
    await notifier.query(`NOTIFY ${quoted(ownChannel(3))}, 'while in a transaction'`);
    await sleep(300);
    assert.equal(count(3, 'while in a transaction'), 0, 'not delivered inside the transaction');
    await listeners[3]!.query('COMMIT');
    await waitFor('delivery after COMMIT', () => count(3, 'while in a transaction') === 1);

    // A listener's own NOTIFY reaches itself.
    await listeners[5]!.query(`NOTIFY ${quoted(ownChannel(5))}, 'self'`);
    await expectDelivered('self', [5], 'own NOTIFY');

    // UNLISTEN on one client: no more deliveries on that channel, its other channel still works.
    await listeners[0]!.query('UNLISTEN shared');
    await notifier.query("NOTIFY shared, 'after unlisten'");
    await expectDelivered('after unlisten', all.filter((i) => i !== 0), 'NOTIFY after one UNLISTEN');
    await notifier.query(`NOTIFY ${quoted(ownChannel(0))}, 'own after unlisten'`);
    await expectDelivered('own after unlisten', [0], 'own channel after UNLISTEN of another');

    // Disconnected listeners (Terminate, and a dropped socket) do not break the others.
    await pgEnd(listeners[1]!);
    (listeners[2] as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    pgClients.delete(listeners[2]!);
    await waitFor('the two listeners to leave the gateway', () => !gw.status().clients.some((c) => c.application_name === 'listener-1' || c.application_name === 'listener-2'));
    await notifier.query("NOTIFY shared, 'after disconnects'");
    await expectDelivered('after disconnects', all.filter((i) => i > 2), 'NOTIFY after two listeners left');
    await notifier.query(`NOTIFY ${quoted(ownChannel(1))}, 'to the departed'`);
    await notifier.query(`NOTIFY ${quoted(ownChannel(6))}, 'to a live one'`);
    await expectDelivered('to a live one', [6], 'own channel of a live listener after others left');
    assert.equal(count(1, 'to the departed'), 0);

    // postgres.js: sql.listen uses the extended protocol on a connection of its own.
    pj = pjConnect(url(gw));
    const pjGot: string[] = [];
    const sub = await pj.listen('pj_chan', (payload) => pjGot.push(payload));
    await pj.listen('shared', (payload) => pjGot.push(`shared:${payload}`));
    await notifier.query("NOTIFY pj_chan, 'to postgres.js'");
    await notifier.query("NOTIFY shared, 'everyone again'");
    await waitFor('postgres.js notifications', () => pjGot.length >= 2);
    await expectDelivered('everyone again', all.filter((i) => i > 2), 'shared channel with postgres.js listening too');
    assert.deepEqual(pjGot.sort(), ['shared:everyone again', 'to postgres.js']);
    await sub.unlisten();
    await notifier.query("NOTIFY pj_chan, 'after pj unlisten'");
    await sleep(300);
    assert.deepEqual(pjGot.sort(), ['shared:everyone again', 'to postgres.js'], 'nothing after postgres.js unlisten');

    // Still no listener holds a connection.
    assert.ok(gw.status().clients.every((c) => c.pins.length === 0 && c.server === null), 'no client holds a server connection while idle');
  } finally {
    if (pj) await pjEnd(pj);
    await pgEnd(...listeners, notifier, w1, w2);
    await closeGateway(gw);
  }
});

test('LISTEN and UNLISTEN inside transactions take effect at COMMIT only, as in PostgreSQL', { timeout: 30_000 }, async () => {
  const gw = await gateway({ size: 2, queue_timeout_ms: 10_000 });
  const run = async (target: string) => {
    const c = await pgConnect(target);
    const seen: string[] = [];
    c.on('notification', (n) => seen.push(`${n.channel}:${n.payload}`));
    try {
      await c.query('BEGIN');
      await c.query('LISTEN tx_rolled_back');
      await c.query('ROLLBACK');
      await c.query('LISTEN tx_kept');
      await c.query('BEGIN');
      await c.query('UNLISTEN tx_kept');
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      await c.query('LISTEN tx_committed');
      await c.query('COMMIT');
      await cluster.query("NOTIFY tx_rolled_back, 'a'; NOTIFY tx_kept, 'b'; NOTIFY tx_committed, 'c'");
      await sleep(300);
      await c.query('SELECT 1');
      await sleep(100);
      return seen.sort();
    } finally {
      await pgEnd(c);
    }
  };
  try {
    const direct = await run(directUrl());
    assert.deepEqual(direct, ['tx_committed:c', 'tx_kept:b']);
    assert.deepEqual(await run(url(gw)), direct, 'the gateway delivers what PostgreSQL delivers');
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 5. safety

test('a client that disconnects inside a transaction has it rolled back; the next client is not in a transaction', { timeout: 30_000 }, async () => {
  const gw = await gateway({ size: 1, queue_timeout_ms: 10_000 });
  try {
    for (const how of ['end', 'destroy', 'failed'] as const) {
      const who = `disconnect-${how}`;
      const a = await pgConnect(url(gw));
      await a.query('BEGIN');
      await a.query('INSERT INTO safety_t (who) VALUES ($1)', [who]);
      await a.query("SET application_name = 'doomed'");
      if (how === 'failed') await assert.rejects(a.query('SELECT 1/0'), { code: '22012' });
      if (how === 'destroy') {
        const ended = new Promise((res) => a.once('end', res));
        (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
        await ended;
        pgClients.delete(a);
      } else await pgEnd(a);

      const c = await pgConnect(url(gw));
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(`${n.code}: ${n.message}`));
      try {
        // A simple query: in the extended protocol statement_timestamp() moves on at Bind/Execute.
        const row = (await c.query(
          'SELECT now() = statement_timestamp() AS fresh, txid_current_if_assigned() AS xid, ' +
            `current_setting('application_name') AS an, (SELECT count(*)::int FROM safety_t WHERE who = '${who}') AS rows`,
        )).rows[0];
        assert.deepEqual(
          { fresh: row.fresh, xid: row.xid, an: row.an, rows: row.rows },
          { fresh: true, xid: null, an: '', rows: 0 },
          `${how}: the next client starts outside a transaction, without the abandoned row or setting`,
        );
        await c.query('BEGIN');
        await c.query('COMMIT');
        assert.deepEqual(notices, [], `${how}: no "there is already a transaction in progress" warning`);
      } finally {
        await pgEnd(c);
      }
    }
    assert.equal(await cluster.query("SELECT count(*) FROM safety_t WHERE who LIKE 'disconnect-%'"), '0');
  } finally {
    await closeGateway(gw);
  }
});

test('pool.idle_transaction_timeout_ms: a client idle in a transaction gets 25P03 and its work is rolled back; others are unaffected', { timeout: 30_000 }, async () => {
  const gw = await gateway({ size: 2, queue_timeout_ms: 10_000, idle_transaction_timeout_ms: 300 });
  const errors = new Map<string, Error[]>();
  const connect = (name: string) =>
    pgConnect(url(gw), { application_name: name }, (c) => {
      const list: Error[] = [];
      errors.set(name, list);
      c.on('error', (e) => list.push(e));
    });
  const a = await connect('idle-a');
  const e = await connect('idle-e');
  const b = await connect('busy-b');
  const slow = await connect('slow-c');
  const outside = await connect('outside-d');
  try {
    await a.query('BEGIN');
    await a.query('INSERT INTO safety_t (who) VALUES ($1)', ['idle-a']);
    await e.query('BEGIN');
    await assert.rejects(e.query('SELECT 1/0'), { code: '22012' }); // idle in a failed transaction
    const start = Date.now();
    // Meanwhile: B keeps working (short transactions), C runs one long query inside a transaction,
    // D stays idle outside any transaction.
    const bWork = (async () => {
      while (Date.now() - start < 1000) {
        await b.query('BEGIN');
        await b.query('SELECT 1');
        await b.query('COMMIT');
        await sleep(20);
      }
    })();
    await sleep(1000);
    await bWork;
    await waitFor('25P03 for A', () => (errors.get('idle-a') ?? []).length > 0, 2000);
    const err = errors.get('idle-a')![0] as pg.DatabaseError;
    assert.equal(err.code, '25P03');
    assert.match(err.message, /idle_transaction_timeout/);
    await waitFor('25P03 for E', () => (errors.get('idle-e') ?? []).length > 0, 2000);
    assert.equal((errors.get('idle-e')![0] as pg.DatabaseError).code, '25P03', 'also when idle in a failed transaction');
    await assert.rejects(a.query('SELECT 1'), 'A was disconnected');
    assert.equal(await cluster.query("SELECT count(*) FROM safety_t WHERE who = 'idle-a'"), '0', "A's insert was rolled back");

    // A query running longer than the timeout inside a transaction is not idleness.
    await slow.query('BEGIN');
    await slow.query('SELECT pg_sleep(0.6)');
    await slow.query('COMMIT');
    assert.deepEqual(errors.get('slow-c'), [], 'a long query inside a transaction is not cut off');
    assert.equal((await outside.query('SELECT 1 AS one')).rows[0].one, 1, 'a client idle outside a transaction is not cut off');
    assert.deepEqual(errors.get('outside-d'), []);
    assert.deepEqual(errors.get('busy-b'), []);
    assert.equal((await b.query('SELECT 2 AS two')).rows[0].two, 2);
  } finally {
    await pgEnd(a, e, b, slow, outside);
    await closeGateway(gw);
  }
});

test('pool.queue_timeout_ms: a client that cannot get a connection gets FATAL 53300 naming the limit; later clients work', { timeout: 30_000 }, async () => {
  const gw = await gateway({ size: 1, queue_timeout_ms: 500 });
  const a = await pgConnect(url(gw), { application_name: 'holder' });
  const b = await pgConnect(url(gw), { application_name: 'waiter' });
  try {
    await a.query('BEGIN');
    await a.query("INSERT INTO safety_t (who) VALUES ('holder')");
    const released = (async () => {
      await sleep(2000);
      await a.query('COMMIT');
    })();
    const t0 = Date.now();
    let err: pg.DatabaseError | undefined;
    try {
      await b.query('SELECT 1');
    } catch (e) {
      err = e as pg.DatabaseError;
    }
    const waited = Date.now() - t0;
    assert.ok(err, "B's query fails");
    assert.equal(err.code, '53300');
    assert.equal(err.severity, 'FATAL');
    assert.match(err.message, /pool\.queue_timeout_ms \(500 ms\)/);
    assert.ok(waited >= 450 && waited < 1900, `B waited about the queue timeout (${waited} ms)`);
    // A login while the connection is held fails the same way.
    await assert.rejects(pgConnect(url(gw), { application_name: 'late-login' }), { code: '53300' });
    await released;
    assert.equal(await cluster.query("SELECT count(*) FROM safety_t WHERE who = 'holder'"), '1', "A's transaction committed");
    const c = await pgConnect(url(gw), { application_name: 'after' });
    assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    await pgEnd(c);
  } finally {
    await pgEnd(a, b);
    await closeGateway(gw);
  }
});
