// The admin HTTP API against a real primary and two replicas: every route through inject() and a real
// listen, the token, the OpenAPI document against the registered routes, /metrics as Prometheus text
// whose counters move with traffic, and the WebSocket event stream (a replica-banned event within a
// second of the replica being killed).

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import WebSocket from 'ws';
import { freePort, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway, connectClient } from '../harness/gateway.js';
import { buildAdmin, registeredRoutes } from '../../src/admin/server.js';
import type { Gateway } from '../../src/gateway.js';
import { REDACTED } from '../../src/config/load.js';

const TOKEN = 'admin-api-test-token-0123';
let cluster: PgCluster;
let gw: Gateway;
const clients: pg.Client[] = [];

before(async () => {
  cluster = await startCluster({ replicas: 2 });
  gw = await startGateway(cluster, {
    pool: { mode: 'transaction', size: 10 },
    replicas: cluster.replicas.map((r) => ({ name: r.name, host: r.host, port: r.port })),
    admin: { port: await freePort(), token: TOKEN },
    monitor: { interval_ms: 100 },
    balancer: { ban_ms: 60_000 },
  });
});

after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await gw?.close();
  await cluster?.destroy();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function client(): Promise<pg.Client> {
  const c = await connectClient(gw, cluster);
  clients.push(c);
  return c;
}

const auth = { authorization: `Bearer ${TOKEN}` };

/** Every sample line of a Prometheus text exposition, checked line by line. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|\+Inf|-Inf))$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(m[1]!) || types.has(family), `sample before its # TYPE: ${line}`);
    samples.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return samples;
}

function sum(samples: Map<string, number>, prefix: string): number {
  let n = 0;
  for (const [k, v] of samples) if (k.startsWith(prefix)) n += v;
  return n;
}

test('every route answers through inject(); the token is required except for health and the page; errors are JSON', async () => {
  const app = buildAdmin(gw, gw.config.admin);
  await app.ready();
  const get = async (url: string, headers: Record<string, string> = auth) => app.inject({ method: 'GET', url, headers });
  for (const url of ['/healthz', '/readyz', '/']) assert.equal((await get(url, {})).statusCode, 200, url);
  assert.match((await get('/', {})).headers['content-type'] as string, /text\/html/);
  const protectedGets = ['/metrics', '/api/v1/status', '/api/v1/nodes', '/api/v1/pools', '/api/v1/clients', '/api/v1/config', '/api/v1/topology', '/api/v1/openapi.json'];
  for (const url of protectedGets) {
    const denied = await get(url, {});
    assert.equal(denied.statusCode, 401, url);
    assert.equal(denied.json().error, 'unauthorized');
    assert.equal((await get(url, { authorization: 'Bearer wrong' })).statusCode, 401, url);
    assert.equal((await get(url)).statusCode, 200, url);
  }
  for (const [method, url] of [
    ['POST', '/api/v1/replicas'],
    ['DELETE', '/api/v1/replicas/replica1'],
    ['POST', '/api/v1/reload'],
  ] as const) {
    assert.equal((await app.inject({ method, url })).statusCode, 401, `${method} ${url}`);
  }
  const nodes = (await get('/api/v1/nodes')).json() as { name: string; role: string }[];
  assert.deepEqual(nodes.map((n) => [n.name, n.role]), [['primary', 'primary'], ['replica1', 'replica'], ['replica2', 'replica']]);
  const config = (await get('/api/v1/config')).json() as { auth: { users: { password: string }[] } };
  assert.equal(config.auth.users[0]!.password, REDACTED, 'secrets are redacted');
  const c = await client();
  await c.query('SELECT 1');
  const listed = (await get('/api/v1/clients')).json() as { user: string; doing: string }[];
  assert.ok(listed.some((x) => x.user === cluster.superuser && x.doing === 'idle'), JSON.stringify(listed));
  const pools = (await get('/api/v1/pools')).json() as { node: string }[];
  assert.ok(pools.length > 0);
  // Errors: JSON with a code and a message.
  const reload = await app.inject({ method: 'POST', url: '/api/v1/reload', headers: auth });
  assert.equal(reload.statusCode, 409);
  assert.equal(reload.json().error, 'no_config_file');
  const missing = await get('/api/v1/nope');
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.json().error, 'not_found');
  const badFlag = await app.inject({ method: 'DELETE', url: '/api/v1/replicas/replica1?drain=maybe', headers: auth });
  assert.equal(badFlag.statusCode, 400);
  await app.close();
});

test('the OpenAPI document lists every route, and nothing that is not one', async () => {
  const app = buildAdmin(gw, gw.config.admin);
  await app.ready();
  const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json', headers: auth })).json() as { openapi: string; paths: Record<string, Record<string, unknown>> };
  assert.match(doc.openapi, /^3\./);
  const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
  const registered = new Set(registeredRoutes(app).map((r) => `${r.method} ${r.url.replace(/:([a-zA-Z_]+)/g, '{$1}')}`));
  assert.ok(registered.size >= 15, `routes seen: ${[...registered].join(', ')}`);
  assert.deepEqual([...registered].filter((r) => !documented.has(r)), [], 'registered but not documented');
  assert.deepEqual([...documented].filter((r) => !registered.has(r)), [], 'documented but not registered');
  await app.close();
});

test('/metrics over a real listen: Prometheus text whose counters move with traffic', async () => {
  const scrape = async () => {
    const res = await fetch(new URL('/metrics', gw.adminUrl), { headers: auth });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/plain/);
    return parsePrometheus(await res.text());
  };
  const before = await scrape();
  const c = await client();
  for (let i = 0; i < 50; i++) await c.query('SELECT 1');
  await c.query('CREATE TEMP TABLE IF NOT EXISTS t_metrics (x int)'); // a write, and a pin
  await assert.rejects(new pg.Client({ connectionString: gatewayUrl(gw, cluster.superuser, 'wrong') }).connect());
  const afterTraffic = await scrape();
  const delta = (prefix: string) => sum(afterTraffic, prefix) - sum(before, prefix);
  assert.ok(delta('switchyard_transactions_total{target="replica",reason="read"}') >= 50, 'reads counted as replica transactions');
  assert.ok(delta('switchyard_queries_total{target="replica"') >= 50);
  assert.ok(delta('switchyard_queries_total{target="primary"') >= 1, 'the write counted on the primary');
  assert.ok(delta('switchyard_query_duration_seconds_count{target="replica"}') >= 50, 'latency observed per target');
  assert.ok(delta('switchyard_client_bytes_total{direction="in"}') > 0);
  assert.ok(delta('switchyard_client_bytes_total{direction="out"}') > 0);
  assert.equal(delta('switchyard_auth_failures_total'), 1);
  assert.equal(delta('switchyard_pins_total{reason="temp_table"}'), 1);
  assert.ok((afterTraffic.get('switchyard_client_connections{state="ready"}') ?? 0) >= 1);
  for (const node of ['primary', 'replica1', 'replica2']) {
    assert.ok(afterTraffic.has(`switchyard_server_connections{node="${node}",state="idle"}`), node);
    assert.ok(afterTraffic.has(`switchyard_clients_waiting{node="${node}"}`), node);
  }
  assert.ok(afterTraffic.has('switchyard_replica_lag_bytes{node="replica1"}'));
  assert.ok(afterTraffic.has('switchyard_replica_lag_seconds{node="replica2"}'));
  assert.equal(afterTraffic.get('switchyard_node_up{node="replica1",role="replica"}'), 1);
});

test('the event stream: filtered by type, and a replica-banned event within a second of a replica being killed', { timeout: 60_000 }, async (t) => {
  const url = new URL('/api/v1/events/stream', gw.adminUrl);
  url.protocol = 'ws:';
  // Without the token: refused.
  const refused = await new Promise<number>((resolve) => {
    const ws = new WebSocket(url.href);
    ws.on('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    ws.on('open', () => resolve(101));
    ws.on('error', () => {});
  });
  assert.equal(refused, 401);

  url.searchParams.set('token', TOKEN);
  url.searchParams.set('types', 'replica_banned,client_connected');
  const ws = new WebSocket(url.href);
  const got: { type: string; at: string; node?: string; received: number }[] = [];
  ws.on('message', (data) => got.push({ ...(JSON.parse(String(data)) as { type: string; at: string }), received: Date.now() }));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await sleep(100);
  await client(); // a client_connected event
  await sleep(300);
  assert.deepEqual([...new Set(got.map((e) => e.type))].sort(), ['client_connected', 'stream_started']);

  const victim = cluster.replicas[1]!;
  const killedAt = Date.now();
  await cluster.stop(victim, 'immediate');
  const deadline = Date.now() + 5000;
  while (!got.some((e) => e.type === 'replica_banned') && Date.now() < deadline) await sleep(20);
  const banned = got.find((e) => e.type === 'replica_banned');
  assert.ok(banned, 'replica_banned arrived');
  assert.equal(banned.node, victim.name);
  const ms = banned.received - killedAt;
  t.diagnostic(`replica_banned reached the WebSocket ${ms} ms after the kill began`);
  assert.ok(ms <= 1000, `${ms} ms`);
  assert.ok(got.every((e) => ['stream_started', 'client_connected', 'replica_banned'].includes(e.type)), 'only the types asked for');
  ws.close();
  await cluster.start(victim);
});

test('the stream sends snapshots of the numbers each second by default', { timeout: 20_000 }, async () => {
  const url = new URL('/api/v1/events/stream', gw.adminUrl);
  url.protocol = 'ws:';
  url.searchParams.set('token', TOKEN);
  url.searchParams.set('snapshot_ms', '200');
  const ws = new WebSocket(url.href);
  const snaps: { nodes: { name: string; leases: number }[] }[] = [];
  ws.on('message', (data) => {
    const e = JSON.parse(String(data)) as { type: string };
    if (e.type === 'snapshot') snaps.push(e as unknown as (typeof snaps)[number]);
  });
  await new Promise((resolve) => ws.once('open', resolve));
  const deadline = Date.now() + 5000;
  while (snaps.length < 3 && Date.now() < deadline) await sleep(50);
  ws.close();
  assert.ok(snaps.length >= 3);
  assert.deepEqual(snaps[0]!.nodes.map((n) => n.name), ['primary', 'replica1', 'replica2']);
});

test('txn_routed (one per transaction, with target and reason) reaches a stream that asks for it, and only such a stream', { timeout: 20_000 }, async () => {
  const open = async (types?: string) => {
    const url = new URL('/api/v1/events/stream', gw.adminUrl);
    url.protocol = 'ws:';
    url.searchParams.set('token', TOKEN);
    url.searchParams.set('snapshot_ms', '0');
    if (types) url.searchParams.set('types', types);
    const ws = new WebSocket(url.href);
    const got: { type: string; target?: string; reason?: string; node?: string }[] = [];
    ws.on('message', (data) => got.push(JSON.parse(String(data))));
    await new Promise((resolve) => ws.once('open', resolve));
    return { ws, got };
  };
  const asked = await open('txn_routed');
  const all = await open();
  const c = await client();
  await c.query('SELECT 1');
  await c.query('CREATE TEMP TABLE IF NOT EXISTS t_routed (x int)');
  await sleep(300);
  asked.ws.close();
  all.ws.close();
  const routed = asked.got.filter((e) => e.type === 'txn_routed');
  assert.ok(routed.some((e) => e.target === 'replica' && e.reason === 'read' && /^replica/.test(e.node!)), JSON.stringify(routed));
  assert.ok(routed.some((e) => e.target === 'primary'), JSON.stringify(routed));
  assert.ok(all.got.some((e) => e.type === 'client_connected'));
  assert.ok(!all.got.some((e) => e.type === 'txn_routed'), 'not on an unfiltered stream');
});

test('another origin is refused; without a token only a literal or loopback Host is answered (no DNS rebinding)', async () => {
  const app = buildAdmin(gw, gw.config.admin);
  await app.ready();
  const cross = await app.inject({ method: 'POST', url: '/api/v1/reload', headers: { ...auth, origin: 'http://evil.example' } });
  assert.equal(cross.statusCode, 403);
  assert.equal(cross.json().error, 'forbidden');
  const same = await app.inject({ method: 'GET', url: '/api/v1/nodes', headers: { ...auth, host: '127.0.0.1:9432', origin: 'http://127.0.0.1:9432' } });
  assert.equal(same.statusCode, 200);
  await app.close();
  const open = buildAdmin(gw, { ...gw.config.admin, token: undefined });
  await open.ready();
  assert.equal((await open.inject({ method: 'GET', url: '/api/v1/nodes', headers: { host: 'rebound.example:9432' } })).statusCode, 403);
  assert.equal((await open.inject({ method: 'GET', url: '/api/v1/nodes', headers: { host: '127.0.0.1:9432' } })).statusCode, 200);
  assert.equal((await open.inject({ method: 'GET', url: '/healthz', headers: { host: 'rebound.example' } })).statusCode, 200, 'health stays open');
  await open.close();
});

test('a transaction that moves to the primary is one transaction and one switch; logins and unauthenticated names add nothing', async () => {
  await cluster.query('CREATE TABLE IF NOT EXISTS moved (x int)');
  const scrape = async () => parsePrometheus(await (await fetch(new URL('/metrics', gw.adminUrl), { headers: auth })).text());
  const statsBefore = gw.databaseStats().find((d) => d.database === 'postgres')!;
  const before = await scrape();
  const c = await client();
  await c.query('BEGIN');
  await c.query('SELECT 1');
  await c.query('INSERT INTO moved VALUES (1)');
  await c.query('COMMIT');
  // A startup packet naming a database, then gone before logging in.
  const raw = await import('node:net').then((net) => net.connect(gw.port, '127.0.0.1'));
  await new Promise((r) => raw.once('connect', r));
  const body = Buffer.from(`user\0nobody\0database\0ghost_db_from_a_stranger\0\0`);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  raw.write(Buffer.concat([head, body]));
  await sleep(200);
  raw.destroy();
  await sleep(200);
  const after = await scrape();
  const d = (k: string) => sum(after, k) - sum(before, k);
  assert.equal(d('switchyard_transactions_total'), 1, 'the login lease and the move are not transactions');
  assert.equal(d('switchyard_replica_switches_total'), 1);
  const statsAfter = gw.databaseStats().find((x) => x.database === 'postgres')!;
  assert.equal(statsAfter.xact_count - statsBefore.xact_count, 1);
  assert.ok(statsAfter.xact_time_us - statsBefore.xact_time_us < 5_000_000, `xact time grew by ${statsAfter.xact_time_us - statsBefore.xact_time_us} us`);
  assert.equal(gw.databaseStats().find((x) => x.database === 'ghost_db_from_a_stranger'), undefined);
});
