// Session state that must follow a client across server connections in transaction pooling, and what each server connection holds of it.

import type { Decision } from '../router/router.js';
import type { ServerConnection } from '../backend/server-connection.js';
import type { PgError } from '../protocol/errors.js';
import type { PinReason, SessionEffects } from './analyze.js';

/**
 * Server-side names for protocol-level prepared statements. The same (query, parameter types) always
 * gets the same name, so a statement that many clients prepare exists once per server connection, and
 * two different statements never share a name (the counter only grows). Bounded: an evicted key gets a
 * new name next time, which is safe because names are never reused.
 */
export class StatementRegistry {
  private readonly byKey = new Map<string, string>();
  private next = 1;

  constructor(private readonly max = 10_000) {}

  /** A name for one statement only (never shared). */
  fresh(): string {
    return `${SHARED_PREFIX}${this.next++}`;
  }

  nameFor(sql: string, paramTypes: readonly number[]): string {
    const key = paramTypes.length ? `${paramTypes.join(',')}\0${sql}` : sql;
    let name = this.byKey.get(key);
    if (name !== undefined) return name;
    name = `${SHARED_PREFIX}${this.next++}`;
    this.byKey.set(key, name);
    if (this.byKey.size > this.max) this.byKey.delete(this.byKey.keys().next().value!);
    return name;
  }

  get size(): number {
    return this.byKey.size;
  }
}

/** A protocol-level statement as one client named it. */
export interface ClientStatement {
  /** The shared server-side name. */
  serverName: string;
  /** The Parse message that creates it under serverName (kept to prepare it on another connection). */
  parse: Buffer;
  /** What running it does to session state; undefined for the (usual) statement that does nothing to it. */
  fx?: SessionEffects;
  /** Where it runs, decided once at Parse (transaction pooling with read/write splitting). */
  route?: Decision;
  /** The settings that shape parsing (search_path, DateStyle, ...) when the client parsed it, as a key: the mirror copies it only under the same. */
  parsedUnder?: string;
}

/** What one client has set up for itself, independent of the server connection it happens to use. */
export class ClientState {
  /** Session-level settings (lowercased name → value as the server reports it), startup parameters included. */
  readonly settings = new Map<string, string>();
  /** Startup parameters: RESET and DISCARD ALL return a setting to these, as PostgreSQL does. */
  readonly startup = new Map<string, string>();
  /** Protocol-level prepared statements by the client's own name. */
  readonly statements = new Map<string, ClientStatement>();
  /** SQL-level prepared statements: name → the PREPARE statement's text. */
  readonly sqlPrepared = new Map<string, string>();
  /** LISTEN channels. */
  readonly channels = new Set<string>();
  /** Why the client is pinned to its server connection; empty when it is not. */
  pins: PinReason[] = [];
}

/** What one server connection holds: the session settings applied to it and the statements prepared on it. */
export class ServerState {
  /** Settings set at session level on this connection (name → value); anything else is at its default. */
  readonly settings = new Map<string, string>();
  /** SQL-level prepared statements on this connection: name → text. */
  readonly sqlPrepared = new Map<string, string>();
  /**
   * Server-side names of protocol-level statements prepared here, least recently used first: true once
   * the server confirmed the Parse, false while it is in flight (it may still fail).
   */
  readonly prepared = new Map<string, boolean>();
  /** Whose unnamed statement the connection holds (the client's relay), if known. */
  unnamedOwner: object | undefined;

  /** After DISCARD ALL (the pool's reset): nothing of any client is left. */
  clear(): void {
    this.settings.clear();
    this.sqlPrepared.clear();
    this.prepared.clear();
    this.unnamedOwner = undefined;
  }

  /** Mark a statement used now (moves it to the most recently used end). */
  touch(name: string): boolean {
    const v = this.prepared.get(name);
    if (v === undefined) return false;
    this.prepared.delete(name);
    this.prepared.set(name, v);
    return true;
  }
}

/**
 * Server-side statement names the gateway gives out start with this; no client may use such a name
 * itself (it would reach another client's statement), and SQL needs a quoted identifier to spell it.
 */
export const SHARED_PREFIX = 'sy:';

/** A statement name that never exists on a server: what a client's unknown name is sent as, to get PostgreSQL's 26000. */
export const MISSING_STATEMENT = `${SHARED_PREFIX}missing`;

/** A simple query that fails on the server with this SQLSTATE and message (so a transaction fails as PostgreSQL's own error would fail it). */
export function raiseSql(sqlstate: string, message: string): string {
  const lit = message.replace(/\$switchyard\$/g, '').replace(/'/g, "''");
  return `DO $switchyard$BEGIN RAISE EXCEPTION USING ERRCODE = '${sqlstate}', MESSAGE = '${lit}'; END$switchyard$`;
}

const states = new WeakMap<ServerConnection, ServerState>();

export function serverState(conn: ServerConnection): ServerState {
  let s = states.get(conn);
  if (!s) {
    s = new ServerState();
    states.set(conn, s);
  }
  return s;
}

/** Settings the gateway never copies between connections: they are pins or transaction-scoped. */
export const UNSYNCED_SETTINGS: ReadonlySet<string> = new Set([
  'role',
  'session_authorization',
  'transaction_isolation',
  'transaction_read_only',
  'transaction_deferrable',
  'is_superuser',
]);

/** Quote an identifier for SQL the gateway writes itself (names come from the parser or the client). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Statements that bring a connection's settings to a client's: RESET for names only the connection has,
 * and set_config for names whose value differs. Returns undefined when nothing differs.
 */
export function settingsDelta(
  client: ReadonlyMap<string, string>,
  server: ReadonlyMap<string, string>,
): { resets: string[]; sets: [string, string][] } | undefined {
  if (client.size === server.size) {
    let same = true;
    for (const [k, v] of client) {
      if (server.get(k) !== v) {
        same = false;
        break;
      }
    }
    if (same) return undefined; // the common case, checked without allocating
  }
  const resets: string[] = [];
  const sets: [string, string][] = [];
  for (const [k, v] of client) if (server.get(k) !== v) sets.push([k, v]);
  for (const k of server.keys()) if (!client.has(k)) resets.push(k);
  return resets.length || sets.length ? { resets, sets } : undefined;
}

/**
 * Bring a connection's session settings to `want` (a client's), sending only the difference, and record
 * what took effect in ss. Nothing else may be in flight on the connection.
 */
export async function applySettings(server: ServerConnection, ss: ServerState, want: ReadonlyMap<string, string>): Promise<void> {
  const d = settingsDelta(want, ss.settings);
  if (!d) return;
  ss.unnamedOwner = undefined; // the gateway's own extended query replaces the unnamed statement
  const todo: Promise<{ error?: PgError }>[] = [];
  if (d.resets.length) todo.push(server.query(d.resets.map((n) => `RESET ${quoteIdent(n)}`).join('; ')));
  if (d.sets.length) todo.push(server.queryParams(setConfigSql(d.sets.length), d.sets.flat()));
  const results = await Promise.all(todo);
  // Each statement applies all of its part or none of it.
  if (d.resets.length && !results[0]!.error) for (const n of d.resets) ss.settings.delete(n);
  if (d.sets.length && !results[results.length - 1]!.error) for (const [k, v] of d.sets) ss.settings.set(k, v);
  for (const r of results) if (r.error) throw r.error;
}

/** One SELECT that applies many settings with parameters (values are never spliced into SQL). */
export function setConfigSql(n: number): string {
  const calls: string[] = [];
  for (let i = 0; i < n; i++) calls.push(`pg_catalog.set_config($${2 * i + 1}, $${2 * i + 2}, false)`);
  return `SELECT ${calls.join(', ')}`;
}

/**
 * Read back, after a transaction that may have changed session state, what the server really has:
 * the named settings ($1, NULL when a setting does not exist), the SQL-level prepared statements, and
 * the facts that pin a client (session advisory locks, temporary relations, holdable cursors, a
 * changed role; $2 is the user the connection logged in as), and the channels it listens on. Reading instead of simulating gets
 * ROLLBACK, savepoints, failed statements and SET LOCAL right without modelling them.
 */
export const PROBE_SQL = `SELECT
  (SELECT pg_catalog.json_object_agg(n, pg_catalog.current_setting(n, true)) FROM pg_catalog.unnest($1::text[]) AS n),
  (SELECT pg_catalog.json_object_agg(name, statement) FROM pg_catalog.pg_prepared_statements WHERE from_sql),
  (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()),
  (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()),
  (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable),
  current_user <> session_user AS role_changed,
  session_user::text <> $2 AS session_changed,
  (SELECT pg_catalog.json_agg(name) FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql),
  (SELECT pg_catalog.json_agg(c) FROM pg_catalog.pg_listening_channels() AS c)`;

export interface ProbeResult {
  settings: Map<string, string | null>;
  /** SQL-level prepared statements: name → the query string that created it (the whole string, for a multi-statement one). */
  sqlPrepared: Map<string, string>;
  /** Protocol-level statements on the connection (server-side names). */
  protocolPrepared: string[];
  /** Channels the connection listens on. */
  listening: string[];
  pins: PinReason[];
}

/** Turn PROBE_SQL's one row into facts. */
export function readProbe(row: (string | null)[]): ProbeResult {
  const settings = new Map<string, string | null>(Object.entries((row[0] ? JSON.parse(row[0]) : {}) as Record<string, string | null>));
  const sqlPrepared = new Map<string, string>(Object.entries(row[1] ? (JSON.parse(row[1]) as Record<string, string>) : {}));
  const pins: PinReason[] = [];
  if (Number(row[2]) > 0) pins.push('advisory_lock');
  if (Number(row[3]) > 0) pins.push('temp_table');
  if (Number(row[4]) > 0) pins.push('cursor_with_hold');
  if (row[5] === 't') pins.push('set_role');
  if (row[6] === 't') pins.push('session_authorization');
  const protocolPrepared = row[7] ? (JSON.parse(row[7]) as string[]) : [];
  const listening = row[8] ? (JSON.parse(row[8]) as string[]) : [];
  return { settings, sqlPrepared, protocolPrepared, listening, pins };
}

/** A text[] parameter literal for a list of names. */
export function textArray(items: Iterable<string>): string {
  const parts: string[] = [];
  for (const s of items) parts.push(`"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  return `{${parts.join(',')}}`;
}
