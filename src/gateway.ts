// Assembles one gateway instance from a Config: credentials, pools, the client listener, the admin listener.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import { CredentialStore } from './auth/credentials.js';
import { LoginThrottle } from './auth/throttle.js';
import { ServerConnection, type ServerCredentials } from './backend/server-connection.js';
import { NotifyHubs } from './session/notify-hub.js';
import { StatementRegistry } from './session/state.js';
import { loadParser } from './session/analyze.js';
import type { PoolManager } from './pool/pool.js';
import { Topology, type DbNode } from './balancer/topology.js';
import { Router } from './router/router.js';
import { ReusableReader, adoptAccepted } from './backend/reusable-reader.js';
import { ClientSession, CancelKeys, type FrontendContext } from './frontend/client-session.js';
import { EventBus } from './observability/events.js';
import { Metrics } from './observability/metrics.js';
import { startAdmin, AdminError, type AdminServer } from './admin/server.js';
import type { Config } from './config/types.js';
import { mirrorSchema, nodeSchema } from './config/schema.js';
import { Mirror } from './mirror/mirror.js';
import { loadConfigFile, redactConfig } from './config/load.js';

export const VERSION = '0.1.0';

export interface GatewayOptions {
  logger?: Logger;
  /** The file the config came from: reload (SIGHUP, the API) reads it again. */
  configFile?: string;
}

/** What a reload did: sections applied live, and changes that need a restart to take effect. */
export interface ReloadResult {
  applied: string[];
  restart_required: string[];
}

export class Gateway {
  readonly events: EventBus;
  readonly metrics: Metrics;
  /** Shadow traffic: copies of client statements run on the mirror target and compared. */
  readonly mirror: Mirror;
  /** Bytes of clients that have left (live ones are read from their sockets). */
  private readonly closedBytes = { received: 0, sent: 0 };
  readonly log: Logger;
  readonly topology: Topology;
  readonly hubs: NotifyHubs;
  /** pin_started events counted by reason since start. */
  readonly pinsByReason = new Map<string, number>();
  readonly credentials: CredentialStore;
  readonly startedAt = Date.now();
  private readonly sessions = new Set<ClientSession>();
  private server: net.Server | undefined;
  private admin: AdminServer | undefined;
  private readonly ctx: FrontendContext;

  private constructor(
    readonly config: Config,
    opts: GatewayOptions,
  ) {
    this.log = opts.logger ?? pino({ level: config.log.level, base: { service: 'switchyard' } });
    this.events = new EventBus(this.log);
    this.credentials = new CredentialStore(config.auth, config.auth.query ? (user) => this.authQuery(user) : undefined);
    this.topology = new Topology({
      config,
      maxMessageBytes: Math.max(config.listen.max_message_bytes, 1 << 30),
      credentials: (user) => this.credentials.serverLogin(user) as ServerCredentials,
      onEvent: (e) => this.events.emit(e),
    });
    const router = new Router({ safeFunctions: config.routing.replica_safe_functions, cacheSize: config.routing.cache_size });
    // Pins by reason, for the status API (and the metrics to come).
    this.events.on((e) => {
      if (e.type === 'pin_started') this.pinsByReason.set(e.reason, (this.pinsByReason.get(e.reason) ?? 0) + 1);
      // Notifications come from the primary: the listening connections follow it.
      if (e.type === 'primary_changed') this.hubs.reconnectAll(`the primary is now "${e.to}"`);
    });
    this.hubs = new NotifyHubs(
      (database, user) => this.pools.openDedicated(database, user),
      (e) => this.events.emit(e),
    );
    this.metrics = new Metrics(this.events, {
      clientStates: () => {
        const m = new Map<string, number>();
        for (const s of this.sessions) m.set(s.state, (m.get(s.state) ?? 0) + 1);
        return m;
      },
      clientBytes: () => {
        const b = { ...this.closedBytes };
        for (const s of this.sessions) {
          b.received += s.socket.bytesRead;
          b.sent += s.socket.bytesWritten;
        }
        return b;
      },
      nodes: () =>
        this.topology.nodes.map((n) => ({
          name: n.name,
          role: n.role,
          up: n.healthy && !n.banned,
          lagBytes: n.lagBytes,
          lagMs: n.lagMs,
          pools: n.pools.stats(),
        })),
    });
    this.events.on((e) => {
      if (e.type !== 'client_disconnected') return;
      this.closedBytes.received += e.bytes_in ?? 0;
      this.closedBytes.sent += e.bytes_out ?? 0;
    });
    this.mirror = new Mirror({
      config,
      topology: this.topology,
      credentials: (user) => this.credentials.serverLogin(user) as ServerCredentials,
      events: this.events,
      registry: this.metrics.registry,
      maxMessageBytes: Math.max(config.listen.max_message_bytes, 1 << 30),
    });
    const t = config.auth;
    const topology = this.topology;
    this.ctx = {
      config,
      tlsContext: config.listen.tls ? tls.createSecureContext({ cert: fs.readFileSync(config.listen.tls.cert), key: fs.readFileSync(config.listen.tls.key) }) : undefined,
      credentials: this.credentials,
      throttle: new LoginThrottle({ threshold: t.failed_login_threshold, windowMs: t.failed_login_window_ms, maxDelayMs: t.failed_login_max_delay_ms }),
      get pools() {
        return topology.primary.pools;
      },
      events: this.events,
      mockSecret: crypto.randomBytes(32),
      cancelKeys: new CancelKeys(),
      sessions: this.sessions,
      hubs: this.hubs,
      registry: new StatementRegistry(),
      topology: this.topology,
      router,
      admin: {
        version: VERSION,
        startedAt: this.startedAt,
        reload: () => this.reloadFromFile(),
        configView: () => redactConfig(this.config),
        stats: () => this.databaseStats(),
      },
      metrics: this.metrics,
      mirror: this.mirror,
    };
    this.configFile = opts.configFile;
  }

  readonly configFile: string | undefined;

  get router(): Router {
    return this.ctx.router;
  }

  /** Start listening for clients (and the admin API when admin.port is not 0). */
  static async start(config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
    await loadParser(); // the SQL parser (WASM) is needed by the first client's first statement
    const gw = new Gateway(config, opts);
    await gw.listen();
    gw.topology.start();
    if (config.admin.port !== 0) gw.admin = await startAdmin(gw, config.admin);
    gw.log.info({ port: gw.port, admin: gw.adminUrl }, 'switchyard listening');
    return gw;
  }

  private listen(): Promise<void> {
    // Paused on accept so the socket can be moved onto a reused read buffer before it reads a byte.
    const server = net.createServer({ pauseOnConnect: true }, (socket) => {
      const reader = new ReusableReader();
      const adopted = adoptAccepted(server, socket, reader);
      if (adopted) new ClientSession(this.ctx, adopted, reader);
      else {
        new ClientSession(this.ctx, socket);
        socket.resume();
      }
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.config.listen.host, port: this.config.listen.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** The pools of the node that is the primary now (session pooling, the listening connections). */
  get pools(): PoolManager {
    return this.topology.primary.pools;
  }

  /** The client port actually bound (useful with port 0). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo).port;
  }

  get adminUrl(): string | undefined {
    return this.admin?.url;
  }

  /** Run the configured auth query on the primary as the auth user; the passwd column, or null. */
  private async authQuery(user: string): Promise<string | null> {
    const q = this.config.auth.query!;
    const password = q.password ?? this.config.auth.users.find((u) => u.name === q.user)?.password;
    const conn = await ServerConnection.connect({
      endpoint: this.topology.primary.config,
      user: q.user,
      database: q.database,
      credentials: password !== undefined ? { password } : null,
      tls: this.config.server_tls,
      connectTimeoutMs: this.config.pool.connect_timeout_ms,
      maxMessageBytes: 1 << 20,
    });
    try {
      const r = await conn.queryParams(q.sql, [user]);
      if (r.error) throw r.error;
      return r.rows[0]?.[1] ?? null;
    } finally {
      conn.close();
    }
  }

  /**
   * Apply a new configuration without dropping clients: replicas from the file are added, re-weighted
   * or drained away (ones added through the API stay), and the balancer, routing, pool limits and log
   * level change in place. What cannot change live (listen, admin, primary, auth, TLS, monitor) is
   * reported, not applied.
   */
  reload(next: Config): ReloadResult {
    const cur = this.config;
    const applied: string[] = [];
    const restart: string[] = [];
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const topo = this.topology;

    const wanted = new Map(next.replicas.map((r) => [r.name, r]));
    for (const r of next.replicas) {
      const have = topo.node(r.name);
      if (!have) {
        topo.addReplica(r, 'config');
        applied.push(`replicas: added ${r.name}`);
      } else if (have === topo.primary) {
        restart.push(`replicas: ${r.name} is the primary now`);
      } else if (have.config.host !== r.host || have.config.port !== r.port) {
        // A new address is a new server: the old one is drained first, then the new one joins under the name.
        void topo.removeReplica(r.name, true).then(() => {
          if (!topo.node(r.name)) topo.addReplica(r, 'config');
        });
        applied.push(`replicas: ${r.name} moves to ${r.host}:${r.port} (the old address is drained first)`);
      } else if (have.weight !== r.weight) {
        topo.updateReplica(r);
        applied.push(`replicas: ${r.name} weight ${r.weight}`);
      }
    }
    for (const n of topo.nodes) {
      // The file's primary (a former primary after a failover, say) is not one of the file's replicas to drain.
      const filePrimary = n.name === next.primary.name || n.name === cur.primary.name;
      if (n !== topo.primary && n.source === 'config' && !filePrimary && !wanted.has(n.name) && !n.draining) {
        void topo.removeReplica(n.name, true);
        applied.push(`replicas: draining ${n.name}`);
      }
    }
    cur.replicas = next.replicas;

    if (!same(cur.balancer, next.balancer)) {
      topo.applyBalancer(next.balancer);
      applied.push('balancer');
    }
    if (!same(cur.routing, next.routing)) {
      if (cur.routing.cache_size !== next.routing.cache_size || !same(cur.routing.replica_safe_functions, next.routing.replica_safe_functions)) {
        this.ctx.router = new Router({ safeFunctions: next.routing.replica_safe_functions, cacheSize: next.routing.cache_size });
      }
      Object.assign(cur.routing, next.routing);
      applied.push('routing');
    }
    if (!same(cur.pool, next.pool)) {
      // Read field by field by the pools, so new limits apply to the next lease.
      Object.assign(cur.pool, next.pool);
      applied.push('pool');
    }
    if (!same(cur.mirror, next.mirror)) {
      this.mirror.apply(next.mirror);
      applied.push('mirror');
    }
    if (cur.log.level !== next.log.level) {
      cur.log.level = next.log.level;
      this.log.level = next.log.level;
      applied.push('log');
    }
    topo.ensurePolling();
    if (!same(cur.admin.users, next.admin.users)) {
      cur.admin.users = next.admin.users;
      applied.push('admin.users');
    }
    for (const k of ['listen', 'admin', 'primary', 'server_tls', 'auth', 'monitor'] as const) {
      const a = k === 'admin' ? { ...cur.admin, users: [] } : cur[k];
      const b = k === 'admin' ? { ...next.admin, users: [] } : next[k];
      if (!same(a, b)) restart.push(k);
    }
    this.events.emit({ type: 'config_reloaded', changed: applied, restart_required: restart });
    return { applied, restart_required: restart };
  }

  /**
   * POST /api/v1/mirror: change mirroring at run time (until the next reload or restart): any of enabled,
   * target, statements, sample_rate, databases, users, pool_size, queue_size, timeout_ms,
   * max_events_per_second. Checked like the config file's mirror section.
   */
  configureMirror(body: unknown) {
    const problems: { path: string; message: string }[] = [];
    if (typeof body !== 'object' || body === null || Array.isArray(body)) problems.push({ path: '(body)', message: 'must be a JSON object' });
    const merged = { ...this.config.mirror, ...(problems.length === 0 ? (body as object) : {}) };
    const r = mirrorSchema.safeParse(merged);
    if (!r.success) for (const i of r.error.issues) problems.push({ path: i.path.join('.') || '(body)', message: i.message });
    if (r.success) {
      const m = r.data;
      if (m.statements === 'all' && m.target === 'replicas') problems.push({ path: 'statements', message: "'all' copies writes, which replicas refuse: use 'reads' with target 'replicas', or give the target server's host and port" });
      const p = this.topology.primary.config;
      if (m.statements === 'all' && m.target !== 'replicas' && m.target.host === p.host && m.target.port === p.port) {
        problems.push({ path: 'target', message: "is the primary itself: with statements 'all' every copied write would run there twice" });
      }
    }
    if (problems.length > 0 || !r.success) {
      throw new AdminError(400, 'invalid_mirror', 'the mirror settings are not valid: ' + problems.map((p) => `${p.path}: ${p.message}`).join('; '), problems);
    }
    this.mirror.apply(r.data);
    this.events.emit({ type: 'config_reloaded', changed: ['mirror (admin API)'], restart_required: [] });
    return this.mirror.status();
  }

  /** POST /api/v1/replicas: { name?, host, port?, weight? }; it takes reads once it passes a probe. */
  addReplica(body: unknown) {
    const r = nodeSchema.safeParse(body);
    if (!r.success) {
      const problems = r.error.issues.map((i) => ({ path: i.path.join('.') || '(body)', message: i.message }));
      throw new AdminError(400, 'invalid_replica', 'the replica is not valid: ' + problems.map((p) => `${p.path}: ${p.message}`).join('; '), problems);
    }
    const topo = this.topology;
    let name = r.data.name;
    if (name === undefined) {
      let i = 1;
      while (topo.node(`replica${i}`)) i++;
      name = `replica${i}`;
    }
    if (topo.node(name)) throw new AdminError(409, 'exists', `a node named "${name}" exists already; DELETE it first or choose another name`);
    return nodeView(topo.addReplica({ name, host: r.data.host, port: r.data.port, weight: r.data.weight }, 'api'));
  }

  /** DELETE /api/v1/replicas/{name}: drain (default) lets open transactions finish first. */
  removeReplica(name: string, drain: boolean): Promise<void> {
    const topo = this.topology;
    const n = topo.node(name);
    if (!n) return Promise.reject(new AdminError(404, 'not_found', `no node named "${name}"`));
    if (n === topo.primary) return Promise.reject(new AdminError(409, 'is_primary', `"${name}" is the primary; only replicas can be removed`));
    return topo.removeReplica(name, drain);
  }

  /** POST /api/v1/reload: the config file read again; nothing changes when it has problems. */
  reloadFromFile(): ReloadResult {
    if (this.configFile === undefined) throw new AdminError(409, 'no_config_file', 'this gateway was not started from a config file (switchyard start -c FILE); there is nothing to reload');
    const r = loadConfigFile(this.configFile);
    if (!r.ok) throw new AdminError(400, 'invalid_config', `${this.configFile} has ${r.problems.length} problem(s); nothing was changed`, r.problems);
    return this.reload(r.config);
  }

  // ------------------------------------------------------------ admin API views

  nodesView() {
    return this.topology.nodes.map((n) => nodeView(n));
  }

  poolsView() {
    return this.topology.nodes.flatMap((n) => n.pools.stats());
  }

  clientsView() {
    return (this.status() as { clients: unknown[] }).clients;
  }

  configView() {
    return redactConfig(this.config);
  }

  /** The live stream's periodic numbers: nodes (with transactions leased so far), pools, clients by state. */
  snapshot() {
    const clients: Record<string, number> = {};
    for (const s of this.sessions) clients[s.state] = (clients[s.state] ?? 0) + 1;
    return { nodes: this.nodesView(), pools: this.poolsView(), clients, read_write_split: this.topology.splitting, mirror: this.mirror.status() };
  }

  metricsText(): Promise<string> {
    return this.metrics.text();
  }

  get metricsContentType(): string {
    return this.metrics.contentType;
  }

  onEvent(listener: Parameters<EventBus['on']>[0]): () => void {
    return this.events.on(listener);
  }

  watch(type: Parameters<EventBus['watch']>[0]): () => void {
    return this.events.watch(type);
  }

  /** Per-database totals since start, live sessions' bytes included (SHOW STATS). */
  databaseStats() {
    const totals = new Map(this.metrics.totals().map((t) => [t.database, t]));
    for (const s of this.sessions) {
      if (s.state !== 'ready' || s.console) continue;
      let t = totals.get(s.database);
      if (!t) {
        t = { database: s.database, xact_count: 0, query_count: 0, bytes_received: 0, bytes_sent: 0, xact_time_us: 0, query_time_us: 0, wait_time_us: 0 };
        totals.set(s.database, t);
      }
      t.bytes_received += s.socket.bytesRead;
      t.bytes_sent += s.socket.bytesWritten;
    }
    return [...totals.values()];
  }

  /** The replicas and the primary as they are now (GET /api/v1/topology). */
  topologyView() {
    const t = this.topology;
    return {
      primary: nodeView(t.primary),
      replicas: t.nodes.filter((n) => n !== t.primary).map((n) => nodeView(n)),
      read_write_split: t.splitting,
      balancer: this.config.balancer,
    };
  }

  /** Cancel keys handed out and not yet released (one per logged-in client). */
  get cancelKeyCount(): number {
    return this.ctx.cancelKeys.size;
  }

  /** A snapshot for the admin API. */
  status() {
    return {
      version: VERSION,
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      mode: this.config.pool.mode,
      clients: [...this.sessions].map((s) => ({
        id: s.id,
        address: s.address,
        user: s.user,
        database: s.database,
        application_name: s.applicationName,
        state: s.state,
        doing: s.relay ? s.relay.activity : s.server ? 'session' : 'starting',
        tls: s.tls,
        pool_mode: s.mode,
        server: (s.relay ? s.relay.server : s.server)?.id ?? null,
        node: s.relay ? (s.relay.server ? s.relay.nodeName : null) : s.server ? this.topology.primary.name : null,
        pins: s.relay?.state.pins ?? [],
        connected_at: new Date(s.connectedAt).toISOString(),
      })),
      pools: this.topology.nodes.flatMap((n) => n.pools.stats()),
      nodes: this.topology.nodes.map((n) => nodeView(n)),
      routing: { split: this.topology.splitting, cache: { ...this.router.stats } },
      events: Object.fromEntries(this.events.counts),
      pins_started_by_reason: Object.fromEntries(this.pinsByReason),
      mirror: this.mirror.status(),
    };
  }

  /** Can the gateway serve: is the primary accepting TCP connections? */
  primaryReachable(timeoutMs = 1000): Promise<boolean> {
    const { host, port } = this.topology.primary.config;
    return new Promise((resolve) => {
      const s = net.connect({ host, port });
      const done = (ok: boolean) => {
        s.destroy();
        resolve(ok);
      };
      s.setTimeout(timeoutMs, () => done(false));
      s.once('connect', () => done(true));
      s.once('error', () => done(false));
    });
  }

  /** Stop accepting, close every client and server connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    for (const s of this.sessions) s.close();
    this.topology.close();
    this.mirror.close();
    this.hubs.close();
    await this.admin?.close();
    await closed;
  }
}

/** A node as the status and topology APIs show it. */
export function nodeView(n: DbNode) {
  return {
    name: n.name,
    host: n.config.host,
    port: n.config.port,
    weight: n.weight,
    role: n.role,
    state: n.draining ? 'draining' : n.banned ? 'banned' : !n.healthy ? 'down' : n.lagging ? 'lagging' : n.role === 'replica' && !n.probed ? 'pending' : 'active',
    healthy: n.healthy,
    in_recovery: n.inRecovery ?? null,
    timeline: n.timeline ?? null,
    lsn: n.lsn,
    lag_bytes: n.lagBytes ?? null,
    lag_ms: n.lagMs ?? null,
    replay_timestamp: n.replayAt,
    connections_in_use: n.inUse,
    leases: n.leases,
    source: n.source,
    error: n.lastError ?? null,
  };
}
