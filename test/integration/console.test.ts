// The admin console over the PostgreSQL protocol, against a real primary and one streaming replica:
// every SHOW through psql (headers and values), PAUSE/RESUME holding transactions and logins back,
// KILL, BAN/UNBAN moving reads, RELOAD with and without a config file, and the refusals (a user not in
// admin.users, an unknown command, the extended protocol) with their SQLSTATEs.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import pg from 'pg';
import { findPgBin, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway } from '../harness/gateway.js';
import { cleanPgEnv, run, type RunResult } from '../harness/exec.js';
import { Gateway, VERSION } from '../../src/gateway.js';
import { loadConfigFile, formatProblems } from '../../src/config/load.js';
import * as m from '../../src/protocol/messages.js';

const PG_BIN = findPgBin();
const PSQL = PG_BIN ? path.join(PG_BIN, 'psql') : '/usr/lib/postgresql/15/bin/psql';
const APP_PASSWORD = 'app-secret-1';
const QUEUE_TIMEOUT_MS = 300;

let cluster: PgCluster;
let gw: Gateway;
const gateways = new Set<Gateway>();
const clients = new Set<pg.Client>();
let tmp: string;

before(async () => {
  cluster = await startCluster({ replicas: 1 });
  await cluster.query('CREATE DATABASE killme');
  await cluster.waitStreaming();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-console-'));
  gw = await startGateway(cluster, {
    pool: { mode: 'transaction', size: 5, queue_timeout_ms: QUEUE_TIMEOUT_MS },
    replicas: cluster.replicas.map((r) => ({ name: r.name, host: r.host, port: r.port })),
    monitor: { interval_ms: 50 },
    balancer: { ban_ms: 60_000 },
    auth: {
      users: [
        { name: cluster.superuser, password: cluster.superuserPassword },
        { name: 'app', password: APP_PASSWORD },
      ],
    },
    admin: { users: [cluster.superuser] },
  });
  gateways.add(gw);
});

after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  for (const g of gateways) await g.close().catch(() => {});
  await cluster?.destroy();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const POOLS_COLUMNS = [
  'database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel',
  'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode', 'node',
];
const SOCKET_COLUMNS = [
  'type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait',
  'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name', 'prepared_statements', 'id', 'node',
];
const STATS_COLUMNS = [
  'database', 'total_server_assignment_count', 'total_xact_count', 'total_query_count', 'total_received', 'total_sent', 'total_xact_time',
  'total_query_time', 'total_wait_time', 'avg_server_assignment_count', 'avg_xact_count', 'avg_query_count', 'avg_recv', 'avg_sent',
  'avg_xact_time', 'avg_query_time', 'avg_wait_time',
];
const DATABASES_COLUMNS = [
  'name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime', 'pool_mode',
  'max_connections', 'current_connections', 'max_client_connections', 'current_client_connections', 'paused', 'disabled', 'node',
];

interface Table {
  columns: string[];
  rows: Record<string, string>[];
}

interface Login {
  user?: string;
  password?: string;
  database?: string;
  gateway?: Gateway;
}

/** One console command through psql: unaligned, tab-separated, header kept, no footer. */
function consoleSql(sql: string, login: Login = {}): Promise<RunResult> {
  const env = cleanPgEnv({ PGPASSWORD: login.password ?? cluster.superuserPassword });
  const g = login.gateway ?? gw;
  const args = ['-X', '-A', '-F', '\t', '-P', 'footer=off', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(g.port)];
  args.push('-U', login.user ?? cluster.superuser, '-d', login.database ?? 'switchyard', '-c', sql);
  return run(PSQL, args, env);
}

function table(stdout: string): Table {
  const [head, ...lines] = stdout.replace(/\n$/, '').split('\n');
  const columns = head!.split('\t');
  return { columns, rows: lines.map((l) => Object.fromEntries(l.split('\t').map((v, i) => [columns[i]!, v]))) };
}

async function show(what: string, login: Login = {}): Promise<Table> {
  const r = await consoleSql(`SHOW ${what}`, login);
  assert.equal(r.code, 0, `SHOW ${what} failed:\n${r.stderr}`);
  return table(r.stdout);
}

async function client(database = 'postgres', applicationName?: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: gatewayUrl(gw, cluster.superuser, cluster.superuserPassword, database), application_name: applicationName });
  c.on('error', () => {});
  await c.connect();
  clients.add(c);
  return c;
}

/** A pg client on the console (database switchyard), for SQLSTATEs and column types psql does not show. */
async function consoleClient(g: Gateway = gw): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: gatewayUrl(g, cluster.superuser, cluster.superuserPassword, 'switchyard') });
  c.on('error', () => {});
  await c.connect();
  clients.add(c);
  return c;
}

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code: string; message: string };
  }
  assert.fail('expected an error');
}

function nodeName(port: string | number): string {
  return cluster.nodes.find((n) => n.port === Number(port))?.name ?? `unknown port ${port}`;
}

async function where(c: pg.Client): Promise<string> {
  const r = await c.query("SELECT current_setting('port') AS port");
  return nodeName(r.rows[0].port);
}

// ------------------------------------------------------------------ tests

test('SHOW HELP and SHOW VERSION through psql, on both console database names', async () => {
  const help = await show('HELP');
  assert.deepEqual(help.columns, ['command', 'description']);
  const commands = help.rows.map((r) => r.command);
  for (const c of ['SHOW POOLS', 'SHOW CLIENTS', 'SHOW SERVERS', 'SHOW STATS', 'SHOW DATABASES', 'SHOW CONFIG', 'SHOW VERSION', 'PAUSE [db]', 'RESUME [db]', 'RELOAD', 'KILL db', 'BAN replica', 'UNBAN replica']) {
    assert.ok(commands.includes(c), `SHOW HELP lacks ${c}: ${commands.join(', ')}`);
  }
  for (const database of ['switchyard', 'pgbouncer']) {
    const v = await show('VERSION', { database });
    assert.deepEqual(v.columns, ['version']);
    assert.deepEqual(v.rows, [{ version: `switchyard ${VERSION}` }]);
  }
  // Lower case and a trailing semicolon, as people type it.
  const r = await consoleSql('show version;');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`switchyard ${VERSION.replace(/\./g, '\\.')}`));
});

test('SHOW POOLS, CLIENTS, SERVERS and DATABASES show a client, its transaction and the connections per node', async () => {
  const idle = await client('postgres', 'console-idle');
  await idle.query('SELECT 1');
  const busy = await client('postgres', 'console-busy');
  await busy.query('BEGIN');
  const busyNode = await where(busy); // the transaction now holds a connection there
  try {
    const clientsTable = await show('CLIENTS');
    assert.deepEqual(clientsTable.columns, SOCKET_COLUMNS);
    const a = clientsTable.rows.find((r) => r.application_name === 'console-busy');
    const b = clientsTable.rows.find((r) => r.application_name === 'console-idle');
    assert.ok(a && b, `both clients listed:\n${JSON.stringify(clientsTable.rows, null, 1)}`);
    assert.equal(a.type, 'C');
    assert.equal(a.user, cluster.superuser);
    assert.equal(a.database, 'postgres');
    assert.equal(a.state, 'active');
    assert.equal(a.node, busyNode);
    assert.match(a.link, /^s\d+$/);
    assert.equal(a.addr, '127.0.0.1');
    assert.match(a.connect_time, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.equal(b.state, 'idle');
    assert.equal(b.link, '');
    // psql itself, on the console.
    assert.ok(clientsTable.rows.some((r) => r.database === 'switchyard' && r.state === 'active'), 'the console client is listed');

    const servers = await show('SERVERS');
    assert.deepEqual(servers.columns, SOCKET_COLUMNS);
    const linked = servers.rows.find((r) => r.ptr === a.link);
    assert.ok(linked, `the busy client's server connection ${a.link} is listed`);
    assert.equal(linked.type, 'S');
    assert.equal(linked.state, 'active');
    assert.equal(linked.link, a.ptr);
    assert.equal(linked.node, busyNode);
    assert.equal(linked.application_name, 'console-busy');
    assert.ok(Number(linked.remote_pid) > 0, 'remote_pid is the backend pid');
    // Server connections per node, each with its node's address.
    for (const n of cluster.nodes) {
      const rows = servers.rows.filter((r) => r.node === n.name);
      assert.ok(rows.length > 0, `a server connection on ${n.name}: ${JSON.stringify(servers.rows)}`);
      for (const r of rows) assert.equal(Number(r.port), n.port);
    }

    const pools = await show('POOLS');
    assert.deepEqual(pools.columns, POOLS_COLUMNS);
    const mine = pools.rows.filter((r) => r.database === 'postgres' && r.user === cluster.superuser);
    const held = mine.find((r) => r.node === busyNode)!;
    assert.ok(Number(held.sv_active) >= 1, `sv_active on ${busyNode}: ${JSON.stringify(mine)}`);
    assert.ok(Number(held.cl_active) >= 1, `cl_active on ${busyNode}`);
    // An idle client counts under the primary, where it logged in.
    const onPrimary = mine.find((r) => r.node === 'primary')!;
    assert.ok(Number(onPrimary.cl_active) >= 1, `cl_active on the primary: ${JSON.stringify(mine)}`);
    assert.equal(onPrimary.pool_mode, 'transaction');
    assert.equal(onPrimary.cl_waiting, '0');

    const dbs = await show('DATABASES');
    assert.deepEqual(dbs.columns, DATABASES_COLUMNS);
    const primaryRow = dbs.rows.find((r) => r.name === 'postgres' && r.node === 'primary')!;
    assert.equal(Number(primaryRow.port), cluster.primary.port);
    assert.equal(primaryRow.pool_size, '5');
    assert.equal(primaryRow.paused, '0');
    assert.ok(Number(primaryRow.current_connections) >= 1);
    assert.ok(Number(primaryRow.current_client_connections) >= 1);
  } finally {
    await busy.query('COMMIT');
  }
});

test('counts are int8 columns and names are text; several statements in one query each get an answer', async () => {
  const c = await consoleClient();
  const r = await c.query('SHOW POOLS');
  const type = (name: string) => r.fields.find((f) => f.name === name)?.dataTypeID;
  assert.equal(type('cl_active'), 20);
  assert.equal(type('maxwait_us'), 20);
  assert.equal(type('database'), 25);
  const multi = (await c.query('SHOW VERSION; SHOW HELP')) as unknown as pg.QueryResult[];
  assert.equal(multi.length, 2);
  assert.equal(multi[0]!.rows[0].version, `switchyard ${VERSION}`);
  assert.equal(multi[1]!.command, 'SHOW');
});

test('SHOW STATS has PgBouncer\'s columns; SHOW CONFIG redacts secrets and says what RELOAD can change', async () => {
  const stats = await show('STATS');
  assert.deepEqual(stats.columns, STATS_COLUMNS);
  for (const r of stats.rows) {
    for (const c of STATS_COLUMNS.slice(1)) assert.match(r[c]!, /^(\d+)?$/, `${c} of ${r.database} is a count`);
  }

  const config = await show('CONFIG');
  assert.deepEqual(config.columns, ['key', 'value', 'default', 'changeable']);
  const row = (key: string) => config.rows.find((r) => r.key === key);
  assert.deepEqual(row('pool.mode'), { key: 'pool.mode', value: 'transaction', default: 'transaction', changeable: 'yes' });
  assert.deepEqual(row('pool.size'), { key: 'pool.size', value: '5', default: '20', changeable: 'yes' });
  assert.equal(row('listen.host')?.changeable, 'no');
  assert.equal(row('admin.users')?.value, JSON.stringify([cluster.superuser]));
  assert.equal(row('admin.users')?.default, '[]');
  const users = row('auth.users')!.value;
  assert.match(users, /\[redacted\]/);
  assert.ok(!users.includes(APP_PASSWORD), 'no password in SHOW CONFIG');
});

test('PAUSE waits for the open transaction; while paused queries and logins wait past queue_timeout_ms; RESUME lets them through', async () => {
  const c = await client();
  await c.query('SELECT 1');
  const tx = await client();
  await tx.query('BEGIN');
  await tx.query('SELECT 1');
  let paused = false;
  const pausing = consoleSql('PAUSE').then((r) => ((paused = true), r));
  let resumed = false;
  try {
    await sleep(500);
    assert.equal(paused, false, 'PAUSE returned while a transaction held a server connection');
    await tx.query('COMMIT');
    const p = await pausing;
    assert.equal(p.code, 0, p.stderr);

    let answered = false;
    const q = c.query('SELECT 42 AS answer').then((r) => ((answered = true), r));
    q.catch(() => {}); // awaited below; not unhandled if an assertion fails first
    const late = new pg.Client({ connectionString: gatewayUrl(gw, cluster.superuser, cluster.superuserPassword) });
    late.on('error', () => {});
    clients.add(late);
    let loggedIn = false;
    const login = late.connect().then(() => (loggedIn = true));
    login.catch(() => {});
    await sleep(QUEUE_TIMEOUT_MS * 3);
    assert.equal(answered, false, 'a query ran while paused');
    assert.equal(loggedIn, false, 'a login got a server connection while paused');

    const pools = await show('POOLS');
    const waiting = pools.rows.filter((r) => r.database === 'postgres').reduce((n, r) => n + Number(r.cl_waiting), 0);
    assert.ok(waiting >= 2, `cl_waiting counts the query and the login: ${JSON.stringify(pools.rows)}`);
    const dbs = await show('DATABASES');
    assert.ok(dbs.rows.filter((r) => r.name === 'postgres').every((r) => r.paused === '1'), 'SHOW DATABASES says paused');
    // Paused server connections are closed as they come back: none is idle.
    assert.ok((await show('SERVERS')).rows.every((r) => r.database !== 'postgres'), 'no server connection of a paused database stays open');

    const r = await consoleSql('RESUME');
    assert.equal(r.code, 0, r.stderr);
    resumed = true;
    assert.equal((await q).rows[0].answer, 42);
    await login;
    assert.equal((await late.query('SELECT 7 AS n')).rows[0].n, 7);
  } finally {
    if (!resumed) await consoleSql('RESUME');
    await tx.query('ROLLBACK').catch(() => {});
  }
  const admin = await consoleClient();
  const again = await errorOf(admin.query('RESUME'));
  assert.equal(again.code, '55000');
  assert.match(again.message, /nothing is paused/);
});

test('a cancel request stops PAUSE waiting with 57014; the pause stays until RESUME', async () => {
  const tx = await client();
  await tx.query('BEGIN');
  await tx.query('SELECT 1');
  const admin = await consoleClient();
  const pid = (admin as unknown as { processID: number }).processID;
  const secret = (admin as unknown as { secretKey: number }).secretKey;
  try {
    const pausing = errorOf(admin.query('PAUSE'));
    await sleep(200);
    const s = net.connect({ host: '127.0.0.1', port: gw.port }, () => s.end(m.cancelRequest(pid, secret)));
    s.on('error', () => {});
    const e = await pausing;
    assert.equal(e.code, '57014');
    assert.match(e.message, /canceling the wait of PAUSE: [1-9]\d* server connection\(s\) of every database still active/);
    assert.ok((await show('DATABASES')).rows.every((r) => r.paused === '1'), 'still paused after the cancel');
    // The transaction in flight is not held back: it finishes.
    await tx.query('COMMIT');
  } finally {
    await consoleSql('RESUME');
    await tx.query('ROLLBACK').catch(() => {});
  }
  assert.equal((await tx.query('SELECT 5 AS n')).rows[0].n, 5);
});

test('PAUSE of one database leaves the others running; RESUME of it alone', async () => {
  const other = await client();
  const killme = await client('killme');
  const r = await consoleSql('PAUSE killme');
  assert.equal(r.code, 0, r.stderr);
  try {
    let answered = false;
    const q = killme.query('SELECT 1 AS one').then((x) => ((answered = true), x));
    q.catch(() => {});
    assert.equal((await other.query('SELECT 2 AS two')).rows[0].two, 2);
    await sleep(200);
    assert.equal(answered, false, 'the paused database answered');
    const res = await consoleSql('RESUME killme');
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await q).rows[0].one, 1);
  } finally {
    await consoleSql('RESUME killme');
  }
});

test("KILL disconnects the database's clients with 57P01 and closes its server connections; other databases carry on", async () => {
  const victim = await client('killme', 'console-victim');
  const errors: { code?: string }[] = [];
  victim.on('error', (e) => errors.push(e as { code?: string }));
  await victim.query('SELECT 1');
  const other = await client('postgres');
  await other.query('SELECT 1');
  assert.ok((await show('SERVERS')).rows.some((r) => r.database === 'killme'), 'killme has a server connection before KILL');
  const killmeClients = (await show('CLIENTS')).rows.filter((r) => r.database === 'killme').length;
  assert.ok(killmeClients >= 1);

  const r = await consoleSql('KILL killme');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`KILL "killme": ${killmeClients} client\\(s\\) disconnected, [1-9]\\d* server connection\\(s\\) closed`));
  for (let i = 0; i < 50 && errors.length === 0; i++) await sleep(20);
  assert.equal(errors[0]?.code, '57P01');
  assert.ok((await show('SERVERS')).rows.every((r) => r.database !== 'killme'), 'no killme server connection left');
  assert.ok((await show('CLIENTS')).rows.every((r) => r.application_name !== 'console-victim'), 'the killed client is gone');
  assert.equal((await other.query('SELECT 3 AS n')).rows[0].n, 3);
  // Still usable afterwards: a new client of the killed database gets in.
  const again = await client('killme');
  assert.equal((await again.query('SELECT 4 AS n')).rows[0].n, 4);

  const admin = await consoleClient();
  const e = await errorOf(admin.query('KILL'));
  assert.equal(e.code, '42601');
});

test('BAN takes a replica out of the reads, UNBAN puts it back; the primary and unknown names are refused', async () => {
  const c = await client();
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await where(c));
  assert.deepEqual([...seen], ['replica1'], 'reads go to the replica before the ban');

  const ban = await consoleSql('BAN replica1');
  assert.equal(ban.code, 0, ban.stderr);
  assert.match(ban.stderr, /takes no reads for balancer\.ban_ms \(60000 ms\)/);
  for (let i = 0; i < 4; i++) assert.equal(await where(c), 'primary', 'a read went to the banned replica');

  const unban = await consoleSql('UNBAN replica1');
  assert.equal(unban.code, 0, unban.stderr);
  for (let i = 0; i < 4; i++) assert.equal(await where(c), 'replica1', 'reads go back to the replica after UNBAN');

  const admin = await consoleClient();
  const primary = await errorOf(admin.query('BAN primary'));
  assert.equal(primary.code, '55000');
  assert.match(primary.message, /the primary; only replicas can be banned/);
  const unknown = await errorOf(admin.query('BAN nosuch'));
  assert.equal(unknown.code, '42704');
  assert.match(unknown.message, /no node named "nosuch"/);
});

test('RELOAD: a clear error without a config file; with one, applies changes and refuses a broken file', async () => {
  const admin = await consoleClient();
  const none = await errorOf(admin.query('RELOAD'));
  assert.equal(none.code, '55000');
  assert.match(none.message, /not started from a config file/);

  const file = path.join(tmp, 'switchyard.yaml');
  const yaml = (size: number | string) =>
    [
      'listen: {host: 127.0.0.1, port: 0}',
      `admin: {host: 127.0.0.1, port: 0, users: [${JSON.stringify(cluster.superuser)}]}`,
      `primary: {name: primary, host: ${cluster.primary.host}, port: ${cluster.primary.port}}`,
      'server_tls: {mode: disable}',
      `auth: {users: [{name: ${JSON.stringify(cluster.superuser)}, password: ${JSON.stringify(cluster.superuserPassword)}}]}`,
      'log: {level: silent}',
      `pool: {size: ${size}}`,
    ].join('\n') + '\n';
  fs.writeFileSync(file, yaml(3));
  const loaded = loadConfigFile(file, {});
  if (!loaded.ok) assert.fail(formatProblems(loaded.problems));
  const g = await Gateway.start(loaded.config, { configFile: file });
  gateways.add(g);

  const same = await consoleSql('RELOAD', { gateway: g });
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stderr, /nothing to apply/);

  fs.writeFileSync(file, yaml(4));
  const changed = await consoleSql('RELOAD', { gateway: g });
  assert.equal(changed.code, 0, changed.stderr);
  assert.match(changed.stderr, /applied: pool/);
  assert.equal((await show('CONFIG', { gateway: g })).rows.find((r) => r.key === 'pool.size')?.value, '4');

  fs.writeFileSync(file, yaml('lots'));
  const c = await consoleClient(g);
  const broken = await errorOf(c.query('RELOAD'));
  assert.equal(broken.code, 'F0000');
  assert.match(broken.message, /1 problem\(s\); nothing was changed/);
  assert.equal((await show('CONFIG', { gateway: g })).rows.find((r) => r.key === 'pool.size')?.value, '4');
});

test('a user not in admin.users is refused with 28000 naming the setting, on both database names', async () => {
  for (const database of ['switchyard', 'pgbouncer']) {
    const r = await consoleSql('SHOW VERSION', { user: 'app', password: APP_PASSWORD, database });
    assert.equal(r.code, 2, `psql should fail to connect:\n${r.stdout}`);
    assert.match(r.stderr, /may not use the admin console .*admin\.users/);
  }
  const c = new pg.Client({ connectionString: gatewayUrl(gw, 'app', APP_PASSWORD, 'switchyard') });
  c.on('error', () => {});
  const e = await errorOf(c.connect());
  assert.equal(e.code, '28000');
  // A wrong password is still an authentication failure, not a console refusal.
  const bad = new pg.Client({ connectionString: gatewayUrl(gw, cluster.superuser, 'wrong-password', 'switchyard') });
  bad.on('error', () => {});
  assert.equal((await errorOf(bad.connect())).code, '28P01');
});

test('unknown commands get 42601 listing the commands, PgBouncer-only ones 0A000; the extended protocol gets 0A000 and the session goes on', async () => {
  const c = await consoleClient();
  const unknown = await errorOf(c.query('SELECT 1'));
  assert.equal(unknown.code, '42601');
  assert.match(unknown.message, /unknown admin console command "SELECT 1"; the console takes SHOW HELP\|POOLS/);
  assert.equal((await errorOf(c.query('SHOW NONSENSE'))).code, '42601');
  assert.equal((await errorOf(c.query('SHOW POOLS extra'))).code, '42601');
  const fds = await errorOf(c.query('SHOW FDS'));
  assert.equal(fds.code, '0A000');
  assert.match(fds.message, /PgBouncer console command that switchyard does not have/);
  assert.equal((await errorOf(c.query('SUSPEND'))).code, '0A000');

  const ext = await errorOf(c.query({ name: 'prepared', text: 'SHOW POOLS' }));
  assert.equal(ext.code, '0A000');
  assert.match(ext.message, /takes simple queries only/);
  // Everything up to the Sync was skipped; the next simple query is answered.
  assert.equal((await c.query('SHOW VERSION')).rows[0].version, `switchyard ${VERSION}`);

  const psqlUnknown = await consoleSql('SHOW NONSENSE');
  assert.equal(psqlUnknown.code, 1);
  assert.match(psqlUnknown.stderr, /ERROR: {2}unknown admin console command "SHOW NONSENSE"/);
});

test('PAUSE and KILL of a database nobody uses, or a name in single quotes, are refused instead of reporting success', async () => {
  const c = await consoleClient();
  assert.equal((await errorOf(c.query('PAUSE postgres_typo'))).code, '3D000');
  assert.equal((await errorOf(c.query('KILL postgres_typo'))).code, '3D000');
  const quoted = await errorOf(c.query("PAUSE 'postgres'"));
  assert.equal(quoted.code, '42601');
  assert.match(quoted.message, /single quotes/);
  // Nothing was paused: a query runs.
  const app = await client();
  assert.equal((await app.query('SELECT 1 AS x')).rows[0].x, 1);
});
