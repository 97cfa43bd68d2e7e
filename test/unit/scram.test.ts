// Unit tests for SCRAM-SHA-256: the RFC 7677 vector, round trips, ClientKey pass-through, malformed input, mock verifiers.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  ScramClientSession,
  ScramError,
  ScramServerSession,
  makeScramVerifier,
  mockVerifier,
  parseScramVerifier,
  saltedPassword,
  saslprep,
  type ScramVerifier,
} from '../../src/auth/scram.js';

// RFC 7677 section 3.
const RFC = {
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  iterations: 4096,
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

const b = (s: string) => Buffer.from(s, 'latin1');
const str = (buf: Buffer) => buf.toString('latin1');

function rfcVerifier(): ScramVerifier {
  return parseScramVerifier(makeScramVerifier(RFC.password, { salt: RFC.salt, iterations: RFC.iterations }))!;
}

function verifierFor(password: string, iterations = 4096): ScramVerifier {
  return parseScramVerifier(makeScramVerifier(password, { iterations }))!;
}

/** Runs a whole exchange between our client and our server. */
function exchange(client: ScramClientSession, server: ScramServerSession) {
  const serverFirst = server.handleClientFirst(client.clientFirst());
  const clientFinal = client.handleServerFirst(serverFirst);
  return server.handleClientFinal(clientFinal);
}

test('RFC 7677 vector: client session reproduces client-final and accepts server-final', () => {
  const client = new ScramClientSession({ password: RFC.password }, { clientNonce: RFC.clientNonce, username: 'user' });
  assert.equal(str(client.clientFirst()), RFC.clientFirst);
  assert.equal(str(client.handleServerFirst(b(RFC.serverFirst))), RFC.clientFinal);
  client.verifyServerFinal(b(RFC.serverFinal));
});

test('RFC 7677 vector: server session reproduces server-first and server-final', () => {
  const verifier = rfcVerifier();
  const server = new ScramServerSession(verifier, { serverNonce: RFC.serverNonce });
  assert.equal(str(server.handleClientFirst(b(RFC.clientFirst))), RFC.serverFirst);
  const result = server.handleClientFinal(b(RFC.clientFinal));
  assert.equal(result.ok, true);
  assert.ok(result.ok);
  assert.equal(str(result.serverFinal), RFC.serverFinal);
  // The recovered ClientKey is HMAC(SaltedPassword, "Client Key"), computed independently here.
  const salted = pbkdf2Sync('pencil', RFC.salt, 4096, 32, 'sha256');
  assert.deepEqual(result.clientKey, createHmac('sha256', salted).update('Client Key').digest());
  assert.deepEqual(createHash('sha256').update(result.clientKey).digest(), verifier.storedKey);
});

test('RFC 7677 vector: the ClientKey recovered by the server reproduces the same proof', () => {
  const server = new ScramServerSession(rfcVerifier(), { serverNonce: RFC.serverNonce });
  server.handleClientFirst(b(RFC.clientFirst));
  const result = server.handleClientFinal(b(RFC.clientFinal));
  assert.ok(result.ok);
  const client = new ScramClientSession(
    { clientKey: result.clientKey, serverKey: rfcVerifier().serverKey },
    { clientNonce: RFC.clientNonce, username: 'user' },
  );
  client.clientFirst();
  assert.equal(str(client.handleServerFirst(b(RFC.serverFirst))), RFC.clientFinal);
  client.verifyServerFinal(b(RFC.serverFinal));
});

test('client-first is what libpq sends: n,,n=,r=<24-char base64 nonce>', () => {
  const first = str(new ScramClientSession({ password: 'x' }).clientFirst());
  assert.match(first, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  const other = str(new ScramClientSession({ password: 'x' }).clientFirst());
  assert.notEqual(first, other);
});

test('server-first carries a 24-char random server nonce, the salt and the iteration count', () => {
  const v = verifierFor('pw', 5000);
  const server = new ScramServerSession(v);
  const sf = str(server.handleClientFirst(b('n,,n=,r=abc')));
  const m = /^r=abc([A-Za-z0-9+/]{24}),s=([^,]+),i=5000$/.exec(sf);
  assert.ok(m, sf);
  assert.equal(m[2], v.salt.toString('base64'));
});

test('round trip with the right password succeeds and both sides agree', () => {
  const v = verifierFor('s3cret');
  const client = new ScramClientSession({ password: 's3cret' });
  const server = new ScramServerSession(v);
  const result = exchange(client, server);
  assert.ok(result.ok);
  client.verifyServerFinal(result.serverFinal);
  assert.deepEqual(createHash('sha256').update(result.clientKey).digest(), v.storedKey);
});

test('round trip with the wrong password gives ok:false, not an exception', () => {
  const result = exchange(new ScramClientSession({ password: 'wrong' }), new ScramServerSession(verifierFor('right')));
  assert.deepEqual(result, { ok: false });
});

test('ClientKey credentials learned from one exchange log in on a later one without the password', () => {
  const v = verifierFor('hunter2');
  const first = exchange(new ScramClientSession({ password: 'hunter2' }), new ScramServerSession(v));
  assert.ok(first.ok);

  // The gateway never saw the password; it replays the ClientKey against a fresh exchange.
  const client = new ScramClientSession({ clientKey: first.clientKey, serverKey: v.serverKey });
  const second = exchange(client, new ScramServerSession(v));
  assert.ok(second.ok);
  client.verifyServerFinal(second.serverFinal);

  // Against a different verifier (password changed) the same ClientKey no longer works.
  const changed = exchange(
    new ScramClientSession({ clientKey: first.clientKey, serverKey: v.serverKey }),
    new ScramServerSession(verifierFor('hunter3')),
  );
  assert.deepEqual(changed, { ok: false });
});

test('client rejects a server that does not know the ServerKey', () => {
  const v = verifierFor('pw');
  const impostor: ScramVerifier = { ...v, serverKey: Buffer.alloc(32, 7) };
  const client = new ScramClientSession({ password: 'pw' });
  const result = exchange(client, new ScramServerSession(impostor));
  // The proof is still right (StoredKey is genuine); only the server signature is wrong.
  assert.ok(result.ok);
  assert.throws(() => client.verifyServerFinal(result.serverFinal), (e: unknown) => e instanceof ScramError && /signature/.test(e.message));
});

test('client rejects e= in server-final', () => {
  const v = verifierFor('pw');
  const client = new ScramClientSession({ password: 'pw' });
  const server = new ScramServerSession(v);
  client.handleServerFirst(server.handleClientFirst(client.clientFirst()));
  assert.throws(() => client.verifyServerFinal(b('e=invalid-proof')), (e: unknown) => e instanceof ScramError && /e=invalid-proof/.test(e.message));
});

test('node-postgres as an independent client interoperates with the server session (flags n and y)', async () => {
  const require = createRequire(import.meta.url);
  const sasl = require('pg/lib/crypto/sasl') as {
    startSession(mechanisms: string[], stream?: unknown): { response: string };
    continueSession(session: unknown, password: string, serverData: string, stream?: unknown): Promise<void>;
    finalizeSession(session: unknown, serverData: string): void;
  };
  const v = verifierFor('pässword\u00a0ⅨX');
  // stream = {} makes node-postgres send the 'y' flag (it could bind but the server offers no PLUS).
  for (const stream of [undefined, {}]) {
    const session = sasl.startSession(['SCRAM-SHA-256'], stream) as { response: string };
    const server = new ScramServerSession(v);
    const serverFirst = server.handleClientFirst(Buffer.from(session.response));
    await sasl.continueSession(session, 'pässword\u00a0ⅨX', str(serverFirst), stream);
    const result = server.handleClientFinal(Buffer.from(session.response));
    assert.ok(result.ok, `flag ${stream ? 'y' : 'n'}`);
    sasl.finalizeSession(session, str(result.serverFinal));
  }
});

test("gs2 flag 'y' is accepted and must be echoed as c=eSws", () => {
  const v = verifierFor('pw');
  const client = new ScramClientSession({ password: 'pw' }, { clientNonce: 'abc' });
  client.clientFirst();
  const server = new ScramServerSession(v, { serverNonce: 'xyz' });
  const sf = server.handleClientFirst(b('y,,n=,r=abc'));
  const cf = str(client.handleServerFirst(sf));
  // Our client binds 'n'; replaying its final message after a 'y' first message is a mismatch.
  assert.throws(() => server.handleClientFinal(b(cf)), ScramError);

  // With the flag echoed properly the proof checks out (computed for the matching AuthMessage).
  const server2 = new ScramServerSession(v, { serverNonce: 'xyz' });
  const sf2 = str(server2.handleClientFirst(b('y,,n=,r=abc')));
  const salted = saltedPassword('pw', v.salt, v.iterations);
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const withoutProof = 'c=eSws,r=abcxyz';
  const am = `n=,r=abc,${sf2},${withoutProof}`;
  const sig = createHmac('sha256', createHash('sha256').update(clientKey).digest()).update(am).digest();
  const proof = Buffer.from(clientKey.map((x, i) => x ^ sig[i]!));
  const result = server2.handleClientFinal(b(`${withoutProof},p=${proof.toString('base64')}`));
  assert.ok(result.ok);
});

test("channel binding 'p=' is refused with feature_not_supported", () => {
  const server = new ScramServerSession(verifierFor('pw'));
  assert.throws(
    () => server.handleClientFirst(b('p=tls-server-end-point,,n=,r=abc')),
    (e: unknown) => e instanceof ScramError && e.sqlstate === '0A000' && /channel binding/.test(e.message),
  );
});

test('malformed client-first messages throw ScramError', () => {
  const cases: Array<[string, string]> = [
    ['', 'empty'],
    ['x,,n=,r=abc', 'bad flag'],
    ['n', 'truncated'],
    ['n;,n=,r=abc', 'no comma after flag'],
    ['n,a=someone,n=,r=abc', 'authzid'],
    ['n,x,n=,r=abc', 'junk in authzid slot'],
    ['n,,m=ext,n=,r=abc', 'mandatory extension'],
    ['n,,r=abc', 'missing n='],
    ['n,,n=', 'missing nonce'],
    ['n,,n=,r=', 'empty nonce'],
    ['n,,n=,r=a b', 'space in nonce'],
    ['n,,n=,r=ab\x7f', 'DEL in nonce'],
    ['n,,n=,r=abc,1=x', 'bad extension name'],
    ['n,,n=,r=abc,x', 'extension without ='],
    ['n,,n=,r=abc\0', 'NUL byte'],
  ];
  for (const [msg, why] of cases) {
    const server = new ScramServerSession(verifierFor('pw'));
    assert.throws(() => server.handleClientFirst(b(msg)), ScramError, why);
  }
  // Extensions after the nonce are ignored, as PostgreSQL does.
  assert.doesNotThrow(() => new ScramServerSession(verifierFor('pw')).handleClientFirst(b('n,,n=x,r=abc,x=1,y=2')));
});

test('malformed client-final messages throw ScramError; a bad proof value is ok:false', () => {
  const v = verifierFor('pw');
  const start = () => {
    const server = new ScramServerSession(v, { serverNonce: 'SRV' });
    server.handleClientFirst(b('n,,n=,r=CLI'));
    return server;
  };
  const proof = Buffer.alloc(32, 1).toString('base64');
  const cases: Array<[string, string]> = [
    ['', 'empty'],
    [`r=CLISRV,p=${proof}`, 'missing c='],
    [`c=eSws,r=CLISRV,p=${proof}`, 'flag mismatch'],
    [`c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=CLISRV,p=${proof}`, 'binding data'],
    [`c=biws,p=${proof}`, 'missing nonce'],
    [`c=biws,r=CLISRVX,p=${proof}`, 'nonce too long'],
    [`c=biws,r=CLISRW,p=${proof}`, 'nonce differs'],
    [`c=biws,r=CLISRV`, 'missing proof'],
    [`c=biws,r=CLISRV,p=${proof},x=1`, 'garbage after proof'],
    [`c=biws,r=CLISRV,p=${Buffer.alloc(31).toString('base64')}`, 'short proof'],
    [`c=biws,r=CLISRV,p=${Buffer.alloc(33).toString('base64')}`, 'long proof'],
    [`c=biws,r=CLISRV,p=!!!!`, 'not base64'],
    [`c=biws,r=CLISRV,p=${proof.slice(0, -1)}`, 'bad padding'],
  ];
  for (const [msg, why] of cases) assert.throws(() => start().handleClientFinal(b(msg)), ScramError, why);

  // Well-formed but wrong proof, with an ignored extension before it.
  assert.deepEqual(start().handleClientFinal(b(`c=biws,r=CLISRV,x=ext,p=${proof}`)), { ok: false });
});

test('server session enforces message order and single use', () => {
  const server = new ScramServerSession(verifierFor('pw'));
  assert.throws(() => server.handleClientFinal(b('c=biws,r=x,p=x')), ScramError);
  const s2 = new ScramServerSession(verifierFor('pw'));
  s2.handleClientFirst(b('n,,n=,r=abc'));
  assert.throws(() => s2.handleClientFirst(b('n,,n=,r=abc')), ScramError);
  // A failed first message still uses the session up.
  const s3 = new ScramServerSession(verifierFor('pw'));
  assert.throws(() => s3.handleClientFirst(b('bogus')), ScramError);
  assert.throws(() => s3.handleClientFirst(b('n,,n=,r=abc')), ScramError);
});

test('client validates server-first: nonce, salt, iterations, trailing data', () => {
  const make = () => {
    const c = new ScramClientSession({ password: 'pw' }, { clientNonce: 'CLI' });
    c.clientFirst();
    return c;
  };
  const salt = Buffer.alloc(16, 3).toString('base64');
  const cases: Array<[string, string]> = [
    ['', 'empty'],
    [`r=XYZSRV,s=${salt},i=4096`, 'nonce does not start with ours'],
    [`r=CLI,s=${salt},i=4096`, 'server added nothing'],
    [`r=CLI SRV,s=${salt},i=4096`, 'unprintable nonce'],
    [`r=CLISRV,i=4096`, 'missing salt'],
    [`r=CLISRV,s=,i=4096`, 'empty salt'],
    [`r=CLISRV,s=***,i=4096`, 'bad salt'],
    [`r=CLISRV,s=${salt}`, 'missing iterations'],
    [`r=CLISRV,s=${salt},i=0`, 'zero iterations'],
    [`r=CLISRV,s=${salt},i=-1`, 'negative iterations'],
    [`r=CLISRV,s=${salt},i=10000001`, 'too many iterations'],
    [`r=CLISRV,s=${salt},i=4k`, 'non-numeric iterations'],
    [`r=CLISRV,s=${salt},i=4096,x=1`, 'trailing attribute'],
    [`m=ext,r=CLISRV,s=${salt},i=4096`, 'mandatory extension'],
  ];
  for (const [msg, why] of cases) assert.throws(() => make().handleServerFirst(b(msg)), ScramError, why);
  assert.doesNotThrow(() => make().handleServerFirst(b(`r=CLISRV,s=${salt},i=1`)));
});

test('client validates server-final and enforces order', () => {
  const c = new ScramClientSession({ password: 'pw' });
  assert.throws(() => c.handleServerFirst(b('r=x,s=AAAA,i=1')), ScramError);
  assert.throws(() => c.verifyServerFinal(b('v=AAAA')), ScramError);
  const v = verifierFor('pw');
  for (const bad of ['', 'v=', 'v=AAAA', 'x=1', `v=${Buffer.alloc(32).toString('base64')}`]) {
    const client = new ScramClientSession({ password: 'pw' });
    const server = new ScramServerSession(v);
    client.handleServerFirst(server.handleClientFirst(client.clientFirst()));
    assert.throws(() => client.verifyServerFinal(b(bad)), ScramError, bad);
  }
});

test('makeScramVerifier output parses and matches PostgreSQL layout', () => {
  const s = makeScramVerifier('pw');
  assert.match(s, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
  const v = parseScramVerifier(s)!;
  assert.equal(v.iterations, 4096);
  assert.equal(v.salt.length, 16);
  assert.notEqual(makeScramVerifier('pw'), s, 'fresh salt each time');
  const fixed = makeScramVerifier('pw', { salt: Buffer.from('saltsalt'), iterations: 10 });
  assert.equal(fixed, makeScramVerifier('pw', { salt: Buffer.from('saltsalt'), iterations: 10 }));
  assert.match(fixed, /^SCRAM-SHA-256\$10:c2FsdHNhbHQ=\$/);
});

test('parseScramVerifier rejects anything that is not a verifier', () => {
  const k = Buffer.alloc(32, 1).toString('base64');
  const good = `SCRAM-SHA-256$4096:c2FsdA==$${k}:${k}`;
  assert.ok(parseScramVerifier(good));
  for (const bad of [
    '',
    'md5' + '0'.repeat(32),
    good.replace('SCRAM-SHA-256', 'SCRAM-SHA-1'),
    good.replace('$4096:', '$0:'),
    good.replace('$4096:', '$-1:'),
    good.replace('$4096:', '$99999999999:'),
    good.replace('$4096:', '$abc:'),
    good.replace('c2FsdA==', ''),
    good.replace('c2FsdA==', 'c2Fsd'),
    `SCRAM-SHA-256$4096:c2FsdA==$${k}`,
    `SCRAM-SHA-256$4096:c2FsdA==$${Buffer.alloc(31).toString('base64')}:${k}`,
    `SCRAM-SHA-256$4096:c2FsdA==$${k}:${k}:${k}`,
    good + '\n',
  ]) {
    assert.equal(parseScramVerifier(bad), null, bad);
  }
});

test('mockVerifier is deterministic per (user, secret) and nobody can pass it', () => {
  const secret = Buffer.from('process secret');
  const a = mockVerifier('alice', secret);
  assert.deepEqual(mockVerifier('alice', secret), a);
  assert.equal(a.salt.length, 16);
  assert.equal(a.iterations, 4096);
  assert.notDeepEqual(mockVerifier('bob', secret).salt, a.salt);
  assert.notDeepEqual(mockVerifier('alice', Buffer.from('other secret')).salt, a.salt);
  // The server-first for an unknown user is the same shape, with the same salt every time.
  const sf1 = str(new ScramServerSession(a).handleClientFirst(b('n,,n=,r=abc')));
  const sf2 = str(new ScramServerSession(mockVerifier('alice', secret)).handleClientFirst(b('n,,n=,r=abc')));
  assert.equal(sf1.split(',').slice(1).join(','), sf2.split(',').slice(1).join(','));
  assert.deepEqual(exchange(new ScramClientSession({ password: '' }), new ScramServerSession(a)), { ok: false });
});

test('saslprep follows PostgreSQL: ASCII untouched, mapping, NFKC, fallback to the raw password', () => {
  assert.equal(saslprep('pencil'), 'pencil');
  assert.equal(saslprep('a\tb\x07'), 'a\tb\x07', 'ASCII, even control characters, passes through');
  assert.equal(saslprep('I\u00adX'), 'IX', 'soft hyphen maps to nothing');
  assert.equal(saslprep('a\u00a0b\u3000c'), 'a b c', 'non-ASCII spaces map to space');
  assert.equal(saslprep('\u2168'), 'IX', 'NFKC');
  assert.equal(saslprep('\u00aa'), 'a', 'NFKC');
  assert.equal(saslprep('e\u0301'), '\u00e9', 'NFKC composes');
  assert.equal(saslprep('\u00ad'), '\u00ad', 'maps to empty: used as given');
  assert.equal(saslprep('\u00e9\x07'), '\u00e9\x07', 'prohibited character: used as given');
  assert.equal(saslprep('\u2168\ue000'), '\u2168\ue000', 'private use: used as given');
  assert.deepEqual(saltedPassword('I\u00adX', Buffer.from('s'), 1), saltedPassword('IX', Buffer.from('s'), 1));
  assert.deepEqual(saltedPassword('pencil', RFC.salt, 4096), pbkdf2Sync('pencil', RFC.salt, 4096, 32, 'sha256'));
  assert.throws(() => saltedPassword('x', Buffer.from('s'), 0), ScramError);
});

test('a non-ASCII password round-trips between client and server sessions', () => {
  const pw = 'Ⅸ\u00a0päss\u00ad';
  const v = verifierFor(pw);
  const client = new ScramClientSession({ password: 'IX päss' });
  const result = exchange(client, new ScramServerSession(v));
  assert.ok(result.ok, 'normalised forms are equivalent');
});

test('ScramError carries a name and sqlstate', () => {
  const e = new ScramError('x');
  assert.equal(e.name, 'ScramError');
  assert.equal(e.sqlstate, '08P01');
  assert.ok(e instanceof Error);
});
