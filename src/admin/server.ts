// The admin HTTP listener: health endpoints, status, the topology API (add and drain replicas) and reload.

import crypto from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AdminConfig } from '../config/types.js';

/** What the admin API reads from the gateway; kept narrow so admin never imports the frontend. */
export interface AdminSource {
  status(): unknown;
  primaryReachable(timeoutMs?: number): Promise<boolean>;
  topologyView(): unknown;
  /** Add a replica (validated body); throws AdminError. */
  addReplica(body: unknown): unknown;
  /** Take a replica out; resolves when it is gone (drain: after its open transactions end). */
  removeReplica(name: string, drain: boolean): Promise<void>;
  /** Re-read the config file and apply it; throws AdminError. */
  reloadFromFile(): unknown;
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

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false;
  const a = crypto.createHash('sha256').update(header.slice(7)).digest();
  const b = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(a, b);
}

export function buildAdmin(source: AdminSource, cfg: AdminConfig): FastifyInstance {
  const app = Fastify({ logger: false });
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/api/')) return;
    if (cfg.token && !tokenMatches(req.headers.authorization, cfg.token)) {
      await reply.code(401).send({ error: 'unauthorized', message: 'send the admin token as "Authorization: Bearer <admin.token>"' });
    }
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const ok = await source.primaryReachable();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'primary unreachable' });
  });
  app.get('/api/v1/status', async () => source.status());
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
  app.setErrorHandler(async (err: Error & { statusCode?: number; validation?: unknown }, _req, reply) => {
    if (err instanceof AdminError) {
      return reply.code(err.status).send({ error: err.code, message: err.message, ...(err.problems && { problems: err.problems }) });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    return reply.code(status).send({ error: status === 500 ? 'internal' : 'bad_request', message: err.message });
  });
  return app;
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
