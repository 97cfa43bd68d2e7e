// Server behaviour a real PostgreSQL will not produce on demand, against a scripted fake server.

import test from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import * as m from '../../src/protocol/messages.js';
import { FakeServer, type FakeServerScript } from '../harness/fake-server.js';
import { RawClient, typeOf, sqlstate } from '../harness/raw-client.js';

async function withFake(script: FakeServerScript, fn: (gw: Gateway, fake: FakeServer) => Promise<void>, mode: 'session' | 'transaction' = 'session'): Promise<void> {
  const fake = await FakeServer.start(script);
  const gw = await Gateway.start(
    defaultConfig({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { port: 0 },
      primary: { host: '127.0.0.1', port: fake.port },
      server_tls: { mode: 'disable' },
      pool: { mode, connect_timeout_ms: 2000 },
      auth: { users: [{ name: 'app', password: 'pw', method: 'trust' }] },
      log: { level: 'silent' },
    }),
  );
  try {
    await fn(gw, fake);
  } finally {
    await gw.close();
    await fake.stop();
  }
}

test('a malformed message from the server ends that server connection and its client, not the gateway', async () => {
  // A ParameterStatus with no NUL terminators: unreadable.
  const broken = Buffer.concat([m.frame('S', Buffer.from('no terminators')), m.readyForQuery('I')]);
  await withFake({ onQuery: (sql) => (sql.includes('bad') ? broken : Buffer.concat([m.frame('C', Buffer.from('SELECT 0\0')), m.readyForQuery('I')])) }, async (gw) => {
    const victim = await RawClient.connect(gw.port);
    await victim.startup({ user: 'app', database: 'db' });
    victim.send(m.query('SELECT bad'));
    const [err] = (await victim.until('E')).slice(-1);
    assert.equal(sqlstate(err!), '08006');
    await victim.closed;
    // The gateway is alive and serves the next client.
    const next = await RawClient.connect(gw.port);
    await next.startup({ user: 'app', database: 'db' });
    next.send(m.query('SELECT fine'));
    const reply = await next.until('Z');
    assert.ok(reply.some((x) => typeOf(x) === 'C'));
    next.end();
  });
});

test('a client that leaves while its startup settings are applied is gone for good: no session, key or lease', async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let syncs = 0;
  await withFake(
    {
      onSync: async () => {
        syncs++;
        await held; // the server sits on the set_config answer until the client has left
      },
    },
    async (gw, fake) => {
      const raw = await RawClient.connect(gw.port);
      raw.send(m.startupMessage({ user: 'app', database: 'db', application_name: 'leaver' }));
      await raw.until('R'); // AuthenticationOk: now the gateway leases and applies the settings
      while (syncs === 0) await new Promise((r) => setTimeout(r, 10));
      raw.socket.destroy();
      await raw.closed;
      await new Promise((r) => setTimeout(r, 100));
      release();
      await new Promise((r) => setTimeout(r, 300));
      const status = gw.status() as { clients: unknown[] };
      assert.equal(status.clients.length, 0, 'no session left');
      assert.equal(gw.cancelKeyCount, 0, 'no cancel key left');
      assert.equal(gw.pools.stats().reduce((n, p) => n + p.active + p.opening, 0), 0, 'no connection left busy');
      // The next client is served (on the same connection: the pending set_config is answered before the
      // pool's DISCARD ALL, which runs after it on the connection's ordered internal queue).
      const next = await RawClient.connect(gw.port);
      const msgs = await next.startup({ user: 'app', database: 'db' });
      assert.equal(typeOf(msgs.at(-1)!), 'Z');
      assert.equal(fake.connections, 1);
      next.end();
    },
  );
});

test('transaction pooling: a server that answers with an error and dies before ReadyForQuery: the client gets that one error, then goes on', async () => {
  const ok = Buffer.concat([m.frame('C', Buffer.from('SELECT 0\0')), m.readyForQuery('I')]);
  const script: FakeServerScript = {
    onQuery: (sql, socket) => {
      if (sql === 'SELECT boom') {
        setTimeout(() => socket.destroy(), 30);
        return m.errorResponse({ severity: 'ERROR', code: '42P01', message: 'relation "boom" does not exist' });
      }
      if (sql === 'SELECT vanish') {
        setTimeout(() => socket.destroy(), 30);
        return Buffer.alloc(0);
      }
      return ok;
    },
  };
  await withFake(
    script,
    async (gw) => {
      const c = await RawClient.connect(gw.port);
      await c.startup({ user: 'app', database: 'db' });
      c.send(m.query('SELECT boom'));
      const first = await c.until('Z');
      assert.deepEqual(first.map((x) => typeOf(x)), ['E', 'Z'], 'one error, then ReadyForQuery');
      assert.equal(sqlstate(first[0]!), '42P01');
      c.send(m.query('SELECT vanish'));
      const second = await c.until('Z');
      assert.deepEqual(second.map((x) => typeOf(x)), ['E', 'Z']);
      assert.equal(sqlstate(second[0]!), '08006');
      c.send(m.query('SELECT fine'));
      assert.deepEqual((await c.until('Z')).map((x) => typeOf(x)), ['C', 'Z'], 'the session goes on, on a new connection');
      const status = gw.status() as { clients: unknown[] };
      assert.equal(status.clients.length, 1);
      c.end();
    },
    'transaction',
  );
});
