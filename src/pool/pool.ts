// Server connections per (database, user) to one node: size and per-database caps, a FIFO waiter queue, reset before reuse, reaping.

import { ServerConnection, type ServerCredentials, type ServerEndpoint } from '../backend/server-connection.js';
import { PgError, SQLSTATE } from '../protocol/errors.js';
import type { PoolConfig, ServerTlsConfig } from '../config/types.js';

export interface PoolManagerOptions {
  /** The node's name, for stats and events. */
  node?: string;
  endpoint: ServerEndpoint;
  pool: PoolConfig;
  tls: ServerTlsConfig;
  maxMessageBytes: number;
  /** How to log in to the server as this user (looked up when a connection is opened). */
  credentials: (user: string) => ServerCredentials;
  onEvent?: (event: PoolEvent) => void;
}

export type PoolEvent =
  | { type: 'server_opened'; node: string; id: number; database: string; user: string }
  | { type: 'server_closed'; node: string; id: number; database: string; user: string; reason: string }
  | { type: 'pool_exhausted'; node: string; database: string; user: string; waited_ms: number };

export interface PoolStats {
  node: string;
  database: string;
  user: string;
  idle: number;
  /** Leased, or being reset after a lease (`resetting` of them). */
  active: number;
  /** Given back and running ROLLBACK / DISCARD ALL before they are idle again. */
  resetting: number;
  opening: number;
  /** Clients queued for a connection, those held by a PAUSE included. */
  waiting: number;
  maxwait_ms: number;
  /** The pool's database is paused (PAUSE on the console). */
  paused: boolean;
}

/** One server connection as the console lists it (SHOW SERVERS). */
export interface ServerListing {
  conn: ServerConnection;
  database: string;
  user: string;
  /** active: leased; tested: being reset after a lease; idle: ready for the next lease. */
  state: 'active' | 'tested' | 'idle';
  /** It will be closed when given back rather than reused (its node is draining, or its database paused). */
  closeNeeded: boolean;
}

class UserPool {
  readonly idle: ServerConnection[] = [];
  /** Leased connections, and those being reset after a lease (also in `resetting`). */
  readonly busy = new Set<ServerConnection>();
  readonly resetting = new Set<ServerConnection>();
  opening = 0;
  constructor(
    readonly database: string,
    readonly user: string,
  ) {}
  get total(): number {
    return this.idle.length + this.busy.size + this.opening;
  }
}

interface Waiter {
  pool: UserPool;
  since: number;
  /** When queue_timeout_ms runs out; waiters are queued in this order (one timeout for all). */
  deadline: number;
  done: (err: Error | undefined, conn?: ServerConnection) => void;
  /** Who is waiting, for abandon() and waitingSince(): the relay, or the signal of acquire(). */
  owner?: object;
}

/** The (database, user) pool a lease is for; resolve it once with PoolManager.handle(). */
export type PoolHandle = UserPool;

export class PoolManager {
  private readonly pools = new Map<string, UserPool>();
  private readonly owner = new WeakMap<ServerConnection, UserPool>();
  private waiters: Waiter[] = [];
  /**
   * Waiters of paused databases, in arrival order: outside `waiters`, so they have no deadline while
   * paused and the deadline order of `waiters` holds. RESUME moves them back with a fresh deadline.
   */
  private held: Waiter[] = [];
  /** PAUSE with no database: everything is paused. */
  private pausedAll = false;
  private readonly pausedDbs = new Set<string>();
  /** Bumped per database by closeDatabase(): a connection whose opening began before is closed when it arrives. */
  private readonly dbGeneration = new Map<string, number>();
  private readonly reaper: NodeJS.Timeout;
  /** Armed for the oldest waiter's deadline: one timer for the whole queue, not one per waiter. */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private closing = false;
  /** The node is leaving: no new leases, connections are closed as they come back. */
  private draining = false;
  /** Bumped by closeAll(): a connection whose opening began before is closed when it arrives. */
  private generation = 0;

  constructor(private readonly opts: PoolManagerOptions) {
    this.reaper = setInterval(() => this.reap(), 1000);
    this.reaper.unref();
  }

  get node(): string {
    return this.opts.node ?? 'primary';
  }

  /** Server connections in use or being opened (least-connections balances on this). */
  get inUse(): number {
    let n = 0;
    for (const p of this.pools.values()) n += p.busy.size + p.opening;
    return n;
  }

  /** Every server connection of this node, idle ones included. */
  get total(): number {
    let n = 0;
    for (const p of this.pools.values()) n += p.total;
    return n;
  }

  /**
   * The node takes no more work: waiters get an error (their clients go elsewhere), idle connections
   * close now, busy ones when they are given back (their clients finish what they are doing).
   */
  drain(reason: string): void {
    this.draining = true;
    this.failWaiters(reason);
    for (const p of this.pools.values()) for (const c of p.idle.splice(0)) c.close(reason);
  }

  /**
   * Close every connection, busy ones too (a node removed at once, or a primary that is one no more).
   * Unlike close() the manager stays usable: the node may serve again (a former primary back as a replica).
   */
  closeAll(reason: string, deferred = false): void {
    this.generation++;
    this.closedAllFor = reason;
    this.failWaiters(reason);
    if (deferred) return queueMicrotask(() => this.closeConnections(reason));
    this.closeConnections(reason);
  }

  private closeConnections(reason: string): void {
    for (const p of this.pools.values()) {
      for (const c of p.idle.splice(0)) c.close(reason);
      for (const c of [...p.busy]) c.close(reason);
    }
  }

  /** Back to normal service after drain(). */
  undrain(): void {
    this.draining = false;
  }

  private failWaiters(reason: string): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    const all = [...this.waiters.splice(0), ...this.held.splice(0)];
    for (const w of all) w.done(refusal(`node "${this.node}" ${reason}`));
  }

  // ------------------------------------------------------------ PAUSE, RESUME, KILL (the console)

  /** Whether new leases for the database wait for resume(). */
  isPaused(database: string): boolean {
    return this.pausedAll || this.pausedDbs.has(database);
  }

  /** What is paused: everything, or these databases. */
  get paused(): { all: boolean; databases: string[] } {
    return { all: this.pausedAll, databases: [...this.pausedDbs] };
  }

  /**
   * PgBouncer's PAUSE: new leases of the database (every database when none is given) wait, with no
   * queue timeout, until resume(); idle connections close now and leased ones close when they are given
   * back, so the server can be restarted. Waiting until nothing is active is the caller's part (activeCount).
   */
  pause(database?: string): void {
    if (database === undefined) this.pausedAll = true;
    else this.pausedDbs.add(database);
    const keep: Waiter[] = [];
    for (const w of this.waiters) (this.isPaused(w.pool.database) ? this.held : keep).push(w);
    this.waiters = keep;
    for (const p of this.pools.values()) {
      if (!this.isPaused(p.database)) continue;
      for (const c of p.idle.splice(0)) c.close('database paused');
    }
  }

  /**
   * Undo pause(): with no database, every pause; with one, that database's (an error when everything
   * is paused, since the rest would stay paused without saying so). Held waiters queue again, in
   * their order, with a fresh queue_timeout_ms. Returns whether anything was paused.
   */
  resume(database?: string): boolean {
    let was: boolean;
    if (database === undefined) {
      was = this.pausedAll || this.pausedDbs.size > 0;
      this.pausedAll = false;
      this.pausedDbs.clear();
    } else {
      if (this.pausedAll) throw new Error(`every database is paused; RESUME without a database name resumes them all`);
      was = this.pausedDbs.delete(database);
    }
    const deadline = Date.now() + this.opts.pool.queue_timeout_ms;
    const still: Waiter[] = [];
    for (const w of this.held) {
      if (this.isPaused(w.pool.database)) still.push(w);
      else {
        // Appended with the latest deadline there is: `waiters` stays in deadline order.
        w.deadline = deadline;
        this.waiters.push(w);
      }
    }
    this.held = still;
    this.armDeadline();
    this.pump();
    return was;
  }

  /** Server connections of the database (all when none is given) that are leased, being reset or being opened. */
  activeCount(database?: string): number {
    let n = 0;
    for (const p of this.pools.values()) if (database === undefined || p.database === database) n += p.busy.size + p.opening;
    return n;
  }

  /**
   * KILL: close every connection of the database now, leased ones too, and fail its waiters; connections
   * still being opened are closed when they arrive. Returns how many connections were closed.
   */
  closeDatabase(database: string, reason: string): number {
    this.dbGeneration.set(database, (this.dbGeneration.get(database) ?? 0) + 1);
    const err = () => new PgError(SQLSTATE.ADMIN_SHUTDOWN, `server connections of database "${database}" closed: ${reason}`);
    for (const list of [this.waiters, this.held]) {
      for (const w of list.filter((x) => x.pool.database === database)) {
        list.splice(list.indexOf(w), 1);
        w.done(err());
      }
    }
    let n = 0;
    for (const p of this.pools.values()) {
      if (p.database !== database) continue;
      for (const c of [...p.idle.splice(0), ...p.busy]) {
        c.close(reason);
        n++;
      }
    }
    return n;
  }

  /** When the owner (a relay, or the signal given to acquire) started waiting for a connection; undefined when it is not waiting. */
  waitingSince(owner: object): number | undefined {
    for (const w of this.waiters) if (w.owner === owner) return w.since;
    for (const w of this.held) if (w.owner === owner) return w.since;
    return undefined;
  }

  /** Every open server connection of this node with its state (connections still being opened are only counted, in stats()). */
  connections(): ServerListing[] {
    const out: ServerListing[] = [];
    for (const p of this.pools.values()) {
      const closeNeeded = this.draining || this.isPaused(p.database);
      for (const conn of p.busy) out.push({ conn, database: p.database, user: p.user, state: p.resetting.has(conn) ? 'tested' : 'active', closeNeeded });
      for (const conn of p.idle) out.push({ conn, database: p.database, user: p.user, state: 'idle', closeNeeded });
    }
    return out;
  }

  /** The pool for (database, user), created on first use. */
  handle(database: string, user: string): PoolHandle {
    const key = `${database}\0${user}`;
    let p = this.pools.get(key);
    if (!p) {
      p = new UserPool(database, user);
      this.pools.set(key, p);
    }
    return p;
  }

  private dbTotal(database: string): number {
    let n = 0;
    for (const p of this.pools.values()) if (p.database === database) n += p.total;
    return n;
  }

  /**
   * Lease a server connection for (database, user). Waits in FIFO order up to pool.queue_timeout_ms,
   * then rejects with 53300. The signal lets a client that goes away leave the queue.
   */
  acquire(database: string, user: string, signal?: AbortSignal): Promise<ServerConnection> {
    if (signal?.aborted) return Promise.reject(new PgError(SQLSTATE.QUERY_CANCELED, 'client left before a server connection was leased'));
    return new Promise<ServerConnection>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      let settled = false;
      // The signal identifies the client in the queue (waitingSince) when no relay does.
      const w = this.lease(this.handle(database, user), signal, (err, conn) => {
        settled = true;
        if (onAbort) signal!.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(conn!);
      });
      if (w && signal && !settled) {
        onAbort = () => {
          if (this.removeWaiter(w)) w.done(new PgError(SQLSTATE.QUERY_CANCELED, 'client left the queue'));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  /**
   * The callback form of acquire(), for the per-transaction path: done is called once, with a
   * connection or an error (53300 after queue_timeout_ms). Returns the queue entry when it had to wait.
   * A client that goes away calls abandon(owner).
   */
  lease(pool: PoolHandle, owner: object | undefined, done: (err: Error | undefined, conn?: ServerConnection) => void): Waiter | undefined {
    if (this.closing) {
      done(new PgError(SQLSTATE.ADMIN_SHUTDOWN, 'the gateway is shutting down'));
      return undefined;
    }
    if (this.draining) {
      done(new PgError(SQLSTATE.CONNECTION_FAILURE, `node "${this.node}" is being drained`));
      return undefined;
    }
    if (this.isPaused(pool.database)) {
      const w: Waiter = { pool, since: Date.now(), deadline: Infinity, done, owner };
      this.held.push(w);
      return w;
    }
    if (!this.waiters.some((w) => w.pool.database === pool.database)) {
      const got = this.take(pool);
      if (got) {
        deliver(got, done);
        return undefined;
      }
    }
    const now = Date.now();
    const w: Waiter = { pool, since: now, deadline: now + this.opts.pool.queue_timeout_ms, done, owner };
    this.waiters.push(w);
    this.armDeadline();
    // Queued behind others of this database, but maybe servable now (another user's pool has room).
    this.pump();
    return w;
  }

  /** The owner left: its place in the queue, if it has one, is given up. */
  abandon(owner: object): void {
    for (const w of [...this.waiters, ...this.held]) {
      if (w.owner === owner) {
        this.removeWaiter(w);
        w.done(new PgError(SQLSTATE.QUERY_CANCELED, 'client left the queue'));
        return;
      }
    }
  }

  private armDeadline(): void {
    if (this.deadlineTimer || this.waiters.length === 0) return;
    const wait = Math.max(0, this.waiters[0]!.deadline - Date.now());
    this.deadlineTimer = setTimeout(() => {
      this.deadlineTimer = undefined;
      const now = Date.now();
      while (this.waiters.length > 0 && this.waiters[0]!.deadline <= now) this.expire(this.waiters.shift()!);
      this.armDeadline();
    }, wait);
    this.deadlineTimer.unref();
  }

  private expire(w: Waiter): void {
    const cfg = this.opts.pool;
    const { database, user } = w.pool;
    this.opts.onEvent?.({ type: 'pool_exhausted', node: this.node, database, user, waited_ms: Date.now() - w.since });
    w.done(
      new PgError(
        SQLSTATE.TOO_MANY_CONNECTIONS,
        `no server connection for database "${database}" user "${user}" became free within pool.queue_timeout_ms (${cfg.queue_timeout_ms} ms)`,
        {
          detail: `Limits: pool.size ${cfg.size} per database and user (${w.pool.total} in use), pool.max_db_connections ${cfg.max_db_connections} per database (${this.dbTotal(database)} in use).`,
          hint: 'Raise pool.size or pool.max_db_connections, or shorten what clients hold connections for.',
        },
      ),
    );
  }

  private removeWaiter(w: Waiter): boolean {
    for (const list of [this.waiters, this.held]) {
      const i = list.indexOf(w);
      if (i >= 0) {
        list.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  /** An idle connection, a new one if the limits allow, or null. */
  /** An idle connection (synchronously), a new one being opened (a promise), or null. */
  private take(pool: UserPool): ServerConnection | Promise<ServerConnection> | null {
    if (this.isPaused(pool.database)) return null;
    while (pool.idle.length > 0) {
      const c = pool.idle.pop()!;
      if (c.closed) continue;
      pool.busy.add(c);
      return c;
    }
    const cfg = this.opts.pool;
    if (pool.total >= cfg.size) return null;
    if (this.dbTotal(pool.database) >= cfg.max_db_connections) {
      // At the database cap: an idle connection of another user gives its slot to this one.
      const victim = this.idleVictim(pool);
      if (!victim) return null;
      this.closeIdle(victim.pool, victim.conn, 'database cap reached: slot given to another user');
    }
    return this.open(pool);
  }

  private idleVictim(pool: UserPool): { pool: UserPool; conn: ServerConnection } | null {
    let best: { pool: UserPool; conn: ServerConnection } | null = null;
    for (const p of this.pools.values()) {
      if (p === pool || p.database !== pool.database) continue;
      for (const c of p.idle) if (!best || c.lastUsedAt < best.conn.lastUsedAt) best = { pool: p, conn: c };
    }
    return best;
  }

  private closedAllFor = '';

  private async open(pool: UserPool): Promise<ServerConnection> {
    pool.opening++;
    const generation = this.generation;
    const dbGeneration = this.dbGeneration.get(pool.database) ?? 0;
    let conn: ServerConnection;
    try {
      conn = await this.openDedicated(pool.database, pool.user);
    } catch (e) {
      pool.opening--;
      queueMicrotask(() => this.pump());
      throw e;
    }
    // Everything was closed while this one was opening (the node stopped being the primary, or left).
    if (generation !== this.generation || this.draining || this.closing) {
      pool.opening--;
      conn.close(this.closedAllFor || 'node drained');
      queueMicrotask(() => this.pump());
      throw refusal(`node "${this.node}" ${this.closedAllFor || 'is being drained'}`);
    }
    // Its database was killed meanwhile (KILL on the console).
    if (dbGeneration !== (this.dbGeneration.get(pool.database) ?? 0)) {
      pool.opening--;
      conn.close('database killed');
      queueMicrotask(() => this.pump());
      throw new PgError(SQLSTATE.ADMIN_SHUTDOWN, `server connections of database "${pool.database}" closed: database killed`);
    }
    // Decremented together with adding to busy, so the pool's total never dips in between.
    pool.opening--;
    pool.busy.add(conn);
    this.owner.set(conn, pool);
    this.opts.onEvent?.({ type: 'server_opened', node: this.node, id: conn.id, database: pool.database, user: pool.user });
    conn.onClose((err) => {
      pool.busy.delete(conn);
      pool.resetting.delete(conn);
      const i = pool.idle.indexOf(conn);
      if (i >= 0) pool.idle.splice(i, 1);
      this.opts.onEvent?.({ type: 'server_closed', node: this.node, id: conn.id, database: pool.database, user: pool.user, reason: err?.message ?? 'closed' });
      // Deferred: a close can happen inside take() (an idle victim at the database cap), and serving
      // waiters from there would hand out the slot take() is about to use.
      queueMicrotask(() => this.pump());
    });
    return conn;
  }

  /**
   * Give a connection back. reusable=false (the client left mid-request, or the connection is in an
   * unknown state) closes it. Otherwise, with reset 'discard', an open transaction is rolled back and the
   * session reset with DISCARD ALL before anyone else can lease it; with 'keep' (transaction pooling, the
   * connection idle between a client's transactions, its session state tracked by the caller) it is
   * idle again at once.
   */
  release(conn: ServerConnection, reusable: boolean, reset: 'discard' | 'keep' = 'discard'): void {
    const pool = this.owner.get(conn) ?? this.handle(conn.database, conn.user);
    conn.detach();
    const closeReason = this.closeReason(pool, conn, reusable, reset);
    if (closeReason || conn.closed) {
      pool.busy.delete(conn);
      conn.close(closeReason);
      this.pump();
      return;
    }
    if (reset === 'keep') {
      conn.lastUsedAt = Date.now();
      // Straight to the next client of this pool when it is first in line for the database: no trip
      // through the idle list, and FIFO order across users (under max_db_connections) is kept.
      const i = this.waiters.findIndex((w) => w.pool.database === pool.database);
      if (i >= 0 && this.waiters[i]!.pool === pool) {
        const next = this.waiters.splice(i, 1)[0]!;
        next.done(undefined, conn);
        return;
      }
      pool.busy.delete(conn);
      pool.idle.push(conn);
      this.pump();
      return;
    }
    pool.resetting.add(conn);
    void this.reset(conn).then((ok) => {
      pool.resetting.delete(conn);
      if (!pool.busy.delete(conn)) return; // closed meanwhile
      const paused = this.isPaused(pool.database);
      if (!ok || this.closing || this.draining || paused) {
        conn.close(!ok ? 'reset (ROLLBACK / DISCARD ALL) failed' : this.closing ? 'gateway shutting down' : this.draining ? 'node drained' : 'database paused');
      } else {
        conn.lastUsedAt = Date.now();
        pool.idle.push(conn);
      }
      this.pump();
    });
  }

  /** Why a connection given back is closed instead of kept; undefined when it is kept. */
  private closeReason(pool: UserPool, conn: ServerConnection, reusable: boolean, reset: 'discard' | 'keep'): string | undefined {
    if (!reusable) return 'released in the middle of a request';
    if (this.closing) return 'gateway shutting down';
    if (this.draining) return 'node drained';
    if (this.isPaused(pool.database)) return 'database paused';
    const lifetime = this.opts.pool.lifetime_ms;
    if (lifetime > 0 && Date.now() - conn.createdAt > lifetime) return 'pool.lifetime_ms reached';
    if (reset === 'keep' && conn.txStatus !== 'I') return 'released inside a transaction';
    return undefined;
  }

  /** A connection outside the pool's limits and queue, for the gateway's own use (the LISTEN connection). */
  openDedicated(database: string, user: string): Promise<ServerConnection> {
    return ServerConnection.connect({
      endpoint: this.opts.endpoint,
      user,
      database,
      credentials: this.opts.credentials(user),
      tls: this.opts.tls,
      connectTimeoutMs: this.opts.pool.connect_timeout_ms,
      maxMessageBytes: this.opts.maxMessageBytes,
    });
  }

  private async reset(conn: ServerConnection): Promise<boolean> {
    try {
      if (conn.txStatus !== 'I') {
        const r = await conn.query('ROLLBACK');
        if (r.error) return false;
      }
      const r = await conn.query('DISCARD ALL');
      return !r.error && conn.txStatus === 'I';
    } catch {
      return false;
    }
  }

  /** Serve waiters, oldest first, that can be served now. */
  private pump(): void {
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i]!;
      const got = this.take(w.pool);
      if (!got) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      deliver(got, w.done);
    }
  }

  private closeIdle(pool: UserPool, conn: ServerConnection, reason: string): void {
    const i = pool.idle.indexOf(conn);
    if (i >= 0) pool.idle.splice(i, 1);
    conn.close(reason);
  }

  private reap(): void {
    const { idle_timeout_ms, lifetime_ms } = this.opts.pool;
    const now = Date.now();
    for (const p of this.pools.values()) {
      for (const c of [...p.idle]) {
        if ((idle_timeout_ms > 0 && now - c.lastUsedAt > idle_timeout_ms) || (lifetime_ms > 0 && now - c.createdAt > lifetime_ms)) {
          this.closeIdle(p, c, now - c.lastUsedAt > idle_timeout_ms && idle_timeout_ms > 0 ? 'pool.idle_timeout_ms reached' : 'pool.lifetime_ms reached');
        }
      }
    }
  }

  stats(): PoolStats[] {
    const now = Date.now();
    return [...this.pools.values()].map((p) => {
      let waiting = 0;
      let oldest = now;
      for (const list of [this.waiters, this.held]) {
        for (const w of list) {
          if (w.pool !== p) continue;
          waiting++;
          if (w.since < oldest) oldest = w.since;
        }
      }
      return {
        node: this.node,
        database: p.database,
        user: p.user,
        idle: p.idle.length,
        active: p.busy.size,
        resetting: p.resetting.size,
        opening: p.opening,
        waiting,
        maxwait_ms: now - oldest,
        paused: this.isPaused(p.database),
      };
    });
  }

  /** Close every connection; reject every waiter. */
  close(): void {
    this.closing = true;
    clearInterval(this.reaper);
    clearTimeout(this.deadlineTimer);
    for (const w of [...this.waiters.splice(0), ...this.held.splice(0)]) w.done(new PgError(SQLSTATE.ADMIN_SHUTDOWN, 'the gateway is shutting down'));
    for (const p of this.pools.values()) {
      for (const c of p.idle.splice(0)) c.close('gateway shutting down');
      for (const c of p.busy) c.close('gateway shutting down');
    }
  }
}

/** The node turned the lease away (drained, removed, no longer the primary): nothing is wrong with it. */
function refusal(message: string): PgError {
  return Object.assign(new PgError(SQLSTATE.CONNECTION_FAILURE, message), { refused: true });
}

/** Whether a lease error is the node turning it away rather than failing. */
export function isRefusal(err: Error): boolean {
  return (err as { refused?: boolean }).refused === true;
}

function deliver(got: ServerConnection | Promise<ServerConnection>, done: (err: Error | undefined, conn?: ServerConnection) => void): void {
  if (got instanceof ServerConnection) done(undefined, got);
  else got.then((c) => done(undefined, c), done);
}
