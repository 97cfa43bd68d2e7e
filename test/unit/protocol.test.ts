// Codec tests: framing at every split point, bad lengths, startup packets, message builders and readers.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Framer, FrameError } from '../../src/protocol/framer.js';
import * as m from '../../src/protocol/messages.js';
import { PgError, SQLSTATE } from '../../src/protocol/errors.js';

/** A realistic mix of frontend and backend messages, including empty bodies and a large one. */
function sampleStream(): Buffer[] {
  return [
    m.query('SELECT 1'),
    m.frame('P', Buffer.from('\0SELECT $1::int\0\0\0')),
    m.frame('H'), // Flush: an empty body
    m.sync(),
    m.parameterStatus('TimeZone', 'UTC'),
    m.readyForQuery('T'),
    m.errorResponse({ severity: 'ERROR', code: '42P01', message: 'relation "x" does not exist' }),
    m.frame('d', Buffer.alloc(70_000, 7)), // CopyData larger than a socket chunk
    m.terminate(),
  ];
}

test('every message split at every byte offset comes out whole and identical', () => {
  const msgs = sampleStream().filter((b) => b.length < 1000); // the large one is covered below
  const stream = Buffer.concat(msgs);
  for (let cut = 0; cut <= stream.length; cut++) {
    const f = new Framer(1 << 20);
    const out = [...f.push(stream.subarray(0, cut)), ...f.push(stream.subarray(cut))];
    assert.deepEqual(out.map((b) => b.toString('hex')), msgs.map((b) => b.toString('hex')), `cut at ${cut}`);
    assert.equal(f.pending, 0);
  }
});

test('a stream fed one byte at a time, and in three pieces at every pair of offsets', () => {
  const msgs = sampleStream();
  const stream = Buffer.concat(msgs);
  const f = new Framer(1 << 20);
  const out: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) out.push(...f.push(stream.subarray(i, i + 1)));
  assert.deepEqual(out, msgs);

  const small = Buffer.concat(msgs.slice(0, 4));
  for (let a = 0; a <= small.length; a += 3) {
    for (let b = a; b <= small.length; b += 5) {
      const g = new Framer(1 << 20);
      const got = [...g.push(small.subarray(0, a)), ...g.push(small.subarray(a, b)), ...g.push(small.subarray(b))];
      assert.deepEqual(got, msgs.slice(0, 4), `cuts ${a},${b}`);
    }
  }
});

test('frames handed out stay valid after later chunks arrive (no buffer reuse)', () => {
  const f = new Framer(1 << 20);
  const a = m.query('SELECT 1');
  const b = m.query('SELECT 2');
  const stream = Buffer.concat([a, b]);
  const first = f.push(stream.subarray(0, a.length + 3));
  const snapshot = Buffer.from(first[0]!);
  const rest = f.push(stream.subarray(a.length + 3));
  assert.deepEqual(first[0], snapshot);
  assert.deepEqual(rest, [b]);
  // A message that spanned chunks is a fresh buffer, not a view into either chunk.
  const c1 = Buffer.from(b.subarray(0, 6));
  const c2 = Buffer.from(b.subarray(6));
  const g = new Framer(1 << 20);
  g.push(c1);
  const [joined] = g.push(c2);
  c1.fill(0);
  c2.fill(0);
  assert.deepEqual(joined, b);
});

test('scan() at every split point: head, then one contiguous run of whole messages, then a held tail', () => {
  const msgs = [m.query('SELECT 1'), m.sync(), m.frame('H'), m.readyForQuery('I'), m.frame('d', Buffer.alloc(300, 1))];
  const stream = Buffer.concat(msgs);
  for (let a = 0; a <= stream.length; a++) {
    for (const b of [a, Math.min(stream.length, a + 7), stream.length]) {
      const f = new Framer(1 << 20);
      const got: Buffer[] = [];
      for (const piece of [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]) {
        const n = f.scan(piece);
        const run = f.scanned.subarray(0, f.starts[n]);
        // The run is one contiguous region made of exactly the n messages.
        assert.equal(run.length, n === 0 ? 0 : f.starts[n]! - f.starts[0]!);
        if (f.head) got.push(Buffer.from(f.head));
        for (let i = 0; i < n; i++) got.push(Buffer.from(f.scanned.subarray(f.starts[i], f.starts[i + 1])));
      }
      assert.deepEqual(got, msgs, `cuts ${a},${b}`);
      assert.equal(f.pending, 0);
    }
  }
});

test('copyTail: bytes held across chunks survive the caller overwriting its read buffer', () => {
  const msgs = [m.query('SELECT 1'), m.frame('d', Buffer.alloc(100, 2)), m.sync()];
  const stream = Buffer.concat(msgs);
  for (let cut = 1; cut < stream.length; cut++) {
    const f = new Framer(1 << 20, { copyTail: true });
    const reused = Buffer.alloc(stream.length);
    stream.copy(reused, 0, 0, cut);
    const out: Buffer[] = f.push(reused.subarray(0, cut)).map((x) => Buffer.from(x)); // the caller copies what it keeps
    reused.fill(0xee); // the next read lands in the same buffer
    const rest = Buffer.from(stream.subarray(cut));
    out.push(...f.push(rest));
    assert.deepEqual(out, msgs, `cut at ${cut}`);
  }
});

test('negative, too-small and oversize lengths are rejected before anything is allocated', () => {
  const bad = (len: number) => {
    const b = Buffer.alloc(5);
    b[0] = 0x51;
    b.writeInt32BE(len, 1);
    return b;
  };
  for (const len of [-1, -2147483648, 0, 3]) {
    const f = new Framer(1024);
    assert.throws(() => f.push(bad(len)), (e: unknown) => e instanceof FrameError && e.code === SQLSTATE.PROTOCOL_VIOLATION);
  }
  const f = new Framer(1024);
  assert.throws(() => f.push(bad(2_000_000_000)), (e: unknown) => e instanceof FrameError && e.code === SQLSTATE.PROGRAM_LIMIT_EXCEEDED);
  // Only the header has arrived: the oversize length is still caught, and nothing is held for it.
  const g = new Framer(1024);
  assert.throws(() => g.push(bad(1024)));
  // Exactly at the limit is fine.
  const ok = new Framer(1024);
  const msg = m.frame('d', Buffer.alloc(1024 - 5));
  assert.deepEqual(ok.push(msg), [msg]);
});

test('startup packets: length limits, one packet per push, then typed messages', () => {
  const f = new Framer(1 << 20, { startup: true });
  const ssl = m.sslRequest();
  const startup = m.startupMessage({ user: 'app', database: 'db', application_name: 'x' });
  // SSLRequest and StartupMessage in one chunk: only the first comes out until drain().
  const out = f.push(Buffer.concat([ssl, startup]));
  assert.deepEqual(out, [ssl]);
  assert.equal(f.pending, startup.length);
  assert.deepEqual(f.drain(), [startup]);
  const pkt = m.readUntypedPacket(startup);
  assert.equal(pkt.kind, 'startup');
  if (pkt.kind === 'startup') {
    assert.equal(pkt.major, 3);
    assert.equal(pkt.params.get('user'), 'app');
    assert.equal(pkt.params.get('application_name'), 'x');
  }
  f.startup = false;
  assert.deepEqual(f.push(m.query('SELECT 1')), [m.query('SELECT 1')]);

  for (const len of [-5, 0, 7, 10001]) {
    const b = Buffer.alloc(8);
    b.writeInt32BE(len, 0);
    assert.throws(() => new Framer(1 << 20, { startup: true }).push(b), FrameError, `length ${len}`);
  }
  // Split inside the length word.
  const g = new Framer(1 << 20, { startup: true });
  assert.deepEqual(g.push(startup.subarray(0, 2)), []);
  assert.deepEqual(g.push(startup.subarray(2)), [startup]);
});

test('untyped packets: SSL, GSSENC, cancel, malformed startup', () => {
  assert.deepEqual(m.readUntypedPacket(m.sslRequest()), { kind: 'ssl' });
  assert.deepEqual(m.readUntypedPacket(m.cancelRequest(123, -5)), { kind: 'cancel', pid: 123, secret: -5 });
  const gss = Buffer.alloc(8);
  gss.writeInt32BE(8, 0);
  gss.writeInt32BE(m.GSSENC_REQUEST_CODE, 4);
  assert.deepEqual(m.readUntypedPacket(gss), { kind: 'gssenc' });
  // A startup packet whose last string is not terminated.
  const bad = Buffer.concat([Buffer.alloc(8), Buffer.from('user\0app')]);
  bad.writeInt32BE(bad.length, 0);
  bad.writeInt32BE(m.PROTOCOL_3_0, 4);
  assert.throws(() => m.readUntypedPacket(bad), RangeError);
});

test('error responses carry SQLSTATE, severity, message, detail and hint', () => {
  const e = new PgError(SQLSTATE.TOO_MANY_CONNECTIONS, 'no server connection', { detail: 'd', hint: 'h' });
  const f = m.readErrorFields(e.toMessage());
  assert.equal(f.get('S'), 'FATAL');
  assert.equal(f.get('V'), 'FATAL');
  assert.equal(f.get('C'), '53300');
  assert.equal(f.get('M'), 'no server connection');
  assert.equal(f.get('D'), 'd');
  assert.equal(f.get('H'), 'h');
});

test('builders produce the documented layouts', () => {
  assert.equal(m.readyForQuery('I').toString('hex'), '5a0000000549');
  assert.deepEqual(m.readParameterStatus(m.parameterStatus('a', 'b')), ['a', 'b']);
  assert.deepEqual(m.readBackendKeyData(m.backendKeyData(7, -9)), { pid: 7, secret: -9 });
  const nego = m.negotiateProtocolVersion(0, ['_pq_.x']);
  assert.equal(nego[0], 'v'.charCodeAt(0));
  assert.equal(nego.readInt32BE(5), m.PROTOCOL_3_0);
  assert.equal(nego.readInt32BE(9), 1);
  const sasl = m.saslInitialResponse('SCRAM-SHA-256', Buffer.from('n,,n=,r=abc'));
  const r = m.readSASLInitialResponse(sasl);
  assert.equal(r.mechanism, 'SCRAM-SHA-256');
  assert.equal(r.data.toString(), 'n,,n=,r=abc');
  const row = m.frame('D', Buffer.from([0, 2, 0, 0, 0, 1, 0x41, 0xff, 0xff, 0xff, 0xff]));
  assert.deepEqual(m.readDataRow(row), ['A', null]);
});
