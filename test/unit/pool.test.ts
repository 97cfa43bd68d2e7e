// PoolManager behaviour that needs no server: refusing clients that are already gone.

import test from 'node:test';
import assert from 'node:assert/strict';
import { PoolManager } from '../../src/pool/pool.js';
import { defaultConfig } from '../../src/config/load.js';
import { PgError } from '../../src/protocol/errors.js';

test('a client that left before asking is refused at once and never queues', async () => {
  const cfg = defaultConfig({ pool: { size: 1, queue_timeout_ms: 5000 } });
  // Port 9 (discard) on loopback: nothing connects there, and nothing must be tried.
  const pools = new PoolManager({
    endpoint: { name: 'primary', host: '127.0.0.1', port: 9 },
    pool: cfg.pool,
    tls: { mode: 'disable' },
    maxMessageBytes: 1 << 20,
    credentials: () => null,
  });
  try {
    const gone = new AbortController();
    gone.abort();
    const t0 = Date.now();
    await assert.rejects(pools.acquire('db', 'u', gone.signal), (e: unknown) => e instanceof PgError && e.code === '57014');
    assert.ok(Date.now() - t0 < 100);
    assert.deepEqual(pools.stats(), []);
  } finally {
    pools.close();
  }
});
