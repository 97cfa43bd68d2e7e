// The node list without servers: round robin over healthy replicas, WAL positions, read-your-writes bounds.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Topology, insertToEnd, parseLsn } from '../../src/balancer/topology.js';
import { defaultConfig } from '../../src/config/load.js';

function topology(replicas = 3): Topology {
  const config = defaultConfig({
    primary: { host: '127.0.0.1', port: 9 },
    replicas: Array.from({ length: replicas }, (_, i) => ({ name: `r${i + 1}`, host: '127.0.0.1', port: 9 })),
  });
  return new Topology({ config, maxMessageBytes: 1 << 20, credentials: () => null, onEvent: () => {} });
}

test('parseLsn reads X/Y as a byte position; null is -1', () => {
  assert.equal(parseLsn('0/0'), 0);
  assert.equal(parseLsn('0/16B3748'), 0x16b3748);
  assert.equal(parseLsn('1/0'), 0x1_0000_0000);
  assert.equal(parseLsn('A/FF'), 10 * 0x1_0000_0000 + 255);
  assert.equal(parseLsn(null), -1);
  assert.ok(parseLsn('2/0') > parseLsn('1/FFFFFFFF'));
});

test('an insert position just past a page or segment header counts as the end of the record before it', () => {
  assert.equal(insertToEnd(8192 + 24), 8192);
  assert.equal(insertToEnd(16 * 1024 * 1024 + 40), 16 * 1024 * 1024);
  assert.equal(insertToEnd(8192 + 100), 8192 + 100);
  assert.equal(insertToEnd(-1), -1);
});

test('replicas are picked in turn, skipping unhealthy ones and ones behind a position', () => {
  const t = topology(3);
  try {
    const [r1, r2, r3] = t.replicas as [typeof t.primary, typeof t.primary, typeof t.primary];
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => t.pickReplica()!.name), ['r1', 'r2', 'r3', 'r1', 'r2', 'r3']);
    t.markDown(r2, 'connection refused');
    assert.deepEqual([1, 2, 3, 4].map(() => t.pickReplica()!.name), ['r1', 'r3', 'r1', 'r3']);
    r1.lsn = 100;
    r3.lsn = 50;
    assert.deepEqual([1, 2, 3].map(() => t.pickReplica(80)!.name), ['r1', 'r1', 'r1']);
    assert.equal(t.pickReplica(200), undefined);
    assert.equal(t.allReplayed(50), false, 'r2 is down, but counts: it may come back behind');
    r2.lsn = 60;
    assert.equal(t.allReplayed(50), true);
    assert.equal(t.allReplayed(80), false);
    t.markDown(r1, 'x');
    t.markDown(r3, 'x');
    assert.equal(t.pickReplica(), undefined);
  } finally {
    t.close();
  }
});

test('a write is covered by the first primary position read after it, never by one read before', () => {
  const t = topology(1);
  try {
    t.notePrimaryLsn(10, 1000);
    t.notePrimaryLsn(20, 1100);
    t.notePrimaryLsn(30, 1200);
    assert.equal(t.lsnAfter(5), 1000);
    assert.equal(t.lsnAfter(10), 1100, 'a query sent at the same instant may have missed the commit');
    assert.equal(t.lsnAfter(25), 1200);
    assert.equal(t.lsnAfter(30), undefined, 'nothing read after it yet');
    assert.equal(t.primary.lsn, 1200);
  } finally {
    t.close();
  }
});

test('splitting needs replicas and routing.read_write_split', () => {
  const none = topology(0);
  const some = topology(2);
  try {
    assert.equal(none.splitting, false);
    assert.equal(some.splitting, true);
  } finally {
    none.close();
    some.close();
  }
});
