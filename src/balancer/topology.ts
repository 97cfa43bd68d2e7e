// The database nodes a gateway routes to: one pool manager per node, round robin over healthy replicas,
// and the WAL positions (polled in the background) that read-your-writes is decided by.

import { performance } from 'node:perf_hooks';
import { ServerConnection, type ServerCredentials } from '../backend/server-connection.js';
import { PoolManager, type PoolEvent } from '../pool/pool.js';
import type { Config, NodeConfig } from '../config/types.js';

export type NodeEvent =
  | { type: 'node_down'; node: string; role: 'primary' | 'replica'; message: string }
  | { type: 'node_up'; node: string; role: 'primary' | 'replica' };

export class DbNode {
  /** Reachable and answering the monitor's query (or, without a monitor, not yet seen failing). */
  healthy = true;
  /** WAL position in bytes: written on the primary, replayed on a replica; -1 until first read. */
  lsn = -1;
  /** Why the node is not healthy. */
  lastError: string | undefined;
  /** Server connections leased from this node's pools (one per client transaction, roughly). */
  leases = 0;
  constructor(
    readonly config: NodeConfig,
    readonly role: 'primary' | 'replica',
    readonly pools: PoolManager,
  ) {}
  get name(): string {
    return this.config.name;
  }
}

/** A sample of the primary's WAL position, and when the query that read it was sent. */
interface Sample {
  sentAt: number;
  lsn: number;
}

/** Without a monitor login, a node taken out of rotation is tried again after this long. */
const RETRY_UNMONITORED_MS = 5000;

/** Samples kept: at the default 100 ms this covers 12.8 s, longer than any write waits to be replayed. */
const SAMPLES = 128;

export interface TopologyOptions {
  config: Config;
  maxMessageBytes: number;
  credentials: (user: string) => ServerCredentials;
  onEvent: (e: PoolEvent | NodeEvent) => void;
}

export class Topology {
  readonly primary: DbNode;
  readonly replicas: DbNode[];
  private next = 0;
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly monitors = new Map<DbNode, ServerConnection>();
  /** Nodes whose check is in flight: each node is checked on its own, so one that hangs holds up no other. */
  private readonly polling = new Set<DbNode>();
  private closed = false;

  constructor(private readonly opts: TopologyOptions) {
    const c = opts.config;
    const make = (n: NodeConfig, role: 'primary' | 'replica') =>
      new DbNode(
        n,
        role,
        new PoolManager({
          node: n.name,
          endpoint: n,
          pool: c.pool,
          tls: c.server_tls,
          maxMessageBytes: opts.maxMessageBytes,
          credentials: opts.credentials,
          onEvent: opts.onEvent,
        }),
      );
    this.primary = make(c.primary, 'primary');
    this.replicas = c.replicas.map((r) => make(r, 'replica'));
  }

  get nodes(): DbNode[] {
    return [this.primary, ...this.replicas];
  }

  /** Whether reads may go to replicas at all. */
  get splitting(): boolean {
    return this.opts.config.routing.read_write_split && this.replicas.length > 0;
  }

  /**
   * The next healthy replica in round-robin order whose replayed position is at least minLsn (any replayed
   * position when minLsn is undefined); undefined when there is none.
   */
  pickReplica(minLsn?: number): DbNode | undefined {
    const rs = this.replicas;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[(this.next + i) % rs.length]!;
      if (!r.healthy || (minLsn !== undefined && r.lsn < minLsn)) continue;
      this.next = (this.next + i + 1) % rs.length;
      return r;
    }
    return undefined;
  }

  /**
   * Whether every replica has replayed minLsn, so a client's read-your-writes window can close. Down
   * ones count too: one that comes back must not serve the client a read from before its write.
   */
  allReplayed(minLsn: number): boolean {
    return this.replicas.every((r) => r.lsn >= minLsn);
  }

  /**
   * The primary's WAL position read by a query sent after `at` (performance.now() time): at least the
   * position of any commit acknowledged before `at`. Undefined until such a sample exists.
   */
  lsnAfter(at: number): number | undefined {
    const s = this.samples;
    // Newest last; the first one sent after `at` is the tightest bound.
    let found: number | undefined;
    for (let i = s.length - 1; i >= 0 && s[i]!.sentAt > at; i--) found = s[i]!.lsn;
    return found;
  }

  /** The primary's insert position, read by a query sent at sentAt (performance.now() time). */
  notePrimaryLsn(sentAt: number, insertLsn: number): void {
    const lsn = insertToEnd(insertLsn);
    this.primary.lsn = lsn;
    if (lsn < 0) return;
    this.samples.push({ sentAt, lsn });
    if (this.samples.length > SAMPLES) this.samples.shift();
  }

  /** A lease or connection to the node failed: take it out of rotation until the monitor sees it again. */
  markDown(node: DbNode, message: string): void {
    if (!node.healthy) return;
    node.healthy = false;
    node.lastError = message;
    this.opts.onEvent({ type: 'node_down', node: node.name, role: node.role, message });
    // Without background checks nothing would bring it back: try it again after a while.
    if (!this.timer && !this.closed) setTimeout(() => this.markUp(node), RETRY_UNMONITORED_MS).unref();
  }

  private markUp(node: DbNode): void {
    node.lastError = undefined;
    if (node.healthy) return;
    node.healthy = true;
    this.opts.onEvent({ type: 'node_up', node: node.name, role: node.role });
  }

  /** Start polling every node's WAL position (nothing to do without replicas to route to). */
  start(): void {
    if (!this.splitting || this.opts.config.monitor.user === undefined) return;
    this.timer = setInterval(() => this.poll(), this.opts.config.monitor.interval_ms);
    this.timer.unref();
    this.poll();
  }

  private poll(): void {
    if (this.closed) return;
    for (const n of this.nodes) {
      if (this.polling.has(n)) continue;
      this.polling.add(n);
      void this.pollNode(n).finally(() => this.polling.delete(n));
    }
  }

  private async pollNode(node: DbNode): Promise<void> {
    // A node that accepts connections but does not answer (stopped, overloaded) is down too.
    const limit = Math.max(1000, 10 * this.opts.config.monitor.interval_ms);
    let timer: NodeJS.Timeout | undefined;
    try {
      const conn = await this.monitor(node);
      const sentAt = performance.now();
      timer = setTimeout(() => conn.destroy(new Error(`no answer to the monitor's query within ${limit} ms`)), limit);
      const r = await conn.query(LSN_SQL);
      clearTimeout(timer);
      if (r.error) throw r.error;
      const lsn = parseLsn(r.rows[0]?.[0] ?? null);
      if (node.role === 'primary') this.notePrimaryLsn(sentAt, lsn);
      else node.lsn = lsn;
      this.markUp(node);
    } catch (e) {
      clearTimeout(timer);
      this.monitors.get(node)?.close();
      this.monitors.delete(node);
      if (!this.closed) this.markDown(node, (e as Error).message);
    }
  }

  private async monitor(node: DbNode): Promise<ServerConnection> {
    const have = this.monitors.get(node);
    if (have && !have.closed) return have;
    const m = this.opts.config.monitor;
    const conn = await ServerConnection.connect({
      endpoint: node.config,
      user: m.user!,
      database: m.database,
      credentials: m.password !== undefined ? { password: m.password } : null,
      tls: this.opts.config.server_tls,
      connectTimeoutMs: Math.min(this.opts.config.pool.connect_timeout_ms, 2000),
      maxMessageBytes: 1 << 20,
    });
    if (this.closed) {
      conn.close();
      throw new Error('closed');
    }
    this.monitors.set(node, conn);
    return conn;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const c of this.monitors.values()) c.close();
    this.monitors.clear();
    for (const n of this.nodes) n.pools.close();
  }
}

/**
 * The replayed position on a standby; on a primary the insert position, which is past every record
 * already inserted, commits included (the written position lags behind with synchronous_commit off).
 */
const LSN_SQL =
  'SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_insert_lsn() END';

const WAL_PAGE = 8192;
const WAL_SEGMENT = 16 * 1024 * 1024;

/**
 * An insert position just past a page header is where the previous record ended, which is what a
 * standby reports as replayed: without this a write that ends a page would look unreplayed until the
 * next one (default page and segment sizes; the long header starts a segment).
 */
export function insertToEnd(lsn: number): number {
  if (lsn % WAL_SEGMENT === 40) return lsn - 40;
  if (lsn % WAL_PAGE === 24) return lsn - 24;
  return lsn;
}

/** 'X/Y' (two hex numbers) as a byte position; -1 for null. Exact up to 2^53 bytes (8 PiB of WAL). */
export function parseLsn(text: string | null): number {
  if (text === null) return -1;
  const slash = text.indexOf('/');
  return parseInt(text.slice(0, slash), 16) * 0x1_0000_0000 + parseInt(text.slice(slash + 1), 16);
}
