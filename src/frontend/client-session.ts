// One client from accept to close: TLS, startup, authentication, leasing a server connection, and relaying bytes.

import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { Framer, FrameError } from '../protocol/framer.js';
import { MessageQueue } from '../protocol/message-queue.js';
import * as m from '../protocol/messages.js';
import { PgError, SQLSTATE, protocolViolation } from '../protocol/errors.js';
import type { ServerConnection, ServerSink } from '../backend/server-connection.js';
import type { ReusableReader } from '../backend/reusable-reader.js';
import type { PoolManager } from '../pool/pool.js';
import type { CredentialStore } from '../auth/credentials.js';
import type { LoginThrottle } from '../auth/throttle.js';
import type { Config } from '../config/types.js';
import type { EventBus } from '../observability/events.js';
import { ClientAuthenticator } from './client-auth.js';
import { startupSettings, wantsReplication } from './startup-params.js';
import { PooledRelay, type RelayHost } from './pooled-relay.js';
import type { NotifyHubs } from '../session/notify-hub.js';
import type { StatementRegistry } from '../session/state.js';
import type { PoolMode } from '../config/types.js';
import type { Topology } from '../balancer/topology.js';
import type { Router } from '../router/router.js';
import type { Mirror } from '../mirror/mirror.js';
import { AdminConsole, isConsoleDatabase } from '../admin/console.js';
import type { DatabaseTotals, Metrics } from '../observability/metrics.js';

/** What a session needs from the gateway around it. */
export interface FrontendContext {
  config: Config;
  tlsContext: tls.SecureContext | undefined;
  credentials: CredentialStore;
  throttle: LoginThrottle;
  pools: PoolManager;
  events: EventBus;
  mockSecret: Buffer;
  cancelKeys: CancelKeys;
  /** Every live session; a session adds itself when created and removes itself when it ends. */
  sessions: Set<ClientSession>;
  hubs: NotifyHubs;
  registry: StatementRegistry;
  topology: Topology;
  /** Replaced when a reload changes the routing rules. */
  router: Router;
  /** What the admin console needs from the gateway beyond this context. */
  admin: AdminHooks;
  metrics: Metrics;
  /** Shadow traffic (mirror.enabled switches it on and off at run time). */
  mirror: Mirror;
}

/** Totals per database since start, for SHOW STATS; server_assignment_count (leases), when given, divides the wait time. */
export type DatabaseStats = DatabaseTotals & { server_assignment_count?: number };

export interface AdminHooks {
  version: string;
  startedAt: number;
  /** Re-read the config file and apply it (throws with a message when it cannot). */
  reload(): { applied: string[]; restart_required: string[] };
  /** The config with secrets redacted. */
  configView(): unknown;
  stats(): DatabaseStats[];
}

/** The pool mode for a (database, user): the user's override, else the database's, else pool.mode. */
export function poolModeFor(config: Config, database: string, user: string): PoolMode {
  return config.pool.users[user]?.mode ?? config.pool.databases[database]?.mode ?? config.pool.mode;
}

/** BackendKeyData the gateway hands out, mapped to the session that holds it. */
export class CancelKeys {
  private readonly byPid = new Map<number, { secret: number; session: ClientSession }>();

  issue(session: ClientSession): { pid: number; secret: number } {
    let pid: number;
    do pid = crypto.randomInt(1, 0x7fffffff);
    while (this.byPid.has(pid));
    const secret = crypto.randomBytes(4).readInt32BE(0);
    this.byPid.set(pid, { secret, session });
    return { pid, secret };
  }

  find(pid: number, secret: number): ClientSession | undefined {
    const e = this.byPid.get(pid);
    return e && e.secret === secret ? e.session : undefined;
  }

  release(pid: number): void {
    this.byPid.delete(pid);
  }

  get size(): number {
    return this.byPid.size;
  }
}

type State = 'startup' | 'ready' | 'closed';

const T_QUERY = 0x51; // Q
const T_SYNC = 0x53; // S
const T_FUNCTION_CALL = 0x46; // F
const T_TERMINATE = 0x58; // X
const T_COPY_DATA = 0x64; // d
const T_COPY_DONE = 0x63; // c
const T_COPY_FAIL = 0x66; // f

let nextClientId = 1;

export class ClientSession implements ServerSink, RelayHost {
  readonly id = nextClientId++;
  readonly address: string;
  /** Session pooling: the pools the client's server connection came from. */
  private sessionPools: PoolManager | undefined;
  readonly connectedAt = Date.now();
  user = '';
  database = '';
  applicationName = '';
  tls = false;
  state: State = 'startup';
  server: ServerConnection | undefined;

  socket: net.Socket;
  mode: PoolMode = 'session';
  /** Transaction pooling; undefined in session mode. */
  relay: PooledRelay | undefined;
  /** Set when the client logged in to the admin console (database switchyard or pgbouncer): no server connection at all. */
  console: AdminConsole | undefined;
  /** When the client last sent anything after login (SHOW CLIENTS' request_time). */
  requestAt = this.connectedAt;
  private readonly framer: Framer;
  private readonly queue = new MessageQueue();
  private readonly leaving = new AbortController();
  private key: { pid: number; secret: number } | undefined;
  /** Query/Sync/FunctionCall messages sent to the server; each is answered by one ReadyForQuery. */
  private syncsSent = 0;
  private readyBase = 0;
  /** False after an extended-protocol message not yet followed by Sync: the server's state is not at a boundary. */
  private atBoundary = true;

  private readonly onChunk = (chunk: Buffer) => this.onData(chunk);
  private readonly onGone = () => this.onSocketClosed();

  /** reader: set when the plain socket reads into a reused buffer (see ReusableReader). */
  constructor(
    private readonly ctx: FrontendContext,
    socket: net.Socket,
    readonly reader?: ReusableReader,
  ) {
    this.socket = socket;
    this.address = socket.remoteAddress ?? 'unknown';
    this.framer = new Framer(ctx.config.listen.max_message_bytes, { startup: true, copyTail: reader !== undefined });
    socket.setNoDelay(true);
    if (reader) reader.handler = this.onChunk;
    else socket.on('data', this.onChunk);
    this.watch(socket);
    ctx.sessions.add(this);
    ctx.events.emit({ type: 'client_connected', client: this.id, address: this.address });
    void this.run();
  }

  private watch(socket: net.Socket): void {
    socket.on('close', this.onGone);
    socket.on('error', this.onGone);
  }

  private onData(chunk: Buffer): void {
    try {
      if (this.state === 'ready') {
        this.requestAt = Date.now();
        const n = this.framer.scan(chunk);
        if (this.console) return this.toConsole(n);
        return this.relay ? this.relayPooled(n) : this.relaySession(n);
      }
      // Copied when the read buffer is reused: the queue keeps messages past this callback.
      for (const msg of this.framer.push(chunk)) this.queue.push(this.reader ? Buffer.from(msg) : msg);
    } catch (e) {
      if (e instanceof FrameError) this.fatal(new PgError(e.code, e.message));
      else this.fatal(new PgError(SQLSTATE.INTERNAL_ERROR, (e as Error).message));
    }
  }

  /** Startup, TLS, authentication, lease, then hand over to the relay. */
  private async run(): Promise<void> {
    const ms = this.ctx.config.listen.login_timeout_ms;
    const timer = setTimeout(() => {
      const err = new PgError(SQLSTATE.PROTOCOL_VIOLATION, `client did not finish logging in within listen.login_timeout_ms (${ms} ms)`);
      if (this.handshaking) this.socket.destroy(err); // nothing can be said in plaintext mid-handshake
      else this.queue.fail(err);
    }, ms);
    timer.unref();
    try {
      const startup = await this.negotiate();
      if (!startup) return; // a cancel request, or the client left
      await this.login(startup, () => clearTimeout(timer));
    } catch (e) {
      if (this.state === 'closed') return;
      if (e instanceof PgError) this.fatal(e);
      // The message readers throw RangeError on a malformed packet (a missing terminator, a short body).
      else if (e instanceof RangeError) this.fatal(protocolViolation(`invalid startup packet: ${e.message}`));
      else this.fatal(new PgError(SQLSTATE.INTERNAL_ERROR, `internal error: ${(e as Error).message}`));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Read untyped packets until the StartupMessage, handling SSLRequest, GSSENCRequest and CancelRequest. */
  private async negotiate(): Promise<m.StartupPacket | undefined> {
    // One SSLRequest and one GSSENCRequest at most, as in PostgreSQL: a loop of them is only load.
    let sslDone = false;
    let gssDone = false;
    for (;;) {
      const pkt = m.readUntypedPacket(await this.queue.next());
      if (pkt.kind === 'ssl' && this.tls) throw protocolViolation('SSL request received on an encrypted connection');
      if ((pkt.kind === 'ssl' && sslDone) || (pkt.kind === 'gssenc' && gssDone)) {
        throw protocolViolation(`duplicate ${pkt.kind === 'ssl' ? 'SSL' : 'GSSENC'} request`);
      }
      sslDone ||= pkt.kind === 'ssl';
      gssDone ||= pkt.kind === 'gssenc';
      if (pkt.kind === 'cancel') {
        this.ctx.cancelKeys.find(pkt.pid, pkt.secret)?.cancelServer();
        this.close();
        return undefined;
      }
      if (pkt.kind === 'gssenc') {
        this.socket.write('N');
        this.feedHeld();
        continue;
      }
      if (pkt.kind === 'ssl') {
        if (!this.ctx.tlsContext) {
          this.socket.write('N');
          this.feedHeld();
          continue;
        }
        // Bytes sent after the SSLRequest but before the handshake could be injected by a man in the middle.
        if (this.framer.pending > 0) throw protocolViolation('received unencrypted data after SSL request');
        await this.startTls();
        continue;
      }
      return pkt;
    }
  }

  /** Re-read bytes the framer held behind the packet just handled. */
  private feedHeld(): void {
    for (const msg of this.framer.drain()) this.queue.push(this.reader ? Buffer.from(msg) : msg);
  }

  private startTls(): Promise<void> {
    const raw = this.socket;
    // Only this session's own listeners: others (the server's connection accounting) stay.
    if (this.reader) this.reader.handler = undefined;
    else raw.off('data', this.onChunk);
    raw.off('close', this.onGone);
    raw.off('error', this.onGone);
    raw.write('S');
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.ctx.tlsContext });
    this.socket = secure;
    this.tls = true;
    this.handshaking = true;
    return new Promise((resolve, reject) => {
      const fail = (e: Error) => {
        secure.off('secure', onSecure);
        this.state = 'closed';
        secure.destroy();
        this.finish();
        reject(e);
      };
      const onError = (e: Error) => fail(e);
      // A client that hangs up mid-handshake never sends 'error' on every Node version: 'close' ends it too.
      const onClose = () => fail(new Error('client closed the connection during the TLS handshake'));
      const onSecure = () => {
        this.handshaking = false;
        secure.off('error', onError);
        secure.off('close', onClose);
        secure.on('data', this.onChunk);
        this.watch(secure);
        resolve();
      };
      secure.once('secure', onSecure);
      secure.once('error', onError);
      secure.once('close', onClose);
    });
  }

  /** loggedIn is called once authentication succeeded (the login timeout stops there). */
  private async login(pkt: m.StartupPacket, loggedIn: () => void): Promise<void> {
    if (pkt.major !== 3) {
      throw new PgError(SQLSTATE.FEATURE_NOT_SUPPORTED, `unsupported frontend protocol ${pkt.major}.${pkt.minor}: server supports 3.0 to 3.0`);
    }
    this.framer.startup = false;
    this.feedHeld(); // messages the client pipelined behind its startup packet
    const params = pkt.params;
    const user = params.get('user');
    if (!user) throw new PgError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, 'no PostgreSQL user name specified in startup packet');
    this.user = user;
    this.database = params.get('database') || user;
    if (wantsReplication(params)) {
      throw new PgError(SQLSTATE.FEATURE_NOT_SUPPORTED, 'replication connections are not supported through switchyard', {
        hint: 'connect to the PostgreSQL server directly for replication or pg_basebackup',
      });
    }
    const { settings, protocolOptions } = startupSettings(params);
    this.applicationName = settings.get('application_name') ?? '';
    if (pkt.minor > 0 || protocolOptions.length > 0) this.socket.write(m.negotiateProtocolVersion(0, protocolOptions));

    await this.authenticate();
    loggedIn();
    if (this.gone) return;
    if (isConsoleDatabase(this.database)) return this.startConsole();

    this.mode = poolModeFor(this.ctx.config, this.database, this.user);
    if (this.mode === 'transaction') return this.startPooled(settings);
    // The primary's pools now: given back to the same ones even if another node is the primary by then.
    const pools = this.ctx.pools;
    this.sessionPools = pools;
    const server = await pools.acquire(this.database, this.user, this.leaving.signal);
    if (this.gone) {
      pools.release(server, true);
      return;
    }
    this.server = server;
    // Counted from here: the settings' own ReadyForQuery messages make a connection left mid-way not reusable.
    this.readyBase = server.readyCount;
    await this.applySettings(server, settings);
    if (this.gone) return; // finish() already gave the connection back

    this.greet(server.params, server.txStatus);
    server.attach(this);
    this.readyBase = server.readyCount;
    const early = this.queue.takeAll();
    if (early.length) this.relayMessages(early);
  }

  /** ParameterStatus, BackendKeyData and ReadyForQuery: the client is in. */
  private greet(params: ReadonlyMap<string, string>, txStatus: m.TxStatus): void {
    this.key = this.ctx.cancelKeys.issue(this);
    const out: Buffer[] = [];
    for (const [k, v] of params) out.push(m.parameterStatus(k, v));
    out.push(m.backendKeyData(this.key.pid, this.key.secret), m.readyForQuery(txStatus));
    this.socket.write(Buffer.concat(out));
    this.state = 'ready';
  }

  /** The admin console answers everything itself; only admin.users get in. */
  private startConsole(): void {
    if (!this.ctx.config.admin.users.includes(this.user)) {
      throw new PgError(
        SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
        `user "${this.user}" may not use the admin console (database "${this.database}"): it is not listed in admin.users`,
        { hint: `add "${this.user}" to admin.users in the gateway's config; "switchyard" and "pgbouncer" are not databases that reach a server` },
      );
    }
    const adminConsole = new AdminConsole(
      {
        id: this.id,
        user: this.user,
        send: (data) => void this.socket.write(data),
        close: () => this.close(),
        fatal: (err) => this.fatal(err),
      },
      this.ctx,
    );
    this.console = adminConsole;
    this.greet(adminConsole.parameters(this.applicationName), 'I');
    for (const msg of this.queue.takeAll()) adminConsole.receive(msg);
  }

  /** Client → console: copies, since the console may still be busy with an earlier command when the read buffer is reused. */
  private toConsole(n: number): void {
    const f = this.framer;
    const target = this.console!;
    if (f.head) target.receive(Buffer.from(f.head));
    const buf = f.scanned;
    const starts = f.starts;
    for (let i = 0; i < n; i++) target.receive(Buffer.from(buf.subarray(starts[i]!, starts[i + 1]!)));
  }

  /** The node of the server connection the client holds right now. */
  get serverNode(): string | undefined {
    if (this.relay) return this.relay.server ? this.relay.nodeName : undefined;
    return this.server ? (this.sessionPools ?? this.ctx.pools).node : undefined;
  }

  /** Transaction pooling: a connection is leased at login only to apply the settings and learn the parameters. */
  private async startPooled(settings: Map<string, string>): Promise<void> {
    const relay = new PooledRelay(this);
    this.relay = relay;
    const params = await relay.loginLease(settings);
    if (this.gone) return;
    this.greet(params, 'I');
    const early = this.queue.takeAll();
    for (const msg of early) {
      if (!relay.fromClient(msg)) {
        relay.flush();
        return this.close();
      }
    }
    relay.flush();
  }

  /** Client → server in transaction pooling: every message goes through the relay, which knows about leases. */
  private relayPooled(n: number): void {
    const relay = this.relay!;
    const f = this.framer;
    if (f.head && !relay.fromClient(f.head)) return this.closeAfter(relay);
    const buf = f.scanned;
    const starts = f.starts;
    for (let i = 0; i < n; i++) {
      if (!relay.fromClient(buf.subarray(starts[i]!, starts[i + 1]!))) return this.closeAfter(relay);
    }
    relay.flush();
  }

  private closeAfter(relay: PooledRelay): void {
    relay.flush();
    this.close();
  }

  // RelayHost
  get signal(): AbortSignal {
    return this.leaving.signal;
  }
  get pools(): PoolManager {
    return this.ctx.pools;
  }
  get hubs(): NotifyHubs {
    return this.ctx.hubs;
  }
  get registry(): StatementRegistry {
    return this.ctx.registry;
  }
  get events(): EventBus {
    return this.ctx.events;
  }
  get topology(): Topology {
    return this.ctx.topology;
  }
  get metrics(): Metrics {
    return this.ctx.metrics;
  }
  get router(): Router {
    return this.ctx.router;
  }
  get mirror(): Mirror {
    return this.ctx.mirror;
  }
  get readYourWrites(): boolean {
    return this.ctx.config.routing.consistency === 'read-your-writes';
  }
  get preparedCacheSize(): number {
    return this.ctx.config.pool.prepared_statements_cache_size;
  }

  private idleTimer: NodeJS.Timeout | undefined;

  idleInTransaction(idle: boolean): void {
    if (!idle && !this.idleTimer) return; // the common case, on every message
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const ms = this.ctx.config.pool.idle_transaction_timeout_ms;
    if (!idle || ms <= 0 || this.state === 'closed') return;
    this.idleTimer = setTimeout(() => {
      this.fatal(
        new PgError(SQLSTATE.IDLE_IN_TRANSACTION_TIMEOUT, `terminating connection: idle in transaction for longer than pool.idle_transaction_timeout_ms (${ms} ms)`, {
          hint: 'commit or roll back promptly; the open transaction was rolled back',
        }),
      );
    }, ms);
    this.idleTimer.unref();
  }

  private async authenticate(): Promise<void> {
    const { credentials, throttle, config } = this.ctx;
    let cred;
    try {
      cred = await credentials.get(this.user);
    } catch (e) {
      throw new PgError(SQLSTATE.CONNECTION_FAILURE, `could not look up the credentials of user "${this.user}": ${(e as Error).message}`, {
        hint: 'the auth query runs against the primary; check that it is reachable',
      });
    }
    // An address over the failure threshold waits before every attempt, so a client cannot tell a
    // failure by the delay of the answer and hang up early.
    const delay = throttle.delayMs(this.address);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    if (this.gone) return;
    const auth = new ClientAuthenticator(this.user, cred, {
      tls: this.tls,
      defaultMethod: config.auth.method,
      authQuery: config.auth.query !== undefined,
      mockSecret: this.ctx.mockSecret,
    });
    let step = auth.start();
    for (;;) {
      if (step.send.length) this.socket.write(step.send.length === 1 ? step.send[0]! : Buffer.concat(step.send));
      if (step.done) break;
      step = auth.next(await this.queue.next());
    }
    if (step.done === 'fail') {
      throttle.failure(this.address);
      // Re-read the user from the primary in the background (rate-limited by the store), so a changed
      // password or a role created since is picked up by the next attempt. The cached entry and any learned
      // ClientKey stay until the answer arrives: clients already logged in keep getting server connections.
      if (cred?.source !== 'config' && config.auth.query) void credentials.get(this.user, { refresh: true }).catch(() => {});
      this.ctx.events.emit({ type: 'client_auth_failed', client: this.id, address: this.address, user: this.user, reason: step.reason });
      this.reported = true;
      throw step.error;
    }
    // Failures are not wiped by a success: one valid account must not reset the count for guesses at others.
    if (step.clientKey && cred?.secret?.kind === 'scram') credentials.rememberClientKey(this.user, step.clientKey);
    this.socket.write(m.authenticationOk());
    this.ctx.events.emit({
      type: 'client_authenticated',
      client: this.id,
      address: this.address,
      user: this.user,
      database: this.database,
      method: cred?.method ?? 'unknown',
    });
  }

  /** Bring the server connection to the client's startup settings; only values that differ are sent. */
  private async applySettings(server: ServerConnection, settings: Map<string, string>): Promise<void> {
    const reported = new Map<string, string>();
    for (const [k, v] of server.params) reported.set(k.toLowerCase(), v);
    const todo: Promise<{ error?: PgError }>[] = [];
    for (const [name, value] of settings) {
      if (reported.get(name) === value) continue;
      todo.push(server.queryParams('SELECT pg_catalog.set_config($1, $2, false)', [name, value]));
    }
    for (const r of await Promise.all(todo)) {
      if (r.error) throw new PgError(r.error.code, r.error.message, { severity: 'FATAL', detail: r.error.detail, hint: r.error.hint });
    }
  }

  // ------------------------------------------------------------ relay

  /**
   * Note one client message type on its way to the server: Query, Sync and FunctionCall are each answered
   * by one ReadyForQuery. Returns false for Terminate, which ends the session instead of being relayed.
   */
  private account(t: number): boolean {
    if (t === T_QUERY || t === T_SYNC || t === T_FUNCTION_CALL) {
      this.syncsSent++;
      this.atBoundary = true;
    } else if (t === T_TERMINATE) {
      return false;
    } else if (t !== T_COPY_DATA && t !== T_COPY_DONE && t !== T_COPY_FAIL) {
      this.atBoundary = false;
    }
    return true;
  }

  /** Client → server: the head and the run of n messages from the last scan, as at most two writes. */
  private relaySession(n: number): void {
    const server = this.server;
    if (!server) return;
    if (this.idleTimer) this.idleInTransaction(false);
    const f = this.framer;
    let ok = true;
    if (f.head) {
      if (!this.account(f.head[0]!)) return this.relayed(server, ok, true);
      ok = server.write(f.head);
    }
    const buf = f.scanned;
    const starts = f.starts;
    let end = 0;
    while (end < n && this.account(buf[starts[end]!]!)) end++;
    if (end > 0) ok = server.write(buf.subarray(0, starts[end]));
    this.relayed(server, ok, end < n);
  }

  /** Client → server, message by message. */
  private relayMessages(msgs: Buffer[]): void {
    const server = this.server;
    if (!server) return;
    let ok = true;
    for (const msg of msgs) {
      if (!this.account(msg[0]!)) return this.relayed(server, ok, true);
      ok = server.write(msg);
    }
    this.relayed(server, ok, false);
  }

  private relayed(server: ServerConnection, ok: boolean, terminate: boolean): void {
    if (server.writableLength > 0) this.reader?.replace(); // the queued write still points into the read buffer
    if (terminate) return this.close();
    if (!ok) {
      this.socket.pause();
      server.onDrain(() => this.socket.resume());
    }
  }

  /** Server → client. Returns true when a write was queued, i.e. the bytes are still referenced. */
  onServerData(head: Buffer | undefined, run: Buffer): boolean {
    const server = this.server;
    if (server && server.txStatus !== 'I' && this.atBoundary && this.syncsSent === server.readyCount - this.readyBase) this.idleInTransaction(true);
    let ok = true;
    if (head) ok = this.socket.write(head);
    if (run.length > 0) ok = this.socket.write(run);
    if (!ok && server) {
      server.pause();
      this.socket.once('drain', () => server.resume());
    }
    return this.socket.writableLength > 0;
  }

  onServerClose(err: Error | undefined): void {
    const server = this.server;
    this.server = undefined;
    this.serverLost(err, server?.id ?? 0);
  }

  serverLost(err: Error | undefined, serverId = 0): void {
    if (this.state === 'closed') return;
    this.ctx.events.emit({ type: 'server_lost', client: this.id, server: serverId, message: err?.message ?? 'closed' });
    this.fatal(
      new PgError(SQLSTATE.CONNECTION_FAILURE, 'server connection lost: the database server closed the connection unexpectedly', {
        detail: err?.message,
        hint: 'the transaction in progress, if any, was not committed by the gateway; reconnect and retry',
      }),
    );
  }

  /** Forward a cancel to the server connection this client is using right now. */
  cancelServer(): void {
    if (this.console) return this.console.cancel();
    // In transaction pooling only while the client's own work runs there, not the gateway's (a probe).
    void (this.relay ? this.relay.cancelTarget() : this.server)?.cancel();
  }

  // ------------------------------------------------------------ ending

  private reported = false;

  /** The client has left (re-read after every await: TypeScript would narrow a plain state check). */
  private get gone(): boolean {
    return this.state === 'closed';
  }
  private handshaking = false;

  /** Send an error (once), log it once, and close. */
  fatal(err: PgError): void {
    if (this.state === 'closed') return;
    if (!this.reported) {
      this.ctx.events.emit({ type: 'client_error', client: this.id, address: this.address, code: err.code, message: err.message });
    }
    this.reported = true;
    if (this.socket.writable) this.socket.write(err.toMessage());
    this.close();
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.socket.end();
    // A peer that never closes its side must not keep the socket (or a shutdown) waiting.
    const socket = this.socket;
    setTimeout(() => socket.destroy(), 2000).unref();
    this.finish();
  }

  private onSocketClosed(): void {
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.finish();
    }
    this.socket.destroy();
  }

  /** Give back what the session holds. The server connection is reused only if it sits at a message boundary. */
  private finish(): void {
    this.ctx.sessions.delete(this);
    clearTimeout(this.idleTimer);
    this.queue.fail(new PgError(SQLSTATE.CONNECTION_FAILURE, 'client closed the connection'));
    this.leaving.abort();
    if (this.key) this.ctx.cancelKeys.release(this.key.pid);
    this.relay?.finish();
    this.console?.finish();
    const server = this.server;
    this.server = undefined;
    if (server) {
      const idleAtBoundary = this.atBoundary && this.syncsSent === server.readyCount - this.readyBase;
      (this.sessionPools ?? this.ctx.pools).release(server, idleAtBoundary);
    }
    this.ctx.events.emit({
      type: 'client_disconnected',
      client: this.id,
      address: this.address,
      duration_ms: Date.now() - this.connectedAt,
      // Only a client that logged in counts for its database (a startup packet can name anything).
      ...(this.key !== undefined && { database: this.database }),
      bytes_in: this.socket.bytesRead,
      bytes_out: this.socket.bytesWritten,
    });
  }
}
