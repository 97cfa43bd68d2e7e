// The mirror's admin surface against a primary and a separate standalone server whose data differs in
// one row: GET/POST /api/v1/mirror, the report as JSON and as text, its reset, the mismatch events on
// the WebSocket stream, and `switchyard mirror report|on|off` run as a user runs them.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import WebSocket from 'ws';
import { freePort, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway, connectClient } from '../harness/gateway.js';
import type { Gateway } from '../../src/gateway.js';
import type { MirrorMismatchEvent, MirrorReportView, MirrorStatus } from '../../src/mirror/mirror.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const TOKEN = 'mirror-admin-test-token';

let cluster: PgCluster;
/** The mirror: the same table as the primary's, with row 3 different. */
let other: PgCluster;
let gw: Gateway;
let tmp: string;
/** A config file whose admin section points at gw, for the CLI. */
let configFile: string;
const clients: pg.Client[] = [];
const sockets: WebSocket[] = [];

const TABLE = `CREATE TABLE mirror_items (id int PRIMARY KEY, name text);
  INSERT INTO mirror_items VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')`;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-mirror-admin-'));
  cluster = await startCluster({});
  other = await startCluster({});
  await cluster.query(TABLE);
  await other.query(TABLE);
  await other.query(`UPDATE mirror_items SET name = 'drei' WHERE id = 3`);
  const adminPort = await freePort();
  gw = await startGateway(cluster, {
    admin: { port: adminPort, token: TOKEN },
    mirror: { enabled: true, target: { name: 'other', host: other.primary.host, port: other.primary.port } },
  });
  configFile = path.join(tmp, 'gw.yaml');
  fs.writeFileSync(
    configFile,
    [`admin: { host: 127.0.0.1, port: ${adminPort}, token: ${TOKEN} }`, `primary: { host: 127.0.0.1, port: ${cluster.primary.port} }`, ''].join('\n'),
  );
});

after(async () => {
  for (const s of sockets) s.terminate();
  for (const c of clients) await c.end().catch(() => {});
  await gw?.close();
  await cluster?.destroy();
  await other?.destroy();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const auth = { authorization: `Bearer ${TOKEN}` };

async function client(): Promise<pg.Client> {
  const c = await connectClient(gw, cluster);
  clients.push(c);
  return c;
}

async function api(method: string, url: string, body?: unknown, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(new URL(url, gw.adminUrl), {
    method,
    headers: { ...headers, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

async function report(): Promise<MirrorReportView> {
  const res = await api('GET', '/api/v1/mirror/report');
  assert.equal(res.status, 200);
  return (await res.json()) as MirrorReportView;
}

/** The report once `mirrored` copies have been compared (they run in the background). */
async function reportAfter(mirrored: number): Promise<MirrorReportView> {
  for (let i = 0; ; i++) {
    const r = await report();
    if (r.totals.mirrored >= mirrored) return r;
    assert.ok(i < 200, `only ${r.totals.mirrored} of ${mirrored} copies compared: ${JSON.stringify(r)}`);
    await sleep(50);
  }
}

function row(r: MirrorReportView, includes: string) {
  const found = r.fingerprints.find((f) => f.fingerprint.includes(includes));
  assert.ok(found, `no report row for "${includes}": ${JSON.stringify(r.fingerprints)}`);
  return found;
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The statements the tests run: two that differ on the mirror (row 3), two that do not. */
async function traffic(c: pg.Client): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await c.query('SELECT id, name FROM mirror_items ORDER BY id'); // differs
    await c.query('SELECT count(*) FROM mirror_items'); // the same
  }
  // Extended protocol, one fingerprint: differs for 3, the same for 1.
  await c.query('SELECT name FROM mirror_items WHERE id = $1', [3]);
  await c.query('SELECT name FROM mirror_items WHERE id = $1', [1]);
}
const TRAFFIC = 8;

// ------------------------------------------------------------------ tests

test('every mirror route needs the token', async () => {
  for (const [method, url] of [
    ['GET', '/api/v1/mirror'],
    ['POST', '/api/v1/mirror'],
    ['GET', '/api/v1/mirror/report'],
    ['GET', '/api/v1/mirror/report?format=text'],
    ['DELETE', '/api/v1/mirror/report'],
  ] as const) {
    const res = await api(method, url, undefined, {});
    assert.equal(res.status, 401, `${method} ${url}`);
    assert.equal(((await res.json()) as { error: string }).error, 'unauthorized');
  }
});

test('GET /api/v1/mirror: the settings in effect and zero totals before any traffic', async () => {
  const res = await api('GET', '/api/v1/mirror');
  assert.equal(res.status, 200);
  const s = (await res.json()) as MirrorStatus;
  assert.equal(s.enabled, true);
  assert.equal(s.target, `other (${other.primary.host}:${other.primary.port})`);
  assert.equal(s.statements, 'reads');
  assert.equal(s.sample_rate, 1);
  assert.deepEqual(s.totals, { mirrored: 0, matched: 0, mismatched: 0, lag: 0, errors: 0, dropped: 0 });
  assert.equal(s.queue.capacity, 1000);
  const status = (await (await api('GET', '/api/v1/status')).json()) as { mirror: MirrorStatus };
  assert.deepEqual(status.mirror.target, s.target, '/api/v1/status carries the same');
});

test('the report: differing statements counted as mismatches, identical ones as matches; mismatch events on the stream with the rows', async () => {
  const ws = new WebSocket(new URL('/api/v1/events/stream?types=mirror_mismatch', gw.adminUrl).href.replace(/^http/, 'ws'), { headers: auth });
  sockets.push(ws);
  const events: MirrorMismatchEvent[] = [];
  ws.on('message', (data) => {
    const e = JSON.parse(String(data)) as { type: string };
    if (e.type === 'mirror_mismatch') events.push(e as MirrorMismatchEvent);
  });
  await new Promise((resolve, reject) => ws.once('message', resolve).once('error', reject)); // stream_started

  await traffic(await client());
  const r = await reportAfter(TRAFFIC);
  assert.deepEqual(r.totals, { mirrored: TRAFFIC, matched: 4, mismatched: 4, lag: 0, errors: 0, dropped: 0 }, JSON.stringify(r.fingerprints));
  const ordered = row(r, 'mirror_items ORDER BY id');
  assert.deepEqual([ordered.mirrored, ordered.matched, ordered.mismatched], [3, 0, 3]);
  const count = row(r, 'count(*)');
  assert.deepEqual([count.mirrored, count.matched, count.mismatched], [3, 3, 0]);
  const byId = row(r, 'WHERE id =');
  assert.deepEqual([byId.mirrored, byId.matched, byId.mismatched], [2, 1, 1]);
  for (const f of [ordered, count, byId]) {
    for (const side of [f.primary_ms, f.mirror_ms]) {
      assert.ok(side.p50 !== null && side.p50 > 0 && side.p50 <= side.p95! && side.p95! <= side.p99!, `percentiles of ${f.fingerprint}: ${JSON.stringify(side)}`);
    }
  }

  for (let i = 0; events.length < 4; i++) {
    assert.ok(i < 100, `mismatch events: ${events.length} of 4`);
    await sleep(50);
  }
  const e = events.find((x) => x.sql.includes('ORDER BY id'))!;
  assert.ok(e, JSON.stringify(events));
  assert.equal(e.node, 'other');
  assert.ok(e.differences.includes('rows'), JSON.stringify(e.differences));
  assert.deepEqual(
    e.rows.map((x) => [x.side, x.row]).sort(),
    [
      ['mirror', ['3', 'drei']],
      ['primary', ['3', 'three']],
    ],
  );
  assert.ok(e.primary_ms > 0 && e.mirror_ms !== null && e.mirror_ms > 0);
  assert.ok(!events.some((x) => x.sql.includes('count(')), 'no event for a statement that matched');
});

test('GET /api/v1/mirror/report?format=text: a line of totals, then the table', async () => {
  const res = await api('GET', '/api/v1/mirror/report?format=text');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  const lines = text.split('\n');
  assert.match(lines[0]!, /^mirror on, reads to other \(.+\), sample rate 1: 8 mirrored, 4 matched, 4 mismatched, 0 lag, 0 errors, 0 dropped; queue 0\/1000/);
  const head = lines.findIndex((l) => l.startsWith('statement'));
  assert.ok(head > 0, text);
  assert.match(lines[head]!, /mirrored +match +mismatch +lag +errors +dropped +primary p50\/p95\/p99 ms +mirror p50\/p95\/p99 ms$/);
  assert.match(text, /^SELECT id, name FROM mirror_items ORDER BY id +3 +0 +3 +0 +0 +0 /m);
  assert.match(text, /^SELECT count\(\*\) FROM mirror_items +3 +3 +0 /m);

  const bad = await api('GET', '/api/v1/mirror/report?format=xml');
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: string }).error, 'bad_request');
});

test('switchyard mirror report prints the same table; --json the report', async () => {
  const text = await cli(['mirror', 'report', '-c', configFile]);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout, await (await api('GET', '/api/v1/mirror/report?format=text')).text());
  assert.match(text.stdout, /^mirror on, .*: 8 mirrored, 4 matched, 4 mismatched/);
  assert.match(text.stdout, /^SELECT id, name FROM mirror_items ORDER BY id +3 +0 +3 /m);

  const json = await cli(['mirror', 'report', '-c', configFile, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const r = JSON.parse(json.stdout) as MirrorReportView;
  assert.equal(r.totals.mismatched, 4);
  assert.equal(row(r, 'ORDER BY id').mismatched, 3);

  // Found through the file's admin section, as reload finds it: a wrong token or no admin API is an error.
  const wrongToken = path.join(tmp, 'wrong-token.yaml');
  fs.writeFileSync(wrongToken, fs.readFileSync(configFile, 'utf8').replace(TOKEN, 'not-the-right-admin-token'));
  const denied = await cli(['mirror', 'report', '-c', wrongToken]);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /switchyard mirror report: 401 .*unauthorized/);
  const noAdmin = path.join(tmp, 'no-admin.yaml');
  fs.writeFileSync(noAdmin, `admin: { port: 0 }\nprimary: { host: 127.0.0.1 }\n`);
  const none = await cli(['mirror', 'report', '-c', noAdmin]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /admin\.port is 0/);
});

test('DELETE /api/v1/mirror/report starts the report afresh', async () => {
  const res = await api('DELETE', '/api/v1/mirror/report');
  assert.equal(res.status, 200);
  const emptied = (await res.json()) as MirrorReportView;
  assert.deepEqual(emptied.fingerprints, []);
  assert.deepEqual(emptied.totals, { mirrored: 0, matched: 0, mismatched: 0, lag: 0, errors: 0, dropped: 0 });
  assert.equal(emptied.enabled, true, 'the settings are untouched');
  assert.deepEqual((await report()).fingerprints, []);

  await (await client()).query('SELECT count(*) FROM mirror_items');
  const r = await reportAfter(1);
  assert.deepEqual(r.fingerprints.map((f) => [f.fingerprint, f.mirrored]), [['SELECT count(*) FROM mirror_items', 1]]);
});

test('POST /api/v1/mirror: off stops copying, on with a rate starts it again; a bad body is refused with every problem', async () => {
  await api('DELETE', '/api/v1/mirror/report');
  const off = await api('POST', '/api/v1/mirror', { enabled: false });
  assert.equal(off.status, 200);
  assert.equal(((await off.json()) as MirrorStatus).enabled, false);
  const c = await client();
  await traffic(c);
  await sleep(200);
  assert.equal((await report()).totals.mirrored, 0, 'nothing copied while off');

  const on = await api('POST', '/api/v1/mirror', { enabled: true, sample_rate: 0.5 });
  assert.equal(on.status, 200);
  const s = (await on.json()) as MirrorStatus;
  assert.deepEqual([s.enabled, s.sample_rate, s.target], [true, 0.5, `other (${other.primary.host}:${other.primary.port})`]);
  // Only the rate: enabled stays as it is.
  const rate = (await (await api('POST', '/api/v1/mirror', { sample_rate: 1 })).json()) as MirrorStatus;
  assert.deepEqual([rate.enabled, rate.sample_rate], [true, 1]);
  await traffic(c);
  assert.equal((await reportAfter(TRAFFIC)).totals.mismatched, 4);

  for (const [body, paths] of [
    [{ sample_rate: 2, enabled: 'yes' }, ['sample_rate', 'enabled']],
    [{ sample_rate: 0.5, bogus: 1 }, ['(body)']],
    [[1, 2], ['(body)']],
    ['"on"', ['(body)']],
  ] as const) {
    const res = await api('POST', '/api/v1/mirror', body);
    assert.equal(res.status, 400, JSON.stringify(body));
    const err = (await res.json()) as { error: string; message: string; problems: { path: string; message: string }[] };
    assert.equal(err.error, 'invalid_mirror', JSON.stringify(err));
    assert.deepEqual(err.problems.map((p) => p.path).sort(), [...paths].sort(), JSON.stringify(err.problems));
  }
  const noToken = await api('POST', '/api/v1/mirror', '{"enabled":', {});
  assert.equal(noToken.status, 401, 'the token is checked before the body');
  const malformed = await api('POST', '/api/v1/mirror', '{"enabled":');
  assert.equal(malformed.status, 400);
  const now = (await (await api('GET', '/api/v1/mirror')).json()) as MirrorStatus;
  assert.deepEqual([now.enabled, now.sample_rate], [true, 1], 'a refused body changes nothing');
});

test('switchyard mirror off / on --rate switch mirroring through the admin API', async () => {
  const off = await cli(['mirror', 'off', '-c', configFile]);
  assert.equal(off.code, 0, off.stderr);
  assert.equal((JSON.parse(off.stdout) as MirrorStatus).enabled, false);
  assert.equal(((await (await api('GET', '/api/v1/mirror')).json()) as MirrorStatus).enabled, false);

  const on = await cli(['mirror', 'on', '-c', configFile, '--rate', '0.25']);
  assert.equal(on.code, 0, on.stderr);
  const s = (await (await api('GET', '/api/v1/mirror')).json()) as MirrorStatus;
  assert.deepEqual([s.enabled, s.sample_rate], [true, 0.25]);
  assert.deepEqual(JSON.parse(on.stdout), s);

  for (const bad of ['2', 'half', '']) {
    const r = await cli(['mirror', 'on', '-c', configFile, '--rate', bad]);
    assert.notEqual(r.code, 0, `--rate "${bad}"`);
    assert.match(r.stderr, /--rate must be a number from 0 to 1/);
  }
  const unknown = await cli(['mirror', 'sideways', '-c', configFile]);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /expected report, on or off, got "sideways"/);
  assert.equal(((await (await api('GET', '/api/v1/mirror')).json()) as MirrorStatus).sample_rate, 0.25, 'refused commands changed nothing');

  const help = await cli(['--help']);
  assert.match(help.stdout, /switchyard mirror report/);
  assert.match(help.stdout, /switchyard mirror on\|off/);
});
