// Prometheus metrics (prom-client, a registry of the gateway's own): counters fed by the event bus and
// by the relay's per-transaction and per-query calls, gauges read from the gateway when scraped, and
// per-database totals for the admin console's SHOW STATS.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventBus } from './events.js';

/** What the gauges read at scrape time. */
export interface MetricsSource {
  /** Client sessions by state (startup, ready, closed, ...). */
  clientStates(): Map<string, number>;
  /** Bytes read from and written to clients since start, live sessions included. */
  clientBytes(): { received: number; sent: number };
  nodes(): {
    name: string;
    role: string;
    up: boolean;
    lagBytes: number | undefined;
    lagMs: number | undefined;
    pools: { idle: number; active: number; opening: number; waiting: number; maxwait_ms: number }[];
  }[];
}

/** Totals per database since start, for SHOW STATS (times in microseconds). */
export interface DatabaseTotals {
  database: string;
  xact_count: number;
  query_count: number;
  bytes_received: number;
  bytes_sent: number;
  xact_time_us: number;
  query_time_us: number;
  wait_time_us: number;
}

/** Router reasons are precise ("write: INSERT", "function nextval"); labels keep their first word, so their number stays small. */
export function reasonLabel(reason: string): string {
  const m = /^[a-z-]+/i.exec(reason);
  return m ? m[0].toLowerCase() : 'other';
}

export class Metrics {
  readonly registry = new Registry();
  private readonly transactions: Counter<'target' | 'reason'>;
  private readonly queries: Counter<'target' | 'reason'>;
  private readonly latency: Histogram<'target'>;
  private readonly dbs = new Map<string, DatabaseTotals>();

  constructor(events: EventBus, source: MetricsSource) {
    const registers = [this.registry];
    this.transactions = new Counter({
      name: 'switchyard_transactions_total',
      help: 'Client transactions (server connection leases) by the node role they ran on and the routing reason',
      labelNames: ['target', 'reason'],
      registers,
    });
    this.queries = new Counter({
      name: 'switchyard_queries_total',
      help: 'Client statements by the node role they ran on and the routing reason',
      labelNames: ['target', 'reason'],
      registers,
    });
    this.latency = new Histogram({
      name: 'switchyard_query_duration_seconds',
      help: 'Time from a client request (simple query or extended-protocol Sync) reaching a server to its ReadyForQuery',
      labelNames: ['target'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    const switches = new Counter({ name: 'switchyard_replica_switches_total', help: 'Transactions moved from a replica to the primary', registers });
    const refused = new Counter({ name: 'switchyard_replica_switches_refused_total', help: 'Transactions that could not move to the primary exactly', registers });
    const pins = new Counter({ name: 'switchyard_pins_total', help: 'Sessions pinned to their server connection, by reason', labelNames: ['reason'], registers });
    const bans = new Counter({ name: 'switchyard_replica_bans_total', help: 'Replicas banned after a failed connect or probe', labelNames: ['node'], registers });
    const authFailures = new Counter({ name: 'switchyard_auth_failures_total', help: 'Failed client logins', registers });
    const retried = new Counter({ name: 'switchyard_queries_retried_total', help: 'Reads run again on another node after their connection died unanswered', registers });
    const lost = new Counter({ name: 'switchyard_server_connections_lost_total', help: 'Server connections that died under a client', registers });
    const exhausted = new Counter({ name: 'switchyard_pool_exhausted_total', help: 'Clients that waited pool.queue_timeout_ms and got 53300', labelNames: ['node'], registers });
    const eventCounts = new Counter({ name: 'switchyard_events_total', help: 'Events on the event bus, by type', labelNames: ['type'], registers });
    const byType = new Map<string, { inc(): void }>();
    events.on((e) => {
      let child = byType.get(e.type);
      if (!child) byType.set(e.type, (child = eventCounts.labels({ type: e.type })));
      child.inc();
      switch (e.type) {
        case 'txn_switched':
          return switches.inc();
        case 'switch_refused':
          return refused.inc();
        case 'pin_started':
          return pins.inc({ reason: e.reason });
        case 'replica_banned':
          return bans.inc({ node: e.node });
        case 'client_auth_failed':
          return authFailures.inc();
        case 'query_retried':
          return retried.inc();
        case 'server_lost':
          return lost.inc();
        case 'pool_exhausted':
          return exhausted.inc({ node: e.node });
        case 'client_disconnected': {
          if (e.database === undefined) return;
          const t = this.db(e.database);
          t.bytes_received += e.bytes_in ?? 0;
          t.bytes_sent += e.bytes_out ?? 0;
          return;
        }
        default:
          return;
      }
    });

    new Gauge({
      name: 'switchyard_client_connections',
      help: 'Client connections by state',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of source.clientStates()) this.set({ state }, n);
      },
    });
    let lastBytes = { received: 0, sent: 0 };
    new Counter({
      name: 'switchyard_client_bytes_total',
      help: 'Bytes from clients (in) and to clients (out)',
      labelNames: ['direction'],
      registers,
      collect() {
        const now = source.clientBytes();
        if (now.received > lastBytes.received) this.inc({ direction: 'in' }, now.received - lastBytes.received);
        if (now.sent > lastBytes.sent) this.inc({ direction: 'out' }, now.sent - lastBytes.sent);
        lastBytes = now;
      },
    });
    new Gauge({
      name: 'switchyard_clients_waiting',
      help: 'Clients waiting for a server connection, per node',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of source.nodes()) this.set({ node: n.name }, n.pools.reduce((a, p) => a + p.waiting, 0));
      },
    });
    new Gauge({
      name: 'switchyard_client_maxwait_seconds',
      help: 'How long the longest-waiting client has waited for a server connection, per node',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of source.nodes()) this.set({ node: n.name }, Math.max(0, ...n.pools.map((p) => p.maxwait_ms)) / 1000);
      },
    });
    new Gauge({
      name: 'switchyard_server_connections',
      help: 'Server connections per node and state (active: leased to a client; idle; opening)',
      labelNames: ['node', 'state'],
      registers,
      collect() {
        this.reset();
        for (const n of source.nodes()) {
          for (const state of ['active', 'idle', 'opening'] as const) this.set({ node: n.name, state }, n.pools.reduce((a, p) => a + p[state], 0));
        }
      },
    });
    new Gauge({
      name: 'switchyard_node_up',
      help: '1 when the node answers its probes (and is not banned), else 0; role as a label',
      labelNames: ['node', 'role'],
      registers,
      collect() {
        this.reset();
        for (const n of source.nodes()) this.set({ node: n.name, role: n.role }, n.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'switchyard_replica_lag_bytes',
      help: 'WAL the replica has not replayed yet, in bytes',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of source.nodes()) if (n.lagBytes !== undefined) this.set({ node: n.name }, n.lagBytes);
      },
    });
    new Gauge({
      name: 'switchyard_replica_lag_seconds',
      help: 'How long ago the primary wrote the oldest WAL the replica has not replayed',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of source.nodes()) if (n.lagMs !== undefined) this.set({ node: n.name }, n.lagMs / 1000);
      },
    });
  }

  private db(database: string): DatabaseTotals {
    let t = this.dbs.get(database);
    if (!t) {
      t = { database, xact_count: 0, query_count: 0, bytes_received: 0, bytes_sent: 0, xact_time_us: 0, query_time_us: 0, wait_time_us: 0 };
      this.dbs.set(database, t);
    }
    return t;
  }

  /** Labelled children by counter, target and reason text: the label work is done once per distinct text. */
  private readonly children = new Map<Counter<'target' | 'reason'>, Record<string, Map<string, { inc(n?: number): void }>>>();

  private child(counter: Counter<'target' | 'reason'>, target: string, reason: string): { inc(n?: number): void } {
    let byTarget = this.children.get(counter);
    if (!byTarget) this.children.set(counter, (byTarget = {}));
    const byReason = (byTarget[target] ??= new Map());
    let c = byReason.get(reason);
    if (!c) {
      // Router reasons are a bounded set of texts; capped in case a path produces free text.
      if (byReason.size > 10_000) byReason.clear();
      c = counter.labels({ target, reason: reasonLabel(reason) });
      byReason.set(reason, c);
    }
    return c;
  }

  /** A client transaction leased a connection: where, why, and how long it waited for it. */
  transaction(database: string, target: 'primary' | 'replica', reason: string, waitedMs: number): void {
    this.child(this.transactions, target, reason).inc();
    const t = this.db(database);
    t.xact_count++;
    t.wait_time_us += Math.round(waitedMs * 1000);
  }

  /** A transaction gave its connection back after heldMs. */
  transactionEnded(database: string, heldMs: number): void {
    this.db(database).xact_time_us += Math.round(heldMs * 1000);
  }

  /** A client statement was sent to a node. */
  query(database: string, target: 'primary' | 'replica', reason: string): void {
    this.child(this.queries, target, reason).inc();
    this.db(database).query_count++;
  }

  private latencyChildren: Record<string, { observe(v: number): void }> = {};

  /** A client request was answered (ReadyForQuery) after ms. */
  answered(database: string, target: 'primary' | 'replica', ms: number): void {
    (this.latencyChildren[target] ??= this.latency.labels({ target })).observe(ms / 1000);
    this.db(database).query_time_us += Math.round(ms * 1000);
  }

  /** Per-database totals; live sessions' bytes added by the caller. */
  totals(): DatabaseTotals[] {
    return [...this.dbs.values()].map((t) => ({ ...t }));
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
