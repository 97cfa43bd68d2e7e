// Running client programs (psql, pgbench) for tests and the benchmark, with a clean libpq environment.

import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** This process's environment without PG* variables (so only what a test sets reaches libpq), plus extra. */
export function cleanPgEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, PGCONNECT_TIMEOUT: '10', ...extra };
}

/** Run file with args to completion and collect its output; never rejects on a non-zero exit. */
export function run(file: string, args: string[], env: NodeJS.ProcessEnv = cleanPgEnv()): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
