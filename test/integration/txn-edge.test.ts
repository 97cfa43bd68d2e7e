// Transaction pooling edge cases, each a regression test for a fix in src/frontend/pooled-relay.ts:
// an error answering Sync, extended-protocol COPY FROM STDIN, the unnamed statement across requests,
// effects of reused named statements, Terminate queued behind a query, a client leaving while the
// gateway reads back session state, notifications of a rolled-back LISTEN, DEALLOCATE in a failed
// transaction, and shared statements keyed by parse-time settings.
//
// Every test starts its own gateway with pool.size 1 (so every client shares the one server connection)
// and, where the protocol allows, runs the same sequence on a direct connection to the primary and
// expects the same replies. One cluster for the file; after() closes whatever a failed test left open.

import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startCluster, type PgCluster } from '../harness/pg-cluster.js';
import { gatewayUrl, startGateway } from '../harness/gateway.js';
import { RawClient, passwordLogin, replyLabel, typeOf } from '../harness/raw-client.js';
import * as m from '../../src/protocol/messages.js';
import type { Gateway } from '../../src/gateway.js';
import type { PoolConfig } from '../../src/config/types.js';

let cluster: PgCluster;
const gateways = new Set<Gateway>();
const pgClients = new Set<pg.Client>();
const raws = new Set<RawClient>();

before(async () => {
  cluster = await startCluster();
  await cluster.query(
    [
      'CREATE TABLE te_parent (id int PRIMARY KEY)',
      'CREATE TABLE te_child (parent int REFERENCES te_parent (id) DEFERRABLE INITIALLY DEFERRED)',
      'CREATE TABLE te_copy (src text, n int)',
      'CREATE TABLE te_term (who text, n int)',
      'CREATE SCHEMA te_s',
      'CREATE SCHEMA te_a',
      'CREATE SCHEMA te_b',
      'CREATE TABLE te_a.t (v text)',
      'CREATE TABLE te_b.t (v text)',
      "INSERT INTO te_a.t VALUES ('a')",
      "INSERT INTO te_b.t VALUES ('b')",
      'CREATE TABLE te_a.u (v text)',
      'CREATE TABLE te_b.u (v int)',
      "INSERT INTO te_a.u VALUES ('a')",
      'INSERT INTO te_b.u VALUES (2)',
    ].join(';\n'),
  );
});

after(async () => {
  for (const c of raws) c.socket.destroy();
  raws.clear();
  for (const c of pgClients) await c.end().catch(() => {});
  pgClients.clear();
  for (const gw of gateways) await gw.close().catch(() => {});
  gateways.clear();
  await cluster?.destroy();
});

// ------------------------------------------------------------------ helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A gateway in transaction pooling; pool.size 1 unless told otherwise, and a queue timeout so a connection never given back shows as 53300, not a hang. */
async function gateway(pool: Partial<PoolConfig> = {}): Promise<Gateway> {
  const gw = await startGateway(cluster, { pool: { mode: 'transaction', size: 1, queue_timeout_ms: 5000, ...pool } });
  gateways.add(gw);
  return gw;
}

async function closeGateway(gw: Gateway): Promise<void> {
  if (!gateways.delete(gw)) return;
  await gw.close();
}

function url(gw: Gateway): string {
  return gatewayUrl(gw, cluster.superuser, cluster.superuserPassword);
}

/** A connected node-postgres client; closed by after() if the test does not. */
async function pgConnect(connectionString: string, opts: pg.ClientConfig = {}): Promise<pg.Client> {
  const c = new pg.Client({ connectionString, ...opts });
  c.on('error', () => {});
  pgClients.add(c);
  await c.connect();
  return c;
}

async function pgEnd(...cs: pg.Client[]): Promise<void> {
  for (const c of cs) {
    pgClients.delete(c);
    await c.end().catch(() => {});
  }
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Wait for p, failing after ms. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

type StatusClient = ReturnType<Gateway['status']>['clients'][number];
function statusOf(gw: Gateway, applicationName: string): StatusClient {
  const s = gw.status().clients.find((c) => c.application_name === applicationName);
  assert.ok(s, `gateway status lists the client with application_name ${applicationName}`);
  return s;
}

// ---- raw protocol

const { bind, execute, describe } = m;

function copyData(s: string): Buffer {
  return m.frame('d', Buffer.from(s, 'utf8'));
}
function copyDone(): Buffer {
  return m.frame('c');
}
function copyFail(message: string): Buffer {
  return m.frame('f', Buffer.from(message + '\0', 'utf8'));
}

/** A raw protocol session that logged in with a password (SCRAM, MD5 or cleartext, whatever is asked); closed by after() if the test does not. */
async function rawLogin(port: number, params: Record<string, string> = {}): Promise<RawClient> {
  const c = await RawClient.connect(port);
  raws.add(c);
  return passwordLogin(c, cluster.superuser, cluster.superuserPassword, params);
}

function rawEnd(...cs: RawClient[]): void {
  for (const c of cs) {
    if (!raws.delete(c)) continue;
    if (!c.socket.destroyed) {
      c.send(m.terminate());
      c.end();
    }
  }
}

interface Reply {
  /** One entry per message: 'E:<sqlstate>', 'D:<values>', 'C:<tag>', 'Z:<status>', 't:/T:<hex body>', or the type letter. */
  seq: string[];
  /** Messages of the ErrorResponses, in order. */
  errors: string[];
}

/** Read messages until `count` of type `stop` arrived (within timeoutMs). Notices, ParameterStatus and notifications are left out. */
async function readUntil(c: RawClient, stop: string, count = 1, timeoutMs = 5000): Promise<Reply> {
  const seq: string[] = [];
  const errors: string[] = [];
  let seen = 0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const msg = await within(c.next(), Math.max(0, deadline - Date.now()), `${count > 1 ? `${count} x ` : ''}'${stop}' (got ${JSON.stringify(seq)})`);
    const label = replyLabel(msg);
    if (label === undefined) continue;
    seq.push(label);
    if (label.startsWith('E:')) errors.push(m.readErrorFields(msg).get('M') ?? '');
    const t = typeOf(msg);
    if (t === stop && ++seen === count) return { seq, errors };
  }
}

/** Send messages in one write (ending with Sync or a Query) and read up to the `zs`-th ReadyForQuery. */
async function roundtrip(c: RawClient, msgs: Buffer[], zs = 1): Promise<Reply> {
  c.send(Buffer.concat(msgs));
  return readUntil(c, 'Z', zs);
}

/** A reply sequence with descriptions reduced to their type letter, for readable expectations. */
function shape(seq: string[]): string[] {
  return seq.map((s) => (s.startsWith('T:') || s.startsWith('t:') ? s[0]! : s));
}

const SELECT_ONE = ['T', 'D:1', 'C:SELECT 1', 'Z:I'];

/** One request: its messages (sent in one write), how many ReadyForQuery end it, and the expected reply shape. */
interface Step {
  msgs: Buffer[];
  zs?: number;
  want: string[];
}

/**
 * Run the steps on a direct connection and through the gateway, one after the other; each gateway reply
 * must have the expected shape and equal PostgreSQL's (messages of errors included). `between` runs after each step.
 */
async function compareSteps(gw: Gateway, steps: Step[], between?: (i: number) => Promise<void>): Promise<void> {
  const viaGw = await rawLogin(gw.port);
  const direct = await rawLogin(cluster.primary.port);
  try {
    for (const [i, s] of steps.entries()) {
      const d = await roundtrip(direct, s.msgs, s.zs);
      const g = await roundtrip(viaGw, s.msgs, s.zs);
      assert.deepEqual(shape(g.seq), s.want, `step ${i}: gateway replies`);
      assert.deepEqual(g.seq, d.seq, `step ${i}: gateway replies are those of PostgreSQL`);
      assert.deepEqual(g.errors, d.errors, `step ${i}: the same error messages`);
      await between?.(i);
    }
  } finally {
    rawEnd(viaGw, direct);
  }
}

// ------------------------------------------------------------------ 1. an error answering Sync

test('error answering Sync (deferred FK at commit): 1 2 C E Z as PostgreSQL, later requests get their own results, another client unaffected', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const other = await pgConnect(url(gw));
  try {
    const bad = (): Buffer[] => [m.parse('', 'INSERT INTO te_child (parent) VALUES (999)'), bind(''), execute(), m.sync()];
    const steps: Step[] = [
      { msgs: bad(), want: ['1', '2', 'C:INSERT 0 1', 'E:23503', 'Z:I'] },
      { msgs: [m.parse('n1', 'SELECT $1::int * 2 AS v'), bind('n1', ['21']), execute(), m.sync()], want: ['1', '2', 'D:42', 'C:SELECT 1', 'Z:I'] },
      { msgs: [m.query('SELECT 7 AS x')], want: ['T', 'D:7', 'C:SELECT 1', 'Z:I'] },
      // The failing request and the next one in the same write.
      {
        msgs: [...bad(), m.parse('n2', 'SELECT $1::int * 3 AS v'), bind('n2', ['5']), execute(), m.sync()],
        zs: 2,
        want: ['1', '2', 'C:INSERT 0 1', 'E:23503', 'Z:I', '1', '2', 'D:15', 'C:SELECT 1', 'Z:I'],
      },
      { msgs: [bind('n2', ['7']), execute(), m.sync()], want: ['2', 'D:21', 'C:SELECT 1', 'Z:I'] },
      { msgs: [bind('n1', ['1']), execute(), m.sync()], want: ['2', 'D:2', 'C:SELECT 1', 'Z:I'] },
      { msgs: [m.close('S', 'n1'), m.sync()], want: ['3', 'Z:I'] },
      { msgs: [bind('n1', ['1']), execute(), m.sync()], want: ['E:26000', 'Z:I'] },
    ];
    // Another client of the one server connection, between every two requests.
    await compareSteps(gw, steps, async (i) => {
      assert.equal((await other.query('SELECT count(*)::int AS n FROM te_child')).rows[0].n, 0, `step ${i}: the other client works and sees no child row`);
    });
    // A third client never parsed n1 or n2: PostgreSQL's 26000, not the first client's statements.
    const third = await rawLogin(gw.port);
    const thirdDirect = await rawLogin(cluster.primary.port);
    for (const name of ['n1', 'n2']) {
      const msgs = [bind(name, ['1']), execute(), m.sync()];
      const g = await roundtrip(third, msgs);
      assert.deepEqual(g.seq, ['E:26000', 'Z:I'], `another client's Bind of ${name}`);
      assert.deepEqual(g.errors, (await roundtrip(thirdDirect, msgs)).errors);
    }
    assert.deepEqual(shape((await roundtrip(third, [m.query('SELECT 1 AS one')])).seq), SELECT_ONE);
    rawEnd(third, thirdDirect);
    assert.equal(await cluster.query('SELECT count(*) FROM te_child'), '0', 'the failed inserts were rolled back');
  } finally {
    await pgEnd(other);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 2. extended-protocol COPY FROM STDIN

const COPY_START = (): Buffer[] => [m.parse('', 'COPY te_copy (src, n) FROM STDIN'), bind(''), describe('P', ''), execute(), m.sync()];

/** Parse/Bind/Describe/Execute/Sync of COPY FROM STDIN; after CopyInResponse, three rows and CopyDone or CopyFail, then Sync. */
async function copyIn(c: RawClient, src: string, end: 'done' | 'fail'): Promise<{ start: Reply; end: Reply; after: Reply }> {
  c.send(Buffer.concat(COPY_START()));
  const start = await readUntil(c, 'G');
  const rows = [1, 2, 3].map((n) => copyData(`${src}\t${n}\n`));
  c.send(Buffer.concat([...rows, end === 'done' ? copyDone() : copyFail('client gave up'), m.sync()]));
  const fin = await readUntil(c, 'Z');
  // Exactly one ReadyForQuery for the exchange: the next query's reply comes first, with nothing before it.
  const after = await roundtrip(c, [m.query('SELECT 1 AS one')]);
  return { start, end: fin, after };
}

test('extended-protocol COPY FROM STDIN (CopyDone and CopyFail): one ReadyForQuery as PostgreSQL, rows there, connection given back', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const viaGw = await rawLogin(gw.port);
  const direct = await rawLogin(cluster.primary.port);
  const other = await pgConnect(url(gw));
  const count = async (src: string) => (await other.query('SELECT count(*)::int AS n FROM te_copy WHERE src = $1', [src])).rows[0].n as number;
  try {
    const d = await copyIn(direct, 'direct', 'done');
    const g = await copyIn(viaGw, 'gw', 'done');
    assert.deepEqual(g.start.seq, ['1', '2', 'n', 'G'], 'ParseComplete, BindComplete, NoData, CopyInResponse');
    assert.deepEqual(g.end.seq, ['C:COPY 3', 'Z:I'], 'CommandComplete and one ReadyForQuery after CopyDone + Sync');
    assert.deepEqual(shape(g.after.seq), SELECT_ONE, 'no second ReadyForQuery for the Sync sent before CopyInResponse');
    assert.deepEqual([g.start.seq, g.end.seq, g.after.seq], [d.start.seq, d.end.seq, d.after.seq], 'the replies of PostgreSQL');
    // pool.size 1: the other client only gets the connection if the copy gave it back.
    assert.equal(await count('gw'), 3, 'the rows copied through the gateway are there');

    const df = await copyIn(direct, 'direct-fail', 'fail');
    const gf = await copyIn(viaGw, 'gw-fail', 'fail');
    assert.deepEqual(gf.start.seq, ['1', '2', 'n', 'G']);
    assert.deepEqual(gf.end.seq, ['E:57014', 'Z:I'], 'CopyFail: ErrorResponse and one ReadyForQuery');
    assert.match(gf.end.errors[0]!, /client gave up/);
    assert.deepEqual(shape(gf.after.seq), SELECT_ONE, 'the connection is usable after CopyFail');
    assert.deepEqual([gf.start.seq, gf.end.seq, gf.after.seq], [df.start.seq, df.end.seq, df.after.seq], 'the replies of PostgreSQL');
    assert.deepEqual(gf.end.errors, df.end.errors, 'the same error message');
    assert.equal(await count('gw-fail'), 0, 'nothing of the failed copy is there');

    // And a copy after both still works.
    const again = await copyIn(viaGw, 'gw-again', 'done');
    assert.deepEqual(again.end.seq, ['C:COPY 3', 'Z:I']);
    assert.equal(await count('gw-again'), 3);
    assert.equal(await count('gw'), 3);
  } finally {
    rawEnd(viaGw, direct);
    await pgEnd(other);
    await closeGateway(gw);
  }
});

test('extended-protocol COPY FROM STDIN, CopyDone + Flush, Sync later: the connection is not handed over before the Sync commits the copy', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const viaGw = await rawLogin(gw.port);
  const direct = await rawLogin(cluster.primary.port);
  const other = await pgConnect(url(gw));
  try {
    const run = async (c: RawClient, src: string, meanwhile: () => Promise<void>) => {
      c.send(Buffer.concat(COPY_START()));
      const start = await readUntil(c, 'G');
      // Flush after CopyDone (no longer in copy-in mode) makes PostgreSQL send CommandComplete now; the
      // implicit transaction of the extended query lasts until Sync.
      c.send(Buffer.concat([copyData(`${src}\t1\n`), copyDone(), m.frame('H')]));
      const done = await readUntil(c, 'C');
      await meanwhile();
      const end = await roundtrip(c, [m.sync()]);
      return [start.seq, done.seq, end.seq];
    };
    const d = await run(direct, 'late-direct', () => sleep(200));
    // Another client's failing query while the copy waits for its Sync: on a connection of its own (here:
    // after the Sync, pool.size 1), it cannot roll back the copy.
    let otherQuery: Promise<unknown> | undefined;
    const g = await run(viaGw, 'late-gw', async () => {
      otherQuery = other.query('SELECT 1/0').then(
        () => 'no error',
        (e: pg.DatabaseError) => e.code,
      );
      await sleep(300);
    });
    assert.deepEqual(g, [['1', '2', 'n', 'G'], ['C:COPY 1'], ['Z:I']]);
    assert.deepEqual(g, d, 'the replies of PostgreSQL');
    assert.equal(await otherQuery, '22012', 'the other client got its own error');
    assert.equal(await cluster.query("SELECT count(*) FROM te_copy WHERE src = 'late-direct'"), '1');
    assert.equal(await cluster.query("SELECT count(*) FROM te_copy WHERE src = 'late-gw'"), '1', 'the row copied through the gateway was committed at Sync');
  } finally {
    rawEnd(viaGw, direct);
    await pgEnd(other);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 3. the unnamed statement across requests

test("the unnamed statement survives the gateway's own set_config between Parse and Bind on another request", { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const a = await rawLogin(gw.port, { application_name: 'unnamed-a' });
  const direct = await rawLogin(cluster.primary.port, { application_name: 'unnamed-a' });
  try {
    const parseMsgs = [m.parse('', 'SELECT $1::int + 1 AS v'), describe('S', ''), m.sync()];
    const bindMsgs = [bind('', ['41']), execute(), m.sync()];
    const dp = await roundtrip(direct, parseMsgs);
    const gp = await roundtrip(a, parseMsgs);
    assert.deepEqual(shape(gp.seq), ['1', 't', 'T', 'Z:I']);
    assert.deepEqual(gp.seq, dp.seq, 'the replies of PostgreSQL');

    // B logs in with another application_name (the gateway's set_config runs on the one connection) and
    // runs a named statement (not the unnamed one, and no simple query).
    const b = await pgConnect(url(gw), { application_name: 'unnamed-b' });
    const bq = await b.query({ name: 'b1', text: "SELECT 2 AS w, current_setting('application_name') AS an" });
    assert.deepEqual(bq.rows[0], { w: 2, an: 'unnamed-b' });

    const db = await roundtrip(direct, bindMsgs);
    const gb = await roundtrip(a, bindMsgs);
    assert.deepEqual(gb.seq, ['2', 'D:42', 'C:SELECT 1', 'Z:I'], "A's Bind of its unnamed statement: 41 + 1");
    assert.deepEqual(gb.seq, db.seq, 'the replies of PostgreSQL');
    // Again, after B once more.
    assert.equal((await b.query({ name: 'b1', text: "SELECT 2 AS w, current_setting('application_name') AS an" })).rows[0].an, 'unnamed-b');
    const gb2 = await roundtrip(a, [bind('', ['1']), execute(), m.sync()]);
    assert.deepEqual(gb2.seq, ['2', 'D:2', 'C:SELECT 1', 'Z:I']);
    await pgEnd(b);
  } finally {
    rawEnd(a, direct);
    await closeGateway(gw);
  }
});

test("Bind of the unnamed statement by a client that never parsed one: 26000 as in PostgreSQL, not someone else's statement", { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const a = await rawLogin(gw.port, { application_name: 'unnamed-owner' });
  try {
    // A leaves its unnamed statement on the one server connection.
    const gp = await roundtrip(a, [m.parse('', 'SELECT $1::int + 1 AS v'), bind('', ['41']), execute(), m.sync()]);
    assert.deepEqual(gp.seq, ['1', '2', 'D:42', 'C:SELECT 1', 'Z:I']);
    // C: the same settings (nothing for the gateway to run at login), never parsed an unnamed statement.
    const c = await rawLogin(gw.port, { application_name: 'unnamed-owner' });
    const cd = await rawLogin(cluster.primary.port, { application_name: 'unnamed-owner' });
    const msgs = [bind('', ['1']), execute(), m.sync()];
    const want = await roundtrip(cd, msgs);
    assert.deepEqual(want.seq, ['E:26000', 'Z:I']);
    const got = await roundtrip(c, msgs);
    assert.deepEqual(got.seq, want.seq, 'ErrorResponse 26000 as from PostgreSQL');
    // Describe of it too.
    const wantD = await roundtrip(cd, [describe('S', ''), m.sync()]);
    const gotD = await roundtrip(c, [describe('S', ''), m.sync()]);
    assert.deepEqual(gotD.seq, wantD.seq, 'Describe of the unnamed statement: as from PostgreSQL');
    // A's statement is still A's.
    assert.deepEqual((await roundtrip(a, [bind('', ['9']), execute(), m.sync()])).seq, ['2', 'D:10', 'C:SELECT 1', 'Z:I']);
    rawEnd(c, cd);
  } finally {
    rawEnd(a);
    await closeGateway(gw);
  }
});

// Known gap (todo, reported but not failing the run): the gateway's 26000 names its internal "sy:missing".
test('the 26000 for an unnamed statement a client never parsed has the message of PostgreSQL', { timeout: 30_000, todo: 'the message names sy:missing' }, async () => {
  const gw = await gateway();
  try {
    await compareSteps(gw, [
      { msgs: [bind('', ['1']), execute(), m.sync()], want: ['E:26000', 'Z:I'] },
      { msgs: [describe('S', ''), m.sync()], want: ['E:26000', 'Z:I'] },
    ]);
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 4. effects of reused named statements

test('a reused named statement (Bind only) that sets search_path is carried; another client never sees it', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const a = await pgConnect(url(gw), { application_name: 'setpath' });
  const b = await pgConnect(url(gw), { application_name: 'checker' });
  const direct = await pgConnect(cluster.primary.url());
  try {
    const defaultPath = (await direct.query("SELECT current_setting('search_path') AS sp")).rows[0].sp as string;
    for (let i = 1; i <= 6; i++) {
      const path = `te_sp${i}, public`;
      // node-postgres sends Parse once, then only Bind/Execute under the same name.
      const set = await a.query({ name: 'setpath', text: "SELECT set_config('search_path', $1, false) AS sp", values: [path] });
      assert.equal(set.rows[0].sp, path);
      const seenByB = (await b.query("SELECT current_setting('search_path') AS sp")).rows[0].sp;
      assert.equal(seenByB, defaultPath, `round ${i}: the other client sees the default search_path`);
      const seenByA = (await a.query("SELECT current_setting('search_path') AS sp")).rows[0].sp;
      assert.equal(seenByA, path, `round ${i}: the client sees the search_path it last set`);
    }
  } finally {
    await pgEnd(a, b, direct);
    await closeGateway(gw);
  }
});

test('a reused named statement (Bind only) taking a session advisory lock pins the client', { timeout: 30_000 }, async () => {
  const gw = await gateway({ queue_timeout_ms: 10_000 });
  const a = await pgConnect(url(gw), { application_name: 'locker' });
  const lock = (k: number) => a.query({ name: 'lock', text: 'SELECT pg_advisory_lock($1)', values: [k] });
  const held = async (k: number) => Number(await cluster.query(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = ${k} AND granted`));
  try {
    await lock(9101);
    await waitFor('the pin after the first lock', () => statusOf(gw, 'locker').pins.includes('advisory_lock'));
    await a.query('SELECT pg_advisory_unlock_all()');
    await waitFor('the pin to end after unlock_all', () => statusOf(gw, 'locker').pins.length === 0);
    assert.equal(await held(9101), 0);

    // The same statement again: Bind/Execute only.
    await lock(9102);
    await waitFor('the pin after the reused lock statement', () => statusOf(gw, 'locker').pins.includes('advisory_lock'));
    assert.equal(await held(9102), 1, 'the lock is held');
    const pid1 = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const holder = Number(await cluster.query(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 9102 AND granted`));
    assert.equal(pid1, holder, "the client stays on the lock holder's connection");
    // Another client cannot log in meanwhile (pool.size 1, the client is pinned); it gets the connection once the lock is gone.
    let bDone = false;
    const bConnect = pgConnect(url(gw), { application_name: 'lock-waiter' }).finally(() => {
      bDone = true;
    });
    bConnect.catch(() => {});
    await sleep(300);
    assert.equal(bDone, false, 'the other client waits while the lock holder is pinned');
    await a.query('SELECT pg_advisory_unlock(9102)');
    await waitFor('the pin to end', () => statusOf(gw, 'locker').pins.length === 0);
    assert.equal(await held(9102), 0);
    const b = await bConnect;
    assert.equal((await b.query('SELECT 1 AS one')).rows[0].one, 1, 'the other client got the connection');
    await pgEnd(b);
  } finally {
    await pgEnd(a);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 5. Terminate in the same write as a query

for (const fin of [false, true]) {
  // Known gap (todo): a client whose socket closes while its queries wait for a connection loses them.
  test(`Q + Terminate in one write while the pool is saturated${fin ? ', then the socket closed (as libpq does)' : ''}: the query still runs`, { timeout: 30_000, todo: fin ? 'queued queries are dropped when the socket closes before a connection is free' : undefined }, async () => {
    const gw = await gateway();
    const who = fin ? 'with-fin' : 'no-fin';
    const b = await rawLogin(gw.port); // logged in before A takes the one connection
    const a = await pgConnect(url(gw));
    try {
      await a.query('BEGIN');
      await a.query('SELECT 1');
      b.send(Buffer.concat([m.query(`INSERT INTO te_term VALUES ('${who}', 1)`), m.terminate()]));
      if (fin) b.end();
      await sleep(300);
      await a.query('COMMIT');
      await within(b.closed, 5000, 'the gateway to close the client after its Terminate');
      await waitFor(
        "B's row",
        async () => (await cluster.query(`SELECT count(*) FROM te_term WHERE who = '${who}'`)) === '1',
        3000,
      );
      // The one connection is fine for others.
      assert.equal((await a.query('SELECT count(*)::int AS n FROM te_term WHERE who = $1', [who])).rows[0].n, 1);
    } finally {
      raws.delete(b);
      b.socket.destroy();
      await pgEnd(a);
      await closeGateway(gw);
    }
  });
}

// ------------------------------------------------------------------ 6. client leaves while the gateway reads back state

test('a client that sets search_path and leaves at once (while the gateway reads back state) leaks nothing, 20 times', { timeout: 60_000 }, async () => {
  const gw = await gateway();
  const b = await pgConnect(url(gw));
  try {
    const defaultPath = (await b.query("SELECT current_setting('search_path') AS sp")).rows[0].sp as string;
    assert.equal(defaultPath, '"$user", public');
    for (let i = 0; i < 20; i++) {
      const a = await rawLogin(gw.port);
      const r = await roundtrip(a, [m.query('SET search_path TO te_s')]);
      assert.deepEqual(r.seq, ['C:SET', 'Z:I']);
      // Terminate in the same tick as the ReadyForQuery arrived.
      rawEnd(a);
      const seen = (await b.query("SELECT current_setting('search_path') AS sp")).rows[0].sp;
      assert.equal(seen, defaultPath, `round ${i}: the other client sees the default search_path`);
    }
  } finally {
    await pgEnd(b);
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 7. notification of a rolled-back LISTEN

test('a notification for a channel whose LISTEN was rolled back is not delivered, as in PostgreSQL', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  const scenario = async (connectionString: string) => {
    const a = await pgConnect(connectionString);
    const got: string[] = [];
    a.on('notification', (n) => got.push(`${n.channel}:${n.payload ?? ''}`));
    try {
      await a.query('BEGIN');
      await a.query('LISTEN te_foo');
      await cluster.query("NOTIFY te_foo, 'rolled-back'");
      await sleep(200); // the gateway's listening connection has it by now
      await a.query('ROLLBACK');
      await a.query('SELECT 1');
      await sleep(200);
      const afterRollback = [...got];
      // Control: a committed LISTEN does get one.
      await a.query('LISTEN te_foo');
      await cluster.query("NOTIFY te_foo, 'committed'");
      await waitFor('the notification after a committed LISTEN', () => got.length > afterRollback.length, 3000).catch(() => {});
      await a.query('SELECT 1');
      return { afterRollback, all: [...got] };
    } finally {
      await pgEnd(a);
    }
  };
  try {
    const d = await scenario(cluster.primary.url());
    assert.deepEqual(d, { afterRollback: [], all: ['te_foo:committed'] });
    const g = await scenario(url(gw));
    assert.deepEqual(g.afterRollback, [], 'nothing delivered for the rolled-back LISTEN');
    assert.deepEqual(g, d, 'the notifications PostgreSQL delivers');
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 8. DEALLOCATE in a failed transaction

test('DEALLOCATE of a protocol statement in a failed transaction: 25P02 and Z(E) as PostgreSQL; the statement survives', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  try {
    const steps: Step[] = [
      { msgs: [m.parse('x', 'SELECT 1 AS one'), m.sync()], want: ['1', 'Z:I'] },
      { msgs: [m.query('BEGIN')], want: ['C:BEGIN', 'Z:T'] },
      { msgs: [m.query('SELECT 1/0')], want: ['E:22012', 'Z:E'] },
      { msgs: [m.query('DEALLOCATE x')], want: ['E:25P02', 'Z:E'] },
      { msgs: [m.query('ROLLBACK')], want: ['C:ROLLBACK', 'Z:I'] },
      { msgs: [bind('x'), execute(), m.sync()], want: ['2', 'D:1', 'C:SELECT 1', 'Z:I'] },
      // Outside a failed transaction it does deallocate.
      { msgs: [m.query('DEALLOCATE x')], want: ['C:DEALLOCATE', 'Z:I'] },
      { msgs: [bind('x'), execute(), m.sync()], want: ['E:26000', 'Z:I'] },
    ];
    await compareSteps(gw, steps);
  } finally {
    await closeGateway(gw);
  }
});

test('DEALLOCATE in a failed transaction, pipelined with BEGIN / the failing query / ROLLBACK in one write: the statement survives', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  try {
    await compareSteps(gw, [
      { msgs: [m.parse('x', 'SELECT 1 AS one'), m.sync()], want: ['1', 'Z:I'] },
      {
        msgs: [m.query('BEGIN'), m.query('SELECT 1/0'), m.query('DEALLOCATE x'), m.query('ROLLBACK')],
        zs: 4,
        want: ['C:BEGIN', 'Z:T', 'E:22012', 'Z:E', 'E:25P02', 'Z:E', 'C:ROLLBACK', 'Z:I'],
      },
      { msgs: [bind('x'), execute(), m.sync()], want: ['2', 'D:1', 'C:SELECT 1', 'Z:I'] },
    ]);
  } finally {
    await closeGateway(gw);
  }
});

// ------------------------------------------------------------------ 9. shared statements and parse-time settings

test('the same statement text under different parse-time settings (search_path, DateStyle): each client always gets its own meaning', { timeout: 30_000 }, async () => {
  const gw = await gateway();
  // One by startup option, one by SET.
  const a = await pgConnect(url(gw), { options: '-c search_path=te_a' });
  const b = await pgConnect(url(gw));
  const STATEMENTS = {
    // Same result type in both schemas (PostgreSQL re-analyzes a cached statement when search_path differs).
    t: 'SELECT v FROM t',
    // Another result type per schema: a statement shared across search_path fails 0A000 (cached plan must not change result type).
    u: 'SELECT v FROM u',
    // A literal converted when parsed: month 1 under MDY, 2 under DMY (never re-analyzed).
    d: "SELECT extract(month FROM '01/02/2003'::date)::int AS m",
  };
  const want = {
    a: { t: [{ v: 'a' }], u: [{ v: 'a' }], d: [{ m: 1 }] },
    b: { t: [{ v: 'b' }], u: [{ v: 2 }], d: [{ m: 2 }] },
  };
  try {
    await b.query("SET search_path TO te_b; SET DateStyle TO 'ISO, DMY'");
    for (let i = 0; i < 4; i++) {
      for (const name of ['t', 'u', 'd'] as const) {
        for (const [who, c] of [
          ['a', a],
          ['b', b],
        ] as const) {
          const r = await c.query({ name, text: STATEMENTS[name] }).then(
            (x) => x.rows,
            (e: pg.DatabaseError) => `${e.code}: ${e.message}`,
          );
          assert.deepEqual(r, want[who][name], `round ${i}: client ${who}, statement ${name} (${STATEMENTS[name]})`);
        }
      }
    }
    // And a raw client parsing the same text once more, with b's search_path.
    const raw = await rawLogin(gw.port, { options: '-c search_path=te_b' });
    const r = await roundtrip(raw, [m.parse('q', 'SELECT v FROM t'), bind('q'), execute(), m.sync()]);
    assert.deepEqual(r.seq, ['1', '2', 'D:b', 'C:SELECT 1', 'Z:I']);
    assert.deepEqual((await a.query({ name: 't', text: STATEMENTS.t })).rows, [{ v: 'a' }]);
    rawEnd(raw);
  } finally {
    await pgEnd(a, b);
    await closeGateway(gw);
  }
});
