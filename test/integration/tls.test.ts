// TLS on both legs of the gateway: clients → gateway (listen.tls, SSLRequest/GSSENCRequest handling) and
// gateway → PostgreSQL (server_tls modes), against real PostgreSQL 15 clusters with and without ssl=on.
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import pg from 'pg';
import postgres from 'postgres';
import { findPgBin, startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { makeTestCerts, type TestCerts } from '../harness/tls.js';
import { startGateway } from '../harness/gateway.js';
import type { Gateway } from '../../src/gateway.js';
import type { DeepPartial } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import * as m from '../../src/protocol/messages.js';

const PG_BIN = findPgBin();

/** ssl=off cluster, for the client leg and for server_tls against a server without TLS. */
let plain: PgCluster;
/** ssl=on cluster, with a certificate for 127.0.0.1/localhost from its own CA. */
let secure: PgCluster;
let tmpDir: string;
/** The gateway's listener certificate (its own CA). */
let gwCerts: TestCerts;
/** An unrelated CA: trusts neither the gateway nor the secure cluster. */
let otherCerts: TestCerts;

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-tls-test-'));
  gwCerts = makeTestCerts(path.join(tmpDir, 'gateway'));
  otherCerts = makeTestCerts(path.join(tmpDir, 'other'));
  [plain, secure] = await Promise.all([startCluster(), startCluster({ ssl: true })]);
});

after(async () => {
  await Promise.all([plain?.destroy(), secure?.destroy()]);
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// helpers

async function withGateway(cluster: PgCluster, overrides: DeepPartial<Config>, fn: (gw: Gateway) => Promise<void>): Promise<void> {
  const gw = await startGateway(cluster, overrides);
  try {
    await fn(gw);
  } finally {
    await gw.close();
  }
}

const listenTls = (): DeepPartial<Config> => ({ listen: { tls: { cert: gwCerts.certFile, key: gwCerts.keyFile } } });

type PgErr = Error & { code?: string };

function pgClient(gw: Gateway, extra: pg.ClientConfig = {}): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: gw.port,
    user: 'postgres',
    password: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
    ...extra,
  });
  c.on('error', () => {});
  return c;
}

/** Connect, run sql, return the first row's first column; rejects with pg's error. */
async function scalar(gw: Gateway, sql: string, extra: pg.ClientConfig = {}): Promise<unknown> {
  const c = pgClient(gw, extra);
  await c.connect();
  try {
    const r = await c.query({ text: sql, rowMode: 'array' });
    return r.rows[0]?.[0];
  } finally {
    await c.end().catch(() => {});
  }
}

async function connectError(gw: Gateway, extra: pg.ClientConfig = {}): Promise<PgErr> {
  const c = pgClient(gw, extra);
  try {
    await c.connect();
  } catch (e) {
    return e as PgErr;
  }
  await c.end().catch(() => {});
  assert.fail('expected the connection to fail');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const SERVER_SSL = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

function psql(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      path.join(PG_BIN!, 'psql'),
      ['-X', '-A', '-t', '-w', ...args],
      { env: { PATH: process.env.PATH ?? '', PGPASSWORD: 'postgres', PGCONNECT_TIMEOUT: '10', ...env }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
}

/** A raw socket with a byte buffer: read exact byte counts, see when the peer closes. */
class Raw {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;
  readonly closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }

  /** Stop reading, so the socket can be handed to tls.connect. */
  detach(): net.Socket {
    this.socket.removeAllListeners('data');
    return this.socket;
  }

  get buffered(): number {
    return this.buf.length;
  }

  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.buf.length} of ${n} bytes: ${JSON.stringify(this.buf.toString('latin1'))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = undefined;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** One typed backend message (type byte + length + body). */
  async message(timeoutMs = 5000): Promise<{ type: string; body: Buffer }> {
    const hdr = await this.read(5, timeoutMs);
    const body = await this.read(hdr.readInt32BE(1) - 4, timeoutMs);
    return { type: String.fromCharCode(hdr[0]!), body };
  }

  /** Resolves true if the peer closes within ms. */
  async closesWithin(ms: number): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const SSL_REQUEST = m.sslRequest();
const GSSENC_REQUEST = Buffer.concat([int32(8), int32(m.GSSENC_REQUEST_CODE)]);

const startupPacket = m.startupMessage;

/** ErrorResponse fields from a message body (the frame without its type and length). */
function errorFields(body: Buffer): Map<string, string> {
  return m.readErrorFields(m.frame('E', body));
}

/** The first answer to a StartupMessage for postgres: AuthenticationSASL offering SCRAM-SHA-256. */
function assertSaslRequest(msg: { type: string; body: Buffer }): void {
  assert.equal(msg.type, 'R', `expected an authentication request, got '${msg.type}' ${JSON.stringify(msg.body.toString('latin1'))}`);
  assert.equal(msg.body.readInt32BE(0), 10, 'AuthenticationSASL');
  assert.deepEqual(msg.body.subarray(4).toString().split('\0').filter(Boolean), ['SCRAM-SHA-256']);
}

// ---------------------------------------------------------------------------
// client leg

test('client TLS: node-postgres verifies the gateway certificate (CA + host name) and queries work', async () => {
  await withGateway(plain, listenTls(), async (gw) => {
    // verify-full style: the CA, with the name checked against "localhost" while connecting to 127.0.0.1
    const c = pgClient(gw, { ssl: { ca: gwCerts.caPem, servername: 'localhost', rejectUnauthorized: true } });
    await c.connect();
    try {
      const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
      assert.ok(stream instanceof tls.TLSSocket && stream.encrypted, 'the client socket is TLS');
      assert.match(String(stream.getProtocol()), /^TLSv1\.[23]$/);
      assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
      const mine = gw.status().clients.filter((s) => s.user === 'postgres' && s.state === 'ready');
      assert.equal(mine.length, 1);
      assert.equal(mine[0]!.tls, true, 'the gateway sees the session as TLS');
    } finally {
      await c.end();
    }
    // the IP SAN also verifies without a server name
    assert.equal(await scalar(gw, 'SELECT 2', { ssl: { ca: gwCerts.caPem, rejectUnauthorized: true } }), 2);
    // and verification is really on: a client trusting another CA refuses the gateway
    const bad = await connectError(gw, { ssl: { ca: otherCerts.caPem, servername: 'localhost', rejectUnauthorized: true } });
    assert.match(bad.message, /certificate/i);
    // a wrong host name is refused too
    const wrongName = await connectError(gw, { ssl: { ca: gwCerts.caPem, servername: 'db.example.com', rejectUnauthorized: true } });
    assert.match(wrongName.message, /altnames|does not match|Hostname/i);
    // a plaintext client still works (TLS is offered, not required, for SCRAM users)
    assert.equal(await scalar(gw, 'SELECT 3', { ssl: false }), 3);
  });
});

test('client TLS: psql sslmode=verify-full to host=localhost; postgres.js with ssl', async () => {
  await withGateway(plain, listenTls(), async (gw) => {
    const r = await psql(['-h', 'localhost', '-p', String(gw.port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 40 + 2', '-c', '\\conninfo'], {
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: gwCerts.caFile,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^42$/m);
    assert.match(r.stdout, /SSL connection \(protocol: TLSv1\.[23]/);

    const untrusted = await psql(['-h', 'localhost', '-p', String(gw.port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 1'], {
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: otherCerts.caFile,
    });
    assert.notEqual(untrusted.code, 0);
    assert.match(untrusted.stderr, /certificate verify failed/);

    const sql = postgres({
      host: '127.0.0.1',
      port: gw.port,
      user: 'postgres',
      password: 'postgres',
      database: 'postgres',
      ssl: { ca: gwCerts.caPem, servername: 'localhost', rejectUnauthorized: true },
      max: 1,
      connect_timeout: 10,
      onnotice: () => {},
    });
    try {
      const rows = await sql<{ x: number }[]>`SELECT ${7}::int * 6 AS x`;
      assert.equal(rows[0]!.x, 42);
      const clients = gw.status().clients.filter((s) => s.state === 'ready');
      assert.equal(clients.length, 1);
      assert.equal(clients[0]!.tls, true);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});

test('client TLS: a gateway without listen.tls answers the SSLRequest with N', async () => {
  await withGateway(plain, {}, async (gw) => {
    const raw = await Raw.connect(gw.port);
    try {
      raw.socket.write(SSL_REQUEST);
      assert.equal((await raw.read(1)).toString(), 'N');
      // then the same connection goes on in plaintext
      raw.socket.write(startupPacket({ user: 'postgres', database: 'postgres' }));
      assertSaslRequest(await raw.message());
    } finally {
      raw.destroy();
    }

    const prefer = await psql(['-h', '127.0.0.1', '-p', String(gw.port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 5', '-c', '\\conninfo'], { PGSSLMODE: 'prefer' });
    assert.equal(prefer.code, 0, prefer.stderr);
    assert.match(prefer.stdout, /^5$/m);
    assert.doesNotMatch(prefer.stdout, /SSL connection/);

    const require = await psql(['-h', '127.0.0.1', '-p', String(gw.port), '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 1'], { PGSSLMODE: 'require' });
    assert.notEqual(require.code, 0);
    assert.match(require.stderr, /server does not support SSL, but SSL was required/);

    const e = await connectError(gw, { ssl: { rejectUnauthorized: false } });
    assert.match(e.message, /does not support SSL/);
  });
});

test('client TLS: bytes sent after the SSLRequest, before the handshake, are rejected (08P01)', async () => {
  await withGateway(plain, listenTls(), async (gw) => {
    // SSLRequest and a plaintext StartupMessage in one write: a man in the middle could inject the latter
    const raw = await Raw.connect(gw.port);
    try {
      raw.socket.write(Buffer.concat([SSL_REQUEST, startupPacket({ user: 'postgres', database: 'postgres' })]));
      const msg = await raw.message();
      assert.equal(msg.type, 'E', 'no S: the gateway must not start TLS with injected bytes pending');
      const f = errorFields(msg.body);
      assert.equal(f.get('C'), '08P01');
      assert.equal(f.get('S'), 'FATAL');
      assert.match(f.get('M') ?? '', /unencrypted data after SSL request/);
      assert.ok(await raw.closesWithin(3000), 'connection closed');
      assert.equal(raw.buffered, 0, 'nothing after the error');
    } finally {
      raw.destroy();
    }

    // The same bytes arriving after the 'S' are not TLS: the handshake fails and the connection is closed.
    const raw2 = await Raw.connect(gw.port);
    try {
      raw2.socket.write(SSL_REQUEST);
      assert.equal((await raw2.read(1)).toString(), 'S');
      raw2.socket.write(startupPacket({ user: 'postgres', database: 'postgres' }));
      assert.ok(await raw2.closesWithin(3000), 'connection closed after a non-TLS handshake');
    } finally {
      raw2.destroy();
    }

    // the gateway is unharmed
    assert.equal(await scalar(gw, 'SELECT 1', { ssl: { ca: gwCerts.caPem, servername: 'localhost' } }), 1);
  });
});

test('client TLS: GSSENCRequest is answered N and a normal startup follows', async () => {
  await withGateway(plain, listenTls(), async (gw) => {
    // separate writes
    let raw = await Raw.connect(gw.port);
    try {
      raw.socket.write(GSSENC_REQUEST);
      assert.equal((await raw.read(1)).toString(), 'N');
      raw.socket.write(startupPacket({ user: 'postgres', database: 'postgres' }));
      assertSaslRequest(await raw.message());
    } finally {
      raw.destroy();
    }

    // one write: the startup packet queued behind the GSSENCRequest is still read
    raw = await Raw.connect(gw.port);
    try {
      raw.socket.write(Buffer.concat([GSSENC_REQUEST, startupPacket({ user: 'postgres', database: 'postgres' })]));
      assert.equal((await raw.read(1)).toString(), 'N');
      assertSaslRequest(await raw.message());
    } finally {
      raw.destroy();
    }

    // what libpq does with gssencmode=prefer and sslmode=prefer: GSSENCRequest, then SSLRequest, then TLS
    raw = await Raw.connect(gw.port);
    let secureSocket: tls.TLSSocket | undefined;
    try {
      raw.socket.write(GSSENC_REQUEST);
      assert.equal((await raw.read(1)).toString(), 'N');
      raw.socket.write(SSL_REQUEST);
      assert.equal((await raw.read(1)).toString(), 'S');
      const sock = raw.detach();
      secureSocket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ socket: sock, ca: gwCerts.caPem, servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
      const sr = new Raw(secureSocket);
      secureSocket.write(startupPacket({ user: 'postgres', database: 'postgres' }));
      assertSaslRequest(await sr.message());
    } finally {
      secureSocket?.destroy();
      raw.destroy();
    }

    // a second SSLRequest inside TLS is a protocol violation
    raw = await Raw.connect(gw.port);
    secureSocket = undefined;
    try {
      raw.socket.write(SSL_REQUEST);
      assert.equal((await raw.read(1)).toString(), 'S');
      const sock = raw.detach();
      secureSocket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ socket: sock, ca: gwCerts.caPem, servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
      const sr = new Raw(secureSocket);
      secureSocket.write(SSL_REQUEST);
      const msg = await sr.message();
      assert.equal(msg.type, 'E');
      assert.equal(errorFields(msg.body).get('C'), '08P01');
      assert.match(errorFields(msg.body).get('M') ?? '', /SSL request received on an encrypted connection/);
      assert.ok(await sr.closesWithin(3000), 'connection closed');
    } finally {
      secureSocket?.destroy();
      raw.destroy();
    }
  });
});

test('client TLS: sessions of TLS clients that disconnected leave the gateway (status().clients)', async () => {
  await withGateway(plain, listenTls(), async (gw) => {
    for (let i = 0; i < 2; i++) {
      assert.equal(await scalar(gw, 'SELECT 1', { ssl: false }), 1);
      assert.equal(await scalar(gw, 'SELECT 1', { ssl: { ca: gwCerts.caPem, servername: 'localhost' } }), 1);
    }
    // one whose handshake fails
    const r = await Raw.connect(gw.port);
    r.socket.write(SSL_REQUEST);
    assert.equal((await r.read(1)).toString(), 'S');
    r.socket.write('not a TLS ClientHello');
    assert.ok(await r.closesWithin(3000));
    r.destroy();

    const deadline = Date.now() + 3000;
    while (gw.status().clients.length > 0 && Date.now() < deadline) await sleep(50);
    assert.deepEqual(
      gw.status().clients.map((c) => ({ id: c.id, tls: c.tls, state: c.state })),
      [],
      'every client has disconnected, so none should be listed (or kept in memory)',
    );
  });
});

test('client TLS: a client that hangs up in the middle of the TLS handshake is seen to leave', async () => {
  await withGateway(plain, listenTls(), async (gw) => {
    const counts = gw.events.counts;
    const r = await Raw.connect(gw.port);
    r.socket.write(SSL_REQUEST);
    assert.equal((await r.read(1)).toString(), 'S');
    r.socket.end(); // FIN instead of a ClientHello
    await r.closed;
    const deadline = Date.now() + 3000;
    while ((counts.get('client_disconnected') ?? 0) < 1 && Date.now() < deadline) await sleep(50);
    // finish() must run (client_disconnected), as for every other way a client can leave
    assert.equal(counts.get('client_connected'), 1);
    assert.equal(counts.get('client_disconnected') ?? 0, 1, `events: ${JSON.stringify(Object.fromEntries(counts))}`);
  });
});

// ---------------------------------------------------------------------------
// server leg

test('server TLS: require and verify-full connect to the server over TLS', async () => {
  assert.ok(secure.tls);
  for (const server_tls of [{ mode: 'require' }, { mode: 'verify-full', ca: secure.tls.caFile }, { mode: 'prefer' }] as const) {
    await withGateway(secure, { server_tls }, async (gw) => {
      assert.equal(await scalar(gw, SERVER_SSL), true, `server sees TLS with server_tls ${JSON.stringify(server_tls)}`);
      assert.equal(await scalar(gw, 'SELECT 1'), 1);
    });
  }
  // control: with TLS disabled the server sees a plaintext connection
  await withGateway(secure, { server_tls: { mode: 'disable' } }, async (gw) => {
    assert.equal(await scalar(gw, SERVER_SSL), false);
  });
  // verify-full also accepts the host name the certificate was issued for
  await withGateway(secure, { server_tls: { mode: 'verify-full', ca: secure.tls.caFile }, primary: { host: 'localhost' } }, async (gw) => {
    assert.equal(await scalar(gw, SERVER_SSL), true);
  });
});

test('server TLS: verify-full against a certificate from another CA fails clearly; the gateway keeps serving', async () => {
  await withGateway(secure, { server_tls: { mode: 'verify-full', ca: otherCerts.caFile } }, async (gw) => {
    const t0 = performance.now();
    const errors = await Promise.all([0, 1, 2].map(() => connectError(gw)));
    assert.ok(performance.now() - t0 < 5000, 'refused promptly');
    for (const e of errors) {
      assert.equal(e.code, '08006', e.message);
      assert.match(e.message, /TLS/);
      assert.match(e.message, /certificate/i);
    }
    // still up and answering: a bad password is judged by the gateway itself, the status works
    const bad = await connectError(gw, { password: 'nope' });
    assert.equal(bad.code, '28P01');
    assert.equal(typeof gw.status().uptime_s, 'number');
    // and the next client gets the same clean error, not a hang
    assert.equal((await connectError(gw)).code, '08006');
  });
  // the auth query goes over the same TLS settings, and fails as clearly
  await withGateway(secure, { server_tls: { mode: 'verify-full', ca: otherCerts.caFile }, auth: { query: { user: 'postgres', password: 'postgres' } } }, async (gw) => {
    const e = await connectError(gw, { user: 'someone_else', password: 'x' });
    assert.equal(e.code, '08006', e.message);
    assert.match(e.message, /could not look up the credentials of user "someone_else"/);
    assert.match(e.message, /TLS/);
  });
  await withGateway(secure, { server_tls: { mode: 'verify-full', ca: secure.tls!.caFile }, auth: { query: { user: 'postgres', password: 'postgres' } } }, async (gw) => {
    await secure.query("CREATE ROLE tls_aq LOGIN PASSWORD 'tls-aq-1'");
    assert.equal(await scalar(gw, `SELECT current_user || ' ' || (${SERVER_SSL})::text`, { user: 'tls_aq', password: 'tls-aq-1' }), 'tls_aq true');
  });
});

test('server TLS: prefer falls back to plaintext on a server without TLS; require fails clearly', async () => {
  await withGateway(plain, { server_tls: { mode: 'prefer' } }, async (gw) => {
    assert.equal(await scalar(gw, SERVER_SSL), false);
  });
  await withGateway(plain, { server_tls: { mode: 'require' } }, async (gw) => {
    const e = await connectError(gw);
    assert.equal(e.code, '08006', e.message);
    assert.match(e.message, /does not support TLS/);
    assert.match(e.message, /require/);
  });
  await withGateway(plain, { server_tls: { mode: 'verify-full', ca: otherCerts.caFile } }, async (gw) => {
    const e = await connectError(gw);
    assert.equal(e.code, '08006', e.message);
    assert.match(e.message, /does not support TLS/);
  });
});
