// Tests for the real-server harness (test/harness/pg-cluster.ts, tls.ts).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { findPgBin, startCluster, tempBase, type PgCluster, type PgNode } from '../harness/pg-cluster.js';
import { makeTestCerts } from '../harness/tls.js';

const PG_BIN = findPgBin();
const skip = PG_BIN ? false : 'PostgreSQL 15 binaries not found';
const HARNESS_URL = new URL('../harness/pg-cluster.js', import.meta.url).href;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Live processes whose cwd or command line mentions `dir` (zombies have neither). */
function processesReferencing(dir: string): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let cmd = '';
    let cwd = '';
    try {
      cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      continue;
    }
    try {
      cwd = fs.readlinkSync(`/proc/${e}/cwd`);
    } catch {
      // not ours to read / gone
    }
    if (cmd.includes(dir) || cwd === dir || cwd.startsWith(dir + '/')) found.push(`${e} [${cwd}] ${cmd.slice(0, 120)}`);
  }
  return found;
}

async function waitUntil(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(50);
  }
}

async function assertNoLeftovers(dir: string, timeoutMs = 5000, shmids: string[] = []): Promise<void> {
  const clean = (): boolean => !fs.existsSync(dir) && processesReferencing(dir).length === 0 && !shmids.some(shmExists);
  try {
    await waitUntil(`${dir} cleaned up`, clean, timeoutMs);
  } catch {
    assert.deepEqual(processesReferencing(dir), [], 'no process refers to the cluster dir');
    assert.equal(fs.existsSync(dir), false, `${dir} removed`);
    assert.deepEqual(shmids.filter(shmExists), [], 'SysV segments released');
  }
}

/** SysV shared memory id of a (possibly crashed) server, from line 7 of postmaster.pid. */
function shmidOf(dataDir: string): string {
  return fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[6]!.trim().split(/\s+/)[1]!;
}

function shmExists(shmid: string): boolean {
  return fs
    .readFileSync('/proc/sysvipc/shm', 'utf8')
    .split('\n')
    .slice(1)
    .some((l) => l.trim().split(/\s+/)[1] === shmid);
}

async function sql(node: PgNode, text: string, opts: pg.ClientConfig = {}): Promise<unknown[][]> {
  const client = new pg.Client({ connectionString: node.url(), ...opts });
  await client.connect();
  try {
    const res = await client.query({ text, rowMode: 'array' });
    return res.rows as unknown[][];
  } finally {
    await client.end();
  }
}

async function waitForRow(c: PgCluster, node: PgNode, table: string, id: number): Promise<void> {
  // the table itself may not have been replayed yet: treat errors as "not yet"
  await waitUntil(`row ${id} of ${table} on ${node.name}`, async () =>
    (await c.query(`SELECT count(*) FROM ${table} WHERE id = ${id}`, node).catch(() => '')) === '1');
}

test('cluster: primary + 2 streaming replicas', { skip }, async (t) => {
  const t0 = performance.now();
  const c = await startCluster({ replicas: 2 });
  const startupMs = Math.round(performance.now() - t0);
  t.diagnostic(`startup: primary + 2 replicas streaming in ${startupMs} ms`);
  try {
    await t.test('ready in under 15 s', () => {
      assert.ok(startupMs < 15_000, `startup took ${startupMs} ms`);
    });

    await t.test('node metadata', () => {
      assert.equal(c.nodes.length, 3);
      assert.deepEqual(c.nodes.map((n) => n.name), ['primary', 'replica1', 'replica2']);
      assert.deepEqual(c.nodes.map((n) => n.role), ['primary', 'replica', 'replica']);
      assert.equal(new Set(c.nodes.map((n) => n.port)).size, 3);
      for (const n of c.nodes) {
        assert.equal(n.host, '127.0.0.1');
        assert.ok(n.pid && n.pid > 0, `${n.name} has a pid`);
        assert.ok(fs.existsSync(path.join(n.dataDir, 'PG_VERSION')));
        assert.ok(fs.existsSync(n.logFile), 'server.log exists');
        assert.ok(n.dataDir.startsWith(c.dir + path.sep));
        // the postmaster runs with its data dir as cwd
        assert.equal(fs.readlinkSync(`/proc/${n.pid}/cwd`), n.dataDir);
        if (process.getuid?.() === 0) {
          assert.equal(fs.statSync(`/proc/${n.pid}`).uid, fs.statSync(n.dataDir).uid, 'runs as the data dir owner');
          assert.notEqual(fs.statSync(`/proc/${n.pid}`).uid, 0, 'not running as root');
        }
      }
      assert.equal(c.primary.url(), `postgres://postgres:postgres@127.0.0.1:${c.primary.port}/postgres`);
      assert.equal(c.primary.url({ user: 'u x', password: 'p@ss', database: 'd' }), `postgres://u%20x:p%40ss@127.0.0.1:${c.primary.port}/d`);
      assert.equal(process.listenerCount('SIGINT'), 1, 'one SIGINT handler installed while a cluster lives');
    });

    await t.test('query() returns trimmed output and rejects with stderr', async () => {
      assert.equal(await c.query('SELECT 1 + 1'), '2');
      assert.equal(await c.query("SELECT current_setting('fsync'), current_setting('wal_level')"), 'off|replica');
      assert.equal(await c.query("SELECT current_setting('dynamic_shared_memory_type')"), 'mmap');
      await assert.rejects(c.query('SELECT * FROM no_such_table'), /no_such_table/);
    });

    await t.test('writes on the primary reach both replicas', async () => {
      await c.query('CREATE TABLE t (id int primary key, v text)');
      await sql(c.primary, "INSERT INTO t VALUES (1, 'one')");
      for (const r of c.replicas) {
        await waitForRow(c, r, 't', 1);
        assert.deepEqual(await sql(r, 'SELECT v FROM t WHERE id = 1'), [['one']]);
        assert.deepEqual(await sql(r, 'SELECT pg_is_in_recovery()'), [[true]]);
      }
      assert.deepEqual(await sql(c.primary, 'SELECT pg_is_in_recovery()'), [[false]]);
      const names = (await c.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")).split('\n');
      assert.deepEqual(names, ['replica1', 'replica2']);
    });

    await t.test('md5 and SCRAM password users can log in over TCP', async () => {
      await c.query("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5pw'");
      await c.query("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 'scrampw'");
      assert.match(await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'"), /^md5/);
      assert.match(await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'"), /^SCRAM-SHA-256/);
      for (const [user, password] of [['md5_user', 'md5pw'], ['scram_user', 'scrampw']] as const) {
        const client = new pg.Client({ connectionString: c.primary.url({ user, password }) });
        await client.connect();
        assert.equal((await client.query('SELECT current_user AS u')).rows[0].u, user);
        await client.end();
        const bad = new pg.Client({ connectionString: c.primary.url({ user, password: 'wrong' }) });
        await assert.rejects(bad.connect(), /password authentication failed/);
      }
    });

    await t.test('kill + start a replica: it streams again', async () => {
      const r = c.replicas[0]!;
      const oldPid = r.pid!;
      const shmid = shmidOf(r.dataDir);
      assert.ok(shmExists(shmid));
      await c.kill(r);
      assert.equal(shmExists(shmid), false, 'SysV segment of the killed server released');
      assert.equal(r.pid, undefined);
      assert.equal(fs.existsSync(`/proc/${oldPid}`), false, 'postmaster reaped');
      assert.deepEqual(processesReferencing(r.dataDir), [], 'no process of the killed server is left');
      // the kill was a crash: no shutdown checkpoint, postmaster.pid left behind
      assert.ok(fs.existsSync(path.join(r.dataDir, 'postmaster.pid')));
      await assert.rejects(sql(r, 'SELECT 1', { connectionTimeoutMillis: 2000 }), /ECONNREFUSED/);

      await sql(c.primary, "INSERT INTO t VALUES (2, 'two')");
      await c.start(r);
      assert.ok(r.pid && r.pid !== oldPid);
      await waitForRow(c, r, 't', 2);
      await c.waitStreaming(5000);
      assert.match(fs.readFileSync(r.logFile, 'utf8'), /database system was interrupted|not properly shut down/);
    });

    await t.test('pause + resume a replica', async () => {
      const r = c.replicas[1]!;
      const client = new pg.Client({ connectionString: r.url(), query_timeout: 1000 });
      await client.connect();
      client.on('error', () => {});
      c.pause(r);
      try {
        // SIGSTOP is asynchronous: the state turns to T within moments, not necessarily before the next read.
        const stateOf = () => fs.readFileSync(`/proc/${r.pid}/stat`, 'utf8').split(') ')[1]![0];
        for (let i = 0; i < 100 && stateOf() !== 'T'; i++) await new Promise((res) => setTimeout(res, 10));
        assert.equal(stateOf(), 'T', 'postmaster stopped');
        const t1 = Date.now();
        await assert.rejects(client.query('SELECT 1'), /timeout/i);
        assert.ok(Date.now() - t1 < 5000);
        const fresh = new pg.Client({ connectionString: r.url(), connectionTimeoutMillis: 1000 });
        fresh.on('error', () => {});
        await assert.rejects(fresh.connect(), /timeout/i);
      } finally {
        c.resume(r);
      }
      await client.end().catch(() => {});
      assert.deepEqual(await sql(r, 'SELECT 42', { query_timeout: 5000 }), [[42]]);
      await sql(c.primary, "INSERT INTO t VALUES (3, 'three')");
      await waitForRow(c, r, 't', 3);
    });

    await t.test('stop + start the primary: replicas reconnect; immediate stop of a replica', async () => {
      await c.stop(c.primary);
      assert.equal(c.primary.pid, undefined);
      await c.start(c.primary);
      await c.waitStreaming(15_000);
      await sql(c.primary, "INSERT INTO t VALUES (4, 'four')");
      for (const r of c.replicas) await waitForRow(c, r, 't', 4);

      const r = c.replicas[1]!;
      await c.stop(r, 'immediate');
      assert.equal(r.pid, undefined);
      await c.start(r);
      await waitForRow(c, r, 't', 4);
    });

    await t.test('destroy stops every process and removes the temp dir', async () => {
      const dir = c.dir;
      const pids = c.nodes.map((n) => n.pid!);
      assert.ok(dir.startsWith(fs.realpathSync(tempBase()) + path.sep));
      assert.ok(processesReferencing(dir).length > 0, 'sanity: the servers are visible');
      const t1 = performance.now();
      await c.destroy();
      t.diagnostic(`destroy took ${Math.round(performance.now() - t1)} ms`);
      assert.deepEqual(processesReferencing(dir), []);
      assert.equal(fs.existsSync(dir), false);
      for (const p of pids) assert.equal(fs.existsSync(`/proc/${p}`), false, `pid ${p} gone and reaped`);
      for (const n of c.nodes) assert.equal(n.pid, undefined);
      assert.equal(process.listenerCount('SIGINT'), 0, 'signal handlers removed again');
      assert.equal(process.listenerCount('SIGTERM'), 0);
      await c.destroy(); // idempotent
    });
  } finally {
    await c.destroy();
  }
});

/** SysV segment ids of every running node, for assertNoLeftovers after destroy(). */
function shmidsOf(c: PgCluster): string[] {
  return c.nodes.filter((n) => n.pid).map((n) => shmidOf(n.dataDir));
}

/** application_names streaming from `node`, sorted. */
async function streamingFrom(c: PgCluster, node: PgNode): Promise<string[]> {
  const rows = await c.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1", node);
  return rows.split('\n').filter(Boolean);
}

test('addReplica: one more streaming replica at runtime, stopped by destroy()', { skip }, async (t) => {
  const c = await startCluster({ replicas: 1 });
  try {
    await c.query('CREATE TABLE t (id int primary key)');
    const t0 = performance.now();
    const r2 = await c.addReplica();
    t.diagnostic(`addReplica took ${Math.round(performance.now() - t0)} ms`);
    assert.equal(r2.name, 'replica2');
    assert.equal(r2.role, 'replica');
    assert.ok(r2.pid && r2.pid > 0);
    assert.equal(fs.readlinkSync(`/proc/${r2.pid}/cwd`), r2.dataDir);
    assert.equal(new Set(c.nodes.map((n) => n.port)).size, 3, 'a port of its own');
    assert.deepEqual(c.replicas.map((n) => n.name), ['replica1', 'replica2']);
    assert.deepEqual(c.nodes.map((n) => n.name), ['primary', 'replica1', 'replica2']);
    assert.ok(c.nodes.includes(r2));
    assert.deepEqual(await streamingFrom(c, c.primary), ['replica1', 'replica2']);
    assert.deepEqual(await sql(r2, 'SELECT pg_is_in_recovery()'), [[true]]);
    // the crash cleanup (watchdog) knows its postmaster
    assert.ok(fs.readFileSync(path.join(c.dir, '.harness-pids'), 'utf8').split('\n').includes(String(r2.pid)));

    await sql(c.primary, 'INSERT INTO t VALUES (1)');
    await waitForRow(c, r2, 't', 1);

    // restart after a crash
    await c.stop(r2, 'immediate');
    assert.equal(r2.pid, undefined);
    await sql(c.primary, 'INSERT INTO t VALUES (2)');
    await c.start(r2);
    await waitForRow(c, r2, 't', 2);
    await c.waitStreaming(5000);

    // two at once: distinct names, none reused
    const more = await Promise.all([c.addReplica(), c.addReplica()]);
    assert.deepEqual(more.map((n) => n.name).sort(), ['replica3', 'replica4']);
    assert.deepEqual(await streamingFrom(c, c.primary), ['replica1', 'replica2', 'replica3', 'replica4']);

    const dir = c.dir;
    const pids = c.nodes.map((n) => n.pid!);
    const shmids = shmidsOf(c);
    await c.destroy();
    await assertNoLeftovers(dir, 5000, shmids);
    for (const p of pids) assert.equal(fs.existsSync(`/proc/${p}`), false, `pid ${p} gone and reaped`);
    for (const n of c.nodes) assert.equal(n.pid, undefined);
  } finally {
    await c.destroy();
  }
});

test('promote: a replica becomes the primary, the old primary keeps running', { skip }, async (t) => {
  const c = await startCluster({ replicas: 2 });
  try {
    const [old, r1, r2] = c.nodes as [PgNode, PgNode, PgNode];
    await c.query('CREATE TABLE t (id int primary key)');
    await sql(old, 'INSERT INTO t VALUES (1)');
    for (const r of [r1, r2]) await waitForRow(c, r, 't', 1);

    const t0 = performance.now();
    await c.promote(r1);
    t.diagnostic(`promote took ${Math.round(performance.now() - t0)} ms`);
    assert.equal(c.primary, r1);
    assert.deepEqual(c.replicas, [r2]);
    assert.deepEqual(c.nodes.map((n) => [n.name, n.role]), [['primary', 'former-primary'], ['replica1', 'primary'], ['replica2', 'replica']]);

    // the new primary takes writes; query() now defaults to it
    assert.deepEqual(await sql(r1, 'SELECT pg_is_in_recovery()'), [[false]]);
    await sql(r1, 'INSERT INTO t VALUES (2)');
    assert.equal(await c.query("SELECT current_setting('cluster_name'), pg_is_in_recovery()"), 'replica1|f');

    // the old primary is left running, a primary of its own; replica2 still follows it
    assert.ok(old.pid && fs.existsSync(`/proc/${old.pid}`));
    assert.deepEqual(await sql(old, 'SELECT pg_is_in_recovery()'), [[false]]);
    await sql(old, 'INSERT INTO t VALUES (100)');
    await waitForRow(c, r2, 't', 100);
    // replica1's walsender on the old primary goes away once it notices the disconnect
    await waitUntil('only replica2 streams from the old primary', async () => (await streamingFrom(c, old)).join() === 'replica2');
    await c.waitStreaming(5000); // replica2 is not expected to stream from the new primary

    // a replica added now is cloned from, and streams from, the new primary
    const r3 = await c.addReplica();
    assert.equal(r3.name, 'replica3');
    assert.deepEqual(await streamingFrom(c, r1), ['replica3']);
    await waitForRow(c, r3, 't', 2);

    // stopping the old primary is up to the test; nothing else waits for it
    await c.stop(old);
    assert.equal(old.pid, undefined);
    assert.ok(c.nodes.includes(old), 'still a node, so destroy() would stop a restarted one');
    await c.waitStreaming(5000);
    await c.stop(r2);
    await c.start(r2); // ready, with nothing to stream from
    assert.deepEqual(await sql(r2, 'SELECT pg_is_in_recovery()'), [[true]]);

    // the new primary survives a restart as a primary; its replica reconnects
    await c.stop(r1, 'immediate');
    await c.start(r1);
    await c.waitStreaming(15_000);
    assert.deepEqual(await sql(r1, 'SELECT pg_is_in_recovery()'), [[false]]);
    await sql(r1, 'INSERT INTO t VALUES (3)');
    await waitForRow(c, r3, 't', 3);

    await assert.rejects(c.promote(r1), /not a replica/);
    await assert.rejects(c.promote(old), /not a replica/);

    const dir = c.dir;
    const shmids = shmidsOf(c);
    await c.start(old); // a former primary restarts as a primary and is stopped by destroy()
    assert.deepEqual(await sql(old, 'SELECT pg_is_in_recovery()'), [[false]]);
    shmids.push(shmidOf(old.dataDir));
    await c.destroy();
    await assertNoLeftovers(dir, 5000, shmids);
  } finally {
    await c.destroy();
  }
});

test('ssl: true cluster accepts TLS (sslmode=require and verified) and plain connections', { skip }, async () => {
  const c = await startCluster({ ssl: true, conf: { max_connections: 50, work_mem: '8MB', autovacuum: false } });
  try {
    assert.ok(c.tls);
    assert.match(c.tls.caPem, /BEGIN CERTIFICATE/);
    assert.equal(await c.query("SELECT current_setting('ssl'), current_setting('max_connections'), current_setting('work_mem'), current_setting('autovacuum')"), 'on|50|8MB|off');

    const psql = (env: Record<string, string>): Promise<string> =>
      new Promise((resolve, reject) => {
        execFile(
          path.join(PG_BIN!, 'psql'),
          ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(c.primary.port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'],
          { env: { PATH: process.env.PATH ?? '', PGPASSWORD: 'postgres', ...env } },
          (err, stdout, stderr) => (err ? reject(new Error(String(stderr))) : resolve(String(stdout).trim())),
        );
      });
    assert.equal(await psql({ PGSSLMODE: 'require' }), 't');
    assert.equal(await psql({ PGSSLMODE: 'verify-full', PGSSLROOTCERT: c.tls.caFile }), 't');
    assert.equal(await psql({ PGSSLMODE: 'disable' }), 'f');

    // node-postgres with full verification against the generated CA (IP SAN 127.0.0.1)
    const client = new pg.Client({
      host: '127.0.0.1', port: c.primary.port, user: 'postgres', password: 'postgres', database: 'postgres',
      ssl: { ca: c.tls.caPem, rejectUnauthorized: true },
    });
    await client.connect();
    const row = (await client.query('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0];
    assert.equal(row.ssl, true);
    assert.match(row.version, /TLSv1\.[23]/);
    await client.end();

    // and a client that does not trust the CA is rejected
    const other = makeTestCerts(path.join(c.dir, 'other-ca'));
    const untrusting = new pg.Client({
      host: '127.0.0.1', port: c.primary.port, user: 'postgres', password: 'postgres', database: 'postgres',
      ssl: { ca: other.caPem, rejectUnauthorized: true },
    });
    await assert.rejects(untrusting.connect(), /certificate/i);
  } finally {
    await c.destroy();
  }
});

test('makeTestCerts: CA + localhost server certificate', { skip: process.platform !== 'linux' && 'linux only' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-certs-'));
  try {
    const certs = makeTestCerts(dir);
    const { X509Certificate } = await import('node:crypto');
    const ca = new X509Certificate(certs.caPem);
    const cert = new X509Certificate(certs.certPem);
    assert.ok(ca.ca);
    assert.ok(!cert.ca);
    assert.ok(cert.verify(ca.publicKey), 'signed by the CA');
    assert.ok(cert.checkHost('localhost'));
    assert.ok(cert.checkIP('127.0.0.1'));
    assert.match(cert.subject, /CN=localhost/);
    assert.ok(new Date(cert.validTo).getTime() - Date.now() > 24 * 3600 * 1000, 'valid for more than a day');
    assert.equal(fs.statSync(certs.keyFile).mode & 0o777, 0o600);
    assert.match(certs.keyPem, /PRIVATE KEY/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// Cleanup when the test process ends abnormally (child node processes)
// ---------------------------------------------------------------------------

interface ChildInfo {
  dir: string;
  pids: number[];
  shmids: string[];
  sigterm: number;
  /** the harness's pid file (what the watchdog kills first) */
  pidFile: number[];
}

const CHILD_SCRIPT = `
const { startCluster } = await import(${JSON.stringify(HARNESS_URL)});
const fs = await import('node:fs');
const mode = process.env.HARNESS_MODE;
if (mode === 'custom-handler') process.on('SIGTERM', () => { console.log('custom handler'); process.exit(7); });
const c = await startCluster({ replicas: mode === 'sigkill' || mode === 'grown' ? 1 : 0 });
if (mode === 'grown') {
  await c.addReplica();
  await c.promote(c.replicas[0]);
}
const shmids = c.nodes.map((n) => fs.readFileSync(n.dataDir + '/postmaster.pid', 'utf8').split('\\n')[6].trim().split(/\\s+/)[1]);
const pidFile = fs.readFileSync(c.dir + '/.harness-pids', 'utf8').split('\\n').filter(Boolean).map(Number);
console.log(JSON.stringify({ dir: c.dir, pids: c.nodes.map((n) => n.pid), shmids, sigterm: process.listenerCount('SIGTERM'), pidFile }));
if (mode === 'forget') await c.query('SELECT 1'); // and end without destroy()
else setInterval(() => {}, 1000);
`;

function runChild(mode: string): Promise<{ info: ChildInfo; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>; pid: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT], {
    env: { ...process.env, HARNESS_MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, out })),
  );
  child.stderr.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ info: JSON.parse(line) as ChildInfo, exit, pid: child.pid! });
    });
    void exit.then((r) => reject(new Error(`child exited early (${r.code ?? r.signal}): ${r.out}`)));
  });
}

test('cleanup when the test process goes away', { skip }, async (t) => {
  await t.test('SIGTERM (no other handler): servers stopped, dir removed, exit code 143', async () => {
    const { info, exit, pid } = await runChild('sigterm');
    assert.equal(info.sigterm, 1, 'harness installed its SIGTERM handler');
    assert.ok(fs.existsSync(info.dir));
    process.kill(pid, 'SIGTERM');
    const r = await exit;
    assert.equal(r.code, 143, r.out);
    await assertNoLeftovers(info.dir, 2000, info.shmids);
  });

  await t.test('SIGTERM with a handler of its own: harness defers, exit hook still cleans up', async () => {
    const { info, exit, pid } = await runChild('custom-handler');
    assert.equal(info.sigterm, 1, 'harness did not add a second SIGTERM handler');
    process.kill(pid, 'SIGTERM');
    const r = await exit;
    assert.equal(r.code, 7, r.out);
    assert.match(r.out, /custom handler/);
    await assertNoLeftovers(info.dir, 5000, info.shmids);
  });

  await t.test('SIGKILL: the watchdog kills the servers and removes the dir', async () => {
    const { info, exit, pid } = await runChild('sigkill');
    assert.equal(info.pids.length, 2);
    process.kill(pid, 'SIGKILL');
    await exit;
    await assertNoLeftovers(info.dir, 10_000, info.shmids);
    for (const p of info.pids) assert.equal(fs.existsSync(`/proc/${p}/cwd`) && fs.readlinkSync(`/proc/${p}/cwd`).startsWith(info.dir), false);
  });

  await t.test('SIGKILL after addReplica + promote: every server, old primary included, is cleaned up', async () => {
    const { info, exit, pid } = await runChild('grown');
    assert.equal(info.pids.length, 3);
    assert.deepEqual([...info.pidFile].sort(), [...info.pids].sort(), 'the pid file lists every postmaster');
    process.kill(pid, 'SIGKILL');
    await exit;
    await assertNoLeftovers(info.dir, 10_000, info.shmids);
  });

  await t.test('no destroy() at all: cleaned up when the event loop drains', async () => {
    const { info, exit } = await runChild('forget');
    const r = await exit;
    assert.equal(r.code, 0, r.out);
    await assertNoLeftovers(info.dir, 2000, info.shmids);
  });

  await t.test('works under the node test runner (reporting intact, nothing left behind)', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-runner-'));
    try {
      const file = path.join(tmp, 'uses-harness.test.mjs');
      fs.writeFileSync(
        file,
        `import test from 'node:test';
import assert from 'node:assert/strict';
const { startCluster } = await import(${JSON.stringify(HARNESS_URL)});
test('with destroy', async () => {
  const c = await startCluster();
  console.log('HARNESS_DIR=' + c.dir);
  assert.equal(await c.query('SELECT 7'), '7');
  await c.destroy();
});
test('without destroy', async () => {
  const c = await startCluster();
  console.log('HARNESS_DIR=' + c.dir);
  assert.equal(await c.query('SELECT 8'), '8');
});
`,
      );
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        execFile(process.execPath, ['--test', '--test-reporter=tap', file], { env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')) }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: String(stdout) + String(stderr) }),
        );
      });
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /# pass 2/);
      assert.match(r.out, /# fail 0/);
      const dirs = [...r.out.matchAll(/HARNESS_DIR=(\S+)/g)].map((m) => m[1]!);
      assert.equal(dirs.length, 2, r.out);
      for (const d of dirs) await assertNoLeftovers(d, 3000);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
