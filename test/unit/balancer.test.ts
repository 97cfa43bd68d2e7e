// Replica selection strategies: exact pick sequences per strategy, weighted proportions, and ip-hash stickiness and spread.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STRATEGIES, makeBalancer, type Balancer, type Candidate, type StrategyName } from '../../src/balancer/strategy.js';
import { seededRandom } from '../harness/random.js';

function node(name: string, weight = 1, inUse = 0): Candidate {
  return { name, weight, inUse };
}

const r1 = node('r1');
const r2 = node('r2');
const r3 = node('r3');
const r4 = node('r4');

function picks(b: Balancer, candidates: readonly Candidate[], n: number, clientKey?: string): string[] {
  return Array.from({ length: n }, () => b.pick(candidates, clientKey)!.name);
}

function counts(names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

/** Distinct IPv4 addresses, consecutive as a subnet's clients would be: the hard case for a weak hash. */
function ipv4(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

/** One balancer driven through steps in order; each step's picks must come out exactly as listed. */
interface Case {
  title: string;
  strategy: StrategyName;
  random?: () => number;
  steps: { candidates: readonly Candidate[]; clientKey?: string; expect: string }[];
}

const cases: Case[] = [
  {
    title: 'round-robin: in turn; a node dropping out keeps the positional counter',
    strategy: 'round-robin',
    steps: [
      { candidates: [r1, r2, r3], expect: 'r1 r2 r3 r1 r2 r3' },
      { candidates: [r1, r3], expect: 'r1 r3 r1 r3' },
    ],
  },
  {
    // After 5 picks the counter is 5, so the shorter list starts at 5 % 2 = 1; a counter reset on a change
    // of list would start at r1 again.
    title: 'round-robin: the counter carries across a change of candidates mid-cycle',
    strategy: 'round-robin',
    steps: [
      { candidates: [r1, r2, r3], expect: 'r1 r2 r3 r1 r2' },
      { candidates: [r1, r3], expect: 'r3 r1 r3' },
    ],
  },
  {
    title: 'round-robin: ignores weight and connections in use',
    strategy: 'round-robin',
    steps: [{ candidates: [node('a', 5, 9), node('b', 1, 0)], expect: 'a b a b' }],
  },
  {
    title: 'round-robin: a single candidate every time',
    strategy: 'round-robin',
    steps: [{ candidates: [r2], expect: 'r2 r2 r2' }],
  },
  {
    title: 'least-connections: the fewest in use wins every time',
    strategy: 'least-connections',
    steps: [{ candidates: [node('a', 1, 3), node('b', 1, 1), node('c', 1, 2)], expect: 'b b b' }],
  },
  {
    title: 'least-connections: all tied take turns',
    strategy: 'least-connections',
    steps: [{ candidates: [node('a', 1, 0), node('b', 1, 0), node('c', 1, 0)], expect: 'a b c a b c' }],
  },
  {
    title: 'least-connections: tied subset takes turns, the busier node never',
    strategy: 'least-connections',
    steps: [{ candidates: [node('a', 1, 2), node('b', 1, 1), node('c', 1, 1)], expect: 'b c b c' }],
  },
  {
    title: 'least-connections: follows counts as they change; a tie goes to the next after the last chosen',
    strategy: 'least-connections',
    steps: [
      { candidates: [node('a', 1, 5), node('b', 1, 2), node('c', 1, 2)], expect: 'b' },
      { candidates: [node('a', 1, 5), node('b', 1, 3), node('c', 1, 2)], expect: 'c' },
      { candidates: [node('a', 1, 0), node('b', 1, 3), node('c', 1, 2)], expect: 'a' },
      { candidates: [node('a', 1, 1), node('b', 1, 1), node('c', 1, 1)], expect: 'b c a' },
    ],
  },
  {
    title: 'least-connections: weight does not count',
    strategy: 'least-connections',
    steps: [{ candidates: [node('a', 100, 4), node('b', 1, 3)], expect: 'b b' }],
  },
  {
    title: 'weighted: 3:1 interleaves a a b a',
    strategy: 'weighted',
    steps: [{ candidates: [node('a', 3), node('b', 1)], expect: 'a a b a a a b a' }],
  },
  {
    title: 'weighted: 5:3:2 repeats one interleaving of 10',
    strategy: 'weighted',
    steps: [{ candidates: [node('a', 5), node('b', 3), node('c', 2)], expect: 'a b c a a b a c b a a b c a a b a c b a' }],
  },
  {
    title: 'weighted: equal weights are round robin',
    strategy: 'weighted',
    steps: [{ candidates: [r1, r2, r3], expect: 'r1 r2 r3 r1 r2 r3' }],
  },
  {
    // b leaves owing nothing (its score is positive); it returns level, not with that credit: with the
    // credit kept, its first pick back would be b.
    title: 'weighted: a node that leaves and returns starts level',
    strategy: 'weighted',
    steps: [
      { candidates: [node('a', 3), node('b', 1)], expect: 'a a' },
      { candidates: [node('a', 3)], expect: 'a' },
      { candidates: [node('a', 3), node('b', 1)], expect: 'a b a a a b a a' },
    ],
  },
  {
    title: 'random: index floor(random() * n), a generator returning 1 still lands in range',
    strategy: 'random',
    random: ((values) => () => values.shift()!)([0, 0.34, 0.5, 0.67, 0.999, 1]),
    steps: [{ candidates: [r1, r2, r3], expect: 'r1 r2 r2 r3 r3 r3' }],
  },
  {
    title: 'ip-hash: no client address (Unix socket) falls back to round robin',
    strategy: 'ip-hash',
    steps: [
      { candidates: [r1, r2, r3], expect: 'r1 r2 r3 r1' },
      { candidates: [r1, r2, r3], clientKey: '', expect: 'r2 r3' },
    ],
  },
];

for (const c of cases) {
  test(c.title, () => {
    const b = makeBalancer(c.strategy, c.random ? { random: c.random } : undefined);
    assert.equal(b.strategy, c.strategy);
    for (const [i, step] of c.steps.entries()) {
      const want = step.expect.split(' ');
      assert.deepEqual(picks(b, step.candidates, want.length, step.clientKey), want, `step ${i}`);
    }
  });
}

test('every strategy answers undefined for no candidates, with or without a client address', () => {
  assert.deepEqual([...STRATEGIES], ['round-robin', 'least-connections', 'weighted', 'random', 'ip-hash']);
  for (const s of STRATEGIES) {
    const b = makeBalancer(s);
    assert.equal(b.pick([]), undefined, s);
    assert.equal(b.pick([], '10.0.0.1'), undefined, s);
    // And the empty pick left nothing behind that breaks the next real one.
    assert.equal(b.pick([r1], '10.0.0.1'), r1, s);
  }
});

test('pick returns the caller\'s own object, with its extra fields', () => {
  const nodes = [{ ...r1, host: 'h1' }, { ...r2, host: 'h2' }];
  for (const s of STRATEGIES) {
    const got = makeBalancer(s).pick(nodes, '10.0.0.1');
    assert.ok(got === nodes[0] || got === nodes[1], s);
  }
});

test('weighted 3:1 is exact in every run of 4 picks over 4000', () => {
  const b = makeBalancer('weighted');
  const got = picks(b, [node('a', 3), node('b', 1)], 4000);
  assert.deepEqual(counts(got), { a: 3000, b: 1000 });
  for (let i = 0; i < got.length; i += 4) assert.equal(got.slice(i, i + 4).filter((n) => n === 'b').length, 1, `picks ${i}..${i + 3}`);
});

test('weighted 5:3:2 is exact over 1000 picks and in every run of 10', () => {
  const b = makeBalancer('weighted');
  const got = picks(b, [node('a', 5), node('b', 3), node('c', 2)], 1000);
  assert.deepEqual(counts(got), { a: 500, b: 300, c: 200 });
  for (let i = 0; i < got.length; i += 10) {
    assert.deepEqual(counts(got.slice(i, i + 10)), { a: 5, b: 3, c: 2 }, `picks ${i}..${i + 9}`);
  }
});

test('weighted with a node removed mid-cycle: the rest split by their own weights from then on', () => {
  const b = makeBalancer('weighted');
  assert.deepEqual(picks(b, [node('a', 5), node('b', 3), node('c', 2)], 7), 'a b c a a b a'.split(' '));
  const after = picks(b, [node('a', 5), node('b', 3)], 800);
  // c's score is gone with it: were it still summed into the total, a and b would drift toward equal.
  assert.deepEqual(counts(after), { a: 500, b: 300 });
  assert.deepEqual(after.slice(0, 16), 'b a a b a b a a b a a b a b a a'.split(' '));
});

test('random with a seeded generator repeats exactly and spreads evenly', () => {
  const a = picks(makeBalancer('random', { random: seededRandom(42) }), [r1, r2, r3], 3000);
  const b = picks(makeBalancer('random', { random: seededRandom(42) }), [r1, r2, r3], 3000);
  assert.deepEqual(a, b);
  const other = picks(makeBalancer('random', { random: seededRandom(7) }), [r1, r2, r3], 3000);
  assert.notDeepEqual(a, other);
  const n = counts(a);
  for (const name of ['r1', 'r2', 'r3']) assert.ok(n[name]! >= 900 && n[name]! <= 1100, `${name}: ${n[name]}`);
});

/** Each key's node name under one ip-hash balancer. */
function assign(b: Balancer, candidates: readonly Candidate[], keys: readonly string[]): string[] {
  return keys.map((k) => b.pick(candidates, k)!.name);
}

const keys3000 = Array.from({ length: 3000 }, (_, i) => ipv4(i));

test('ip-hash: a client keeps its node, whatever else is asked in between and in whatever order nodes come', () => {
  const b = makeBalancer('ip-hash');
  const first = assign(b, [r1, r2, r3], keys3000);
  assert.deepEqual(assign(b, [r1, r2, r3], keys3000), first);
  // A second balancer (nothing memoised) and a shuffled candidate order agree.
  assert.deepEqual(assign(makeBalancer('ip-hash'), [r3, r1, r2], keys3000), first);
  // The keys do not all land on one node, which would make the checks above empty.
  assert.equal(new Set(first).size, 3);
});

test('ip-hash: 3000 addresses over 3 equal nodes, 1000 ± 10 % each', () => {
  const n = counts(assign(makeBalancer('ip-hash'), [r1, r2, r3], keys3000));
  for (const name of ['r1', 'r2', 'r3']) assert.ok(n[name]! >= 900 && n[name]! <= 1100, `${name}: ${n[name]}`);
});

test('ip-hash: a 4th node takes about a quarter of the clients, and only clients that move to it move', () => {
  const b = makeBalancer('ip-hash');
  const before = assign(b, [r1, r2, r3], keys3000);
  const after = assign(b, [r1, r2, r3, r4], keys3000);
  let moved = 0;
  for (let i = 0; i < keys3000.length; i++) {
    if (before[i] === after[i]) continue;
    moved++;
    assert.equal(after[i], 'r4', `${keys3000[i]} moved ${before[i]} -> ${after[i]}`);
  }
  assert.ok(moved >= 0.15 * 3000 && moved <= 0.35 * 3000, `moved ${moved}`);
});

test('ip-hash: removing a node moves only its clients, and spreads them over the rest', () => {
  const b = makeBalancer('ip-hash');
  const before = assign(b, [r1, r2, r3], keys3000);
  const after = assign(b, [r1, r3], keys3000);
  const went: string[] = [];
  for (let i = 0; i < keys3000.length; i++) {
    if (before[i] === 'r2') went.push(after[i]!);
    else assert.equal(after[i], before[i], keys3000[i]);
  }
  assert.ok(went.length > 0);
  const n = counts(went);
  // Rendezvous hands a departed node's clients out by weight, not all to one neighbour.
  assert.ok(n.r1! > went.length / 3 && n.r3! > went.length / 3, JSON.stringify(n));
});

test('ip-hash: weights 3:1 give 3:1 of 4000 clients, ± 10 %', () => {
  const keys = Array.from({ length: 4000 }, (_, i) => ipv4(i + 70_000));
  const n = counts(assign(makeBalancer('ip-hash'), [node('a', 3), node('b', 1)], keys));
  assert.ok(n.a! >= 2700 && n.a! <= 3300, `a: ${n.a}`);
  assert.ok(n.b! >= 900 && n.b! <= 1100, `b: ${n.b}`);
});

test('ip-hash: raising a weight moves clients only toward that node, even with answers memoised', () => {
  const b = makeBalancer('ip-hash');
  const before = assign(b, [node('a', 1), node('b', 1)], keys3000);
  const after = assign(b, [node('a', 1), node('b', 3)], keys3000);
  let moved = 0;
  for (let i = 0; i < keys3000.length; i++) {
    if (before[i] === after[i]) continue;
    moved++;
    assert.deepEqual([before[i], after[i]], ['a', 'b'], keys3000[i]);
  }
  // From 1/2 to 3/4 of the clients: about a quarter move.
  assert.ok(moved >= 0.15 * 3000 && moved <= 0.35 * 3000, `moved ${moved}`);
});

test('ip-hash: answers stay the same across memo clears', () => {
  // More keys than the memo holds, asked twice by one balancer and once, in reverse, by another.
  const keys = Array.from({ length: 25_000 }, (_, i) => ipv4(i));
  const b = makeBalancer('ip-hash');
  const first = assign(b, [r1, r2, r3], keys);
  assert.deepEqual(assign(b, [r1, r2, r3], keys), first);
  const reversed = assign(makeBalancer('ip-hash'), [r1, r2, r3], [...keys].reverse()).reverse();
  assert.deepEqual(reversed, first);
});
