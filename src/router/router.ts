// The read/write router: whether a SQL text may run on a hot-standby replica or must go to the primary, decided from its parse tree and cached.

import { parseSync } from 'libpg-query';
import type { RawStmt } from 'libpg-query';
import { loadParser } from '../session/analyze.js';
import { cacheKey } from './cache-key.js';
import { Classifier, sliceStatement, utf8Of, type Classified } from './classify.js';
import { gatewaySetting, type GatewaySetting } from './gateway-setting.js';

export { loadParser };

export type RouteTarget = 'primary' | 'replica' | 'any';
export type Txn = 'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'rollback_to' | 'set_transaction' | 'prepared_xact';

/** Where a text goes and what it does to a transaction. Shared and frozen: never mutate one. */
export interface Decision {
  /** 'primary': must run on the primary. 'replica': a read, safe on a hot standby with no side effect that must happen on the primary. 'any': neutral session/transaction housekeeping that runs wherever the client's transaction is (SET, RESET, SET LOCAL, BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE/ROLLBACK TO, PREPARE (the PREPARE itself), DEALLOCATE, DISCARD, FETCH, MOVE, CLOSE cursor, empty query). */
  target: RouteTarget;
  /** Short human reason, e.g. 'write: INSERT', 'read', 'function nextval: sequence', 'function my_fn: not known to be replica-safe', 'locking read: FOR UPDATE', 'data-modifying CTE', 'parse error', 'hint', 'ddl: CREATE TABLE', 'snapshot isolation: SERIALIZABLE', 'session: SET'. Stable: tests and metrics use them. */
  reason: string;
  /** Single-statement transaction control, when the text is exactly one such statement. */
  txn?: Txn;
  /** BEGIN / START TRANSACTION / SET TRANSACTION asking for REPEATABLE READ or SERIALIZABLE (these route 'primary'). */
  snapshot?: boolean;
  /** BEGIN / START TRANSACTION ... READ ONLY (also SET TRANSACTION READ ONLY). */
  readOnly?: boolean;
  /** Exact texts (sliced with stmt_location/stmt_len, trimmed of whitespace and comments, without ';') of the statements that shape an open transaction and must be replayed, in order, to rebuild it on another server: BEGIN/START TRANSACTION, SAVEPOINT, RELEASE, ROLLBACK TO, SET / SET LOCAL / RESET / SET TRANSACTION / SET SESSION CHARACTERISTICS / SET CONSTRAINTS, PREPARE, DEALLOCATE, and statements that call set_config when they run (SELECT, EXPLAIN ANALYZE, COPY (SELECT) TO STDOUT). Empty when none. */
  replay: readonly string[];
  /** The text holds more than one statement (an error in it may leave some of them done). */
  multi?: boolean;
  /** Set when the text does something a transaction cannot be moved across servers with exactly: 'cursor' (DECLARE ... CURSOR), 'dynamic set_config' (set_config with a non-constant name or is_local). */
  inexact?: string;
  /** Names of SQL-level prepared statements run by EXECUTE (also EXPLAIN EXECUTE, CREATE TABLE AS EXECUTE), in order, once each. The caller looks up the PREPARE text and routes it with classifyPrepared. The target of an EXECUTE itself is 'any', unless something around it needs the primary. A name PREPAREd earlier in the same text is not listed: that EXECUTE routes as the statement it runs. */
  execute?: readonly string[];
  /** A leading hint comment: target is the hint and reason 'hint'. */
  hint?: 'primary' | 'replica';
  /** One statement whose top-level query has an ORDER BY: the order of its rows is part of the answer (the mirror compares them in order). */
  ordered?: true;
  /** The gateway's own setting (SET / RESET / SHOW switchyard.route), handled by the gateway and never sent to a server. */
  gateway?: GatewaySetting;
  /** A switchyard.* statement the gateway refuses (mixed with other statements, an invalid value, an unknown name): the message for the user. */
  gatewayError?: string;
}

export interface RouterOptions {
  /** Extra function names (lower-case; optionally schema-qualified 'myschema.fn') the operator declares safe to run on a replica. They cannot make a sequence, advisory-lock, notify or set_config call safe. */
  safeFunctions?: Iterable<string>;
  /** Decision cache entries (default 10000; 0 turns the cache off). */
  cacheSize?: number;
}

export type { GatewaySetting };

const DEFAULT_CACHE_SIZE = 10_000;

/*
 * Cache keys (texts, or cacheKey()s) longer than this are not kept: such texts are rarely repeated,
 * and 10000 of them could hold a lot of memory. A long text whose constants shrink to a short key —
 * a 5000-element IN list — is kept under that key.
 */
const MAX_CACHED_CHARS = 8192;

/** classifyPrepared's entries: NUL never occurs in a text, nor at the start of a cacheKey(). */
const PREPARED_KEY = '\0P';

const HINT = /^\s*\/\*\s*switchyard\s*:\s*(primary|replica)\s*\*\//i;
const NONE: readonly string[] = Object.freeze([]);
const PARSE_ERROR: Classified = { target: 'primary', reason: 'parse error', replay: [], execute: [], literal: true };

let parserReady = false;

/** The text's statements; throws the parser's SqlError when it does not parse. */
export function parseStatements(sql: string): RawStmt[] {
  if (!parserReady) {
    try {
      parseSync('SELECT 1');
    } catch {
      throw new Error('the SQL parser was used before loadParser() resolved');
    }
    parserReady = true;
  }
  if (sql === '') return []; // the parser refuses an empty text, but PostgreSQL answers it with EmptyQueryResponse
  return parseSync(sql).stmts ?? [];
}

/**
 * One statement whose top-level query has an ORDER BY, so that the order of its rows is part of the
 * answer: SELECT, VALUES, a set operation (UNION…) or a WITH query whose main SELECT orders. An ORDER BY
 * inside a subquery or a CTE alone does not order the result; EXPLAIN, DML with RETURNING and anything
 * else are unordered, and so are several statements.
 */
export function isOrderedStatements(stmts: readonly RawStmt[]): boolean {
  if (stmts.length !== 1) return false;
  const stmt = stmts[0]!.stmt;
  if (stmt === undefined || !('SelectStmt' in stmt)) return false;
  return (stmt.SelectStmt.sortClause?.length ?? 0) > 0;
}

function leadingHint(sql: string): 'primary' | 'replica' | undefined {
  const c = sql.charCodeAt(0);
  if (c !== 0x2f && c !== 0x20 && !(c >= 0x09 && c <= 0x0d)) return undefined; // the common case: no regular expression run
  const m = HINT.exec(sql);
  return m ? (m[1]!.toLowerCase() as 'primary' | 'replica') : undefined;
}

/** The frozen decision, with a hint applied. */
function decision(c: Classified, hint: 'primary' | 'replica' | undefined, extra?: Pick<Decision, 'gateway' | 'gatewayError' | 'ordered'>): Decision {
  // Fields in the order a reader wants them in logs and JSON; absent ones left out, not undefined.
  const d: Decision = {
    target: hint ?? c.target,
    reason: hint !== undefined ? 'hint' : c.reason,
    ...(c.txn !== undefined ? { txn: c.txn } : {}),
    ...(c.snapshot ? { snapshot: true } : {}),
    ...(c.readOnly ? { readOnly: true } : {}),
    replay: c.replay.length > 0 ? Object.freeze(c.replay) : NONE,
    ...(c.multi ? { multi: true } : {}),
    ...(c.inexact !== undefined ? { inexact: c.inexact } : {}),
    ...(c.execute.length > 0 ? { execute: Object.freeze(c.execute) } : {}),
    ...(hint !== undefined ? { hint } : {}),
    ...(extra?.ordered ? { ordered: true as const } : {}),
    ...(extra?.gateway !== undefined ? { gateway: Object.freeze(extra.gateway) } : {}),
    ...(extra?.gatewayError !== undefined ? { gatewayError: extra.gatewayError } : {}),
  };
  return Object.freeze(d);
}

export class Router {
  /** Operator-declared safe functions: bare names, and qualified ones other than pg_catalog's. */
  private readonly declared = new Set<string>();
  private readonly declaredSafe = (name: string): boolean => this.declared.has(name);
  /** Decisions by exact text or by cacheKey(); least recently used first (Map order). */
  private readonly cache = new Map<string, Decision>();
  private readonly capacity: number;
  private hits = 0;
  private misses = 0;

  constructor(opts: RouterOptions = {}) {
    for (const f of opts.safeFunctions ?? []) {
      const name = f.trim().toLowerCase();
      this.declared.add(name.startsWith('pg_catalog.') ? name.slice('pg_catalog.'.length) : name);
    }
    this.capacity = Math.max(0, Math.floor(opts.cacheSize ?? DEFAULT_CACHE_SIZE));
  }

  /** Cache stats: hits, misses (texts that were parsed), entries. */
  get stats(): { hits: number; misses: number; size: number } {
    return { hits: this.hits, misses: this.misses, size: this.cache.size };
  }

  /**
   * Where a simple-protocol Query text (any number of statements) or a Parse's statement goes.
   * Synchronous; loadParser() must have resolved.
   *
   * The exact text is looked up first, then its cacheKey(). A decision that reads a constant (replay
   * texts, set_config, the gateway's setting, a hint, a parse error) is stored under the exact text
   * only; every other decision depends on the text's structure alone and is stored under the key,
   * which texts differing only in constants share.
   */
  route(sql: string): Decision {
    if (sql.length <= MAX_CACHED_CHARS) {
      const hit = this.lookup(sql);
      if (hit !== undefined) return hit;
    }
    const key = cacheKey(sql);
    if (key !== sql && key.length <= MAX_CACHED_CHARS) {
      const hit = this.lookup(key);
      if (hit !== undefined) return hit;
    }
    this.misses++;
    const { d, literal } = this.decide(sql);
    this.store(literal ? sql : key, d);
    return d;
  }

  /**
   * Where `EXECUTE name` goes, given the text of the SQL `PREPARE name [(types)] AS statement` that made
   * it: the statement inside, classified as it runs. A text that is not one PREPARE is routed as itself.
   * A leading hint on the PREPARE applies. Cached by exact text.
   */
  classifyPrepared(prepareText: string): Decision {
    const key = PREPARED_KEY + prepareText;
    const cacheable = key.length <= MAX_CACHED_CHARS;
    if (cacheable) {
      const hit = this.lookup(key);
      if (hit !== undefined) return hit;
    }
    let stmts: RawStmt[];
    try {
      stmts = parseStatements(prepareText);
    } catch (e) {
      if (!parserReady) throw e;
      stmts = [];
    }
    const only = stmts.length === 1 ? stmts[0]!.stmt : undefined;
    if (only === undefined || !('PrepareStmt' in only)) return this.route(prepareText);
    this.misses++;
    const c = new Classifier(prepareText, this.declaredSafe);
    c.addPrepared(only.PrepareStmt.query);
    const d = decision(c.result(), leadingHint(prepareText));
    if (cacheable) this.store(key, d);
    return d;
  }

  private decide(sql: string): { d: Decision; literal: boolean } {
    const hint = leadingHint(sql);
    const gw = gatewaySetting(sql);
    if (gw !== undefined) {
      const c: Classified = 'gateway' in gw
        ? { target: 'any', reason: 'gateway: switchyard.route', replay: [], execute: [], literal: true }
        : { target: 'primary', reason: 'gateway: error', replay: [], execute: [], literal: true };
      return { d: decision(c, hint, gw), literal: true };
    }
    let stmts: RawStmt[];
    try {
      stmts = parseStatements(sql);
    } catch (e) {
      if (!parserReady) throw e;
      return { d: decision(PARSE_ERROR, hint), literal: true };
    }
    const c = new Classifier(sql, this.declaredSafe);
    for (const raw of stmts) c.add(raw);
    const result = c.result();
    if (stmts.length > 1) result.multi = true;
    const ordered = isOrderedStatements(stmts) ? { ordered: true as const } : undefined;
    return { d: decision(result, hint, ordered), literal: result.literal || hint !== undefined };
  }

  private lookup(key: string): Decision | undefined {
    const d = this.cache.get(key);
    if (d === undefined) return undefined;
    this.hits++;
    this.cache.delete(key);
    this.cache.set(key, d);
    return d;
  }

  private store(key: string, d: Decision): void {
    if (this.capacity === 0 || key.length > MAX_CACHED_CHARS) return;
    this.cache.delete(key);
    this.cache.set(key, d);
    if (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value!);
  }
}

/**
 * A file's statements, for the CLI: the whole parsed, each statement's text cut out by its location;
 * when the whole does not parse, one statement per non-empty line (without a trailing ';').
 * loadParser() must have resolved.
 */
export function splitStatements(text: string): string[] {
  let stmts: RawStmt[];
  try {
    stmts = parseStatements(text);
  } catch (e) {
    if (!parserReady) throw e;
    return text
      .split(/\r\n|\r|\n/)
      .map((line) => line.trim().replace(/;+$/, '').trimEnd())
      .filter((line) => line !== '');
  }
  const bytes = utf8Of(text);
  return stmts.map((raw) => sliceStatement(text, bytes, raw)).filter((s) => s !== '');
}
