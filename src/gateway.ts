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
import { Topology } from './balancer/topology.js';
import { Router } from './router/router.js';
import { ReusableReader, adoptAccepted } from './backend/reusable-reader.js';
import { ClientSession, CancelKeys, type FrontendContext } from './frontend/client-session.js';
import { EventBus } from './observability/events.js';
import { startAdmin, type AdminServer } from './admin/server.js';
import type { Config } from './config/types.js';

export const VERSION = '0.1.0';

export interface GatewayOptions {
  logger?: Logger;
}

export class Gateway {
  readonly events: EventBus;
  readonly log: Logger;
  /** The primary's pools (session pooling, the listening connections). */
  readonly pools: PoolManager;
  readonly topology: Topology;
  readonly router: Router;
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
    this.pools = this.topology.primary.pools;
    this.router = new Router({ safeFunctions: config.routing.replica_safe_functions, cacheSize: config.routing.cache_size });
    // Pins by reason, for the status API (and the metrics to come).
    this.events.on((e) => {
      if (e.type === 'pin_started') this.pinsByReason.set(e.reason, (this.pinsByReason.get(e.reason) ?? 0) + 1);
    });
    this.hubs = new NotifyHubs(
      (database, user) => this.pools.openDedicated(database, user),
      (e) => this.events.emit(e),
    );
    const t = config.auth;
    this.ctx = {
      config,
      tlsContext: config.listen.tls ? tls.createSecureContext({ cert: fs.readFileSync(config.listen.tls.cert), key: fs.readFileSync(config.listen.tls.key) }) : undefined,
      credentials: this.credentials,
      throttle: new LoginThrottle({ threshold: t.failed_login_threshold, windowMs: t.failed_login_window_ms, maxDelayMs: t.failed_login_max_delay_ms }),
      pools: this.pools,
      events: this.events,
      mockSecret: crypto.randomBytes(32),
      cancelKeys: new CancelKeys(),
      sessions: this.sessions,
      hubs: this.hubs,
      registry: new StatementRegistry(),
      topology: this.topology,
      router: this.router,
    };
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
      endpoint: this.config.primary,
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
        tls: s.tls,
        pool_mode: s.mode,
        server: (s.relay ? s.relay.server : s.server)?.id ?? null,
        node: s.relay ? (s.relay.server ? s.relay.nodeName : null) : s.server ? this.topology.primary.name : null,
        pins: s.relay?.state.pins ?? [],
        connected_at: new Date(s.connectedAt).toISOString(),
      })),
      pools: this.topology.nodes.flatMap((n) => n.pools.stats()),
      nodes: this.topology.nodes.map((n) => ({ name: n.name, role: n.role, healthy: n.healthy, lsn: n.lsn, leases: n.leases, error: n.lastError ?? null })),
      routing: { split: this.topology.splitting, cache: { ...this.router.stats } },
      events: Object.fromEntries(this.events.counts),
      pins_started_by_reason: Object.fromEntries(this.pinsByReason),
    };
  }

  /** Can the gateway serve: is the primary accepting TCP connections? */
  primaryReachable(timeoutMs = 1000): Promise<boolean> {
    const { host, port } = this.config.primary;
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
    this.hubs.close();
    await this.admin?.close();
    await closed;
  }
}
