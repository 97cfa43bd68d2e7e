// switchyard benchmark: pgbench straight at PostgreSQL vs through switchyard vs through PgBouncer.
//
//   npm run bench -- [--preset txn] [--seconds N] [--clients N] [--scale N] [--rounds N]
//                    [--protocol simple|extended|prepared[,...]] [--scenario select-only|tpcb-like|all]
//                    [--mode session|transaction] [--pool-size N] [--json FILE]
//
// One throw-away PostgreSQL 15 primary (test/harness/pg-cluster.ts), pgbench tables at --scale, the
// gateway in its own node process (bench/gateway-process.ts), PgBouncer when /usr/sbin/pgbouncer (or
// pgbouncer on PATH) exists. Every protocol given is a group with a table of its own. Rounds are
// interleaved: every round runs every group and scenario against every target, the target order
// rotating per round. See bench/README.md.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { findPgBin, freePort, startCluster, type PgCluster } from '../test/harness/pg-cluster.js';
import { ERROR_MARK, READY_MARK, SPEC_ENV, type GatewayProcessSpec } from './gateway-ipc.js';

const HOST = '127.0.0.1';
const DATABASE = 'postgres';

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

type Scenario = 'select-only' | 'tpcb-like';
/** mirror: a second switchyard with mirroring on (sample rate 1.0), run in the same rounds. */
type Target = 'direct' | 'switchyard' | 'mirror' | 'pgbouncer';
type Protocol = 'simple' | 'extended' | 'prepared';
type PoolMode = 'session' | 'transaction';
type Preset = 'txn';

const ALL_SCENARIOS: Scenario[] = ['select-only', 'tpcb-like'];
const ALL_TARGETS: Target[] = ['direct', 'switchyard', 'mirror', 'pgbouncer'];
const PROTOCOLS: readonly Protocol[] = ['simple', 'extended', 'prepared'];

interface Options {
  preset?: Preset;
  seconds: number;
  clients: number;
  jobs: number;
  scale: number;
  rounds: number;
  /** one group (table) per protocol, in this order */
  protocols: Protocol[];
  scenarios: Scenario[];
  mode: PoolMode;
  poolSize: number;
  json?: string;
  noPgbouncer: boolean;
  /** Streaming replicas switchyard splits reads to (direct and PgBouncer use the primary only). */
  replicas: number;
  /** Also run a switchyard with mirroring on (target 'mirror'), at this sample rate. */
  mirror: boolean;
  mirrorRate: number;
}

/** Values a preset stands for; any flag given explicitly wins. Flag spelling as on the command line. */
const PRESETS: Record<Preset, Partial<Record<'mode' | 'scenario' | 'clients' | 'pool-size' | 'protocol', string>>> = {
  // Transaction pooling, many clients over few server connections: -M simple against both proxies,
  // -M prepared against switchyard only (PgBouncer 1.18 cannot, see PGBOUNCER_PREPARED_SKIP).
  txn: { mode: 'transaction', scenario: 'select-only', clients: '50', 'pool-size': '10', protocol: 'simple,prepared' },
};

/**
 * PgBouncer before 1.21 (Debian 12 ships 1.18) does not track protocol-level prepared statements in
 * transaction mode: pgbench -M prepared parses a named statement once per client and later binds it on
 * whichever server connection the transaction gets, where it does not exist.
 */
const PGBOUNCER_PREPARED_SKIP =
  'PgBouncer skipped for -M prepared: in transaction mode PgBouncer < 1.21 cannot relay protocol-level prepared statements ' +
  '(a statement parsed on one server connection is executed on another: "prepared statement does not exist")';

function pgbouncerSkipReason(mode: PoolMode, protocol: Protocol): string | undefined {
  return mode === 'transaction' && protocol === 'prepared' ? PGBOUNCER_PREPARED_SKIP : undefined;
}

const USAGE = `usage: node dist/bench/run.js [options]        (npm run bench -- [options])
  --preset txn     transaction pooling: --mode transaction --scenario select-only --clients 50
                   --pool-size 10 --protocol simple,prepared (PgBouncer only in the simple group);
                   flags given explicitly override these
  --seconds N      pgbench -T per run (default 10)
  --clients N      pgbench -c (default 20; -j is min(2, clients))
  --scale N        pgbench -i -s (default 10)
  --rounds N       interleaved rounds; the median TPS is reported (default 3)
  --protocol P     simple | extended | prepared (pgbench -M, default simple); a comma-separated
                   list runs one group (table) per protocol in the same invocation
  --scenario S     select-only | tpcb-like | all (default all)
  --mode M         pool mode of both proxies: session | transaction (default session); with
                   transaction, PgBouncer is skipped for -M prepared (it cannot do it before 1.21)
  --pool-size N    switchyard pool.size = max_db_connections = PgBouncer default_pool_size
                   (default: --clients, so no client ever waits for a server connection)
  --replicas N     start N streaming replicas and let switchyard split reads to them (direct and
                   PgBouncer stay on the primary); the transactions each node ran are printed
                   (default 0; splitting needs --mode transaction)
  --mirror         also run a second switchyard with mirroring on at sample rate 1.0 (target
                   "mirror": to the replicas with --replicas, else copies of the reads go to the
                   primary itself) and report its TPS against switchyard's and what it mirrored
  --mirror-rate R  the mirror's sample rate (0 < R <= 1, default 1; implies --mirror)
  --json FILE      also write the results as JSON
  --no-pgbouncer   skip PgBouncer even when it is installed
  -h, --help       this text`;

/** Wait until every replica has replayed the primary's current WAL position. */
async function replayed(cluster: PgCluster): Promise<void> {
  const target = await cluster.query('SELECT pg_current_wal_insert_lsn()');
  for (const r of cluster.replicas) {
    for (let i = 0; ; i++) {
      if ((await cluster.query(`SELECT pg_last_wal_replay_lsn() >= '${target}'::pg_lsn`, r)) === 't') break;
      if (i > 6000) throw new Error(`${r.name} did not replay ${target} within 10 minutes`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

async function commitsPerNode(cluster: PgCluster): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of cluster.nodes) out.set(n.name, Number(await cluster.query(`SELECT xact_commit FROM pg_stat_database WHERE datname = '${DATABASE}'`, n)));
  return out;
}

function mirrorRate(v: string | undefined): number {
  if (v === undefined) return 1;
  const n = Number(v);
  if (!(n > 0 && n <= 1)) throw new UsageError(`--mirror-rate must be a number above 0 and at most 1, got ${JSON.stringify(v)}`);
  return n;
}

function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

class UsageError extends Error {}

function parseOptions(argv: string[]): Options | null {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        preset: { type: 'string' },
        seconds: { type: 'string' },
        clients: { type: 'string' },
        scale: { type: 'string' },
        rounds: { type: 'string' },
        protocol: { type: 'string' },
        scenario: { type: 'string' },
        mode: { type: 'string' },
        'pool-size': { type: 'string' },
        json: { type: 'string' },
        'no-pgbouncer': { type: 'boolean' },
        replicas: { type: 'string' },
        mirror: { type: 'boolean' },
        'mirror-rate': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return null;
  let preset: Preset | undefined;
  if (values.preset !== undefined) {
    if (!Object.hasOwn(PRESETS, values.preset)) {
      throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}, got ${JSON.stringify(values.preset)}`);
    }
    preset = values.preset as Preset;
  }
  // explicit flag, else the preset's value, else the plain default
  const pv = preset ? PRESETS[preset] : {};
  const protocolArg = values.protocol ?? pv.protocol ?? 'simple';
  const protocols: Protocol[] = [];
  for (const p of protocolArg.split(',').map((x) => x.trim())) {
    if (!(PROTOCOLS as readonly string[]).includes(p)) {
      throw new UsageError(`--protocol must be simple, extended or prepared (or a comma-separated list of them), got ${JSON.stringify(protocolArg)}`);
    }
    if (!protocols.includes(p as Protocol)) protocols.push(p as Protocol);
  }
  const scenario = values.scenario ?? pv.scenario ?? 'all';
  let scenarios: Scenario[];
  if (scenario === 'all') scenarios = ALL_SCENARIOS;
  else if (scenario === 'select-only' || scenario === 'tpcb-like') scenarios = [scenario];
  else throw new UsageError(`--scenario must be select-only, tpcb-like or all, got ${JSON.stringify(scenario)}`);
  const mode = values.mode ?? pv.mode ?? 'session';
  if (mode !== 'session' && mode !== 'transaction') throw new UsageError(`--mode must be session or transaction, got ${JSON.stringify(mode)}`);
  const clients = positiveInt('clients', values.clients ?? pv.clients, 20);
  return {
    preset,
    seconds: positiveInt('seconds', values.seconds, 10),
    clients,
    jobs: Math.min(2, clients),
    scale: positiveInt('scale', values.scale, 10),
    rounds: positiveInt('rounds', values.rounds, 3),
    protocols,
    scenarios,
    mode,
    poolSize: positiveInt('pool-size', values['pool-size'] ?? pv['pool-size'], clients),
    json: values.json,
    noPgbouncer: values['no-pgbouncer'] ?? false,
    replicas: values.replicas === undefined ? 0 : positiveInt('replicas', values.replicas, 0),
    mirror: values.mirror ?? values['mirror-rate'] !== undefined,
    mirrorRate: mirrorRate(values['mirror-rate']),
  };
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function log(line = ''): void {
  process.stdout.write(line + '\n');
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}


function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Environment for libpq tools: no inherited PG* settings, our password. */
function pgEnv(password: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10', LC_ALL: 'C' };
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run a tool to completion, tracking the child so an interrupt can kill it. */
function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    state.tools.add(child);
    writePidFile();
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer);
      state.tools.delete(child);
      writePidFile();
      resolve({ code, signal, stdout, stderr, timedOut });
    };
    child.once('error', (e) => {
      stderr += `\n${errText(e)}`;
      finish(null, null);
    });
    child.once('close', finish);
  });
}

function lastLines(s: string, n = 15): string {
  return s.trimEnd().split('\n').slice(-n).join('\n');
}

function indent(s: string, prefix = '    '): string {
  return s
    .split('\n')
    .map((l) => prefix + l)
    .join('\n');
}

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
} catch {
  // keep 100 (the Linux default)
}

/** utime+stime of a process in seconds, or undefined. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clkTck;
  } catch {
    return undefined;
  }
}

/** [busy, total] jiffies of the whole machine. */
function hostCpu(): [number, number] | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return [total - idle, total];
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Process bookkeeping and cleanup
// ---------------------------------------------------------------------------

interface State {
  dir?: string;
  cluster?: PgCluster;
  gateway?: ChildProcess;
  gatewayExited?: Promise<void>;
  mirrorGateway?: ChildProcess;
  mirrorGatewayExited?: Promise<void>;
  pgbouncer?: ChildProcess;
  pgbouncerExited?: Promise<void>;
  watchdog?: ChildProcess;
  tools: Set<ChildProcess>;
  cleaning?: Promise<void>;
  interrupted: boolean;
}

const state: State = { tools: new Set(), interrupted: false };

// Detached watchdog: if this process dies without cleaning up (SIGKILL), kill the gateway,
// PgBouncer and pgbench processes listed in the pid file and remove the temp dir. (The cluster
// has a watchdog of its own, see test/harness/pg-cluster.ts.)
const WATCHDOG_SH = `
P=$1; D=$2; F=$3
trap 'exit 0' TERM
while kill -0 "$P" 2>/dev/null; do sleep 1; done
for p in $(cat "$F" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
rm -rf "$D"
`;

function pidFile(): string | undefined {
  return state.dir ? path.join(state.dir, '.bench-pids') : undefined;
}

function ourPids(): number[] {
  const procs = [state.gateway, state.mirrorGateway, state.pgbouncer, ...state.tools];
  return procs.map((p) => p?.pid).filter((p): p is number => typeof p === 'number');
}

function writePidFile(): void {
  const f = pidFile();
  if (!f) return;
  try {
    fs.writeFileSync(f, ourPids().join('\n') + '\n');
  } catch {
    // dir already gone
  }
}

function startWatchdog(dir: string): void {
  const child = spawn('/bin/sh', ['-c', WATCHDOG_SH, 'switchyard-bench-watchdog', String(process.pid), dir, pidFile()!], {
    detached: true,
    stdio: 'ignore',
    cwd: '/',
  });
  child.on('error', () => {});
  child.unref();
  state.watchdog = child;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
}

async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true), new Promise<boolean>((res) => (t = setTimeout(() => res(false), ms)))]);
  clearTimeout(t);
  return r;
}

async function stopChild(child: ChildProcess | undefined, done: Promise<void> | undefined, sig: NodeJS.Signals): Promise<void> {
  if (!child || !done) return;
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    child.kill(sig);
  } catch {
    // gone
  }
  if (await within(done, 5000)) return;
  try {
    child.kill('SIGKILL');
  } catch {
    // gone
  }
  await within(done, 5000);
}

function cleanup(): Promise<void> {
  state.cleaning ??= (async () => {
    for (const t of state.tools) t.kill('SIGKILL');
    await Promise.all([
      stopChild(state.gateway, state.gatewayExited, 'SIGTERM'),
      stopChild(state.mirrorGateway, state.mirrorGatewayExited, 'SIGTERM'),
      // SIGINT = PgBouncer's "safe shutdown" would wait for clients; SIGTERM closes everything now.
      stopChild(state.pgbouncer, state.pgbouncerExited, 'SIGTERM'),
    ]);
    if (state.cluster) {
      try {
        await state.cluster.destroy();
      } catch (e) {
        log(`warning: cluster shutdown: ${errText(e)}`);
      }
    }
    if (state.dir) fs.rmSync(state.dir, { recursive: true, force: true, maxRetries: 3 });
    if (state.watchdog?.pid) {
      const wd = state.watchdog;
      const done = exited(wd);
      try {
        process.kill(wd.pid!, 'SIGTERM');
      } catch {
        // gone
      }
      if (!(await within(done, 3000))) {
        try {
          process.kill(wd.pid!, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  })();
  return state.cleaning;
}

/** Last resort on process exit: nothing async runs any more. */
function killSync(): void {
  for (const p of ourPids()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (state.dir) {
    try {
      fs.rmSync(state.dir, { recursive: true, force: true });
    } catch {
      // the watchdog retries
    }
  }
  // (the cluster's own 'exit' hook kills the servers)
}

function installSignalHandlers(): void {
  // Installed before startCluster(), so the harness leaves SIGINT/SIGTERM to us (it only installs
  // its handlers when nobody listens) and we can stop proxies before the servers.
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(sig, () => {
      if (state.interrupted) {
        log(`\n${sig} again: killing everything now`);
        process.exit(code);
      }
      state.interrupted = true;
      log(`\n${sig}: stopping, cleaning up (press Ctrl-C again to force)`);
      const force = setTimeout(() => process.exit(code), 20_000);
      void cleanup().finally(() => {
        clearTimeout(force);
        process.exit(code);
      });
    });
  }
  process.on('exit', killSync);
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

interface ProcessOwner {
  uid: number;
  gid: number;
}

function postgresOwner(): ProcessOwner | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('cannot look up the postgres OS user');
  return { uid, gid };
}

interface LogSummary {
  file: string;
  lines: number;
  problems: number;
  samples: string[];
}

function noteProblem(sum: LogSummary, line: string): void {
  sum.problems++;
  if (sum.samples.length < 8 && !sum.samples.includes(line)) sum.samples.push(line);
}

interface GatewayHandle {
  port: number;
  pid: number;
  log: LogSummary;
  exitInfo: () => string | undefined;
}

const PINO_LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** The mirror gateway's admin API, to read what it mirrored. */
const MIRROR_TOKEN = 'bench-mirror-admin-token';

async function startGatewayProcess(cluster: PgCluster, dir: string, opts: Options, mirrorAdminPort?: number): Promise<GatewayHandle> {
  const mirrored = mirrorAdminPort !== undefined;
  const script = fileURLToPath(new URL('./gateway-process.js', import.meta.url));
  if (!fs.existsSync(script)) throw new Error(`${script} is missing; build first (npx tsc -p .)`);
  const spec: GatewayProcessSpec = {
    primary: { host: cluster.primary.host, port: cluster.primary.port },
    superuser: cluster.superuser,
    superuserPassword: cluster.superuserPassword,
    overrides: {
      pool: { mode: opts.mode, size: opts.poolSize, max_db_connections: opts.poolSize },
      replicas: cluster.replicas.map((r) => ({ name: r.name, host: r.host, port: r.port })),
      // warnings and errors only: a per-connection info log would be extra work PgBouncer is not asked to do
      log: { level: 'warn' },
      ...(mirrored && {
        admin: { port: mirrorAdminPort, token: MIRROR_TOKEN },
        mirror: {
          enabled: true,
          sample_rate: opts.mirrorRate,
          target: cluster.replicas.length > 0 ? ('replicas' as const) : { name: 'primary-copy', host: cluster.primary.host, port: cluster.primary.port },
          // Mismatch events would be logged at warn: there should be none, but a flood would cost the run.
          max_events_per_second: 5,
        },
      }),
    },
  };
  const logFile = path.join(dir, mirrored ? 'switchyard-mirror.log' : 'switchyard.log');
  const sum: LogSummary = { file: logFile, lines: 0, problems: 0, samples: [] };
  const out = fs.openSync(logFile, 'a'); // left open: closes with this process
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, [SPEC_ENV]: JSON.stringify(spec) },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true, // Ctrl-C reaches only the driver, which stops things in order
    cwd: dir,
  });
  const childExited = exited(child);
  if (mirrored) {
    state.mirrorGateway = child;
    state.mirrorGatewayExited = childExited;
  } else {
    state.gateway = child;
    state.gatewayExited = childExited;
  }
  writePidFile();
  let exitDesc: string | undefined;
  void childExited.then(() => {
    exitDesc = `switchyard${mirrored ? ' (mirror)' : ''} process exited (code ${child.exitCode}, signal ${child.signalCode})`;
  });

  let resolveReady!: (v: { port: number; pid: number }) => void;
  let rejectReady!: (e: Error) => void;
  const ready = new Promise<{ port: number; pid: number }>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  const onLine = (line: string, stream: 'stdout' | 'stderr'): void => {
    if (line.startsWith(READY_MARK + ' ')) return resolveReady(JSON.parse(line.slice(READY_MARK.length + 1)) as { port: number; pid: number });
    if (line.startsWith(ERROR_MARK + ' ')) return rejectReady(new Error(`switchyard did not start: ${line.slice(ERROR_MARK.length + 1)}`));
    sum.lines++;
    try {
      fs.writeSync(out, `${stream === 'stderr' ? '[stderr] ' : ''}${line}\n`);
    } catch {
      // closed
    }
    if (stream === 'stderr') return noteProblem(sum, `[stderr] ${line}`);
    try {
      const rec = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((rec.level ?? 0) >= 40) {
        const lvl = PINO_LEVELS[rec.level!] ?? String(rec.level);
        noteProblem(sum, `${lvl}: ${rec.msg ?? ''}${rec.err?.message ? ` (${rec.err.message})` : ''}`.slice(0, 300));
      }
    } catch {
      noteProblem(sum, line.slice(0, 300));
    }
  };
  readline.createInterface({ input: child.stdout! }).on('line', (l) => onLine(l, 'stdout'));
  readline.createInterface({ input: child.stderr! }).on('line', (l) => onLine(l, 'stderr'));
  child.stdin!.on('error', () => {}); // EPIPE if it died
  void childExited.then(() => rejectReady(new Error(`switchyard process exited during startup (code ${child.exitCode}); see ${logFile}`)));

  const timeout = setTimeout(() => rejectReady(new Error('switchyard did not report ready within 20 s')), 20_000);
  try {
    const r = await ready;
    return { port: r.port, pid: child.pid!, log: sum, exitInfo: () => exitDesc };
  } catch (e) {
    if (sum.samples.length) throw new Error(`${errText(e)}\n${indent(sum.samples.join('\n'))}`);
    throw e;
  } finally {
    clearTimeout(timeout);
  }
}

function findPgbouncer(): string | undefined {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer', '/usr/local/sbin/pgbouncer']) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

function toolVersion(file: string): string {
  try {
    return execFileSync(file, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\n')[0]!.trim();
  } catch (e) {
    return `unknown (${errText(e)})`;
  }
}

interface PgbouncerHandle {
  port: number;
  pid: number;
  log: LogSummary;
  exitInfo: () => string | undefined;
}

function iniValue(s: string): string {
  if (/[\s;#'"]/.test(s)) throw new Error(`unexpected characters in PgBouncer setting ${JSON.stringify(s)}`);
  return s;
}

async function startPgbouncer(bin: string, cluster: PgCluster, dir: string, opts: Options, owner: ProcessOwner | undefined): Promise<PgbouncerHandle> {
  const port = await freePort();
  const q = (s: string): string => `"${s.replace(/"/g, '""')}"`;
  const userlist = path.join(dir, 'userlist.txt');
  const logfile = path.join(dir, 'pgbouncer.log');
  const ini = path.join(dir, 'pgbouncer.ini');
  const write = (file: string, text: string): void => {
    fs.writeFileSync(file, text, { mode: 0o600 });
    if (owner) fs.chownSync(file, owner.uid, owner.gid);
  };
  write(userlist, `${q(cluster.superuser)} ${q(cluster.superuserPassword)}\n`);
  write(
    ini,
    [
      '; generated by bench/run.ts',
      '[databases]',
      `* = host=${cluster.primary.host} port=${cluster.primary.port}`,
      '',
      '[pgbouncer]',
      `listen_addr = ${HOST}`,
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${iniValue(userlist)}`,
      `pool_mode = ${opts.mode}`,
      `default_pool_size = ${opts.poolSize}`,
      'min_pool_size = 0',
      'reserve_pool_size = 0',
      // pgbench's clients plus the driver's sanity psql, with room to spare
      `max_client_conn = ${Math.max(1000, opts.clients + 50)}`,
      `logfile = ${iniValue(logfile)}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'server_tls_sslmode = disable',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(logfile, '');
  if (owner) fs.chownSync(logfile, owner.uid, owner.gid);
  const child = spawn(bin, [ini], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
    ...(owner ? { uid: owner.uid, gid: owner.gid } : {}),
  });
  state.pgbouncer = child;
  state.pgbouncerExited = exited(child);
  writePidFile();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 20_000) stderr += d;
  });
  let exitDesc: string | undefined;
  void state.pgbouncerExited.then(() => (exitDesc = `pgbouncer exited (code ${child.exitCode}, signal ${child.signalCode})`));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exitDesc) throw new Error(`${exitDesc} during startup:\n${indent(lastLines(stderr || readFileSafe(logfile)))}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) throw new Error(`pgbouncer not listening on ${port} after 15 s:\n${indent(lastLines(readFileSafe(logfile)))}`);
    await sleep(50);
  }
  return { port, pid: child.pid!, log: { file: logfile, lines: 0, problems: 0, samples: [] }, exitInfo: () => exitDesc };
}

function readFileSafe(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** WARNING/ERROR/FATAL lines of a log file (PgBouncer's, the server's). */
function scanLog(file: string, from = 0): LogSummary {
  const sum: LogSummary = { file, lines: 0, problems: 0, samples: [] };
  let text = readFileSafe(file);
  text = text.slice(from);
  for (const line of text.split('\n')) {
    if (!line) continue;
    sum.lines++;
    if (/\b(WARNING|ERROR|FATAL|PANIC)\b/.test(line)) noteProblem(sum, line.slice(0, 300));
  }
  return sum;
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------
// pgbench
// ---------------------------------------------------------------------------

interface PgbenchRun {
  round: number;
  protocol: Protocol;
  scenario: Scenario;
  target: Target;
  port: number;
  exitCode: number | null;
  signal: string | null;
  tps?: number;
  latencyMs?: number;
  failed?: number;
  processed?: number;
  /** utime+stime of the proxy over the run, as % of one core */
  proxyCpuPct?: number;
  /** whole machine busy %, all cores */
  hostCpuPct?: number;
  wallSeconds: number;
  ok: boolean;
  problem?: string;
  /** pgbench stderr lines that report errors */
  errors: string[];
}

function pgbenchArgs(opts: Options, protocol: Protocol, scenario: Scenario, port: number | string, user: string): string[] {
  return [
    '-h', HOST,
    '-p', String(port),
    '-U', user,
    '-M', protocol,
    '-c', String(opts.clients),
    '-j', String(opts.jobs),
    '-T', String(opts.seconds),
    ...(scenario === 'select-only' ? ['-S'] : []),
    DATABASE,
  ];
}

function parsePgbench(out: string): { tps?: number; latencyMs?: number; failed?: number; processed?: number } {
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  return {
    tps: num(/^tps = ([\d.]+) \(without initial connection time\)/m),
    latencyMs: num(/^latency average = ([\d.]+) ms/m),
    failed: num(/^number of failed transactions: (\d+)/m),
    processed: num(/^number of transactions actually processed: (\d+)/m),
  };
}

async function runPgbench(
  pgbench: string,
  opts: Options,
  cluster: PgCluster,
  round: number,
  protocol: Protocol,
  scenario: Scenario,
  target: Target,
  port: number,
  proxyPid: number | undefined,
): Promise<PgbenchRun> {
  const args = pgbenchArgs(opts, protocol, scenario, port, cluster.superuser);
  const cpu0 = cpuSeconds(proxyPid);
  const host0 = hostCpu();
  const t0 = process.hrtime.bigint();
  const r = await runTool(pgbench, args, pgEnv(cluster.superuserPassword), (opts.seconds + 120) * 1000);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = cpuSeconds(proxyPid);
  const host1 = hostCpu();
  const parsed = parsePgbench(r.stdout);
  const run: PgbenchRun = {
    round,
    protocol,
    scenario,
    target,
    port,
    exitCode: r.code,
    signal: r.signal,
    ...parsed,
    proxyCpuPct: cpu0 !== undefined && cpu1 !== undefined ? ((cpu1 - cpu0) / wall) * 100 : undefined,
    hostCpuPct: host0 && host1 && host1[1] > host0[1] ? ((host1[0] - host0[0]) / (host1[1] - host0[1])) * 100 : undefined,
    wallSeconds: wall,
    ok: true,
    errors: r.stderr
      .split('\n')
      .filter((l) => /error|abort|fatal|could not|failed/i.test(l))
      .map((l) => l.trim())
      .slice(0, 20),
  };
  const problems: string[] = [];
  if (r.timedOut) problems.push('pgbench timed out and was killed');
  if (r.code !== 0) problems.push(`pgbench exit status ${r.code ?? 'none'}${r.signal ? ` (signal ${r.signal})` : ''}`);
  if (parsed.tps === undefined) problems.push('no "tps = ... (without initial connection time)" line in the output');
  if (parsed.failed === undefined) problems.push('no "number of failed transactions" line in the output');
  else if (parsed.failed > 0) problems.push(`${parsed.failed} failed transactions`);
  if (problems.length) {
    run.ok = false;
    run.problem = problems.join('; ');
    const detail = lastLines([r.stderr.trim(), r.stdout.trim()].filter(Boolean).join('\n'), 25);
    if (detail) run.problem += `\n${indent(detail, '      | ')}`;
  }
  return run;
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

interface Summary {
  protocol: Protocol;
  scenario: Scenario;
  target: Target;
  tpsMedian: number;
  latencyMsMedian: number;
  failed: number;
  badRuns: number;
  proxyCpuPctMedian?: number;
  tpsRuns: number[];
}

function fmt(n: number | undefined, digits = 1): string {
  return n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || !(b > 0) || Number.isNaN(a) ? 'n/a' : (a / b).toFixed(3);
}

function table(rows: string[][], rightAlign: boolean[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r, ri) => {
      const line = r.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
      return ri === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

function summarize(runs: PgbenchRun[], protocol: Protocol, scenarios: Scenario[], targets: Target[]): Summary[] {
  const out: Summary[] = [];
  for (const scenario of scenarios) {
    for (const target of targets) {
      const rs = runs.filter((r) => r.protocol === protocol && r.scenario === scenario && r.target === target);
      if (!rs.length) continue;
      const withTps = rs.filter((r) => r.tps !== undefined);
      const cpu = rs.map((r) => r.proxyCpuPct).filter((x): x is number => x !== undefined);
      out.push({
        protocol,
        scenario,
        target,
        tpsMedian: median(withTps.map((r) => r.tps!)),
        latencyMsMedian: median(rs.filter((r) => r.latencyMs !== undefined).map((r) => r.latencyMs!)),
        failed: rs.reduce((a, r) => a + (r.failed ?? 0), 0),
        badRuns: rs.filter((r) => !r.ok).length,
        proxyCpuPctMedian: cpu.length ? median(cpu) : undefined,
        tpsRuns: rs.sort((a, b) => a.round - b.round).map((r) => r.tps ?? NaN),
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  let opts: Options | null;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
  if (!opts) {
    log(USAGE);
    return 0;
  }

  const pgBin = findPgBin();
  if (!pgBin) throw new Error('PostgreSQL 15 binaries not found (see test/harness/pg-cluster.ts findPgBin)');
  const pgbench = [path.join(pgBin, 'pgbench'), '/usr/lib/postgresql/15/bin/pgbench', '/usr/bin/pgbench'].find((p) => fs.existsSync(p));
  if (!pgbench) throw new Error(`pgbench not found in ${pgBin}`);
  const psql = path.join(pgBin, 'psql');
  const pgbouncerInstalled = opts.noPgbouncer ? undefined : findPgbouncer();
  // Groups where PgBouncer cannot take part by design (transaction mode + -M prepared); it is only
  // started when some group wants it.
  const skipFor = new Map<Protocol, string>();
  for (const p of opts.protocols) {
    const why = pgbouncerSkipReason(opts.mode, p);
    if (why) skipFor.set(p, why);
  }
  const pgbouncerWanted = opts.protocols.some((p) => !skipFor.has(p));
  const pgbouncerBin = pgbouncerWanted ? pgbouncerInstalled : undefined;
  const multi = opts.protocols.length > 1;

  const cores = os.cpus().length;
  log('switchyard benchmark');
  log(`  machine:    ${cores} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load avg ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  log(`  pgbench:    ${toolVersion(pgbench)} (${pgbench})`);
  log(`  postgres:   ${toolVersion(path.join(pgBin, 'postgres'))}`);
  if (!pgbouncerInstalled) {
    log(`  pgbouncer:  ${opts.noPgbouncer ? 'skipped (--no-pgbouncer)' : 'not installed'}: no PgBouncer column (ratios vs PgBouncer are n/a)`);
  } else if (!pgbouncerWanted) {
    log(`  pgbouncer:  ${toolVersion(pgbouncerInstalled)} (${pgbouncerInstalled}): not started`);
  } else {
    log(`  pgbouncer:  ${toolVersion(pgbouncerInstalled)} (${pgbouncerInstalled})`);
  }
  if (pgbouncerInstalled) {
    for (const why of new Set(skipFor.values())) log(`              ${why}; that group reports switchyard/direct only`);
  }
  log(`  node:       ${process.version}`);
  log(
    `  settings:   ${opts.preset ? `preset ${opts.preset}, ` : ''}${opts.seconds} s per run, ${opts.clients} clients / ${opts.jobs} threads, scale ${opts.scale}, ${opts.rounds} round(s), ` +
      `protocol ${opts.protocols.join(', ')}, pool mode ${opts.mode}, pool size ${opts.poolSize}, scenarios ${opts.scenarios.join(', ')}`,
  );

  installSignalHandlers();
  const owner = postgresOwner();
  state.dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-bench-')));
  if (owner) {
    fs.chmodSync(state.dir, 0o711);
    fs.chownSync(state.dir, owner.uid, owner.gid);
  }
  startWatchdog(state.dir);

  // --- PostgreSQL ---
  const t0 = Date.now();
  // direct clients + the idle server connections both proxies keep + pgbench's extra connection, with headroom
  const maxConnections = Math.max(200, opts.clients + (opts.mirror ? 3 : 2) * opts.poolSize + 50);
  log(`\nstarting PostgreSQL 15 (max_connections ${maxConnections}) ...`);
  const cluster = await startCluster({ replicas: opts.replicas, conf: { max_connections: maxConnections } });
  state.cluster = cluster;
  if (state.interrupted) return 130;
  log(`  primary on ${cluster.primary.host}:${cluster.primary.port} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  const serverLogStart = fileSize(cluster.primary.logFile);

  log(`initialising pgbench tables (pgbench -i -s ${opts.scale}) ...`);
  const t1 = Date.now();
  const init = await runTool(
    pgbench,
    ['-i', '-s', String(opts.scale), '-h', HOST, '-p', String(cluster.primary.port), '-U', cluster.superuser, DATABASE],
    pgEnv(cluster.superuserPassword),
    30 * 60_000,
  );
  if (state.interrupted) return 130;
  if (init.code !== 0) throw new Error(`pgbench -i failed (exit ${init.code}):\n${indent(lastLines(init.stderr + init.stdout))}`);
  log(`  done (${((Date.now() - t1) / 1000).toFixed(1)} s)`);
  if (cluster.replicas.length > 0) {
    log(`waiting for ${cluster.replicas.length} replica(s) to replay it ...`);
    await replayed(cluster);
  }
  const commitsBefore = await commitsPerNode(cluster);

  // --- proxies ---
  log('starting switchyard in its own node process ...');
  const gw = await startGatewayProcess(cluster, state.dir, opts);
  if (state.interrupted) return 130;
  log(`  switchyard on ${HOST}:${gw.port} (pid ${gw.pid})`);

  let mirrorGw: GatewayHandle | undefined;
  let mirrorAdmin: number | undefined;
  if (opts.mirror) {
    mirrorAdmin = await freePort();
    log(`starting switchyard with mirroring on (sample rate ${opts.mirrorRate}, to ${cluster.replicas.length > 0 ? 'the replicas' : 'the primary itself'}) ...`);
    mirrorGw = await startGatewayProcess(cluster, state.dir, opts, mirrorAdmin);
    if (state.interrupted) return 130;
    log(`  switchyard+mirror on ${HOST}:${mirrorGw.port} (pid ${mirrorGw.pid})`);
  }

  let bouncer: PgbouncerHandle | undefined;
  if (pgbouncerBin) {
    log(`starting PgBouncer${owner ? ' (as the postgres OS user)' : ''} ...`);
    bouncer = await startPgbouncer(pgbouncerBin, cluster, state.dir, opts, owner);
    if (state.interrupted) return 130;
    log(`  pgbouncer on ${HOST}:${bouncer.port} (pid ${bouncer.pid})`);
  } else if (!pgbouncerInstalled) {
    log(`PgBouncer ${opts.noPgbouncer ? 'skipped (--no-pgbouncer)' : 'not installed (no pgbouncer binary)'}: no PgBouncer column`);
  } else {
    log('PgBouncer not started: transaction mode with only -M prepared (see above)');
  }

  /** One table per protocol; PgBouncer left out where it cannot take part (skipReason). */
  interface Group {
    protocol: Protocol;
    targets: Target[];
    skipReason?: string;
  }
  const groups: Group[] = opts.protocols.map((protocol) => {
    const skipReason = skipFor.get(protocol);
    return { protocol, skipReason, targets: ALL_TARGETS.filter((t) => (t !== 'pgbouncer' || (bouncer && !skipReason)) && (t !== 'mirror' || mirrorGw)) };
  });
  const targets: Target[] = ALL_TARGETS.filter((t) => groups.some((g) => g.targets.includes(t)));
  const portOf: Record<Target, number | undefined> = { direct: cluster.primary.port, switchyard: gw.port, mirror: mirrorGw?.port, pgbouncer: bouncer?.port };
  const pidOf: Record<Target, number | undefined> = { direct: undefined, switchyard: gw.pid, mirror: mirrorGw?.pid, pgbouncer: bouncer?.pid };

  // --- sanity: every target answers a query on the pgbench tables ---
  for (const t of targets) {
    const r = await runTool(
      psql,
      ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', HOST, '-p', String(portOf[t]), '-U', cluster.superuser, '-d', DATABASE, '-c', 'SELECT count(*) FROM pgbench_branches'],
      pgEnv(cluster.superuserPassword),
      30_000,
    );
    if (state.interrupted) return 130;
    if (r.code !== 0 || r.stdout.trim() !== String(opts.scale)) {
      throw new Error(`sanity query through ${t} (port ${portOf[t]}) failed: exit ${r.code}, output ${JSON.stringify(r.stdout.trim())}\n${indent(lastLines(r.stderr))}`);
    }
  }

  const command = (p: Protocol, s: Scenario): string => [pgbench, ...pgbenchArgs(opts!, p, s, 'PORT', cluster.superuser)].join(' ');
  log('\npgbench command (PGPASSWORD set; only -p differs between targets):');
  for (const g of groups) for (const s of opts.scenarios) log(`  ${s.padEnd(11)}  ${command(g.protocol, s)}`);
  log(`  PORT: ${targets.map((t) => `${t} ${portOf[t]}`).join(', ')}`);
  if (multi) for (const g of groups) log(`  -M ${g.protocol.padEnd(8)}  against ${g.targets.join(', ')}${g.skipReason ? ' (no PgBouncer: see above)' : ''}`);

  // --- interleaved rounds ---
  const runs: PgbenchRun[] = [];
  const totalRuns = opts.rounds * opts.scenarios.length * groups.reduce((a, g) => a + g.targets.length, 0);
  log(`\n${totalRuns} runs of ${opts.seconds} s (about ${Math.ceil((totalRuns * (opts.seconds + 2)) / 60)} min)`);
  for (let round = 0; round < opts.rounds; round++) {
    for (const group of groups) {
      const gt = group.targets;
      const order = gt.map((_, i) => gt[(i + round) % gt.length]!);
      for (const scenario of opts.scenarios) {
        for (const target of order) {
          if (state.interrupted) return 130;
          for (const h of [gw, mirrorGw, bouncer]) {
            const why = h?.exitInfo();
            if (why) throw new Error(`${why} before round ${round + 1} -M ${group.protocol} ${scenario}`);
          }
          const run = await runPgbench(pgbench, opts, cluster, round + 1, group.protocol, scenario, target, portOf[target]!, pidOf[target]);
          if (state.interrupted) return 130;
          runs.push(run);
          log(
            `  round ${round + 1}/${opts.rounds}  ${multi ? `${group.protocol.padEnd(8)}  ` : ''}${scenario.padEnd(11)}  ${target.padEnd(10)}  ` +
              `tps ${fmt(run.tps).padStart(9)}  lat ${fmt(run.latencyMs, 3).padStart(7)} ms  failed ${String(run.failed ?? 'n/a').padStart(3)}  ` +
              `proxy cpu ${run.proxyCpuPct === undefined ? '   -' : fmt(run.proxyCpuPct, 0).padStart(3) + '%'}  host cpu ${fmt(run.hostCpuPct, 0)}%` +
              (run.ok ? '' : `\n    FAILED: ${run.problem}`),
          );
        }
      }
    }
  }

  // --- report: a table and ratios per group ---
  interface GroupReport {
    group: Group;
    summary: Summary[];
    ratios: Record<string, { switchyard_vs_direct: number | null; switchyard_vs_pgbouncer: number | null; pgbouncer_vs_direct: number | null; mirror_vs_switchyard: number | null }>;
  }
  const reports: GroupReport[] = [];
  log(`\nresults: median of ${opts.rounds} round(s); ${cores} cores shared by pgbench, PostgreSQL and the proxy; pool mode ${opts.mode}`);
  for (const group of groups) {
    const summary = summarize(runs, group.protocol, opts.scenarios, group.targets);
    const get = (s: Scenario, t: Target): number | undefined => summary.find((x) => x.scenario === s && x.target === t)?.tpsMedian;
    if (multi) {
      log(`\n-M ${group.protocol}: ${group.targets.join(', ')}${group.skipReason && pgbouncerInstalled ? ' (PgBouncer skipped: it cannot do -M prepared in transaction mode)' : ''}`);
    }
    const rows: string[][] = [['scenario', 'target', 'TPS (median)', 'avg lat ms', 'failed txns', 'proxy CPU', 'TPS per round']];
    for (const s of summary) {
      rows.push([
        s.scenario,
        s.target,
        fmt(s.tpsMedian),
        fmt(s.latencyMsMedian, 3),
        String(s.failed) + (s.badRuns ? ` (${s.badRuns} bad run${s.badRuns > 1 ? 's' : ''})` : ''),
        s.proxyCpuPctMedian === undefined ? '-' : `${fmt(s.proxyCpuPctMedian, 0)}%`,
        s.tpsRuns.map((x) => fmt(x, 0)).join(' / '),
      ]);
    }
    log(table(rows, [false, false, true, true, true, true, false]));

    log('');
    // PgBouncer columns unless it is left out of this group by design (not installed: n/a, as before)
    const withBouncer = !group.skipReason;
    const withMirror = mirrorGw !== undefined;
    const ratioRows: string[][] = [['scenario', 'switchyard/direct', ...(withBouncer ? ['switchyard/pgbouncer', 'pgbouncer/direct'] : []), ...(withMirror ? ['mirror on/off'] : [])]];
    const num = (a?: number, c?: number): number | null => (a !== undefined && c !== undefined && c > 0 && !Number.isNaN(a) ? a / c : null);
    const ratios: GroupReport['ratios'] = {};
    for (const sc of opts.scenarios) {
      const d = get(sc, 'direct');
      const g = get(sc, 'switchyard');
      const b = get(sc, 'pgbouncer');
      const mi = get(sc, 'mirror');
      ratioRows.push([sc, ratio(g, d), ...(withBouncer ? [ratio(g, b), ratio(b, d)] : []), ...(withMirror ? [ratio(mi, g)] : [])]);
      ratios[sc] = { switchyard_vs_direct: num(g, d), switchyard_vs_pgbouncer: num(g, b), pgbouncer_vs_direct: num(b, d), mirror_vs_switchyard: num(mi, g) };
    }
    log(`TPS ratios (of the medians)${multi ? `, -M ${group.protocol}` : ''}:`);
    log(table(ratioRows, [false, true, true, true, true]));
    reports.push({ group, summary, ratios });
  }
  log('proxy CPU = utime+stime of the proxy process during the pgbench run, in % of one core');
  let mirrorStatus: unknown;
  if (mirrorAdmin !== undefined) {
    // What the mirror did over every run: copies compared, dropped (queue full), and how they compared.
    const res = await fetch(`http://${HOST}:${mirrorAdmin}/api/v1/mirror`, { headers: { authorization: `Bearer ${MIRROR_TOKEN}` } });
    mirrorStatus = await res.json();
    const t = (mirrorStatus as { totals: Record<string, number> }).totals;
    log(`mirror: ${t.mirrored} copies compared (${t.matched} matched, ${t.mismatched} mismatched, ${t.lag} lag, ${t.errors} errors), ${t.dropped} dropped (queue full)`);
  }

  // --- problems ---
  const problems: string[] = [];
  for (const r of runs) if (!r.ok) problems.push(`round ${r.round} ${multi ? `-M ${r.protocol} ` : ''}${r.scenario} ${r.target}: ${r.problem}`);
  const gwLog = gw.log;
  const mirrorLog = mirrorGw?.log;
  const bouncerLog = bouncer ? scanLog(bouncer.log.file) : undefined;
  const serverLog = scanLog(cluster.primary.logFile, serverLogStart);
  const logReports: [string, LogSummary | undefined][] = [
    ['switchyard log (warn and above)', gwLog],
    ['switchyard+mirror log (warn and above)', mirrorLog],
    ['pgbouncer log (WARNING/ERROR)', bouncerLog],
    ['PostgreSQL log (WARNING/ERROR/FATAL)', serverLog],
  ];
  for (const [name, sum] of logReports) {
    if (sum && sum.problems) {
      log(`\n${name}: ${sum.problems} line(s), e.g.:`);
      log(indent(sum.samples.join('\n')));
    }
  }
  for (const h of [gw, mirrorGw, bouncer]) {
    const why = h?.exitInfo();
    if (why) problems.push(`${why} during the benchmark`);
  }
  if (cluster.replicas.length > 0) {
    // An idle server process reports its counts within 10 s (PostgreSQL 15's idle stats flush).
    log('\nwaiting 11 s for the servers to report their transaction counts ...');
    await new Promise((r) => setTimeout(r, 11_000));
    const after = await commitsPerNode(cluster);
    log('\ntransactions committed per node during the runs (pg_stat_database; the primary also ran direct and PgBouncer):');
    log(indent([...after].map(([n, v]) => `${n.padEnd(10)} ${String(v - (commitsBefore.get(n) ?? 0)).padStart(10)}`).join('\n')));
  }
  if (problems.length) {
    log(`\nPROBLEMS (${problems.length}):`);
    for (const p of problems) log(`  - ${p}`);
  } else {
    log('\nall pgbench runs completed without failed transactions');
  }

  if (opts.json) {
    const doc = {
      generated_at: new Date().toISOString(),
      machine: { cores, cpu: os.cpus()[0]?.model, total_mem_bytes: os.totalmem(), node: process.version },
      versions: { pgbench: toolVersion(pgbench), postgres: toolVersion(path.join(pgBin, 'postgres')), pgbouncer: pgbouncerBin ? toolVersion(pgbouncerBin) : null },
      options: { ...opts, json: undefined },
      groups: reports.map(({ group, summary, ratios }) => ({
        protocol: group.protocol,
        mode: opts!.mode,
        targets: group.targets,
        pgbouncer_skipped: group.skipReason && pgbouncerInstalled ? group.skipReason : null,
        pgbench_command: Object.fromEntries(opts!.scenarios.map((s) => [s, command(group.protocol, s)])),
        summary: summary.map((s) => ({ ...s, tpsRuns: s.tpsRuns.map((x) => (Number.isNaN(x) ? null : x)) })),
        ratios,
      })),
      runs,
      mirror: mirrorStatus ?? null,
      logs: Object.fromEntries(logReports.filter(([, s]) => s).map(([n, s]) => [n, { problems: s!.problems, samples: s!.samples }])),
      problems,
    };
    fs.writeFileSync(opts.json, JSON.stringify(doc, null, 2) + '\n');
    log(`\nresults written to ${opts.json}`);
  }
  return problems.length ? 1 : 0;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (e) {
  if (!state.interrupted) log(`\nerror: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  exitCode = state.interrupted ? 130 : 1;
}
if (!state.interrupted) {
  if (state.dir) log('\ncleaning up ...');
  await cleanup();
  process.exit(exitCode);
}
