// The admin HTTP listener: health endpoints, Prometheus metrics, the REST API (status, nodes, pools,
// clients, topology, config, reload, replicas, mirror), the live event stream over WebSocket, an
// OpenAPI document, and the dashboard page.

import crypto from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import websocket from '@fastify/websocket';
import type { AdminConfig } from '../config/types.js';
import type { GatewayEvent } from '../observability/events.js';
import type { MirrorReportView, MirrorStatus } from '../mirror/mirror.js';
import { formatReport } from '../mirror/report.js';
import { openApiDocument } from './openapi.js';
import { DASHBOARD_HTML } from './dashboard.js';

/** What the admin API reads from the gateway; kept narrow so admin never imports the frontend. */
export interface AdminSource {
  status(): unknown;
  primaryReachable(timeoutMs?: number): Promise<boolean>;
  topologyView(): unknown;
  nodesView(): unknown;
  poolsView(): unknown;
  clientsView(): unknown;
  configView(): unknown;
  /** Add a replica (validated body); throws AdminError. */
  addReplica(body: unknown): unknown;
  /** Take a replica out; resolves when it is gone (drain: after its open transactions end). */
  removeReplica(name: string, drain: boolean): Promise<void>;
  /** Re-read the config file and apply it; throws AdminError. */
  reloadFromFile(): unknown;
  /** Shadow traffic: its settings and totals, and the per-fingerprint report. */
  mirror: { status(): MirrorStatus; reportView(): MirrorReportView; resetReport(): void };
  /** Change mirroring at run time (a validated partial mirror section); throws AdminError. */
  configureMirror(body: unknown): unknown;
  metricsText(): Promise<string>;
  metricsContentType: string;
  /** Numbers for the live stream's periodic snapshot (nodes, pools, clients). */
  snapshot(): unknown;
  /** Ask for a per-transaction event type to be produced; returns the function that stops it. */
  watch(type: GatewayEvent['type']): () => void;
  /** Subscribe to the event bus; returns the unsubscribe function. */
  onEvent(listener: (e: GatewayEvent) => void): () => void;
}

/** An error the API answers with its status code and a JSON body { error, message, problems? }. */
export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problems?: { path: string; message: string }[],
  ) {
    super(message);
  }
}

export interface AdminServer {
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(a, b);
}

/** Paths anyone may read: liveness, readiness, and the dashboard page (its data needs the token). */
const OPEN = new Set(['/healthz', '/readyz', '/']);

const HEARTBEAT_MS = 30_000;

/** Host values taken without a token: localhost, an IPv4 or a bracketed IPv6 literal, with an optional port. */
const LITERAL_HOST = /^(localhost|\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\])(:\d+)?$/i;

function originHost(origin: string): string | undefined {
  try {
    return new URL(origin).host;
  } catch {
    return undefined;
  }
}

/** Events too frequent for an unfiltered stream. */
const NOISY = new Set(['txn_routed']);

/** A WebSocket client further behind than this gets no more events until it catches up (counted in the next one it gets). */
const MAX_BUFFERED = 4 * 1024 * 1024;

export function buildAdmin(source: AdminSource, cfg: AdminConfig): FastifyInstance {
  // A client that keeps a connection open (a half-read response, a WebSocket) must not hold up shutdown.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const routes: { method: string; url: string }[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD') routes.push({ method, url: r.url });
  });
  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0]!;
    // Another web page may not drive the API or read the stream from the operator's browser (a
    // WebSocket is not bound by the same-origin policy); without a token, only a loopback or literal
    // address in Host is taken, so DNS rebinding cannot reach it either.
    const origin = req.headers.origin;
    if (!OPEN.has(path) && origin !== undefined && originHost(origin) !== req.headers.host) {
      return reply.code(403).send({ error: 'forbidden', message: `requests from another origin (${origin}) are refused` });
    }
    if (!cfg.token && !OPEN.has(path) && !LITERAL_HOST.test(req.headers.host ?? '')) {
      return reply.code(403).send({ error: 'forbidden', message: 'without admin.token the API answers only requests to a loopback or literal IP address; set admin.token' });
    }
    if (OPEN.has(path) || !cfg.token) return;
    const header = req.headers.authorization;
    let given = header?.startsWith('Bearer ') ? header.slice(7) : undefined;
    // Browsers cannot set headers on a WebSocket: the stream also takes ?token=.
    if (given === undefined && path === '/api/v1/events/stream') {
      const t = (req.query as { token?: unknown }).token;
      given = typeof t === 'string' ? t : undefined;
    }
    if (!sameToken(given, cfg.token)) {
      await reply.code(401).send({ error: 'unauthorized', message: 'send the admin token as "Authorization: Bearer <admin.token>"' });
    }
  });
  app.setErrorHandler(async (err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof AdminError) {
      return reply.code(err.status).send({ error: err.code, message: err.message, ...(err.problems && { problems: err.problems }) });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    return reply.code(status).send({ error: status === 500 ? 'internal' : 'bad_request', message: err.message });
  });
  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}; see /api/v1/openapi.json` }));

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML));
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const ok = await source.primaryReachable();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'primary unreachable' });
  });
  app.get('/metrics', async (_req, reply) => reply.type(source.metricsContentType).send(await source.metricsText()));
  app.get('/api/v1/status', async () => source.status());
  app.get('/api/v1/nodes', async () => source.nodesView());
  app.get('/api/v1/pools', async () => source.poolsView());
  app.get('/api/v1/clients', async () => source.clientsView());
  app.get('/api/v1/config', async () => source.configView());
  app.get('/api/v1/topology', async () => source.topologyView());
  app.post('/api/v1/replicas', async (req, reply) => reply.code(201).send({ replica: source.addReplica(req.body ?? {}) }));
  app.delete<{ Params: { name: string }; Querystring: { drain?: string; wait?: string } }>('/api/v1/replicas/:name', async (req, reply) => {
    const drain = flag(req.query.drain, true, 'drain');
    const wait = flag(req.query.wait, false, 'wait');
    const done = source.removeReplica(req.params.name, drain);
    if (wait) {
      await done;
      return reply.code(200).send({ name: req.params.name, state: 'removed' });
    }
    done.catch(() => {});
    // Rejected at once for an unknown name: answered as such instead of 202.
    await Promise.race([done, new Promise((r) => setImmediate(r))]);
    return reply.code(202).send({ name: req.params.name, state: drain ? 'draining' : 'removing' });
  });
  app.post('/api/v1/reload', async () => source.reloadFromFile());
  app.get('/api/v1/mirror', async () => source.mirror.status());
  app.post('/api/v1/mirror', async (req) => source.configureMirror(req.body ?? {}));
  app.get<{ Querystring: { format?: string } }>('/api/v1/mirror/report', async (req, reply) => {
    const format = req.query.format ?? 'json';
    if (format !== 'json' && format !== 'text') throw new AdminError(400, 'bad_request', `query parameter format must be json or text, got "${format}"`);
    const view = source.mirror.reportView();
    if (format === 'json') return view;
    return reply.type('text/plain; charset=utf-8').send(mirrorSummary(view) + '\n\n' + formatReport(view.fingerprints));
  });
  // Answered with the report as it is now (empty), as the other changes answer with the state they leave.
  app.delete('/api/v1/mirror/report', async () => {
    source.mirror.resetReport();
    return source.mirror.reportView();
  });
  app.get('/api/v1/openapi.json', async () => openApiDocument());

  void app.register(websocket);
  void app.register(async (scoped) => {
    scoped.get('/api/v1/events/stream', { websocket: true }, (socket, req: FastifyRequest) => {
      const q = req.query as { types?: string; type?: string; snapshot_ms?: string };
      const wanted = (q.types ?? q.type ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
      const only = wanted.length > 0 ? new Set(wanted) : undefined;
      // One per client transaction: sent only to a stream that asks for it by name.
      let dropped = 0;
      // Per-transaction events are produced only while a stream asks for them.
      const unwatch = [...NOISY].filter((t) => only?.has(t)).map((t) => source.watch(t as GatewayEvent['type']));
      const off = source.onEvent((e) => {
        if (only ? !only.has(e.type) : NOISY.has(e.type)) return;
        if (socket.bufferedAmount > MAX_BUFFERED) {
          dropped++;
          return;
        }
        socket.send(JSON.stringify({ at: new Date().toISOString(), ...e, ...(dropped > 0 && { dropped_before: dropped }) }));
        dropped = 0;
      });
      // A snapshot of the numbers every snapshot_ms (default 1 s; 0 = none), unless the filter leaves it out.
      const asked = Number(q.snapshot_ms ?? 1000);
      const every = Number.isFinite(asked) ? Math.min(asked, 60_000) : 1000;
      const send = () => {
        if (socket.bufferedAmount <= MAX_BUFFERED) socket.send(JSON.stringify({ type: 'snapshot', at: new Date().toISOString(), ...(source.snapshot() as object) }));
      };
      const timer = every > 0 && (!only || only.has('snapshot')) ? setInterval(send, Math.max(100, every)) : undefined;
      // A peer that vanished without closing is found by a missed pong and let go.
      let alive = true;
      socket.on('pong', () => (alive = true));
      const heartbeat = setInterval(() => {
        if (!alive) return socket.terminate();
        alive = false;
        socket.ping();
      }, HEARTBEAT_MS);
      const stop = () => {
        off();
        for (const u of unwatch) u();
        clearInterval(timer);
        clearInterval(heartbeat);
      };
      socket.on('close', stop);
      socket.on('error', stop);
      socket.send(JSON.stringify({ type: 'stream_started', at: new Date().toISOString(), types: wanted }));
      if (timer) send();
    });
  });
  (app as FastifyInstance & { switchyardRoutes?: typeof routes }).switchyardRoutes = routes;
  return app;
}

/** The routes registered on an app built by buildAdmin (for checking the OpenAPI document against them). */
export function registeredRoutes(app: FastifyInstance): { method: string; url: string }[] {
  return (app as FastifyInstance & { switchyardRoutes?: { method: string; url: string }[] }).switchyardRoutes ?? [];
}

/** The text report's first line: the settings and the totals, which the per-fingerprint rows add up to. */
function mirrorSummary(s: MirrorStatus): string {
  const t = s.totals;
  const how = s.enabled ? `on, ${s.statements} to ${s.target}, sample rate ${s.sample_rate}` : 'off';
  return (
    `mirror ${how}: ${t.mirrored} mirrored, ${t.matched} matched, ${t.mismatched} mismatched, ${t.lag} lag, ${t.errors} errors, ` +
    `${t.dropped} dropped; queue ${s.queue.length}/${s.queue.capacity}, ${s.running} running`
  );
}

function flag(v: string | undefined, dflt: boolean, name: string): boolean {
  if (v === undefined || v === '') return dflt;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new AdminError(400, 'bad_request', `query parameter ${name} must be true or false, got "${v}"`);
}

export async function startAdmin(source: AdminSource, cfg: AdminConfig): Promise<AdminServer> {
  const app = buildAdmin(source, cfg);
  await app.listen({ host: cfg.host, port: cfg.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
  const host = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host === '0.0.0.0' ? '127.0.0.1' : cfg.host;
  return { url: `http://${host}:${port}/`, app, close: () => app.close() };
}
