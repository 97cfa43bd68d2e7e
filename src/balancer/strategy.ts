// Replica selection rules: given the eligible candidates in a stable order, which one serves the next transaction.

export const STRATEGIES = ['round-robin', 'least-connections', 'weighted', 'random', 'ip-hash'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

export interface Candidate {
  /** Unique and stable across picks: per-node state is keyed by it. */
  readonly name: string;
  /** > 0; the caller leaves weight-0 nodes out. */
  readonly weight: number;
  /** Server connections this gateway has in use on the node right now. */
  readonly inUse: number;
}

export interface Balancer {
  readonly strategy: StrategyName;
  /**
   * One of candidates (given in a stable order, e.g. config order), or undefined when candidates is
   * empty. clientKey: the client's IP address (used by ip-hash).
   */
  pick<T extends Candidate>(candidates: readonly T[], clientKey?: string): T | undefined;
}

/** Chooses an index into a non-empty candidate list. */
type PickIndex = (candidates: readonly Candidate[], clientKey: string | undefined) => number;

export function makeBalancer(strategy: StrategyName, opts: { random?: () => number } = {}): Balancer {
  const pickIndex = pickerFor(strategy, opts.random ?? Math.random);
  return {
    strategy,
    pick<T extends Candidate>(candidates: readonly T[], clientKey?: string): T | undefined {
      return candidates.length === 0 ? undefined : candidates[pickIndex(candidates, clientKey)];
    },
  };
}

function pickerFor(strategy: StrategyName, random: () => number): PickIndex {
  switch (strategy) {
    case 'round-robin':
      return roundRobin();
    case 'least-connections':
      return leastConnections();
    case 'weighted':
      return smoothWeighted();
    case 'random':
      // min(): a supplied generator may return 1, which Math.random never does.
      return (c) => Math.min(c.length - 1, Math.floor(random() * c.length));
    case 'ip-hash':
      return rendezvous();
  }
}

/**
 * candidates[n % length], n counting every pick. The counter is positional, not per name: when a node
 * drops out the rest keep their turn order (r1 r2 r3 r1 r2 r3, then without r2: r1 r3 r1 r3).
 */
function roundRobin(): PickIndex {
  let n = 0;
  return (c) => n++ % c.length;
}

/**
 * Fewest in use wins. Ties go to the first tied candidate after the last one chosen, cyclically, so equal
 * nodes take turns whether or not the caller's counts move between picks.
 */
function leastConnections(): PickIndex {
  let start = 0;
  return (c) => {
    let best = start % c.length;
    for (let k = 1; k < c.length; k++) {
      const i = (start + k) % c.length;
      // Strict: the earliest in scan order keeps a tie.
      if (c[i]!.inUse < c[best]!.inUse) best = i;
    }
    start = best + 1;
    return best;
  };
}

/**
 * Smooth weighted round robin (as nginx does it): every candidate's score grows by its weight, the highest
 * (first on ties) is chosen and pays back the total. From equal scores, every run of sum(weights) picks
 * gives each node exactly its weight, interleaved rather than in bursts (3:1 gives a a b a).
 */
function smoothWeighted(): PickIndex {
  const scores = new Map<string, number>();
  return (c) => {
    let total = 0;
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < c.length; i++) {
      const { name, weight } = c[i]!;
      const s = (scores.get(name) ?? 0) + weight;
      scores.set(name, s);
      total += weight;
      if (s > bestScore) {
        best = i;
        bestScore = s;
      }
    }
    scores.set(c[best]!.name, bestScore - total);
    // Names are unique, so a larger map holds nodes that left: drop them, so that a node that returns
    // starts level instead of carrying credit or debt earned against a different set.
    if (scores.size > c.length) {
      const present = new Set(c.map((x) => x.name));
      for (const name of scores.keys()) if (!present.has(name)) scores.delete(name);
    }
    return best;
  };
}

/** Memoised ip-hash answers; the map is emptied when it reaches this size, which bounds its memory. */
const MEMO_ENTRIES = 10_000;

/**
 * Weighted rendezvous hashing: each candidate scores -weight / ln(u), u uniform in (0,1) from a hash of
 * (client, node), and the highest wins. That makes P(node) = weight / sum(weights), and because a node's
 * score does not depend on the others, a client keeps its node while that node stays a candidate; a node
 * joining takes only the clients it now outscores, and a node leaving moves only its own clients.
 * Clients without an address (Unix sockets) are spread round robin instead.
 */
function rendezvous(): PickIndex {
  const fallback = roundRobin();
  const memo = new Map<string, number>();
  return (c, clientKey) => {
    if (clientKey === undefined || clientKey === '') return fallback(c, clientKey);
    if (c.length === 1) return 0;
    const key = memoKey(c, clientKey);
    const hit = memo.get(key);
    if (hit !== undefined) return hit;

    // The client's part of the hash is shared by every candidate: compute it once.
    const seed = hashUnits(FNV_OFFSET_A, FNV_OFFSET_B, clientKey);
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < c.length; i++) {
      const { name, weight } = c[i]!;
      const score = -weight / Math.log(unitInterval(seed, name));
      if (score > bestScore) {
        best = i;
        bestScore = score;
      }
    }
    if (memo.size >= MEMO_ENTRIES) memo.clear();
    memo.set(key, best);
    return best;
  };
}

/**
 * The candidate count, each name with its length and weight, then the client. Length prefixes make the
 * encoding unambiguous whatever characters names and keys hold; the stored answer is an index, valid
 * because the same key means the same names in the same order.
 */
function memoKey(c: readonly Candidate[], clientKey: string): string {
  let key = `${c.length}`;
  for (const { name, weight } of c) key += `|${name.length}:${name}=${weight}`;
  return `${key}|${clientKey}`;
}

// Two FNV-1a style lanes over UTF-16 code units. Lane B differs in offset basis and multiplier so it is
// not lane A under another name; fmix32 then gives the avalanche FNV lacks in its high bits, which matters
// because names such as r1, r2, r3 differ only in their last unit.
const FNV_OFFSET_A = 0x811c9dc5;
const FNV_PRIME_A = 0x01000193;
const FNV_OFFSET_B = 0x050c5d1f;
const FNV_PRIME_B = 0x5bd1e995;

/** Both lanes after hashing the length of s and then its units; the length keeps (key, name) splits distinct. */
function hashUnits(a: number, b: number, s: string): [number, number] {
  a = Math.imul(a ^ s.length, FNV_PRIME_A);
  b = Math.imul(b ^ s.length, FNV_PRIME_B);
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    a = Math.imul(a ^ u, FNV_PRIME_A);
    b = Math.imul(b ^ u, FNV_PRIME_B);
  }
  return [a, b];
}

/** murmur3's 32-bit finaliser. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const TWO_52 = 2 ** 52;

/**
 * u in (0,1), both ends excluded so ln(u) is finite and negative: 52 hash bits plus one half, which stays
 * exact in a double (53-bit significand); 53 bits would round the top value up to 1.
 */
function unitInterval(seed: readonly [number, number], name: string): number {
  const [a, b] = hashUnits(seed[0], seed[1], name);
  const hi = fmix32(a);
  // Feed lane A into lane B so the two halves are not finalised independently of each other.
  const lo = fmix32(b ^ hi);
  return (hi * 2 ** 20 + (lo >>> 12) + 0.5) / TWO_52;
}
