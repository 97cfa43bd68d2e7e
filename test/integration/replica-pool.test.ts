// The replica pool under change, against a real primary and streaming replicas: a replica killed and
// restarted under pgbench -S, one that lags past the limit and catches up, one added through the admin
// API and one drained away under load, a weighted 3:1 split, and replicas changed by a config reload.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import pg from 'pg';
import { findPgBin, freePort, startCluster, type PgCluster, type PgNode } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway, testConfig } from '../harness/gateway.js';
import { cleanPgEnv, run, type RunResult } from '../harness/exec.js';
import { assertPgbenchOk } from '../harness/checks.js';
import type { Gateway } from '../../src/gateway.js';
import type { Config } from '../../src/config/types.js';
import type { DeepPartial } from '../../src/config/load.js';
import type { GatewayEvent } from '../../src/observability/events.js';

const PG_BIN = findPgBin();
const PGBENCH = PG_BIN ? path.join(PG_BIN, 'pgbench') : '/usr/lib/postgresql/15/bin/pgbench';
const TOKEN = 'replica-pool-test-token';

let cluster: PgCluster;
const gateways = new Set<Gateway>();
const clients = new Set<pg.Client>();

before(async () => {
  cluster = await startCluster({ replicas: 2 });
  await cluster.query('CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
  const init = await pgbench(cluster.primary.port, ['-i', '-s', '1', '-q']);
  assert.equal(init.code, 0, `pgbench -i failed:\n${init.stderr}`);
  await cluster.waitStreaming();
});

after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  for (const g of gateways) await g.close().catch(() => {});
  await cluster?.destroy();
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The two replicas started with the cluster (a test adds a third and stops it). */
function replicaConfigs(nodes: PgNode[] = cluster.replicas.slice(0, 2)) {
  return nodes.map((r) => ({ name: r.name, host: r.host, port: r.port }));
}

async function gateway(overrides: DeepPartial<Config> = {}): Promise<Gateway> {
  const g = await startGateway(cluster, {
    pool: { mode: 'transaction', size: 30 },
    replicas: replicaConfigs(),
    monitor: { interval_ms: 50 },
    admin: { port: await freePort(), token: TOKEN },
    ...overrides,
  });
  gateways.add(g);
  return g;
}

async function client(g: Gateway): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: gatewayUrl(g, cluster.superuser, cluster.superuserPassword) });
  c.on('error', () => {});
  await c.connect();
  clients.add(c);
  return c;
}

function nodeName(port: string | number): string {
  return cluster.nodes.find((x) => x.port === Number(port))?.name ?? `unknown port ${port}`;
}

async function where(c: pg.Client): Promise<string> {
  const r = await c.query("SELECT current_setting('port') AS port");
  return nodeName(r.rows[0].port);
}

function pgbench(port: number, args: string[]): Promise<RunResult> {
  const env = cleanPgEnv({ PGPASSWORD: cluster.superuserPassword });
  return run(PGBENCH, ['-h', '127.0.0.1', '-p', String(port), '-U', cluster.superuser, ...args, 'postgres'], env);
}

function events(g: Gateway): GatewayEvent[] {
  const seen: GatewayEvent[] = [];
  g.events.on((e) => seen.push(e));
  return seen;
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Transactions leased per node so far (one lease per client transaction). */
function leases(g: Gateway): Map<string, number> {
  return new Map(g.topology.nodes.map((n) => [n.name, n.leases]));
}

function delta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  return new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
}

function api(g: Gateway, method: string, url: string, body?: unknown): Promise<Response> {
  return fetch(new URL(url, g.adminUrl), {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
}

/** Numbers pgbench printed, and the clients it reported aborted. */
function pgbenchCounts(r: RunResult): { processed: number; failed: number; aborted: number } {
  const out = `${r.stdout}\n${r.stderr}`;
  return {
    processed: Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? NaN),
    failed: Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0),
    // pgbench 15 says "client N aborted in command ..." or "client N script M aborted in command ...".
    aborted: (r.stderr.match(/client \d+ (?:script \d+ )?aborted/g) ?? []).length,
  };
}

// ------------------------------------------------------------------ tests

test('a replica killed under pgbench -S (20 clients): the run goes on on the other; restarted, it takes traffic again', { timeout: 90_000 }, async (t) => {
  const g = await gateway({ balancer: { ban_ms: 500 } });
  const seen = events(g);
  const r1 = cluster.replicas[0]!;
  const bench = pgbench(g.port, ['-S', '-c', '20', '-j', '2', '-T', '9', '-n']);
  await sleep(2000);
  const atKill = leases(g);
  const inUseAtKill = g.topology.node(r1.name)!.inUse;
  await cluster.stop(r1, 'immediate');
  await until('the killed replica banned', () => g.topology.node(r1.name)!.banned);
  await sleep(2500);
  const whileDown = delta(leases(g), atKill);
  await cluster.start(r1);
  const atRestart = leases(g);
  const r = await bench;
  const afterRestart = delta(leases(g), atRestart);
  const counts = pgbenchCounts(r);
  const lost = seen.filter((e) => e.type === 'server_lost').length;
  const retried = seen.filter((e) => e.type === 'query_retried').length;
  t.diagnostic(
    `pgbench -S 20 clients 9 s, replica1 killed at 2 s and restarted about 3 s later: ${counts.processed} transactions, ${counts.failed} failed, ` +
      `${counts.aborted} clients aborted; ${inUseAtKill} connections in use on replica1 at the kill, ${retried} reads run again elsewhere, ${lost} errors for lost connections; ` +
      `leases while down: ${[...whileDown].map(([k, v]) => `${k}=${v}`).join(' ')}; after restart: ${[...afterRestart].map(([k, v]) => `${k}=${v}`).join(' ')}`,
  );
  assert.ok(counts.processed > 1000, 'the run went on');
  // At most the transactions in flight on the killed replica fail; reads not yet answered run again elsewhere.
  assert.ok(counts.failed + counts.aborted <= inUseAtKill, `failures (${counts.failed + counts.aborted}) are at most the ${inUseAtKill} in flight on the killed replica`);
  assert.equal(counts.failed + counts.aborted, lost, 'every failure is one the gateway reported');
  assert.ok((whileDown.get('replica2') ?? 0) > 500, 'the other replica carried the reads');
  assert.ok((afterRestart.get(r1.name) ?? 0) > 0, 'the restarted replica takes reads again');
  assert.ok(seen.some((e) => e.type === 'replica_banned' && e.node === r1.name));
  assert.ok(seen.some((e) => e.type === 'replica_unbanned' && e.node === r1.name));
  if (counts.aborted === 0) assert.equal(r.code, 0, `pgbench exit ${r.code}: ${r.stderr.slice(-500)}`);
});

test('a replica past max_replica_lag_ms takes no reads, and gets them back when it catches up', { timeout: 60_000 }, async () => {
  const g = await gateway({ balancer: { max_replica_lag_ms: 300 } });
  const seen = events(g);
  const r1 = cluster.replicas[0]!;
  const c = await client(g);
  const writer = await client(g);
  let writing = true;
  const writes = (async () => {
    while (writing) {
      await writer.query('INSERT INTO ticks DEFAULT VALUES');
      await sleep(20);
    }
  })();
  try {
    await cluster.query('SELECT pg_wal_replay_pause()', r1);
    await until('replica1 lagging', () => seen.some((e) => e.type === 'replica_lagging' && e.node === r1.name));
    const node = g.topology.node(r1.name)!;
    assert.ok(node.lagMs! > 300, `lag ${node.lagMs} ms`);
    const places = new Set<string>();
    for (let i = 0; i < 20; i++) places.add(await where(c));
    assert.deepEqual([...places], ['replica2'], 'no reads on the lagging replica');
    await cluster.query('SELECT pg_wal_replay_resume()', r1);
    await until('replica1 caught up', () => seen.some((e) => e.type === 'replica_caught_up' && e.node === r1.name));
    const back = new Set<string>();
    for (let i = 0; i < 20; i++) back.add(await where(c));
    assert.ok(back.has(r1.name), 'reads return to the caught-up replica');
  } finally {
    await cluster.query('SELECT pg_wal_replay_resume()', r1).catch(() => {});
    writing = false;
    await writes;
  }
});

test('weighted 3:1: the reads of 10,000 pgbench transactions split within 10 % of 3:1', { timeout: 90_000 }, async (t) => {
  const [r1, r2] = cluster.replicas;
  const g = await gateway({
    balancer: { strategy: 'weighted' },
    replicas: [
      { name: r1!.name, host: r1!.host, port: r1!.port, weight: 3 },
      { name: r2!.name, host: r2!.host, port: r2!.port, weight: 1 },
    ],
  });
  await until('both replicas probed', () => g.topology.replicas.every((n) => n.probed));
  const before = leases(g);
  const r = await pgbench(g.port, ['-S', '-c', '20', '-j', '2', '-t', '500', '-n']);
  const { processed } = assertPgbenchOk('pgbench -S weighted', r);
  assert.equal(processed, 10_000);
  const d = delta(leases(g), before);
  const a = d.get(r1!.name)!;
  const b = d.get(r2!.name)!;
  t.diagnostic(`weighted 3:1 over ${processed} transactions: ${r1!.name}=${a} ${r2!.name}=${b} primary=${d.get('primary')} ratio ${(a / b).toFixed(3)}`);
  assert.ok(a + b >= 10_000, 'every transaction read on a replica');
  assert.ok(Math.abs(a / b - 3) <= 0.3, `ratio ${a / b} within 10 % of 3`);
});

test('a replica added through the admin API takes traffic once probed; drained under pgbench, no client transaction is aborted', { timeout: 120_000 }, async (t) => {
  const g = await gateway();
  const seen = events(g);
  const r3 = await cluster.addReplica();
  t.after(() => cluster.stop(r3).catch(() => {}));

  const unauthorized = await fetch(new URL('/api/v1/topology', g.adminUrl));
  assert.equal(unauthorized.status, 401, 'the token is required');
  const bad = await api(g, 'POST', '/api/v1/replicas', { host: '127.0.0.1', port: 'x' });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { message: string }).message, /port/);

  const added = await api(g, 'POST', '/api/v1/replicas', { name: r3.name, host: r3.host, port: r3.port });
  assert.equal(added.status, 201, await added.clone().text());
  assert.equal(((await added.json()) as { replica: { name: string } }).replica.name, r3.name);
  const dup = await api(g, 'POST', '/api/v1/replicas', { name: r3.name, host: r3.host, port: r3.port });
  assert.equal(dup.status, 409);
  assert.ok(seen.some((e) => e.type === 'replica_added' && e.node === r3.name));

  const c = await client(g);
  await until('reads on the new replica', async () => (await where(c)) === r3.name);
  const topo = (await (await api(g, 'GET', '/api/v1/topology')).json()) as { replicas: { name: string; state: string }[] };
  assert.deepEqual(
    topo.replicas.map((x) => [x.name, x.state]),
    [
      ['replica1', 'active'],
      ['replica2', 'active'],
      [r3.name, 'active'],
    ],
  );

  // A client in the middle of a transaction on the replica being drained finishes it there.
  const holder = await client(g);
  await holder.query('BEGIN');
  await until('a transaction on the new replica', async () => {
    if ((await where(holder)) === r3.name) return true;
    await holder.query('COMMIT');
    await holder.query('BEGIN');
    return false;
  });
  const bench = pgbench(g.port, ['-S', '-c', '10', '-j', '2', '-T', '5', '-n']);
  await sleep(1500);
  const drained = api(g, 'DELETE', `/api/v1/replicas/${r3.name}?drain=true&wait=true`);
  await until('draining', () => g.topology.node(r3.name)?.draining === true);
  const atDrain = leases(g);
  await sleep(500);
  assert.equal(await where(holder), r3.name, 'the open transaction stays on the draining replica');
  await holder.query('COMMIT');
  const res = await drained;
  assert.equal(res.status, 200, await res.clone().text());
  const r = await bench;
  assertPgbenchOk('pgbench -S during a drain', r);
  const after = delta(leases(g), atDrain);
  t.diagnostic(`leases after the drain began: ${[...after].map(([k, v]) => `${k}=${v}`).join(' ')}`);
  assert.equal(g.topology.node(r3.name), undefined, 'gone from the topology');
  assert.ok(seen.some((e) => e.type === 'replica_draining' && e.node === r3.name));
  assert.ok(seen.some((e) => e.type === 'replica_removed' && e.node === r3.name && e.drained));
  assert.equal(seen.filter((e) => e.type === 'server_lost').length, 0, 'no transaction lost a connection');
  assert.equal((await api(g, 'DELETE', `/api/v1/replicas/${r3.name}`)).status, 404);
  assert.equal((await api(g, 'DELETE', '/api/v1/replicas/primary')).status, 409);
});

test('a reload drains a replica removed from the file and adds one put in it; the API-added ones stay', { timeout: 60_000 }, async () => {
  const [r1, r2] = cluster.replicas;
  const g = await gateway();
  const seen = events(g);
  const c = await client(g);
  await until('both replicas probed', () => g.topology.replicas.every((n) => n.probed));
  const next = testConfig(cluster, {
    pool: { mode: 'transaction', size: 30 },
    replicas: [{ name: r2!.name, host: r2!.host, port: r2!.port, weight: 2 }],
    balancer: { strategy: 'least-connections' },
    monitor: { interval_ms: 50 },
    admin: { port: g.config.admin.port, token: TOKEN },
  });
  const res = g.reload(next);
  assert.deepEqual(res.restart_required, []);
  assert.ok(res.applied.includes(`replicas: draining ${r1!.name}`), res.applied.join('; '));
  assert.ok(res.applied.includes('balancer'));
  await until('replica1 removed', () => g.topology.node(r1!.name) === undefined);
  for (let i = 0; i < 6; i++) assert.equal(await where(c), r2!.name);
  assert.equal(g.topology.node(r2!.name)!.weight, 2);

  const back = g.reload(testConfig(cluster, { pool: { mode: 'transaction', size: 30 }, replicas: replicaConfigs([r1!, r2!]), monitor: { interval_ms: 50 }, listen: { port: 1 } }));
  assert.ok(back.applied.includes(`replicas: added ${r1!.name}`));
  assert.deepEqual(back.restart_required, ['listen', 'admin']);
  await until('reads on replica1 again', async () => (await where(c)) === r1!.name);
  assert.ok(seen.some((e) => e.type === 'config_reloaded'));
});

test('a replica removed at once: a client in a transaction there gets an error for that transaction only, then goes on elsewhere with its session', { timeout: 60_000 }, async () => {
  const g = await gateway();
  const seen = events(g);
  await until('both replicas probed', () => g.topology.replicas.every((n) => n.probed));
  const c = await client(g);
  await c.query("SET statement_timeout = '31s'");
  await c.query("SET application_name = 'lost-transaction'");

  // Simple protocol: a statement in flight inside a transaction.
  await c.query('BEGIN');
  const first = await where(c);
  const slow = c.query('SELECT pg_sleep(5)').then(() => assert.fail('expected an error'), (e: { code?: string; message: string }) => e);
  await sleep(300);
  const removed = await api(g, 'DELETE', `/api/v1/replicas/${first}?drain=false&wait=true`);
  assert.equal(removed.status, 200, await removed.clone().text());
  const lost = await slow;
  assert.equal(lost.code, '08006');
  assert.match(lost.message, new RegExp(`"${first}" lost`));
  await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02', 'the transaction is failed until the client ends it');
  await c.query('ROLLBACK');
  const second = await where(c);
  assert.notEqual(second, first);
  assert.equal((await c.query('SHOW statement_timeout')).rows[0].statement_timeout, '31s');
  assert.equal((await c.query('SHOW application_name')).rows[0].application_name, 'lost-transaction');

  // Extended protocol (a parameterised query) in flight inside a transaction, on the last replica.
  await c.query('BEGIN');
  assert.equal(await where(c), second);
  const slow2 = c.query('SELECT pg_sleep($1::float8)', [5]).then(() => assert.fail('expected an error'), (e: { code?: string }) => e);
  await sleep(300);
  assert.equal((await api(g, 'DELETE', `/api/v1/replicas/${second}?drain=false&wait=true`)).status, 200);
  assert.equal((await slow2).code, '08006');
  await assert.rejects(c.query('SELECT $1::int', [1]), (e: { code?: string }) => e.code === '25P02');
  const rb = await c.query('COMMIT');
  assert.equal(rb.command, 'ROLLBACK', 'COMMIT of the failed transaction rolls back, as in PostgreSQL');
  // No replica left: reads go to the primary, with the session's settings.
  assert.equal(await where(c), 'primary');
  assert.equal((await c.query('SHOW statement_timeout')).rows[0].statement_timeout, '31s');
  assert.equal(seen.filter((e) => e.type === 'server_lost').length, 2);
  assert.equal(seen.filter((e) => e.type === 'client_error').length, 0, 'the client was never disconnected');
});

test('ip-hash: a client address keeps its replica', { timeout: 30_000 }, async () => {
  const g = await gateway({ balancer: { strategy: 'ip-hash' } });
  await until('both replicas probed', () => g.topology.replicas.every((n) => n.probed));
  const places = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const c = await client(g);
    for (let j = 0; j < 5; j++) places.add(await where(c));
  }
  assert.equal(places.size, 1, `one replica for 127.0.0.1, got ${[...places]}`);
  assert.match([...places][0]!, /^replica[12]$/);
});

test('a transaction whose server connection dies while the client is idle in it: its COMMIT fails, never silently', { timeout: 30_000 }, async () => {
  const g = await gateway();
  const c = await client(g);
  await cluster.query('CREATE TABLE IF NOT EXISTS lost_commit (v text)');
  const kill = async () => {
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    assert.equal(await cluster.query(`SELECT pg_terminate_backend(${pid})`), 't');
    await sleep(200);
  };

  // Idle in the transaction when it dies; the next statement is COMMIT: an error, and nothing committed.
  await c.query('BEGIN');
  await c.query("INSERT INTO lost_commit VALUES ('a')");
  await kill();
  await assert.rejects(c.query('COMMIT'), (e: { code?: string; message: string }) => e.code === '57P01' && /lost/.test(e.message));
  assert.equal((await c.query("SELECT count(*)::int AS n FROM lost_commit WHERE v = 'a'")).rows[0].n, 0);

  // The next statement gets the reason, later ones 25P02, and COMMIT then answers ROLLBACK, as PostgreSQL does.
  await c.query('BEGIN');
  await c.query("INSERT INTO lost_commit VALUES ('b')");
  await kill();
  await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '57P01');
  await assert.rejects(c.query('SELECT 2'), (e: { code?: string }) => e.code === '25P02');
  await assert.rejects(c.query('BEGIN'), (e: { code?: string }) => e.code === '25P02', 'no BEGIN inside the failed transaction');
  assert.equal((await c.query('COMMIT')).command, 'ROLLBACK');

  // In the extended protocol (a named statement for COMMIT, as drivers with statement caches send it).
  await c.query('BEGIN');
  await c.query("INSERT INTO lost_commit VALUES ('c')");
  await kill();
  await assert.rejects(c.query({ name: 'one', text: 'SELECT $1::int AS x', values: [1] }), (e: { code?: string }) => e.code === '57P01');
  assert.equal((await c.query({ name: 'commit', text: 'COMMIT' })).command, 'ROLLBACK');
  // The statements the client prepared meanwhile are its own afterwards.
  await c.query('BEGIN');
  await c.query("INSERT INTO lost_commit VALUES ('d')");
  assert.equal((await c.query({ name: 'commit', text: 'COMMIT' })).command, 'COMMIT');
  assert.deepEqual((await c.query('SELECT v FROM lost_commit ORDER BY v')).rows, [{ v: 'd' }]);
});
