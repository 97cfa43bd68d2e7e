// Which session-level effects a SQL string has (SET, PREPARE, LISTEN, temp tables, advisory locks, ...), for transaction pooling.

import { loadModule, parseSync, scanSync } from 'libpg-query';
import type { A_Const, Node, RawStmt, ScanToken, VariableSetStmt } from 'libpg-query';

export type PinReason = 'advisory_lock' | 'temp_table' | 'cursor_with_hold' | 'set_role' | 'session_authorization' | 'dynamic_set_config';

/**
 * What a SQL string does to its session. Results are shared and frozen: never mutate them.
 *
 * For a string of several statements the fields give the *net* effect, in the order the statements run:
 * a name is in at most one of `set`/`reset` (and of `listen`/`unlisten`, of `prepare`/`deallocate`),
 * whichever its last statement did, and an `...All` flag drops the names mentioned before it. So a
 * consumer applies the `...All` flags first, then the name lists in any order. `pins` and `mayUnpin`
 * are not netted: `CREATE TEMP TABLE t; DROP TABLE t` gives a pin and mayUnpin.
 *
 * Only the text is seen: a statement the server then rejects still reports its effects, and what a
 * function body or DO block does when it runs is invisible.
 */
export interface SessionEffects {
  /** GUC names (lowercased) given a session-level value: SET / SET SESSION x, SET x FROM CURRENT, set_config('lit', v, false) with literal name and literal false (or a non-true literal), SET TIME ZONE (timezone), SET NAMES (client_encoding), SET SCHEMA (search_path), SET XML OPTION (xmloption), SET SESSION CHARACTERISTICS AS TRANSACTION ... (default_transaction_isolation / default_transaction_read_only / default_transaction_deferrable as appropriate). Never 'role' or 'session_authorization' (those are pins). */
  set: string[];
  /** GUC names RESET, or SET x TO DEFAULT (lowercased); also set_config('lit', NULL, false). Never 'role' or 'session_authorization' (those are mayUnpin). */
  reset: string[];
  /** RESET ALL, or DISCARD ALL. */
  resetAll: boolean;
  /** DISCARD ALL (also sets resetAll, deallocateAll, unlistenAll). */
  discardAll: boolean;
  /** SQL PREPARE: the name and the exact text of that one statement (from stmt_location/stmt_len of the raw statement within the input, trimmed), so it can be re-run elsewhere. */
  prepare: { name: string; text: string }[];
  /** SQL DEALLOCATE name / DEALLOCATE PREPARE name. */
  deallocate: string[];
  /** DEALLOCATE ALL (or DISCARD ALL). */
  deallocateAll: boolean;
  /** Names of SQL-prepared statements used: EXECUTE name, also inside EXPLAIN [ANALYZE] EXECUTE and CREATE TABLE AS EXECUTE. Not a name the same string PREPAREd earlier: only names that must exist before it runs. */
  execute: string[];
  /** LISTEN channel names; UNLISTEN names; UNLISTEN * (or DISCARD ALL). */
  listen: string[];
  unlisten: string[];
  unlistenAll: boolean;
  /** Features that tie the client to its server connection: session advisory locks (pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock, pg_try_advisory_lock_shared — NOT the _xact_ variants) found anywhere in the tree (walk the whole JSON tree for FuncCall nodes, including inside CTEs, subqueries, function args); temporary tables/views/sequences (CREATE TEMP|TEMPORARY TABLE/VIEW/SEQUENCE, CREATE TABLE pg_temp.x, CREATE TEMP TABLE AS, SELECT ... INTO TEMP); DECLARE ... CURSOR WITH HOLD (DeclareCursorStmt options has bit 0x0020); SET ROLE x (not SET LOCAL ROLE, not SET ROLE NONE) → 'set_role'; SET SESSION AUTHORIZATION x (not DEFAULT) → 'session_authorization'; set_config with a non-literal name or a non-literal is_local argument → 'dynamic_set_config'. Unique, in order of appearance. */
  pins: PinReason[];
  /** Statements that may end a pin: pg_advisory_unlock, pg_advisory_unlock_shared, pg_advisory_unlock_all, DROP (any), DISCARD (any kind), CLOSE (cursor, incl. CLOSE ALL), RESET ROLE, SET ROLE NONE, RESET SESSION AUTHORIZATION, SET SESSION AUTHORIZATION DEFAULT, RESET ALL. */
  mayUnpin: boolean;
  /** Set when the text does not parse; the message from the parser. All other fields are then empty/false. */
  parseError?: string;
  /** True when nothing above applies (and no parse error): the statement(s) have no session effect. */
  plain: boolean;
}

function frozen(fx: SessionEffects): SessionEffects {
  for (const v of Object.values(fx)) if (Array.isArray(v)) Object.freeze(v);
  for (const p of fx.prepare) Object.freeze(p);
  return Object.freeze(fx);
}

function empty(): SessionEffects {
  return {
    set: [], reset: [], resetAll: false, discardAll: false, prepare: [], deallocate: [], deallocateAll: false,
    execute: [], listen: [], unlisten: [], unlistenAll: false, pins: [], mayUnpin: false, plain: false,
  };
}

/** The one result for every statement without session effect: returned as is, nothing allocated. */
const PLAIN: SessionEffects = frozen({ ...empty(), plain: true });

// ---------------------------------------------------------------------------------------- prefilter

/*
 * Parsing costs 10–70 µs; most queries have no session effect and must not pay it. The prefilter looks
 * at the raw text for a word that every effect needs, and may only err towards "yes" (a false "yes"
 * costs a parse; a false "no" would lose an effect). Case-insensitive. A word is a maximal run of
 * [A-Za-z0-9_]: PostgreSQL's identifiers also take $ and non-ASCII letters, so this finds every keyword
 * PostgreSQL sees, and some more.
 *
 * 1. Words that only ever begin a statement: SET and RESET (every VariableSetStmt, so also SET ROLE,
 *    SET SESSION AUTHORIZATION, RESET ALL), PREPARE, DEALLOCATE, DISCARD, LISTEN, UNLISTEN, CLOSE, DROP,
 *    DECLARE (a cursor WITH HOLD). They count only at the start of a statement: after nothing but
 *    whitespace since the start of the text or a `;`. Comments may stand between, so a `/` before the
 *    word (the end of a block comment) counts too, and so does a line break in a text holding `--`
 *    anywhere (a line comment may end there). This is what keeps `UPDATE t SET a = 1`, `ALTER ... DROP`
 *    and `DO UPDATE SET` from costing a parse; OFFSET, RESETS, SETTINGS are other words.
 * 2. Words that count anywhere: EXECUTE (also after EXPLAIN and CREATE TABLE ... AS), and, even inside a
 *    word, "advisory" (in every pg_*advisory* function name), set_config, and `U&` — a U&"..." identifier
 *    can spell a function name with escapes (U&"set_confi\0067") that no plain search would find.
 * 3. TEMP, TEMPORARY or pg_temp, but only in a text that also has CREATE or INTO: temporary objects are
 *    made by CREATE ... or SELECT ... INTO, so a column named temp alone costs nothing.
 *
 * The regular expression finds only the bare stems, and code looks around each hit (RE-, UN-, -ORARY,
 * pg_, _config, word boundaries): a plain alternation lets V8 skip quickly over text that cannot match,
 * about twice as fast as one with \b and optional prefixes. Hits are rare outside UPDATE ... SET.
 *
 * Effects hidden where no parse would find them either (function bodies, DO blocks, server-side
 * defaults) are out of reach of this module, with or without the prefilter.
 */
const STEMS = /set|prepare|deallocate|discard|listen|close|drop|declare|execute|advisory|u&|temp/gi;
const CREATE_OR_INTO = /\b(?:create|into)\b/i;

/** [A-Za-z0-9_]; false for NaN (out of range). */
function isWordChar(c: number): boolean {
  const l = c | 0x20;
  return (l >= 0x61 && l <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f;
}

/** Whether `sql` holds `lower` (lowercase ASCII) at `at`, ignoring case. */
function textAt(sql: string, at: number, lower: string): boolean {
  if (at < 0 || at + lower.length > sql.length) return false;
  for (let k = 0; k < lower.length; k++) {
    const c = sql.charCodeAt(at + k);
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== lower.charCodeAt(k)) return false;
  }
  return true;
}

/** Whether [from, to) is a whole word. */
const wholeWord = (sql: string, from: number, to: number): boolean =>
  !isWordChar(sql.charCodeAt(from - 1)) && !isWordChar(sql.charCodeAt(to));

/** Whether a statement word at `at` begins a statement (see rule 1 above); 'if--' when only a line comment could make it so. */
function atStatementStart(sql: string, at: number): boolean | 'if--' {
  let i = at - 1;
  let lineBreak = false;
  for (; i >= 0; i--) {
    const c = sql.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0b || c === 0x0c) continue;
    if (c === 0x0a || c === 0x0d) {
      lineBreak = true;
      continue;
    }
    break;
  }
  if (i < 0) return true;
  const c = sql.charCodeAt(i);
  if (c === 0x3b /* ; */ || c === 0x2f /* / */) return true;
  return lineBreak ? 'if--' : false;
}

/** A statement word (rule 1) spanning [from, to), optionally with a prefix such as RE- before it. */
function statementWord(sql: string, from: number, to: number, prefix?: string): boolean | 'if--' {
  if (prefix !== undefined && textAt(sql, from - prefix.length, prefix) && wholeWord(sql, from - prefix.length, to)) {
    return atStatementStart(sql, from - prefix.length);
  }
  return wholeWord(sql, from, to) && atStatementStart(sql, from);
}

/** False only when `sql` cannot have any session effect; true means "parse it to find out". */
export function mayHaveEffects(sql: string): boolean {
  STEMS.lastIndex = 0;
  let temp = false;
  let start: boolean | 'if--' = false;
  let lineComment: boolean | undefined; // looked for once, and only when needed: a text may have many hits
  for (let m = STEMS.exec(sql); m !== null; m = STEMS.exec(sql)) {
    const at = m.index;
    const end = at + m[0].length;
    STEMS.lastIndex = at + 1; // hits may overlap ("settemp"): never skip one
    switch (sql.charCodeAt(at) | 0x20) {
      case 0x73: // set, reset, set_config
        if (textAt(sql, end, '_config')) return true;
        start = statementWord(sql, at, end, 're');
        break;
      case 0x6c: // listen, unlisten
        start = statementWord(sql, at, end, 'un');
        break;
      case 0x70: // prepare
      case 0x64: // deallocate, discard, drop, declare
      case 0x63: // close
        start = statementWord(sql, at, end);
        break;
      case 0x65: // execute
        if (wholeWord(sql, at, end)) return true;
        continue;
      case 0x61: // advisory
      case 0x75: // u&
        return true;
      case 0x74: // temp, temporary, pg_temp
        if (textAt(sql, at - 3, 'pg_') || wholeWord(sql, at, end) || (textAt(sql, end, 'orary') && wholeWord(sql, at, end + 5))) {
          temp = true;
        }
        continue;
      default:
        continue;
    }
    if (start === true) return true;
    if (start === 'if--' && (lineComment ??= sql.includes('--'))) return true;
  }
  return temp && CREATE_OR_INTO.test(sql);
}

// ---------------------------------------------------------------------------------------- parser and cache

let loaded = false;
let loading: Promise<void> | undefined;

/** Loads the WASM parser. Idempotent; must have resolved before the first analyze(). */
export function loadParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

/*
 * Results for texts that passed the prefilter, by exact text; least recently used first (Map order).
 * Long texts are not kept: they are rarely repeated and 2000 of them could hold a lot of memory.
 */
const CACHE_ENTRIES = 2000;
const CACHE_MAX_TEXT = 4096;
const cache = new Map<string, SessionEffects>();

/** The session effects of one simple-protocol Query text (any number of statements). Synchronous. */
export function analyze(sql: string): SessionEffects {
  if (!loaded) throw new Error('analyze() called before loadParser() resolved');
  if (!mayHaveEffects(sql)) return PLAIN;
  const hit = cache.get(sql);
  if (hit !== undefined) {
    cache.delete(sql);
    cache.set(sql, hit);
    return hit;
  }
  const fx = analyzeParsed(sql);
  if (sql.length <= CACHE_MAX_TEXT) {
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(sql, fx);
  }
  return fx;
}

function analyzeParsed(sql: string): SessionEffects {
  let stmts: RawStmt[];
  try {
    stmts = parseSync(sql).stmts ?? [];
  } catch (e) {
    return frozen({ ...empty(), parseError: e instanceof Error ? e.message : String(e) });
  }
  const c = new Collector(sql);
  for (const raw of stmts) if (raw.stmt) c.statement(raw.stmt, raw);
  return c.result();
}

// ---------------------------------------------------------------------------------------- the tree

const SESSION_LOCKS = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared']);
const UNLOCKS = new Set(['pg_advisory_unlock', 'pg_advisory_unlock_shared', 'pg_advisory_unlock_all']);
/** SET SESSION CHARACTERISTICS AS TRANSACTION sets the defaults of these. */
const CHARACTERISTICS: ReadonlyMap<unknown, string> = new Map([
  ['transaction_isolation', 'default_transaction_isolation'],
  ['transaction_read_only', 'default_transaction_read_only'],
  ['transaction_deferrable', 'default_transaction_deferrable'],
]);
const CURSOR_OPT_HOLD = 0x0020;

type Json = { readonly [k: string]: unknown };
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null;

/** pg_temp, or a backend's own pg_temp_N named outright. */
const isTempSchema = (s: unknown): boolean => typeof s === 'string' && /^pg_temp(?:_\d+)?$/.test(s);

/** A RangeVar that names a temporary relation being created. */
function tempRel(rv: unknown): boolean {
  return isObj(rv) && (rv.relpersistence === 't' || isTempSchema(rv.schemaname));
}

/** A qualified name (list of String nodes) in a temporary schema. */
function tempName(names: unknown): boolean {
  return Array.isArray(names) && names.length > 1 && isObj(names[0]) && isObj(names[0].String) && isTempSchema(names[0].String.sval);
}

/** The last part of a qualified name (list of String nodes). */
function lastName(names: unknown): string | undefined {
  if (!Array.isArray(names) || names.length === 0) return undefined;
  const last: unknown = names[names.length - 1];
  return isObj(last) && isObj(last.String) && typeof last.String.sval === 'string' ? last.String.sval : undefined;
}

/** A constant, seen through a cast to one of `types`: what set_config receives as a literal. */
function literal(n: unknown, types: ReadonlySet<string>): A_Const | undefined {
  if (!isObj(n)) return undefined;
  if (isObj(n.A_Const)) return n.A_Const as A_Const;
  if (isObj(n.TypeCast) && isObj(n.TypeCast.typeName)) {
    const t = lastName(n.TypeCast.typeName.names);
    if (t !== undefined && types.has(t)) return literal(n.TypeCast.arg, types);
  }
  return undefined;
}
const TEXT_TYPES: ReadonlySet<string> = new Set(['text', 'varchar', 'name']);
const BOOL_TYPES: ReadonlySet<string> = new Set(['bool', 'boolean']);

/** A boolean literal as PostgreSQL's boolin reads it; undefined when it is not one. */
function boolLiteral(k: A_Const): boolean | undefined {
  if (k.boolval !== undefined) return k.boolval.boolval === true; // {} is false: false fields are left out
  if (k.ival !== undefined) return (k.ival.ival ?? 0) !== 0; // only through ::boolean (int to bool is not implicit)
  if (k.sval === undefined) return undefined;
  const s = (k.sval.sval ?? '').trim().toLowerCase();
  if (s === '') return undefined;
  if ('true'.startsWith(s) || 'yes'.startsWith(s) || s === 'on' || s === '1') return true;
  if ('false'.startsWith(s) || s === 'no' || s === 'n' || (s.length > 1 && 'off'.startsWith(s)) || s === '0') return false;
  return undefined;
}

class Collector {
  private readonly fx = empty();
  /** Statements this string PREPAREs before using them: no need for them to exist beforehand. */
  private readonly preparedHere = new Set<string>();

  constructor(private readonly sql: string) {}

  result(): SessionEffects {
    const f = this.fx;
    const any =
      f.set.length || f.reset.length || f.resetAll || f.prepare.length || f.deallocate.length || f.deallocateAll ||
      f.execute.length || f.listen.length || f.unlisten.length || f.unlistenAll || f.pins.length || f.mayUnpin;
    return any ? frozen(f) : PLAIN;
  }

  statement(stmt: Node, raw: RawStmt): void {
    const f = this.fx;
    if ('VariableSetStmt' in stmt) this.variableSet(stmt.VariableSetStmt);
    else if ('PrepareStmt' in stmt) {
      const name = stmt.PrepareStmt.name ?? '';
      remove(f.deallocate, name);
      removePrepare(f.prepare, name);
      f.prepare.push({ name, text: this.statementText(raw) });
      this.preparedHere.add(name);
    } else if ('DeallocateStmt' in stmt) {
      const d = stmt.DeallocateStmt;
      if (d.isall || d.name === undefined) {
        f.deallocateAll = true;
        f.prepare.length = f.deallocate.length = 0;
        this.preparedHere.clear();
      } else {
        removePrepare(f.prepare, d.name);
        add(f.deallocate, d.name);
        this.preparedHere.delete(d.name);
      }
    } else if ('ListenStmt' in stmt) {
      const ch = stmt.ListenStmt.conditionname ?? '';
      remove(f.unlisten, ch);
      add(f.listen, ch);
    } else if ('UnlistenStmt' in stmt) {
      const ch = stmt.UnlistenStmt.conditionname;
      if (ch === undefined) this.unlistenAll();
      else {
        remove(f.listen, ch);
        add(f.unlisten, ch);
      }
    } else if ('DiscardStmt' in stmt) {
      f.mayUnpin = true;
      if (stmt.DiscardStmt.target === 'DISCARD_ALL') {
        f.discardAll = true;
        this.resetAll();
        f.deallocateAll = true;
        f.prepare.length = f.deallocate.length = 0;
        this.preparedHere.clear();
        this.unlistenAll();
      }
    } else if ('ClosePortalStmt' in stmt) f.mayUnpin = true;
    else if ('DeclareCursorStmt' in stmt) {
      if (((stmt.DeclareCursorStmt.options ?? 0) & CURSOR_OPT_HOLD) !== 0) this.pin('cursor_with_hold');
    } else if (Object.keys(stmt)[0]!.startsWith('Drop')) f.mayUnpin = true; // DropStmt, DropRoleStmt, DropOwnedStmt, ...
    this.walk(stmt);
  }

  private pin(reason: PinReason): void {
    add(this.fx.pins, reason);
  }

  private resetAll(): void {
    this.fx.resetAll = true;
    this.fx.mayUnpin = true;
    this.fx.set.length = this.fx.reset.length = 0;
  }

  private unlistenAll(): void {
    this.fx.unlistenAll = true;
    this.fx.listen.length = this.fx.unlisten.length = 0;
  }

  private setGuc(name: string): void {
    remove(this.fx.reset, name);
    add(this.fx.set, name);
  }

  private resetGuc(name: string): void {
    remove(this.fx.set, name);
    add(this.fx.reset, name);
  }

  /** role and session_authorization pin or unpin instead of being tracked as settings. */
  private identity(name: 'role' | 'session_authorization', value: 'set' | 'none' | 'reset'): void {
    if (value === 'set') this.pin(name === 'role' ? 'set_role' : 'session_authorization');
    else this.fx.mayUnpin = true;
  }

  private variableSet(v: VariableSetStmt): void {
    if (v.is_local) return; // SET LOCAL ends with the transaction, which stays on one server connection
    const name = (v.name ?? '').toLowerCase();
    switch (v.kind) {
      case 'VAR_RESET_ALL':
        return this.resetAll();
      case 'VAR_SET_MULTI':
        // SET TRANSACTION ... and SET TRANSACTION SNAPSHOT are transaction-local.
        if (name !== 'session characteristics') return;
        for (const a of v.args ?? []) {
          const g = 'DefElem' in a ? CHARACTERISTICS.get(a.DefElem.defname) : undefined;
          if (g !== undefined) this.setGuc(g);
        }
        return;
      case 'VAR_RESET':
      case 'VAR_SET_DEFAULT':
        if (name === 'role' || name === 'session_authorization') return this.identity(name, 'reset');
        return this.resetGuc(name);
      case 'VAR_SET_VALUE':
      case 'VAR_SET_CURRENT': {
        if (name === 'role' || name === 'session_authorization') {
          // SET ROLE NONE (also 'none' quoted: check_role compares the string) is RESET ROLE.
          const k = name === 'role' && v.kind === 'VAR_SET_VALUE' && v.args?.length === 1 ? literal(v.args[0], TEXT_TYPES) : undefined;
          return this.identity(name, k?.sval?.sval === 'none' ? 'none' : 'set');
        }
        return this.setGuc(name);
      }
      default:
        return;
    }
  }

  /** set_config(name, value, is_local): a session SET when name is literal and is_local literally false. */
  private setConfig(args: readonly unknown[] | undefined): void {
    const name = args?.length === 3 ? literal(args[0], TEXT_TYPES) : undefined;
    const local = args?.length === 3 ? literal(args[2], BOOL_TYPES) : undefined;
    const isLocal = local === undefined ? undefined : boolLiteral(local);
    const guc = name?.sval?.sval;
    if (guc === undefined || isLocal === undefined) return this.pin('dynamic_set_config');
    if (isLocal) return;
    const value = literal(args![1], TEXT_TYPES);
    const lower = guc.toLowerCase();
    const toDefault = value?.isnull === true; // a NULL value resets the setting
    if (lower === 'role' || lower === 'session_authorization') {
      const none = lower === 'role' && value?.sval?.sval === 'none';
      return this.identity(lower, toDefault ? 'reset' : none ? 'none' : 'set');
    }
    if (toDefault) this.resetGuc(lower);
    else this.setGuc(lower);
  }

  /**
   * Everything found anywhere in a statement: function calls (also in CTEs, subqueries, arguments,
   * EXPLAIN), EXECUTE (also under EXPLAIN and CREATE TABLE AS), and temporary objects being created.
   */
  private walk(node: unknown): void {
    if (Array.isArray(node)) {
      for (const n of node) this.walk(n);
      return;
    }
    if (!isObj(node)) return;
    for (const key in node) {
      const v = node[key];
      if (!isObj(v)) continue;
      switch (key) {
        case 'FuncCall': {
          const fn = lastName(v.funcname);
          if (fn === 'set_config') this.setConfig(Array.isArray(v.args) ? v.args : undefined);
          else if (fn !== undefined && SESSION_LOCKS.has(fn)) this.pin('advisory_lock');
          else if (fn !== undefined && UNLOCKS.has(fn)) this.fx.mayUnpin = true;
          break;
        }
        case 'ExecuteStmt':
          if (typeof v.name === 'string' && !this.preparedHere.has(v.name)) add(this.fx.execute, v.name);
          break;
        // ON COMMIT DROP: gone when the transaction ends, which stays on one server connection anyway.
        case 'CreateStmt':
          if (tempRel(v.relation) && v.oncommit !== 'ONCOMMIT_DROP') this.pin('temp_table');
          break;
        case 'intoClause': // SELECT ... INTO
        case 'into': // CREATE TABLE ... AS
          if (tempRel(v.rel) && v.onCommit !== 'ONCOMMIT_DROP') this.pin('temp_table');
          break;
        case 'ViewStmt':
          if (tempRel(v.view)) this.pin('temp_table');
          break;
        case 'CreateSeqStmt':
          if (tempRel(v.sequence)) this.pin('temp_table');
          break;
        case 'CompositeTypeStmt':
          if (tempRel(v.typevar)) this.pin('temp_table');
          break;
        // Functions and types can be made in pg_temp too, and vanish with the session the same way.
        case 'CreateFunctionStmt':
          if (tempName(v.funcname)) this.pin('temp_table');
          break;
        case 'CreateEnumStmt':
        case 'CreateRangeStmt':
          if (tempName(v.typeName)) this.pin('temp_table');
          break;
        case 'CreateDomainStmt':
          if (tempName(v.domainname)) this.pin('temp_table');
          break;
        case 'DefineStmt':
          if (tempName(v.defnames)) this.pin('temp_table');
          break;
      }
      this.walk(v);
    }
  }

  /**
   * The text of one statement, to run it again elsewhere. Locations are UTF-8 byte offsets; a missing
   * stmt_len means "to the end". The range runs up to the `;`, so trailing comments are cut: a `--` one
   * would swallow whatever is joined after it.
   */
  private statementText(raw: RawStmt): string {
    const from = raw.stmt_location ?? 0;
    const to = raw.stmt_len ? from + raw.stmt_len : undefined;
    const text = /^[\x00-\x7f]*$/.test(this.sql)
      ? this.sql.slice(from, to)
      : Buffer.from(this.sql, 'utf8').subarray(from, to).toString('utf8');
    if (!text.includes('--') && !text.includes('/*')) return trimSpace(text);
    let code: ScanToken[];
    try {
      code = scanSync(text).tokens.filter((t) => t.tokenName !== 'SQL_COMMENT' && t.tokenName !== 'C_COMMENT');
    } catch {
      return trimSpace(text); // cannot happen for text that parsed; keep the comments rather than fail
    }
    if (code.length === 0) return trimSpace(text);
    return Buffer.from(text, 'utf8').subarray(code[0]!.start, code[code.length - 1]!.end).toString('utf8');
  }
}

/** Trims PostgreSQL's whitespace only (String.trim would also take characters PostgreSQL reads as letters). */
const trimSpace = (s: string): string => s.replace(/^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g, '');

function add<T>(list: T[], v: T): void {
  if (!list.includes(v)) list.push(v);
}

function remove(list: string[], name: string): void {
  const i = list.indexOf(name);
  if (i >= 0) list.splice(i, 1);
}

function removePrepare(list: { name: string }[], name: string): void {
  const i = list.findIndex((p) => p.name === name);
  if (i >= 0) list.splice(i, 1);
}
