// Assertions and small client helpers shared by integration tests: pgbench output, a refused connection, ParameterStatus.

import assert from 'node:assert/strict';
import pg from 'pg';
import type { RunResult } from './exec.js';

/** pgbench exited 0, reported zero failed transactions and processed some. Returns the numbers it printed. */
export function assertPgbenchOk(label: string, r: RunResult): { tps: number; processed: number; latency: string } {
  const out = `${r.stdout}\n${r.stderr}`;
  const errors = r.stderr
    .split('\n')
    .filter((l) => /error|abort|fatal/i.test(l))
    .slice(0, 10)
    .join('\n');
  assert.equal(r.code, 0, `${label}: pgbench exited ${r.code}\n${errors || out.slice(-2000)}`);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  assert.ok(failed, `${label}: no "number of failed transactions" line in:\n${out.slice(-2000)}`);
  assert.equal(Number(failed[1]), 0, `${label}: failed transactions\n${errors}`);
  const processed = /number of transactions actually processed: (\d+)/.exec(out);
  assert.ok(processed && Number(processed[1]) > 0, `${label}: some transactions were processed`);
  const tps = /tps = ([\d.]+)/.exec(out);
  assert.ok(tps, `${label}: no tps line in:\n${out.slice(-2000)}`);
  return { tps: Number(tps[1]), processed: Number(processed[1]), latency: /latency average = ([\d.]+ ms)/.exec(out)?.[1] ?? '?' };
}

/** The error of a node-postgres connection that must be refused. */
export async function connectError(connectionString: string): Promise<pg.DatabaseError> {
  const c = new pg.Client({ connectionString });
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (e) {
    return e as pg.DatabaseError;
  } finally {
    await c.end().catch(() => {});
  }
  assert.fail('connection was expected to fail');
}

/** ParameterStatus values a pg client receives (pg does not keep them itself). Attach before connect(). */
export function trackParams(c: pg.Client): Map<string, string> {
  const params = new Map<string, string>();
  (c as unknown as { connection: NodeJS.EventEmitter }).connection.on(
    'parameterStatus',
    (msg: { parameterName: string; parameterValue: string }) => params.set(msg.parameterName, msg.parameterValue),
  );
  return params;
}
