// The database nodes a gateway routes to, as they are now: which one is the primary (detected, not
// just configured), which replicas may take reads (bans, lag, drains), the balancer that picks among
// them, and the WAL positions (polled in the background) that read-your-writes and lag are decided by.

import { performance } from 'node:perf_hooks';
import { ServerConnection, type ServerCredentials } from '../backend/server-connection.js';
import { PoolManager, type PoolEvent } from '../pool/pool.js';
import { makeBalancer, type Balancer } from './strategy.js';
import type { BalancerConfig, Config, NodeConfig } from '../config/types.js';

/**
 * primary: takes writes. replica: in recovery, may take reads. fenced: writable but not the primary
 * (a former primary still up after a promotion, a server that is not part of this cluster): it takes nothing.
 */
export type NodeRole = 'primary' | 'replica' | 'fenced';

export type NodeEvent =
  | { type: 'node_down'; node: string; role: NodeRole; message: string }
  | { type: 'node_up'; node: string; role: NodeRole }
  | { type: 'replica_added'; node: string; host: string; port: number; weight: number; source: NodeSource }
  | { type: 'replica_draining'; node: string }
  | { type: 'replica_removed'; node: string; drained: boolean }
  | { type: 'replica_banned'; node: string; message: string; ban_ms: number }
  | { type: 'replica_unbanned'; node: string }
  | { type: 'replica_lagging'; node: string; lag_bytes: number | null; lag_ms: number | null }
  | { type: 'replica_caught_up'; node: string; lag_bytes: number | null; lag_ms: number | null }
  | { type: 'role_changed'; node: string; from: NodeRole; to: NodeRole }
  | { type: 'primary_changed'; from: string; to: string; timeline: number | null };

/** Where a replica came from: the config file (a reload may remove it) or the admin API (only the API removes it). */
export type NodeSource = 'config' | 'api';

export class DbNode {
  /** Reachable and answering (or, without a monitor, not seen failing). */
  healthy = true;
  /** Reads are kept off the node until then (performance.now() time); 0 when not banned. */
  bannedUntil = 0;
  banned = false;
  /** Why the node is not healthy. */
  lastError: string | undefined;
  /** WAL position in bytes: inserted on the primary, replayed on a replica; -1 until first read. */
  lsn = -1;
  /** pg_last_xact_replay_timestamp() as the server printed it (replicas). */
  replayAt: string | null = null;
  /** Timeline of a writable node (from the name of its current WAL file). */
  timeline: number | undefined;
  /** What the last successful probe said: undefined before one. */
  inRecovery: boolean | undefined;
  /** Passed a probe since it was added (a new replica takes reads only after that, when there is a monitor). */
  probed = false;
  lagBytes: number | undefined;
  lagMs: number | undefined;
  lagging = false;
  /** Leaving: takes no new transactions; removed when its last connection is gone. */
  draining = false;
  removed = false;
  /** Server connections leased from this node's pools since start (one per client transaction, roughly). */
  leases = 0;
  constructor(
    public config: NodeConfig,
    public role: NodeRole,
    readonly pools: PoolManager,
    readonly source: NodeSource,
  ) {}
  get name(): string {
    return this.config.name;
  }
  get weight(): number {
    return this.config.weight;
  }
  /** Server connections in use right now (least-connections balances on this). */
  get inUse(): number {
    return this.pools.inUse;
  }
}

/** A sample of the primary's WAL position, and when the query that read it was sent. */
interface Sample {
  sentAt: number;
  lsn: number;
}

/** Samples kept: at the default 100 ms this covers 12.8 s, longer than any write waits to be replayed. */
const SAMPLES = 128;
/** One sample a second for ten minutes, so a long lag is measured as long as it is. */
const COARSE_SAMPLES = 600;

export interface TopologyOptions {
  config: Config;
  maxMessageBytes: number;
  credentials: (user: string) => ServerCredentials;
  onEvent: (e: PoolEvent | NodeEvent) => void;
}

export class Topology {
  primary: DbNode;
  /** Every node that is not the primary and not removed: replicas, fenced nodes, draining ones. */
  private others: DbNode[];
  private balancer: Balancer;
  private readonly samples: Sample[] = [];
  private readonly coarse: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly monitors = new Map<DbNode, ServerConnection>();
  /** Nodes whose check is in flight: each node is checked on its own, so one that hangs holds up no other. */
  private readonly polling = new Set<DbNode>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /** The latest timeline a primary has been seen on. */
  private topTimeline = 0;
  private closed = false;

  constructor(private readonly opts: TopologyOptions) {
    const c = opts.config;
    this.primary = this.makeNode(c.primary, 'primary', 'config');
    this.others = c.replicas.map((r) => this.makeNode(r, 'replica', 'config'));
    this.balancer = makeBalancer(c.balancer.strategy);
  }

  private makeNode(n: NodeConfig, role: NodeRole, source: NodeSource): DbNode {
    const c = this.opts.config;
    const node = new DbNode(
      n,
      role,
      new PoolManager({
        node: n.name,
        endpoint: n,
        pool: c.pool,
        tls: c.server_tls,
        maxMessageBytes: this.opts.maxMessageBytes,
        credentials: this.opts.credentials,
        onEvent: this.opts.onEvent,
      }),
      source,
    );
    // Without background checks nothing would ever probe it: it serves until a lease fails.
    if (!this.monitored) node.probed = true;
    return node;
  }

  private get cfg(): BalancerConfig {
    return this.opts.config.balancer;
  }

  private get monitored(): boolean {
    return this.opts.config.monitor.user !== undefined;
  }

  /** Every node the gateway knows, the primary first. */
  get nodes(): DbNode[] {
    return [this.primary, ...this.others];
  }

  /** Nodes in recovery that are part of the read pool (draining ones included until they are gone). */
  get replicas(): DbNode[] {
    return this.others.filter((n) => n.role === 'replica');
  }

  node(name: string): DbNode | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  /** Whether reads may go to replicas at all. */
  get splitting(): boolean {
    return this.opts.config.routing.read_write_split && this.others.some((n) => n.role === 'replica' && !n.draining);
  }

  /**
   * The node for a read: a replica chosen by the balancer among those that may take reads (not banned,
   * not lagging, not draining, probed, weight above 0) and have replayed minLsn; the primary per
   * balancer.include_primary, and whenever no replica has replayed minLsn (read-your-writes comes first).
   * With include_primary 'never' and every replica out, bans and lag limits are lifted. avoid: a node
   * that just failed the client (its connection died), not yet known to be down.
   */
  pickRead(clientKey?: string, minLsn?: number, avoid?: DbNode): DbNode {
    const now = performance.now();
    const usable: DbNode[] = [];
    const ready: DbNode[] = [];
    for (const n of this.others) {
      if (n.role !== 'replica' || n.draining || n.weight <= 0 || n === avoid) continue;
      if (this.monitored && !n.probed) continue;
      if (minLsn !== undefined && n.lsn < minLsn) continue;
      usable.push(n);
      if (!this.isBanned(n, now) && !n.lagging) ready.push(n);
    }
    const include = this.cfg.include_primary;
    if (include === 'always' && this.primary.weight > 0) ready.push(this.primary);
    if (ready.length > 0) return this.balancer.pick(ready, clientKey)!;
    if (include === 'never' && usable.length > 0) return this.balancer.pick(usable, clientKey)!;
    return this.primary;
  }

  /** A ban lasts ban_ms and, with a monitor, until a probe succeeds again (the probe clears `banned`). */
  private isBanned(n: DbNode, now: number): boolean {
    if (!n.banned) return false;
    if (now < n.bannedUntil || this.monitored) return true;
    // Without a monitor nothing else would bring it back: the ban simply runs out.
    this.unban(n);
    return false;
  }

  /** Kept for callers that only want a replica: undefined when the pick is the primary. */
  pickReplica(minLsn?: number, clientKey?: string): DbNode | undefined {
    const n = this.pickRead(clientKey, minLsn);
    return n === this.primary ? undefined : n;
  }

  /**
   * Whether every replica has replayed minLsn, so a client's read-your-writes window can close. Banned
   * ones count too: one that comes back must not serve the client a read from before its write.
   */
  allReplayed(minLsn: number): boolean {
    for (const n of this.others) if (n.role === 'replica' && !n.draining && n.lsn < minLsn) return false;
    return true;
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
    const last = this.coarse[this.coarse.length - 1];
    if (!last || sentAt - last.sentAt >= 1000) {
      this.coarse.push({ sentAt, lsn });
      if (this.coarse.length > COARSE_SAMPLES) this.coarse.shift();
    }
  }

  /**
   * How long a replica that had replayed `lsn` when asked at `at` is behind: since the first primary
   * sample, sent before `at`, that it had not replayed. (The replay timestamp is no measure: it stops
   * while the primary writes nothing.) Undefined before any sample.
   */
  lagMsOf(lsn: number, at: number): number | undefined {
    if (this.samples.length === 0) return undefined;
    const first = (list: Sample[]) => list.find((s) => s.sentAt <= at && s.lsn > lsn);
    const oldest = this.samples[0]!;
    let s = first(this.samples);
    // Behind even the oldest fine sample: the coarse history may reach further back.
    if (s === oldest) {
      const c = first(this.coarse);
      if (c && c.sentAt < oldest.sentAt) s = c;
    }
    return s ? Math.max(0, Math.round(at - s.sentAt)) : 0;
  }

  /** A lease or connection to the node failed: take a replica out of rotation for ban_ms; note a primary down. */
  markDown(node: DbNode, message: string): void {
    if (node.removed) return;
    node.lastError = message;
    if (node.role === 'replica') return this.ban(node, message);
    if (!node.healthy) return;
    node.healthy = false;
    this.opts.onEvent({ type: 'node_down', node: node.name, role: node.role, message });
  }

  private ban(node: DbNode, message: string): void {
    node.healthy = false;
    const banMs = this.cfg.ban_ms;
    node.bannedUntil = performance.now() + banMs;
    if (node.banned) return;
    node.banned = true;
    this.opts.onEvent({ type: 'replica_banned', node: node.name, message, ban_ms: banMs });
    // Nothing else looks at it again without a monitor: try it when the ban runs out.
    if (!this.monitored) this.unbanLater(node, banMs);
  }

  /** Unban when bannedUntil passes (a failure meanwhile has moved it on). */
  private unbanLater(node: DbNode, ms: number): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.retryTimers.delete(t);
      if (!node.banned || node.removed) return;
      const left = node.bannedUntil - performance.now();
      if (left > 0) this.unbanLater(node, left);
      else this.unban(node);
    }, ms);
    t.unref();
    this.retryTimers.add(t);
  }

  /** An operator's ban (BAN in the console): like a failed probe, for ban_ms. */
  banNode(name: string, why: string): DbNode {
    const n = this.others.find((x) => x.name === name && x.role === 'replica');
    if (!n) throw new Error(`no replica named "${name}"`);
    this.ban(n, why);
    return n;
  }

  /** Lift a ban now (UNBAN in the console). */
  unbanNode(name: string): DbNode {
    const n = this.others.find((x) => x.name === name);
    if (!n) throw new Error(`no replica named "${name}"`);
    if (n.banned) this.unban(n);
    return n;
  }

  private unban(node: DbNode): void {
    node.banned = false;
    node.bannedUntil = 0;
    node.healthy = true;
    node.lastError = undefined;
    this.opts.onEvent({ type: 'replica_unbanned', node: node.name });
  }

  /** A probe succeeded: the node is up, and a replica whose ban has run out takes reads again. */
  private noteUp(node: DbNode): void {
    if (node.role === 'replica' && node.banned) {
      if (performance.now() >= node.bannedUntil) this.unban(node);
      return;
    }
    node.lastError = undefined;
    if (node.healthy) return;
    node.healthy = true;
    this.opts.onEvent({ type: 'node_up', node: node.name, role: node.role });
  }

  // ------------------------------------------------------------ changes at runtime

  /** A new replica: it takes reads once it passes a probe (at once without a monitor). */
  addReplica(cfg: NodeConfig, source: NodeSource): DbNode {
    if (this.node(cfg.name)) throw new Error(`a node named "${cfg.name}" exists already`);
    const n = this.makeNode(cfg, 'replica', source);
    // A PAUSE in force covers a node that joins during it.
    const paused = this.primary.pools.paused;
    if (paused.all) n.pools.pause();
    for (const db of paused.databases) n.pools.pause(db);
    this.others.push(n);
    this.opts.onEvent({ type: 'replica_added', node: n.name, host: cfg.host, port: cfg.port, weight: cfg.weight, source });
    this.ensurePolling();
    return n;
  }

  /**
   * Take a replica out. drain: it takes no new transactions, clients finish the ones they have there,
   * then it is gone. Otherwise its connections close now: a client in a transaction there gets an error
   * for that transaction only. Resolves when the node is gone.
   */
  removeReplica(name: string, drain: boolean): Promise<void> {
    const n = this.others.find((x) => x.name === name);
    if (!n) return Promise.reject(new Error(`no replica named "${name}"`));
    if (!n.draining) {
      n.draining = true;
      if (drain) {
        this.opts.onEvent({ type: 'replica_draining', node: n.name });
        n.pools.drain('is being drained');
      }
    }
    if (!drain) {
      n.pools.drain('was removed');
      n.pools.closeAll('was removed');
    }
    return this.whenEmpty(n, drain);
  }

  private readonly emptyWaits = new Map<DbNode, Promise<void>>();

  private whenEmpty(n: DbNode, drained: boolean): Promise<void> {
    let p = this.emptyWaits.get(n);
    if (p) return p;
    p = new Promise<void>((resolve) => {
      const check = () => {
        if (n.pools.total > 0 && !this.closed) return void setTimeout(check, 50).unref();
        this.emptyWaits.delete(n);
        this.forget(n, drained);
        resolve();
      };
      check();
    });
    this.emptyWaits.set(n, p);
    return p;
  }

  private forget(n: DbNode, drained: boolean): void {
    if (n.removed) return;
    // Promoted while it drained: the primary stays (its pools serve again).
    if (n === this.primary) {
      n.draining = false;
      n.pools.undrain();
      return;
    }
    n.removed = true;
    this.others = this.others.filter((x) => x !== n);
    this.monitors.get(n)?.close();
    this.monitors.delete(n);
    n.pools.close();
    this.opts.onEvent({ type: 'replica_removed', node: n.name, drained });
  }

  /** A changed weight (or address: then the node is replaced) from a reload. */
  updateReplica(cfg: NodeConfig): void {
    const n = this.others.find((x) => x.name === cfg.name);
    if (n) n.config = { ...n.config, weight: cfg.weight };
  }

  /** balancer settings from a reload: a new strategy starts with fresh balancer state. */
  applyBalancer(next: BalancerConfig): void {
    const strategyChanged = next.strategy !== this.cfg.strategy;
    this.opts.config.balancer = next;
    if (strategyChanged) this.balancer = makeBalancer(next.strategy);
    for (const n of this.others) this.judgeLag(n);
  }

  // ------------------------------------------------------------ background checks

  /** Start checking every node (once there are replicas: the checks serve reads and failover). */
  start(): void {
    this.started = true;
    this.ensurePolling();
  }

  private started = false;

  /** Polling runs once there is another node: reads, lag and failover all need it. */
  ensurePolling(): void {
    if (!this.started || this.timer || this.closed || !this.monitored || this.others.length === 0) return;
    this.timer = setInterval(() => this.poll(), this.opts.config.monitor.interval_ms);
    this.timer.unref();
    this.poll();
  }

  /** Check the nodes now (between timer ticks: a connection was lost and the node may be down). */
  poll(): void {
    if (this.closed || !this.timer) return;
    for (const n of this.nodes) {
      if (this.polling.has(n) || n.removed) continue;
      this.polling.add(n);
      this.pollNode(n)
        .catch((e: unknown) => this.opts.onEvent({ type: 'node_down', node: n.name, role: n.role, message: `check failed: ${(e as Error).message}` }))
        .finally(() => this.polling.delete(n));
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
      const r = await conn.query(PROBE_SQL);
      clearTimeout(timer);
      if (r.error) throw r.error;
      const row = r.rows[0];
      if (!row) throw new Error('the probe returned no row');
      if (this.closed || node.removed) return;
      this.noteProbe(node, sentAt, row);
    } catch (e) {
      clearTimeout(timer);
      this.monitors.get(node)?.close();
      this.monitors.delete(node);
      if (!this.closed && !node.removed) {
        node.inRecovery = undefined;
        this.markDown(node, (e as Error).message);
        this.decideRoles();
      }
    }
  }

  private noteProbe(node: DbNode, sentAt: number, row: (string | null)[]): void {
    const inRecovery = row[0] === 't';
    node.inRecovery = inRecovery;
    node.probed = true;
    node.replayAt = row[2] ?? null;
    node.timeline = row[3] ? parseInt(row[3].slice(0, 8), 16) : undefined;
    const lsn = parseLsn(row[1] ?? null);
    if (node === this.primary && !inRecovery) this.notePrimaryLsn(sentAt, lsn);
    else node.lsn = inRecovery ? lsn : insertToEnd(lsn);
    this.noteUp(node);
    this.decideRoles();
    if (node.role === 'replica') {
      node.lagBytes = this.primary.lsn >= 0 && node.lsn >= 0 ? Math.max(0, this.primary.lsn - node.lsn) : undefined;
      node.lagMs = this.lagMsOf(node.lsn, sentAt);
      this.judgeLag(node);
    }
  }

  private judgeLag(n: DbNode): void {
    if (n.role !== 'replica') return;
    const { max_replica_lag_ms: maxMs, max_replica_lag_bytes: maxBytes } = this.cfg;
    const over = (maxMs > 0 && n.lagMs !== undefined && n.lagMs > maxMs) || (maxBytes > 0 && n.lagBytes !== undefined && n.lagBytes > maxBytes);
    if (over === n.lagging) return;
    n.lagging = over;
    const e = { node: n.name, lag_bytes: n.lagBytes ?? null, lag_ms: n.lagMs ?? null };
    this.opts.onEvent(over ? { type: 'replica_lagging', ...e } : { type: 'replica_caught_up', ...e });
  }

  /**
   * Roles follow what the servers say. The primary stays while it is writable and no writable node is
   * on a later timeline. A writable node on a later timeline (a promoted replica), or any writable node
   * once the primary is in recovery or down with its timeline unknown, becomes the primary: the old
   * one's connections are closed so no write lands there. Writable nodes that are not the primary are
   * fenced; nodes in recovery are replicas.
   */
  private decideRoles(): void {
    const p = this.primary;
    if (p.timeline !== undefined && p.inRecovery === false) this.topTimeline = Math.max(this.topTimeline, p.timeline);
    let best: DbNode | undefined;
    for (const n of this.others) {
      // A draining node promoted by the failover tool is followed too (its drain is called off).
      if (n.inRecovery !== false || n.timeline === undefined || n.removed) continue;
      // Never back to an older timeline (a former primary still writable while the current one is down).
      if (n.timeline < this.topTimeline) continue;
      if (!best || n.timeline > best.timeline!) best = n;
    }
    const primaryWritable = p.inRecovery === false;
    if (best) {
      const later = p.timeline !== undefined && best.timeline! > p.timeline;
      // A primary not yet probed is not gone: only one known to be down (or demoted) is.
      const primaryGone = !primaryWritable && (p.inRecovery === true || (p.timeline === undefined && !p.healthy));
      if (later || primaryGone) this.promote(best);
    }
    for (const n of this.others) {
      if (n.inRecovery === undefined) continue; // down or not yet probed: keeps its role
      const want: NodeRole = n.inRecovery ? 'replica' : 'fenced';
      if (n.role !== want) this.setRole(n, want);
    }
  }

  private promote(next: DbNode): void {
    const old = this.primary;
    this.others = this.others.filter((n) => n !== next);
    this.others.unshift(old);
    this.primary = next;
    if (next.draining) {
      next.draining = false;
      next.pools.undrain();
    }
    this.setRole(next, 'primary');
    // Until it shows itself in recovery (a replica of the new primary) the old one takes nothing.
    this.setRole(old, old.inRecovery === true ? 'replica' : 'fenced');
    // WAL positions of the old timeline say nothing about the new one: read-your-writes waits for new samples.
    this.samples.length = 0;
    this.coarse.length = 0;
    next.banned = false;
    next.bannedUntil = 0;
    next.lagging = false;
    next.healthy = true;
    this.opts.onEvent({ type: 'primary_changed', from: old.name, to: next.name, timeline: next.timeline ?? null });
  }

  private setRole(n: DbNode, role: NodeRole): void {
    const from = n.role;
    if (from === role) return;
    n.role = role;
    if (role === 'fenced' || from === 'primary') {
      const reason = role === 'fenced' ? 'is writable but not the primary (fenced)' : 'is no longer the primary';
      // Connections still opening are refused at once; the open ones close (their clients get an error
      // for the transaction there) once this decision is complete.
      n.pools.closeAll(reason, true);
    }
    if (role !== 'replica') {
      n.lagging = false;
      n.lagBytes = n.lagMs = undefined;
    }
    this.opts.onEvent({ type: 'role_changed', node: n.name, from, to: role });
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
    if (this.closed || node.removed) {
      conn.close();
      throw new Error('closed');
    }
    this.monitors.set(node, conn);
    return conn;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const t of this.retryTimers) clearTimeout(t);
    for (const c of this.monitors.values()) c.close();
    this.monitors.clear();
    for (const n of this.nodes) n.pools.close();
  }
}

/**
 * Recovery state; the replayed position on a standby and the insert position on a primary (past every
 * record already inserted, commits included: the written position lags behind with synchronous_commit
 * off); the replay timestamp; and on a writable node its WAL file name, whose first 8 hex digits are its
 * timeline (pg_walfile_name raises an error during recovery, hence the CASE).
 */
const PROBE_SQL =
  'SELECT pg_catalog.pg_is_in_recovery(), ' +
  'CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_insert_lsn() END, ' +
  'pg_catalog.pg_last_xact_replay_timestamp(), ' +
  'CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_insert_lsn()) END';

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
