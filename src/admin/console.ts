// The admin console: PgBouncer-style SHOW / PAUSE / RESUME / RELOAD / KILL / BAN commands, answered by the gateway itself over the PostgreSQL protocol.

import tls from 'node:tls';
import * as m from '../protocol/messages.js';
import { PgError, SQLSTATE, protocolViolation } from '../protocol/errors.js';
import { CONSOLE_DATABASES, defaultConfig, redactConfig } from '../config/load.js';
import { serverState } from '../session/state.js';
import type { ServerConnection } from '../backend/server-connection.js';
import type { DbNode } from '../balancer/topology.js';
import type { ClientSession, FrontendContext } from '../frontend/client-session.js';
import type { Config } from '../config/types.js';

/** Whether a startup packet's database reaches the console rather than a server. */
export function isConsoleDatabase(database: string): boolean {
  return CONSOLE_DATABASES.includes(database);
}

/** How long PAUSE waits for the active server connections to be given back before it reports what is left. */
export const PAUSE_WAIT_MS = 30_000;

/** The server_version announced when no server connection has told the gateway the primary's (the oldest PostgreSQL switchyard is tested with). */
const FALLBACK_SERVER_VERSION = '15.0';

/** SQLSTATE codes only the console raises (PostgreSQL's names). */
const SYNTAX_ERROR = '42601';
const UNDEFINED_OBJECT = '42704';
const OBJECT_NOT_IN_PREREQUISITE_STATE = '55000';
const CONFIG_FILE_ERROR = 'F0000';

const COMMANDS = 'SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|DATABASES|CONFIG|VERSION, PAUSE [db], RESUME [db], RELOAD, KILL db, BAN replica, UNBAN replica';

/** PgBouncer console commands switchyard does not have: refused as unsupported (0A000) rather than as a syntax error. */
const PGBOUNCER_ONLY = new Set(['SUSPEND', 'SHUTDOWN', 'SET', 'DISABLE', 'ENABLE', 'RECONNECT', 'WAIT_CLOSE', 'KILL_CLIENT']);
const PGBOUNCER_ONLY_SHOW = new Set([
  'FDS',
  'SOCKETS',
  'ACTIVE_SOCKETS',
  'LISTS',
  'USERS',
  'MEM',
  'DNS_HOSTS',
  'DNS_ZONES',
  'STATE',
  'STATS_TOTALS',
  'STATS_AVERAGES',
  'TOTALS',
  'PEERS',
  'PEER_POOLS',
  'PREPARED_STATEMENTS',
]);

const HELP: [string, string][] = [
  ['SHOW HELP', 'this list'],
  ['SHOW POOLS', 'one row per (database, user, node) pool: clients active and waiting, server connections by state'],
  ['SHOW CLIENTS', 'one row per logged-in client'],
  ['SHOW SERVERS', 'one row per open server connection'],
  ['SHOW STATS', 'totals and averages per database since start'],
  ['SHOW DATABASES', 'one row per (database, node) with limits and connection counts'],
  ['SHOW CONFIG', 'every setting (secrets redacted) with its default and whether RELOAD can change it'],
  ['SHOW VERSION', 'the gateway version'],
  ['PAUSE [db]', `new transactions wait until RESUME; returns once no server connection is active (at most ${PAUSE_WAIT_MS / 1000} s)`],
  ['RESUME [db]', 'undo PAUSE'],
  ['RELOAD', 're-read the config file and apply what can change live'],
  ['KILL db', "disconnect the database's clients and close its server connections"],
  ['BAN replica', 'take a replica out of the read rotation for balancer.ban_ms'],
  ['UNBAN replica', 'put a banned replica back now'],
];

// ---------------------------------------------------------------- result sets

interface Column {
  name: string;
  /** int8 columns are right-aligned by psql and read as numbers by drivers; everything else is text. */
  type: 'text' | 'int8';
}

type Value = string | number | null;
type Row = Record<string, Value>;

export interface ResultSet {
  columns: Column[];
  rows: Row[];
}

const text = (name: string): Column => ({ name, type: 'text' });
const int = (name: string): Column => ({ name, type: 'int8' });

const TEXT_OID = 25;
const INT8_OID = 20;

/** RowDescription with each column's type (the protocol module's builder writes text columns only). */
function rowDescription(columns: readonly Column[]): Buffer {
  const names = columns.map((c) => Buffer.from(c.name + '\0', 'utf8'));
  const out = Buffer.alloc(7 + names.reduce((n, b) => n + b.length + 18, 0));
  out[0] = 0x54; // T
  out.writeInt32BE(out.length - 1, 1);
  out.writeInt16BE(columns.length, 5);
  let at = 7;
  columns.forEach((c, i) => {
    at += names[i]!.copy(out, at);
    at = out.writeInt32BE(0, at); // table OID
    at = out.writeInt16BE(0, at); // attribute number
    at = out.writeInt32BE(c.type === 'int8' ? INT8_OID : TEXT_OID, at);
    at = out.writeInt16BE(c.type === 'int8' ? 8 : -1, at);
    at = out.writeInt32BE(-1, at); // type modifier
    at = out.writeInt16BE(0, at); // text format
  });
  return out;
}

function encode(set: ResultSet, tag: string): Buffer[] {
  const out = [rowDescription(set.columns)];
  for (const row of set.rows) {
    out.push(m.dataRow(set.columns.map((c) => {
      const v = row[c.name];
      return v === null || v === undefined ? null : typeof v === 'number' ? String(Math.trunc(v)) : v;
    })));
  }
  out.push(m.commandComplete(tag));
  return out;
}

function notice(message: string, detail?: string): Buffer {
  const fields = ['SNOTICE', 'VNOTICE', 'C00000', `M${message}`, ...(detail ? [`D${detail}`] : [])];
  return m.frame('N', Buffer.from(fields.map((f) => f + '\0').join('') + '\0', 'utf8'));
}

function consoleError(code: string, message: string, hint?: string, detail?: string): PgError {
  return new PgError(code, message, { severity: 'ERROR', hint, detail });
}

/** PgBouncer's timestamp format: UTC, to the second. */
function timestamp(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
}

// ---------------------------------------------------------------- what the views read

/** Where a logged-in client is: the node and connection it holds, or the node it waits on. */
interface ClientPlace {
  session: ClientSession;
  state: 'active' | 'idle' | 'waiting';
  server: ServerConnection | undefined;
  node: string | undefined;
  waitingSince: number | undefined;
}

function places(ctx: FrontendContext): ClientPlace[] {
  const nodes = ctx.topology.nodes;
  const out: ClientPlace[] = [];
  for (const s of ctx.sessions) {
    // Still logging in: listed only once it waits for its first server connection (counted as waiting, as in PgBouncer).
    if (s.state === 'closed') continue;
    if (s.console) {
      if (s.state !== 'ready') continue;
      out.push({ session: s, state: 'active', server: undefined, node: undefined, waitingSince: undefined });
      continue;
    }
    const server = s.relay ? s.relay.server : s.server;
    if (server && s.state === 'ready') {
      out.push({ session: s, state: 'active', server, node: s.serverNode, waitingSince: undefined });
      continue;
    }
    let waiting: { node: string; since: number } | undefined;
    for (const n of nodes) {
      // A relay waits under its own name; acquire() (login, session pooling) under the client's signal.
      const since = (s.relay && n.pools.waitingSince(s.relay)) ?? n.pools.waitingSince(s.signal);
      if (since !== undefined) waiting = { node: n.name, since };
    }
    if (!waiting && s.state !== 'ready') continue;
    out.push({ session: s, state: waiting ? 'waiting' : 'idle', server: undefined, node: waiting?.node, waitingSince: waiting?.since });
  }
  return out;
}

/** The node a client counts under in SHOW POOLS / DATABASES: the one it holds or waits on, else the primary (where it logs in). */
function homeNode(ctx: FrontendContext, p: ClientPlace): string {
  return p.node ?? ctx.topology.primary.name;
}

function poolModeOf(config: Config, database: string, user: string): string {
  return config.pool.users[user]?.mode ?? config.pool.databases[database]?.mode ?? config.pool.mode;
}

function clientTls(s: ClientSession): string {
  if (!s.tls || !(s.socket instanceof tls.TLSSocket)) return '';
  const cipher = s.socket.getCipher();
  return [s.socket.getProtocol(), cipher?.standardName ?? cipher?.name].filter(Boolean).join('/');
}

const clientPtr = (id: number) => `c${id}`;
const serverPtr = (id: number) => `s${id}`;

// ---------------------------------------------------------------- SHOW

export function showPools(ctx: FrontendContext): ResultSet {
  const columns = [
    text('database'), text('user'), int('cl_active'), int('cl_waiting'), int('cl_active_cancel_req'), int('cl_waiting_cancel_req'),
    int('sv_active'), int('sv_active_cancel'), int('sv_being_canceled'), int('sv_idle'), int('sv_used'), int('sv_tested'), int('sv_login'),
    int('maxwait'), int('maxwait_us'), text('pool_mode'), text('node'),
  ];
  const nodes = ctx.topology.nodes;
  const rows = new Map<string, Row>();
  const row = (node: string, database: string, user: string): Row => {
    const key = `${node}\0${database}\0${user}`;
    let r = rows.get(key);
    if (!r) {
      r = { database, user, pool_mode: poolModeOf(ctx.config, database, user), node };
      // Cancel requests are forwarded the moment they arrive: no client or server ever waits on one.
      for (const c of columns) if (c.type === 'int8') r[c.name] = 0;
      rows.set(key, r);
    }
    return r;
  };
  for (const n of nodes) {
    for (const p of n.pools.stats()) {
      const r = row(n.name, p.database, p.user);
      r.sv_active = p.active - p.resetting;
      r.sv_tested = p.resetting;
      r.sv_idle = p.idle;
      r.sv_login = p.opening;
      r.maxwait = Math.floor(p.maxwait_ms / 1000);
      r.maxwait_us = (p.maxwait_ms % 1000) * 1000;
    }
  }
  for (const p of places(ctx)) {
    if (p.session.console) continue;
    const r = row(homeNode(ctx, p), p.session.database, p.session.user);
    if (p.state === 'waiting') (r.cl_waiting as number)++;
    else (r.cl_active as number)++;
  }
  return { columns, rows: sortRows([...rows.values()], nodes) };
}

/** By database, user, then node in topology order (the primary first). */
function sortRows(rows: Row[], nodes: DbNode[]): Row[] {
  const order = new Map(nodes.map((n, i) => [n.name, i]));
  const key = (r: Row) => [String(r.database ?? r.name), String(r.user ?? '')];
  return rows.sort((a, b) => {
    const [ad, au] = key(a);
    const [bd, bu] = key(b);
    if (ad !== bd) return ad! < bd! ? -1 : 1;
    if (au !== bu) return au! < bu! ? -1 : 1;
    return (order.get(String(a.node)) ?? 1e9) - (order.get(String(b.node)) ?? 1e9);
  });
}

const SOCKET_COLUMNS = [
  text('type'), text('user'), text('database'), text('replication'), text('state'), text('addr'), int('port'), text('local_addr'), int('local_port'),
  text('connect_time'), text('request_time'), int('wait'), int('wait_us'), int('close_needed'), text('ptr'), text('link'), int('remote_pid'),
  text('tls'), text('application_name'), int('prepared_statements'), int('id'), text('node'),
];

export function showClients(ctx: FrontendContext): ResultSet {
  const now = Date.now();
  const rows = places(ctx).map((p): Row => {
    const s = p.session;
    const waited = p.waitingSince === undefined ? 0 : now - p.waitingSince;
    return {
      type: 'C',
      user: s.user,
      database: s.database,
      replication: 'none',
      state: p.state,
      addr: s.address,
      port: s.socket.remotePort ?? null,
      local_addr: s.socket.localAddress ?? null,
      local_port: s.socket.localPort ?? null,
      connect_time: timestamp(s.connectedAt),
      request_time: timestamp(s.requestAt),
      wait: Math.floor(waited / 1000),
      wait_us: (waited % 1000) * 1000,
      close_needed: 0,
      ptr: clientPtr(s.id),
      link: p.server ? serverPtr(p.server.id) : null,
      remote_pid: 0,
      tls: clientTls(s),
      application_name: s.applicationName,
      prepared_statements: s.relay?.state.statements.size ?? 0,
      id: s.id,
      node: p.node ?? null,
    };
  });
  return { columns: SOCKET_COLUMNS, rows };
}

export function showServers(ctx: FrontendContext): ResultSet {
  const linked = new Map<ServerConnection, ClientSession>();
  for (const p of places(ctx)) if (p.server) linked.set(p.server, p.session);
  const rows: Row[] = [];
  for (const n of ctx.topology.nodes) {
    for (const l of n.pools.connections()) {
      const c = l.conn;
      const client = l.state === 'active' ? linked.get(c) : undefined;
      rows.push({
        type: 'S',
        user: l.user,
        database: l.database,
        replication: 'none',
        state: l.state,
        addr: n.config.host,
        port: n.config.port,
        local_addr: null,
        local_port: null,
        connect_time: timestamp(c.createdAt),
        request_time: timestamp(Math.max(c.lastUsedAt, client?.requestAt ?? 0)),
        wait: 0,
        wait_us: 0,
        close_needed: l.closeNeeded ? 1 : 0,
        ptr: serverPtr(c.id),
        link: client ? clientPtr(client.id) : null,
        remote_pid: c.pid,
        tls: c.tls ? 'TLS' : '',
        application_name: client?.applicationName ?? '',
        prepared_statements: serverState(c).prepared.size,
        id: c.id,
        node: n.name,
      });
    }
  }
  return { columns: SOCKET_COLUMNS, rows };
}

/**
 * Totals since start; averages as PgBouncer defines them, over the gateway's uptime rather than the
 * last stats period: counts and bytes per second, times per transaction or query, wait time per
 * server assignment (per transaction when the assignment count is not known).
 */
export function showStats(ctx: FrontendContext): ResultSet {
  const columns = [
    text('database'), int('total_server_assignment_count'), int('total_xact_count'), int('total_query_count'), int('total_received'),
    int('total_sent'), int('total_xact_time'), int('total_query_time'), int('total_wait_time'), int('avg_server_assignment_count'),
    int('avg_xact_count'), int('avg_query_count'), int('avg_recv'), int('avg_sent'), int('avg_xact_time'), int('avg_query_time'), int('avg_wait_time'),
  ];
  const uptimeS = Math.max(1, (Date.now() - ctx.admin.startedAt) / 1000);
  const per = (total: number, n: number) => (n > 0 ? total / n : 0);
  const rows = ctx.admin
    .stats()
    .map((d): Row => {
      const assignments = d.server_assignment_count;
      return {
        database: d.database,
        total_server_assignment_count: assignments ?? null,
        total_xact_count: d.xact_count,
        total_query_count: d.query_count,
        total_received: d.bytes_received,
        total_sent: d.bytes_sent,
        total_xact_time: d.xact_time_us,
        total_query_time: d.query_time_us,
        total_wait_time: d.wait_time_us,
        avg_server_assignment_count: assignments === undefined ? null : assignments / uptimeS,
        avg_xact_count: d.xact_count / uptimeS,
        avg_query_count: d.query_count / uptimeS,
        avg_recv: d.bytes_received / uptimeS,
        avg_sent: d.bytes_sent / uptimeS,
        avg_xact_time: per(d.xact_time_us, d.xact_count),
        avg_query_time: per(d.query_time_us, d.query_count),
        avg_wait_time: per(d.wait_time_us, assignments ?? d.xact_count),
      };
    })
    .sort((a, b) => (String(a.database) < String(b.database) ? -1 : 1));
  return { columns, rows };
}

/** Every database is passed through to every node: one row per (database, node) that has a pool, clients or a config entry. */
export function showDatabases(ctx: FrontendContext): ResultSet {
  const columns = [
    text('name'), text('host'), int('port'), text('database'), text('force_user'), int('pool_size'), int('min_pool_size'),
    int('reserve_pool_size'), int('server_lifetime'), text('pool_mode'), int('max_connections'), int('current_connections'),
    int('max_client_connections'), int('current_client_connections'), int('paused'), int('disabled'), text('node'),
  ];
  const cfg = ctx.config;
  const nodes = ctx.topology.nodes;
  const rows = new Map<string, Row>();
  const row = (n: DbNode, database: string): Row => {
    const key = `${n.name}\0${database}`;
    let r = rows.get(key);
    if (!r) {
      r = {
        name: database,
        host: n.config.host,
        port: n.config.port,
        database,
        force_user: null,
        pool_size: cfg.pool.size,
        min_pool_size: 0,
        reserve_pool_size: 0,
        server_lifetime: Math.floor(cfg.pool.lifetime_ms / 1000),
        pool_mode: cfg.pool.databases[database]?.mode ?? null,
        max_connections: cfg.pool.max_db_connections,
        current_connections: 0,
        max_client_connections: 0,
        current_client_connections: 0,
        paused: n.pools.isPaused(database) ? 1 : 0,
        disabled: 0,
        node: n.name,
      };
      rows.set(key, r);
    }
    return r;
  };
  for (const n of nodes) {
    for (const p of n.pools.stats()) (row(n, p.database).current_connections as number) += p.idle + p.active + p.opening;
  }
  const primary = ctx.topology.primary;
  for (const database of Object.keys(cfg.pool.databases)) if (!isConsoleDatabase(database)) row(primary, database);
  for (const p of places(ctx)) {
    if (p.session.console) continue;
    const home = ctx.topology.node(homeNode(ctx, p)) ?? primary;
    (row(home, p.session.database).current_client_connections as number)++;
  }
  return { columns, rows: sortRows([...rows.values()], nodes) };
}

/** Sections a reload applies live; the rest need a restart (see Gateway.reload). */
const LIVE_SECTIONS = new Set(['replicas', 'balancer', 'routing', 'pool', 'log']);

export function showConfig(ctx: FrontendContext): ResultSet {
  const columns = [text('key'), text('value'), text('default'), text('changeable')];
  const current = flatten(ctx.admin.configView());
  const defaults = flatten(redactConfig(defaultConfig()));
  defaults.delete('primary.host'); // required: it has no default (defaultConfig fills in a local one)
  const rows = [...current].map(([key, value]): Row => ({
    key,
    value,
    default: defaults.get(key) ?? null,
    changeable: LIVE_SECTIONS.has(key.split('.')[0]!) ? 'yes' : 'no',
  }));
  return { columns, rows };
}

/** Dotted keys for nested mappings; lists, and mappings with no keys, as JSON. */
function flatten(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (value !== undefined) {
    out.set(prefix, typeof value === 'string' ? value : JSON.stringify(value));
  }
  return out;
}

// ---------------------------------------------------------------- the session

/** What the console needs from the client session it answers. */
export interface ConsoleHost {
  readonly id: number;
  readonly user: string;
  send(data: Buffer): void;
  close(): void;
  fatal(err: PgError): void;
}

const T_QUERY = 0x51; // Q
const T_SYNC = 0x53; // S
const T_FLUSH = 0x48; // H
const T_TERMINATE = 0x58; // X
const T_FUNCTION_CALL = 0x46; // F
/** Extended-query messages: refused, then skipped until Sync as PostgreSQL does after an error. */
const EXTENDED: Record<number, string> = { 0x50: 'Parse', 0x42: 'Bind', 0x44: 'Describe', 0x45: 'Execute', 0x43: 'Close' };
/** Copy messages: there is never a COPY in progress, so PostgreSQL would ignore them too. */
const COPY = new Set([0x64, 0x63, 0x66]); // d c f

const EMPTY_QUERY_RESPONSE = m.frame('I');

/**
 * One admin client after login. Messages are handled one at a time, in order: a PAUSE that waits holds
 * back what the client sent after it, as a server would.
 */
export class AdminConsole {
  private readonly inbox: Buffer[] = [];
  private running = false;
  private closed = false;
  /** After a refused extended-protocol message: everything up to Sync is dropped. */
  private skipping = false;
  /** Set while PAUSE waits; a CancelRequest aborts the wait. */
  private waiting: AbortController | undefined;

  constructor(
    private readonly host: ConsoleHost,
    private readonly ctx: FrontendContext,
  ) {}

  /** ParameterStatus values for the greeting: enough for psql and drivers to take the console for a server. */
  parameters(applicationName: string): Map<string, string> {
    return new Map([
      ['server_version', `${this.serverVersion()} (switchyard ${this.ctx.admin.version})`],
      ['server_encoding', 'UTF8'],
      ['client_encoding', 'UTF8'],
      ['DateStyle', 'ISO, MDY'],
      ['integer_datetimes', 'on'],
      ['standard_conforming_strings', 'on'],
      ['application_name', applicationName],
      ['session_authorization', this.host.user],
    ]);
  }

  /** The primary's version as a server connection reported it ("15.4"), so psql sees the server it is used with. */
  private serverVersion(): string {
    for (const n of this.ctx.topology.nodes) {
      for (const { conn } of n.pools.connections()) {
        const v = /^\d+(\.\d+)?/.exec(conn.params.get('server_version') ?? '');
        if (v) return v[0];
      }
    }
    return FALLBACK_SERVER_VERSION;
  }

  /** One whole client message (the console keeps it: pass a copy). */
  receive(msg: Buffer): void {
    if (this.closed) return;
    this.inbox.push(msg);
    if (!this.running) void this.drain();
  }

  /** A CancelRequest for this client: a PAUSE that is waiting stops waiting (the pause stays). */
  cancel(): void {
    this.waiting?.abort();
  }

  /** The client left. */
  finish(): void {
    this.closed = true;
    this.inbox.length = 0;
    this.waiting?.abort();
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.inbox.length > 0 && !this.closed) await this.handle(this.inbox.shift()!);
    } catch (e) {
      this.host.fatal(new PgError(SQLSTATE.INTERNAL_ERROR, `internal error in the admin console: ${(e as Error).message}`));
    } finally {
      this.running = false;
    }
  }

  private async handle(msg: Buffer): Promise<void> {
    const t = msg[0]!;
    if (t === T_TERMINATE) return this.host.close();
    if (t === T_SYNC) {
      this.skipping = false;
      return this.host.send(m.readyForQuery('I'));
    }
    if (this.skipping || t === T_FLUSH || COPY.has(t)) return;
    if (t === T_QUERY) return this.query(m.readQuery(msg));
    const extended = EXTENDED[t];
    if (extended !== undefined || t === T_FUNCTION_CALL) {
      const err = consoleError(
        SQLSTATE.FEATURE_NOT_SUPPORTED,
        `the switchyard admin console takes simple queries only (${extended ?? 'FunctionCall'} message refused)`,
        'send the commands as simple queries, as psql does; drivers usually have an option for it',
      );
      this.host.send(err.toMessage());
      // A FunctionCall is answered on its own; the extended protocol continues until its Sync.
      if (t === T_FUNCTION_CALL) this.host.send(m.readyForQuery('I'));
      else this.skipping = true;
      return;
    }
    this.host.fatal(protocolViolation(`invalid frontend message type ${t} for the admin console`));
  }

  /** A simple Query: each statement answered in turn; the first error ends the query, as in PostgreSQL. */
  private async query(sql: string): Promise<void> {
    let statements: Token[][];
    try {
      statements = tokenize(sql);
    } catch (e) {
      this.host.send((e as PgError).toMessage());
      return this.host.send(m.readyForQuery('I'));
    }
    if (statements.length === 0) this.host.send(EMPTY_QUERY_RESPONSE);
    for (const tokens of statements) {
      let out: Buffer[];
      try {
        out = await this.run(tokens);
      } catch (e) {
        if (this.closed) return;
        const err = e instanceof PgError ? e : consoleError(SQLSTATE.INTERNAL_ERROR, (e as Error).message);
        this.host.send(err.toMessage());
        break;
      }
      if (this.closed) return;
      this.host.send(Buffer.concat(out));
    }
    this.host.send(m.readyForQuery('I'));
  }

  private async run(tokens: Token[]): Promise<Buffer[]> {
    const verb = tokens[0]!.quoted ? '' : tokens[0]!.text.toUpperCase();
    const args = tokens.slice(1);
    const statement = tokens.map((t) => t.text).join(' ');
    const arity = (min: number, max: number, usage: string) => {
      if (args.length < min || args.length > max) throw consoleError(SYNTAX_ERROR, `syntax error in "${statement}": usage is ${usage}`, `the console takes ${COMMANDS}`);
      return args[0]?.text;
    };
    // Taken off admin.users by a reload: no more commands.
    if (!this.ctx.config.admin.users.includes(this.host.user)) {
      throw consoleError('28000', `user "${this.host.user}" is no longer in admin.users`);
    }
    // What changes the gateway is an event (logged, counted, on the WebSocket stream); SHOW is not.
    if (verb !== 'SHOW' && verb !== '') this.ctx.events.emit({ type: 'admin_command', client: this.host.id, user: this.host.user, command: statement });
    switch (verb) {
      case 'SHOW': {
        const what = arity(1, 1, 'SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|DATABASES|CONFIG|VERSION')!.toUpperCase();
        return this.show(what, statement);
      }
      case 'PAUSE':
        return this.pause(arity(0, 1, 'PAUSE [db]'));
      case 'RESUME':
        return this.resume(arity(0, 1, 'RESUME [db]'));
      case 'RELOAD':
        arity(0, 0, 'RELOAD');
        return this.reload();
      case 'KILL':
        return this.kill(arity(1, 1, 'KILL db')!);
      case 'BAN':
        return this.ban(arity(1, 1, 'BAN replica')!);
      case 'UNBAN':
        return this.unban(arity(1, 1, 'UNBAN replica')!);
    }
    if (PGBOUNCER_ONLY.has(verb)) throw unsupported(verb);
    throw consoleError(SYNTAX_ERROR, `unknown admin console command "${statement}"; the console takes ${COMMANDS}`);
  }

  private show(what: string, statement: string): Buffer[] {
    const ctx = this.ctx;
    switch (what) {
      case 'HELP':
        return encode({ columns: [text('command'), text('description')], rows: HELP.map(([command, description]) => ({ command, description })) }, 'SHOW');
      case 'POOLS':
        return encode(showPools(ctx), 'SHOW');
      case 'CLIENTS':
        return encode(showClients(ctx), 'SHOW');
      case 'SERVERS':
        return encode(showServers(ctx), 'SHOW');
      case 'STATS':
        return encode(showStats(ctx), 'SHOW');
      case 'DATABASES':
        return encode(showDatabases(ctx), 'SHOW');
      case 'CONFIG':
        return encode(showConfig(ctx), 'SHOW');
      case 'VERSION':
        return encode({ columns: [text('version')], rows: [{ version: `switchyard ${ctx.admin.version}` }] }, 'SHOW');
    }
    if (PGBOUNCER_ONLY_SHOW.has(what)) throw unsupported(`SHOW ${what}`);
    throw consoleError(SYNTAX_ERROR, `unknown admin console command "${statement}"; the console takes ${COMMANDS}`);
  }

  // ------------------------------------------------------------ PAUSE, RESUME

  /** Whether the database (everything, when none is named) is paused now. */
  private pausedNow(database: string | undefined): boolean {
    const p = this.ctx.topology.primary.pools.paused;
    return p.all || (database !== undefined && p.databases.includes(database));
  }

  private async pause(database: string | undefined): Promise<Buffer[]> {
    if (database !== undefined && isConsoleDatabase(database)) {
      throw consoleError(OBJECT_NOT_IN_PREREQUISITE_STATE, `"${database}" is the admin console; it has no server connections to pause`);
    }
    if (database !== undefined) this.knownDatabase(database);
    for (const n of this.ctx.topology.nodes) n.pools.pause(database);
    const what = database === undefined ? 'every database' : `database "${database}"`;
    const ctl = new AbortController();
    this.waiting = ctl;
    const deadline = Date.now() + PAUSE_WAIT_MS;
    try {
      for (;;) {
        const active = this.ctx.topology.nodes.reduce((k, n) => k + n.pools.activeCount(database), 0);
        if (active === 0) return [m.commandComplete('PAUSE')];
        const still = `${active} server connection(s) of ${what} still active`;
        if (!this.pausedNow(database)) throw consoleError(SQLSTATE.QUERY_CANCELED, `PAUSE ended by a RESUME while it waited; ${still}`);
        if (ctl.signal.aborted) {
          throw consoleError(SQLSTATE.QUERY_CANCELED, `canceling the wait of PAUSE: ${still}`, 'the pause stays in force: new transactions wait; RESUME to undo it, or PAUSE again to wait again');
        }
        if (Date.now() >= deadline) {
          throw consoleError(
            SQLSTATE.QUERY_CANCELED,
            `PAUSE waited ${PAUSE_WAIT_MS / 1000} s: ${still}`,
            'the pause stays in force: new transactions wait; in session pooling a connection is given back only when its client leaves. PAUSE again to keep waiting, KILL the database, or RESUME',
          );
        }
        await sleep(20, ctl.signal);
      }
    } finally {
      if (this.waiting === ctl) this.waiting = undefined;
    }
  }

  private resume(database: string | undefined): Buffer[] {
    const nodes = this.ctx.topology.nodes;
    if (database !== undefined && this.ctx.topology.primary.pools.paused.all) {
      throw consoleError(OBJECT_NOT_IN_PREREQUISITE_STATE, `every database is paused, not only "${database}"`, 'RESUME with no database name resumes them all');
    }
    let was = false;
    for (const n of nodes) was = n.pools.resume(database) || was;
    if (!was) throw consoleError(OBJECT_NOT_IN_PREREQUISITE_STATE, database === undefined ? 'nothing is paused' : `database "${database}" is not paused`);
    return [m.commandComplete('RESUME')];
  }

  // ------------------------------------------------------------ RELOAD, KILL, BAN

  private reload(): Buffer[] {
    let r: { applied: string[]; restart_required: string[] };
    try {
      r = this.ctx.admin.reload();
    } catch (e) {
      const err = e as Error & { code?: string; problems?: { path: string; message: string }[] };
      const detail = err.problems?.map((p) => `${p.path}: ${p.message}`).join('\n');
      throw consoleError(err.code === 'no_config_file' ? OBJECT_NOT_IN_PREREQUISITE_STATE : CONFIG_FILE_ERROR, err.message, undefined, detail);
    }
    const applied = r.applied.length ? `applied: ${r.applied.join(', ')}` : 'nothing to apply';
    const restart = r.restart_required.length ? `; needs a restart: ${r.restart_required.join(', ')}` : '';
    return [notice(applied + restart), m.commandComplete('RELOAD')];
  }

  /** A database some client or pool uses: PAUSE or KILL of a misspelt name must not report success. */
  private knownDatabase(database: string): void {
    const used = [...this.ctx.sessions].some((s) => s.database === database && !s.console) || this.ctx.topology.nodes.some((n) => n.pools.stats().some((p) => p.database === database));
    if (!used) throw consoleError('3D000', `no such database: "${database}" (no client or pool uses it; SHOW DATABASES lists them)`);
  }

  private kill(database: string): Buffer[] {
    if (isConsoleDatabase(database)) throw consoleError(OBJECT_NOT_IN_PREREQUISITE_STATE, `"${database}" is the admin console; it cannot be killed`);
    this.knownDatabase(database);
    let clients = 0;
    for (const s of [...this.ctx.sessions]) {
      if (s.database !== database || s.console || s.state === 'closed') continue;
      s.fatal(new PgError(SQLSTATE.ADMIN_SHUTDOWN, 'terminating connection due to administrator command', { detail: `KILL "${database}" on the switchyard admin console` }));
      clients++;
    }
    // After the clients: what they gave back on the way out is closed too.
    let servers = 0;
    for (const n of this.ctx.topology.nodes) servers += n.pools.closeDatabase(database, 'killed on the admin console');
    return [notice(`KILL "${database}": ${clients} client(s) disconnected, ${servers} server connection(s) closed`), m.commandComplete('KILL')];
  }

  private replica(name: string, verb: string): DbNode {
    const n = this.ctx.topology.node(name);
    if (!n) {
      const names = this.ctx.topology.nodes.map((x) => x.name).join(', ');
      throw consoleError(UNDEFINED_OBJECT, `no node named "${name}"`, `the nodes are: ${names}`);
    }
    if (n.role !== 'replica') throw consoleError(OBJECT_NOT_IN_PREREQUISITE_STATE, `"${name}" is ${n.role === 'primary' ? 'the primary' : 'fenced (writable but not the primary)'}; only replicas can be ${verb}`);
    return n;
  }

  private ban(name: string): Buffer[] {
    this.replica(name, 'banned');
    this.ctx.topology.banNode(name, `banned on the admin console by "${this.host.user}"`);
    const cfg = this.ctx.config;
    const until = cfg.monitor.user !== undefined ? ', and then until its next successful check' : '';
    return [notice(`replica "${name}" takes no reads for balancer.ban_ms (${cfg.balancer.ban_ms} ms)${until}; UNBAN ends it sooner`), m.commandComplete('BAN')];
  }

  private unban(name: string): Buffer[] {
    const n = this.replica(name, 'unbanned');
    const was = n.banned;
    this.ctx.topology.unbanNode(name);
    return [...(was ? [] : [notice(`replica "${name}" was not banned`)]), m.commandComplete('UNBAN')];
  }
}

function unsupported(command: string): PgError {
  return consoleError(SQLSTATE.FEATURE_NOT_SUPPORTED, `${command} is a PgBouncer console command that switchyard does not have; the console takes ${COMMANDS}`);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

// ---------------------------------------------------------------- parsing

interface Token {
  text: string;
  /** A "double-quoted" name: taken as written (PgBouncer's rule for names with odd characters). */
  quoted: boolean;
}

/**
 * Statements separated by ';', each a list of words and "quoted names"; -- and /* *\/ comments are
 * skipped. Empty statements are dropped. Words are taken as written: database and node names are
 * case-sensitive, and command words are compared case-insensitively by the caller.
 */
export function tokenize(sql: string): Token[][] {
  const out: Token[][] = [];
  let cur: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === ';') {
      if (cur.length) out.push(cur);
      cur = [];
      i++;
    } else if (sql.startsWith('--', i)) {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? sql.length : nl + 1;
    } else if (sql.startsWith('/*', i)) {
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) throw consoleError(SYNTAX_ERROR, 'unterminated /* comment');
      i = end + 2;
    } else if (c === "'") {
      // A string literal is not a name (PgBouncer takes names bare or double-quoted): refused, not misread.
      throw consoleError(SYNTAX_ERROR, `a name in single quotes (${sql.slice(i, i + 30)}): write database and node names bare or in double quotes`);
    } else if (c === '"') {
      let name = '';
      let j = i + 1;
      for (;;) {
        if (j >= sql.length) throw consoleError(SYNTAX_ERROR, `unterminated quoted name at ${sql.slice(i, i + 20)}`);
        if (sql[j] === '"') {
          if (sql[j + 1] === '"') {
            name += '"';
            j += 2;
            continue;
          }
          break;
        }
        name += sql[j++];
      }
      cur.push({ text: name, quoted: true });
      i = j + 1;
    } else {
      let j = i;
      while (j < sql.length && !/[\s;"']/.test(sql[j]!) && !sql.startsWith('--', j) && !sql.startsWith('/*', j)) j++;
      cur.push({ text: sql.slice(i, j), quoted: false });
      i = j;
    }
  }
  if (cur.length) out.push(cur);
  return out;
}
