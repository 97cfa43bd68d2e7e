// Runs one switchyard gateway in its own node process for the benchmark driver (bench/run.ts).
//
// Input: a JSON document, from argv[2] or else the SWITCHYARD_BENCH_GATEWAY environment variable (preferred:
// argv is visible in ps):
//   { "primary": { "host": "127.0.0.1", "port": 5432 },
//     "superuser": "postgres", "superuserPassword": "postgres",
//     "overrides": { "pool": { "size": 20, "max_db_connections": 20 } } }
// The gateway is built exactly like the integration tests build it (test/harness/gateway.js).
//
// Output: one line `SWITCHYARD_BENCH_READY {"port":N,"pid":P}` on stdout once it listens; everything
// else on stdout is the gateway's own (pino JSON) log. On a startup failure: a line
// `SWITCHYARD_BENCH_ERROR <message>` and exit status 1.
//
// Lifetime: exits when stdin reaches EOF (the driver died or closed it) or on SIGTERM/SIGINT,
// closing every client and server connection first.

import type { Gateway } from '../src/gateway.js';
import { startGateway } from '../test/harness/gateway.js';
import type { PgCluster } from '../test/harness/pg-cluster.js';
import { ERROR_MARK, READY_MARK, SPEC_ENV, type GatewayProcessSpec } from './gateway-ipc.js';

function readSpec(): GatewayProcessSpec {
  const raw = process.argv[2] ?? process.env[SPEC_ENV];
  if (!raw) throw new Error(`usage: node gateway-process.js <json spec> (or ${SPEC_ENV}=<json spec>)`);
  const spec = JSON.parse(raw) as GatewayProcessSpec;
  if (!spec.primary || typeof spec.primary.port !== 'number' || typeof spec.superuser !== 'string') {
    throw new Error('spec needs primary {host, port}, superuser, superuserPassword');
  }
  return spec;
}

async function main(): Promise<void> {
  const spec = readSpec();
  // startGateway() only reads the primary endpoint and the superuser credentials of the cluster.
  const clusterLike = {
    primary: { host: spec.primary.host, port: spec.primary.port },
    superuser: spec.superuser,
    superuserPassword: spec.superuserPassword,
  } as unknown as PgCluster;
  const gw: Gateway = await startGateway(clusterLike, spec.overrides ?? {});

  let closing = false;
  const shutdown = (code: number): void => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(code), 3000);
    force.unref();
    gw.close().then(
      () => process.exit(code),
      () => process.exit(code),
    );
  };
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();

  process.stdout.write(`${READY_MARK} ${JSON.stringify({ port: gw.port, pid: process.pid })}\n`);
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stdout.write(`${ERROR_MARK} ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(1);
});
