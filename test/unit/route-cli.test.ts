// `switchyard route`: the router run from the command line over SQL arguments, a file or stdin; no servers needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

const lines = (r: Run): unknown[] => r.stdout.trim().split('\n').map((l) => JSON.parse(l));

function tempDir(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(path.join(tmpdir(), 'switchyard-route-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('SQL arguments: one JSON object a line, with txn and hint when set', async () => {
  const r = await run(['route', 'SELECT 1', "INSERT INTO t VALUES ('a;b')", 'BEGIN', '/* switchyard:primary */ SELECT 2', 'SELECT my_fn()']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r), [
    { statement: 'SELECT 1', target: 'replica', reason: 'read' },
    { statement: "INSERT INTO t VALUES ('a;b')", target: 'primary', reason: 'write: INSERT' },
    { statement: 'BEGIN', target: 'any', reason: 'transaction: BEGIN', txn: 'begin' },
    { statement: '/* switchyard:primary */ SELECT 2', target: 'primary', reason: 'hint', hint: 'primary' },
    { statement: 'SELECT my_fn()', target: 'primary', reason: 'function my_fn: not known to be replica-safe' },
  ]);
});

test('--file: each statement of the file; a file that does not parse goes line by line', async (t) => {
  const dir = tempDir(t);
  const good = path.join(dir, 'good.sql');
  writeFileSync(good, "-- a workload\nSELECT 'x;y' FROM t;\nUPDATE t SET a = 1;\n\nSELECT nextval('s')\n");
  const r = await run(['route', '--file', good]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r), [
    { statement: "SELECT 'x;y' FROM t", target: 'replica', reason: 'read' },
    { statement: 'UPDATE t SET a = 1', target: 'primary', reason: 'write: UPDATE' },
    { statement: "SELECT nextval('s')", target: 'primary', reason: 'function nextval: sequence' },
  ]);

  const bad = path.join(dir, 'bad.sql');
  writeFileSync(bad, 'SELECT 1;\nSELEC 2;\n');
  const b = await run(['route', '--file', bad]);
  assert.equal(b.code, 0, b.stderr);
  assert.deepEqual(lines(b), [
    { statement: 'SELECT 1', target: 'replica', reason: 'read' },
    { statement: 'SELEC 2', target: 'primary', reason: 'parse error' },
  ]);
});

test('--file - reads stdin', async () => {
  const r = await run(['route', '--file', '-'], 'SHOW work_mem; COMMIT');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r), [
    { statement: 'SHOW work_mem', target: 'replica', reason: 'read: SHOW' },
    { statement: 'COMMIT', target: 'any', reason: 'transaction: COMMIT', txn: 'commit' },
  ]);
});

test("-c FILE: the config's routing.replica_safe_functions make those functions replica-safe", async (t) => {
  const config = path.join(tempDir(t), 'switchyard.yaml');
  writeFileSync(config, 'primary: {host: db1}\nrouting: {replica_safe_functions: [My_Fn, app.score]}\n');
  const r = await run(['route', '-c', config, 'SELECT my_fn(), app.score(1)', 'SELECT other_fn()']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r), [
    { statement: 'SELECT my_fn(), app.score(1)', target: 'replica', reason: 'read' },
    { statement: 'SELECT other_fn()', target: 'primary', reason: 'function other_fn: not known to be replica-safe' },
  ]);
});

test('nothing to route is a usage error', async () => {
  const r = await run(['route']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /give SQL arguments or --file F/);
  assert.match(r.stderr, /switchyard route \[-c FILE\]/);
});
