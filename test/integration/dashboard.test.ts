// The dashboard at the admin port's "/" in headless Chromium, against a primary and two streaming
// replicas: it takes the token from the URL fragment and shows the nodes with their roles, its split
// follows read and write traffic, the event log fills and filters, the Mirror panel shows the totals and
// a mismatch against a separate server whose data differs, it follows a replica going down and coming
// back, and it asks for the token when it has none. Saves a full-page screenshot.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import { freePort, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway, connectClient } from '../harness/gateway.js';
import type { Gateway } from '../../src/gateway.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'dashboard-test-token';
/** Set to a path to keep the screenshot there (docs/dashboard.png is made this way); otherwise it goes to a temp dir removed at the end. */
const SCREENSHOT_ENV = process.env.SWITCHYARD_DASHBOARD_SCREENSHOT;

let cluster: PgCluster;
/** A standalone server for the mirror test, its data different from the cluster's in one row. */
let mirrorServer: PgCluster | undefined;
let gw: Gateway;
let browser: Browser;
let page: Page;
let tmp: string;
const clients = new Set<pg.Client>();
/** Uncaught errors and console errors of every page opened: a broken script fails the last test. */
const pageErrors: string[] = [];

before(async () => {
  // Checked first, so a machine without it fails at once with the fix instead of after starting servers.
  assert.ok(fs.existsSync(CHROMIUM), `headless Chromium is missing at ${CHROMIUM}: install it with "apt-get install -y chromium" (.ci/run does)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-dashboard-'));
  cluster = await startCluster({ replicas: 2 });
  await cluster.query('CREATE TABLE dashboard_ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
  await cluster.waitStreaming();
  gw = await startGateway(cluster, {
    pool: { mode: 'transaction', size: 10 },
    replicas: cluster.replicas.map((r) => ({ name: r.name, host: r.host, port: r.port })),
    admin: { port: await freePort(), token: TOKEN },
    monitor: { interval_ms: 100 },
    // Short, so the replica stopped and started again below takes reads soon after it is back.
    balancer: { ban_ms: 1000 },
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await openPage(`${adminUrl()}#token=${encodeURIComponent(TOKEN)}`);
});

after(async () => {
  await stopTraffic?.();
  for (const c of clients) await c.end().catch(() => {});
  await browser?.close().catch(() => {});
  await gw?.close();
  await cluster?.destroy();
  await mirrorServer?.destroy();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function adminUrl(): string {
  assert.ok(gw.adminUrl, 'the gateway has no admin listener');
  return gw.adminUrl;
}

async function openPage(url: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const p = await context.newPage();
  p.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
  p.on('console', (msg) => {
    // A refused token is answered 401 on purpose (the form test); Chromium logs that as a failed resource.
    if (msg.type() === 'error' && !/status of 401/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
  });
  await p.goto(url);
  return p;
}

async function client(): Promise<pg.Client> {
  const c = await connectClient(gw, cluster);
  clients.add(c);
  return c;
}

let stopTraffic: (() => Promise<void>) | undefined;

/**
 * Reads on `readers` clients (one SELECT per transaction, so they go to the replicas) and, with
 * `writes`, one client inserting (on the primary), each paced a little so the browser keeps a core.
 * Resolves once every client is connected; stopTraffic() ends the loops.
 */
async function startTraffic(readers: number, writes: boolean): Promise<{ queries: () => number }> {
  let running = true;
  let queries = 0;
  const loop = async (c: pg.Client, sql: string, pauseMs: number) => {
    while (running) {
      await c.query(sql);
      queries++;
      await sleep(pauseMs);
    }
  };
  const loops: Promise<void>[] = [];
  for (let i = 0; i < readers; i++) loops.push(loop(await client(), 'SELECT 1', 4));
  if (writes) loops.push(loop(await client(), 'INSERT INTO dashboard_ticks DEFAULT VALUES', 25));
  stopTraffic = async () => {
    running = false;
    stopTraffic = undefined;
    await Promise.all(loops);
  };
  return { queries: () => queries };
}

/** The transactions/s the page shows for a node in the split (NaN before it has two snapshots). */
async function splitRate(name: string): Promise<number> {
  return Number(await page.locator(`#split [data-split-node="${name}"]`).textContent());
}

function cell(node: string, field: string) {
  return page.locator(`#nodes tr[data-node="${node}"] td[data-field="${field}"]`);
}

// ------------------------------------------------------------------ tests

test('takes the token from the fragment, clears it, and shows the nodes with their roles', async () => {
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: 10_000 });
  for (const [node, role] of [
    ['primary', 'primary'],
    ['replica1', 'replica'],
    ['replica2', 'replica'],
  ] as const) {
    await page.locator(`#nodes tr[data-node="${node}"]`).waitFor({ timeout: 5000 });
    assert.equal((await cell(node, 'role').textContent())?.trim(), role, `${node}'s role`);
  }
  assert.equal(await page.locator('#nodes tbody tr[data-node]').count(), 3);
  // Every node passes a probe within a few monitor rounds.
  await page.waitForFunction(() => [...document.querySelectorAll('#nodes tr[data-node]')].every((tr) => tr.getAttribute('data-state') === 'active'), undefined, { timeout: 10_000 });
  // Replicas show a lag (bytes and time); the primary shows none.
  assert.match((await cell('replica1', 'lag').textContent()) ?? '', /B · \d/);
  assert.equal((await cell('primary', 'lag').textContent())?.trim(), '–');
  assert.match((await page.locator('#version').textContent()) ?? '', /^\d+\.\d+\.\d+$/);
  assert.equal((await page.locator('#mode').textContent())?.trim(), 'transaction');

  assert.equal(await page.evaluate(() => location.hash), '', 'the token is cleared from the address bar');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('switchyard.admin_token')), TOKEN);
});

test('the split shows transactions/s per node after traffic, and the pools fill', async (t) => {
  const traffic = await startTraffic(3, true);
  // Reads spread over both replicas; the writer's inserts run on the primary.
  await page.waitForFunction(
    () => ['replica1', 'replica2', 'primary'].every((n) => Number(document.querySelector(`#split [data-split-node="${n}"]`)?.textContent) > 0),
    undefined,
    { timeout: 10_000 },
  );
  const r1 = await splitRate('replica1');
  const r2 = await splitRate('replica2');
  const p = await splitRate('primary');
  assert.ok(r1 > 0 && r2 > 0 && p > 0, `rates: replica1 ${r1}, replica2 ${r2}, primary ${p}`);
  assert.ok(r1 + r2 > p, `most transactions are reads on the replicas (replica1 ${r1} + replica2 ${r2} vs primary ${p} txn/s)`);
  assert.match((await page.locator('#split-replica-share').textContent()) ?? '', /^\d+%$/);
  assert.ok(Number(await page.locator('#split-total').textContent()) > 0);
  assert.ok((await page.locator('#split-history rect').count()) > 0, 'the history chart draws bars');

  // Every node that served traffic has a pool row; the clients are counted.
  for (const node of ['primary', 'replica1', 'replica2']) {
    await page.locator(`#pools tr[data-pool^="${node}/postgres/"]`).waitFor({ timeout: 5000 });
  }
  await page.waitForFunction(() => Number(document.querySelector('#clients .chip b')?.textContent) >= 4, undefined, { timeout: 5000 });

  // Taken under load, after some history; for the committed picture, a fuller chart.
  await sleep(SCREENSHOT_ENV ? 15_000 : 2000);
  const file = SCREENSHOT_ENV ? path.resolve(SCREENSHOT_ENV) : path.join(tmp, 'dashboard.png');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: true });
  const png = fs.readFileSync(file);
  assert.ok(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), `${file} is a PNG`);
  assert.ok(png.length > 10_000, `${file} has content (${png.length} bytes)`);
  t.diagnostic(`screenshot: ${file}`);

  assert.ok(traffic.queries() > 100, `traffic ran (${traffic.queries()} queries)`);
  await stopTraffic?.();
  // Without traffic the rates fall back to zero at the next snapshots.
  await page.waitForFunction(() => Number(document.querySelector('#split [data-split-node="replica1"]')?.textContent) === 0, undefined, { timeout: 5000 });
});

test('the event log shows gateway events, newest first, and filters by type', async () => {
  await page.locator('#events li[data-type="client_connected"]').first().waitFor({ timeout: 5000 });
  const count = await page.locator('#events li').count();
  assert.ok(count > 0 && count <= 200, `${count} events in the log`);

  const authenticated = () => page.locator('#events li[data-type="client_authenticated"]').count();
  const before = await authenticated();
  const c = await client();
  await c.query('SELECT 1');
  await page.waitForFunction((n) => document.querySelectorAll('#events li[data-type="client_authenticated"]').length > n, before, { timeout: 5000 });
  // Newest first: this client's authentication is listed above its connection.
  const order = await page.locator('#events li').evaluateAll((items) => items.map((li) => ({ type: li.getAttribute('data-type'), text: li.textContent ?? '' })));
  const authAt = order.findIndex((e) => e.type === 'client_authenticated');
  const id = /client=(\d+)/.exec(order[authAt]!.text)?.[1];
  assert.ok(id, `the event names its client: ${order[authAt]!.text}`);
  assert.match(order[authAt]!.text, new RegExp(`user=${cluster.superuser}`));
  const connectedAt = order.findIndex((e) => e.type === 'client_connected' && e.text.includes(`client=${id} `));
  assert.ok(connectedAt > authAt, `client ${id}: client_connected (at ${connectedAt}) is listed below client_authenticated (at ${authAt})`);

  await page.selectOption('#event-filter', 'client_connected');
  const visible = await page.locator('#events li:visible').evaluateAll((items) => items.map((li) => li.getAttribute('data-type')));
  assert.ok(visible.length > 0);
  assert.deepEqual(new Set(visible), new Set(['client_connected']));
  await page.selectOption('#event-filter', '');
  assert.equal(await page.locator('#events li:visible').count(), await page.locator('#events li').count());
});

test('the Mirror panel shows the totals from the snapshots and a mismatch with its statement, differences, node and latencies', async () => {
  const mirror = page.locator('#mirror');
  assert.equal(await mirror.getAttribute('data-enabled'), 'false');
  assert.equal((await page.locator('#mirror-state').textContent())?.trim(), 'off');
  assert.equal(await page.locator('#mirror-mismatches tr[data-fingerprint]').count(), 0);

  const table = `CREATE TABLE mirror_items (id int PRIMARY KEY, name text);
    INSERT INTO mirror_items VALUES (1, 'one'), (2, 'two'), (3, 'three')`;
  mirrorServer = await startCluster({});
  await mirrorServer.query(table);
  await mirrorServer.query(`UPDATE mirror_items SET name = 'drei' WHERE id = 3`);
  await cluster.query(table);
  // Mirrored only once the replicas (where the reads go) have the rows: otherwise the client's error is a mismatch too.
  for (const r of cluster.replicas) {
    for (let i = 0; !(await cluster.query('SELECT count(*) FROM mirror_items', r).then(() => true, () => false)); i++) {
      assert.ok(i < 100, `${r.name} replays the table`);
      await sleep(50);
    }
  }
  gw.configureMirror({ enabled: true, target: { name: 'other', host: mirrorServer.primary.host, port: mirrorServer.primary.port } });
  try {
    await page.waitForFunction(() => document.querySelector('#mirror')?.getAttribute('data-enabled') === 'true', undefined, { timeout: 5000 });
    assert.match((await page.locator('#mirror-state').textContent()) ?? '', /^on · reads → other \(127\.0\.0\.1:\d+\)/);

    const c = await client();
    const sql = 'SELECT id, name FROM mirror_items ORDER BY id';
    const shown = page.locator('#mirror-mismatches tr[data-fingerprint="' + sql + '"]', { hasText: 'drei' });
    for (let i = 0; (await shown.count()) === 0; i++) {
      assert.ok(i < 100, 'a mismatch about row 3 is listed');
      await c.query(sql);
      await c.query('SELECT count(*) FROM mirror_items');
      await sleep(100);
    }
    const row = shown.first();
    assert.equal((await row.locator('td[data-field="statement"]').textContent())?.trim(), sql);
    const differences = (await row.locator('td[data-field="differences"]').textContent()) ?? '';
    assert.match(differences, /rows/);
    assert.match(differences, /primary: 3, three/);
    assert.match(differences, /mirror: 3, drei/);
    assert.equal((await row.locator('td[data-field="node"]').textContent())?.trim(), 'other');
    for (const side of ['primary_ms', 'mirror_ms']) assert.match((await row.locator(`td[data-field="${side}"]`).textContent()) ?? '', /^\d+\.\d\d ms$/, side);
    // The matching count(*) raises no event, so it is never listed.
    assert.equal(await page.locator('#mirror-mismatches tr[data-fingerprint="SELECT count(*) FROM mirror_items"]').count(), 0);
    await page.locator('#events li[data-type="mirror_mismatch"]').first().waitFor({ timeout: 5000 });

    // The totals follow the snapshots: the same numbers as the API's.
    const total = (field: string) => page.locator(`#mirror [data-mirror-field="${field}"]`).textContent();
    await page.waitForFunction(() => Number(document.querySelector('#mirror [data-mirror-field="mismatched"]')?.textContent) >= 1, undefined, { timeout: 5000 });
    await page.waitForFunction(() => Number(document.querySelector('#mirror [data-mirror-field="matched"]')?.textContent) >= 1, undefined, { timeout: 5000 });
    const api = gw.mirror.status();
    assert.ok(Number(await total('mirrored')) >= 2 && Number(await total('mirrored')) <= api.totals.mirrored);
    assert.equal(await total('dropped'), String(api.totals.dropped));
    assert.match((await total('queue')) ?? '', /^\d+\/1000$/);
  } finally {
    gw.configureMirror({ enabled: false });
  }
  await page.waitForFunction(() => document.querySelector('#mirror')?.getAttribute('data-enabled') === 'false', undefined, { timeout: 5000 });
});

test('a replica going down and coming back shows in its row and in the log', async () => {
  const replica2 = cluster.replicas.find((r) => r.name === 'replica2')!;
  await cluster.stop(replica2, 'immediate');
  await page.waitForFunction(() => /^(down|banned)$/.test(document.querySelector('#nodes tr[data-node="replica2"]')?.getAttribute('data-state') ?? ''), undefined, { timeout: 10_000 });
  assert.match((await cell('replica2', 'state').textContent()) ?? '', /down|banned/);
  await page.locator('#events li[data-type="node_down"], #events li[data-type="replica_banned"]').first().waitFor({ timeout: 5000 });
  assert.notEqual((await cell('replica2', 'note').textContent())?.trim(), '', 'the row says why');

  await cluster.start(replica2);
  await page.waitForFunction(() => document.querySelector('#nodes tr[data-node="replica2"]')?.getAttribute('data-state') === 'active', undefined, { timeout: 20_000 });
  await page.locator('#events li[data-type="node_up"], #events li[data-type="replica_unbanned"]').first().waitFor({ timeout: 5000 });
});

test('without a token the page asks for one, refuses a wrong one, and opens with the right one', async () => {
  const p = await openPage(adminUrl());
  try {
    await p.locator('#auth').waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await p.locator('#conn').getAttribute('data-state'), 'unauthorized');
    assert.equal(await p.locator('#dashboard').isVisible(), false);

    await p.fill('#auth-token', 'not-the-token');
    await p.click('#auth button[type="submit"]');
    await p.waitForFunction(() => /refused/.test(document.querySelector('#auth-message')?.textContent ?? ''), undefined, { timeout: 5000 });

    await p.fill('#auth-token', TOKEN);
    await p.click('#auth button[type="submit"]');
    await p.locator('#conn[data-state="live"]').waitFor({ timeout: 5000 });
    await p.locator('#nodes tr[data-node="replica1"]').waitFor({ timeout: 5000 });
    assert.equal(await p.locator('#auth').isVisible(), false);
  } finally {
    await p.context().close();
  }
  assert.deepEqual(pageErrors, [], 'no script errors on the page');
});
