// Test fixture: an in-process gateway in front of a harness cluster, on ephemeral ports.

import { defaultConfig, type DeepPartial } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway.js';
import type { Config } from '../../src/config/types.js';
import pg from 'pg';
import type { PgCluster } from './pg-cluster.js';

/** Deep-merge plain objects; arrays and scalars in b replace those in a. */
function merge<T>(a: T, b: unknown): T {
  if (b === undefined) return a;
  if (typeof a !== 'object' || a === null || Array.isArray(a) || typeof b !== 'object' || b === null || Array.isArray(b)) return b as T;
  const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
  for (const [k, v] of Object.entries(b)) out[k] = merge(out[k], v);
  return out as T;
}

/** A config for a gateway in front of cluster: ephemeral ports, the superuser as a config user, quiet logs. */
export function testConfig(cluster: PgCluster, overrides: DeepPartial<Config> = {}): Config {
  const base: DeepPartial<Config> = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    primary: { name: 'primary', host: cluster.primary.host, port: cluster.primary.port },
    server_tls: { mode: 'disable' },
    auth: { users: [{ name: cluster.superuser, password: cluster.superuserPassword }] },
    log: { level: process.env.SWITCHYARD_TEST_LOG ? 'debug' : 'silent' },
  };
  return defaultConfig(merge(base, overrides));
}

export function startGateway(cluster: PgCluster, overrides: DeepPartial<Config> = {}): Promise<Gateway> {
  return Gateway.start(testConfig(cluster, overrides));
}

/** postgres:// URL for the gateway. */
export function gatewayUrl(gw: Gateway, user: string, password: string, database = 'postgres', params = ''): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${gw.port}/${database}${params ? '?' + params : ''}`;
}

/** A node-postgres client logged in to the gateway as the cluster's superuser (its late errors ignored: the test asserts on queries). */
export async function connectClient(gw: Gateway, cluster: PgCluster): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: gatewayUrl(gw, cluster.superuser, cluster.superuserPassword) });
  c.on('error', () => {});
  await c.connect();
  return c;
}
