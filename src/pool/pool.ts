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
  active: number;
  opening: number;
  waiting: number;
  maxwait_ms: number;
}

class UserPool {
  readonly idle: ServerConnection[] = [];
  readonly busy = new Set<ServerConnection>();
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
  /** Who is waiting, for abandon(). */
  owner?: object;
}

/** The (database, user) pool a lease is for; resolve it once with PoolManager.handle(). */
export type PoolHandle = UserPool;

export class PoolManager {
  private readonly pools = new Map<string, UserPool>();
  private readonly owner = new WeakMap<ServerConnection, UserPool>();
  private waiters: Waiter[] = [];
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
    if (deferred) return queueMicrotask(() => this.closeAll(reason));
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
    for (const w of this.waiters.splice(0)) w.done(new PgError(SQLSTATE.CONNECTION_FAILURE, `node "${this.node}" ${reason}`));
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
      const w = this.lease(this.handle(database, user), undefined, (err, conn) => {
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
    for (const w of this.waiters) {
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
    const i = this.waiters.indexOf(w);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    return true;
  }

  /** An idle connection, a new one if the limits allow, or null. */
  /** An idle connection (synchronously), a new one being opened (a promise), or null. */
  private take(pool: UserPool): ServerConnection | Promise<ServerConnection> | null {
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
      throw new PgError(SQLSTATE.CONNECTION_FAILURE, `node "${this.node}" ${this.closedAllFor || 'is being drained'}`);
    }
    // Decremented together with adding to busy, so the pool's total never dips in between.
    pool.opening--;
    pool.busy.add(conn);
    this.owner.set(conn, pool);
    this.opts.onEvent?.({ type: 'server_opened', node: this.node, id: conn.id, database: pool.database, user: pool.user });
    conn.onClose((err) => {
      pool.busy.delete(conn);
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
    const lifetime = this.opts.pool.lifetime_ms;
    const closeReason = !reusable
      ? 'released in the middle of a request'
      : this.closing
        ? 'gateway shutting down'
        : this.draining
          ? 'node drained'
          : lifetime > 0 && Date.now() - conn.createdAt > lifetime
          ? 'pool.lifetime_ms reached'
          : reset === 'keep' && conn.txStatus !== 'I'
            ? 'released inside a transaction'
            : undefined;
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
    void this.reset(conn).then((ok) => {
      if (!pool.busy.delete(conn)) return; // closed meanwhile
      if (!ok || this.closing || this.draining) {
        conn.close(!ok ? 'reset (ROLLBACK / DISCARD ALL) failed' : this.closing ? 'gateway shutting down' : 'node drained');
      } else {
        conn.lastUsedAt = Date.now();
        pool.idle.push(conn);
      }
      this.pump();
    });
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
      const ws = this.waiters.filter((w) => w.pool === p);
      return {
        node: this.node,
        database: p.database,
        user: p.user,
        idle: p.idle.length,
        active: p.busy.size,
        opening: p.opening,
        waiting: ws.length,
        maxwait_ms: ws.length ? now - Math.min(...ws.map((w) => w.since)) : 0,
      };
    });
  }

  /** Close every connection; reject every waiter. */
  close(): void {
    this.closing = true;
    clearInterval(this.reaper);
    clearTimeout(this.deadlineTimer);
    for (const w of this.waiters.splice(0)) w.done(new PgError(SQLSTATE.ADMIN_SHUTDOWN, 'the gateway is shutting down'));
    for (const p of this.pools.values()) {
      for (const c of p.idle.splice(0)) c.close('gateway shutting down');
      for (const c of p.busy) c.close('gateway shutting down');
    }
  }
}

function deliver(got: ServerConnection | Promise<ServerConnection>, done: (err: Error | undefined, conn?: ServerConnection) => void): void {
  if (got instanceof ServerConnection) done(undefined, got);
  else got.then((c) => done(undefined, c), done);
}
