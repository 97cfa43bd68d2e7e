// Client authentication through the gateway against a real PostgreSQL 15 primary: SCRAM (password and
// verifier-only), MD5, auth-query users, trust, cleartext-over-TLS, failure wording, throttling, log hygiene,
// and the refusal of replication connections.
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac, pbkdf2Sync } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { findPgBin, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { makeTestCerts, type TestCerts } from '../harness/tls.js';
import { startGateway, testConfig } from '../harness/gateway.js';
import { Gateway } from '../../src/gateway.js';
import type { DeepPartial } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const PG_BIN = findPgBin();

let cluster: PgCluster;
let tmpDir: string;
let certs: TestCerts;

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-auth-test-'));
  certs = makeTestCerts(path.join(tmpDir, 'gw-certs'));
  cluster = await startCluster();
});

after(async () => {
  await cluster?.destroy();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// helpers

type Method = 'scram' | 'md5' | 'cleartext';

interface Login {
  ok: boolean;
  /** Authentication requests the client received, in order. */
  methods: Method[];
  user?: string;
  error?: Error & { code?: string; severity?: string };
  ms: number;
}

/** Connect with node-postgres, run SELECT current_user, disconnect. Never throws for a refused login. */
async function login(gw: Gateway, user: string, password: string | undefined, extra: pg.ClientConfig = {}): Promise<Login> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user,
    password,
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
    ...extra,
  });
  client.on('error', () => {});
  const methods: Method[] = [];
  const conn = (client as unknown as { connection: EventEmitter }).connection;
  conn.on('authenticationSASL', () => methods.push('scram'));
  conn.on('authenticationMD5Password', () => methods.push('md5'));
  conn.on('authenticationCleartextPassword', () => methods.push('cleartext'));
  const t0 = performance.now();
  try {
    await client.connect();
  } catch (e) {
    return { ok: false, methods, error: e as Login['error'], ms: performance.now() - t0 };
  }
  const ms = performance.now() - t0;
  try {
    const r = await client.query('SELECT current_user AS u');
    return { ok: true, methods, user: r.rows[0].u as string, ms };
  } finally {
    await client.end().catch(() => {});
  }
}

function assertOk(r: Login, user: string, method: Method | 'none'): void {
  assert.ok(r.ok, `login as ${user} should succeed: ${r.error?.message} (${r.error?.code})`);
  assert.equal(r.user, user);
  assert.deepEqual(r.methods, method === 'none' ? [] : [method], `authentication method seen by the client for ${user}`);
}

function assertAuthFailed(r: Login, user: string, method?: Method): void {
  assert.equal(r.ok, false, `login as ${user} should fail`);
  assert.equal(r.error?.code, '28P01', `SQLSTATE for ${user}: ${r.error?.message}`);
  assert.equal(r.error?.message, `password authentication failed for user "${user}"`);
  if (method) assert.deepEqual(r.methods, [method], `authentication method seen by the client for ${user}`);
}

async function withGateway(overrides: DeepPartial<Config>, fn: (gw: Gateway) => Promise<void>): Promise<void> {
  const gw = await startGateway(cluster, overrides);
  try {
    await fn(gw);
  } finally {
    await gw.close();
  }
}

async function createRole(name: string, password: string | null, encryption: 'md5' | 'scram-sha-256' = 'scram-sha-256'): Promise<void> {
  const pw = password === null ? '' : ` PASSWORD '${password}'`;
  await cluster.query(`SET password_encryption = '${encryption}'; CREATE ROLE ${name} LOGIN${pw}`);
}

async function rolpassword(name: string): Promise<string> {
  return cluster.query(`SELECT rolpassword FROM pg_authid WHERE rolname = '${name}'`);
}

function psql(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(PG_BIN!, 'psql'), ['-X', '-A', '-t', '-w', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Log in, retrying after a refused attempt (each refusal must be the plain 28P01) up to `attempts` times,
 * 1.1 s apart. Returns the number of attempts used; fails the test if none succeeds.
 */
async function loginEventually(gw: Gateway, user: string, password: string, method: Method, attempts = 3): Promise<number> {
  for (let i = 1; ; i++) {
    const r = await login(gw, user, password);
    if (r.ok) {
      assertOk(r, user, method);
      return i;
    }
    assertAuthFailed(r, user);
    if (i >= attempts) assert.fail(`login as ${user} still refused after ${attempts} attempts over ${((attempts - 1) * 1.1).toFixed(1)} s`);
    await sleep(1100);
  }
}

// ---------------------------------------------------------------------------
// tests

test('SCRAM config user with a plain password: client does SCRAM, gateway logs in with the password', async () => {
  await createRole('scram_pw', 'scram-pw-1');
  assert.match(await rolpassword('scram_pw'), /^SCRAM-SHA-256\$/);
  await withGateway({ auth: { users: [{ name: 'scram_pw', password: 'scram-pw-1' }] } }, async (gw) => {
    assertOk(await login(gw, 'scram_pw', 'scram-pw-1'), 'scram_pw', 'scram');
    // a second, concurrent client needs a second server connection, opened with the password again
    const a = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'scram_pw', password: 'scram-pw-1', database: 'postgres' });
    await a.connect();
    try {
      assertOk(await login(gw, 'scram_pw', 'scram-pw-1'), 'scram_pw', 'scram');
    } finally {
      await a.end();
    }
    assertAuthFailed(await login(gw, 'scram_pw', 'scram-pw-2'), 'scram_pw', 'scram');
  });
});

test('SCRAM config user with only a scram_verifier: the server login uses the ClientKey from the client proof', async () => {
  await createRole('scram_v', 'scram-v-secret');
  const verifier = await rolpassword('scram_v');
  assert.match(verifier, /^SCRAM-SHA-256\$4096:/);
  // Session pooling: client a keeps its server connection, so the second login needs one of its own.
  await withGateway({ auth: { users: [{ name: 'scram_v', scram_verifier: verifier }] }, pool: { mode: 'session' } }, async (gw) => {
    // no password anywhere in the gateway's config
    assert.equal(JSON.stringify(gw.config).includes('scram-v-secret'), false);
    // a wrong password fails before anything is learned
    assertAuthFailed(await login(gw, 'scram_v', 'not-it'), 'scram_v', 'scram');
    assertOk(await login(gw, 'scram_v', 'scram-v-secret'), 'scram_v', 'scram');
    // two clients at once: the second needs a server connection of its own, also opened with the ClientKey
    const a = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'scram_v', password: 'scram-v-secret', database: 'postgres' });
    await a.connect();
    try {
      const r = await login(gw, 'scram_v', 'scram-v-secret');
      assertOk(r, 'scram_v', 'scram');
      // both server connections (a's and the one just released to the pool) are logged in as scram_v
      assert.equal((await a.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', ['scram_v'])).rows[0].n, 2);
    } finally {
      await a.end();
    }
  });
});

test('MD5 config users: with a password, and with only the md5 hash from pg_authid', async () => {
  await createRole('md5_pw', 'md5-pw-1', 'md5');
  await createRole('md5_h', 'md5-h-1', 'md5');
  const hash = await rolpassword('md5_h');
  assert.match(hash, /^md5[0-9a-f]{32}$/);
  await withGateway(
    {
      auth: {
        users: [
          { name: 'md5_pw', password: 'md5-pw-1', method: 'md5' },
          { name: 'md5_h', md5: hash, method: 'md5' },
        ],
      },
    },
    async (gw) => {
      assertOk(await login(gw, 'md5_pw', 'md5-pw-1'), 'md5_pw', 'md5');
      assertOk(await login(gw, 'md5_h', 'md5-h-1'), 'md5_h', 'md5');
      assertAuthFailed(await login(gw, 'md5_pw', 'md5-pw-2'), 'md5_pw', 'md5');
      assertAuthFailed(await login(gw, 'md5_h', 'md5-pw-1'), 'md5_h', 'md5');
    },
  );
});

test('auth query: roles created after start log in; a changed password is picked up after a failed login', async () => {
  await withGateway({ auth: { query: { user: 'postgres', password: 'postgres' } } }, async (gw) => {
    await createRole('aq_scram', 'aq-scram-1');
    await createRole('aq_md5', 'aq-md5-1', 'md5');
    assertOk(await login(gw, 'aq_scram', 'aq-scram-1'), 'aq_scram', 'scram');
    assertOk(await login(gw, 'aq_md5', 'aq-md5-1'), 'aq_md5', 'md5');

    for (const [role, enc, method] of [
      ['aq_scram', 'scram-sha-256', 'scram'],
      ['aq_md5', 'md5', 'md5'],
    ] as const) {
      const oldPw = `${role.replace('_', '-')}-1`;
      const newPw = `${role}-new-2`;
      await cluster.query(`SET password_encryption = '${enc}'; ALTER ROLE ${role} PASSWORD '${newPw}'`);
      // The cache may still hold the old secret: then an attempt fails (28P01) and refreshes it. Refreshes
      // may be rate-limited to one a second, so retries are spaced by more than that.
      await loginEventually(gw, role, newPw, method);
      assertAuthFailed(await login(gw, role, oldPw), role, method);
      // The new secret is also what the gateway logs in to the server with: hold one client, so the next
      // needs a fresh server connection.
      const held = new pg.Client({ host: '127.0.0.1', port: gw.port, user: role, password: newPw, database: 'postgres' });
      await held.connect();
      try {
        assertOk(await login(gw, role, newPw), role, method);
      } finally {
        await held.end();
      }
    }
  });
});

test('wrong password and unknown user: 28P01 with the same wording, SCRAM default method', async () => {
  await withGateway({}, async (gw) => {
    assertAuthFailed(await login(gw, 'postgres', 'wrong'), 'postgres', 'scram');
    // an unknown user runs through the same exchange and fails the same way
    assertAuthFailed(await login(gw, 'no_such_user', 'wrong'), 'no_such_user', 'scram');
    assertOk(await login(gw, 'postgres', 'postgres'), 'postgres', 'scram');
  });
  // the same with an auth query, for a user the primary does not know and one without a password
  await createRole('aq_nopw', null);
  await withGateway({ auth: { query: { user: 'postgres', password: 'postgres' } } }, async (gw) => {
    assertAuthFailed(await login(gw, 'no_such_user', 'wrong'), 'no_such_user', 'scram');
    assertAuthFailed(await login(gw, 'aq_nopw', 'wrong'), 'aq_nopw', 'scram');
  });
});

test('wrong password and unknown user: 28P01 with the same wording, MD5 default method', async () => {
  await withGateway({ auth: { method: 'md5' } }, async (gw) => {
    assertAuthFailed(await login(gw, 'postgres', 'wrong'), 'postgres', 'md5');
    assertAuthFailed(await login(gw, 'no_such_user', 'wrong'), 'no_such_user', 'md5');
    assertOk(await login(gw, 'postgres', 'postgres'), 'postgres', 'md5');
  });
});

test('trust user logs in without a password; the gateway uses its configured password for the server', async () => {
  await createRole('trust_u', 'trust-pw-1');
  await withGateway({ auth: { users: [{ name: 'trust_u', password: 'trust-pw-1', method: 'trust' }] } }, async (gw) => {
    // pg would throw "client password must be a string" if asked for a password
    assertOk(await login(gw, 'trust_u', undefined), 'trust_u', 'none');
    const r = await psql(['-h', '127.0.0.1', '-p', String(gw.port), '-U', 'trust_u', '-d', 'postgres', '-c', 'SELECT current_user'], {});
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'trust_u');
  });
});

test('cleartext method: refused without TLS (28000), accepted over TLS', async () => {
  await createRole('clear_u', 'clear-pw-1');
  await createRole('clear_v', 'clear-v-1');
  const verifier = await rolpassword('clear_v');
  await withGateway(
    {
      listen: { tls: { cert: certs.certFile, key: certs.keyFile } },
      auth: {
        users: [
          { name: 'clear_u', password: 'clear-pw-1', method: 'cleartext' },
          // only a verifier: the cleartext password is checked against it and yields the ClientKey for the server login
          { name: 'clear_v', scram_verifier: verifier, method: 'cleartext' },
        ],
      },
    },
    async (gw) => {
      const plain = await login(gw, 'clear_u', 'clear-pw-1', { ssl: false });
      assert.equal(plain.ok, false);
      assert.equal(plain.error?.code, '28000', plain.error?.message);
      assert.match(plain.error!.message, /TLS/);
      assert.deepEqual(plain.methods, [], 'the password was never asked for');

      const ssl = { rejectUnauthorized: false };
      assertOk(await login(gw, 'clear_u', 'clear-pw-1', { ssl }), 'clear_u', 'cleartext');
      assertAuthFailed(await login(gw, 'clear_u', 'clear-pw-2', { ssl }), 'clear_u', 'cleartext');
      assertOk(await login(gw, 'clear_v', 'clear-v-1', { ssl }), 'clear_v', 'cleartext');
      assertAuthFailed(await login(gw, 'clear_v', 'clear-v-2', { ssl }), 'clear_v', 'cleartext');
    },
  );
});

test('repeated failures from one address slow every later attempt from it, successes included', async () => {
  await withGateway({ auth: { failed_login_threshold: 2, failed_login_max_delay_ms: 2000 } }, async (gw) => {
    const fail = async (): Promise<number> => {
      const r = await login(gw, 'postgres', 'wrong');
      assertAuthFailed(r, 'postgres', 'scram');
      return r.ms;
    };
    const d1 = await fail();
    const d2 = await fail();
    const d3 = await fail();
    const d4 = await fail();
    // below the threshold nothing is delayed; then 100 ms, then 200 ms (exponential backoff)
    const base = Math.min(d1, d2);
    assert.ok(d3 >= base + 80, `3rd failure took ${d3.toFixed(0)} ms, first two ${d1.toFixed(0)}/${d2.toFixed(0)} ms`);
    assert.ok(d4 >= d1 + 100, `4th failure took ${d4.toFixed(0)} ms, 1st ${d1.toFixed(0)} ms`);
    assert.ok(d4 >= d3 + 50, `the delay grows: 3rd ${d3.toFixed(0)} ms, 4th ${d4.toFixed(0)} ms`);
    // The delay comes before the exchange, so a correct password waits too: the timing of the answer
    // says nothing about the guess, and hanging up early gains nothing.
    const ok = await login(gw, 'postgres', 'postgres');
    assertOk(ok, 'postgres', 'scram');
    assert.ok(ok.ms >= base + 150, `a success from a throttled address waits as well: ${ok.ms.toFixed(0)} ms`);
    // One valid login does not wipe the record of failures (it could be an attacker's own account).
    const d5 = await fail();
    assert.ok(d5 >= d4 + 50, `still slowed after a success: ${d5.toFixed(0)} ms (4th was ${d4.toFixed(0)} ms)`);
  });
});

test('secrets never appear in the logs, at trace level, after logins and failed logins', async () => {
  await createRole('log_auth', 'log-auth-Secret-1');
  await cluster.query('ALTER ROLE log_auth SUPERUSER');
  await createRole('log_pw', 'log-pw-Secret-2');
  await createRole('log_v', 'log-v-Secret-3');
  await createRole('log_md5', 'log-md5-Secret-4', 'md5');
  const verifier = await rolpassword('log_v');
  const md5hash = await rolpassword('log_md5');

  let out = '';
  const logger = pino({ level: 'trace' }, { write: (s: string) => void (out += s) });
  const config = testConfig(cluster, {
    auth: {
      users: [
        { name: 'postgres', password: 'postgres' },
        { name: 'log_pw', password: 'log-pw-Secret-2' },
        { name: 'log_v', scram_verifier: verifier },
        { name: 'log_md5', md5: md5hash, method: 'md5' },
      ],
      query: { user: 'log_auth', password: 'log-auth-Secret-1' },
      failed_login_threshold: 1000,
    },
  });
  const gw = await Gateway.start(config, { logger });
  let aqVerifier = '';
  let aqMd5 = '';
  try {
    await createRole('log_aq', 'log-aq-Secret-5');
    await createRole('log_aq_md5', 'log-aq-md5-Secret-6', 'md5');
    aqVerifier = await rolpassword('log_aq');
    aqMd5 = await rolpassword('log_aq_md5');
    assertOk(await login(gw, 'log_pw', 'log-pw-Secret-2'), 'log_pw', 'scram');
    assertOk(await login(gw, 'log_v', 'log-v-Secret-3'), 'log_v', 'scram');
    assertOk(await login(gw, 'log_md5', 'log-md5-Secret-4'), 'log_md5', 'md5');
    assertOk(await login(gw, 'log_aq', 'log-aq-Secret-5'), 'log_aq', 'scram');
    assertOk(await login(gw, 'log_aq_md5', 'log-aq-md5-Secret-6'), 'log_aq_md5', 'md5');
    for (const u of ['log_pw', 'log_v', 'log_aq', 'nobody_here']) assertAuthFailed(await login(gw, u, `bad-guess-Secret-${u}`), u);
    for (const u of ['log_md5', 'log_aq_md5']) assertAuthFailed(await login(gw, u, `bad-guess-Secret-${u}`), u);
  } finally {
    await gw.close();
  }

  // the logs did record what happened
  assert.match(out, /client_authenticated/);
  assert.match(out, /client_auth_failed/);
  assert.match(out, /"user":"log_aq_md5"/);

  const secrets = new Map<string, string>();
  const add = (what: string, v: string): void => void secrets.set(what, v);
  for (const [what, v] of Object.entries({
    'auth query password': 'log-auth-Secret-1',
    'log_pw password': 'log-pw-Secret-2',
    'log_v password': 'log-v-Secret-3',
    'log_md5 password': 'log-md5-Secret-4',
    'log_aq password': 'log-aq-Secret-5',
    'log_aq_md5 password': 'log-aq-md5-Secret-6',
  })) add(what, v);
  add('wrong passwords', 'bad-guess-Secret');
  add('the word Secret (any of the above)', 'Secret');
  for (const [who, v] of [
    ['log_v', verifier],
    ['log_aq', aqVerifier],
  ] as const) {
    add(`${who} verifier`, v);
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(v)!;
    add(`${who} StoredKey`, m[3]!);
    add(`${who} ServerKey`, m[4]!);
    const pw = who === 'log_v' ? 'log-v-Secret-3' : 'log-aq-Secret-5';
    const clientKey = createHmac('sha256', pbkdf2Sync(pw, Buffer.from(m[2]!, 'base64'), Number(m[1]), 32, 'sha256')).update('Client Key').digest();
    add(`${who} ClientKey (base64)`, clientKey.toString('base64'));
    add(`${who} ClientKey (hex)`, clientKey.toString('hex'));
    add(`${who} ServerKey (hex)`, Buffer.from(m[4]!, 'base64').toString('hex'));
  }
  add('log_md5 hash', md5hash.slice(3));
  add('log_aq_md5 hash', aqMd5.slice(3));
  for (const [what, v] of secrets) assert.equal(out.includes(v), false, `${what} appears in the log`);
});

test('replication startup is refused with an error that names replication', async () => {
  await withGateway({}, async (gw) => {
    const r = await login(gw, 'postgres', 'postgres', { replication: 'database' } as pg.ClientConfig);
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, '0A000', r.error?.message);
    assert.match(r.error!.message, /replication/);
    assert.deepEqual(r.methods, [], 'refused before authentication');

    const p = await psql([`host=127.0.0.1 port=${gw.port} user=postgres dbname=postgres replication=database`, '-c', 'IDENTIFY_SYSTEM'], { PGPASSWORD: 'postgres' });
    assert.notEqual(p.code, 0);
    assert.match(p.stderr, /replication connections are not supported/);

    // replication=false is an ordinary connection
    assertOk(await login(gw, 'postgres', 'postgres', { replication: 'false' } as unknown as pg.ClientConfig), 'postgres', 'scram');
  });
});

// ---------------------------------------------------------------------------
// auth query: cache behaviour around failed logins

test('auth query: a role created after a failed login attempt under its name can log in within seconds', async () => {
  await withGateway({ auth: { query: { user: 'postgres', password: 'postgres', cache_ttl_ms: 60_000 } } }, async (gw) => {
    // e.g. an application that starts before its role is provisioned
    assertAuthFailed(await login(gw, 'aq_late', 'aq-late-1'), 'aq_late', 'scram');
    await createRole('aq_late', 'aq-late-1');
    // Like a changed password, a failed login should refresh the cached answer (at most once a second),
    // rather than keep refusing the new role for the whole cache_ttl_ms.
    await loginEventually(gw, 'aq_late', 'aq-late-1', 'scram');
  });
});

test('auth query: a burst of failed logins for one user does not become a burst of auth queries', async () => {
  await cluster.query(`CREATE TABLE public.aq_log (at timestamptz NOT NULL DEFAULT clock_timestamp(), u text NOT NULL);
    CREATE FUNCTION public.aq_lookup(who text) RETURNS TABLE (usename name, passwd text) LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO public.aq_log (u) VALUES (who);
      RETURN QUERY SELECT s.usename, s.passwd FROM pg_catalog.pg_shadow s WHERE s.usename = who;
    END $$`);
  await createRole('aq_burst', 'aq-burst-1');
  const lookups = async (): Promise<number> => Number(await cluster.query(`SELECT count(*) FROM public.aq_log WHERE u = 'aq_burst'`));
  await withGateway(
    { auth: { query: { user: 'postgres', password: 'postgres', sql: 'SELECT * FROM public.aq_lookup($1)' }, failed_login_threshold: 1000 } },
    async (gw) => {
      assertOk(await login(gw, 'aq_burst', 'aq-burst-1'), 'aq_burst', 'scram');
      assert.equal(await lookups(), 1, 'the custom auth query ran once');
      const t0 = performance.now();
      for (let i = 0; i < 6; i++) assertAuthFailed(await login(gw, 'aq_burst', `guess-${i}`), 'aq_burst', 'scram');
      const elapsed = performance.now() - t0;
      // CredentialStore: "a burst of failed logins for one user must not become a burst of queries against
      // the primary" (one refresh per second at most). Allow one lookup per started second, plus one.
      const allowed = 2 + Math.ceil(elapsed / 1000);
      const n = await lookups();
      assert.ok(n <= allowed, `${n} auth queries for 1 login + 6 failed logins in ${elapsed.toFixed(0)} ms (allowed ${allowed})`);
    },
  );
});

test('auth query: a failed login by someone else does not break a logged-in client waiting for a server connection', async () => {
  await createRole('aq_wait', 'aq-wait-1');
  await withGateway(
    { auth: { query: { user: 'postgres', password: 'postgres' } }, pool: { mode: 'session', size: 1, queue_timeout_ms: 10_000 } },
    async (gw) => {
      const a = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'aq_wait', password: 'aq-wait-1', database: 'postgres' });
      a.on('error', () => {});
      await a.connect(); // holds the one server connection pool.size allows
      const b = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'aq_wait', password: 'aq-wait-1', database: 'postgres' });
      b.on('error', () => {});
      const bConnected = b.connect().then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
      try {
        // b has authenticated and now waits in the pool's queue
        const deadline = Date.now() + 5000;
        while (!gw.pools.stats().some((s) => s.user === 'aq_wait' && s.waiting === 1)) {
          assert.ok(Date.now() < deadline, 'b never queued for a server connection');
          await sleep(10);
        }
        // somebody mistypes the password
        assertAuthFailed(await login(gw, 'aq_wait', 'typo'), 'aq_wait', 'scram');
        // a's server connection dies, so the pool opens a new one for b
        await cluster.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'aq_wait'`);
        const err = await bConnected;
        assert.equal(err, null, `b (which proved its password) should get a server connection: ${err?.code} ${err?.message}`);
        assert.equal((await b.query('SELECT current_user AS u')).rows[0].u, 'aq_wait');
      } finally {
        await bConnected;
        await a.end().catch(() => {});
        await b.end().catch(() => {});
      }
    },
  );
});

test('non-ASCII passwords and unusual role names (SCRAM password, verifier-only, md5 hash, auth query)', async () => {
  const pw = 'Pässwörd\u00a0ünïcødé'; // a non-ASCII space, which SASLprep maps to ' '
  const decomposed = pw.normalize('NFD'); // SASLprep's NFKC makes this the same password for SCRAM
  const names = { scram: 'Odd Name,=scram', verifier: 'Odd Name,=verifier', md5: 'Odd Name,=md5', query: 'Odd Name,=query' };
  const q = (n: string): string => `"${n}"`;
  await cluster.query(`SET password_encryption = 'scram-sha-256'; CREATE ROLE ${q(names.scram)} LOGIN PASSWORD '${pw}'; CREATE ROLE ${q(names.verifier)} LOGIN PASSWORD '${pw}'; CREATE ROLE ${q(names.query)} LOGIN PASSWORD '${pw}'`);
  await cluster.query(`SET password_encryption = 'md5'; CREATE ROLE ${q(names.md5)} LOGIN PASSWORD '${pw}'`);
  const verifier = await rolpassword(names.verifier);
  const md5hash = await rolpassword(names.md5);
  await withGateway(
    {
      auth: {
        users: [
          { name: 'postgres', password: 'postgres' },
          { name: names.scram, password: pw },
          { name: names.verifier, scram_verifier: verifier },
          { name: names.md5, md5: md5hash, method: 'md5' },
        ],
        query: { user: 'postgres', password: 'postgres' },
      },
    },
    async (gw) => {
      assertOk(await login(gw, names.scram, pw), names.scram, 'scram');
      assertOk(await login(gw, names.scram, decomposed), names.scram, 'scram');
      assertOk(await login(gw, names.verifier, decomposed), names.verifier, 'scram');
      assertOk(await login(gw, names.verifier, pw), names.verifier, 'scram');
      assertOk(await login(gw, names.md5, pw), names.md5, 'md5');
      assertOk(await login(gw, names.query, pw), names.query, 'scram');
      assertAuthFailed(await login(gw, names.scram, pw.replace('\u00a0', '')), names.scram, 'scram');
      assertAuthFailed(await login(gw, names.md5, decomposed), names.md5, 'md5');
      // psql (libpq's own SASLprep and md5)
      for (const user of [names.scram, names.verifier, names.md5, names.query]) {
        const r = await psql([`host=127.0.0.1 port=${gw.port} dbname=postgres user='${user}'`, '-c', 'SELECT current_user'], { PGPASSWORD: pw });
        assert.equal(r.code, 0, `${user}: ${r.stderr}`);
        assert.equal(r.stdout.trim(), user);
      }
    },
  );
});

test('MD5 default method with an auth query: an unknown user gets the same challenge as an existing (SCRAM-stored) role', async () => {
  // PostgreSQL 14+ stores new passwords as SCRAM verifiers; with an "md5" pg_hba line it answers such roles with
  // SCRAM, and a role that does not exist with a SCRAM mock exchange too (the mock follows password_encryption),
  // so the challenge does not tell whether the role exists.
  await createRole('aq_enum', 'aq-enum-1');
  // what the primary itself (pg_hba "md5") does
  const primary = { port: cluster.primary.port } as Gateway;
  assert.deepEqual((await login(primary, 'aq_enum', 'wrong')).methods, ['scram']);
  assert.deepEqual((await login(primary, 'aq_enum_nobody', 'wrong')).methods, ['scram']);
  await withGateway({ auth: { method: 'md5', query: { user: 'postgres', password: 'postgres' } } }, async (gw) => {
    const known = await login(gw, 'aq_enum', 'wrong');
    assertAuthFailed(known, 'aq_enum', 'scram');
    const unknown = await login(gw, 'aq_enum_nobody', 'wrong');
    assertAuthFailed(unknown, 'aq_enum_nobody');
    assert.deepEqual(unknown.methods, known.methods, 'the authentication request reveals whether the role exists');
  });
});
