#!/usr/bin/env node
// The switchyard command: start a gateway, check a config file, talk to a running gateway (reload, mirror),
// route statements offline, or run the local sandbox.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile, formatProblems, defaultConfig } from '../config/load.js';
import { Gateway, VERSION } from '../gateway.js';
import { Router, loadParser, splitStatements } from '../router/router.js';

const USAGE = `switchyard ${VERSION} — a PostgreSQL gateway

Usage:
  switchyard start -c FILE          run one gateway with the config in FILE (or $SWITCHYARD_CONFIG)
  switchyard check-config -c FILE   validate FILE; prints every problem with its path, exits 1 on any
  switchyard reload -c FILE         make the gateway started with FILE read it again (through its admin API;
                                    the same as sending it SIGHUP); prints what was applied
  switchyard mirror report -c FILE [--json]
                                    print the running gateway's mirror report (through its admin API, as
                                    reload finds it): a line of totals, then per statement fingerprint the
                                    outcome counts and p50/p95/p99 ms on the primary and on the mirror
      --json            the report as JSON (GET /api/v1/mirror/report) instead of a table
  switchyard mirror on|off -c FILE [--rate R]
                                    switch mirroring on or off at run time (until the next reload or restart);
                                    prints the mirror status
      --rate R          also set the sample rate, a share of eligible statements from 0 to 1
  switchyard route [-c FILE] [--file F] ["SQL" ...]
                                    print where each statement would be routed, one JSON object a line
      -c FILE           take routing.replica_safe_functions from the config in FILE
      --file F          route each statement of F (- for stdin) besides the SQL arguments
  switchyard sandbox [options]      local primary + replicas + gateway, for trying switchyard out
      --port N          client port (default 6432)
      --admin-port N    admin HTTP port (default 9432)
      --replicas N      streaming replicas to start (default 2)
      --dir DIR         where the servers' data is kept (default ./.sandbox)
  switchyard --version | --help

Environment variables SWITCHYARD_<SECTION>__<KEY> override config values (see docs/configuration.md).
`;

function fail(message: string, code = 2): never {
  process.stderr.write(message.endsWith('\n') ? message : message + '\n');
  process.exit(code);
}

function configPath(values: { config?: string }): string {
  const file = values.config ?? process.env.SWITCHYARD_CONFIG;
  if (!file) fail('switchyard: no config file: pass -c FILE or set SWITCHYARD_CONFIG\n\n' + USAGE);
  return file;
}

/** Stop on SIGINT/SIGTERM exactly once, running cleanup first. */
function onShutdown(cleanup: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    cleanup().then(
      () => process.exit(signal === 'SIGINT' ? 130 : 0),
      (e) => fail(`switchyard: error while stopping: ${(e as Error).message}`, 1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

async function start(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const file = configPath(values);
  const r = loadConfigFile(file);
  if (!r.ok) fail(formatProblems(r.problems, file));
  if (r.warnings.length) process.stderr.write(formatProblems(r.warnings, file) + '\n');
  const gw = await Gateway.start(r.config, { configFile: file });
  onShutdown(() => gw.close());
  process.on('SIGHUP', () => {
    const next = loadConfigFile(file);
    if (!next.ok) {
      gw.log.error({ problems: next.problems }, `reload: ${file} has problems; nothing was changed`);
      process.stderr.write(formatProblems(next.problems, file) + '\n');
      return;
    }
    gw.reload(next.config);
  });
}

/**
 * Call the admin API of the gateway whose config is FILE: its address and token come from FILE's admin
 * section. Fails (exit 1) when there is no admin API, it cannot be reached, or it answers an error.
 */
async function callAdmin(command: string, file: string, apiPath: string, init: { method?: string; body?: unknown; noAdmin?: string } = {}): Promise<string> {
  const r = loadConfigFile(file);
  if (!r.ok) fail(formatProblems(r.problems, file), 1);
  const a = r.config.admin;
  if (a.port === 0) fail(`switchyard ${command}: admin.port is 0 in ${file}, so the gateway has no admin API to ask${init.noAdmin ? `; ${init.noAdmin}` : ''}`, 1);
  const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${a.port}${apiPath}`;
  const headers: Record<string, string> = a.token ? { authorization: `Bearer ${a.token}` } : {};
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(url, { method: init.method ?? 'GET', headers, ...(init.body !== undefined && { body: JSON.stringify(init.body) }) });
  } catch (e) {
    fail(`switchyard ${command}: cannot reach the gateway's admin API at ${url}: ${((e as Error).cause as Error | undefined)?.message ?? (e as Error).message}`, 1);
  }
  const body = await res.text();
  if (!res.ok) fail(`switchyard ${command}: ${res.status} ${body}`, 1);
  return body;
}

/** Ask a running gateway (found through the admin section of FILE) to read its config file again. */
async function reload(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const body = await callAdmin('reload', configPath(values), '/api/v1/reload', { method: 'POST', noAdmin: 'send it SIGHUP instead' });
  process.stdout.write(body + '\n');
}

/** `mirror report`: the running gateway's mirror report; `mirror on|off`: switch mirroring at run time. */
async function mirror(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === 'report') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } } });
    // The gateway formats the text itself, so this prints exactly what GET /api/v1/mirror/report?format=text answers.
    const body = await callAdmin('mirror report', configPath(values), `/api/v1/mirror/report?format=${values.json ? 'json' : 'text'}`);
    process.stdout.write(body.endsWith('\n') ? body : body + '\n');
    return;
  }
  if (sub === 'on' || sub === 'off') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, rate: { type: 'string' } } });
    const settings: { enabled: boolean; sample_rate?: number } = { enabled: sub === 'on' };
    if (values.rate !== undefined) {
      const rate = Number(values.rate);
      if (values.rate.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) fail(`switchyard mirror: --rate must be a number from 0 to 1, got "${values.rate}"`);
      settings.sample_rate = rate;
    }
    const body = await callAdmin(`mirror ${sub}`, configPath(values), '/api/v1/mirror', { method: 'POST', body: settings });
    process.stdout.write(body + '\n');
    return;
  }
  fail(`switchyard mirror: expected report, on or off${sub === undefined ? '' : `, got "${sub}"`}\n\n${USAGE}`);
}

function checkConfig(args: string[]): void {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const file = configPath(values);
  const r = loadConfigFile(file);
  if (!r.ok) fail(formatProblems(r.problems, file), 1);
  if (r.warnings.length) process.stdout.write(formatProblems(r.warnings, file).replace(/^/gm, 'warning: ') + '\n');
  process.stdout.write(`${file}: ok\n`);
}

/** Runs the router over SQL arguments and a file's statements: one JSON line each, as the gateway would route it. */
async function route(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, file: { type: 'string' } },
  });
  let safeFunctions: string[] = [];
  if (values.config !== undefined) {
    const r = loadConfigFile(values.config);
    if (!r.ok) fail(formatProblems(r.problems, values.config), 1);
    safeFunctions = r.config.routing.replica_safe_functions;
  }
  if (positionals.length === 0 && values.file === undefined) fail('switchyard route: give SQL arguments or --file F\n\n' + USAGE);
  await loadParser();
  const statements = [...positionals];
  if (values.file !== undefined) {
    const text = values.file === '-' ? await readStdin() : await readFile(values.file, 'utf8');
    statements.push(...splitStatements(text));
  }
  const router = new Router({ safeFunctions });
  let out = '';
  for (const statement of statements) {
    const d = router.route(statement);
    out += JSON.stringify({ statement, target: d.target, reason: d.reason, ...(d.txn ? { txn: d.txn } : {}), ...(d.hint ? { hint: d.hint } : {}) }) + '\n';
  }
  process.stdout.write(out);
}

async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin.setEncoding('utf8')) text += chunk;
  return text;
}

async function sandbox(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string', default: '6432' },
      'admin-port': { type: 'string', default: '9432' },
      replicas: { type: 'string', default: '2' },
      dir: { type: 'string', default: '.sandbox' },
    },
  });
  const num = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) fail(`switchyard sandbox: --${name} must be an integer from ${min} to ${max}, got "${v}"`);
    return n;
  };
  const port = num('port', values.port, 0, 65535);
  const adminPort = num('admin-port', values['admin-port'], 0, 65535);
  const replicas = num('replicas', values.replicas, 0, 8);
  const dir = path.resolve(values.dir);

  // The harness lives with the tests; the sandbox is its other user.
  const harness = await import(new URL('../../test/harness/pg-cluster.js', import.meta.url).href);
  if (!harness.findPgBin()) {
    fail(
      'switchyard sandbox: PostgreSQL 15 server binaries were not found (looked in /usr/lib/postgresql/15/bin and pg_config --bindir).\n' +
        'Install them, for example on Debian or Ubuntu: sudo apt-get install -y postgresql-15\n',
      1,
    );
  }
  process.stderr.write(`starting PostgreSQL primary + ${replicas} replica(s) under ${dir} ...\n`);
  const cluster = await harness.startCluster({ replicas, dir }).catch((e: Error) => {
    const hint =
      process.getuid?.() === 0 && /permission denied/i.test(e.message)
        ? `\nThe servers run as the postgres OS user, which cannot enter ${dir} or a directory above it; ` +
          'pass --dir under a directory it can reach, for example --dir /tmp/switchyard-sandbox'
        : '';
    fail(`switchyard sandbox: ${e.message}${hint}`, 1);
  });
  let gw: Gateway | undefined;
  onShutdown(async () => {
    await gw?.close();
    await cluster.destroy();
  });
  const su = 'postgres';
  const pw = 'postgres';
  gw = await Gateway.start(
    defaultConfig({
      listen: { host: '127.0.0.1', port },
      admin: { host: '127.0.0.1', port: adminPort, users: [su] }, // the console: psql ... switchyard
      primary: { name: 'primary', host: cluster.primary.host, port: cluster.primary.port },
      replicas: cluster.replicas.map((r: { name: string; host: string; port: number }) => ({ name: r.name, host: r.host, port: r.port })),
      server_tls: { mode: 'disable' },
      // Any role created on the primary can log in: its verifier is read with the auth query.
      auth: { users: [{ name: su, password: pw }], query: { user: su, password: pw } },
      log: { level: 'warn' },
    }),
  );
  const url = `postgres://${su}:${pw}@127.0.0.1:${gw.port}/postgres`;
  process.stdout.write(`ready ${url} admin=${gw.adminUrl ?? 'off'} data=${dir}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'start':
      return start(rest);
    case 'check-config':
      return checkConfig(rest);
    case 'reload':
      return reload(rest);
    case 'route':
      return route(rest);
    case 'mirror':
      return mirror(rest);
    case 'sandbox':
      return sandbox(rest);
    case '--version':
    case 'version':
      process.stdout.write(VERSION + '\n');
      return;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      fail(`switchyard: unknown command "${cmd}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((e: Error) => fail(`switchyard: ${e.message}`, 1));
