// The relay under backpressure in both directions: frames queued for writing must survive later reads.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pg from 'pg';
import { startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { startGateway } from '../harness/gateway.js';
import { RawClient, typeOf } from '../harness/raw-client.js';
import * as m from '../../src/protocol/messages.js';
import type { Gateway } from '../../src/gateway.js';

let cluster: PgCluster;
let gw: Gateway;

before(async () => {
  cluster = await startCluster();
  gw = await startGateway(cluster, { auth: { users: [{ name: 'postgres', password: 'postgres', method: 'trust' }] } });
});

after(async () => {
  await gw?.close();
  await cluster?.destroy();
});

// ~30 MB of rows whose content depends on their position, so any corruption or reordering shows.
const BIG = "SELECT i, repeat(md5(i::text), 100) AS v FROM generate_series(1, 10000) AS i ORDER BY i";

/** SHA-256 over the DataRow bytes of a result read from a raw protocol session. */
async function hashResult(raw: RawClient): Promise<{ rows: number; sha: string }> {
  const h = crypto.createHash('sha256');
  let rows = 0;
  for (;;) {
    const msg = await raw.next();
    const t = typeOf(msg);
    if (t === 'D') {
      rows++;
      h.update(msg);
    } else if (t === 'E') assert.fail(m.readErrorFields(msg).get('M'));
    else if (t === 'Z') return { rows, sha: h.digest('hex') };
  }
}

test('a client that stops reading mid-result gets every byte intact once it resumes', async () => {
  // The reference run reads as fast as it can (the primary wants a password over TCP, so it also goes through the gateway).
  const reference = await RawClient.connect(gw.port);
  await reference.startup({ user: 'postgres', database: 'postgres' });
  reference.send(m.query(BIG));
  const expected = await hashResult(reference);
  reference.end();
  assert.equal(expected.rows, 10000);

  const slow = await RawClient.connect(gw.port);
  await slow.startup({ user: 'postgres', database: 'postgres' });
  slow.socket.pause();
  slow.send(m.query(BIG));
  // Meanwhile the gateway keeps reading the server into its buffers while writes to us are queued.
  await new Promise((r) => setTimeout(r, 1500));
  slow.socket.resume();
  const got = await hashResult(slow);
  assert.deepEqual(got, expected);
  slow.end();
});

test('COPY FROM STDIN into a server that is paused: the queued data arrives intact', async () => {
  const c = new pg.Client({ host: '127.0.0.1', port: gw.port, user: 'postgres', database: 'postgres' });
  await c.connect();
  await c.query('CREATE TABLE copy_in (i int, v text)');
  const raw = await RawClient.connect(gw.port);
  await raw.startup({ user: 'postgres', database: 'postgres' });
  raw.send(m.query('COPY copy_in FROM STDIN'));
  assert.equal(typeOf((await raw.until('G')).at(-1)!), 'G');
  // Stop the server so the gateway's writes to it queue up while it keeps reading from us.
  cluster.pause(cluster.primary);
  const h = crypto.createHash('md5');
  try {
    for (let i = 1; i <= 20000; i++) {
      const line = `${i}\t${crypto.createHash('md5').update(String(i)).digest('hex').repeat(30)}\n`;
      h.update(line);
      raw.send(m.frame('d', Buffer.from(line)));
    }
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    cluster.resume(cluster.primary);
  }
  raw.send(m.frame('c'));
  const done = await raw.until('Z');
  assert.ok(done.some((x) => typeOf(x) === 'C'), 'COPY completed');
  raw.end();
  const r = await c.query("SELECT count(*)::int AS n, md5(string_agg(i || E'\\t' || v || E'\\n', '' ORDER BY i)) AS h FROM copy_in");
  assert.equal(r.rows[0].n, 20000);
  assert.equal(r.rows[0].h, h.digest('hex'));
  await c.end();
});
