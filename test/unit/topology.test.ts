// The node list without servers: read placement, bans, lag, replicas added and removed, and roles decided from probe rows.

import test from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Topology, insertToEnd, parseLsn, type DbNode, type NodeEvent } from '../../src/balancer/topology.js';
import { defaultConfig } from '../../src/config/load.js';
import type { BalancerConfig, Config } from '../../src/config/types.js';
import type { PoolEvent } from '../../src/pool/pool.js';

type IncludePrimary = BalancerConfig['include_primary'];

interface Setup {
  /** One weight per replica; the replicas are named r1, r2, ... */
  replicas?: number[];
  primaryWeight?: number;
  balancer?: Partial<BalancerConfig>;
  /** Give the background checks a login: replicas then take reads only once probed, and a ban lasts until a probe. */
  monitor?: boolean;
  split?: boolean;
}

interface Built {
  t: Topology;
  config: Config;
  events: (PoolEvent | NodeEvent)[];
}

function build(s: Setup = {}): Built {
  const config = defaultConfig({
    primary: { host: '127.0.0.1', port: 9, weight: s.primaryWeight ?? 1 },
    replicas: (s.replicas ?? [1, 1, 1]).map((weight, i) => ({ name: `r${i + 1}`, host: '127.0.0.1', port: 9, weight })),
    balancer: s.balancer ?? {},
    routing: { read_write_split: s.split ?? true },
    ...(s.monitor && { monitor: { user: 'monitor' } }),
  });
  const events: (PoolEvent | NodeEvent)[] = [];
  const t = new Topology({ config, maxMessageBytes: 1 << 20, credentials: () => null, onEvent: (e) => events.push(e) });
  return { t, config, events };
}

/** Runs fn on a fresh topology and closes it (pools, ban timers) whatever happens. */
async function using(s: Setup, fn: (b: Built) => void | Promise<void>): Promise<void> {
  const b = build(s);
  try {
    await fn(b);
  } finally {
    b.t.close();
  }
}

function topology(replicas = 3): Topology {
  return build({ replicas: Array.from({ length: replicas }, () => 1) }).t;
}

function node(t: Topology, name: string): DbNode {
  const n = t.node(name);
  assert.ok(n, `no node named ${name}`);
  return n;
}

/** The names of n reads in a row, space separated. */
function picks(t: Topology, n: number, clientKey?: string, minLsn?: number): string {
  return Array.from({ length: n }, () => t.pickRead(clientKey, minLsn).name).join(' ');
}

function times(name: string, n: number): string {
  return Array.from({ length: n }, () => name).join(' ');
}

function counts(names: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names.split(' ')) out[n] = (out[n] ?? 0) + 1;
  return out;
}

type ProbeRow = (string | null)[];

/**
 * The role decision has no public entry point without a server, so tests drive the private handler of a
 * probe's answer directly: row = [in_recovery, lsn, replay timestamp, walfile name].
 */
function probe(t: Topology, n: DbNode, row: ProbeRow, sentAt = performance.now()): void {
  (t as unknown as { noteProbe(n: DbNode, sentAt: number, row: ProbeRow): void }).noteProbe(n, sentAt, row);
}

/** A writable node's probe row: its WAL file name starts with its timeline in 8 hex digits. */
function writable(timeline: number, lsn = '0/3001'): ProbeRow {
  return ['f', lsn, null, `${timeline.toString(16).toUpperCase().padStart(8, '0')}0000000000000003`];
}

function recovering(lsn = '0/3001'): ProbeRow {
  return ['t', lsn, '2024-05-01 12:00:00.000000+00', null];
}

// ------------------------------------------------------------------------------------ parsing

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

// ------------------------------------------------------------------------------------ bans

/** Round robin over r1 r2 r3 (primary named 'primary'); six reads after the bans. */
const banCases: { include: IncludePrimary; banned: string[]; expect: string }[] = [
  { include: 'when_no_replica', banned: [], expect: 'r1 r2 r3 r1 r2 r3' },
  { include: 'when_no_replica', banned: ['r2'], expect: 'r1 r3 r1 r3 r1 r3' },
  { include: 'when_no_replica', banned: ['r1', 'r2', 'r3'], expect: times('primary', 6) },
  { include: 'never', banned: ['r2'], expect: 'r1 r3 r1 r3 r1 r3' },
  // Every replica out: the bans are lifted rather than reads sent to the primary.
  { include: 'never', banned: ['r1', 'r2', 'r3'], expect: 'r1 r2 r3 r1 r2 r3' },
  { include: 'always', banned: [], expect: 'r1 r2 r3 primary r1 r2' },
  { include: 'always', banned: ['r1', 'r3'], expect: 'r2 primary r2 primary r2 primary' },
  { include: 'always', banned: ['r1', 'r2', 'r3'], expect: times('primary', 6) },
];

for (const c of banCases) {
  test(`include_primary ${c.include}, banned [${c.banned.join(' ')}]: reads go ${c.expect}`, () =>
    using({ balancer: { include_primary: c.include } }, ({ t, events }) => {
      for (const name of c.banned) t.markDown(node(t, name), `${name}: connection refused`);
      assert.deepEqual(
        events,
        c.banned.map((name) => ({ type: 'replica_banned', node: name, message: `${name}: connection refused`, ban_ms: 10_000 })),
      );
      for (const n of t.replicas) {
        const banned = c.banned.includes(n.name);
        assert.equal(n.banned, banned, n.name);
        assert.equal(n.healthy, !banned, n.name);
        assert.equal(n.lastError, banned ? `${n.name}: connection refused` : undefined, n.name);
      }
      assert.equal(picks(t, 6), c.expect);
      // Lifting bans for a pick ('never') does not end them.
      for (const name of c.banned) assert.equal(node(t, name).banned, true, name);
      assert.equal(events.length, c.banned.length, 'picking emits nothing');
    }));
}

test('markDown of a removed replica changes nothing', () =>
  using({}, async ({ t, events }) => {
    const r2 = node(t, 'r2');
    await t.removeReplica('r2', false);
    events.length = 0;
    t.markDown(r2, 'late failure');
    assert.equal(r2.banned, false);
    assert.equal(r2.lastError, undefined);
    assert.deepEqual(events, []);
  }));

test('a second failure extends a ban without a second replica_banned; a failing primary is node_down once, never banned', () =>
  using({}, async ({ t, events }) => {
    const r1 = node(t, 'r1');
    t.markDown(r1, 'a');
    const until = r1.bannedUntil;
    await sleep(5);
    t.markDown(r1, 'b');
    assert.equal(r1.lastError, 'b');
    assert.ok(r1.bannedUntil > until, 'the ban runs from the last failure');
    t.markDown(t.primary, 'p1');
    t.markDown(t.primary, 'p2');
    assert.equal(t.primary.healthy, false);
    assert.equal(t.primary.banned, false);
    assert.equal(t.primary.lastError, 'p2');
    assert.deepEqual(events, [
      { type: 'replica_banned', node: 'r1', message: 'a', ban_ms: 10_000 },
      { type: 'node_down', node: 'primary', role: 'primary', message: 'p1' },
    ]);
  }));

/** include_primary 'always' with the weighted strategy: the primary's share follows its weight. */
const alwaysWeighted: { primaryWeight: number; replicas: number[]; expect: Record<string, number> }[] = [
  { primaryWeight: 1, replicas: [1, 1], expect: { r1: 100, r2: 100, primary: 100 } },
  { primaryWeight: 2, replicas: [1, 1], expect: { r1: 75, r2: 75, primary: 150 } },
  { primaryWeight: 0, replicas: [1, 1], expect: { r1: 150, r2: 150 } },
  { primaryWeight: 1, replicas: [2, 0], expect: { r1: 200, primary: 100 } },
];

for (const c of alwaysWeighted) {
  test(`include_primary always, weighted, primary weight ${c.primaryWeight} and replicas [${c.replicas}]: 300 reads split ${JSON.stringify(c.expect)}`, () =>
    using({ primaryWeight: c.primaryWeight, replicas: c.replicas, balancer: { include_primary: 'always', strategy: 'weighted' } }, ({ t }) => {
      assert.deepEqual(counts(picks(t, 300)), c.expect);
    }));
}

test('include_primary always with equal weights interleaves the primary: every run of three reads has each node once', () =>
  using({ replicas: [1, 1], balancer: { include_primary: 'always', strategy: 'weighted' } }, ({ t }) => {
    const all = picks(t, 30).split(' ');
    for (let i = 0; i < all.length; i += 3) assert.deepEqual(all.slice(i, i + 3).sort(), ['primary', 'r1', 'r2'], `reads ${i}..${i + 2}`);
  }));

test('without a monitor login a ban runs out after ban_ms by itself, with replica_unbanned', () =>
  using({ balancer: { ban_ms: 20 } }, async ({ t, config, events }) => {
    assert.equal(config.monitor.user, undefined);
    const r1 = node(t, 'r1');
    t.markDown(r1, 'refused');
    assert.equal(picks(t, 4), 'r2 r3 r2 r3');
    events.length = 0;
    await sleep(60);
    // No read in between: the timer alone brings it back.
    assert.deepEqual(events, [{ type: 'replica_unbanned', node: 'r1' }]);
    assert.equal(r1.banned, false);
    assert.equal(r1.healthy, true);
    assert.equal(r1.lastError, undefined);
    assert.equal(r1.bannedUntil, 0);
    assert.deepEqual(counts(picks(t, 6)), { r1: 2, r2: 2, r3: 2 });
    assert.equal(events.length, 1, 'unbanned once');
  }));

test('without a monitor login a replica that fails again during its ban stays out until ban_ms after the last failure', () =>
  using({ balancer: { ban_ms: 200 } }, async ({ t }) => {
    const r1 = node(t, 'r1');
    t.markDown(r1, 'first');
    await sleep(100);
    t.markDown(r1, 'second'); // bannedUntil is now about 300 ms after the first failure
    await sleep(150); // past the first deadline (200), before the second (300)
    assert.equal(r1.banned, true, 'banned until ban_ms after the second failure');
    assert.ok(!picks(t, 6).includes('r1'));
  }));

// ------------------------------------------------------------------------------------ with a monitor login

test('with a monitor login a replica takes reads only once probed', () =>
  using({ monitor: true }, ({ t, config }) => {
    assert.equal(config.monitor.user, 'monitor');
    assert.deepEqual(
      t.replicas.map((n) => n.probed),
      [false, false, false],
    );
    assert.equal(picks(t, 3), times('primary', 3));
    node(t, 'r2').probed = true;
    assert.equal(picks(t, 3), 'r2 r2 r2');
    probe(t, node(t, 'r3'), recovering());
    assert.equal(node(t, 'r3').probed, true, 'a probe sets probed');
    assert.deepEqual(counts(picks(t, 4)), { r2: 2, r3: 2 });
    assert.equal(t.splitting, true, 'unprobed replicas still count for splitting');
  }));

test("with a monitor login and include_primary 'never', unprobed replicas are not a fallback", () =>
  using({ monitor: true, balancer: { include_primary: 'never' } }, ({ t }) => {
    assert.equal(picks(t, 3), times('primary', 3));
  }));

test('with a monitor login a ban outlasts ban_ms until a probe succeeds after it', () =>
  using({ monitor: true, balancer: { ban_ms: 30 } }, async ({ t, events }) => {
    for (const n of t.replicas) n.probed = true;
    const r1 = node(t, 'r1');
    t.markDown(r1, 'refused');
    probe(t, r1, recovering());
    assert.equal(r1.banned, true, 'a probe within ban_ms does not end the ban');
    await sleep(60);
    assert.equal(picks(t, 4), 'r2 r3 r2 r3', 'ban_ms passed, but no probe yet');
    assert.equal(r1.banned, true);
    assert.deepEqual(
      events.map((e) => e.type),
      ['replica_banned'],
    );
    probe(t, r1, recovering());
    assert.equal(r1.banned, false);
    assert.equal(r1.healthy, true);
    assert.deepEqual(events.at(-1), { type: 'replica_unbanned', node: 'r1' });
    assert.ok(picks(t, 3).includes('r1'));
  }));

test('with a monitor login an added replica waits for its first probe', () =>
  using({ monitor: true, replicas: [1] }, ({ t }) => {
    node(t, 'r1').probed = true;
    const r9 = t.addReplica({ name: 'r9', host: '127.0.0.1', port: 9, weight: 1 }, 'api');
    assert.equal(r9.probed, false);
    assert.equal(picks(t, 3), 'r1 r1 r1');
    probe(t, r9, recovering());
    assert.deepEqual(counts(picks(t, 4)), { r1: 2, r9: 2 });
  }));

// ------------------------------------------------------------------------------------ lag

const lagFlagCases: { include: IncludePrimary; lagging: string[]; expect: string }[] = [
  { include: 'when_no_replica', lagging: ['r2'], expect: 'r1 r3 r1 r3' },
  { include: 'when_no_replica', lagging: ['r1', 'r2', 'r3'], expect: times('primary', 4) },
  { include: 'always', lagging: ['r1', 'r2'], expect: 'r3 primary r3 primary' },
  // Every replica too far behind: the lag limit is lifted rather than reads sent to the primary.
  { include: 'never', lagging: ['r1', 'r2', 'r3'], expect: 'r1 r2 r3 r1' },
];

for (const c of lagFlagCases) {
  test(`include_primary ${c.include}, lagging [${c.lagging.join(' ')}]: reads go ${c.expect}`, () =>
    using({ balancer: { include_primary: c.include } }, ({ t }) => {
      for (const name of c.lagging) node(t, name).lagging = true;
      assert.equal(picks(t, 4), c.expect);
    }));
}

test('applyBalancer judges lag again against new limits, from the lag last measured', () =>
  using({}, ({ t, config, events }) => {
    const [r1, r2, r3] = t.replicas as [DbNode, DbNode, DbNode];
    r1.lagBytes = 5000;
    r1.lagMs = 300;
    r2.lagBytes = 10;
    r2.lagMs = 5;
    // r3: never measured, so never lagging.
    const lagging = (name: string, lagBytes: number, lagMs: number) => ({ type: 'replica_lagging', node: name, lag_bytes: lagBytes, lag_ms: lagMs });
    const caughtUp = (name: string, lagBytes: number, lagMs: number) => ({ type: 'replica_caught_up', node: name, lag_bytes: lagBytes, lag_ms: lagMs });
    const steps: { bytes: number; ms: number; lagging: string[]; events: object[] }[] = [
      { bytes: 1000, ms: 0, lagging: ['r1'], events: [lagging('r1', 5000, 300)] },
      { bytes: 0, ms: 100, lagging: ['r1'], events: [] },
      { bytes: 0, ms: 4, lagging: ['r1', 'r2'], events: [lagging('r2', 10, 5)] },
      { bytes: 1_000_000, ms: 4, lagging: ['r1', 'r2'], events: [] },
      { bytes: 0, ms: 300, lagging: [], events: [caughtUp('r1', 5000, 300), caughtUp('r2', 10, 5)] },
      { bytes: 10, ms: 0, lagging: ['r1'], events: [lagging('r1', 5000, 300)] },
      { bytes: 0, ms: 4, lagging: ['r1', 'r2'], events: [lagging('r2', 10, 5)] },
      { bytes: 5000, ms: 0, lagging: [], events: [caughtUp('r1', 5000, 300), caughtUp('r2', 10, 5)] },
      { bytes: 4999, ms: 1000, lagging: ['r1'], events: [lagging('r1', 5000, 300)] },
      { bytes: 0, ms: 0, lagging: [], events: [caughtUp('r1', 5000, 300)] },
    ];
    for (const [i, s] of steps.entries()) {
      events.length = 0;
      t.applyBalancer({ ...config.balancer, max_replica_lag_bytes: s.bytes, max_replica_lag_ms: s.ms });
      assert.deepEqual(events, s.events, `step ${i}`);
      assert.deepEqual(
        [r1, r2, r3].filter((n) => n.lagging).map((n) => n.name),
        s.lagging,
        `step ${i}`,
      );
      const read = new Set(picks(t, 6).split(' '));
      assert.deepEqual([...read].sort(), ['r1', 'r2', 'r3'].filter((n) => !s.lagging.includes(n)), `step ${i}: reads`);
    }
  }));

test('a probe measures a replica against the primary and flags it lagging, then caught up', () =>
  using({ monitor: true, replicas: [1, 1], balancer: { max_replica_lag_bytes: 4096 } }, ({ t, events }) => {
    const [r1, r2] = t.replicas as [DbNode, DbNode];
    r2.probed = true;
    probe(t, t.primary, writable(1, '0/10001'), 100);
    assert.equal(t.primary.lsn, 0x10001);
    probe(t, r1, recovering('0/1001'), 150);
    assert.equal(r1.lagBytes, 0x10001 - 0x1001);
    assert.equal(r1.lagMs, 50);
    assert.deepEqual(events, [{ type: 'replica_lagging', node: 'r1', lag_bytes: 0x10000 - 0x1000, lag_ms: 50 }]);
    assert.equal(picks(t, 3), 'r2 r2 r2');
    probe(t, r1, recovering('0/10001'), 200);
    assert.equal(r1.lagBytes, 0);
    assert.equal(r1.lagMs, 0);
    assert.deepEqual(events.at(-1), { type: 'replica_caught_up', node: 'r1', lag_bytes: 0, lag_ms: 0 });
    assert.deepEqual(counts(picks(t, 4)), { r1: 2, r2: 2 });
  }));

// ------------------------------------------------------------------------------------ lagMsOf

test('lagMsOf is undefined before any primary sample', () =>
  using({}, ({ t }) => {
    assert.equal(t.lagMsOf(100, 1000), undefined);
    assert.equal(t.lagMsOf(-1, 1000), undefined);
  }));

/** Primary samples (sentAt, lsn): (100, 1001), (200, 2001), (300, 3001). Odd LSNs: insertToEnd leaves them alone. */
const lagCases: { lsn: number; at: number; expect: number; why: string }[] = [
  { lsn: 3001, at: 350, expect: 0, why: 'caught up with the newest sample' },
  { lsn: 9999, at: 350, expect: 0, why: 'ahead of every sample' },
  { lsn: 2500, at: 350, expect: 50, why: 'first unreplayed: (300, 3001)' },
  { lsn: 2001, at: 350, expect: 50, why: 'replayed (200, 2001) exactly' },
  { lsn: 1500, at: 350, expect: 150, why: 'first unreplayed: (200, 2001)' },
  { lsn: 500, at: 350, expect: 250, why: 'behind the oldest sample' },
  { lsn: -1, at: 350, expect: 250, why: 'nothing replayed yet' },
  { lsn: 2500, at: 250, expect: 0, why: '(300, 3001) was sent after `at`' },
  { lsn: 1500, at: 250, expect: 50, why: 'first unreplayed sent by `at`: (200, 2001)' },
  { lsn: 1500, at: 200, expect: 0, why: '(200, 2001) was sent at `at`: 0 ms old' },
  { lsn: 1500, at: 199, expect: 0, why: '(200, 2001) was sent after `at`' },
  { lsn: 500, at: 50, expect: 0, why: 'every sample was sent after `at`' },
];

for (const c of lagCases) {
  test(`lagMsOf(${c.lsn}, ${c.at}) is ${c.expect}: ${c.why}`, () =>
    using({}, ({ t }) => {
      t.notePrimaryLsn(100, 1001);
      t.notePrimaryLsn(200, 2001);
      t.notePrimaryLsn(300, 3001);
      assert.equal(t.lagMsOf(c.lsn, c.at), c.expect);
    }));
}

test('lagMsOf compares against the primary position with the page header taken off', () =>
  using({}, ({ t }) => {
    t.notePrimaryLsn(100, 8192 + 24);
    assert.equal(t.primary.lsn, 8192);
    assert.equal(t.lagMsOf(8192, 150), 0, 'a replica at the end of the last record is caught up');
    assert.equal(t.lagMsOf(8191, 150), 50);
  }));

/** 300 samples, one per 100 ms: sample i is sent at i*100 with LSN i*1000+1, so only the last 128 are kept finely. */
function longHistory(t: Topology): void {
  for (let i = 0; i < 300; i++) t.notePrimaryLsn(i * 100, i * 1000 + 1);
}
const LONG_AT = 29_950;

test('lagMsOf measures a lag longer than the fine samples reach from the coarse ones, within a second', () =>
  using({}, ({ t }) => {
    longHistory(t);
    const cases: { lsn: number; exact: number }[] = [
      { lsn: 249_501, exact: LONG_AT - 25_000 }, // inside the fine window: exact
      { lsn: 165_501, exact: LONG_AT - 16_600 },
      { lsn: 50_500, exact: LONG_AT - 5_100 },
      { lsn: -1, exact: LONG_AT - 0 },
    ];
    for (const c of cases) {
      const got = t.lagMsOf(c.lsn, LONG_AT)!;
      assert.ok(got <= c.exact && got > c.exact - 1000, `lsn ${c.lsn}: ${got} ms, the lag is ${c.exact} ms`);
    }
    assert.equal(t.lagMsOf(249_501, LONG_AT), LONG_AT - 25_000);
  }));

test('lagMsOf is never shorter than the age of the oldest fine sample the replica has not replayed', () =>
  using({}, ({ t }) => {
    longHistory(t);
    // The fine samples start at i = 172 (sent at 17 200); the coarse ones are i = 170, 180, ...
    // A replica at 171 501 has replayed i = 171 and not i = 172, the oldest fine sample: 12 750 ms behind.
    assert.equal(t.lagMsOf(171_501, LONG_AT), LONG_AT - 17_200);
  }));

// ------------------------------------------------------------------------------------ read-your-writes

/** r1 has replayed 100, r2 200, r3 nothing yet (-1); four reads. */
const rywCases: { include: IncludePrimary; minLsn?: number; banned?: string[]; expect: string }[] = [
  { include: 'when_no_replica', expect: 'r1 r2 r3 r1' },
  { include: 'when_no_replica', minLsn: 100, expect: 'r1 r2 r1 r2' },
  { include: 'when_no_replica', minLsn: 150, expect: 'r2 r2 r2 r2' },
  { include: 'when_no_replica', minLsn: 201, expect: times('primary', 4) },
  { include: 'never', minLsn: 201, expect: times('primary', 4) },
  { include: 'always', minLsn: 150, expect: 'r2 primary r2 primary' },
  { include: 'always', minLsn: 201, expect: times('primary', 4) },
  { include: 'when_no_replica', minLsn: 150, banned: ['r2'], expect: times('primary', 4) },
  // Bans are lifted for 'never', but only among replicas that have replayed the write.
  { include: 'never', minLsn: 150, banned: ['r2'], expect: 'r2 r2 r2 r2' },
  { include: 'never', minLsn: 150, banned: ['r1'], expect: 'r2 r2 r2 r2' },
];

for (const c of rywCases) {
  test(`read-your-writes: include_primary ${c.include}, minLsn ${c.minLsn}, banned [${(c.banned ?? []).join(' ')}]: reads go ${c.expect}`, () =>
    using({ balancer: { include_primary: c.include } }, ({ t }) => {
      node(t, 'r1').lsn = 100;
      node(t, 'r2').lsn = 200;
      for (const name of c.banned ?? []) t.markDown(node(t, name), 'refused');
      assert.equal(picks(t, 4, undefined, c.minLsn), c.expect);
    }));
}

test('allReplayed: every replica in the read pool, banned ones included, draining and fenced ones not', () =>
  using({}, ({ t }) => {
    const [r1, r2, r3] = t.replicas as [DbNode, DbNode, DbNode];
    r1.lsn = 100;
    r2.lsn = 200;
    assert.equal(t.allReplayed(0), false, 'r3 has replayed nothing yet');
    r3.draining = true;
    assert.equal(t.allReplayed(100), true);
    assert.equal(t.allReplayed(101), false);
    t.markDown(r1, 'refused');
    assert.equal(t.allReplayed(150), false, 'a banned replica may come back behind');
    r1.lsn = 150;
    assert.equal(t.allReplayed(150), true);
    r3.draining = false;
    r3.role = 'fenced';
    assert.equal(t.allReplayed(150), true, 'a fenced node takes no reads');
    assert.equal(t.allReplayed(151), false);
  }));

// ------------------------------------------------------------------------------------ weights, drains, splitting

const poolCases: {
  title: string;
  setup: Setup;
  draining?: string[];
  expect: string;
  splitting: boolean;
}[] = [
  { title: 'weight 0 takes no reads', setup: { replicas: [1, 0, 1] }, expect: 'r1 r3 r1 r3', splitting: true },
  { title: 'every replica weight 0: the primary', setup: { replicas: [0, 0] }, expect: times('primary', 4), splitting: true },
  {
    title: "every replica weight 0, include_primary 'never': still the primary",
    setup: { replicas: [0, 0], balancer: { include_primary: 'never' } },
    expect: times('primary', 4),
    splitting: true,
  },
  { title: 'a draining replica takes no reads', setup: {}, draining: ['r2'], expect: 'r1 r3 r1 r3', splitting: true },
  { title: 'every replica draining: no splitting', setup: {}, draining: ['r1', 'r2', 'r3'], expect: times('primary', 4), splitting: false },
  {
    title: "every replica draining, include_primary 'never': the primary",
    setup: { balancer: { include_primary: 'never' } },
    draining: ['r1', 'r2', 'r3'],
    expect: times('primary', 4),
    splitting: false,
  },
  {
    title: "include_primary 'always' and primary weight 0: not a candidate",
    setup: { primaryWeight: 0, balancer: { include_primary: 'always' } },
    expect: 'r1 r2 r3 r1',
    splitting: true,
  },
  { title: 'no replicas: no splitting', setup: { replicas: [] }, expect: times('primary', 4), splitting: false },
  { title: 'read_write_split off: no splitting', setup: { split: false }, expect: 'r1 r2 r3 r1', splitting: false },
];

for (const c of poolCases) {
  test(`${c.title}: reads go ${c.expect}, splitting ${c.splitting}`, () =>
    using(c.setup, ({ t }) => {
      for (const name of c.draining ?? []) node(t, name).draining = true;
      assert.equal(picks(t, 4), c.expect);
      assert.equal(t.splitting, c.splitting);
    }));
}

test('a fenced node takes no reads and does not count for splitting', () =>
  using({ replicas: [1, 1] }, ({ t }) => {
    node(t, 'r1').role = 'fenced';
    assert.equal(picks(t, 3), 'r2 r2 r2');
    assert.deepEqual(
      t.replicas.map((n) => n.name),
      ['r2'],
    );
    node(t, 'r2').role = 'fenced';
    assert.equal(t.splitting, false);
    assert.equal(picks(t, 2), 'primary primary');
  }));

test('updateReplica changes a weight that the next reads follow', () =>
  using({ replicas: [1, 1], balancer: { strategy: 'weighted' } }, ({ t }) => {
    assert.deepEqual(counts(picks(t, 40)), { r1: 20, r2: 20 });
    t.updateReplica({ ...node(t, 'r1').config, weight: 3 });
    assert.equal(node(t, 'r1').weight, 3);
    assert.deepEqual(counts(picks(t, 40)), { r1: 30, r2: 10 });
    t.updateReplica({ ...node(t, 'r2').config, weight: 0 });
    assert.equal(picks(t, 3), 'r1 r1 r1');
  }));

// ------------------------------------------------------------------------------------ added and removed at runtime

test('addReplica: replica_added, reads at once without a monitor; a taken name throws', () =>
  using({ replicas: [1] }, ({ t, events }) => {
    const r4 = t.addReplica({ name: 'r4', host: '10.0.0.4', port: 5433, weight: 2 }, 'api');
    assert.deepEqual(events, [{ type: 'replica_added', node: 'r4', host: '10.0.0.4', port: 5433, weight: 2, source: 'api' }]);
    assert.equal(t.node('r4'), r4);
    assert.equal(r4.source, 'api');
    assert.equal(r4.role, 'replica');
    assert.deepEqual(
      t.nodes.map((n) => n.name),
      ['primary', 'r1', 'r4'],
    );
    assert.deepEqual(counts(picks(t, 4)), { r1: 2, r4: 2 });
    for (const name of ['r1', 'r4', 'primary']) {
      assert.throws(() => t.addReplica({ name, host: 'h', port: 1, weight: 1 }, 'config'), /exists already/, name);
    }
    assert.equal(events.length, 1, 'a refused add emits nothing');
    assert.equal(t.nodes.length, 3);
  }));

test('removeReplica at once and drained: the node leaves with replica_removed; unknown names and the primary reject', () =>
  using({}, async ({ t, events }) => {
    const r2 = node(t, 'r2');
    await t.removeReplica('r2', false);
    assert.deepEqual(events, [{ type: 'replica_removed', node: 'r2', drained: false }]);
    assert.equal(t.node('r2'), undefined);
    assert.equal(r2.removed, true);
    assert.deepEqual(
      t.nodes.map((n) => n.name),
      ['primary', 'r1', 'r3'],
    );
    assert.equal(picks(t, 4), 'r1 r3 r1 r3');

    events.length = 0;
    await t.removeReplica('r3', true);
    assert.deepEqual(events, [
      { type: 'replica_draining', node: 'r3' },
      { type: 'replica_removed', node: 'r3', drained: true },
    ]);
    assert.equal(t.node('r3'), undefined);

    events.length = 0;
    await assert.rejects(t.removeReplica('nope', false), /no replica named "nope"/);
    await assert.rejects(t.removeReplica('primary', false), /no replica named "primary"/);
    await assert.rejects(t.removeReplica('r2', false), /no replica named "r2"/, 'removed already');
    assert.deepEqual(events, []);
    assert.equal(t.splitting, true);
    await t.removeReplica('r1', false);
    assert.equal(t.splitting, false);
    assert.equal(picks(t, 2), 'primary primary');
  }));

// ------------------------------------------------------------------------------------ strategies from the config

test('ip-hash: a client keeps its replica, clients spread, a ban elsewhere moves no one, no key goes round robin', () =>
  using({ balancer: { strategy: 'ip-hash' } }, ({ t }) => {
    const keys = Array.from({ length: 60 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    const home = new Map<string, string>();
    for (const key of keys) {
      const first = t.pickRead(key).name;
      assert.equal(picks(t, 5, key), times(first, 5), key);
      home.set(key, first);
    }
    assert.deepEqual([...new Set(home.values())].sort(), ['r1', 'r2', 'r3'], 'sixty clients reach every replica');
    t.markDown(node(t, 'r3'), 'refused');
    for (const key of keys) {
      const got = t.pickRead(key).name;
      if (home.get(key) === 'r3') assert.notEqual(got, 'r3', key);
      else assert.equal(got, home.get(key), `${key} moved though its replica is still up`);
    }
    assert.equal(picks(t, 4), 'r1 r2 r1 r2');
  }));

test('least-connections: with nothing in use the replicas take turns', () =>
  using({ balancer: { strategy: 'least-connections' } }, ({ t }) => {
    assert.deepEqual(
      t.replicas.map((n) => n.inUse),
      [0, 0, 0],
    );
    assert.equal(picks(t, 6), 'r1 r2 r3 r1 r2 r3');
    t.markDown(node(t, 'r1'), 'refused');
    assert.deepEqual(counts(picks(t, 4)), { r2: 2, r3: 2 });
  }));

test('applyBalancer with a new strategy: the next reads follow it', () =>
  using({ replicas: [2, 1, 1] }, ({ t, config }) => {
    assert.deepEqual(counts(picks(t, 300)), { r1: 100, r2: 100, r3: 100 }, 'round robin ignores weights');
    t.applyBalancer({ ...config.balancer, strategy: 'weighted' });
    assert.deepEqual(counts(picks(t, 400)), { r1: 200, r2: 100, r3: 100 });
    t.applyBalancer({ ...config.balancer, include_primary: 'always' });
    assert.ok(picks(t, 5).includes('primary'), 'include_primary is read at each pick');
  }));

// ------------------------------------------------------------------------------------ roles

interface RoleCase {
  title: string;
  /** Before the probes: mark these nodes down (a failed probe does that, and forgets what the node said). */
  down?: string[];
  /** Probe answers in order, by the node's configured name. */
  probes: [name: string, row: ProbeRow][];
  primary: string;
  roles: Record<string, string>;
  /** role_changed and primary_changed events, in order. */
  events: object[];
  /** Four reads afterwards (every node counts as probed). */
  reads: string;
}

const roleChanged = (node: string, from: string, to: string) => ({ type: 'role_changed', node, from, to });
const primaryChanged = (from: string, to: string, timeline: number | null) => ({ type: 'primary_changed', from, to, timeline });

const roleCases: RoleCase[] = [
  {
    title: 'a replica writable on a later timeline becomes the primary; the old one is fenced',
    probes: [
      ['primary', writable(1)],
      ['r1', writable(2)],
    ],
    primary: 'r1',
    roles: { primary: 'fenced', r1: 'primary', r2: 'replica' },
    events: [roleChanged('r1', 'replica', 'primary'), roleChanged('primary', 'primary', 'fenced'), primaryChanged('primary', 'r1', 2)],
    reads: 'r2 r2 r2 r2',
  },
  {
    title: 'the old primary reporting in recovery afterwards is a replica again',
    probes: [
      ['primary', writable(1)],
      ['r1', writable(2)],
      ['primary', recovering()],
    ],
    primary: 'r1',
    roles: { primary: 'replica', r1: 'primary', r2: 'replica' },
    events: [
      roleChanged('r1', 'replica', 'primary'),
      roleChanged('primary', 'primary', 'fenced'),
      primaryChanged('primary', 'r1', 2),
      roleChanged('primary', 'fenced', 'replica'),
    ],
    reads: 'primary r2 primary r2',
  },
  {
    title: "a writable node on the primary's timeline is fenced; the primary stays",
    probes: [
      ['primary', writable(1)],
      ['r1', writable(1)],
    ],
    primary: 'primary',
    roles: { primary: 'primary', r1: 'fenced', r2: 'replica' },
    events: [roleChanged('r1', 'replica', 'fenced')],
    reads: 'r2 r2 r2 r2',
  },
  {
    title: 'a fenced node reporting in recovery is a replica again',
    probes: [
      ['primary', writable(1)],
      ['r1', writable(1)],
      ['r1', recovering()],
    ],
    primary: 'primary',
    roles: { primary: 'primary', r1: 'replica', r2: 'replica' },
    events: [roleChanged('r1', 'replica', 'fenced'), roleChanged('r1', 'fenced', 'replica')],
    reads: 'r1 r2 r1 r2',
  },
  {
    title: 'the primary in recovery and a writable replica: the replica becomes the primary, the old one a replica',
    probes: [
      ['primary', recovering()],
      ['r2', writable(1)],
    ],
    primary: 'r2',
    roles: { primary: 'replica', r1: 'replica', r2: 'primary' },
    events: [roleChanged('r2', 'replica', 'primary'), roleChanged('primary', 'primary', 'replica'), primaryChanged('primary', 'r2', 1)],
    reads: 'primary r1 primary r1',
  },
  {
    title: 'the primary down with its timeline unknown and a writable replica: the replica becomes the primary',
    down: ['primary'],
    probes: [['r1', writable(1)]],
    primary: 'r1',
    roles: { primary: 'fenced', r1: 'primary', r2: 'replica' },
    events: [roleChanged('r1', 'replica', 'primary'), roleChanged('primary', 'primary', 'fenced'), primaryChanged('primary', 'r1', 1)],
    reads: 'r2 r2 r2 r2',
  },
  {
    title: 'a writable node on a later timeline than the new primary takes over again',
    probes: [
      ['primary', recovering()],
      ['r1', writable(2)],
      ['r2', writable(3)],
    ],
    primary: 'r2',
    roles: { primary: 'replica', r1: 'fenced', r2: 'primary' },
    events: [
      roleChanged('r1', 'replica', 'primary'),
      roleChanged('primary', 'primary', 'replica'),
      primaryChanged('primary', 'r1', 2),
      roleChanged('r2', 'replica', 'primary'),
      roleChanged('r1', 'primary', 'fenced'),
      primaryChanged('r1', 'r2', 3),
    ],
    reads: 'primary primary primary primary',
  },
  {
    title: 'a replica in recovery stays a replica',
    probes: [
      ['primary', writable(1)],
      ['r1', recovering()],
      ['r2', recovering()],
    ],
    primary: 'primary',
    roles: { primary: 'primary', r1: 'replica', r2: 'replica' },
    events: [],
    reads: 'r1 r2 r1 r2',
  },
];

for (const c of roleCases) {
  test(`roles: ${c.title}`, () =>
    using({ monitor: true, replicas: [1, 1] }, ({ t, events }) => {
      const byName = new Map(t.nodes.map((n) => [n.name, n]));
      for (const n of t.nodes) n.probed = true;
      for (const name of c.down ?? []) t.markDown(byName.get(name)!, 'connection refused');
      for (const [name, row] of c.probes) probe(t, byName.get(name)!, row);
      assert.equal(t.primary.name, c.primary);
      assert.equal(t.nodes[0], t.primary, 'the primary is listed first');
      assert.deepEqual(Object.fromEntries([...byName].map(([name, n]) => [name, n.role])), c.roles);
      assert.deepEqual(
        events.filter((e) => e.type === 'role_changed' || e.type === 'primary_changed'),
        c.events,
      );
      assert.deepEqual(
        t.replicas.map((n) => n.name).sort(),
        Object.keys(c.roles)
          .filter((name) => c.roles[name] === 'replica')
          .sort(),
      );
      assert.equal(picks(t, 4), c.reads);
    }));
}

test('roles: timelines and recovery state come from the probe row', () =>
  using({ monitor: true, replicas: [1] }, ({ t }) => {
    const r1 = node(t, 'r1');
    assert.equal(t.primary.inRecovery, undefined);
    probe(t, t.primary, ['f', '0/3001', null, '0000000A0000000000000003'], 100);
    assert.equal(t.primary.inRecovery, false);
    assert.equal(t.primary.timeline, 10);
    assert.equal(t.primary.lsn, 0x3001);
    probe(t, r1, recovering('0/2001'), 150);
    assert.equal(r1.inRecovery, true);
    assert.equal(r1.timeline, undefined);
    assert.equal(r1.lsn, 0x2001);
    assert.equal(r1.replayAt, '2024-05-01 12:00:00.000000+00');
    assert.equal(r1.lagBytes, 0x1000);
    assert.equal(r1.lagMs, 50);
  }));

test('roles: a promotion forgets the old timeline: lag and read-your-writes wait for samples from the new primary', () =>
  using({ monitor: true, replicas: [1, 1] }, ({ t }) => {
    probe(t, t.primary, writable(1, '0/5001'), 100);
    assert.equal(t.lsnAfter(50), 0x5001);
    assert.equal(t.lagMsOf(0x1001, 150), 50);
    const r1 = node(t, 'r1');
    t.markDown(r1, 'refused');
    r1.lagging = true;
    probe(t, r1, writable(2, '0/6001'), 200);
    assert.equal(t.primary, r1);
    assert.equal(t.lsnAfter(50), undefined);
    assert.equal(t.lagMsOf(0x1001, 250), undefined);
    assert.equal(r1.banned, false, 'the new primary carries no ban');
    assert.equal(r1.lagging, false);
    assert.equal(r1.healthy, true);
    probe(t, r1, writable(2, '0/7001'), 300);
    assert.equal(t.lsnAfter(250), 0x7001);
  }));

test('roles: a writable replica probed before the primary has answered once is fenced, not promoted', () =>
  using({ monitor: true, replicas: [1, 1] }, ({ t }) => {
    // Startup: all nodes are probed at once and r1, a standalone server on timeline 1, answers first.
    probe(t, node(t, 'r1'), writable(1));
    assert.equal(t.primary.name, 'primary');
    assert.equal(node(t, 'r1').role, 'fenced');
  }));
