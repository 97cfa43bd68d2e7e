// Session pool and fault behaviour against a real primary: queueing, caps, reset, cancel, dying servers, bad input.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import postgres from 'postgres';
import { startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGateway, gatewayUrl } from '../harness/gateway.js';
import { connectError as refused } from '../harness/checks.js';
import { RawClient, typeOf, sqlstate } from '../harness/raw-client.js';
import * as m from '../../src/protocol/messages.js';
import type { Gateway } from '../../src/gateway.js';

let cluster: PgCluster;
const open: Gateway[] = [];

before(async () => {
  cluster = await startCluster();
  await cluster.query("CREATE ROLE other LOGIN PASSWORD 'otherpw'");
  await cluster.query("CREATE ROLE third LOGIN PASSWORD 'thirdpw'");
});

after(async () => {
  for (const gw of open) await gw.close();
  await cluster?.destroy();
});

/** Session pooling unless a test says otherwise: these tests are about a connection held for a whole session. */
async function gateway(overrides: Parameters<typeof startGateway>[1] = {}): Promise<Gateway> {
  const gw = await startGateway(cluster, { ...overrides, pool: { mode: 'session', ...overrides.pool } });
  open.push(gw);
  return gw;
}

async function client(gw: Gateway, user = 'postgres', password = 'postgres'): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: gatewayUrl(gw, user, password) });
  c.on('error', () => {});
  await c.connect();
  return c;
}

function connectError(gw: Gateway, user = 'postgres', password = 'postgres'): Promise<pg.DatabaseError> {
  return refused(gatewayUrl(gw, user, password));
}

test('a client beyond pool.size waits, then gets 53300 naming the limit; others are unaffected', async () => {
  const gw = await gateway({ pool: { size: 2, queue_timeout_ms: 400 } });
  const a = await client(gw);
  const b = await client(gw);
  const t0 = Date.now();
  const err = await connectError(gw);
  const waited = Date.now() - t0;
  assert.equal(err.code, '53300');
  assert.match(err.message, /pool\.queue_timeout_ms \(400 ms\)/);
  assert.match(err.detail ?? '', /pool\.size 2/);
  assert.ok(waited >= 350, `waited ${waited} ms`);
  assert.equal((await a.query('SELECT 1 AS x')).rows[0].x, 1);
  assert.equal((await b.query('SELECT 2 AS x')).rows[0].x, 2);
  await a.end();
  await b.end();
});

test('waiting clients are served in FIFO order as connections come back', async () => {
  const gw = await gateway({ pool: { size: 1, queue_timeout_ms: 5000 } });
  const holder = await client(gw);
  const order: number[] = [];
  const waiters = [1, 2, 3].map(async (n) => {
    await new Promise((r) => setTimeout(r, n * 50)); // queue in a known order
    const c = await client(gw);
    order.push(n);
    await c.end();
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(order, []);
  await holder.end();
  await Promise.all(waiters);
  assert.deepEqual(order, [1, 2, 3]);
});

test('pool.max_db_connections caps a database across users', async () => {
  const gw = await gateway({
    pool: { size: 5, max_db_connections: 2, queue_timeout_ms: 300 },
    auth: { users: [{ name: 'postgres', password: 'postgres' }, { name: 'other', password: 'otherpw' }] },
  });
  const a = await client(gw);
  const b = await client(gw, 'other', 'otherpw');
  const err = await connectError(gw, 'other', 'otherpw');
  assert.equal(err.code, '53300');
  assert.match(err.detail ?? '', /pool\.max_db_connections 2/);
  // An idle connection of another user gives up its slot.
  await a.end();
  await new Promise((r) => setTimeout(r, 100));
  const c = await client(gw, 'other', 'otherpw');
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'other');
  await b.end();
  await c.end();
});

function inUse(gw: Gateway): number {
  return gw.pools.stats().reduce((n, p) => n + p.active + p.idle + p.opening, 0);
}

test('at the database cap, a freed slot goes to exactly one waiter and nothing leaks (users a, b, c)', async () => {
  const gw = await gateway({
    pool: { size: 5, max_db_connections: 1, queue_timeout_ms: 4000 },
    auth: {
      users: [
        { name: 'postgres', password: 'postgres' },
        { name: 'other', password: 'otherpw' },
        { name: 'third', password: 'thirdpw' },
      ],
    },
  });
  const a = await client(gw);
  const bP = client(gw, 'other', 'otherpw');
  await new Promise((r) => setTimeout(r, 100));
  const cP = client(gw, 'third', 'thirdpw');
  await new Promise((r) => setTimeout(r, 100));
  await a.end(); // its idle connection is the victim that makes room for b
  const b = await bP;
  assert.equal((await b.query('SELECT current_user AS u')).rows[0].u, 'other');
  assert.equal(inUse(gw), 1, 'the cap of 1 holds');
  assert.equal(gw.pools.stats().reduce((n, p) => n + p.waiting, 0), 1, 'c is still queued');
  await b.end();
  const c = await cP;
  assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'third');
  assert.equal(inUse(gw), 1);
  await c.end();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(gw.pools.stats().reduce((n, p) => n + p.active + p.opening, 0), 0, 'no connection left busy');
});

test('a client queued for its own full pool does not hold up another user of the database', async () => {
  const gw = await gateway({
    pool: { size: 1, max_db_connections: 50, queue_timeout_ms: 3000 },
    auth: { users: [{ name: 'postgres', password: 'postgres' }, { name: 'other', password: 'otherpw' }] },
  });
  const a1 = await client(gw);
  const a2P = client(gw); // waits for a1's connection
  await new Promise((r) => setTimeout(r, 100));
  const t0 = Date.now();
  const b = await client(gw, 'other', 'otherpw');
  assert.ok(Date.now() - t0 < 1000, `b waited ${Date.now() - t0} ms behind a2`);
  await b.end();
  await a1.end();
  await (await a2P).end();
});

test('clients that leave at any point of login leave no session, cancel key or busy connection behind', async () => {
  const gw = await gateway({ pool: { size: 3 }, auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] } });
  for (let i = 0; i < 30; i++) {
    const raw = await RawClient.connect(gw.port);
    raw.send(m.startupMessage({ user: 'postgres', database: 'postgres', application_name: `leaver${i}`, TimeZone: 'Europe/Oslo' }));
    // Leave after a growing pause: before auth, while leasing, while the settings are applied, after.
    await new Promise((r) => setTimeout(r, i % 6));
    raw.socket.destroy();
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((gw.status() as { clients: unknown[] }).clients.length, 0);
  assert.equal(gw.cancelKeyCount, 0);
  assert.equal(gw.pools.stats().reduce((n, p) => n + p.active + p.opening + p.waiting, 0), 0);
  const c = await client(gw);
  assert.equal((await c.query('SHOW application_name')).rows[0].application_name, '');
  await c.end();
});

test('one GSSENCRequest and one SSLRequest at most; messages pipelined behind the startup packet are served', async () => {
  const gw = await gateway({ auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] } });
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(m.GSSENC_REQUEST_CODE, 4);
  const looping = await RawClient.connect(gw.port);
  looping.send(gss);
  assert.equal(await looping.readByte(), 'N');
  looping.send(gss);
  const [dup] = await looping.until('E');
  assert.equal(sqlstate(dup!), '08P01');
  await looping.closed;

  const eager = await RawClient.connect(gw.port);
  eager.send(Buffer.concat([m.startupMessage({ user: 'postgres', database: 'postgres' }), m.query('SELECT 42')]));
  const msgs = [...(await eager.until('Z')), ...(await eager.until('Z'))];
  const row = msgs.find((x) => typeOf(x) === 'D');
  assert.ok(row, 'the pipelined query was answered without another write from the client');
  assert.deepEqual(m.readDataRow(row), ['42']);
  eager.end();
});

test('a reused server connection carries nothing of the previous client', async () => {
  const gw = await gateway({ pool: { size: 1 } });
  const a = await client(gw);
  const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  await a.query("SET work_mem = '7MB'");
  await a.query('CREATE TEMP TABLE scratch (x int)');
  await a.query('PREPARE p1 AS SELECT 1');
  await a.query('SELECT pg_advisory_lock(42)');
  await a.query('LISTEN chan');
  await a.end();
  const b = await client(gw);
  assert.equal((await b.query('SELECT pg_backend_pid() AS p')).rows[0].p, pidA, 'the same server connection is reused');
  assert.equal((await b.query('SHOW work_mem')).rows[0].work_mem, '4MB');
  assert.equal((await b.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'scratch'")).rows[0].n, 0);
  assert.equal((await b.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0].n, 0);
  assert.equal((await b.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")).rows[0].n, 0);
  assert.equal((await b.query('SELECT count(*)::int AS n FROM pg_listening_channels()')).rows[0].n, 0);
  await b.end();
});

test('a client that disconnects inside a transaction has it rolled back before reuse', async () => {
  const gw = await gateway({ pool: { size: 1 } });
  await cluster.query('CREATE TABLE IF NOT EXISTS txn_left (x int)');
  const a = await client(gw);
  await a.query('BEGIN');
  await a.query('INSERT INTO txn_left VALUES (1)');
  await a.end();
  const b = await client(gw);
  assert.equal((await b.query('SELECT count(*)::int AS n FROM txn_left')).rows[0].n, 0);
  await b.query('INSERT INTO txn_left VALUES (2)'); // autocommit: not inside the abandoned transaction
  await b.end();
  assert.equal(await cluster.query('SELECT count(*) FROM txn_left'), '1');
});

test('a client that vanishes mid-query does not hand its busy server connection to anyone', async () => {
  const gw = await gateway({ pool: { size: 1, queue_timeout_ms: 5000 } });
  const a = await client(gw);
  const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  const running = a.query('SELECT pg_sleep(2)').catch(() => 'gone');
  await new Promise((r) => setTimeout(r, 200));
  (a as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await running;
  const t0 = Date.now();
  const b = await client(gw);
  const pidB = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  assert.notEqual(pidB, pidA, 'a fresh server connection, not the one still running pg_sleep');
  assert.ok(Date.now() - t0 < 1500, 'the next client did not wait for the abandoned query');
  await b.end();
});

test('CancelRequest reaches the server connection the client is using', async () => {
  const gw = await gateway();
  const sql = postgres(gatewayUrl(gw, 'postgres', 'postgres'), { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    const t0 = Date.now();
    const q = sql`SELECT pg_sleep(10)`;
    const done = q.then(
      () => assert.fail('pg_sleep was expected to be cancelled'),
      (e: { code?: string }) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    q.cancel();
    const err = await done;
    assert.equal(err.code, '57014');
    assert.ok(Date.now() - t0 < 5000);
    assert.equal((await sql`SELECT 3 AS x`)[0]!.x, 3, 'the connection is usable after the cancel');
  } finally {
    await sql.end();
  }
});

test('a CancelRequest with a wrong key cancels nothing', async () => {
  const gw = await gateway({ auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] } });
  const raw = await RawClient.connect(gw.port);
  const msgs = await raw.startup({ user: 'postgres', database: 'postgres' });
  const key = m.readBackendKeyData(msgs.find((x) => typeOf(x) === 'K')!);
  raw.send(m.query('SELECT pg_sleep(0.5)'));
  const bogus = await RawClient.connect(gw.port);
  bogus.send(m.cancelRequest(key.pid, key.secret ^ 1));
  await bogus.closed;
  const reply = await raw.until('Z');
  assert.ok(!reply.some((x) => typeOf(x) === 'E'), 'the query finished normally');
  raw.end();
});

test('a server connection killed mid-query: that client gets an error, the pool recovers, others do not notice', async () => {
  const gw = await gateway({ pool: { size: 4 } });
  const victim = await client(gw);
  const bystander = await client(gw);
  const victimPid = (await victim.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  const running = victim.query('SELECT pg_sleep(10)').then(
    () => assert.fail('the query was expected to fail'),
    (e: pg.DatabaseError) => e,
  );
  await new Promise((r) => setTimeout(r, 200));
  await cluster.query(`SELECT pg_terminate_backend(${victimPid})`);
  const err = await running;
  assert.ok(['57P01', '08006'].includes(err.code ?? ''), `code ${err.code}: ${err.message}`);
  for (let i = 0; i < 20; i++) assert.equal((await bystander.query('SELECT $1::int AS x', [i])).rows[0].x, i);
  const again = await client(gw);
  assert.equal((await again.query('SELECT 1 AS x')).rows[0].x, 1);
  await again.end();
  await bystander.end();
  await victim.end().catch(() => {});
});

test('the primary stopping mid-query gives a connection-failure error; the pool recovers after restart', async () => {
  const gw = await gateway({ pool: { size: 2, connect_timeout_ms: 1000 } });
  const a = await client(gw);
  const running = a.query('SELECT pg_sleep(10)').then(
    () => assert.fail('the query was expected to fail'),
    (e: Error & { code?: string }) => e,
  );
  await new Promise((r) => setTimeout(r, 200));
  await cluster.stop(cluster.primary, 'immediate');
  const err = await running;
  assert.ok(err.code === undefined || ['57P01', '08006', '57P02'].includes(err.code), `code ${err.code}: ${err.message}`);
  const down = await connectError(gw);
  assert.equal(down.code, '08006');
  assert.match(down.message, /could not connect to server "primary"/);
  await cluster.start(cluster.primary);
  const b = await client(gw);
  assert.equal((await b.query('SELECT 1 AS x')).rows[0].x, 1);
  await b.end();
});

test('idle server connections are closed after pool.idle_timeout_ms', async () => {
  const gw = await gateway({ pool: { size: 2, idle_timeout_ms: 300 } });
  const a = await client(gw);
  await a.query('SELECT 1');
  await a.end();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(gw.pools.stats().reduce((n, p) => n + p.idle, 0), 1);
  await new Promise((r) => setTimeout(r, 1600));
  assert.equal(gw.pools.stats().reduce((n, p) => n + p.idle, 0), 0);
});

test('a server connection older than pool.lifetime_ms is closed when released, not reused', async () => {
  const gw = await gateway({ pool: { size: 1, lifetime_ms: 200 } });
  const a = await client(gw);
  const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  await new Promise((r) => setTimeout(r, 300));
  await a.end();
  const b = await client(gw);
  const pidB = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  assert.notEqual(pidB, pidA);
  await b.end();
});

test('malformed and oversized messages get an ErrorResponse with a SQLSTATE and a disconnect; other clients carry on', async () => {
  const gw = await gateway({
    listen: { max_message_bytes: 4096 },
    auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] },
  });
  const bystander = await client(gw);
  const cases: [string, Buffer, string][] = [
    ['negative length', Buffer.from([0x51, 0xff, 0xff, 0xff, 0xf0]), '08P01'],
    ['length below 4', Buffer.from([0x51, 0, 0, 0, 2]), '08P01'],
    ['over max_message_bytes', Buffer.from([0x51, 0x00, 0x10, 0x00, 0x00]), '54000'],
  ];
  for (const [name, bytes, code] of cases) {
    const raw = await RawClient.connect(gw.port);
    await raw.startup({ user: 'postgres', database: 'postgres' });
    raw.send(bytes);
    const [reply] = await raw.until('E');
    assert.equal(sqlstate(reply!), code, name);
    await raw.closed;
    assert.equal((await bystander.query('SELECT 1 AS x')).rows[0].x, 1, `bystander after ${name}`);
  }
  // A startup packet with an impossible length.
  const raw = await RawClient.connect(gw.port);
  raw.send(Buffer.from([0, 0, 0, 3, 0, 0, 0, 0]));
  const [reply] = await raw.until('E');
  assert.equal(sqlstate(reply!), '08P01');
  await raw.closed;
  // A startup packet whose last parameter value is not terminated.
  const cut = Buffer.concat([Buffer.alloc(8), Buffer.from('user\0postgres')]);
  cut.writeInt32BE(cut.length, 0);
  cut.writeInt32BE(m.PROTOCOL_3_0, 4);
  const unterminated = await RawClient.connect(gw.port);
  unterminated.send(cut);
  const [reply2] = await unterminated.until('E');
  assert.equal(sqlstate(reply2!), '08P01');
  assert.match(m.readErrorFields(reply2!).get('M')!, /invalid startup packet/);
  await unterminated.closed;
  await bystander.end();
});

test('startup: newer protocol minor and _pq_ options get NegotiateProtocolVersion; 2.0 and replication are refused', async () => {
  const gw = await gateway({ auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] } });
  const raw = await RawClient.connect(gw.port);
  const pkt = m.startupMessage({ user: 'postgres', database: 'postgres', '_pq_.compression': 'on' });
  pkt.writeInt32BE((3 << 16) | 2, 4); // protocol 3.2
  raw.send(pkt);
  const msgs = await raw.until('Z');
  const nego = msgs[0]!;
  assert.equal(typeOf(nego), 'v');
  assert.equal(nego.readInt32BE(5), 3 << 16);
  assert.equal(nego.readInt32BE(9), 1);
  assert.equal(nego.toString('utf8', 13, nego.length - 1), '_pq_.compression');
  raw.send(m.query('SELECT 1'));
  assert.ok((await raw.until('Z')).some((x) => typeOf(x) === 'D'));
  raw.end();

  const old = await RawClient.connect(gw.port);
  const v2 = m.startupMessage({ user: 'postgres' });
  v2.writeInt32BE(2 << 16, 4);
  old.send(v2);
  const [e2] = await old.until('E');
  assert.equal(sqlstate(e2!), '0A000');

  const repl = await RawClient.connect(gw.port);
  repl.send(m.startupMessage({ user: 'postgres', database: 'postgres', replication: 'database' }));
  const [e3] = await repl.until('E');
  assert.equal(sqlstate(e3!), '0A000');
  assert.match(m.readErrorFields(e3!).get('M')!, /replication/);
});

test('a client that stalls during login is cut off after listen.login_timeout_ms; others log in meanwhile', async () => {
  const gw = await gateway({ listen: { login_timeout_ms: 300 } });
  const silent = await RawClient.connect(gw.port); // connects and never sends a startup packet
  const halfway = await RawClient.connect(gw.port);
  halfway.send(m.startupMessage({ user: 'postgres', database: 'postgres' })); // then never answers the SASL challenge
  const meanwhile = await client(gw);
  assert.equal((await meanwhile.query('SELECT 1 AS x')).rows[0].x, 1);
  const [err] = (await halfway.until('E')).slice(-1);
  assert.equal(sqlstate(err!), '08P01');
  assert.match(m.readErrorFields(err!).get('M')!, /login_timeout_ms/);
  await halfway.closed;
  await silent.closed;
  await meanwhile.end();
});

test('each client sees its own ParameterStatus values and BackendKeyData from the gateway', async () => {
  const gw = await gateway({ pool: { size: 1 }, auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] } });
  const raw = await RawClient.connect(gw.port);
  const msgs = await raw.startup({ user: 'postgres', database: 'postgres', application_name: 'first', TimeZone: 'Asia/Tokyo' });
  const status = new Map(msgs.filter((x) => typeOf(x) === 'S').map((x) => m.readParameterStatus(x)));
  assert.equal(status.get('application_name'), 'first');
  assert.equal(status.get('TimeZone'), 'Asia/Tokyo');
  assert.ok(status.get('server_version')?.startsWith('15'));
  raw.send(m.query('SELECT pg_backend_pid()'));
  const rows = await raw.until('Z');
  const serverPid = Number(m.readDataRow(rows.find((x) => typeOf(x) === 'D')!)[0]);
  const key = m.readBackendKeyData(msgs.find((x) => typeOf(x) === 'K')!);
  assert.notEqual(key.pid, serverPid, 'the gateway hands out its own keys');
  raw.end();
  await raw.closed;
  const next = await RawClient.connect(gw.port);
  const msgs2 = await next.startup({ user: 'postgres', database: 'postgres' });
  const status2 = new Map(msgs2.filter((x) => typeOf(x) === 'S').map((x) => m.readParameterStatus(x)));
  assert.notEqual(status2.get('TimeZone'), 'Asia/Tokyo');
  assert.equal(status2.get('application_name'), '');
  next.end();
});
