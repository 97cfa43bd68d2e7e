// The switchyard command: check-config, start, and the sandbox as a user runs them.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startCluster, freePort } from '../harness/pg-cluster.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function tmpdir(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-cli-'));
  fs.chmodSync(d, 0o755); // the servers run as the postgres user and must reach the data dir inside
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Spawn the CLI and resolve with the first stdout line that matches. */
function spawnUntil(args: string[], pattern: RegExp, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; line: string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      if (pattern.test(line)) resolve({ child, line, exited });
    });
    void exited.then((code) => reject(new Error(`exited with ${code} before printing ${pattern}: ${stderr}`)));
  });
}


function pgProcessesUnder(dir: string): number {
  let n = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(dir)) n++;
    } catch {
      // the process ended while we looked
    }
  }
  return n;
}

test('check-config: a valid file passes; a bad one lists every problem with its path and exits 1', async (t) => {
  const dir = tmpdir(t);
  const good = path.join(dir, 'good.yaml');
  fs.writeFileSync(good, 'primary: { host: 127.0.0.1 }\n');
  const ok = await run(['check-config', '-c', good]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /ok/);

  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(
    bad,
    ['listen: { port: 70000, tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem } }', 'pool: { sise: 3, size: "x" }', 'primary: { port: 5432 }', ''].join('\n'),
  );
  const r = await run(['check-config', '-c', bad]);
  assert.equal(r.code, 1);
  for (const p of ['listen.port', 'listen.tls.cert', 'listen.tls.key', 'pool.sise', 'pool.size', 'primary.host']) {
    assert.match(r.stderr, new RegExp(`${p.replace(/\./g, '\\.')}:`), `problem at ${p} reported:\n${r.stderr}`);
  }
  const env = await run(['check-config', '-c', good], { SWITCHYARD_POOL__SIZE: 'lots' });
  assert.equal(env.code, 1);
  assert.match(env.stderr, /pool\.size/);
  const missing = await run(['check-config', '-c', path.join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 1);
});

test('start: refuses a bad config before listening; serves a good one; SIGTERM stops it', async (t) => {
  const dir = tmpdir(t);
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'primary: { host: 127.0.0.1, port: 0 }\n');
  const r = await run(['start', '-c', bad]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /primary\.port/);

  const cluster = await startCluster();
  t.after(() => cluster.destroy());
  const file = path.join(dir, 'gw.yaml');
  fs.writeFileSync(
    file,
    [
      'listen: { host: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      `primary: { host: 127.0.0.1, port: ${cluster.primary.port} }`,
      'server_tls: { mode: disable }',
      'auth: { users: [ { name: postgres, password: postgres } ] }',
      '',
    ].join('\n'),
  );
  const { child, line, exited } = await spawnUntil(['start', '-c', file], /switchyard listening/);
  const port = (JSON.parse(line) as { port: number }).port;
  const c = new pg.Client({ connectionString: `postgres://postgres:postgres@127.0.0.1:${port}/postgres` });
  await c.connect();
  assert.equal((await c.query('SELECT 41 + 1 AS x')).rows[0].x, 42);
  await c.end();
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('reload: `switchyard reload` and SIGHUP make a running gateway apply its edited file; a bad file changes nothing', async (t) => {
  const dir = tmpdir(t);
  const cluster = await startCluster({ replicas: 1 });
  t.after(() => cluster.destroy());
  const adminPort = await freePort();
  const token = 'cli-reload-test-token';
  const file = path.join(dir, 'gw.yaml');
  const write = (extra: string[]) =>
    fs.writeFileSync(
      file,
      [
        'listen: { host: 127.0.0.1, port: 0 }',
        `admin: { host: 127.0.0.1, port: ${adminPort}, token: ${token} }`,
        `primary: { host: 127.0.0.1, port: ${cluster.primary.port} }`,
        'server_tls: { mode: disable }',
        'auth: { users: [ { name: postgres, password: postgres } ] }',
        ...extra,
        '',
      ].join('\n'),
    );
  const replica = `replicas: [ { name: r1, host: 127.0.0.1, port: ${cluster.replicas[0]!.port} } ]`;
  write([replica]);
  const { child, exited } = await spawnUntil(['start', '-c', file], /switchyard listening/);
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const topology = async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/topology`, { headers: { authorization: `Bearer ${token}` } });
    return (await res.json()) as { replicas: { name: string; weight: number }[]; balancer: { strategy: string } };
  };
  assert.deepEqual((await topology()).replicas.map((r) => r.name), ['r1']);

  write(['replicas: []', 'balancer: { strategy: least-connections }']);
  const r = await run(['reload', '-c', file]);
  assert.equal(r.code, 0, r.stderr);
  const applied = JSON.parse(r.stdout) as { applied: string[]; restart_required: string[] };
  assert.deepEqual(applied, { applied: ['replicas: draining r1', 'balancer'], restart_required: [] });
  for (let i = 0; (await topology()).replicas.length > 0; i++) {
    assert.ok(i < 100, 'r1 drained away');
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal((await topology()).balancer.strategy, 'least-connections');

  write(['replicas: [ { name: r1, host: 127.0.0.1, port: x } ]']);
  const bad = await run(['reload', '-c', file]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /replicas\[0\]\.port/);

  write([replica.replace('}', ', weight: 3 }')]);
  child.kill('SIGHUP');
  for (let i = 0; (await topology()).replicas.length === 0; i++) {
    assert.ok(i < 100, 'r1 back after SIGHUP');
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.deepEqual((await topology()).replicas.map((x) => [x.name, x.weight]), [['r1', 3]]);
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('sandbox: without PostgreSQL server binaries it says how to install them and exits non-zero', async () => {
  const r = await run(['sandbox', '--port', '0'], { SWITCHYARD_PG_BIN: '/nonexistent' });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /apt-get install -y postgresql-15/);
});

test('sandbox: prints a ready line whose URL psql can use, serves the admin URL, and leaves nothing behind on SIGTERM', async (t) => {
  const dir = tmpdir(t);
  const data = path.join(dir, 'sandbox');
  const adminPort = await freePort(); // 0 would mean "no admin listener"
  const { child, line, exited } = await spawnUntil(['sandbox', '--port', '0', '--admin-port', String(adminPort), '--replicas', '1', '--dir', data], /^ready /);
  t.after(() => child.kill('SIGKILL'));
  const url = /postgres:\/\/\S+/.exec(line)?.[0];
  const admin = /admin=(\S+)/.exec(line)?.[1];
  assert.ok(url, line);
  assert.ok(admin?.startsWith('http://'), line);
  const out = await new Promise<string>((resolve, reject) =>
    execFile('psql', [url, '-X', '-A', '-t', '-c', 'SELECT 6 * 7'], (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout))),
  );
  assert.equal(out.trim(), '42');
  const health = await fetch(new URL('healthz', admin));
  assert.equal(health.status, 200);
  const ready = await fetch(new URL('readyz', admin));
  assert.equal(ready.status, 200);
  assert.ok(pgProcessesUnder(data) > 0, 'the sandbox servers run under the named directory');
  child.kill('SIGTERM');
  await exited;
  assert.equal(pgProcessesUnder(data), 0, 'no server process is left');
  assert.ok(fs.existsSync(path.join(data, 'primary')), 'the data is kept under the named directory');
});
