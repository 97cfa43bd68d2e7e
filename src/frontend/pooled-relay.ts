// Transaction pooling for one client: lease a server connection per transaction, carry the client's session state to it, give it back at idle.
//
// Invariants:
// - `expected` holds, in order, one entry per message written to the server that the server answers
//   (Parse, Bind, Describe, Execute, Close, Sync, Query, FunctionCall), including the gateway's own
//   injected messages. Every server reply is matched against its head; this is the one place that
//   decides when a connection is free: nothing expected, no extended-protocol message since the last
//   Sync, the server idle (not in a transaction), and no pin.
// - After an ErrorResponse to an extended-protocol message the server ignores everything up to Sync;
//   the entries for those messages are dropped (undoing what they would have done to the tracked
//   state), and messages written while `skipping` get no entry at all.
// - A client message is handled only when a connection is held and ready; otherwise it is copied to
//   `waiting` and the client's socket is paused until the lease (or the gateway's own work) is done.

import type net from 'node:net';
import * as m from '../protocol/messages.js';
import { PgError, SQLSTATE } from '../protocol/errors.js';
import type { ServerConnection } from '../backend/server-connection.js';
import type { ReusableReader } from '../backend/reusable-reader.js';
import { isRefusal, type PoolHandle } from '../pool/pool.js';
import type { EventBus } from '../observability/events.js';
import { analyze, type SessionEffects, type PinReason } from '../session/analyze.js';
import type { Decision, Router } from '../router/router.js';
import type { DbNode, Topology } from '../balancer/topology.js';
import type { Metrics } from '../observability/metrics.js';
import { performance } from 'node:perf_hooks';
import type { NotifyHubs } from '../session/notify-hub.js';
import type { Mirror } from '../mirror/mirror.js';
import { SummaryBuilder } from '../mirror/compare.js';
import {
  applySettings,
  ClientState,
  MISSING_STATEMENT,
  PROBE_SQL,
  SHARED_PREFIX,
  raiseSql,
  UNSYNCED_SETTINGS,
  quoteIdent,
  readProbe,
  serverState,
  setConfigSql,
  settingsDelta,
  textArray,
  type ClientStatement,
  type ServerState,
  type StatementRegistry,
} from '../session/state.js';

const T_QUERY = 0x51; // Q
const T_PARSE = 0x50; // P
const T_BIND = 0x42; // B
const T_DESCRIBE = 0x44; // D
const T_EXECUTE = 0x45; // E
const T_CLOSE = 0x43; // C
const T_SYNC = 0x53; // S
const T_FLUSH = 0x48; // H
const T_FUNCTION_CALL = 0x46; // F
const T_TERMINATE = 0x58; // X
const T_COPY_DATA = 0x64; // d
const T_COPY_DONE = 0x63; // c
const T_COPY_FAIL = 0x66; // f

/** What one expected answer is for. Shared constants for the common cases: no allocation per message. */
interface Expected {
  /** The message type it answers (Q for the gateway's own queries too). */
  t: number;
  /** The gateway's own message: 'ok' hides its success reply (an error still reaches the client), 'all' hides everything up to its ReadyForQuery. */
  swallow?: 'ok' | 'all';
  /** The gateway answers this one itself when it reaches the head (the server was never asked). */
  fake?: () => Buffer;
  /** Runs when the server will not process the message (an error earlier in the pipeline) or answers it with an error. */
  undo?: () => void;
  /** Runs when the server answers it with success. */
  ok?: () => void;
  /** A client request (Query, Sync): when it was sent, for the latency metric. */
  at?: number;
  /** The request is being copied to the mirror: the server's answer to this message goes into its summary. */
  cap?: Capture;
}

/** A client request being copied to the mirror: what to send there, and the summary of the answer the client gets. */
class Capture {
  readonly builder: SummaryBuilder;
  /** The transaction status before the request's ReadyForQuery (set when it arrives). */
  before = 0x49;
  /** An extended-protocol group: its Execute was seen (one, fetching every row). */
  executed = false;
  /** Copied only if it ran in autocommit (a write; any statement under a snapshot isolation default). */
  autocommitOnly = false;
  /** It turned out to be a COPY: not copied (the data is the client's to send). */
  dead = false;
  readonly parts: Buffer[] = [];
  constructor(
    readonly sql: string,
    readonly d: Decision,
    readonly statements: readonly { name: string; parse: Buffer }[],
    readonly at: number,
  ) {
    this.builder = new SummaryBuilder({ ordered: d.ordered === true });
  }
}

const PLAIN: Record<number, Expected> = {};
for (const t of [T_QUERY, T_PARSE, T_BIND, T_DESCRIBE, T_EXECUTE, T_CLOSE, T_SYNC, T_FUNCTION_CALL]) PLAIN[t] = Object.freeze({ t });
const INJECTED_QUERY: Expected = Object.freeze({ t: T_QUERY, swallow: 'all' });
/** A Sync the gateway adds to end an implicit transaction (and have the server answer everything before it). */
const INJECTED_SYNC: Expected = Object.freeze({ t: T_SYNC, swallow: 'all' });

/** What the transaction in progress did that the gateway must reconcile when it ends. */
class TxnEffects {
  probe = false;
  readonly set = new Set<string>();
  readonly reset = new Set<string>();
  resetAll = false;
  readonly prepare = new Map<string, string>();
  readonly deallocate = new Set<string>();
  deallocateAll = false;
  readonly listen = new Set<string>();
  readonly unlisten = new Set<string>();
  unlistenAll = false;
  /** Channels a LISTEN or UNLISTEN of this transaction named (UNLISTEN *: every channel the client had). */
  readonly channels = new Set<string>();
  /** Channels the pooled connection was made to listen on, so its state after COMMIT or ROLLBACK tells the outcome. */
  readonly mirrored = new Set<string>();
  /** Whether the client listened on a named channel before the transaction first named it. */
  readonly before = new Map<string, boolean>();
  /** The sentinel channel was listened on inside the transaction: after it, listening on it means COMMIT. */
  sentinel = false;
  dynamic = false;

  add(fx: SessionEffects): void {
    this.probe = true;
    for (const n of fx.set) this.set.add(n);
    for (const n of fx.reset) this.reset.add(n);
    this.resetAll ||= fx.resetAll;
    for (const p of fx.prepare) this.prepare.set(p.name, p.text);
    for (const n of fx.deallocate) this.deallocate.add(n);
    this.deallocateAll ||= fx.deallocateAll;
    for (const c of fx.listen) this.listen.add(c);
    for (const c of fx.unlisten) this.unlisten.add(c);
    this.unlistenAll ||= fx.unlistenAll;
    this.dynamic ||= fx.pins.includes('dynamic_set_config');
  }
}

/** What the relay needs from the client session around it. */
export interface RelayHost {
  readonly id: number;
  /** The client's address: ip-hash keeps it on one replica. */
  readonly address: string;
  readonly database: string;
  readonly user: string;
  readonly socket: net.Socket;
  readonly reader?: ReusableReader | undefined;
  readonly signal: AbortSignal;
  hubs: NotifyHubs;
  registry: StatementRegistry;
  events: EventBus;
  preparedCacheSize: number;
  topology: Topology;
  router: Router;
  /** routing.consistency is read-your-writes. */
  readYourWrites: boolean;
  metrics: Metrics;
  /** Shadow traffic: copies of the client's statements are offered to it. */
  mirror: Mirror | undefined;
  /** The client is (true) or is no longer (false) idle inside a transaction: pool.idle_transaction_timeout_ms runs. */
  idleInTransaction(idle: boolean): void;
  /** Send an error (once), log it once, and close the client. */
  fatal(err: PgError): void;
  /** The server connection died under the client. */
  serverLost(err: Error | undefined): void;
  close(): void;
}

export class PooledRelay {
  readonly state = new ClientState();
  server: ServerConnection | undefined;
  private ss: ServerState | undefined;
  private phase: 'idle' | 'leasing' | 'ready' | 'busy' = 'idle';
  private readonly waiting: Buffer[] = [];
  /** The client's last Parse of the unnamed statement (a copy), while PostgreSQL would still have it. */
  private unnamedParse: Buffer | undefined;
  /** What the unnamed statement does to session state, noted when it is bound. */
  private unnamedFx: SessionEffects | undefined;
  /** The parse-shaping settings the unnamed statement was parsed under (parseSettingsKey()). */
  private unnamedParsedUnder: string | undefined;
  private waitingBytes = 0;
  private expected: Expected[] = [];
  private head = 0;
  private skipping = false;
  /** The server is in extended-protocol copy-in mode (CopyInResponse to an Execute, until CopyDone/CopyFail or an error). */
  private copyIn = false;
  /** Transaction status of the last ReadyForQuery the server sent this client. */
  private lastStatus = 0x49; /* I */
  /** False after an extended-protocol message not yet followed by Sync. */
  private atBoundary = true;
  private tx = new TxnEffects();
  private readonly notifications: Buffer[] = [];
  private readonly toServer: Buffer[] = [];
  private readonly toClient: Buffer[] = [];
  private closed = false;

  // Routing (transaction pooling with read/write splitting).
  /** The node the held connection (or the one being leased) belongs to. */
  private node: DbNode | undefined;
  /** That node was not the primary when leased: its role then counts (a promotion mid-transaction leaves a read-only transaction). */
  private onReplica = false;
  /** Nodes tried for the transaction being leased (a replica that cannot serve sends it elsewhere). */
  private leaseTries = 0;
  /**
   * The client's transaction was lost with its server connection: the gateway answers everything
   * itself, as PostgreSQL answers inside a failed transaction, until the client ends it.
   */
  private lost: LostTransaction | undefined;
  /** An ErrorResponse already reached the client for the Query (or extended group) in progress. */
  private errorSent = false;
  /** A read that opens nothing, sent first on a fresh replica lease: run again elsewhere if the connection dies before any answer. */
  private retryMsg: Buffer | undefined;
  private retryEntry: Expected | undefined;
  /** The last message run again, how often, and the node it failed on. */
  private retried: Buffer | undefined;
  private retries = 0;
  private avoid: DbNode | undefined;
  /** A FATAL error the server sent as it went away (kept from the client: the gateway answers for the lost connection). */
  private serverFatal: { code: string; message: string } | undefined;
  private readonly handles = new Map<DbNode, PoolHandle>();
  /** SET switchyard.route: the gateway's own setting, never sent to a server. */
  private routeSetting: 'auto' | 'primary' | 'replica' = 'auto';
  /** A BEGIN the gateway answered itself: the transaction starts where its first statement goes. */
  private heldBegin: { sql: string; replay: readonly string[]; hint?: 'primary' | 'replica' } | undefined;
  /** Statements that built the open transaction on a replica (BEGIN, SAVEPOINT, SET LOCAL, ...), to rebuild it on the primary. */
  private txLog: string[] = [];
  /** Why the open transaction on a replica cannot be moved exactly (an open cursor or portal, ...). */
  private txInexact: string | undefined;
  /** The transaction was told to stay on its replica (a replica hint on its BEGIN): it is never moved. */
  private txStays = false;
  /** The replay of a transaction being moved to the primary, sent before anything else there. */
  private replay: string[] | undefined;
  /** A statement that needs the primary ran in this lease: reads after it wait for replicas to replay it. */
  private wrote = false;
  /** When the client's last write committed (performance.now()), and the primary's WAL position covering it. */
  private writeAt: number | undefined;
  private writeLsn: number | undefined;
  /** Waiting for the replica to answer everything sent before moving to the primary. */
  private moving: string | undefined;
  /** Give the connection back at the next boundary even though client messages wait: they go elsewhere. */
  private relocate = false;
  /** An error came back while moving: the client's messages up to its Sync are dropped here (the server already left its error state). */
  private dropToSync = false;
  /** The statement bound to the unnamed portal, when it shapes the transaction: logged when its Execute succeeds. */
  private portalReplay: Decision | undefined;
  /** Route of the client's unnamed statement. */
  private unnamedRoute: Decision | undefined;

  constructor(private readonly host: RelayHost) {}

  /** What the client is doing, for the admin API. */
  get activity(): string {
    if (this.lost) return 'in a lost transaction';
    if (this.phase === 'leasing') return 'waiting for a server connection';
    if (this.phase === 'idle') return this.heldBegin ? 'in transaction (not started on a server yet)' : 'idle';
    if (this.phase === 'busy') return this.moving !== undefined ? 'moving to the primary' : 'running (gateway work)';
    if (this.head < this.expected.length) return 'running';
    return this.lastStatus === 0x54 ? 'idle in transaction' : this.lastStatus === 0x45 ? 'idle in failed transaction' : 'idle (pinned)';
  }

  /** The node of the held connection. */
  get nodeName(): string | undefined {
    return this.node?.name;
  }

  private handleFor(node: DbNode): PoolHandle {
    let h = this.handles.get(node);
    if (!h) {
      h = node.pools.handle(this.host.database, this.host.user);
      this.handles.set(node, h);
    }
    return h;
  }

  // ------------------------------------------------------------ client → server

  /** One client message (a view that is valid during this call, unless copied). Returns false for Terminate. */
  fromClient(msg: Buffer): boolean {
    if (this.lost && this.phase === 'idle' && this.waiting.length === 0) return this.answerLost(msg);
    if (this.phase === 'idle' && this.waiting.length === 0) {
      if (msg[0] === T_TERMINATE) return false; // nothing in flight: no connection needed to say goodbye
      if (msg[0] === T_QUERY && this.answerWithoutServer(msg)) return true;
    }
    if (this.phase !== 'ready') {
      // Queued like anything else (Terminate too): what the client sent before it still runs, in order.
      this.waiting.push(Buffer.from(msg));
      this.waitingBytes += msg.length;
      // A client that keeps sending while it waits is held back, so what is kept for it stays bounded.
      if (this.waitingBytes >= MAX_WAITING_BYTES) this.pauseClient();
      // Leased at the end of the batch (flush): the node is chosen seeing all of it (BEGIN and its first statement).
      if (this.phase === 'idle') this.leaseDue = true;
      return true;
    }
    if (msg[0] === T_TERMINATE) return false;
    this.handle(msg);
    return true;
  }

  /** Write what handle() produced; call after a batch of fromClient(). */
  flush(): void {
    if (this.leaseDue) {
      this.leaseDue = false;
      if (this.phase === 'idle' && this.waiting.length > 0) this.lease();
    }
    const server = this.server;
    if (this.expected[this.head]?.fake) this.answerOwn();
    const out = this.toServer;
    if (!server || out.length === 0) return;
    let ok = true;
    if (out.length === 1) ok = server.write(out[0]!);
    else {
      server.cork();
      for (const b of out) ok = server.write(b);
      server.uncork();
    }
    out.length = 0;
    if (server.writableLength > 0) this.host.reader?.replace(); // a queued write may point into the read buffer
    if (!ok && !this.clientPaused) {
      this.pauseClient();
      server.onDrain(() => {
        if (this.waitingBytes < MAX_WAITING_BYTES) this.resumeClient();
      });
    }
  }

  private clientPaused = false;
  /** A message arrived with no connection held: lease one when the batch is in. */
  private leaseDue = false;

  /** Reading from the client stops while its bytes cannot go anywhere (each call is a syscall, so only on a change). */
  private pauseClient(): void {
    if (this.clientPaused) return;
    this.clientPaused = true;
    this.host.socket.pause();
  }

  private resumeClient(): void {
    if (!this.clientPaused) return;
    this.clientPaused = false;
    this.host.socket.resume();
  }

  private expect(e: Expected): void {
    this.expected.push(e);
  }

  /** Queue bytes for the server, merging a view that continues the previous one (one write for a run of messages). */
  private out(msg: Buffer): void {
    const out = this.toServer;
    const last = out[out.length - 1];
    if (last && last.buffer === msg.buffer && last.byteOffset + last.length === msg.byteOffset) {
      out[out.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + msg.length);
    } else out.push(msg);
  }

  private handle(msg: Buffer): void {
    const t = msg[0]!;
    this.host.idleInTransaction(false);
    // The server ignores everything after an error up to Sync: nothing to track, nothing to answer.
    if (this.skipping && t !== T_SYNC) {
      if (t !== T_COPY_DATA && t !== T_COPY_DONE && t !== T_COPY_FAIL) this.atBoundary = false;
      if (!this.dropToSync) this.out(msg);
      return;
    }
    switch (t) {
      case T_QUERY:
        return this.onQuery(msg);
      case T_PARSE:
        return this.onParse(msg);
      case T_BIND: {
        const stmt = m.readBindStatement(msg);
        const d = this.statementRoute(stmt);
        if (d) {
          if (this.routed(d, msg)) return;
          if (this.onReplica) {
            if (msg[5] !== 0) this.txInexact ??= 'an open portal';
            else if (d.replay.length > 0) this.portalReplay = d;
          }
        }
        this.atBoundary = false;
        this.host.metrics.query(this.host.database, this.onReplica ? 'replica' : 'primary', d?.reason ?? 'not routed');
        let md: Decision | undefined;
        let wasBlocked = false;
        if (this.host.mirror?.enabled) {
          const sql = this.boundSql(stmt);
          if (sql !== undefined) {
            md = d ?? this.route(sql);
            wasBlocked = this.mirrorBlocked;
            this.noteForMirror(md);
          }
        }
        if (this.bindEffects(stmt === '' ? this.unnamedFx : this.state.statements.get(stmt)?.fx, msg)) return;
        const name = this.serverNameFor(stmt);
        const bind = name === undefined ? msg : m.renameBind(msg, name);
        this.out(bind);
        // One statement per copy: a second Bind before Sync (an implicit transaction of several) is not copied.
        this.capture = md !== undefined && !wasBlocked && !this.groupBound ? this.captureBind(stmt, md, msg) : undefined;
        this.groupBound = true;
        if (this.capture === undefined) return this.expect(PLAIN[T_BIND]!);
        this.capture.parts.push(Buffer.from(bind));
        return this.expect({ t: T_BIND, cap: this.capture });
      }
      case T_DESCRIBE: {
        this.atBoundary = false;
        const { kind, name } = m.readTarget(msg);
        const serverName = kind === 0x53 ? this.serverNameFor(name) : undefined;
        const describe = serverName === undefined ? msg : m.renameTarget(msg, serverName);
        this.out(describe);
        // A statement described inside the group would have to exist on the mirror too: not copied.
        if (kind === 0x53) this.capture = undefined;
        const cap = this.capture;
        if (cap === undefined) return this.expect(PLAIN[T_DESCRIBE]!);
        cap.parts.push(Buffer.from(describe));
        return this.expect({ t: T_DESCRIBE, cap });
      }
      case T_CLOSE:
        this.atBoundary = false;
        this.capture = undefined;
        return this.onClose(msg);
      case T_EXECUTE: {
        this.atBoundary = false;
        this.out(msg);
        let cap = this.capture;
        // Copied: one Execute of the unnamed portal that fetches every row.
        if (cap !== undefined && (cap.executed || msg[5] !== 0 || msg.readInt32BE(6) !== 0)) cap = this.capture = undefined;
        if (cap !== undefined) {
          cap.executed = true;
          cap.parts.push(Buffer.from(msg));
        }
        const d = this.portalReplay;
        if (d === undefined || msg[5] !== 0 /* a named portal */) return this.expect(cap ? { t: T_EXECUTE, cap } : PLAIN[T_EXECUTE]!);
        this.portalReplay = undefined;
        return this.expect({ t: T_EXECUTE, ok: () => this.logged(d), cap });
      }
      case T_SYNC:
        if (this.dropToSync) {
          this.dropToSync = false;
          this.skipping = true; // cleared just below: the server's answer to this Sync is the client's
        }
        this.out(msg);
        if (this.copyIn) return; // ignored by the server until the copy ends
        this.atBoundary = true;
        this.skipping = false;
        this.groupBound = false;
        if (this.capture !== undefined) {
          const cap = this.capture;
          this.capture = undefined;
          if (cap.executed) {
            cap.parts.push(Buffer.from(msg));
            return this.expect({ t: T_SYNC, at: performance.now(), cap });
          }
        }
        return this.expect({ t: T_SYNC, at: performance.now() });
      case T_FUNCTION_CALL:
        this.capture = undefined;
        // A fast-path call runs a function the gateway knows nothing about: the primary's business.
        if (this.routed(FUNCTION_CALL, msg)) return;
        this.atBoundary = true;
        this.out(msg);
        return this.expect(PLAIN[T_FUNCTION_CALL]!);
      case T_FLUSH:
        this.atBoundary = false;
        this.out(msg);
        return;
      case T_COPY_DONE:
      case T_COPY_FAIL:
        this.copyIn = false;
        this.out(msg);
        return;
      case T_COPY_DATA:
        this.out(msg);
        return;
      default:
        // Unknown to the gateway: the server answers with an error, and the connection is not at a boundary.
        this.atBoundary = false;
        this.out(msg);
    }
  }

  /**
   * The server-side name for a statement the client refers to (made present on the connection), or
   * undefined to send the name as it is (the unnamed statement, the client's own SQL-level ones). A name
   * the client does not have that the connection might (a shared name, another client's SQL-level
   * statement) becomes one that never exists, so the client gets PostgreSQL's 26000, not someone else's statement.
   */
  private serverNameFor(name: string): string | undefined {
    if (name === '') {
      if (this.unnamedParse) {
        this.ensureUnnamed();
        return undefined;
      }
      // Never parsed by this client: whatever the connection holds is someone else's (or the gateway's).
      return this.ss!.unnamedOwner === this ? undefined : MISSING_STATEMENT;
    }
    const st = this.state.statements.get(name);
    if (st) {
      this.ensurePrepared(st);
      return st.serverName;
    }
    if (this.state.sqlPrepared.has(name)) return undefined;
    if (name.startsWith(SHARED_PREFIX) || this.ss!.sqlPrepared.has(name)) return MISSING_STATEMENT;
    return undefined;
  }

  /** Prepare the statement on this connection first if it lacks it (its ParseComplete is hidden). */
  private ensurePrepared(st: ClientStatement): void {
    const ss = this.ss!;
    if (ss.touch(st.serverName)) return;
    this.makeRoom(ss);
    const name = st.serverName;
    ss.prepared.set(name, false);
    this.out(st.parse);
    this.expect({
      t: T_PARSE,
      swallow: 'ok',
      ok: () => {
        if (ss.prepared.has(name)) ss.prepared.set(name, true);
      },
      undo: () => ss.prepared.delete(name),
    });
  }

  /**
   * The unnamed statement lives on one connection until the next Parse or Query there. A client that
   * binds it in a later request than its Parse may be on another connection by then: parse it again.
   */
  private ensureUnnamed(): void {
    const ss = this.ss!;
    if (!this.unnamedParse || ss.unnamedOwner === this) return;
    ss.unnamedOwner = this;
    this.out(this.unnamedParse);
    this.expect({
      t: T_PARSE,
      swallow: 'ok',
      undo: () => {
        if (ss.unnamedOwner === this) ss.unnamedOwner = undefined;
      },
    });
  }

  /** Keep the per-connection statement cache bounded: close the least recently used. */
  private makeRoom(ss: ServerState): void {
    while (ss.prepared.size >= this.host.preparedCacheSize) {
      const victim = ss.prepared.keys().next().value!;
      const confirmed = ss.prepared.get(victim)!;
      ss.prepared.delete(victim);
      this.out(m.close('S', victim));
      this.expect({ t: T_CLOSE, swallow: 'ok', undo: () => ss.prepared.set(victim, confirmed) });
    }
  }

  private onParse(msg: Buffer): void {
    this.capture = undefined; // a copy is of one statement: a group that parses another is not copied
    const boundaryBefore = this.head === this.expected.length && this.atBoundary;
    this.atBoundary = false;
    const p = m.readParse(msg);
    // Routed when it is bound (statementRoute), unless it is the gateway's own setting, refused here.
    const route = this.host.topology.splitting || GATEWAY_WORD.test(p.sql) ? this.route(p.sql) : undefined;
    const fx = analyze(p.sql);
    // Effects happen when the statement runs (noted at Bind). What must exist first is made to exist
    // now, when a simple query can still go ahead of the request; a name in the gateway's namespace is
    // refused when the statement runs.
    let sql = p.sql;
    if (route?.gateway || route?.gatewayError) {
      // Never sent to a server: the statement runs as an error explaining the one way it works.
      sql = raiseSql('0A000', 'SET/SHOW switchyard.route is handled by switchyard itself and only in a simple-protocol query: send it as a query without parameters (psql and node-postgres do; with postgres.js use sql.unsafe(text).simple())');
    } else if (!fx.plain && fx.parseError === undefined) {
      const refused = this.reservedName(fx);
      if (refused) sql = refused;
      else if (boundaryBefore && !this.skipping) this.ensureSqlPrepared(fx);
    }
    const effects = fx.plain || fx.parseError !== undefined ? undefined : fx;
    if (p.name === '') {
      const bytes = sql === p.sql ? Buffer.from(msg) : m.parse('', sql, []);
      this.unnamedParse = bytes;
      this.unnamedFx = effects;
      this.unnamedRoute = route;
      this.unnamedParsedUnder = this.parseSettingsKey();
      const ss = this.ss!;
      ss.unnamedOwner = this;
      this.out(bytes);
      return this.expect({
        t: T_PARSE,
        undo: () => {
          // A failed Parse leaves no unnamed statement behind.
          if (this.unnamedParse === bytes) this.unnamedParse = undefined;
          if (ss.unnamedOwner === this) ss.unnamedOwner = undefined;
        },
      });
    }
    const cs = this.state;
    const existing = cs.statements.get(p.name);
    if (existing) {
      // PostgreSQL refuses to redefine a name (42P05): let the server say so, under the shared name.
      this.ensurePrepared(existing);
      this.out(m.parse(existing.serverName, p.sql, p.paramTypes));
      return this.expect(PLAIN[T_PARSE]!);
    }
    const ss = this.ss!;
    const registry = this.host.registry;
    let serverName = sql === p.sql ? registry.nameFor(this.statementKey(p.sql), p.paramTypes) : registry.fresh();
    // Sent but not yet confirmed by another client's Parse, which may still fail: do not count on it.
    if (ss.prepared.get(serverName) === false) serverName = registry.fresh();
    const st: ClientStatement = { serverName, parse: m.parse(serverName, sql, sql === p.sql ? p.paramTypes : []), fx: effects, route, parsedUnder: this.parseSettingsKey() };
    cs.statements.set(p.name, st);
    const forget = () => {
      if (cs.statements.get(p.name) === st) cs.statements.delete(p.name);
    };
    if (ss.touch(serverName)) {
      // Already prepared here (by this client earlier, or another with the same statement): answer for the server.
      return this.expect({ t: T_PARSE, fake: m.parseComplete, undo: forget });
    }
    this.makeRoom(ss);
    ss.prepared.set(serverName, false);
    this.out(st.parse);
    this.expect({
      t: T_PARSE,
      ok: () => {
        if (ss.prepared.has(serverName)) ss.prepared.set(serverName, true);
      },
      undo: () => {
        forget();
        ss.prepared.delete(serverName);
      },
    });
  }

  /**
   * Statements are shared by text, but their meaning can depend on settings read when they are parsed
   * (search_path names the tables; DateStyle, TimeZone and IntervalStyle convert literals): those go into the key.
   */
  private statementKey(sql: string): string {
    const extra = this.parseSettingsKey();
    return extra ? `${extra}\0${sql}` : sql;
  }

  /** The client's settings that shape parsing, as a key ('' when all are at their defaults). */
  private parseSettingsKey(): string {
    const s = this.state.settings;
    let extra = '';
    for (const n of PARSE_SETTINGS) {
      const v = s.get(n);
      if (v !== undefined) extra += `${n}=${v}\0`;
    }
    return extra;
  }

  /** At Bind the statement runs in this transaction: note what it does to session state. Returns true when LISTEN took over. */
  private bindEffects(fx: SessionEffects | undefined, msg: Buffer): boolean {
    if (!fx) return false;
    this.noteEffects(fx);
    this.noteChannels(fx, false);
    if (fx.listen.length > 0 && !this.listening.has(msg)) {
      this.listenFirst(msg, fx.listen);
      return true;
    }
    return false;
  }

  private onClose(msg: Buffer): void {
    const { kind, name } = m.readTarget(msg);
    if (kind !== 0x53 || name === '') {
      this.out(msg);
      return this.expect(PLAIN[T_CLOSE]!);
    }
    // Statements are shared on the server: forget the client's name, keep the server's statement cached.
    const cs = this.state;
    const st = cs.statements.get(name);
    cs.statements.delete(name);
    this.expect({
      t: T_CLOSE,
      fake: m.closeComplete,
      undo: () => {
        if (st && !cs.statements.has(name)) cs.statements.set(name, st);
      },
    });
  }

  private onQuery(msg: Buffer): void {
    this.capture = undefined;
    const sql = m.readQuery(msg);
    // Without replicas to split to, only the gateway's own setting needs the router.
    const d = this.host.topology.splitting || GATEWAY_WORD.test(sql) ? this.route(sql) : UNROUTED;
    if (d.gateway || d.gatewayError) return this.expect({ t: T_QUERY, fake: () => this.gatewayAnswer(d) });
    if (this.routed(d, msg)) return;
    let md: Decision | undefined;
    let wasBlocked = false;
    if (this.host.mirror?.enabled) {
      md = d === UNROUTED ? this.route(sql) : d;
      wasBlocked = this.mirrorBlocked;
      this.noteForMirror(md);
    }
    this.atBoundary = true;
    // A simple Query destroys the unnamed statement, as in PostgreSQL.
    this.unnamedParse = undefined;
    this.ss!.unnamedOwner = undefined;
    const fx = analyze(sql);
    if (fx.plain || fx.parseError !== undefined) {
      this.out(msg);
      // A read that opens no transaction, first on a replica connection: it can run again elsewhere.
      if (msg !== this.retried) this.retries = 0;
      const read = d.target !== 'primary' && d.hint === undefined && this.routeSetting === 'auto' && d.txn === undefined && d.replay.length === 0;
      const cap = md !== undefined && fx.plain && !wasBlocked ? this.captureQuery(sql, md, msg) : undefined;
      if (read && this.onReplica && fx.plain && this.head === this.expected.length && this.lastStatus === 0x49 && this.retries < MAX_RETRIES) {
        this.retryMsg = msg === this.fromQueue ? msg : Buffer.from(msg);
        this.retryEntry = { t: T_QUERY, at: performance.now(), cap };
        if (this.retries === 0) this.host.metrics.query(this.host.database, 'replica', d.reason);
        return this.expect(this.retryEntry);
      }
      return this.expect(this.queryEntry(d, cap));
    }
    const refused = this.reservedName(fx);
    if (refused) {
      this.out(m.query(refused));
      return this.expect(PLAIN[T_QUERY]!);
    }
    // DEALLOCATE of a protocol-level statement: its server copy is shared, so the gateway answers.
    if (this.isProtocolDeallocate(fx)) {
      const name = fx.deallocate[0]!;

      // Emitted after everything before it: the status is that of the last ReadyForQuery by then.
      return this.expect({
        t: T_QUERY,
        fake: () => {
          // Decided when the answer is due: only then is the transaction status of the request known.
          if (this.lastStatus !== 0x45 /* E */) this.state.statements.delete(name);
          return this.lastStatus === 0x45 /* E */
            ? Buffer.concat([
                new PgError('25P02', 'current transaction is aborted, commands ignored until end of transaction block').toMessage(),
                m.readyForQuery('E'),
              ])
            : Buffer.concat([m.commandComplete('DEALLOCATE'), m.readyForQuery(String.fromCharCode(this.lastStatus) as m.TxStatus)]);
        },
      });
    }
    this.noteEffects(fx);
    this.noteChannels(fx, true);
    if (fx.listen.length > 0 && !this.listening.has(msg)) return this.listenFirst(msg, fx.listen);
    this.ensureSqlPrepared(fx);
    this.out(msg);
    this.expect(this.queryEntry(d));
  }

  /** The entry for a client Query: on a replica, statements that shape the transaction are logged when they succeed. */
  private queryEntry(d: Decision, cap?: Capture): Expected {
    const at = performance.now();
    this.host.metrics.query(this.host.database, this.onReplica ? 'replica' : 'primary', d.reason);
    if (d.replay.length === 0 || !this.onReplica) return cap ? { t: T_QUERY, at, cap } : { t: T_QUERY, at };
    return {
      t: T_QUERY,
      at,
      cap,
      ok: () => this.logged(d),
      // Which of several statements took effect before the error is not known: the transaction can no longer move.
      undo: () => {
        if (d.multi) this.txInexact ??= 'a statement list that failed part way';
      },
    };
  }

  /** A statement that shapes the transaction on a replica succeeded: it is replayed if the transaction moves. */
  private logged(d: Decision): void {
    this.txLog.push(...d.replay);
    // Under a repeatable-read default the transaction's snapshot is the replica's: it cannot move.
    if (d.txn === 'begin' && this.state.settings.get('default_transaction_isolation') === 'repeatable read') {
      this.txInexact ??= 'a repeatable-read snapshot';
    }
  }

  // ------------------------------------------------------------ mirroring

  /** A client request being copied, from its Bind to its Sync. */
  private capture: Capture | undefined;
  /** A Bind was sent since the last Sync. */
  private groupBound = false;
  /**
   * Sent in the transaction in progress (or in an autocommit one not yet answered): a write, a change of
   * settings (SET LOCAL, or a SET not yet read back), a cursor, a snapshot isolation level. The mirror
   * could not reproduce what statements after it see: they are not copied.
   */
  private mirrorBlocked = false;

  /** The text of the statement a Bind runs (undefined: not one the client prepared through the gateway). */
  private boundSql(stmt: string): string | undefined {
    const parse = stmt === '' ? this.unnamedParse : this.state.statements.get(stmt)?.parse;
    return parse === undefined ? undefined : m.readParse(parse).sql;
  }

  /**
   * Every statement sent while mirroring is on: one that writes or shapes its transaction (settings,
   * a cursor, a snapshot) keeps the statements after it in the transaction from being copied.
   */
  private noteForMirror(d: Decision): void {
    if (d.target === 'primary' || shapesTransaction(d)) this.mirrorBlocked = true;
  }

  /**
   * Whether a statement (not blocked by one before it) is copied to the mirror: one statement that is
   * not transaction control and shapes nothing, a read (or, with mirror.statements all, a write: kept
   * only if it succeeded in autocommit, see captured()), not in a pinned session (the mirror could not
   * see what it holds), not too large, selected and sampled.
   */
  private mirrorDecision(sql: string, d: Decision, bytes: number): Decision | undefined {
    const mirror = this.host.mirror!;
    if (shapesTransaction(d) || this.state.pins.length > 0 || bytes > MAX_COPY_BYTES) return undefined;
    if (d.gateway || d.gatewayError || d.txn !== undefined || d.multi || d.execute !== undefined || d.target === 'any') return undefined;
    if (d.target === 'primary' && mirror.config.statements !== 'all') return undefined;
    return mirror.admit(this.host.database, this.host.user, sql, d) ? d : undefined;
  }

  private newCapture(sql: string, d: Decision, statements: readonly { name: string; parse: Buffer }[]): Capture {
    const cap = new Capture(sql, d, statements, performance.now());
    // Under a snapshot isolation default a statement in a transaction block sees the transaction's snapshot: only autocommit ones compare.
    const iso = this.state.settings.get('default_transaction_isolation');
    cap.autocommitOnly = d.target === 'primary' || iso === 'repeatable read' || iso === 'serializable';
    return cap;
  }

  private captureQuery(sql: string, d: Decision, msg: Buffer): Capture | undefined {
    const md = this.mirrorDecision(sql, d, msg.length);
    if (md === undefined) return undefined;
    const cap = this.newCapture(sql, md, NO_STATEMENTS);
    cap.parts.push(Buffer.from(msg));
    return cap;
  }

  /** A Bind of the unnamed portal for a statement the mirror can prepare too: the group it starts may be copied. */
  private captureBind(stmt: string, d: Decision, msg: Buffer): Capture | undefined {
    if (msg[5] !== 0 /* a named portal */) return undefined;
    let parse: Buffer | undefined;
    let statements = NO_STATEMENTS;
    // The mirror prepares it under the client's settings now: those that shape parsing must be the ones it was parsed under.
    const under = this.parseSettingsKey();
    if (stmt === '') {
      if (!this.unnamedParse || this.unnamedFx !== undefined || this.unnamedParsedUnder !== under) return undefined;
      parse = this.unnamedParse;
    } else {
      const st = this.state.statements.get(stmt);
      if (!st || st.fx !== undefined || st.parsedUnder !== under) return undefined;
      parse = st.parse;
      statements = [{ name: st.serverName, parse: st.parse }];
    }
    const sql = m.readParse(parse).sql;
    const md = this.mirrorDecision(sql, d, parse.length + msg.length);
    if (md === undefined) return undefined;
    const cap = this.newCapture(sql, md, statements);
    if (stmt === '') cap.parts.push(Buffer.from(parse));
    return cap;
  }

  /** The client has its answer to a copied request: hand the copy to the mirror, unless it cannot be compared fairly. */
  private captured(cap: Capture, after: number): void {
    const before = cap.before;
    // A failed transaction answers 25P02 whatever the statement; a write is copied only when it committed on its own.
    if (before === 0x45 /* E */ || after === 0x45 || cap.dead) return;
    if (cap.autocommitOnly && (before !== 0x49 || after !== 0x49)) return;
    const write = cap.d.target === 'primary';
    const primary = cap.builder.finish();
    // A write the primary refused must not change the mirror.
    if (write && !primary.ok) return;
    this.host.mirror!.offer({
      client: this.host.id,
      database: this.host.database,
      user: this.host.user,
      sql: cap.sql,
      fingerprint: this.host.mirror!.fingerprintOf(cap.sql, cap.d),
      ordered: cap.d.ordered === true,
      request: cap.parts.length === 1 ? cap.parts[0]! : Buffer.concat(cap.parts),
      statements: cap.statements,
      settings: new Map(this.state.settings),
      primary,
      primaryMs: performance.now() - cap.at,
      sentAt: cap.at,
      write,
    });
  }

  // ------------------------------------------------------------ routing

  /** Where a statement goes: EXECUTE of a SQL-prepared statement goes where the statement it runs goes. */
  private routeOf(d: Decision): Decision['target'] {
    let t = d.target;
    if (d.execute === undefined || t === 'primary' || d.hint) return t;
    for (const name of d.execute) {
      const text = this.state.sqlPrepared.get(name);
      const inner = text === undefined ? 'primary' : this.host.router.classifyPrepared(text).target;
      if (inner === 'primary') return 'primary';
      if (inner === 'replica') t = 'replica';
    }
    return t;
  }

  /**
   * One statement on the held connection: on the primary, note a write (for read-your-writes); on a
   * replica, move the transaction to the primary when the statement needs it. True when the message was taken.
   */
  private routed(d: Decision, msg: Buffer): boolean {
    if (!this.onReplica) {
      if (this.routeOf(d) === 'primary') this.wrote = true;
      return false;
    }
    if (this.needsPrimary(d)) {
      this.switchToPrimary(msg, d.reason);
      return true;
    }
    // It runs here: what it leaves open (a cursor) is the replica's.
    if (d.inexact !== undefined) this.txInexact ??= d.inexact;
    return false;
  }

  private needsPrimary(d: Decision): boolean {
    if (this.routeSetting === 'replica') return false;
    if (this.routeSetting !== 'primary' && this.routeOf(d) !== 'primary') return false;
    // A failed transaction: the statement gets its 25P02 where it is, as it would on the primary. A
    // read-only one does move: the primary answers as PostgreSQL would (25006 for a write, but NOTIFY
    // or LOCK work there, and not on a standby).
    return this.lastStatus !== 0x45 /* E */ && !this.txStays;
  }

  /** The node for the transaction the client's next message starts. */
  private chooseNode(): DbNode {
    const topo = this.host.topology;
    const primary = (why: string) => this.toPrimary(why);
    if (!topo.splitting) return primary('not splitting');
    if (this.routeSetting === 'primary') return primary('hint');
    if (this.state.pins.length > 0) return primary('pinned');
    // The router reads literals as standard_conforming_strings = on does; a session with it off stays on the primary.
    if (this.state.settings.get('standard_conforming_strings') === 'off') return primary('settings');
    const held = this.heldBegin;
    const lead = this.leadDecision();
    // Told to use a replica (a hint, or SET switchyard.route): read-your-writes does not hold it back.
    const toldReplica = this.routeSetting === 'replica' || held?.hint === 'replica' || lead?.hint === 'replica';
    const target = held?.hint === 'replica' ? 'replica' : lead ? this.routeOf(lead) : 'any';
    if (target === 'primary' && !toldReplica) return primary(lead?.hint ? 'hint' : (lead?.reason ?? 'write'));
    // Serializable transactions cannot run on a standby; repeatable-read snapshots cannot move off one.
    const iso = this.state.settings.get('default_transaction_isolation');
    if (iso === 'serializable' || (iso === 'repeatable read' && this.heldBegin)) return primary('isolation');
    let min: number | undefined;
    if (this.writeAt !== undefined && this.host.readYourWrites && !toldReplica) {
      this.writeLsn ??= topo.lsnAfter(this.writeAt);
      if (this.writeLsn === undefined) return primary('read-your-writes'); // no WAL position read since the write yet
      if (topo.allReplayed(this.writeLsn)) this.writeAt = this.writeLsn = undefined;
      else min = this.writeLsn;
    }
    this.chooseReason = toldReplica ? 'hint' : min !== undefined ? 'read-your-writes' : 'read';
    return topo.pickRead(this.host.address, min, this.avoid);
  }

  private toPrimary(why: string): DbNode {
    this.chooseReason = why;
    return this.host.topology.primary;
  }

  /** The lease being made starts a client transaction (counted); noCount: the next one does not (a read run again). */
  private countLease = false;
  private noCount = false;
  /** Why chooseNode chose (for the transactions metric). */
  private chooseReason = 'read';
  /** When the lease was asked for and when it was granted (performance.now()). */
  private leaseAskedAt = 0;
  private leasedAt = 0;

  private memoSql: string | undefined;
  private memo: Decision | undefined;

  /**
   * The router's decision, remembered for the last text: a simple query is looked at when it arrives
   * (a held BEGIN?), when its lease picks a node, and when it is sent.
   */
  private route(sql: string): Decision {
    if (sql === this.memoSql) return this.memo!;
    const d = this.host.router.route(sql);
    this.memoSql = sql;
    this.memo = d;
    return d;
  }

  /** The decision for a prepared statement (decided at its Parse, or now if it was parsed while not splitting). */
  private statementRoute(name: string): Decision | undefined {
    if (name === '') {
      if (!this.unnamedRoute && this.unnamedParse && this.host.topology.splitting) this.unnamedRoute = this.route(m.readParse(this.unnamedParse).sql);
      return this.unnamedRoute;
    }
    const st = this.state.statements.get(name);
    if (st && !st.route && this.host.topology.splitting) st.route = this.route(m.readParse(st.parse).sql);
    return st?.route;
  }

  /** The decision for the first statement waiting to run (undefined: a message that runs no statement). */
  private leadDecision(): Decision | undefined {
    // A plain BEGIN in the extended protocol (pgjdbc sends one ahead of the first statement, in the
    // same write) does not decide: the statement after it does.
    let begin: Decision | undefined;
    const parsedHere = new Map<string, Decision>();
    for (const msg of this.waiting) {
      let d: Decision | undefined;
      switch (msg[0]) {
        case T_QUERY:
          d = this.route(m.readQuery(msg));
          break;
        case T_PARSE: {
          const p = m.readParse(msg);
          d = this.route(p.sql);
          parsedHere.set(p.name, d);
          continue; // decided by its Bind (a Parse alone runs nothing), unless nothing else comes
        }
        case T_BIND: {
          const name = m.readBindStatement(msg);
          d = parsedHere.get(name) ?? this.statementRoute(name);
          break;
        }
        case T_FUNCTION_CALL:
          return FUNCTION_CALL;
        default:
          continue;
      }
      if (d === undefined) continue;
      if (d.txn === 'begin' && d.target !== 'primary' && d.hint === undefined) {
        begin ??= d;
        continue;
      }
      return d;
    }
    return begin ?? parsedHere.values().next().value;
  }

  /**
   * Statements the gateway answers without a server connection (no transaction is open): its own
   * setting, and BEGIN — held until the transaction's first statement says where it goes — with a
   * COMMIT or ROLLBACK that ends a held BEGIN at once.
   */
  private answerWithoutServer(msg: Buffer): boolean {
    const sql = m.readQuery(msg);
    const topo = this.host.topology;
    if (!topo.splitting && !GATEWAY_WORD.test(sql)) return false;
    const d = this.route(sql);
    const socket = this.host.socket;
    if (d.gateway || d.gatewayError) {
      this.writeOwn(this.gatewayAnswer(d));
      return true;
    }
    if (!topo.splitting) return false;
    if (this.heldBegin) {
      if ((d.txn === 'commit' || d.txn === 'rollback') && !/\bchain\b/i.test(sql)) {
        this.heldBegin = undefined;
        this.lastStatus = 0x49; /* I */
        this.writeOwn(Buffer.concat([m.commandComplete(d.txn === 'commit' ? 'COMMIT' : 'ROLLBACK'), m.readyForQuery('I')]));
        this.deliverQueued();
        return true;
      }
      return false;
    }
    // A BEGIN hinted to the primary goes there at once; one hinted to a replica stays there, like READ ONLY.
    if (d.txn !== 'begin' || d.snapshot || d.hint === 'primary' || this.state.pins.length > 0 || this.routeSetting === 'primary') return false;
    this.heldBegin = { sql, replay: d.replay, ...(d.hint && { hint: d.hint }) };
    this.lastStatus = 0x54; /* T */
    this.writeOwn(Buffer.concat([m.commandComplete('BEGIN'), m.readyForQuery('T')]));
    return true;
  }

  /** The gateway's answer to SET / RESET / SHOW switchyard.route (one statement, a simple Query). */
  private gatewayAnswer(d: Decision): Buffer {
    const status = String.fromCharCode(this.lastStatus) as m.TxStatus;
    const z = m.readyForQuery(status);
    if (this.lastStatus === 0x45 /* E */) {
      return Buffer.concat([new PgError('25P02', 'current transaction is aborted, commands ignored until end of transaction block').toMessage(), z]);
    }
    if (d.gatewayError !== undefined) return Buffer.concat([new PgError('22023', d.gatewayError).toMessage(), z]);
    const g = d.gateway!;
    if ('set' in g) {
      this.routeSetting = g.set;
      return Buffer.concat([m.commandComplete('SET'), z]);
    }
    return Buffer.concat([m.rowDescription(['switchyard.route']), m.dataRow([this.routeSetting]), m.commandComplete('SHOW'), z]);
  }

  /**
   * The statement in msg needs the primary and the client's transaction is on a replica: wait for the
   * replica to answer everything before it, then move (continueMove). msg runs again afterwards.
   */
  private switchToPrimary(msg: Buffer, reason: string): void {
    const copy = Buffer.from(msg);
    this.waiting.unshift(copy);
    this.waitingBytes += copy.length;
    this.phase = 'busy';
    this.moving = reason;
    // An implicit transaction of the extended protocol ends here (it only read): the server answers all before it.
    if (!this.atBoundary) {
      this.out(m.sync());
      this.expect(INJECTED_SYNC);
      this.atBoundary = true;
    }
    if (this.head === this.expected.length) queueMicrotask(() => this.continueMove());
  }

  private continueMove(): void {
    const reason = this.moving;
    const server = this.server;
    if (reason === undefined || this.closed || !server) return;
    this.moving = undefined;
    // An error came back meanwhile: the client's messages up to its Sync are skipped, as the server would have.
    if (this.dropToSync) {
      this.skipping = true;
      return this.resume();
    }
    // A failed transaction: the statement gets its 25P02 where the transaction is.
    if (server.txStatus === 'E') return this.resume();
    const from = this.node!;
    // A session pinned to its replica connection (a WITH HOLD cursor hinted there, say) cannot leave it.
    if (this.state.pins.length > 0) return this.refuseSwitch(from, reason, `a session pinned to its connection there (${this.state.pins.join(', ')})`);
    // No transaction open: give the connection back as usual; the waiting statement leases the primary.
    if (server.txStatus === 'I') {
      this.relocate = true;
      this.phase = 'ready';
      return this.settle();
    }
    const inexact = this.txInexact ?? (this.txLog.length === 0 ? 'a start the gateway did not see' : undefined);
    if (inexact !== undefined) return this.refuseSwitch(from, reason, inexact);
    this.host.events.emit({ type: 'txn_switched', client: this.host.id, from: from.name, to: this.host.topology.primary.name, reason });
    this.replay = this.txLog;
    this.txLog = [];
    // The replica's transaction is rolled back and its connection reset by the pool before anyone reuses it.
    this.server = undefined;
    this.ss?.clear();
    this.ss = undefined;
    from.pools.release(server, true, 'discard');
    this.leaseFrom(this.host.topology.primary);
  }

  /** A transaction that cannot move exactly fails instead, with the reason and what to do. */
  private refuseSwitch(from: DbNode, reason: string, inexact: string): void {
    this.host.events.emit({ type: 'switch_refused', client: this.host.id, node: from.name, reason: inexact });
    const sql = raiseSql(
      '25000',
      `switchyard cannot move this transaction from replica "${from.name}" to the primary (${reason}): it has ${INEXACT[inexact] ?? inexact}, which cannot be recreated there. ` +
        'Roll back, and start transactions that write with /* switchyard:primary */ BEGIN or after SET switchyard.route = primary',
    );
    const msg = this.waiting[0]!;
    if (msg[0] === T_QUERY || msg[0] === T_FUNCTION_CALL) {
      this.waiting.shift();
      this.waitingBytes -= msg.length;
      this.out(m.query(sql));
      this.expect(PLAIN[T_QUERY]!);
    } else {
      // The extended protocol: a failing statement ahead of the client's, whose messages the server then skips up to Sync.
      this.ss!.unnamedOwner = undefined;
      this.out(m.parse('', sql));
      this.expect({ t: T_PARSE, swallow: 'ok' });
      this.out(m.bind(''));
      this.expect({ t: T_BIND, swallow: 'ok' });
      this.out(m.execute());
      this.expect(PLAIN[T_EXECUTE]!);
      this.atBoundary = false;
      this.skipping = true; // what the client sent up to Sync is skipped by the server after the error
    }
    this.resume();
  }

  /** SQL naming a statement in the gateway's own namespace: the server raises the error PostgreSQL would (SQL instead of the client's). */
  private reservedName(fx: SessionEffects): string | undefined {
    for (const p of fx.prepare) {
      if (p.name.startsWith(SHARED_PREFIX)) {
        return raiseSql('42939', `prepared statement names starting with "${SHARED_PREFIX}" are reserved by switchyard: "${p.name}"`);
      }
    }
    for (const n of [...fx.execute, ...fx.deallocate]) {
      if (n.startsWith(SHARED_PREFIX) && !this.state.sqlPrepared.has(n)) return raiseSql('26000', `prepared statement "${n}" does not exist`);
    }
    return undefined;
  }

  private isProtocolDeallocate(fx: SessionEffects): boolean {
    if (fx.deallocate.length !== 1 || fx.deallocateAll || fx.prepare.length || fx.execute.length || fx.set.length || fx.reset.length) return false;
    if (fx.resetAll || fx.listen.length || fx.unlisten.length || fx.unlistenAll || fx.pins.length || fx.mayUnpin) return false;
    const name = fx.deallocate[0]!;
    return this.state.statements.has(name) && !this.state.sqlPrepared.has(name);
  }

  /** Queries already past their LISTEN subscription (set while the subscription is awaited). */
  private readonly listening = new WeakSet<Buffer>();

  /**
   * The gateway's listening connection subscribes before the client's LISTEN runs, so the client's
   * ReadyForQuery means it will get every notification committed after it, as with PostgreSQL.
   */
  private listenFirst(msg: Buffer, channels: string[]): void {
    const copy = Buffer.from(msg);
    this.listening.add(copy);
    this.waiting.unshift(copy);
    this.waitingBytes += copy.length;
    this.phase = 'busy';
    const hub = this.host.hubs.hub(this.host.database, this.host.user);
    for (const ch of channels) this.state.channels.add(ch);
    void Promise.all(channels.map((ch) => hub.listen(this, ch))).then(
      () => this.resume(),
      (e: Error) => this.host.fatal(new PgError(SQLSTATE.CONNECTION_FAILURE, `could not listen through the gateway's listening connection: ${e.message}`)),
    );
  }

  /**
   * LISTEN and UNLISTEN take effect at COMMIT. The statements run on the pooled connection for real;
   * before an UNLISTEN there, the connection is made to listen on the channels the client has, so that
   * after the transaction pg_listening_channels() tells what committed (read by the probe). Only a
   * simple Query can be preceded by the gateway's own LISTEN; an UNLISTEN in the extended protocol is
   * taken as committed.
   */
  private noteChannels(fx: SessionEffects, canMirror: boolean): void {
    if (fx.listen.length === 0 && fx.unlisten.length === 0 && !fx.unlistenAll) return;
    const tx = this.tx;
    const cs = this.state;
    const named = fx.unlistenAll ? [...cs.channels] : fx.unlisten;
    for (const ch of [...fx.listen, ...named]) {
      tx.channels.add(ch);
      if (!tx.before.has(ch)) tx.before.set(ch, cs.channels.has(ch));
    }
    // A standby refuses LISTEN: there the client's own statement gets the server's error, nothing of the gateway's.
    if (!canMirror || this.onReplica) return;
    const stmts: string[] = [];
    // Inside an open transaction the outcome is not known until it ends: a sentinel LISTEN tells it.
    if ((this.server!.txStatus !== 'I' || this.head < this.expected.length) && !tx.sentinel) {
      tx.sentinel = true;
      stmts.push(`LISTEN ${quoteIdent(COMMIT_SENTINEL)}`);
    }
    for (const ch of named) {
      if (cs.channels.has(ch) && !tx.mirrored.has(ch)) {
        tx.mirrored.add(ch);
        stmts.push(`LISTEN ${quoteIdent(ch)}`);
      }
    }
    if (stmts.length === 0) return;
    this.out(m.query(stmts.join('; ')));
    this.expect(INJECTED_QUERY);
  }

  /** SQL-level prepared statements the query uses, made to match the client's definitions on this connection. */
  private ensureSqlPrepared(fx: SessionEffects): void {
    const cs = this.state;
    const ss = this.ss!;
    const sql: string[] = [];
    const names = new Set<string>([...fx.execute, ...fx.deallocate, ...fx.prepare.map((p) => p.name)]);
    for (const n of names) {
      const want = cs.sqlPrepared.get(n);
      const have = ss.sqlPrepared.get(n);
      if (want === have) continue;
      if (have !== undefined) {
        sql.push(`DEALLOCATE ${quoteIdent(n)}`);
        ss.sqlPrepared.delete(n);
      }
      if (want !== undefined) {
        sql.push(want);
        ss.sqlPrepared.set(n, want);
      }
    }
    if (sql.length === 0) return;
    this.out(m.query(sql.join(';\n')));
    this.expect(INJECTED_QUERY);
  }

  private noteEffects(fx: SessionEffects): void {
    this.tx.add(fx);
    // Settings change when the transaction ends and the gateway reads them back: nothing is copied till then.
    this.mirrorBlocked = true;
  }

  // ------------------------------------------------------------ server → client

  /** Server → client: the head and run of whole messages from one read. Returns true when a write of them was queued. */
  onServerData(head: Buffer | undefined, run: Buffer): boolean {
    if (head) this.walk(head);
    if (run.length > 0) this.walk(run);
    // Part of the answer is the client's now: the statement can no longer run again elsewhere.
    if (this.retryMsg && this.toClient.length > 0) this.retryMsg = this.retryEntry = undefined;
    const server = this.server;
    // Hand the connection on first, then answer: the next client's query reaches the server before this
    // client's reply is written (on a busy machine a write can cost a context switch). The reply's bytes
    // stay valid: nothing is read from the server until this returns.
    this.assembling = true;
    this.settle();
    this.assembling = false;
    const out = this.toClient;
    const socket = this.host.socket;
    let ok = true;
    if (out.length === 1) ok = socket.write(out[0]!);
    else if (out.length > 1) {
      socket.cork();
      for (const b of out) ok = socket.write(b);
      socket.uncork();
    }
    out.length = 0;
    // Backpressure only while the connection is still this client's.
    if (!ok && server && this.server === server) {
      server.pause();
      // Given back meanwhile, the connection was resumed by the pool and may be paused by its next holder.
      socket.once('drain', () => {
        if (this.server === server) server.resume();
      });
    }
    return socket.writableLength > 0;
  }

  /** True while onServerData collects the client's bytes: notifications join them instead of overtaking them. */
  private assembling = false;

  /** Match every message in buf against what is expected; queue the client's share of it in toClient. */
  private walk(buf: Buffer): void {
    let seg = 0;
    let off = 0;
    const cut = (drop: boolean, end: number) => {
      if (off > seg) this.toClient.push(buf.subarray(seg, off));
      if (!drop) this.toClient.push(buf.subarray(off, end));
      seg = end;
    };
    while (off < buf.length) {
      const t = buf[off]!;
      const end = off + 1 + buf.readInt32BE(off + 1);
      const verdict = this.reply(t, buf, off);
      if (verdict === DROP || (verdict === KEEP && this.expected[this.head]?.fake)) {
        cut(verdict === DROP, end);
        this.emitFakes();
      }
      off = end;
    }
    if (off > seg) this.toClient.push(seg === 0 ? buf : buf.subarray(seg, off));
  }

  /** Decide one server message: PASS (part of a run), KEEP (forward, then check for fakes), DROP. */
  private reply(t: number, buf: Buffer, off: number): number {
    const e = this.expected[this.head];
    const cap = e?.cap;
    if (cap !== undefined) {
      cap.builder.add(buf.subarray(off, off + 1 + buf.readInt32BE(off + 1)));
      if (t === 0x5a /* Z */) cap.before = this.lastStatus;
      // CopyIn, CopyOut, CopyBoth: the copy could not carry the data.
      else if (t === 0x47 || t === 0x48 || t === 0x57) cap.dead = true;
    }
    if (t === 0x41 /* A */) return DROP; // notifications come through the listening connection
    // The server is going away (shutdown, terminated backend): the gateway answers for the lost connection.
    // An immediate shutdown announces itself with a WARNING notice (57P01/57P02) before the connection
    // drops: kept from the client too, so a read not yet answered can still run again elsewhere.
    if ((t === 0x45 /* E */ && isFatal(buf, off)) || (t === 0x4e /* N */ && isShutdownNotice(buf, off))) {
      const f = m.readErrorFields(buf.subarray(off, off + 1 + buf.readInt32BE(off + 1)));
      this.serverFatal = { code: f.get('C') ?? SQLSTATE.CONNECTION_FAILURE, message: f.get('M') ?? 'the server is going away' };
      return DROP;
    }
    if (t === 0x5a /* Z */) this.lastStatus = buf[off + 5]!;
    if (!e) return PASS; // asynchronous: NoticeResponse, ParameterStatus, a FATAL error before closing
    if (e.swallow === 'all') {
      if (t === 0x5a /* Z */) {
        this.pop();
        if (buf[off + 5] === 0x49 /* I */) this.endTransaction();
      } else if (t === 0x45 /* E */) e.undo?.();
      return DROP;
    }
    // Query and FunctionCall run until their ReadyForQuery; an error while processing Sync (a deferred
    // constraint at commit) does not start skipping either: Sync is answered by E and then Z.
    const simple = e.t === T_QUERY || e.t === T_FUNCTION_CALL || e.t === T_SYNC;
    switch (t) {
      case 0x5a: {
        // Z ReadyForQuery
        this.errorSent = false;
        if (e.at !== undefined) this.host.metrics.answered(this.host.database, this.onReplica ? 'replica' : 'primary', performance.now() - e.at);
        if (cap !== undefined) this.captured(cap, buf[off + 5]!);
        this.pop();
        if (e.ok || e.undo) (buf[off + 5] === 0x45 /* E */ ? e.undo : e.ok)?.();
        if (buf[off + 5] === 0x49 /* I */) this.endTransaction();
        return KEEP;
      }
      case 0x47: // G CopyInResponse
        // The server ignores Sync (and Flush) until CopyDone/CopyFail: those queued behind this Execute get no answer.
        if (!simple) this.enterCopyIn();
        return PASS;
      case 0x31: // 1 ParseComplete
      case 0x32: // 2 BindComplete
      case 0x33: // 3 CloseComplete
      case 0x6e: // n NoData
      case 0x54: // T RowDescription
      case 0x43: // C CommandComplete
      case 0x49: // I EmptyQueryResponse
      case 0x73: // s PortalSuspended
        if (simple) return PASS;
        if (t === 0x73 && this.onReplica) this.txInexact ??= 'a suspended portal';
        this.pop();
        e.ok?.();
        return e.swallow === 'ok' ? DROP : KEEP;
      case 0x45: // E ErrorResponse
        this.copyIn = false;
        this.errorSent = true;
        if (simple) return PASS;
        this.pop();
        e.undo?.();
        this.skipToSync();
        return KEEP;
      default:
        return PASS;
    }
  }

  /** The client's transaction ended: nothing of it is left to move. */
  private endTransaction(): void {
    // Not while requests sent after this one are still out, nor before changed settings are read back.
    if (this.head === this.expected.length && !this.tx.probe) this.mirrorBlocked = false;
    if (this.txLog.length > 0) this.txLog = [];
    this.txInexact = undefined;
    this.txStays = false;
  }

  private pop(): void {
    this.head++;
    if (this.head === this.expected.length) {
      this.expected = [];
      this.head = 0;
    }
  }

  /** In copy-in mode the server answers no Sync until the copy ends; drop the entries of those already sent. */
  private enterCopyIn(): void {
    this.copyIn = true;
    const keep = this.expected.slice(0, this.head + 1);
    for (let i = this.head + 1; i < this.expected.length; i++) if (this.expected[i]!.t !== T_SYNC) keep.push(this.expected[i]!);
    this.expected = keep;
  }

  /** After an error: the server skips every message up to Sync, so their answers (and the gateway's fakes) never come. */
  private skipToSync(): void {
    while (this.head < this.expected.length) {
      const e = this.expected[this.head]!;
      if (e.t === T_SYNC) {
        // The gateway's own Sync ends the server's skipping, not the client's: what the client sends
        // up to its own Sync must still be skipped, by the gateway.
        if (e === INJECTED_SYNC) this.dropToSync = true;
        return;
      }
      e.undo?.();
      this.pop();
    }
    this.skipping = true;
  }

  /** Everything before the gateway's own answers has been answered already: send them now. */
  private answerOwn(): void {
    this.emitFakes();
    this.host.socket.write(this.toClient.length === 1 ? this.toClient[0]! : Buffer.concat(this.toClient));
    this.toClient.length = 0;
    queueMicrotask(() => this.settle());
  }

  /** Answers the gateway gives itself, once everything before them has been answered. */
  private emitFakes(): void {
    for (;;) {
      const e = this.expected[this.head];
      if (!e?.fake) return;
      this.pop();
      this.toClient.push(e.fake());
    }
  }

  // ------------------------------------------------------------ leasing and releasing

  private lease(): void {
    this.relocate = false;
    this.leaseTries = 0;
    this.countLease = !this.noCount;
    this.noCount = false;
    this.leaseFrom(this.chooseNode());
  }

  private leaseFrom(node: DbNode): void {
    const topo = this.host.topology;
    this.leaseAskedAt = performance.now();
    this.phase = 'leasing';
    this.node = node;
    this.onReplica = node !== topo.primary;
    node.leases++;
    node.pools.lease(this.handleFor(node), this, (err, server) => {
      if (!err) return this.leased(server!);
      if (this.closed) return;
      this.leaseFailed(node, err);
    });
  }

  /** A node that cannot serve (nothing of the client's ran there yet): another replica, else the primary. */
  private leaseFailed(node: DbNode, err: Error, ban = true): void {
    const topo = this.host.topology;
    if (node !== topo.primary && this.replay === undefined) {
      // One pooled connection that died says little; a failed connect or a draining node, all there is.
      if (ban && node.role === 'replica' && !node.draining && !isRefusal(err) && (!(err instanceof PgError) || err.code !== SQLSTATE.TOO_MANY_CONNECTIONS)) topo.markDown(node, err.message);
      const next = ++this.leaseTries < 3 ? this.chooseNode() : topo.primary;
      return this.leaseFrom(next === node ? topo.primary : next);
    }
    this.host.fatal(toPgError(err));
  }

  private leased(server: ServerConnection): void {
    this.avoid = undefined;
    const node = this.node!;
    if (this.closed) {
      node.pools.release(server, true, 'keep');
      return;
    }
    // The node's role changed while the lease waited (a failover): this connection is not for that work now.
    const topo = this.host.topology;
    if (this.onReplica ? node.role !== 'replica' : node !== topo.primary) {
      node.pools.release(server, false);
      return this.leaseFrom(this.chooseNode());
    }
    this.leasedAt = performance.now();
    // Counted once, at its first lease: a move to the primary is a switch, a read run again is the same read.
    if (this.countLease) {
      this.countLease = false;
      const target = this.onReplica ? 'replica' : 'primary';
      this.host.metrics.transaction(this.host.database, target, this.chooseReason, this.leasedAt - this.leaseAskedAt);
      if (this.host.events.wants('txn_routed')) this.host.events.emit({ type: 'txn_routed', client: this.host.id, node: node.name, target, reason: this.chooseReason });
    }
    this.server = server;
    const ss = this.ss = serverState(server);
    server.attach(this);
    if (!settingsDelta(this.state.settings, ss.settings)) return this.resume();
    this.phase = 'busy';
    this.syncing = true;
    this.syncSettings().then(
      () => {
        this.syncing = false;
        this.resume();
      },
      (e: unknown) => {
        this.syncing = false;
        if (this.closed) return;
        // The connection died before anything of the client's was sent: lease again.
        if (server.closed) {
          this.server = undefined;
          this.ss = undefined;
          return this.leaseFailed(node, e as Error, false);
        }
        this.host.fatal(toPgError(e));
      },
    );
  }

  /** The gateway's settings are being applied to a fresh lease (nothing of the client's sent yet). */
  private syncing = false;
  /** The waiting message being handled (a copy the relay owns). */
  private fromQueue: Buffer | undefined;

  /** Bring the connection's session settings to the client's: only the difference is sent. */
  syncSettings(): Promise<void> {
    return applySettings(this.server!, this.ss!, this.state.settings);
  }

  /** Lease done or the gateway's own work finished: handle what the client sent meanwhile. */
  private resume(): void {
    if (this.closed || !this.server) return;
    this.phase = 'ready';
    if (this.heldBegin) this.sendHeldBegin();
    if (this.replay) this.sendReplay();
    while (this.waiting.length > 0 && this.phase === 'ready') {
      const msg = this.waiting.shift()!;
      this.waitingBytes -= msg.length;
      this.fromQueue = msg;
      if (msg[0] === T_TERMINATE) {
        this.flush();
        return this.host.close();
      }
      this.handle(msg);
      this.fromQueue = undefined;
    }
    this.flush();
    if (this.phase === 'ready') {
      if (this.waitingBytes < MAX_WAITING_BYTES) this.resumeClient();
      this.settle();
    }
  }

  /** The transaction the gateway answered BEGIN for starts on the server, ahead of its first statement. */
  private sendHeldBegin(): void {
    const { sql, replay, hint } = this.heldBegin!;
    this.heldBegin = undefined;
    this.out(m.query(sql));
    this.expect({ t: T_QUERY, swallow: 'all', undo: () => this.lostTransaction('BEGIN failed on the server') });
    if (this.onReplica) {
      this.txLog = [...replay];
      this.txStays = hint === 'replica';
      if (this.state.settings.get('default_transaction_isolation') === 'repeatable read') this.txInexact = 'a repeatable-read snapshot';
    }
  }

  /** The transaction moved from a replica is rebuilt on the primary before the statement that needed it. */
  private sendReplay(): void {
    const texts = this.replay!;
    this.replay = undefined;
    // The statements' names must mean on the primary connection what they meant to the client before
    // the transaction (a DEALLOCATE in the replay needs its statement; a PREPARE, its name free).
    this.ensureSqlPrepared(analyze(texts.join('\n;\n')));
    // A line break before each ';': a text ending in a -- comment must not swallow it.
    const sql = texts.join('\n;\n');
    this.out(m.query(sql));
    this.expect({ t: T_QUERY, swallow: 'all', undo: () => this.lostTransaction('rebuilding the transaction on the primary failed') });
  }

  /** The gateway's own start of the client's transaction failed: what the client runs next would not be inside it. */
  private lostTransaction(why: string): void {
    this.host.fatal(
      new PgError(SQLSTATE.CONNECTION_FAILURE, `terminating connection: ${why}; the transaction was not committed`, {
        hint: 'reconnect and retry the transaction',
      }),
    );
  }

  /** The one decision: is the server connection free? If so, reconcile state and give it back. */
  private settle(): void {
    if (this.moving !== undefined) {
      if (this.head === this.expected.length) this.continueMove();
      return;
    }
    const server = this.server;
    if (this.phase !== 'ready' || !server || this.head < this.expected.length || !this.atBoundary) return;
    if (server.txStatus !== 'I') {
      this.host.idleInTransaction(true);
      return;
    }
    if (this.state.pins.length > 0 && !this.tx.probe) return this.deliverQueued();
    // After a transaction that named channels, notifications wait for reconcile to know what committed.
    if (this.tx.probe) {
      this.phase = 'busy';
      void this.reconcile().then(
        () => {
          if (this.state.pins.length > 0 || (this.waiting.length > 0 && !this.relocate)) this.resume();
          else this.release();
        },
        (e: unknown) => this.host.fatal(toPgError(e)),
      );
      return;
    }
    this.release();
  }

  private release(): void {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.ss = undefined;
    this.phase = 'idle';
    if (this.wrote) {
      // Committed now: a WAL position read from here on covers it (read-your-writes).
      this.wrote = false;
      this.writeAt = performance.now();
      this.writeLsn = undefined;
    }
    // The login lease (leasedAt 0) is no client transaction.
    if (this.leasedAt > 0) this.host.metrics.transactionEnded(this.host.database, performance.now() - this.leasedAt);
    this.leasedAt = 0;
    this.node!.pools.release(server, true, 'keep');
    this.deliverQueued();
    if (this.waiting.length > 0) this.lease(); // moved off a replica: the next statement goes elsewhere
  }

  /** After a transaction that may have changed session state: read what the server really has and record it. */
  private async reconcile(): Promise<void> {
    const server = this.server!;
    const ss = this.ss!;
    const cs = this.state;
    const tx = this.tx;
    this.tx = new TxnEffects();
    const names = new Set<string>([...tx.set, ...tx.reset]);
    if (tx.resetAll) for (const n of [...cs.settings.keys(), ...ss.settings.keys(), ...cs.startup.keys()]) names.add(n);
    for (const n of UNSYNCED_SETTINGS) names.delete(n);
    const protocolBefore = ss.prepared.size;
    ss.unnamedOwner = undefined; // the probe is an extended query: it replaces the unnamed statement
    const pending: Promise<{ rows: (string | null)[][]; error?: PgError }>[] = [];
    pending.push(server.queryParams(PROBE_SQL, [textArray(names), server.user]));
    // The pooled connection must not keep listening (after the probe has seen what it listens on):
    // notifications reach clients through the hub.
    if (tx.channels.size > 0) pending.push(server.query('UNLISTEN *'));
    const results = await Promise.all(pending);
    if (this.closed) return;
    const r = results[0]!;
    if (r.error || !r.rows[0]) throw r.error ?? new PgError(SQLSTATE.INTERNAL_ERROR, 'session state probe returned no row');
    const probe = readProbe(r.rows[0]);

    for (const [n, v] of probe.settings) {
      if (v === null) {
        cs.settings.delete(n);
        ss.settings.delete(n);
      } else {
        cs.settings.set(n, v);
        ss.settings.set(n, v);
      }
    }
    // RESET returns a startup parameter to its startup value in PostgreSQL, not to the server default.
    for (const n of tx.resetAll ? cs.startup.keys() : tx.reset) {
      const v = cs.startup.get(n);
      if (v !== undefined && !tx.set.has(n)) cs.settings.set(n, v);
    }

    for (const n of [...ss.sqlPrepared.keys()]) if (!probe.sqlPrepared.has(n)) ss.sqlPrepared.delete(n);
    for (const n of probe.sqlPrepared.keys()) if (!ss.sqlPrepared.has(n)) ss.sqlPrepared.set(n, '\0unknown');
    // A PREPARE of this transaction took effect when the server's statement came from a query string
    // holding its text (a redefinition after DEALLOCATE included; a refused one leaves the old string).
    for (const [n, text] of tx.prepare) {
      if (probe.sqlPrepared.get(n)?.includes(text)) {
        ss.sqlPrepared.set(n, text);
        cs.sqlPrepared.set(n, text);
      }
    }
    for (const n of tx.deallocate) if (!probe.sqlPrepared.has(n)) cs.sqlPrepared.delete(n);
    if (tx.deallocateAll) {
      for (const n of [...cs.sqlPrepared.keys()]) if (!probe.sqlPrepared.has(n)) cs.sqlPrepared.delete(n);
      const after = new Set(probe.protocolPrepared);
      for (const n of [...ss.prepared.keys()]) if (!after.has(n)) ss.prepared.delete(n);
      // DEALLOCATE ALL removes the client's protocol-level statements too, as in PostgreSQL.
      if (protocolBefore > 0 && after.size === 0) cs.statements.clear();
    }

    if (tx.channels.size > 0) {
      const listening = new Set(probe.listening);
      const committed = !tx.sentinel || listening.has(COMMIT_SENTINEL);
      this.settleChannels(tx.channels, (ch) => (committed ? listening.has(ch) : tx.before.get(ch) === true));
    }

    const pins: PinReason[] = [...probe.pins];
    // A set_config the gateway could not read pins until RESET ALL / DISCARD ALL puts every setting back.
    if (tx.dynamic || (cs.pins.includes('dynamic_set_config') && !tx.resetAll)) pins.push('dynamic_set_config');
    this.setPins(pins);
    await this.syncSettings();
    if (this.head === this.expected.length) this.mirrorBlocked = false;
  }

  /** What committed: a channel named in the transaction is subscribed exactly when want(channel) says so. */
  private settleChannels(named: Set<string>, want: (channel: string) => boolean): void {
    const cs = this.state;
    const hub = this.host.hubs.hub(this.host.database, this.host.user);
    const dropped = new Set<string>();
    for (const ch of named) {
      if (want(ch)) {
        if (!cs.channels.has(ch)) {
          cs.channels.add(ch);
          void hub.listen(this, ch).catch(() => {});
        }
      } else if (cs.channels.delete(ch)) {
        hub.unlisten(this, ch);
        dropped.add(ch);
      }
    }
    // Not yet delivered and no longer listened to: PostgreSQL would not deliver them either.
    if (dropped.size > 0) {
      const keep = this.notifications.filter((n) => !dropped.has(m.readNotification(n).channel));
      this.notifications.length = 0;
      this.notifications.push(...keep);
    }
  }

  private setPins(pins: PinReason[]): void {
    const before = this.state.pins;
    this.state.pins = pins;
    const server = this.server!;
    for (const reason of pins) {
      if (!before.includes(reason)) this.host.events.emit({ type: 'pin_started', client: this.host.id, server: server.id, reason });
    }
    for (const reason of before) {
      if (!pins.includes(reason)) this.host.events.emit({ type: 'pin_ended', client: this.host.id, server: server.id, reason });
    }
  }

  // ------------------------------------------------------------ notifications

  deliverNotification(msg: Buffer): void {
    if (this.closed) return;
    if ((this.phase === 'idle' && !this.heldBegin && !this.lost) || this.clientIdle()) this.host.socket.write(msg);
    else this.notifications.push(msg);
  }

  /** Between transactions, with nothing in flight (a pinned client keeps its connection while idle). */
  private clientIdle(): boolean {
    const server = this.server;
    return this.phase === 'ready' && !!server && this.head === this.expected.length && this.atBoundary && server.txStatus === 'I';
  }

  /** PostgreSQL delivers notifications between transactions; so does the gateway. */
  private deliverQueued(): void {
    if (this.notifications.length === 0) return;
    const all = Buffer.concat(this.notifications.splice(0));
    if (this.assembling) this.toClient.push(all);
    else this.host.socket.write(all);
  }

  // ------------------------------------------------------------ ending

  onServerClose(err: Error | undefined): void {
    const server = this.server;
    this.server = undefined;
    this.ss = undefined;
    const fatal = this.serverFatal;
    this.serverFatal = undefined;
    if (this.closed || this.syncing) return; // syncing: the failed settings query leases again
    if (!server || !this.survive(server, err, fatal)) this.host.serverLost(fatal ? new Error(`${fatal.code}: ${fatal.message}`) : err);
  }

  /**
   * The server connection died under the client. A client whose session state is all tracked by the
   * gateway survives: a read not yet answered runs again on another node; otherwise every request in
   * flight gets an error (inside a transaction the client is then in a failed transaction, answered by
   * the gateway until it ends it, as PostgreSQL would), and its next transaction leases a connection
   * elsewhere with its session state replayed. False: the client cannot go on (pins, session changes
   * not yet reconciled, the gateway's own work in flight) and is disconnected.
   */
  private survive(server: ServerConnection, err: Error | undefined, fatal: { code: string; message: string } | undefined): boolean {
    if (this.phase !== 'ready' || this.moving !== undefined || this.replay !== undefined || this.copyIn) return false;
    // Session state that lived on that connection and that the gateway has not read back yet is gone with it.
    if (this.state.pins.length > 0 || this.tx.probe) return false;
    const node = this.node!;
    const why = fatal?.message ?? err?.message ?? 'the server closed the connection';
    this.host.topology.poll(); // a node that died is taken out of rotation by the next probe (or the next lease)
    this.host.idleInTransaction(false);
    const outstanding = this.expected.length - this.head;
    if (this.retryMsg && outstanding === 1 && this.expected[this.head] === this.retryEntry) {
      const msg = this.retryMsg;
      this.retryMsg = this.retryEntry = undefined;
      this.retried = msg;
      this.retries++;
      this.avoid = node;
      this.expected = [];
      this.head = 0;
      this.phase = 'idle';
      this.waiting.unshift(msg);
      this.waitingBytes += msg.length;
      this.host.events.emit({ type: 'query_retried', client: this.host.id, node: node.name, message: why });
      this.noCount = true;
      this.lease();
      return true;
    }
    this.retryMsg = this.retryEntry = undefined;
    this.capture = undefined;
    const inTxn = this.lastStatus !== 0x49; /* I */
    const status: m.TxStatus = inTxn ? 'E' : 'I';
    // The server's own reason when it gave one (57P01 shutdown, 40001 recovery conflict, ...), else 08006.
    const error = new PgError(fatal?.code ?? SQLSTATE.CONNECTION_FAILURE, `server connection to "${node.name}" lost: ${why}`, {
      severity: 'ERROR',
      hint: inTxn
        ? 'the transaction did not commit (if the connection was lost during COMMIT, check whether it did); end it with ROLLBACK and run it again'
        : 'the statement may or may not have completed; the session is intact: check, then retry it',
    }).toMessage();
    const out: Buffer[] = [];
    // The server may have sent the error of the statement in progress already: one error per request.
    let errored = this.errorSent || this.skipping;
    let told = errored;
    for (let i = this.head; i < this.expected.length; i++) {
      const e = this.expected[i]!;
      // The gateway's own work (a held BEGIN, a LISTEN) needs no undoing: the connection is gone.
      if (e.swallow === 'all') continue;
      e.undo?.();
      if (e.t === T_QUERY || e.t === T_FUNCTION_CALL || e.t === T_SYNC) {
        if (!errored) out.push(error);
        out.push(m.readyForQuery(status));
        errored = false;
      } else if (!errored) {
        out.push(error);
        errored = true;
      }
      told = true;
    }
    // Extended-protocol messages sent since the last Sync and all answered: the error is still due.
    if (!this.atBoundary && !errored) {
      out.push(error);
      errored = true;
      told = true;
    }
    this.expected = [];
    this.head = 0;
    this.errorSent = false;
    // The rest of an extended group, up to the client's Sync, is skipped.
    if (errored || !this.atBoundary) {
      this.dropToSync = true;
      this.skipping = true;
    } else this.skipping = false;
    this.lastStatus = status.charCodeAt(0);
    this.tx = new TxnEffects();
    this.endTransaction();
    this.portalReplay = undefined;
    if (this.wrote) {
      // An autocommit write may have committed before the connection died: read-your-writes assumes it did.
      this.wrote = false;
      this.writeAt = performance.now();
      this.writeLsn = undefined;
    }
    this.phase = 'idle';
    if (inTxn) {
      this.lost = { why: `server connection to "${node.name}" lost: ${why}`, code: fatal?.code ?? SQLSTATE.CONNECTION_FAILURE, told, skipping: this.dropToSync, ends: new Map(), bound: undefined, endAtSync: false };
      this.dropToSync = this.skipping = false;
    }
    this.host.events.emit({ type: 'server_lost', client: this.host.id, server: server.id, message: why });
    if (out.length > 0) this.host.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    this.deliverQueued();
    this.resumeClient();
    // (Nothing waits here: the client's messages were being handled on the connection that died.)
    if (this.waiting.length > 0 && !this.lost) this.lease();
    return true;
  }

  /**
   * A message while the client's transaction is lost: answered as PostgreSQL answers in a failed
   * transaction. The first statement gets the reason; later ones 25P02; ROLLBACK ends it, and so does
   * COMMIT (as ROLLBACK once the client has been told, else with the error: it did not commit). In the
   * extended protocol, a Parse of COMMIT/ROLLBACK goes through, anything else fails and is skipped up
   * to Sync. False for Terminate.
   */
  private answerLost(msg: Buffer): boolean {
    const L = this.lost!;
    const t = msg[0]!;
    const out: Buffer[] = [];
    const fail = () => {
      out.push(
        L.told
          ? new PgError('25P02', 'current transaction is aborted, commands ignored until end of transaction block', { severity: 'ERROR' }).toMessage()
          : new PgError(L.code, L.why, { severity: 'ERROR', hint: 'the transaction did not commit; end it with ROLLBACK and run it again' }).toMessage(),
      );
      L.told = true;
    };
    const end = () => {
      this.lost = undefined;
      this.lastStatus = 0x49; /* I */
    };
    const ending = (sql: string): 'rollback' | 'commit' | undefined => {
      const d = this.host.router.route(sql);
      // AND CHAIN would open a new transaction at once: not emulated (the client gets 25P02; a plain ROLLBACK ends it).
      if (d.multi || /\band\s+chain\b/i.test(sql)) return undefined;
      if (d.txn === 'prepared_xact' && /^\s*prepare\s+transaction\b/i.test(sql)) return 'rollback';
      return d.txn === 'rollback' || d.txn === 'commit' ? d.txn : undefined;
    };
    if (t === T_TERMINATE) return false;
    if (L.skipping && t !== T_SYNC) return true;
    switch (t) {
      case T_QUERY: {
        const sql = m.readQuery(msg);
        if (sql.trim() === '') {
          out.push(m.frame('I'), m.readyForQuery('E'));
          break;
        }
        const kind = ending(sql);
        if (kind === 'rollback' || (kind === 'commit' && L.told)) {
          out.push(m.commandComplete('ROLLBACK'), m.readyForQuery('I'));
          end();
        } else if (kind === 'commit') {
          fail();
          out.push(m.readyForQuery('I'));
          end();
        } else {
          fail();
          out.push(m.readyForQuery('E'));
        }
        break;
      }
      case T_PARSE: {
        const p = m.readParse(msg);
        const kind = ending(p.sql);
        if (kind === undefined) {
          fail();
          L.skipping = true;
          break;
        }
        L.ends.set(p.name, kind);
        // The client holds the statement from now on, as after a successful Parse.
        this.rememberParse(msg, p);
        out.push(m.parseComplete());
        break;
      }
      case T_BIND: {
        const name = m.readBindStatement(msg);
        const kind = L.ends.get(name) ?? this.statementEnding(name, ending);
        if (kind === undefined) {
          fail();
          L.skipping = true;
          break;
        }
        L.bound = kind;
        out.push(m.frame('2'));
        break;
      }
      case T_DESCRIBE: {
        const { kind, name } = m.readTarget(msg);
        const known = kind === 0x53 /* S */ ? (L.ends.get(name) ?? this.statementEnding(name, ending)) : L.bound;
        if (known === undefined) {
          fail();
          L.skipping = true;
          break;
        }
        if (kind === 0x53) out.push(m.frame('t', Buffer.from([0, 0])));
        out.push(m.frame('n'));
        break;
      }
      case T_EXECUTE:
        if (L.bound === undefined) {
          fail();
          L.skipping = true;
        } else if (L.bound === 'commit' && !L.told) {
          fail();
          L.skipping = true;
          L.endAtSync = true;
        } else {
          // Over now: the rest of the group, and its Sync, run on a server as usual.
          out.push(m.commandComplete('ROLLBACK'));
          end();
        }
        L.bound = undefined;
        break;
      case T_CLOSE: {
        // Carried out, as PostgreSQL does even in a failed transaction.
        const { kind, name } = m.readTarget(msg);
        if (kind === 0x53 /* S */) {
          L.ends.delete(name);
          if (name === '') this.unnamedParse = undefined;
          else this.state.statements.delete(name);
        } else if (name === '') L.bound = undefined;
        out.push(m.closeComplete());
        break;
      }
      case T_SYNC:
        out.push(m.readyForQuery(L.endAtSync ? 'I' : 'E'));
        L.skipping = false;
        if (L.endAtSync) end();
        break;
      case T_FUNCTION_CALL:
        fail();
        out.push(m.readyForQuery('E'));
        break;
      default:
        break; // Flush, stray copy data: nothing to answer
    }
    if (out.length > 0) this.writeOwn(out.length === 1 ? out[0]! : Buffer.concat(out));
    // Held while the transaction was open, as PostgreSQL does.
    if (!this.lost) this.deliverQueued();
    return true;
  }

  /** Answers the gateway writes itself: a client that sends without reading is held back, as PostgreSQL would by not reading. */
  private writeOwn(bytes: Buffer): void {
    const socket = this.host.socket;
    socket.write(bytes);
    if (socket.writableLength > MAX_WAITING_BYTES && !this.clientPaused) {
      this.pauseClient();
      socket.once('drain', () => this.resumeClient());
    }
  }

  /** A Parse the gateway answered itself: the client now has the statement, and it is prepared on a server when used. */
  private rememberParse(msg: Buffer, p: m.ParseMessage): void {
    if (p.name === '') {
      this.unnamedParse = Buffer.from(msg);
      this.unnamedFx = undefined;
      this.unnamedRoute = undefined;
      return;
    }
    if (this.state.statements.has(p.name)) return;
    const serverName = this.host.registry.nameFor(this.statementKey(p.sql), p.paramTypes);
    this.state.statements.set(p.name, { serverName, parse: m.parse(serverName, p.sql, p.paramTypes), fx: undefined, route: undefined });
  }

  /** Whether a statement the client prepared earlier is a COMMIT or a ROLLBACK. */
  private statementEnding(name: string, ending: (sql: string) => 'rollback' | 'commit' | undefined): 'rollback' | 'commit' | undefined {
    const parse = name === '' ? this.unnamedParse : this.state.statements.get(name)?.parse;
    return parse ? ending(m.readParse(parse).sql) : undefined;
  }

  /** At login: lease a connection, apply the startup settings, and return the ParameterStatus values the client should see. */
  async loginLease(settings: Map<string, string>): Promise<Map<string, string>> {
    for (const [k, v] of settings) {
      this.state.startup.set(k, v);
      this.state.settings.set(k, v);
    }
    const primary = this.host.topology.primary;
    this.node = primary;
    this.onReplica = false;
    const server = await primary.pools.acquire(this.host.database, this.host.user, this.host.signal);
    if (this.closed) {
      primary.pools.release(server, true, 'keep');
      return new Map();
    }
    this.server = server;
    this.ss = serverState(server);
    this.phase = 'busy';
    try {
      await this.syncSettings();
    } catch (e) {
      const err = toPgError(e);
      // Unless finish() already gave it back (the client left meanwhile).
      if (this.server === server) {
        this.server = undefined;
        this.ss?.clear();
        this.ss = undefined;
        this.phase = 'idle';
        primary.pools.release(server, true, 'discard');
      }
      throw new PgError(err.code, err.message, { severity: 'FATAL', detail: err.detail, hint: err.hint });
    }
    if (this.closed) return new Map();
    const params = new Map(server.params);
    this.release();
    return params;
  }

  /** The connection a CancelRequest from this client may reach: only while it runs the client's own requests. */
  cancelTarget(): ServerConnection | undefined {
    return this.phase === 'ready' || this.moving !== undefined ? this.server : undefined;
  }

  /** The client left: give back what it holds. A connection in the middle of anything is reset or closed. */
  finish(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.phase === 'leasing') this.node?.pools.abandon(this);
    const cs = this.state;
    for (const reason of cs.pins) this.host.events.emit({ type: 'pin_ended', client: this.host.id, server: this.server?.id ?? 0, reason });
    if (cs.channels.size > 0) this.host.hubs.hub(this.host.database, this.host.user).unlistenAll(this, cs.channels);
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    // A connection at a message boundary can be reset and reused; the gateway's own queries still in
    // flight (a state probe) are answered before the pool's ROLLBACK / DISCARD ALL, which queue behind them.
    const clean = this.head === this.expected.length && this.atBoundary;
    // 'busy' means the gateway's own queries are in flight (settings, probe): what they would have
    // recorded is unknown, so the connection is reset rather than trusted.
    if (clean && this.phase !== 'busy' && server.txStatus === 'I' && cs.pins.length === 0 && !this.tx.probe) {
      this.node!.pools.release(server, true, 'keep');
      return;
    }
    // Rolled back and DISCARD ALL by the pool: nothing of this client survives on the connection.
    this.ss?.clear();
    this.node!.pools.release(server, clean, 'discard');
  }
}

/** Settings that change what a statement means when it is parsed: statements are shared only between equal values. */
const PARSE_SETTINGS = ['search_path', 'datestyle', 'intervalstyle', 'timezone', 'standard_conforming_strings'] as const;

/** A channel only pooled connections ever listen on, inside a client's transaction, to learn whether it committed. */
const COMMIT_SENTINEL = 'switchyard.commit';

/** Times a read whose connection died before answering runs again elsewhere. */
const MAX_RETRIES = 2;

/** Bytes kept for a client that has no server connection yet, before its socket is paused. */
const MAX_WAITING_BYTES = 256 * 1024;

/** Only texts with this word can be the gateway's own setting. */
const GATEWAY_WORD = /switchyard/i;

const NO_STATEMENTS: readonly { name: string; parse: Buffer }[] = Object.freeze([]);

/** Requests larger than this are not copied to the mirror (its queue holds copies by count). */
const MAX_COPY_BYTES = 64 * 1024;

/** A statement that shapes what later ones of its transaction see: settings (SET LOCAL, set_config), a cursor, a snapshot. */
function shapesTransaction(d: Decision): boolean {
  return d.inexact !== undefined || d.snapshot === true || (d.txn === undefined && d.replay.length > 0);
}

/** A statement not looked at: nothing to split to, and not the gateway's setting. */
const UNROUTED: Decision = Object.freeze({ target: 'any', reason: 'not routed', replay: Object.freeze([]) });

/** The router's short reasons for a transaction that cannot move, as the error message says them. */
const INEXACT: Readonly<Record<string, string>> = {
  cursor: 'an open cursor (DECLARE)',
  'dynamic set_config': 'a set_config call whose name or is_local the gateway cannot read',
  'set_config in a prepared statement': 'a prepared statement that calls set_config',
};

/** A fast-path FunctionCall: an unknown function, so the primary's. */
const FUNCTION_CALL: Decision = Object.freeze({ target: 'primary', reason: 'fast-path function call', replay: Object.freeze([]) });

/** A transaction lost with its server connection, answered by the gateway until the client ends it. */
interface LostTransaction {
  why: string;
  code: string;
  /** The client has had an error in it (later statements get 25P02; COMMIT answers ROLLBACK). */
  told: boolean;
  /** After an error in an extended-protocol group: messages are dropped up to Sync. */
  skipping: boolean;
  /** Statements parsed while lost that end the transaction, by name. */
  ends: Map<string, 'rollback' | 'commit'>;
  /** What the bound portal would run, when it ends the transaction. */
  bound: 'rollback' | 'commit' | undefined;
  /** An Execute ended the transaction: the group's Sync answers idle. */
  endAtSync: boolean;
}

const PASS = 0;
const KEEP = 1;
const DROP = 2;

/** An ErrorResponse at off with severity FATAL or PANIC (the server closes the connection after it). */
function isFatal(buf: Buffer, off: number): boolean {
  const end = off + 1 + buf.readInt32BE(off + 1);
  for (let i = off + 5; i < end && buf[i] !== 0; ) {
    const code = buf[i]!;
    const stop = buf.indexOf(0, i + 1);
    if (stop < 0 || stop >= end) return false;
    if (code === 0x56 /* V */) {
      const v = buf.toString('latin1', i + 1, stop);
      return v === 'FATAL' || v === 'PANIC';
    }
    i = stop + 1;
  }
  return false;
}

/** A NoticeResponse at off with SQLSTATE 57P01 or 57P02: the server is shutting down now. */
function isShutdownNotice(buf: Buffer, off: number): boolean {
  const code = m.readErrorFields(buf.subarray(off, off + 1 + buf.readInt32BE(off + 1))).get('C');
  return code === '57P01' || code === '57P02';
}

function toPgError(e: unknown): PgError {
  if (e instanceof PgError) return e;
  return new PgError(SQLSTATE.INTERNAL_ERROR, `internal error: ${(e as Error).message}`);
}
