// The admin HTTP listener: health endpoints and a read-only status API (the operating issue grows it).

import crypto from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AdminConfig } from '../config/types.js';

/** What the admin API reads from the gateway; kept narrow so admin never imports the frontend. */
export interface AdminSource {
  status(): unknown;
  primaryReachable(timeoutMs?: number): Promise<boolean>;
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
  return app;
}

export async function startAdmin(source: AdminSource, cfg: AdminConfig): Promise<AdminServer> {
  const app = buildAdmin(source, cfg);
  await app.listen({ host: cfg.host, port: cfg.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : cfg.port;
  const host = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host === '0.0.0.0' ? '127.0.0.1' : cfg.host;
  return { url: `http://${host}:${port}/`, app, close: () => app.close() };
}
