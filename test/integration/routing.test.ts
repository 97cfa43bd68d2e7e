// Read/write splitting against a real primary and two streaming replicas: where statements and
// transactions land, the replica→primary switch with the transaction's state rebuilt, read-your-writes
// with replay paused, the gateway's own hints and setting, and pgbench mixes with no write on a replica.
//
// Where a statement ran is read from the statement itself: current_setting('port') names the node.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { findPgBin, freePort, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway } from '../harness/gateway.js';
import { cleanPgEnv, run, type RunResult } from '../harness/exec.js';
import { assertPgbenchOk } from '../harness/checks.js';
import { RawClient, passwordLogin, replyLabel } from '../harness/raw-client.js';
import * as m from '../../src/protocol/messages.js';
import type { Gateway } from '../../src/gateway.js';
import type { Config } from '../../src/config/types.js';
import type { DeepPartial } from '../../src/config/load.js';
import type { GatewayEvent } from '../../src/observability/events.js';

const PG_BIN = findPgBin();
const PGBENCH = PG_BIN ? path.join(PG_BIN, 'pgbench') : '/usr/lib/postgresql/15/bin/pgbench';
const PSQL = PG_BIN ? path.join(PG_BIN, 'psql') : '/usr/lib/postgresql/15/bin/psql';

let cluster: PgCluster;
let gw: Gateway;
const gateways = new Set<Gateway>();
const clients = new Set<pg.Client>();

before(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.query('CREATE TABLE rw (id serial PRIMARY KEY, v text, n int DEFAULT 0)');
  const init = await pgbench(cluster.primary.port, ['-i', '-s', '1', '-q']);
  assert.equal(init.code, 0, `pgbench -i failed:\n${init.stderr}`);
  await caughtUp();
  gw = await gateway();
});

after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  for (const g of gateways) await g.close().catch(() => {});
  await cluster?.destroy();
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function gateway(overrides: DeepPartial<Config> = {}): Promise<Gateway> {
  const g = await startGateway(cluster, {
    pool: { mode: 'transaction', size: 10 },
    replicas: cluster.replicas.map((r) => ({ name: r.name, host: r.host, port: r.port })),
    monitor: { interval_ms: 50 },
    ...overrides,
  });
  gateways.add(g);
  return g;
}

async function client(g: Gateway = gw): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: gatewayUrl(g, cluster.superuser, cluster.superuserPassword) });
  await c.connect();
  clients.add(c);
  return c;
}

/** The node a port belongs to. */
function nodeName(port: string | number): string {
  const n = cluster.nodes.find((x) => x.port === Number(port));
  return n ? n.name : `unknown port ${port}`;
}

/** Where a statement ran: the node name, from current_setting('port') evaluated by the statement. */
async function where(c: pg.Client, sql = "SELECT current_setting('port') AS port"): Promise<string> {
  const r = await c.query(sql);
  return nodeName(r.rows[0].port);
}

function pgbench(port: number, args: string[]): Promise<RunResult> {
  const env = cleanPgEnv({ PGPASSWORD: cluster.superuserPassword });
  return run(PGBENCH, ['-h', '127.0.0.1', '-p', String(port), '-U', cluster.superuser, ...args, 'postgres'], env);
}

function psql(g: Gateway, commands: string[]): Promise<RunResult> {
  const env = cleanPgEnv({ PGPASSWORD: cluster.superuserPassword });
  const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(g.port), '-U', cluster.superuser, '-d', 'postgres'];
  for (const c of commands) args.push('-c', c);
  return run(PSQL, args, env);
}

/** Wait until every replica has replayed the primary's current WAL position. */
async function caughtUp(timeoutMs = 15_000): Promise<void> {
  const target = await cluster.query('SELECT pg_current_wal_lsn()');
  const deadline = Date.now() + timeoutMs;
  for (const r of cluster.replicas) {
    for (;;) {
      const ok = await cluster.query(`SELECT pg_last_wal_replay_lsn() >= '${target}'::pg_lsn`, r);
      if (ok === 't') break;
      if (Date.now() > deadline) throw new Error(`${r.name} did not replay ${target}`);
      await sleep(20);
    }
  }
}

/** Committed transactions per node in database postgres (pg_stat_database; flushed about once a second). */
async function commits(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of cluster.nodes) {
    out.set(n.name, Number(await cluster.query("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'", n)));
  }
  return out;
}

async function withReplayPaused<T>(fn: () => Promise<T>): Promise<T> {
  for (const r of cluster.replicas) await cluster.query('SELECT pg_wal_replay_pause()', r);
  try {
    return await fn();
  } finally {
    for (const r of cluster.replicas) await cluster.query('SELECT pg_wal_replay_resume()', r);
  }
}

function events(g: Gateway): GatewayEvent[] {
  const seen: GatewayEvent[] = [];
  g.events.on((e) => seen.push(e));
  return seen;
}

// ------------------------------------------------------------------ statements and transactions

test('reads go to the replicas in turn; writes, locking reads and unknown functions to the primary', async () => {
  const c = await client();
  const reads = new Set<string>();
  for (let i = 0; i < 6; i++) reads.add(await where(c));
  assert.deepEqual([...reads].sort(), ['replica1', 'replica2']);
  assert.equal(await where(c, "INSERT INTO rw (v) VALUES ('a') RETURNING current_setting('port') AS port"), 'primary');
  await sleep(300); // read-your-writes: until the replicas have replayed the insert, reads stay on the primary
  await caughtUp();
  await sleep(200);
  assert.match(await where(c), /^replica/);
  // A parameterised read in the extended protocol goes to a replica too.
  const r = await c.query("SELECT current_setting('port') AS port, $1::int AS x", [7]);
  assert.match(nodeName(r.rows[0].port), /^replica/);
  assert.equal(await where(c, "SELECT current_setting('port') AS port FROM rw LIMIT 1 FOR UPDATE"), 'primary');
  assert.equal(await where(c, "SELECT current_setting('port') AS port, nextval('rw_id_seq')"), 'primary');
  assert.equal(await where(c, "WITH x AS (UPDATE rw SET n = n + 1 WHERE false RETURNING 1) SELECT current_setting('port') AS port"), 'primary');
  assert.equal(await where(c, "/* switchyard:primary */ SELECT current_setting('port') AS port"), 'primary');
  // Those wrote (a sequence, a row lock, a CTE): once the replicas replayed them, reads go back there.
  await caughtUp();
  await sleep(200);
  assert.match(await where(c), /^replica/);
  assert.match(await where(c, "/* switchyard:replica */ SELECT current_setting('port') AS port"), /^replica/);
});

test('SET switchyard.route is the gateway\'s: primary, replica, auto; SHOW reads it; servers never see it', async () => {
  const c = await client();
  await c.query('SET switchyard.route = primary');
  assert.equal((await c.query('SHOW switchyard.route')).rows[0]['switchyard.route'], 'primary');
  for (let i = 0; i < 3; i++) assert.equal(await where(c), 'primary');
  await c.query("SET switchyard.route TO 'auto'");
  assert.match(await where(c), /^replica/);
  await c.query('RESET switchyard.route');
  assert.equal((await c.query('SHOW switchyard.route')).rows[0]['switchyard.route'], 'auto');
  // Never sent to a server: the server has no such placeholder setting.
  assert.equal((await c.query("SELECT current_setting('switchyard.route', true) AS v")).rows[0].v, null);
  await assert.rejects(c.query('SET switchyard.route = sideways'), (e: pg.DatabaseError) => e.code === '22023');
  // The client is still usable after the error.
  assert.match(await where(c), /^replica/);
});

test('BEGIN is held until the first statement: reads start on a replica, writes on the primary, snapshots on the primary', async () => {
  const c = await client();
  const g = gw;
  const openBefore = g.topology.nodes.map((n) => n.pools.stats().reduce((a, p) => a + p.active, 0));
  await c.query('BEGIN');
  // Nothing leased yet: the gateway answered BEGIN itself.
  assert.deepEqual(
    g.topology.nodes.map((n) => n.pools.stats().reduce((a, p) => a + p.active, 0)),
    openBefore,
  );
  await c.query('COMMIT');

  await c.query('BEGIN');
  assert.match(await where(c), /^replica/);
  assert.equal((await c.query('SELECT now() = statement_timestamp() AS same')).rows[0].same, false, 'one transaction: now() is fixed');
  await c.query('COMMIT');

  await c.query('BEGIN READ ONLY');
  assert.match(await where(c), /^replica/);
  await assert.rejects(c.query("INSERT INTO rw (v) VALUES ('ro')"), (e: pg.DatabaseError) => e.code === '25006');
  await c.query('ROLLBACK');

  // A hint on BEGIN places the whole transaction; a replica-hinted one is not moved by a write.
  await c.query('/* switchyard:primary */ BEGIN');
  assert.equal(await where(c), 'primary');
  await c.query('COMMIT');
  await c.query('/* switchyard:replica */ BEGIN');
  assert.match(await where(c), /^replica/);
  await assert.rejects(c.query("INSERT INTO rw (v) VALUES ('hinted')"), (e: pg.DatabaseError) => e.code === '25006');
  await c.query('ROLLBACK');

  for (const begin of ['BEGIN ISOLATION LEVEL REPEATABLE READ', 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE']) {
    await c.query(begin);
    assert.equal(await where(c), 'primary', begin);
    await c.query('COMMIT');
  }
  await c.query('BEGIN');
  assert.equal(await where(c, "UPDATE rw SET n = n WHERE false RETURNING current_setting('port') AS port").catch(() => 'none'), 'none', 'no row, no port');
  assert.equal(await where(c), 'primary', 'a transaction that began with a write stays on the primary');
  await c.query('ROLLBACK');
});

test('switch: a transaction that read on a replica, SET LOCAL and a savepoint, then writes — committed on the primary with its settings (node-postgres)', async () => {
  const c = await client();
  const seen = events(gw);
  await c.query("SET application_name = 'switcher'");
  await c.query('BEGIN ISOLATION LEVEL READ COMMITTED');
  assert.match(await where(c), /^replica/);
  await c.query("SET LOCAL statement_timeout = '12345ms'");
  await c.query('SAVEPOINT before_write');
  await c.query("SET LOCAL work_mem = '7MB'");
  const ins = await c.query("INSERT INTO rw (v) VALUES ('switched-pg') RETURNING id, current_setting('port') AS port");
  assert.equal(nodeName(ins.rows[0].port), 'primary');
  const s = await c.query(
    "SELECT current_setting('statement_timeout') AS st, current_setting('work_mem') AS wm, current_setting('application_name') AS app, current_setting('transaction_isolation') AS iso, current_setting('port') AS port",
  );
  assert.deepEqual(s.rows[0], { st: '12345ms', wm: '7MB', app: 'switcher', iso: 'read committed', port: String(cluster.primary.port) });
  // The savepoint exists on the primary: rolling back to it undoes the insert and the SET LOCAL after it.
  await c.query('ROLLBACK TO SAVEPOINT before_write');
  const after = await c.query("SELECT current_setting('work_mem') AS wm, current_setting('statement_timeout') AS st");
  assert.deepEqual(after.rows[0], { wm: '4MB', st: '12345ms' });
  await c.query("INSERT INTO rw (v) VALUES ('switched-pg-2')");
  await c.query('COMMIT');
  assert.equal(await cluster.query("SELECT string_agg(v, ',' ORDER BY id) FROM rw WHERE v LIKE 'switched-pg%'"), 'switched-pg-2');
  assert.ok(seen.some((e) => e.type === 'txn_switched'), 'a txn_switched event');
  // SET LOCAL ended with the transaction; the session setting stays.
  assert.equal((await c.query("SELECT current_setting('statement_timeout') AS st, current_setting('application_name') AS app")).rows[0].st, '0');
});

test('switch with psql: read, SET LOCAL, savepoint, write, commit', async () => {
  const r = await psql(gw, [
    'BEGIN',
    "SELECT current_setting('port')",
    "SET LOCAL lock_timeout = '4321ms'",
    'SAVEPOINT s1',
    "INSERT INTO rw (v) VALUES ('switched-psql') RETURNING current_setting('port'), current_setting('lock_timeout')",
    'RELEASE SAVEPOINT s1',
    'COMMIT',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(nodeName(lines[0]!), /^replica/, r.stdout);
  assert.equal(lines[1], `${cluster.primary.port}|4321ms`, r.stdout);
  assert.equal(await cluster.query("SELECT count(*) FROM rw WHERE v = 'switched-psql'"), '1');
});

test('switch in the extended protocol (postgres.js): BEGIN, read, write inside sql.begin', async () => {
  const sql = postgres(gatewayUrl(gw, cluster.superuser, cluster.superuserPassword), { max: 1, onnotice: () => {} });
  try {
    const [first, second] = await sql.begin(async (tx) => {
      const a = await tx`SELECT current_setting('port') AS port`;
      const b = await tx`INSERT INTO rw (v) VALUES ('switched-pj') RETURNING current_setting('port') AS port`;
      return [a[0]!.port as string, b[0]!.port as string];
    });
    assert.match(nodeName(first), /^replica/);
    assert.equal(nodeName(second), 'primary');
    assert.equal(await cluster.query("SELECT count(*) FROM rw WHERE v = 'switched-pj'"), '1');
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test('a transaction with an open cursor on a replica is not moved: the write fails with 25000, nothing half-done', async () => {
  const c = await client();
  const seen = events(gw);
  await c.query('BEGIN');
  await c.query('DECLARE cur CURSOR FOR SELECT id FROM rw');
  await assert.rejects(c.query("INSERT INTO rw (v) VALUES ('never')"), (e: pg.DatabaseError) => e.code === '25000' && /cursor/.test(e.message));
  await c.query('ROLLBACK');
  assert.equal(await cluster.query("SELECT count(*) FROM rw WHERE v = 'never'"), '0');
  assert.ok(seen.some((e) => e.type === 'switch_refused'));
  // The client carries on normally.
  assert.equal(await where(c, "INSERT INTO rw (v) VALUES ('after-refusal') RETURNING current_setting('port') AS port"), 'primary');
});

test('a transaction that fails on a replica is not moved: the write gets 25P02 there', async () => {
  const c = await client();
  await c.query('BEGIN');
  await assert.rejects(c.query('SELECT 1/0'));
  await assert.rejects(c.query("INSERT INTO rw (v) VALUES ('aborted')"), (e: pg.DatabaseError) => e.code === '25P02');
  await c.query('ROLLBACK');
  assert.equal(await cluster.query("SELECT count(*) FROM rw WHERE v = 'aborted'"), '0');
});

test('session state applies on both sides: SET, search_path and prepared statements on replicas and the primary', async () => {
  await cluster.query('CREATE SCHEMA IF NOT EXISTS side; CREATE TABLE IF NOT EXISTS side.t (x int); INSERT INTO side.t VALUES (42)');
  await caughtUp();
  const c = await client();
  await c.query('SET search_path = side, public');
  await c.query("SET statement_timeout = '9s'");
  const seen = new Map<string, string>();
  for (let i = 0; i < 4; i++) {
    const r = await c.query({ name: 'readx', text: "SELECT x, current_setting('statement_timeout') AS st, current_setting('port') AS port FROM t" });
    assert.deepEqual([r.rows[0].x, r.rows[0].st], [42, '9s']);
    seen.set(nodeName(r.rows[0].port), 'ok');
  }
  assert.ok(seen.has('replica1') && seen.has('replica2'), [...seen.keys()].join());
  const w = await c.query({ name: 'writex', text: "INSERT INTO t VALUES (43) RETURNING current_setting('statement_timeout') AS st, current_setting('port') AS port" });
  assert.deepEqual([w.rows[0].st, nodeName(w.rows[0].port)], ['9s', 'primary']);
  // SQL-level PREPARE / EXECUTE: EXECUTE of a read goes to a replica, of a write to the primary.
  await c.query("PREPARE pr AS SELECT current_setting('port') AS port");
  await c.query("PREPARE pw AS INSERT INTO t VALUES (44) RETURNING current_setting('port') AS port");
  await caughtUp();
  await sleep(150);
  assert.match(await where(c, 'EXECUTE pr'), /^replica/);
  assert.equal(await where(c, 'EXECUTE pw'), 'primary');
});

test('SET switchyard.route in the extended protocol fails with 0A000 and reaches no server', async () => {
  const sql = postgres(gatewayUrl(gw, cluster.superuser, cluster.superuserPassword), { max: 1, onnotice: () => {} });
  try {
    await assert.rejects(sql`SET switchyard.route = primary`, (e: { code?: string }) => e.code === '0A000');
    // As a simple query it works.
    await sql.unsafe('SET switchyard.route = primary').simple();
    const [r] = await sql`SELECT current_setting('port') AS port`;
    assert.equal(nodeName(r!.port as string), 'primary');
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test('session pooling does not split: every statement runs on the primary', async () => {
  const g = await gateway({ pool: { mode: 'session' } });
  const c = await client(g);
  for (let i = 0; i < 3; i++) assert.equal(await where(c), 'primary');
});

test('status shows the nodes, the leases taken from each and where each client is', async () => {
  const c = await client();
  await c.query('BEGIN');
  await where(c);
  const st = gw.status();
  const me = st.clients.find((x) => x.node !== null);
  assert.ok(me && /^replica/.test(me.node!), JSON.stringify(st.clients));
  await c.query('COMMIT');
  assert.deepEqual(st.nodes.map((n) => [n.name, n.role, n.healthy]), [
    ['primary', 'primary', true],
    ['replica1', 'replica', true],
    ['replica2', 'replica', true],
  ]);
  assert.ok(st.nodes.every((n) => n.leases > 0 && n.lsn > 0), JSON.stringify(st.nodes));
  assert.equal(st.routing.split, true);
  assert.ok(st.routing.cache.hits > 0);
});

// ------------------------------------------------------------------ edges of the switch, compared with PostgreSQL

/** Labels of the replies to batch, up to `zs` ReadyForQuery, on a fresh raw connection to port (setup queries first). */
async function rawRun(port: number, setup: string[], batch: Buffer[], zs: number, opts: { cancelAfter?: number } = {}): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    await passwordLogin(c, cluster.superuser, cluster.superuserPassword);
    for (const q of setup) {
      c.send(m.query(q));
      await c.until('Z');
    }
    c.send(Buffer.concat(batch));
    if (opts.cancelAfter !== undefined) setTimeout(() => c.cancel(port), opts.cancelAfter);
    const out: string[] = [];
    for (let z = 0; z < zs; ) {
      const msg = await c.next();
      const label = replyLabel(msg);
      if (label === undefined || label.startsWith('T:')) continue;
      out.push(label);
      if (label.startsWith('Z:')) z++;
    }
    return out.join(' ');
  } finally {
    c.send(m.terminate());
    c.end();
  }
}

const count = async (v: string): Promise<number> => Number(await cluster.query(`SELECT count(*) FROM rw WHERE v = '${v}'`));

test('pipelines that switch answer exactly as PostgreSQL: an error before the write skips it; a cancel reaches the read', async () => {
  const g = await gateway({ routing: { consistency: 'eventual' } });
  const P = m.parse;
  const B = m.bind;
  const E = m.execute;
  const S = m.sync;
  const Q = m.query;
  for (const [where, port] of [['direct', cluster.primary.port], ['gateway', g.port]] as const) {
    const v = `skip-${where}`;
    // Autocommit: a named INSERT bound after a failing read in the same Sync group is skipped.
    const r1 = await rawRun(port, [], [P('w', `INSERT INTO rw (v) VALUES ('${v}')`), S(), P('', 'SELECT 1/0'), B(''), E(), B('w'), E(), S()], 2);
    assert.equal(r1, '1 Z:I 1 E:22012 Z:I', `${where}: ${r1}`);
    assert.equal(await count(v), 0, where);
    // In a transaction that read on a replica: a failing read, then a write, then Sync.
    const r2 = await rawRun(port, ['BEGIN', 'SELECT 1'], [P('', 'SELECT 1/0'), B(''), E(), P('', `INSERT INTO rw (v) VALUES ('${v}')`), B(''), E(), S(), Q('ROLLBACK')], 2);
    assert.equal(r2, '1 E:22012 Z:E C:ROLLBACK Z:I', `${where}: ${r2}`);
    // A cancel while the read runs ahead of the write that will move the transaction.
    const r3 = await rawRun(port, ['BEGIN', 'SELECT 1'], [Q('SELECT pg_sleep(5)'), Q(`INSERT INTO rw (v) VALUES ('${v}')`), Q('ROLLBACK')], 3, { cancelAfter: 300 });
    assert.equal(r3, 'E:57014 Z:E E:25P02 Z:E C:ROLLBACK Z:I', `${where}: ${r3}`);
  }
});

test('an extended-protocol BEGIN sent with its first statement (as pgjdbc does) goes where that statement goes', async () => {
  const g = await gateway({ routing: { consistency: 'eventual' } });
  const seen = events(g);
  const P = m.parse;
  const B = m.bind;
  const E = m.execute;
  const S = m.sync;
  const write = await rawRun(g.port, [], [P('', 'BEGIN'), B(''), E(), P('', "INSERT INTO rw (v) VALUES ('jdbc-like') RETURNING current_setting('port')"), B(''), E(), S(), m.query('COMMIT')], 2);
  assert.equal(write, `1 2 C:BEGIN 1 2 D:${cluster.primary.port} C:INSERT 0 1 Z:T C:COMMIT Z:I`);
  const read = await rawRun(g.port, [], [P('', 'BEGIN'), B(''), E(), P('', "SELECT current_setting('port')"), B(''), E(), S(), m.query('COMMIT')], 2);
  assert.match(read, /^1 2 C:BEGIN 1 2 D:(\d+) C:SELECT 1 Z:T C:COMMIT Z:I$/);
  assert.match(nodeName(/D:(\d+)/.exec(read)![1]!), /^replica/);
  assert.equal(seen.filter((e) => e.type === 'txn_switched').length, 0, 'nothing had to move');
  assert.equal(await count('jdbc-like'), 1);
});

test('held BEGIN: the first statement places the transaction (a write leases only the primary); a trailing comment is harmless', async () => {
  const c = await client();
  const seen = events(gw);
  const leases = () => gw.topology.nodes.map((n) => n.leases);
  const before = leases();
  await c.query('BEGIN');
  await c.query("INSERT INTO rw (v) VALUES ('held-write')");
  await c.query('COMMIT');
  const after = leases();
  assert.deepEqual(after.map((n, i) => n - before[i]!), [1, 0, 0], 'one lease, on the primary');
  assert.equal(seen.filter((e) => e.type === 'txn_switched').length, 0);
  await caughtUp();
  await sleep(200);
  await c.query('BEGIN -- unit of work');
  assert.match(await where(c), /^replica/);
  await c.query('SAVEPOINT a');
  assert.equal(await where(c, "INSERT INTO rw (v) VALUES ('commented') RETURNING current_setting('port') AS port"), 'primary');
  await c.query('COMMIT');
  assert.equal(await count('commented'), 1);
});

test('a switch replays PREPARE and DEALLOCATE against the statements the client had, whatever the primary connection holds', async () => {
  const g = await gateway({ pool: { mode: 'transaction', size: 1 }, routing: { consistency: 'eventual' } });
  const a = await client(g);
  const b = await client(g);
  // Client a leaves a SQL statement "s" on the (only) primary connection.
  await a.query("/* switchyard:primary */ PREPARE s AS SELECT 'a'");
  await b.query('PREPARE q AS SELECT 1');
  await b.query('BEGIN');
  assert.match(await where(b), /^replica/);
  await b.query("PREPARE s AS SELECT 'b'");
  await b.query('DEALLOCATE q');
  assert.equal(await where(b, "INSERT INTO rw (v) VALUES ('replayed-prepare') RETURNING current_setting('port') AS port"), 'primary');
  await b.query('COMMIT');
  assert.deepEqual((await b.query('EXECUTE s')).rows, [{ '?column?': 'b' }]);
  await assert.rejects(b.query('EXECUTE q'), (e: pg.DatabaseError) => e.code === '26000');
  assert.deepEqual((await a.query('EXECUTE s')).rows, [{ '?column?': 'a' }]);
});

test('a read-only transaction moves too: the primary answers what a standby cannot (NOTIFY, LOCK), and refuses writes with 25006', async () => {
  const c = await client();
  await c.query('BEGIN READ ONLY');
  assert.match(await where(c), /^replica/);
  await c.query("NOTIFY ro_chan, 'x'");
  await c.query('LOCK TABLE rw IN SHARE MODE');
  assert.equal(await where(c), 'primary');
  await assert.rejects(c.query("INSERT INTO rw (v) VALUES ('ro-write')"), (e: pg.DatabaseError) => e.code === '25006');
  await c.query('ROLLBACK');
});

test('a statement that failed alone (rolled back to a savepoint) does not stop a switch; a session pinned to a replica refuses one', async () => {
  const c = await client();
  await c.query('BEGIN');
  await where(c);
  await c.query('SAVEPOINT a');
  await assert.rejects(c.query("SET LOCAL statement_timeout = 'abc'"), (e: pg.DatabaseError) => e.code === '22023');
  await c.query('ROLLBACK TO SAVEPOINT a');
  assert.equal(await where(c, "INSERT INTO rw (v) VALUES ('after-failed-set') RETURNING current_setting('port') AS port"), 'primary');
  await c.query('COMMIT');

  // A WITH HOLD cursor hinted to a replica pins the session there: a write then fails instead of hanging.
  const p = await client();
  await p.query('/* switchyard:replica */ DECLARE hc CURSOR WITH HOLD FOR SELECT 1');
  await assert.rejects(p.query("INSERT INTO rw (v) VALUES ('pinned')"), (e: pg.DatabaseError) => e.code === '25000' && /pinned/.test(e.message));
  await p.query('CLOSE hc');
  assert.equal(await where(p, "INSERT INTO rw (v) VALUES ('unpinned') RETURNING current_setting('port') AS port"), 'primary');
});

// ------------------------------------------------------------------ read-your-writes

test('read-your-writes with replay paused on the replicas: a client reads its own write at once (from the primary)', async () => {
  await caughtUp();
  const c = await client();
  const other = await client();
  await sleep(200);
  assert.match(await where(c), /^replica/, 'reads on replicas before the write');
  await withReplayPaused(async () => {
    const id = (await c.query("INSERT INTO rw (v) VALUES ('ryw') RETURNING id")).rows[0].id as number;
    const r = await c.query("SELECT v, current_setting('port') AS port FROM rw WHERE id = $1", [id]);
    assert.equal(r.rows.length, 1, 'the writer sees its row right after commit');
    assert.equal(nodeName(r.rows[0].port), 'primary');
    // Another client, with no write of its own, keeps reading from the (stale) replicas.
    const o = await other.query("SELECT count(*)::int AS n, current_setting('port') AS port FROM rw WHERE id = $1", [id]);
    assert.match(nodeName(o.rows[0].port), /^replica/);
    assert.equal(o.rows[0].n, 0);
    // Still paused: the writer stays on the primary.
    await sleep(300);
    assert.equal(await where(c), 'primary');
  });
  // Replayed: the writer's reads go back to the replicas.
  await caughtUp();
  await sleep(200);
  assert.match(await where(c), /^replica/);
});

test('consistency: eventual sends reads after a write to the replicas even when they lag', async () => {
  const g = await gateway({ routing: { consistency: 'eventual' } });
  const c = await client(g);
  await withReplayPaused(async () => {
    await c.query("INSERT INTO rw (v) VALUES ('eventual')");
    assert.match(await where(c), /^replica/);
  });
});

test('a replica that cannot be reached is skipped: reads go to the other one', async () => {
  const g = await gateway({
    replicas: [
      { name: 'ghost', host: '127.0.0.1', port: await freePort() },
      { name: cluster.replicas[0]!.name, host: cluster.replicas[0]!.host, port: cluster.replicas[0]!.port },
    ],
  });
  const c = await client(g);
  for (let i = 0; i < 4; i++) assert.equal(await where(c), 'replica1');
  assert.equal(g.topology.replicas[0]!.healthy, false);
});

test('a replica that stops answering is taken out of rotation by the monitor, and back when it answers again', async () => {
  const g = await gateway({ balancer: { ban_ms: 300 } });
  const c = await client(g);
  const seen = events(g);
  const r1 = cluster.replicas[0]!;
  cluster.pause(r1);
  try {
    const deadline = Date.now() + 5000;
    while (g.topology.replicas[0]!.healthy && Date.now() < deadline) await sleep(50);
    assert.equal(g.topology.replicas[0]!.healthy, false, 'marked down');
    for (let i = 0; i < 4; i++) assert.equal(await where(c), 'replica2');
  } finally {
    cluster.resume(r1);
  }
  const deadline = Date.now() + 5000;
  while (!g.topology.replicas[0]!.healthy && Date.now() < deadline) await sleep(50);
  const places = new Set<string>();
  for (let i = 0; i < 4; i++) places.add(await where(c));
  assert.deepEqual([...places].sort(), ['replica1', 'replica2']);
  assert.ok(seen.some((e) => e.type === 'replica_banned' && e.node === 'replica1'));
  assert.ok(seen.some((e) => e.type === 'replica_unbanned' && e.node === 'replica1'));
});

// ------------------------------------------------------------------ pgbench

test('pgbench -S through the gateway lands on the replicas (transactions counted per node)', { timeout: 60_000 }, async (t) => {
  await caughtUp();
  const g = await gateway();
  const before = await commits();
  const r = await pgbench(g.port, ['-S', '-c', '10', '-j', '2', '-T', '4', '-n']);
  const { processed } = assertPgbenchOk('pgbench -S', r);
  // Server processes report their counts when they exit: closing the gateway closes them.
  gateways.delete(g);
  await g.close();
  await sleep(500);
  const after = await commits();
  const delta = new Map([...after].map(([k, v]) => [k, v - before.get(k)!]));
  t.diagnostic(`pgbench -S: ${processed} transactions; commits per node: ${[...delta].map(([k, v]) => `${k}=${v}`).join(', ')}`);
  const onReplicas = delta.get('replica1')! + delta.get('replica2')!;
  assert.ok(onReplicas >= processed * 0.95, `replicas ran ${onReplicas} of ${processed}`);
  for (const n of ['replica1', 'replica2']) assert.ok(delta.get(n)! >= processed * 0.3, `${n}: ${delta.get(n)}`);
  // The primary ran only the gateway's own background queries and logins, not the benchmark.
  assert.ok(delta.get('primary')! < processed * 0.05, `primary: ${delta.get('primary')}`);
});

test('pgbench tpcb-like and a read/write mix inside transactions: no errors, no write on a replica, every write applied once', { timeout: 90_000 }, async (t) => {
  const tpcb = await pgbench(gw.port, ['-c', '8', '-j', '2', '-T', '4', '-n']);
  const a = assertPgbenchOk('tpcb-like', tpcb);
  const balanced = await cluster.query(
    'SELECT (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers) AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT sum(abalance) FROM pgbench_accounts)',
  );
  assert.equal(balanced, 't');

  // A transaction that starts reading (on a replica), sets a local setting and a savepoint, then writes.
  const dir = await import('node:fs').then((fs) => fs.mkdtempSync(path.join((process.env.TMPDIR ?? '/tmp'), 'sy-mix-')));
  const fs = await import('node:fs');
  try {
    const script = path.join(dir, 'mix.sql');
    fs.writeFileSync(
      script,
      [
        '\\set aid random(1, 100000)',
        'BEGIN;',
        'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
        "SET LOCAL work_mem = '8MB';",
        'SAVEPOINT s1;',
        'SELECT count(*) FROM pgbench_branches;',
        'UPDATE rw_counter SET n = n + 1;',
        'SELECT n FROM rw_counter;',
        'END;',
        'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
        '',
      ].join('\n'),
    );
    await cluster.query('CREATE TABLE IF NOT EXISTS rw_counter (n bigint); TRUNCATE rw_counter; INSERT INTO rw_counter VALUES (0)');
    await caughtUp();
    // Eventual consistency, so that every transaction starts on a replica (read-your-writes would keep a
    // client that keeps writing on the primary) and moves when it writes.
    const g = await gateway({ routing: { consistency: 'eventual' } });
    const seen = events(g);
    const mix = await pgbench(g.port, ['-f', script, '-c', '8', '-j', '2', '-T', '4', '-n']);
    const b = assertPgbenchOk('read/write mix', mix);
    const switches = seen.filter((e) => e.type === 'txn_switched').length;
    t.diagnostic(`tpcb-like: ${a.processed} transactions; mix: ${b.processed} transactions, ${switches} switched from a replica to the primary`);
    assert.equal(await cluster.query('SELECT n FROM rw_counter'), String(b.processed), 'every committed update applied exactly once');
    assert.ok(switches > b.processed / 2, `most transactions started on a replica and moved (${switches} of ${b.processed})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
