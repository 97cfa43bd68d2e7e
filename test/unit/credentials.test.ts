// Unit tests for the credential store (config and auth-query users, caching, method rules, server logins, redaction) and the login throttle.

import test from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import type { AuthConfig, UserConfig } from '../../src/config/types.js';
import {
  CredentialStore,
  scramVerifierFor,
  verifyCleartextPassword,
  type AuthQueryLookup,
  type UserCredential,
} from '../../src/auth/credentials.js';
import { md5PasswordHash } from '../../src/auth/md5.js';
import { ScramClientSession, ScramServerSession, makeScramVerifier, parseScramVerifier } from '../../src/auth/scram.js';
import { LoginThrottle } from '../../src/auth/throttle.js';

function authConfig(users: UserConfig[], opts: { method?: AuthConfig['method']; query?: boolean; ttl?: number } = {}): AuthConfig {
  return {
    method: opts.method ?? 'scram-sha-256',
    users,
    ...(opts.query
      ? { query: { user: 'authq', database: 'postgres', sql: 'SELECT usename, passwd FROM pg_shadow WHERE usename = $1', cache_ttl_ms: opts.ttl ?? 60_000 } }
      : {}),
    failed_login_threshold: 5,
    failed_login_window_ms: 60_000,
    failed_login_max_delay_ms: 5_000,
  };
}

/** A fake auth query over a mutable table, counting calls. */
function fakeLookup(table: Record<string, string | null>) {
  const calls: string[] = [];
  const lookup: AuthQueryLookup = async (user) => {
    calls.push(user);
    return Object.prototype.hasOwnProperty.call(table, user) ? table[user]! : null;
  };
  return { lookup, calls, table };
}

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** Runs a real SCRAM exchange as a client knowing `password` against the credential's verifier. */
function scramLogin(cred: UserCredential, password: string) {
  const client = new ScramClientSession({ password });
  const server = new ScramServerSession(scramVerifierFor(cred)!);
  const result = server.handleClientFinal(client.handleServerFirst(server.handleClientFirst(client.clientFirst())));
  if (result.ok) client.verifyServerFinal(result.serverFinal);
  return result;
}

const SV = makeScramVerifier('svpass');
const M5 = md5PasswordHash('m5', 'm5pass');

test('config users: secrets and method rules', async () => {
  const store = new CredentialStore(
    authConfig([
      { name: 'pw', password: 'pwpass' },
      { name: 'sv', scram_verifier: SV },
      { name: 'm5', md5: M5 },
      { name: 'm5m', md5: md5PasswordHash('m5m', 'x'), method: 'md5' },
      { name: 'svmd5', scram_verifier: SV, method: 'md5' },
      { name: 'clear', password: 'x', method: 'cleartext' },
      { name: 'svclear', scram_verifier: SV, method: 'cleartext' },
      { name: 'open', method: 'trust' },
      { name: 'both', password: 'bothpass', md5: md5PasswordHash('both', 'bothpass') },
    ]),
  );
  const pw = (await store.get('pw'))!;
  assert.deepEqual({ name: pw.name, method: pw.method, source: pw.source }, { name: 'pw', method: 'scram-sha-256', source: 'config' });
  assert.deepEqual(pw.secret, { kind: 'password', password: 'pwpass' });

  const sv = (await store.get('sv'))!;
  assert.equal(sv.method, 'scram-sha-256');
  assert.equal(sv.secret?.kind, 'scram');

  // An md5 hash cannot serve SCRAM, so the user falls back to md5 (PostgreSQL does the same).
  assert.equal((await store.get('m5'))!.method, 'md5');
  assert.deepEqual((await store.get('m5'))!.secret, { kind: 'md5', hash: M5 });
  assert.equal((await store.get('m5m'))!.method, 'md5');
  // A SCRAM verifier asked for with md5 is answered with SCRAM (PostgreSQL does the same).
  assert.equal((await store.get('svmd5'))!.method, 'scram-sha-256');
  assert.equal((await store.get('clear'))!.method, 'cleartext');
  assert.equal((await store.get('svclear'))!.method, 'cleartext');
  const open = (await store.get('open'))!;
  assert.equal(open.method, 'trust');
  assert.equal(open.secret, null);
  // The most capable secret wins.
  assert.equal((await store.get('both'))!.secret?.kind, 'password');

  assert.equal(await store.get('nobody'), null);
  assert.equal(await store.get('PW'), null, 'names are case-sensitive, as in PostgreSQL');
});

test('auth.method applies to config users that do not name one', async () => {
  const store = new CredentialStore(authConfig([{ name: 'a', password: 'x' }], { method: 'md5' }));
  assert.equal((await store.get('a'))!.method, 'md5');
});

test('config errors name the user, never the secret', () => {
  assert.throws(
    () => new CredentialStore(authConfig([{ name: 'bad', scram_verifier: 'SCRAM-SHA-256$4096:topsecretvalue' }])),
    (e: unknown) => e instanceof Error && /"bad"/.test(e.message) && !/topsecretvalue/.test(e.message),
  );
  assert.throws(
    () => new CredentialStore(authConfig([{ name: 'bad', md5: 'md5topsecretvalue' }])),
    (e: unknown) => e instanceof Error && /"bad"/.test(e.message) && !/topsecretvalue/.test(e.message),
  );
  assert.throws(() => new CredentialStore(authConfig([{ name: 'x' }, { name: 'x' }])), /twice/);
});

test('without auth.query, unknown users are null and the lookup is never called', async () => {
  const { lookup, calls } = fakeLookup({ q: SV });
  const store = new CredentialStore(authConfig([]), lookup);
  assert.equal(await store.get('q'), null);
  assert.deepEqual(calls, []);
});

test('query users: cached for the TTL, then looked up again', async () => {
  const c = clock();
  const { lookup, calls } = fakeLookup({ q: SV, h: md5PasswordHash('h', 'hp'), p: 'plainpass' });
  const store = new CredentialStore(authConfig([{ name: 'cfg', password: 'x' }], { query: true, ttl: 10_000 }), lookup, c.now);

  const q = (await store.get('q'))!;
  assert.deepEqual({ name: q.name, method: q.method, source: q.source }, { name: 'q', method: 'scram-sha-256', source: 'query' });
  assert.deepEqual(q.secret, { kind: 'scram', verifier: parseScramVerifier(SV) });
  assert.equal(await store.get('q'), q, 'served from cache');
  c.advance(9_999);
  await store.get('q');
  assert.deepEqual(calls, ['q']);
  c.advance(1);
  assert.equal(await store.get('q'), q, 'looked up again; unchanged, so the same object');
  assert.deepEqual(calls, ['q', 'q']);

  // md5 hash with method scram-sha-256 → md5.
  const h = (await store.get('h'))!;
  assert.equal(h.method, 'md5');
  assert.equal(h.secret?.kind, 'md5');
  // Neither SCRAM nor md5: a plain password (old servers, custom queries).
  assert.deepEqual((await store.get('p'))!.secret, { kind: 'password', password: 'plainpass' });

  // Config users never reach the query.
  await store.get('cfg');
  assert.ok(!calls.includes('cfg'));
});

test('query users: method md5 with a verifier becomes scram-sha-256', async () => {
  const { lookup } = fakeLookup({ q: SV, h: M5 });
  const store = new CredentialStore(authConfig([], { query: true, method: 'md5' }), lookup);
  assert.equal((await store.get('q'))!.method, 'scram-sha-256');
  assert.equal((await store.get('h'))!.method, 'md5');
});

test('query users: unknown users and users without a usable secret', async () => {
  const c = clock();
  const { lookup, calls, table } = fakeLookup({ empty: '', broken: 'SCRAM-SHA-256$garbage' });
  const store = new CredentialStore(authConfig([], { query: true, ttl: 5_000 }), lookup, c.now);
  assert.equal(await store.get('ghost'), null);
  assert.equal(await store.get('ghost'), null);
  assert.deepEqual(calls, ['ghost'], 'negative answers are cached too');

  // Exists but cannot log in with a password.
  const empty = (await store.get('empty'))!;
  assert.equal(empty.secret, null);
  assert.equal((await store.get('broken'))!.secret, null);

  // The user appears later: picked up after the TTL.
  table.ghost = SV;
  c.advance(4_000);
  assert.equal(await store.get('ghost'), null);
  c.advance(1_000);
  assert.equal((await store.get('ghost'))!.secret?.kind, 'scram');
});

test('refresh bypasses the cache, but not for an answer fetched within the last second', async () => {
  const c = clock();
  const { lookup, calls, table } = fakeLookup({ q: SV });
  const store = new CredentialStore(authConfig([], { query: true, ttl: 60_000 }), lookup, c.now);
  await store.get('q');
  // Just fetched: a refresh storm does not hammer the primary.
  await store.get('q', { refresh: true });
  assert.equal(calls.length, 1);

  // The password changes; a failed login asks for a refresh and gets the new verifier.
  const newSv = makeScramVerifier('newpass');
  table.q = newSv;
  c.advance(1_000);
  assert.deepEqual((await store.get('q'))!.secret, { kind: 'scram', verifier: parseScramVerifier(SV) }, 'still cached');
  const fresh = (await store.get('q', { refresh: true }))!;
  assert.equal(calls.length, 2);
  assert.deepEqual(fresh.secret, { kind: 'scram', verifier: parseScramVerifier(newSv) });
  assert.equal(await store.get('q'), fresh, 'refreshed answer is cached');

  // Refresh also re-checks a negative answer.
  await store.get('later');
  table.later = SV;
  c.advance(1_000);
  assert.equal((await store.get('later', { refresh: true }))!.secret?.kind, 'scram');
});

test('refresh with a zero TTL always looks up', async () => {
  const { lookup, calls } = fakeLookup({ q: SV });
  const store = new CredentialStore(authConfig([], { query: true, ttl: 0 }), lookup, clock().now);
  await store.get('q');
  await store.get('q');
  await store.get('q', { refresh: true });
  assert.equal(calls.length, 3);
});

test('concurrent gets share one lookup', async () => {
  let release!: (v: string | null) => void;
  let calls = 0;
  const lookup: AuthQueryLookup = () => {
    calls++;
    return new Promise((resolve) => (release = resolve));
  };
  const store = new CredentialStore(authConfig([], { query: true }), lookup);
  const all = Promise.all([store.get('q'), store.get('q'), store.get('q', { refresh: true })]);
  await new Promise((r) => setImmediate(r));
  release(SV);
  const [a, b, c] = await all;
  assert.equal(calls, 1);
  assert.equal(a, b);
  assert.equal(b, c);
});

test('a failing lookup rejects and leaves the cache as it was', async () => {
  const c = clock();
  let down = false;
  let calls = 0;
  const lookup: AuthQueryLookup = async () => {
    calls++;
    if (down) throw new Error('connection refused');
    return SV;
  };
  const store = new CredentialStore(authConfig([], { query: true, ttl: 10_000 }), lookup, c.now);
  const before = await store.get('q');
  down = true;
  c.advance(2_000);
  await assert.rejects(store.get('q', { refresh: true }), /connection refused/);
  assert.equal(await store.get('q'), before, 'still served from cache');
  assert.equal(calls, 2);
  // Errors are not cached: the next call tries again.
  c.advance(10_000);
  await assert.rejects(store.get('q'), /connection refused/);
  assert.equal(calls, 3);
  // A lookup that throws synchronously behaves the same.
  const sync = new CredentialStore(authConfig([], { query: true }), () => {
    throw new Error('sync boom');
  });
  await assert.rejects(sync.get('q'), /sync boom/);
});

test('a lookup overtaken by invalidate() does not overwrite the newer answer', async () => {
  const pending: Array<(v: string | null) => void> = [];
  const lookup: AuthQueryLookup = () => new Promise((resolve) => pending.push(resolve));
  const store = new CredentialStore(authConfig([], { query: true, ttl: 60_000 }), lookup, clock().now);
  const tick = () => new Promise((r) => setImmediate(r));

  const slow = store.get('q');
  await tick();
  store.invalidate('q'); // e.g. the admin API after ALTER ROLE ... PASSWORD
  const newSv = makeScramVerifier('new');
  const fast = store.get('q');
  await tick();
  assert.equal(pending.length, 2, 'the second get did not join the invalidated lookup');
  pending[1]!(newSv);
  const fresh = (await fast)!;
  pending[0]!(SV);
  await slow;
  // The cache kept the newer answer: no further lookup, same credential.
  assert.equal(await store.get('q'), fresh);
  assert.equal(pending.length, 2);
  assert.deepEqual(fresh.secret, { kind: 'scram', verifier: parseScramVerifier(newSv) });
});

test('invalidate forces a new lookup; config users stay', async () => {
  const { lookup, calls } = fakeLookup({ a: SV, b: M5 });
  const store = new CredentialStore(authConfig([{ name: 'cfg', password: 'x' }], { query: true }), lookup);
  await store.get('a');
  await store.get('b');
  store.invalidate('a');
  await store.get('a');
  await store.get('b');
  assert.deepEqual(calls, ['a', 'b', 'a']);
  store.invalidate();
  await store.get('a');
  await store.get('b');
  assert.deepEqual(calls, ['a', 'b', 'a', 'a', 'b']);
  assert.ok(await store.get('cfg'));
});

test('serverLogin: password, then md5 hash, then a remembered ClientKey, else null', async () => {
  const { lookup } = fakeLookup({ qsv: SV, qmd5: md5PasswordHash('qmd5', 'p') });
  const store = new CredentialStore(
    authConfig(
      [
        { name: 'pw', password: 'pwpass' },
        { name: 'both', password: 'bothpass', scram_verifier: SV },
        { name: 'm5', md5: M5 },
        { name: 'sv', scram_verifier: SV },
        { name: 'open', method: 'trust' },
      ],
      { query: true },
    ),
    lookup,
  );
  assert.deepEqual(store.serverLogin('pw'), { password: 'pwpass' });
  assert.deepEqual(store.serverLogin('both'), { password: 'bothpass' });
  assert.deepEqual(store.serverLogin('m5'), { md5Hash: M5 });
  assert.equal(store.serverLogin('sv'), null, 'a verifier alone cannot log in');
  assert.equal(store.serverLogin('open'), null);
  assert.equal(store.serverLogin('nobody'), null);
  assert.equal(store.serverLogin('qsv'), null, 'not looked up yet');
  await store.get('qmd5');
  assert.deepEqual(store.serverLogin('qmd5'), { md5Hash: md5PasswordHash('qmd5', 'p') });

  // A client's successful SCRAM login teaches the gateway the ClientKey.
  const sv = (await store.get('sv'))!;
  assert.deepEqual(scramLogin(sv, 'wrong'), { ok: false });
  const result = scramLogin(sv, 'svpass');
  assert.ok(result.ok);
  store.rememberClientKey('sv', result.clientKey);
  const creds = store.serverLogin('sv');
  assert.ok(creds && 'clientKey' in creds);
  assert.deepEqual(creds.serverKey, parseScramVerifier(SV)!.serverKey);

  // ...which then logs in to a server holding the same verifier, without the password.
  const client = new ScramClientSession(creds);
  const server = new ScramServerSession(parseScramVerifier(SV)!);
  const toServer = server.handleClientFinal(client.handleServerFirst(server.handleClientFirst(client.clientFirst())));
  assert.ok(toServer.ok);
  client.verifyServerFinal(toServer.serverFinal);

  // Query users get the same treatment.
  const qsvLogin = scramLogin((await store.get('qsv'))!, 'svpass');
  assert.ok(qsvLogin.ok);
  store.rememberClientKey('qsv', qsvLogin.clientKey);
  assert.ok(store.serverLogin('qsv'));
});

test('rememberClientKey ignores keys that do not match the verifier and users that do not need one', async () => {
  const store = new CredentialStore(authConfig([{ name: 'sv', scram_verifier: SV }, { name: 'pw', password: 'p' }]));
  store.rememberClientKey('sv', Buffer.alloc(32, 1));
  store.rememberClientKey('sv', Buffer.alloc(0));
  assert.equal(store.serverLogin('sv'), null);
  store.rememberClientKey('nobody', Buffer.alloc(32));
  assert.equal(store.serverLogin('nobody'), null);
  store.rememberClientKey('pw', Buffer.alloc(32));
  assert.deepEqual(store.serverLogin('pw'), { password: 'p' });
});

test('a remembered ClientKey is dropped when the verifier changes', async () => {
  const c = clock();
  const { lookup, table } = fakeLookup({ q: SV });
  const store = new CredentialStore(authConfig([], { query: true, ttl: 60_000 }), lookup, c.now);
  const result = scramLogin((await store.get('q'))!, 'svpass');
  assert.ok(result.ok);
  store.rememberClientKey('q', result.clientKey);
  assert.ok(store.serverLogin('q'));

  // Same verifier re-read: the key survives.
  c.advance(2_000);
  await store.get('q', { refresh: true });
  assert.ok(store.serverLogin('q'));

  // Password changed (new verifier): the old ClientKey would be useless, so it is gone.
  table.q = makeScramVerifier('changed');
  c.advance(2_000);
  await store.get('q', { refresh: true });
  assert.equal(store.serverLogin('q'), null);
  // Even if the old verifier came back, the key does not return by itself.
  table.q = SV;
  c.advance(2_000);
  await store.get('q', { refresh: true });
  assert.equal(store.serverLogin('q'), null);

  // invalidate() forgets learned keys too.
  store.rememberClientKey('q', result.clientKey);
  assert.ok(store.serverLogin('q'));
  store.invalidate('q');
  assert.equal(store.serverLogin('q'), null);
});

test('serverLogin returns copies, so callers cannot corrupt the remembered key', async () => {
  const store = new CredentialStore(authConfig([{ name: 'sv', scram_verifier: SV }]));
  const result = scramLogin((await store.get('sv'))!, 'svpass');
  assert.ok(result.ok);
  store.rememberClientKey('sv', result.clientKey);
  result.clientKey.fill(0);
  const first = store.serverLogin('sv') as { clientKey: Buffer };
  first.clientKey.fill(0);
  const second = store.serverLogin('sv') as { clientKey: Buffer };
  assert.notDeepEqual(second.clientKey, Buffer.alloc(32));
});

test('secrets never show up in JSON, inspect, string conversion or spreads', async () => {
  const verifierText = makeScramVerifier('v-secret');
  const { lookup } = fakeLookup({ q: verifierText });
  const store = new CredentialStore(
    authConfig([{ name: 'pw', password: 'hunter2-secret' }, { name: 'm5', md5: M5 }, { name: 'sv', scram_verifier: SV }], { query: true }),
    lookup,
  );
  const creds = [(await store.get('pw'))!, (await store.get('m5'))!, (await store.get('sv'))!, (await store.get('q'))!];
  const needles = [
    'hunter2-secret',
    M5,
    M5.slice(3),
    ...[SV, verifierText].flatMap((s) => {
      const v = parseScramVerifier(s)!;
      return [s, v.storedKey.toString('base64'), v.serverKey.toString('base64'), v.storedKey.toString('hex')];
    }),
  ];
  for (const cred of creds) {
    const renderings = [
      JSON.stringify(cred),
      JSON.stringify({ wrapped: [cred] }),
      inspect(cred),
      inspect(cred, { depth: 10 }),
      inspect({ wrapped: cred }, { depth: 10 }),
      `${String(inspect(cred))}`,
      JSON.stringify({ ...cred }),
    ];
    for (const text of renderings) {
      assert.ok(!/secret|hunter2|SCRAM-SHA-256|storedKey|password|md5[0-9a-f]/.test(text), text);
      for (const n of needles) assert.ok(!text.includes(n), `${cred.name}: ${text}`);
    }
    // Still readable when asked for explicitly.
    assert.ok(cred.secret);
    assert.deepEqual(Object.keys(cred).sort(), ['method', 'name', 'source']);
  }
  // The credential cannot be altered to swap in another secret.
  const pw = creds[0]!;
  assert.throws(() => {
    (pw as { secret: unknown }).secret = null;
  }, TypeError);
  assert.throws(() => {
    (pw as { method: string }).method = 'trust';
  }, TypeError);
});

test('scramVerifierFor: stored verifier, derived once from a password, none from an md5 hash', async () => {
  const store = new CredentialStore(
    authConfig([{ name: 'pw', password: 'pwpass' }, { name: 'sv', scram_verifier: SV }, { name: 'm5', md5: M5 }, { name: 'open', method: 'trust' }]),
  );
  const pw = (await store.get('pw'))!;
  const derived = scramVerifierFor(pw)!;
  assert.equal(scramVerifierFor(pw), derived, 'derived once and reused');
  assert.equal(derived.iterations, 4096);
  assert.ok(scramLogin(pw, 'pwpass').ok);
  assert.deepEqual(scramLogin(pw, 'nope'), { ok: false });
  assert.deepEqual(scramVerifierFor((await store.get('sv'))!), parseScramVerifier(SV));
  assert.equal(scramVerifierFor((await store.get('m5'))!), null);
  assert.equal(scramVerifierFor((await store.get('open'))!), null);
});

test('verifyCleartextPassword works against every kind of secret', async () => {
  const store = new CredentialStore(
    authConfig([{ name: 'pw', password: 'pwpass' }, { name: 'sv', scram_verifier: SV }, { name: 'm5', md5: M5 }, { name: 'open', method: 'trust' }]),
  );
  const get = async (n: string) => (await store.get(n))!;
  assert.equal(verifyCleartextPassword(await get('pw'), 'pwpass'), true);
  assert.equal(verifyCleartextPassword(await get('pw'), 'pwpas'), false);
  assert.equal(verifyCleartextPassword(await get('sv'), 'svpass'), true);
  assert.equal(verifyCleartextPassword(await get('sv'), 'svpasS'), false);
  assert.equal(verifyCleartextPassword(await get('m5'), 'm5pass'), true);
  assert.equal(verifyCleartextPassword(await get('m5'), M5), false, 'the hash is not the password');
  assert.equal(verifyCleartextPassword(await get('open'), ''), false);
});

// ---------------------------------------------------------------------------------------------------
// LoginThrottle

test('LoginThrottle: no delay below the threshold, then 100ms doubling up to the cap', () => {
  const c = clock();
  const t = new LoginThrottle({ threshold: 3, windowMs: 60_000, maxDelayMs: 1_000 }, c.now);
  const a = '10.0.0.1';
  const delays: number[] = [];
  for (let i = 0; i < 8; i++) {
    delays.push(t.delayMs(a));
    t.failure(a);
  }
  delays.push(t.delayMs(a));
  // attempts 1-3 free; after 3 failures: 100, 200, 400, 800, then capped at 1000.
  assert.deepEqual(delays, [0, 0, 0, 100, 200, 400, 800, 1_000, 1_000]);
  assert.equal(t.delayMs('10.0.0.2'), 0, 'other addresses are unaffected');
});

test('LoginThrottle: success resets the address', () => {
  const c = clock();
  const t = new LoginThrottle({ threshold: 2, windowMs: 60_000, maxDelayMs: 5_000 }, c.now);
  for (let i = 0; i < 4; i++) t.failure('a');
  assert.equal(t.delayMs('a'), 400);
  t.success('a');
  assert.equal(t.delayMs('a'), 0);
  t.failure('a');
  assert.equal(t.delayMs('a'), 0);
});

test('LoginThrottle: failures older than the window are forgotten', () => {
  const c = clock();
  const t = new LoginThrottle({ threshold: 2, windowMs: 10_000, maxDelayMs: 5_000 }, c.now);
  t.failure('a'); // t=0
  c.advance(6_000);
  t.failure('a'); // t=6s
  t.failure('a'); // t=6s
  assert.equal(t.delayMs('a'), 200, '3 failures in the window');
  c.advance(4_000); // t=10s: the first failure leaves the window
  assert.equal(t.delayMs('a'), 100);
  c.advance(6_000); // t=16s: all gone
  assert.equal(t.delayMs('a'), 0);
  assert.equal(t.size, 0, 'the entry itself is dropped');
});

test('LoginThrottle: long attacks stay at the cap without growing memory per address', () => {
  const c = clock();
  const t = new LoginThrottle({ threshold: 5, windowMs: 60_000, maxDelayMs: 30_000 }, c.now);
  for (let i = 0; i < 10_000; i++) {
    t.failure('a');
    c.advance(1);
  }
  assert.equal(t.delayMs('a'), 30_000);
  assert.equal(t.size, 1);
});

test('LoginThrottle: bounded number of addresses, least recently failed evicted first', () => {
  const c = clock();
  const t = new LoginThrottle({ threshold: 1, windowMs: 3_600_000, maxDelayMs: 1_000 }, c.now);
  t.failure('victim');
  for (let i = 0; i < 10_000; i++) t.failure(`198.51.100.${i}`);
  assert.equal(t.size, 10_000);
  assert.equal(t.delayMs('victim'), 0, 'oldest entry evicted');
  assert.equal(t.delayMs('198.51.100.9999'), 100);
  // Expired entries are swept as failures keep arriving.
  c.advance(3_600_001);
  for (let i = 0; i < 1_000; i++) t.failure(`203.0.113.${i}`);
  assert.equal(t.size, 1_000);
});

test('LoginThrottle: a zero threshold or cap disables it', () => {
  for (const opts of [
    { threshold: 0, windowMs: 1_000, maxDelayMs: 1_000 },
    { threshold: 3, windowMs: 1_000, maxDelayMs: 0 },
  ]) {
    const t = new LoginThrottle(opts, clock().now);
    for (let i = 0; i < 10; i++) t.failure('a');
    assert.equal(t.delayMs('a'), 0);
    assert.equal(t.size, 0);
  }
});
