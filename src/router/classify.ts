// Where the statements of one parsed SQL text must run, read from their trees: writes, locks, unsafe functions, transaction control, statements to replay.

import type { RawStmt, VariableSetStmt } from 'libpg-query';
import { builtinSafe, unsafeReason } from './functions.js';
import { isAscii, trimStatement } from './lex.js';
import type { RouteTarget, Txn } from './router.js';

/** What one statement needs. txn, snapshot and readOnly only count for a text of that one statement. */
interface Verdict {
  target: RouteTarget;
  reason: string;
  /** Keep the statement's text for replay. */
  replay?: boolean;
  txn?: Txn;
  snapshot?: boolean;
  readOnly?: boolean;
}

/** Everything about a text's statements, before the router adds hints and freezes it. */
export interface Classified {
  target: RouteTarget;
  reason: string;
  txn?: Txn;
  snapshot?: boolean;
  readOnly?: boolean;
  replay: string[];
  inexact?: string;
  execute: string[];
  /** The decision depends on a constant's value or keeps statement texts: cache it under the exact text only. */
  literal: boolean;
  /** The text holds more than one statement. */
  multi?: boolean;
}

/** Whether the operator declared a function safe: a bare name, or a qualified one such as myschema.fn. */
export type DeclaredSafe = (name: string) => boolean;

type Json = { readonly [k: string]: unknown };
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null;

/** SHOW of these tells a driver whether the server is writable; the gateway answers for the primary. */
const SERVER_ROLE_SETTINGS: ReadonlySet<string> = new Set(['transaction_read_only', 'in_hot_standby']);

/** Parse nodes PostgreSQL 16–18 made of what PostgreSQL 15 parses as ordinary function calls. */
const PG16_SYNTAX: ReadonlySet<string> = new Set([
  'JsonFuncExpr',
  'JsonTable',
  'JsonObjectConstructor',
  'JsonArrayConstructor',
  'JsonArrayQueryConstructor',
  'JsonParseExpr',
  'JsonScalarExpr',
  'JsonSerializeExpr',
  'JsonObjectAgg',
  'JsonArrayAgg',
  'MergeSupportFunc',
]);

const RANK: Readonly<Record<RouteTarget, number>> = { any: 0, replica: 1, primary: 2 };
const CURSOR_OPT_HOLD = 0x0020;

const primary = (reason: string): Verdict => ({ target: 'primary', reason });
const any = (reason: string, replay = false): Verdict => ({ target: 'any', reason, replay });

/** The parts of a qualified name (a list of String nodes); undefined when one is not a plain string. */
function nameParts(names: unknown): string[] | undefined {
  if (!Array.isArray(names) || names.length === 0) return undefined;
  const parts: string[] = [];
  for (const n of names) {
    if (!isObj(n) || !isObj(n.String) || typeof n.String.sval !== 'string') return undefined;
    parts.push(n.String.sval);
  }
  return parts;
}

/** A constant, also seen through a cast to one of the given types (as set_config receives it). */
function constant(n: unknown, casts: ReadonlySet<string>): Json | undefined {
  if (!isObj(n)) return undefined;
  if (isObj(n.A_Const)) return n.A_Const;
  if (isObj(n.TypeCast) && isObj(n.TypeCast.typeName)) {
    const t = nameParts(n.TypeCast.typeName.names);
    if (t !== undefined && casts.has(t[t.length - 1]!)) return constant(n.TypeCast.arg, casts);
  }
  return undefined;
}
const TEXT_TYPES: ReadonlySet<string> = new Set(['text', 'varchar', 'name', 'bpchar']);
const BOOL_TYPES: ReadonlySet<string> = new Set(['bool', 'boolean']);

/** A string constant's value. */
function stringValue(k: Json | undefined): string | undefined {
  return k !== undefined && isObj(k.sval) ? String(k.sval.sval ?? '') : undefined;
}

/** A boolean spelt as PostgreSQL's parse_bool reads it: prefixes of true/false/yes/no, on/off, 1/0. */
function parseBool(text: string): boolean | undefined {
  const s = text.trim().toLowerCase();
  if (s === '') return undefined;
  if ('true'.startsWith(s) || 'yes'.startsWith(s) || s === 'on' || s === '1') return true;
  if ('false'.startsWith(s) || 'no'.startsWith(s) || (s.length >= 2 && 'off'.startsWith(s)) || s === '0') return false;
  return undefined;
}

/** A boolean constant's value; NULL counts as false (set_config reads a NULL is_local so). */
function boolValue(k: Json | undefined): boolean | undefined {
  if (k === undefined) return undefined;
  if (k.isnull === true) return false;
  if (isObj(k.boolval)) return k.boolval.boolval === true; // false fields are left out: {} is false
  if (isObj(k.ival)) return (k.ival.ival ?? 0) !== 0;
  if (isObj(k.sval)) return parseBool(String(k.sval.sval ?? ''));
  return undefined;
}

/** An option's boolean value (EXPLAIN (ANALYZE [value])): no value means true. */
function optionOn(def: Json): boolean {
  const arg = def.arg;
  if (arg === undefined) return true;
  if (isObj(arg) && isObj(arg.String)) return parseBool(String(arg.String.sval ?? '')) ?? true;
  if (isObj(arg) && isObj(arg.A_Const)) return boolValue(arg.A_Const) ?? true;
  return true;
}

/** The DefElem bodies of an option list. */
function defElems(list: unknown): Json[] {
  if (!Array.isArray(list)) return [];
  return list.flatMap((o) => (isObj(o) && isObj(o.DefElem) ? [o.DefElem] : []));
}

/** Transaction options of BEGIN / START TRANSACTION / SET TRANSACTION. */
function transactionVerdict(options: unknown, what: string, txn: Txn): Verdict {
  let isolation: string | undefined;
  let readOnly = false;
  for (const d of defElems(options)) {
    const k = isObj(d.arg) && isObj(d.arg.A_Const) ? d.arg.A_Const : undefined;
    if (d.defname === 'transaction_isolation') isolation = stringValue(k);
    else if (d.defname === 'transaction_read_only') readOnly = boolValue(k) === true;
  }
  return isolationVerdict(isolation, { target: 'any', reason: `transaction: ${what}`, replay: true, txn, ...(readOnly ? { readOnly } : {}) });
}

/** REPEATABLE READ and SERIALIZABLE take a snapshot that must be the primary's: a standby has no serializable transactions, and a snapshot cannot move. */
function isolationVerdict(isolation: string | undefined, v: Verdict): Verdict {
  const iso = isolation?.toLowerCase();
  if (iso !== 'repeatable read' && iso !== 'serializable') return v;
  return { ...v, target: 'primary', reason: `snapshot isolation: ${iso.toUpperCase()}`, snapshot: true };
}

const LOCK_STRENGTH: Readonly<Record<string, string>> = {
  LCS_FORUPDATE: 'FOR UPDATE',
  LCS_FORNOKEYUPDATE: 'FOR NO KEY UPDATE',
  LCS_FORSHARE: 'FOR SHARE',
  LCS_FORKEYSHARE: 'FOR KEY SHARE',
};

const OBJECT_WORDS: Readonly<Record<string, string>> = {
  MATVIEW: 'MATERIALIZED VIEW',
  FDW: 'FOREIGN DATA WRAPPER',
  FOREIGN_SERVER: 'SERVER',
  OPCLASS: 'OPERATOR CLASS',
  OPFAMILY: 'OPERATOR FAMILY',
  TSCONFIGURATION: 'TEXT SEARCH CONFIGURATION',
  TSDICTIONARY: 'TEXT SEARCH DICTIONARY',
  TSPARSER: 'TEXT SEARCH PARSER',
  TSTEMPLATE: 'TEXT SEARCH TEMPLATE',
  STATISTIC_EXT: 'STATISTICS',
  TABCONSTRAINT: 'CONSTRAINT',
  DOMCONSTRAINT: 'CONSTRAINT',
  LARGEOBJECT: 'LARGE OBJECT',
};

/** Command tags for statement nodes whose name does not spell them. */
const TAGS: Readonly<Record<string, string>> = {
  CreateStmt: 'CREATE TABLE',
  ViewStmt: 'CREATE VIEW',
  IndexStmt: 'CREATE INDEX',
  RuleStmt: 'CREATE RULE',
  CreateTrigStmt: 'CREATE TRIGGER',
  CreateSeqStmt: 'CREATE SEQUENCE',
  AlterSeqStmt: 'ALTER SEQUENCE',
  CreatedbStmt: 'CREATE DATABASE',
  DropdbStmt: 'DROP DATABASE',
  CreatePLangStmt: 'CREATE LANGUAGE',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER',
  AlterFdwStmt: 'ALTER FOREIGN DATA WRAPPER',
  CreateForeignServerStmt: 'CREATE SERVER',
  AlterForeignServerStmt: 'ALTER SERVER',
  CompositeTypeStmt: 'CREATE TYPE',
  CreateEnumStmt: 'CREATE TYPE',
  CreateRangeStmt: 'CREATE TYPE',
  AlterEnumStmt: 'ALTER TYPE',
  CreateStatsStmt: 'CREATE STATISTICS',
  AlterStatsStmt: 'ALTER STATISTICS',
  CreateAmStmt: 'CREATE ACCESS METHOD',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER',
  AlterEventTrigStmt: 'ALTER EVENT TRIGGER',
  CreateOpClassStmt: 'CREATE OPERATOR CLASS',
  CreateOpFamilyStmt: 'CREATE OPERATOR FAMILY',
  AlterOpFamilyStmt: 'ALTER OPERATOR FAMILY',
  AlterTSConfigurationStmt: 'ALTER TEXT SEARCH CONFIGURATION',
  AlterTSDictionaryStmt: 'ALTER TEXT SEARCH DICTIONARY',
  CommentStmt: 'COMMENT',
  SecLabelStmt: 'SECURITY LABEL',
  AlterSystemStmt: 'ALTER SYSTEM',
  ReplicaIdentityStmt: 'ALTER TABLE',
  AlterTableMoveAllStmt: 'ALTER TABLE',
  AlterTableSpaceOptionsStmt: 'ALTER TABLESPACE',
  CreateTableSpaceStmt: 'CREATE TABLESPACE',
  DropTableSpaceStmt: 'DROP TABLESPACE',
  AlterDatabaseRefreshCollStmt: 'ALTER DATABASE',
  AlterDatabaseSetStmt: 'ALTER DATABASE',
  AlterRoleSetStmt: 'ALTER ROLE',
  AlterObjectDependsStmt: 'ALTER EXTENSION',
  AlterExtensionContentsStmt: 'ALTER EXTENSION',
};

/** OBJECT_MATVIEW → MATERIALIZED VIEW. */
function objectWords(objtype: unknown): string | undefined {
  if (typeof objtype !== 'string' || !objtype.startsWith('OBJECT_')) return undefined;
  const o = objtype.slice(7);
  return OBJECT_WORDS[o] ?? o.replaceAll('_', ' ');
}

/** The command tag of a DDL or utility statement, for reasons: 'CREATE TABLE', 'DROP INDEX', 'ALTER MATERIALIZED VIEW', ... */
function commandTag(kind: string, s: Json): string {
  if (kind === 'CreateFunctionStmt') return s.is_procedure === true ? 'CREATE PROCEDURE' : 'CREATE FUNCTION';
  const fixed = TAGS[kind];
  if (fixed !== undefined) return fixed;
  const words = kind.replace(/Stmt$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase();
  const verb = /^(CREATE|ALTER|DROP)\b/.exec(words)?.[1] ?? (kind === 'RenameStmt' ? 'ALTER' : undefined);
  const object = objectWords(s.removeType ?? s.renameType ?? s.objtype ?? s.objectType ?? s.kind);
  if (verb !== undefined && object !== undefined && (words === verb || kind === 'RenameStmt' || /^(ALTER|DROP) (TABLE|FUNCTION|OWNER|OBJECT SCHEMA)$/.test(words))) {
    return `${verb} ${object}`;
  }
  return kind === 'DefineStmt' && object !== undefined ? `CREATE ${object}` : words;
}

/** The UTF-8 bytes of a text that has non-ASCII characters (statement locations count bytes); undefined when bytes are characters. */
export function utf8Of(sql: string): Buffer | undefined {
  return isAscii(sql) ? undefined : Buffer.from(sql, 'utf8');
}

/** One statement's text within sql (bytes: utf8Of(sql)): its location range, trimmed of whitespace, comments and ';'. No length means to the end. */
export function sliceStatement(sql: string, bytes: Buffer | undefined, raw: RawStmt): string {
  const from = raw.stmt_location ?? 0;
  const to = raw.stmt_len ? from + raw.stmt_len : undefined;
  return trimStatement(bytes === undefined ? sql.slice(from, to) : bytes.subarray(from, to).toString('utf8'));
}

/** Classifies the statements of one text, in order; read the result with result(). */
export class Classifier {
  private target: RouteTarget = 'any';
  private reason = 'empty query';
  private only: Verdict | undefined;
  private count = 0;
  private readonly replay: string[] = [];
  private readonly execute: string[] = [];
  private inexact: string | undefined;
  private literal = false;
  /** Statements this text PREPAREs, by name: an EXECUTE of one later in the text routes by it. */
  private readonly preparedHere = new Map<string, Verdict>();
  /** set_config was called in the statement being classified. */
  private setConfig = false;
  /** The text's UTF-8 bytes, made on first need; null when it is ASCII. */
  private bytes: Buffer | null | undefined;

  constructor(
    private readonly sql: string,
    private readonly declaredSafe: DeclaredSafe,
  ) {}

  add(raw: RawStmt): void {
    this.count++;
    this.setConfig = false;
    const v = this.statement(raw.stmt);
    if (v.replay) {
      this.replay.push(this.text(raw));
      this.literal = true;
    }
    if (this.count === 1 || RANK[v.target] > RANK[this.target]) {
      this.target = v.target;
      this.reason = v.reason;
    }
    this.only = this.count === 1 ? v : undefined;
  }

  /** Classifies the statement a PREPARE holds, as EXECUTE runs it. */
  addPrepared(query: unknown): void {
    this.count++;
    this.setConfig = false;
    const v = this.statement(query);
    this.target = v.target;
    this.reason = v.reason;
    // Its set_config runs at each EXECUTE, which the EXECUTE's own decision cannot see.
    if (this.setConfig) this.inexact ??= 'set_config in a prepared statement';
  }

  result(): Classified {
    const c: Classified = { target: this.target, reason: this.reason, replay: this.replay, execute: this.execute, literal: this.literal };
    const v = this.only;
    if (v?.txn !== undefined) c.txn = v.txn;
    if (v?.snapshot) c.snapshot = true;
    if (v?.readOnly) c.readOnly = true;
    if (this.inexact !== undefined) c.inexact = this.inexact;
    return c;
  }

  private text(raw: RawStmt): string {
    if (this.bytes === undefined) this.bytes = utf8Of(this.sql) ?? null;
    return sliceStatement(this.sql, this.bytes ?? undefined, raw);
  }

  private statement(node: unknown): Verdict {
    if (!isObj(node)) return primary('unknown statement');
    const kind = Object.keys(node)[0]!;
    const s = node[kind];
    if (!isObj(s)) return primary('unknown statement');
    switch (kind) {
      case 'SelectStmt':
        if (isObj(s.intoClause)) return primary('select into');
        return this.read(s);
      case 'InsertStmt':
        return primary('write: INSERT');
      case 'UpdateStmt':
        return primary('write: UPDATE');
      case 'DeleteStmt':
        return primary('write: DELETE');
      case 'MergeStmt':
        return primary('write: MERGE');
      case 'TruncateStmt':
        return primary('write: TRUNCATE');
      case 'CopyStmt':
        if (s.is_from === true) return primary('write: COPY FROM');
        if (s.is_program === true) return primary('copy: TO PROGRAM');
        if (typeof s.filename === 'string') return primary('copy: TO server file');
        if (s.query !== undefined) return this.statement(s.query); // COPY (query) TO STDOUT runs the query
        return { target: 'replica', reason: 'read' };
      case 'ExplainStmt': {
        const analyze = defElems(s.options).some((d) => d.defname === 'analyze' && optionOn(d));
        const inner = this.statement(s.query);
        // Without ANALYZE nothing runs, but a write explained still goes to the primary: when in doubt, primary.
        return { target: inner.target, reason: inner.reason, replay: analyze && inner.replay };
      }
      case 'DeclareCursorStmt': {
        this.inexact ??= 'cursor';
        if ((Number(s.options ?? 0) & CURSOR_OPT_HOLD) !== 0) return primary('cursor: WITH HOLD');
        const inner = this.statement(s.query);
        return { target: inner.target, reason: inner.reason };
      }
      case 'FetchStmt':
        return any(s.ismove === true ? 'cursor: MOVE' : 'cursor: FETCH');
      case 'ClosePortalStmt':
        return any('cursor: CLOSE');
      case 'TransactionStmt':
        return this.transaction(s);
      case 'VariableSetStmt':
        return this.variableSet(s as VariableSetStmt);
      case 'VariableShowStmt':
        // Whether the server is writable: the gateway stands for the primary (drivers check this).
        if (SERVER_ROLE_SETTINGS.has(String(s.name ?? '').toLowerCase())) return primary('read: SHOW of the server role');
        return { target: 'replica', reason: 'read: SHOW' };
      case 'ConstraintsSetStmt':
        return any('transaction: SET CONSTRAINTS', true);
      case 'PrepareStmt':
        if (typeof s.name === 'string') this.preparedHere.set(s.name, this.statement(s.query));
        return any('session: PREPARE', true);
      case 'DeallocateStmt':
        if (typeof s.name === 'string') this.preparedHere.delete(s.name);
        else this.preparedHere.clear();
        return any('session: DEALLOCATE', true);
      case 'DiscardStmt':
        return any('session: DISCARD');
      case 'ExecuteStmt': {
        const name = typeof s.name === 'string' ? s.name : '';
        // A statement PREPAREd earlier in this same text routes here; the caller could not look it up yet.
        const here = this.preparedHere.get(name);
        if (here === undefined && !this.execute.includes(name)) this.execute.push(name);
        const why = this.scan(s.params);
        if (why !== undefined) return primary(why);
        if (here !== undefined) return { target: here.target, reason: here.reason, replay: this.setConfig };
        return { target: 'any', reason: 'execute', replay: this.setConfig };
      }
      case 'ListenStmt':
        return primary('notify: LISTEN');
      case 'UnlistenStmt':
        return primary('notify: UNLISTEN');
      case 'NotifyStmt':
        return primary('notify: NOTIFY');
      case 'CallStmt':
        return primary('call: CALL');
      case 'DoStmt':
        return primary('call: DO');
      case 'LockStmt':
        return primary('lock: LOCK');
      case 'VacuumStmt':
        return primary(s.is_vacuumcmd === true ? 'maintenance: VACUUM' : 'maintenance: ANALYZE');
      case 'ClusterStmt':
        return primary('maintenance: CLUSTER');
      case 'ReindexStmt':
        return primary('maintenance: REINDEX');
      case 'CheckPointStmt':
        return primary('maintenance: CHECKPOINT');
      case 'RefreshMatViewStmt':
        return primary('maintenance: REFRESH MATERIALIZED VIEW');
      case 'LoadStmt':
        return primary('maintenance: LOAD');
      case 'GrantStmt':
      case 'GrantRoleStmt':
        return primary(s.is_grant === true ? 'privileges: GRANT' : 'privileges: REVOKE');
      case 'AlterDefaultPrivilegesStmt':
        return primary('privileges: ALTER DEFAULT PRIVILEGES');
      case 'CreateTableAsStmt':
        this.statement(s.query); // for EXECUTE names: CREATE TABLE t AS EXECUTE p
        return primary(s.objtype === 'OBJECT_MATVIEW' ? 'ddl: CREATE MATERIALIZED VIEW' : 'ddl: CREATE TABLE AS');
      default:
        return primary(`ddl: ${commandTag(kind, s)}`);
    }
  }

  private transaction(s: Json): Verdict {
    switch (s.kind) {
      case 'TRANS_STMT_BEGIN':
        return transactionVerdict(s.options, 'BEGIN', 'begin');
      case 'TRANS_STMT_START':
        return transactionVerdict(s.options, 'START TRANSACTION', 'begin');
      case 'TRANS_STMT_COMMIT':
        return { ...any('transaction: COMMIT'), txn: 'commit' };
      case 'TRANS_STMT_ROLLBACK':
        return { ...any('transaction: ROLLBACK'), txn: 'rollback' };
      case 'TRANS_STMT_SAVEPOINT':
        return { ...any('transaction: SAVEPOINT', true), txn: 'savepoint' };
      case 'TRANS_STMT_RELEASE':
        return { ...any('transaction: RELEASE', true), txn: 'release' };
      case 'TRANS_STMT_ROLLBACK_TO':
        return { ...any('transaction: ROLLBACK TO', true), txn: 'rollback_to' };
      case 'TRANS_STMT_PREPARE':
        return { ...primary('two-phase commit: PREPARE TRANSACTION'), txn: 'prepared_xact' };
      case 'TRANS_STMT_COMMIT_PREPARED':
        return { ...primary('two-phase commit: COMMIT PREPARED'), txn: 'prepared_xact' };
      case 'TRANS_STMT_ROLLBACK_PREPARED':
        return { ...primary('two-phase commit: ROLLBACK PREPARED'), txn: 'prepared_xact' };
      default:
        return primary('transaction: unknown');
    }
  }

  private variableSet(v: VariableSetStmt): Verdict {
    const name = (v.name ?? '').toLowerCase();
    switch (v.kind) {
      case 'VAR_SET_MULTI':
        if (name === 'transaction') return transactionVerdict(v.args, 'SET TRANSACTION', 'set_transaction');
        // Importing a snapshot ties the transaction to the server that exported it.
        if (name === 'transaction snapshot') return { ...primary('snapshot: SET TRANSACTION SNAPSHOT'), txn: 'set_transaction', replay: true };
        if (name === 'session characteristics') return any('session: SET SESSION CHARACTERISTICS', true);
        return any('session: SET', true);
      case 'VAR_RESET':
      case 'VAR_RESET_ALL':
        return any('session: RESET', true);
      default:
        break;
    }
    const local = v.is_local === true;
    if (!local && v.kind !== 'VAR_SET_DEFAULT' && (name === 'role' || name === 'session_authorization')) {
      const value = v.args?.length === 1 ? stringValue(constant(v.args[0], TEXT_TYPES)) : undefined;
      // SET ROLE NONE is RESET ROLE: it ends the pin rather than making one.
      if (!(name === 'role' && value === 'none')) {
        return { ...primary(name === 'role' ? 'session: SET ROLE' : 'session: SET SESSION AUTHORIZATION'), replay: true };
      }
    }
    // The router reads literals as PostgreSQL does with standard_conforming_strings on: a session that
    // turns it off is read differently by the server, so it goes to the primary from here on.
    if (name === 'standard_conforming_strings') return { ...primary('session: SET standard_conforming_strings'), replay: true };
    const set = any(local ? 'session: SET LOCAL' : 'session: SET', true);
    if (name === 'transaction_isolation' && v.kind === 'VAR_SET_VALUE') {
      // SET transaction_isolation = 'serializable' is SET TRANSACTION ISOLATION LEVEL SERIALIZABLE.
      const iso = v.args?.length === 1 ? stringValue(constant(v.args[0], TEXT_TYPES)) : undefined;
      return isolationVerdict(iso, { ...set, txn: 'set_transaction' });
    }
    return set;
  }

  /** A query that only reads unless something in its tree says otherwise. */
  private read(s: Json): Verdict {
    const why = this.scan(s);
    if (why !== undefined) return { target: 'primary', reason: why, replay: this.setConfig };
    return { target: 'replica', reason: 'read', replay: this.setConfig };
  }

  /**
   * Walks a tree (iteratively: expressions can nest deeper than the call stack) for what needs the
   * primary: a locking clause, a data-modifying statement (in a CTE), a function not known to be safe.
   * Returns the first reason found, in the order of the text, after walking everything (every
   * set_config call must be seen).
   */
  private scan(root: unknown): string | undefined {
    let found: string | undefined;
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const node = stack.pop();
      if (Array.isArray(node)) {
        for (let k = node.length - 1; k >= 0; k--) if (isObj(node[k])) stack.push(node[k]);
        continue;
      }
      if (!isObj(node)) continue;
      const keys = Object.keys(node);
      for (const key of keys) {
        const v = node[key];
        if (!isObj(v)) continue;
        switch (key) {
          case 'FuncCall': {
            const why = this.funcCall(v); // called even when a reason is known: set_config must be seen
            found ??= why;
            break;
          }
          case 'lockingClause':
            if (Array.isArray(v) && v.length > 0) {
              const first: unknown = v[0];
              const strength = isObj(first) && isObj(first.LockingClause) ? LOCK_STRENGTH[String(first.LockingClause.strength)] : undefined;
              found ??= `locking read: ${strength ?? 'FOR UPDATE'}`;
            }
            break;
          case 'InsertStmt':
          case 'UpdateStmt':
          case 'DeleteStmt':
          case 'MergeStmt':
            found ??= 'data-modifying CTE';
            break;
          case 'intoClause':
            found ??= 'select into';
            break;
          case 'A_Expr': {
            // OPERATOR(schema.op): a schema-qualified operator outside pg_catalog is the user's, backed by a function.
            const op = nameParts(v.name);
            if (op !== undefined && op.length > 1 && op[0] !== 'pg_catalog') found ??= `operator ${op.join('.')}: not known to be replica-safe`;
            break;
          }
          default:
            // The parser is PostgreSQL 18's: on a PostgreSQL 15 server these are calls of functions
            // found on the search_path (json_query(), json_table(), ...), maybe the user's.
            if (PG16_SYNTAX.has(key)) found ??= `function ${key}: not known to be replica-safe (SQL/JSON syntax newer than PostgreSQL 15)`;
        }
      }
      // Children go on the stack last first, so the walk runs in the order of the text.
      for (let k = keys.length - 1; k >= 0; k--) {
        const v = node[keys[k]!];
        if (isObj(v)) stack.push(v);
      }
    }
    return found;
  }

  /** Why a function call needs the primary; undefined when it is safe on a replica. */
  private funcCall(f: Json): string | undefined {
    const parts = nameParts(f.funcname);
    if (parts === undefined) return 'function: unknown name';
    const bare = parts.length === 1 ? parts[0]! : parts.length === 2 && parts[0] === 'pg_catalog' ? parts[1]! : undefined;
    if (bare === undefined) {
      const qualified = parts.join('.');
      return this.declaredSafe(qualified) ? undefined : `function ${qualified}: not known to be replica-safe`;
    }
    if (bare === 'set_config') return this.setConfigCall(f.args);
    const unsafe = unsafeReason(bare);
    if (unsafe !== undefined) return `function ${bare}: ${unsafe}`;
    if (builtinSafe(bare) || this.declaredSafe(bare)) return undefined;
    return `function ${bare}: not known to be replica-safe`;
  }

  /**
   * set_config(name, value, is_local): with is_local true it only lasts as long as the transaction and is
   * safe anywhere (the statement is replayed); false sets the session, which the primary keeps; a name
   * or is_local that is not a constant cannot be followed.
   */
  private setConfigCall(args: unknown): string | undefined {
    this.setConfig = true;
    this.literal = true;
    const a = Array.isArray(args) && args.length === 3 ? args : undefined;
    const name = a && stringValue(constant(a[0], TEXT_TYPES));
    const local = a && boolValue(constant(a[2], BOOL_TYPES));
    if (name === undefined || local === undefined) {
      this.inexact ??= 'dynamic set_config';
      return 'function set_config: dynamic';
    }
    if (!local) return 'function set_config: session setting';
    if (name.toLowerCase() === 'standard_conforming_strings') return 'function set_config: standard_conforming_strings';
    if (name.toLowerCase() === 'transaction_isolation') {
      const iso = stringValue(constant(a[1], TEXT_TYPES))?.toLowerCase();
      // Not a constant: it may be a snapshot isolation level, which must start on the primary.
      if (iso === undefined || iso === 'repeatable read' || iso === 'serializable') return 'function set_config: snapshot isolation';
    }
    return undefined;
  }
}
