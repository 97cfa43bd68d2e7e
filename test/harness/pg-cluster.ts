// Real-server test harness: throw-away PostgreSQL 15 clusters (a primary plus
// N streaming replicas) on free loopback ports.
//
// Process model
//   * Every server runs as the `postgres` OS user when the test process is root
//     (the current user otherwise). Each postmaster is started through a tiny
//     perl "reaper" (falls back to spawning `postgres` directly when perl is
//     missing): the reaper marks itself PR_SET_CHILD_SUBREAPER, forks+execs
//     `postgres -D <dataDir>`, reports the postmaster pid on fd 3 and reaps
//     everything until no child is left. So when a test SIGKILLs a postmaster,
//     its orphaned backends are re-parented to the reaper and reaped instead of
//     becoming zombies (PID 1 in some sandboxes never reaps), and "the reaper
//     exited" means "every process of that server is gone".
//   * Cleanup is layered: destroy() (normal path); an async 'beforeExit' hook
//     (test forgot destroy()); SIGINT/SIGTERM handlers (only when nobody else
//     handles those signals) that clean up and exit 130/143; a synchronous
//     'exit' hook (SIGKILL to every postmaster + children, rmSync of temp dirs);
//     and per cluster a detached watchdog process that outlives a SIGKILLed test
//     process, kills whatever is left (pid file + /proc scan for postgres
//     processes whose cwd is inside the cluster dir) and removes the temp dir.
//
// Topology changes
//   * addReplica() clones one more replica of the current primary at runtime;
//     promote() turns a replica into the primary. Every server the harness ever
//     created stays in the cleanup list until destroy(), whatever its role.
//   * A replica streams from the server it was cloned from (its `upstream`) for
//     its whole life: promote() does not re-point the other replicas, so those
//     that followed the old primary keep following it (and stop receiving WAL
//     once the test stops it). Only replicas of the current primary take part
//     in waitStreaming() and in the streaming wait of start().

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestCerts } from './tls.js';

const HOST = '127.0.0.1';
const PG_MAJOR = 15;
const PIDFILE = '.harness-pids';

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

export interface PgNode {
  name: string;
  /**
   * 'former-primary': was the primary until promote() made another node the
   * primary; left running, in standalone read-write mode.
   */
  role: 'primary' | 'replica' | 'former-primary';
  host: string;
  port: number;
  dataDir: string;
  /** <dataDir>/server.log (stdout+stderr of the server). */
  readonly logFile: string;
  /** postmaster pid while running */
  readonly pid: number | undefined;
  url(opts?: { user?: string; password?: string; database?: string }): string;
}

export interface PgClusterOptions {
  /** number of streaming replicas (default 0) */
  replicas?: number;
  /**
   * Parent directory for the data directories (<dir>/primary, <dir>/replica1, ...).
   * Kept on destroy(); an existing <dir>/primary is reused (replicas are always
   * re-cloned). Default: a fresh mkdtemp under tempBase() (/dev/shm when usable,
   * else os.tmpdir(); override with $SWITCHYARD_PG_TMPDIR), removed on destroy/exit.
   */
  dir?: string;
  superuser?: string;
  superuserPassword?: string;
  /** ssl=on on every node with a cert from tls.ts signed by a generated CA */
  ssl?: boolean;
  /** extra postgresql.conf settings (applied after the harness defaults) */
  conf?: Record<string, string | number | boolean>;
  /** accepted for compatibility; server logs always go to <dataDir>/server.log */
  log?: boolean;
}

export interface PgCluster {
  /** the current primary (changes on promote()) */
  primary: PgNode;
  /** every node with role 'replica', including those still following a former primary */
  replicas: PgNode[];
  /** every server of the cluster in creation order (the first primary first), former primaries included */
  nodes: PgNode[];
  dir: string;
  superuser: string;
  superuserPassword: string;
  tls?: { caFile: string; certFile: string; keyFile: string; caPem: string };
  query(sql: string, node?: PgNode): Promise<string>;
  stop(node: PgNode, mode?: 'fast' | 'immediate'): Promise<void>;
  kill(node: PgNode): Promise<void>;
  pause(node: PgNode): void;
  resume(node: PgNode): void;
  start(node: PgNode): Promise<void>;
  /** wait until every running replica of the current primary streams from it */
  waitStreaming(timeoutMs?: number): Promise<void>;
  /**
   * Clone one more replica of the current primary (named replica<N>, N one more
   * than any replica number handed out so far) on a free port; resolves once it
   * is ready and streaming, and only then is it in `replicas` and `nodes`.
   */
  addReplica(): Promise<PgNode>;
  /**
   * Promote a running replica: pg_promote() on it, then wait until it has left
   * recovery. It becomes `primary` and leaves `replicas`; the old primary keeps
   * running untouched with role 'former-primary' (still in `nodes`, stopped by
   * destroy()). The other replicas are not re-pointed: they keep following the
   * server they followed before.
   */
  promote(node: PgNode): Promise<void>;
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Environment discovery
// ---------------------------------------------------------------------------

const PG_TOOLS = ['initdb', 'postgres', 'pg_basebackup', 'pg_isready', 'psql'];
let pgBinCache: string | null | undefined;

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function pgMajor(binDir: string): number | null {
  try {
    const out = execFileSync(path.join(binDir, 'postgres'), ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const m = /(\d+)(?:\.\d+)?/.exec(out.replace(/^[^\d]*/, ''));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Directory holding initdb/postgres/... of PostgreSQL 15 (>= 15 when found via pg_config), or null. */
export function findPgBin(): string | null {
  if (pgBinCache !== undefined) return pgBinCache;
  const hasAll = (dir: string): boolean => PG_TOOLS.every((t) => isExecutable(path.join(dir, t)));
  // SWITCHYARD_PG_BIN names the directory outright (also how a test simulates missing binaries).
  const forced = process.env.SWITCHYARD_PG_BIN;
  if (forced !== undefined) {
    pgBinCache = hasAll(forced) && (pgMajor(forced) ?? 0) >= PG_MAJOR ? forced : null;
    return pgBinCache;
  }
  const candidates: string[] = [`/usr/lib/postgresql/${PG_MAJOR}/bin`];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
  } catch {
    // no pg_config on PATH
  }
  pgBinCache = null;
  for (const dir of candidates) {
    if (!dir || !hasAll(dir)) continue;
    const major = pgMajor(dir);
    if (major !== null && major >= PG_MAJOR) {
      pgBinCache = dir;
      break;
    }
  }
  return pgBinCache;
}

interface Owner {
  uid: number;
  gid: number;
}

let ownerCache: Owner | null | undefined;
/** The user servers run as: `postgres` when we are root, else undefined (= ourselves). */
function serverOwner(): Owner | undefined {
  if (ownerCache !== undefined) return ownerCache ?? undefined;
  ownerCache = null;
  if (process.getuid?.() === 0) {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('bad id output');
      ownerCache = { uid, gid };
    } catch (e) {
      throw new Error(`running as root, but the "postgres" OS user could not be looked up: ${(e as Error).message}`);
    }
  }
  return ownerCache ?? undefined;
}

let perlCache: string | null | undefined;
function findPerl(): string | null {
  if (perlCache !== undefined) return perlCache;
  perlCache = null;
  for (const cand of ['/usr/bin/perl', 'perl']) {
    try {
      execFileSync(cand, ['-e', 'exit 0'], { stdio: 'ignore' });
      perlCache = cand;
      break;
    } catch {
      // next
    }
  }
  return perlCache;
}

// Subreaper wrapper: argv = command to run. Writes the child's pid to fd 3.
const REAPER_PL = String.raw`
use strict; use POSIX ();
my $nr = eval { local $SIG{__WARN__} = sub {}; require 'syscall.ph'; &SYS_prctl() };
unless ($nr) { require Config; my $a = $Config::Config{archname};
  $nr = $a =~ /^x86_64/ ? 157 : $a =~ /^(aarch64|arm64)/ ? 167 : 0; }
syscall($nr, 36, 1, 0, 0, 0) if $nr;  # PR_SET_CHILD_SUBREAPER
my $pid = fork();
defined $pid or die "fork: $!";
if (!$pid) { POSIX::close(3); exec { $ARGV[0] } @ARGV; print STDERR "exec $ARGV[0]: $!\n"; POSIX::_exit(127); }
if (open(my $fd, '>&=', 3)) { print $fd "$pid\n"; close $fd; }
$SIG{$_} = 'IGNORE' for qw(INT TERM HUP QUIT PIPE);
my $st = 0;
while ((my $w = waitpid(-1, 0)) != -1) { $st = $? if $w == $pid; }
exit($st & 127 ? 128 + ($st & 127) : $st >> 8);
`;

// Watchdog: argv = parentPid dir pidFile removeDir(0|1).
const WATCHDOG_PL = String.raw`
use strict;
my ($parent, $dir, $pidfile, $rm) = @ARGV;
$SIG{TERM} = sub { exit 0 };
$SIG{$_} = 'IGNORE' for qw(INT HUP PIPE QUIT);
select(undef, undef, undef, 0.25) while getppid() == $parent;
$SIG{TERM} = 'IGNORE';
my %names = map { $_ => 1 } qw(postgres postmaster initdb pg_basebackup);
sub ours {
  my $p = shift;
  my $c = readlink("/proc/$p/cwd");
  return 0 unless defined $c && ($c eq $dir || index($c, "$dir/") == 0 || $c eq "$dir (deleted)");
  open(my $f, '<', "/proc/$p/comm") or return 0;
  my $comm = <$f>; close $f; chomp $comm if defined $comm;
  return defined $comm && $names{$comm};
}
if (open(my $f, '<', $pidfile)) {
  while (my $p = <$f>) { chomp $p; kill('KILL', $p) if $p =~ /^\d+$/ && ours($p); }
  close $f;
}
for my $i (1 .. 100) {
  my $n = 0;
  opendir(my $d, '/proc') or last;
  for my $p (readdir $d) { next unless $p =~ /^\d+$/ && $p != $$; if (ours($p)) { kill('KILL', $p); $n++; } }
  closedir $d;
  last unless $n;
  select(undef, undef, undef, 0.05);
}
# release the SysV shared memory segments of the killed servers (shmid is on line 7 of postmaster.pid)
if (opendir(my $d, $dir)) {
  for my $n (readdir $d) {
    next if $n =~ /^\./;
    open(my $f, '<', "$dir/$n/postmaster.pid") or next;
    my @l = <$f>; close $f;
    my (undef, $id) = split(' ', $l[6] // '');
    shmctl($id, 0, 0) if defined $id && $id =~ /^\d+$/;  # IPC_RMID
  }
  closedir $d;
}
if ($rm) { require File::Path; File::Path::remove_tree($dir); } else { unlink $pidfile; }
`;

const WATCHDOG_SH = `
P=$1; D=$2; F=$3; R=$4
trap 'exit 0' TERM
while kill -0 "$P" 2>/dev/null; do sleep 1; done
for p in $(cat "$F" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
for i in 1 2 3; do
  for d in /proc/[0-9]*; do
    case "$(readlink "$d/cwd" 2>/dev/null)" in
      "$D"|"$D"/*) case "$(cat "$d/comm" 2>/dev/null)" in postgres|initdb|pg_basebackup) kill -9 "\${d#/proc/}" 2>/dev/null;; esac;;
    esac
  done
  sleep 1
done
for f in "$D"/*/postmaster.pid; do
  id=$(sed -n 7p "$f" 2>/dev/null | awk '{print $2}')
  [ -n "$id" ] && ipcrm -m "$id" 2>/dev/null
done
if [ "$R" = 1 ]; then rm -rf "$D"; else rm -f "$F"; fi
`;

/**
 * Where temp clusters go: $SWITCHYARD_PG_TMPDIR if set; else /dev/shm when it is a
 * writable tmpfs with >= 2 GiB free (initdb/pg_basebackup are 3-10x faster there
 * than on a disk-backed /tmp); else os.tmpdir().
 */
export function tempBase(): string {
  const env = process.env.SWITCHYARD_PG_TMPDIR;
  if (env) return env;
  try {
    const st = fs.statfsSync('/dev/shm');
    const TMPFS_MAGIC = 0x01021994;
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    if (st.type === TMPFS_MAGIC && st.bavail * st.bsize >= 2 * 1024 ** 3) return '/dev/shm';
  } catch {
    // no usable /dev/shm
  }
  return os.tmpdir();
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Keep the event loop alive while `p` is pending (server child processes are unref'd). */
function hold<T>(p: Promise<T>): Promise<T> {
  const t = setInterval(() => {}, 1 << 30);
  return p.finally(() => clearInterval(t));
}

/** Resolves true if `p` settles within ms, false otherwise. */
function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve(true);
      },
      () => {
        clearTimeout(t);
        resolve(true);
      },
    );
  });
}

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, ...extra };
}

interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
}

function readStat(pid: number): ProcInfo | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0] ?? '?', ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

function procTable(): ProcInfo[] {
  const out: ProcInfo[] = [];
  let ents: string[];
  try {
    ents = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of ents) {
    if (!/^\d+$/.test(e)) continue;
    const info = readStat(Number(e));
    if (info) out.push(info);
  }
  return out;
}

/** All (transitive) child pids of `root`, found via /proc/<pid>/stat ppid. */
function descendants(root: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const p of procTable()) {
    const list = byParent.get(p.ppid);
    if (list) list.push(p.pid);
    else byParent.set(p.ppid, [p.pid]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const kids = byParent.get(queue.shift()!) ?? [];
    for (const k of kids) {
      out.push(k);
      queue.push(k);
    }
  }
  return out;
}

function isAlive(pid: number): boolean {
  const s = readStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

const usedPorts = new Set<number>();
/** A loopback port nothing listens on now, never handed out twice by this process. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, HOST, () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('could not find a free port');
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}

async function waitPortFree(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await portIsFree(port))) {
    if (Date.now() > deadline) throw new Error(`port ${port} still in use after ${timeoutMs} ms`);
    await sleep(25);
  }
}

function confValue(v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (typeof v === 'number') return String(v);
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function conninfoValue(v: string | number): string {
  return `'${String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---------------------------------------------------------------------------
// Global cleanup registry
// ---------------------------------------------------------------------------

const live = new Set<Cluster>();
let hooksInstalled = false;
let beforeExitBusy = false;
let terminating = false;
const SIGNAL_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };
const installedSignalHandlers = new Map<NodeJS.Signals, () => void>();

function exitHook(): void {
  for (const c of live) c.killSync();
}

function beforeExitHook(): void {
  if (beforeExitBusy || live.size === 0) return;
  beforeExitBusy = true;
  void hold(Promise.allSettled([...live].map((c) => c.destroy()))).finally(() => {
    beforeExitBusy = false;
  });
}

function onSignal(sig: NodeJS.Signals): void {
  const code = SIGNAL_CODES[sig] ?? 1;
  // Somebody else (e.g. a test runner) listens as well: they decide whether and
  // how to exit; our 'exit' hook still kills the servers when they do.
  if (process.listenerCount(sig) > 1) return;
  if (terminating) process.exit(code);
  terminating = true;
  const force = setTimeout(() => process.exit(code), 8000);
  void Promise.allSettled([...live].map((c) => c.destroy('immediate', 2000))).finally(() => {
    clearTimeout(force);
    process.exit(code);
  });
}

function updateHooks(): void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', exitHook);
    process.on('beforeExit', beforeExitHook);
  }
  for (const sig of Object.keys(SIGNAL_CODES) as NodeJS.Signals[]) {
    const mine = installedSignalHandlers.get(sig);
    if (live.size > 0 && !mine && process.listenerCount(sig) === 0) {
      const h = (): void => onSignal(sig);
      installedSignalHandlers.set(sig, h);
      process.on(sig, h);
    } else if (live.size === 0 && mine) {
      process.removeListener(sig, mine);
      installedSignalHandlers.delete(sig);
    }
  }
}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

class Node implements PgNode {
  readonly host = HOST;
  readonly logFile: string;
  proc: ChildProcess | undefined;
  pmPid: number | undefined;
  exited: Promise<void> = Promise.resolve();
  paused = false;
  /** truncate server.log on the next start (fresh initdb / base backup) */
  freshLog = true;
  /** the server a replica streams from (its primary_conninfo); undefined unless role is 'replica' */
  upstream: Node | undefined;
  /** being built by addReplica(): cleaned up like any node, but not yet in `nodes` */
  pending = false;

  constructor(
    private readonly cluster: Cluster,
    readonly name: string,
    public role: PgNode['role'],
    readonly port: number,
    readonly dataDir: string,
  ) {
    this.logFile = path.join(dataDir, 'server.log');
  }

  get pid(): number | undefined {
    return this.pmPid;
  }

  url(opts: { user?: string; password?: string; database?: string } = {}): string {
    const user = opts.user ?? this.cluster.superuser;
    const password = opts.password ?? (user === this.cluster.superuser ? this.cluster.superuserPassword : undefined);
    const auth = encodeURIComponent(user) + (password !== undefined ? ':' + encodeURIComponent(password) : '');
    return `postgres://${auth}@${this.host}:${this.port}/${encodeURIComponent(opts.database ?? 'postgres')}`;
  }
}

class Cluster implements PgCluster {
  readonly dir: string;
  readonly ownsDir: boolean;
  readonly superuser: string;
  readonly superuserPassword: string;
  tls?: { caFile: string; certFile: string; keyFile: string; caPem: string };
  primary!: Node;
  replicas: Node[] = [];
  /** every server ever created, in creation order: what cleanup walks (pending ones included) */
  private readonly servers: Node[] = [];
  /** highest replica number handed out; names are never reused, even after a failed addReplica() */
  private lastReplicaNo = 0;
  private readonly owner: Owner | undefined;
  private readonly perl: string | null;
  private readonly helpers = new Set<ChildProcess>();
  private watchdog: ChildProcess | undefined;
  private watchdogExited: Promise<void> = Promise.resolve();
  private destroying: Promise<void> | undefined;
  private destroyed = false;

  constructor(
    private readonly bin: string,
    private readonly opts: PgClusterOptions,
  ) {
    this.owner = serverOwner();
    this.perl = findPerl();
    this.superuser = opts.superuser ?? 'postgres';
    this.superuserPassword = opts.superuserPassword ?? 'postgres';
    if (opts.dir) {
      this.dir = path.resolve(opts.dir);
      this.ownsDir = false;
      if (!fs.existsSync(this.dir)) {
        fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
        if (this.owner) fs.chownSync(this.dir, this.owner.uid, this.owner.gid);
      }
      this.dir = fs.realpathSync(this.dir);
    } else {
      this.dir = fs.realpathSync(fs.mkdtempSync(path.join(tempBase(), 'switchyard-pg-')));
      this.ownsDir = true;
      if (this.owner) fs.chownSync(this.dir, this.owner.uid, this.owner.gid);
    }
  }

  get nodes(): Node[] {
    return this.servers.filter((n) => !n.pending);
  }

  private get pidFile(): string {
    return path.join(this.dir, PIDFILE);
  }

  // ----- setup -----

  async init(): Promise<void> {
    this.startWatchdog();
    const o = this.opts;
    if (o.ssl) {
      const certs = makeTestCerts(path.join(this.dir, 'tls'), { owner: this.owner });
      this.tls = { caFile: certs.caFile, certFile: certs.certFile, keyFile: certs.keyFile, caPem: certs.caPem };
    }
    const nReplicas = o.replicas ?? 0;
    this.primary = new Node(this, 'primary', 'primary', await freePort(), path.join(this.dir, 'primary'));
    this.servers.push(this.primary);
    for (let i = 1; i <= nReplicas; i++) {
      const name = `replica${++this.lastReplicaNo}`;
      const r = new Node(this, name, 'replica', await freePort(), path.join(this.dir, name));
      r.upstream = this.primary;
      this.replicas.push(r);
      this.servers.push(r);
    }

    await this.initPrimary(this.primary);
    await this.spawnServer(this.primary);
    await this.waitReady(this.primary);

    await Promise.all(
      this.replicas.map(async (r) => {
        await this.cloneReplica(r);
        await this.spawnServer(r);
        await this.waitReady(r);
      }),
    );
    if (this.replicas.length) await this.waitStreaming();
  }

  addReplica(): Promise<PgNode> {
    return hold(this.doAddReplica());
  }

  private async doAddReplica(): Promise<Node> {
    if (this.destroyed) throw new Error('cluster destroyed');
    const upstream = this.primary;
    if (!upstream.proc) throw new Error('addReplica: the primary is not running');
    // the number is taken before the first await, so concurrent calls get distinct names
    const name = `replica${++this.lastReplicaNo}`;
    const port = await freePort();
    const node = new Node(this, name, 'replica', port, path.join(this.dir, name));
    node.upstream = upstream;
    node.pending = true;
    // in the cleanup list before anything runs in its directory
    this.servers.push(node);
    try {
      await this.cloneReplica(node);
      await this.spawnServer(node);
      await this.waitReady(node);
      await this.waitStreamingOf(upstream, [node], 30_000);
    } catch (e) {
      await this.shutdownNode(node, 'immediate', 5000).catch(() => this.killNode(node)).catch(() => {});
      if (!node.proc) {
        this.servers.splice(this.servers.indexOf(node), 1);
        this.releaseShm(node);
        fs.rmSync(node.dataDir, { recursive: true, force: true });
        this.writePidFile();
      }
      throw e;
    }
    node.pending = false;
    this.replicas.push(node);
    return node;
  }

  promote(node: PgNode): Promise<void> {
    return hold(this.doPromote(node));
  }

  private async doPromote(target: PgNode): Promise<void> {
    const node = this.node(target);
    if (node.role !== 'replica' || node.pending) throw new Error(`promote: ${node.name} is not a replica (role ${node.role})`);
    if (!node.proc) throw new Error(`promote: ${node.name} is not running`);
    const promoted = await this.query('SELECT pg_promote(true, 60)', node);
    if (promoted !== 't') throw new Error(`promote: pg_promote() on ${node.name} returned ${promoted}:\n${tail(node.logFile)}`);
    // pg_promote(wait => true) already waited; this confirms from a fresh session
    const deadline = Date.now() + 60_000;
    while ((await this.query('SELECT pg_is_in_recovery()', node)) !== 'f') {
      if (Date.now() > deadline) throw new Error(`promote: ${node.name} still in recovery after 60 s:\n${tail(node.logFile)}`);
      await sleep(50);
    }
    const previous = this.primary;
    previous.role = 'former-primary';
    node.role = 'primary';
    node.upstream = undefined;
    this.primary = node;
    this.replicas.splice(this.replicas.indexOf(node), 1);
    // no primary_conninfo any more, so a restart of the new primary is coherent
    this.writeNodeConfig(node);
  }

  private chown(file: string): void {
    if (this.owner) fs.chownSync(file, this.owner.uid, this.owner.gid);
  }

  private writeOwned(file: string, content: string, mode = 0o600): void {
    fs.writeFileSync(file, content, { mode });
    fs.chmodSync(file, mode);
    this.chown(file);
  }

  private mkNodeDir(dir: string): void {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    this.chown(dir);
  }

  private serverEnv(): NodeJS.ProcessEnv {
    const extra: Record<string, string> = { LC_ALL: 'C', LANG: 'C' };
    if (this.owner) Object.assign(extra, { HOME: this.dir, USER: 'postgres', LOGNAME: 'postgres' });
    return cleanEnv(extra);
  }

  /** Run a PostgreSQL tool as the server user; reject with its stderr. */
  private runTool(tool: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        path.join(this.bin, tool),
        args,
        {
          cwd: this.dir,
          env: this.serverEnv(),
          maxBuffer: 16 << 20,
          ...(this.owner ? { uid: this.owner.uid, gid: this.owner.gid } : {}),
        },
        (err, stdout, stderr) => {
          this.helpers.delete(child);
          if (err) reject(new Error(`${tool} failed: ${String(stderr).trim() || err.message}`));
          else resolve(String(stdout));
        },
      );
      this.helpers.add(child);
    });
  }

  private async initPrimary(node: Node): Promise<void> {
    if (fs.existsSync(path.join(node.dataDir, 'PG_VERSION'))) {
      // user-given dir from a previous run: reuse the data
      this.checkNotRunning(node);
      node.freshLog = false;
    } else {
      if (fs.existsSync(node.dataDir)) fs.rmSync(node.dataDir, { recursive: true, force: true });
      this.mkNodeDir(node.dataDir);
      const pwfile = path.join(this.dir, '.pwfile');
      this.writeOwned(pwfile, this.superuserPassword + '\n');
      try {
        await this.runTool('initdb', [
          '-D', node.dataDir,
          '-U', this.superuser,
          '--auth-local=trust',
          '--auth-host=scram-sha-256',
          '-E', 'UTF8',
          '--locale=C',
          `--pwfile=${pwfile}`,
          '--no-sync',
          '--no-instructions',
        ]);
      } finally {
        fs.rmSync(pwfile, { force: true });
      }
    }
    const conf = path.join(node.dataDir, 'postgresql.conf');
    if (!fs.readFileSync(conf, 'utf8').includes("include = 'switchyard-node.conf'")) {
      fs.appendFileSync(conf, "\n# switchyard test harness\ninclude = 'switchyard.conf'\ninclude = 'switchyard-node.conf'\n");
    }
    this.writeBaseConfig(node);
    this.writeNodeConfig(node);
  }

  private checkNotRunning(node: Node): void {
    const pidFile = path.join(node.dataDir, 'postmaster.pid');
    let pid: number;
    try {
      pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
    } catch {
      return;
    }
    let cwd = '';
    try {
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // not running
    }
    if (pid > 0 && isAlive(pid) && cwd === fs.realpathSync(node.dataDir)) {
      throw new Error(`a postmaster (pid ${pid}) is already running on ${node.dataDir}`);
    }
    this.releaseShm(node); // left behind by a crashed previous run
    fs.rmSync(pidFile, { force: true });
  }

  /** Base backup of node.upstream into node.dataDir, configured to stream from it. */
  private async cloneReplica(node: Node): Promise<void> {
    const upstream = node.upstream;
    if (!upstream) throw new Error(`${node.name}: a replica needs an upstream to clone`);
    if (fs.existsSync(node.dataDir)) fs.rmSync(node.dataDir, { recursive: true, force: true });
    this.mkNodeDir(node.dataDir);
    await this.runTool('pg_basebackup', [
      '-h', HOST,
      '-p', String(upstream.port),
      '-U', this.superuser,
      '-D', node.dataDir,
      '-R',
      '-X', 'stream',
      '-c', 'fast',
      '--no-sync',
      '-w',
    ]);
    // primary_conninfo is managed in switchyard-node.conf (postgresql.auto.conf would override it)
    const auto = path.join(node.dataDir, 'postgresql.auto.conf');
    const kept = fs.readFileSync(auto, 'utf8').split('\n').filter((l) => !/^\s*primary_conninfo\s*=/.test(l));
    fs.writeFileSync(auto, kept.join('\n'));
    node.freshLog = true;
    this.writeBaseConfig(node);
    this.writeNodeConfig(node);
  }

  private writeBaseConfig(node: Node): void {
    const settings: Record<string, string | number | boolean> = {
      listen_addresses: HOST,
      unix_socket_directories: '',
      wal_level: 'replica',
      max_wal_senders: 10,
      max_replication_slots: 10,
      wal_keep_size: '128MB',
      hot_standby: true,
      fsync: false,
      synchronous_commit: false,
      full_page_writes: false,
      shared_buffers: '32MB',
      max_connections: 200,
      logging_collector: false,
      huge_pages: false,
      // DSM segments as files in <dataDir>/pg_dynshmem: a SIGKILLed server cannot leak /dev/shm/PostgreSQL.* files
      dynamic_shared_memory_type: 'mmap',
      wal_retrieve_retry_interval: '200ms',
      log_line_prefix: '%m [%p] %q%u@%d ',
    };
    if (this.tls) {
      Object.assign(settings, { ssl: true, ssl_cert_file: 'server.crt', ssl_key_file: 'server.key' });
      fs.copyFileSync(this.tls.certFile, path.join(node.dataDir, 'server.crt'));
      fs.copyFileSync(this.tls.keyFile, path.join(node.dataDir, 'server.key'));
      for (const f of ['server.crt', 'server.key']) {
        fs.chmodSync(path.join(node.dataDir, f), 0o600);
        this.chown(path.join(node.dataDir, f));
      }
    } else {
      settings.ssl = false;
    }
    Object.assign(settings, this.opts.conf ?? {});
    const lines = Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`);
    this.writeOwned(path.join(node.dataDir, 'switchyard.conf'), lines.join('\n') + '\n');
    this.writeOwned(
      path.join(node.dataDir, 'pg_hba.conf'),
      [
        '# switchyard test harness',
        'local   all          all                   trust',
        'host    replication  all   127.0.0.1/32    trust',
        // md5 accepts both md5-hashed passwords and SCRAM verifiers (SCRAM is used for the latter)
        'host    all          all   127.0.0.1/32    md5',
        '',
      ].join('\n'),
    );
  }

  private writeNodeConfig(node: Node): void {
    const settings: Record<string, string | number | boolean> = { port: node.port, cluster_name: node.name };
    // a replica keeps its upstream across promote(): see "Topology changes" at the top
    if (node.role === 'replica' && node.upstream) {
      settings.primary_conninfo = [
        `host=${HOST}`,
        `port=${node.upstream.port}`,
        `user=${conninfoValue(this.superuser)}`,
        `application_name=${conninfoValue(node.name)}`,
      ].join(' ');
    }
    const lines = Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`);
    this.writeOwned(path.join(node.dataDir, 'switchyard-node.conf'), lines.join('\n') + '\n');
  }

  // ----- processes -----

  private startWatchdog(): void {
    const args = [String(process.pid), this.dir, this.pidFile, this.ownsDir ? '1' : '0'];
    const child = this.perl
      ? spawn(this.perl, ['-e', WATCHDOG_PL, ...args], { detached: true, stdio: 'ignore', cwd: '/' })
      : spawn('/bin/sh', ['-c', WATCHDOG_SH, 'switchyard-watchdog', ...args], { detached: true, stdio: 'ignore', cwd: '/' });
    this.watchdog = child;
    this.watchdogExited = new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    child.unref();
    this.writePidFile();
  }

  private writePidFile(): void {
    const pids = this.servers.map((n) => n.pmPid).filter((p): p is number => p !== undefined);
    try {
      fs.writeFileSync(this.pidFile, pids.join('\n') + '\n');
    } catch {
      // dir already removed
    }
  }

  private async spawnServer(node: Node): Promise<void> {
    if (this.destroyed) throw new Error('cluster destroyed');
    const fd = fs.openSync(node.logFile, node.freshLog ? 'w' : 'a', 0o600);
    node.freshLog = false;
    let child: ChildProcess;
    const postgres = path.join(this.bin, 'postgres');
    const common = {
      cwd: '/',
      env: this.serverEnv(),
      detached: true,
      ...(this.owner ? { uid: this.owner.uid, gid: this.owner.gid } : {}),
    };
    try {
      if (this.owner) fs.fchownSync(fd, this.owner.uid, this.owner.gid);
      child = this.perl
        ? spawn(this.perl, ['-e', REAPER_PL, postgres, '-D', node.dataDir], { ...common, stdio: ['ignore', fd, fd, 'pipe'] })
        : spawn(postgres, ['-D', node.dataDir], { ...common, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    node.proc = child;
    node.paused = false;
    const exited = new Promise<void>((resolve) => {
      const done = (): void => {
        if (node.proc === child) {
          node.proc = undefined;
          node.pmPid = undefined;
          node.paused = false;
          this.writePidFile();
        }
        resolve();
      };
      child.once('exit', done);
      child.once('error', done);
    });
    node.exited = exited;
    child.unref();

    if (this.perl) {
      const pipe = child.stdio[3] as net.Socket;
      const pid = await new Promise<number | undefined>((resolve) => {
        let buf = '';
        pipe.setEncoding('utf8');
        pipe.on('data', (d: string) => {
          buf += d;
          if (buf.includes('\n')) resolve(Number(buf.trim()));
        });
        pipe.once('end', () => resolve(buf.trim() ? Number(buf.trim()) : undefined));
        pipe.once('error', () => resolve(undefined));
        void exited.then(() => resolve(undefined));
      });
      pipe.destroy();
      if (node.proc === child && pid) node.pmPid = pid;
    } else if (node.proc === child) {
      node.pmPid = child.pid;
    }
    this.writePidFile();
    if (node.proc !== child) throw new Error(`${node.name} exited immediately:\n${tail(node.logFile)}`);
  }

  private pgIsReady(node: Node): Promise<boolean> {
    return new Promise((resolve) => {
      execFile(
        path.join(this.bin, 'pg_isready'),
        ['-q', '-h', HOST, '-p', String(node.port), '-U', this.superuser, '-d', 'postgres', '-t', '2'],
        { env: cleanEnv() },
        (err) => resolve(!err),
      );
    });
  }

  private async waitReady(node: Node, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!node.proc) throw new Error(`${node.name} exited during startup:\n${tail(node.logFile)}`);
      if (await this.pgIsReady(node)) return;
      if (Date.now() > deadline) throw new Error(`${node.name} not ready after ${timeoutMs} ms:\n${tail(node.logFile)}`);
      await sleep(40);
    }
  }

  private node(n: PgNode): Node {
    const found = this.servers.find((x) => x === n || x.name === n.name);
    if (!found) throw new Error(`unknown node ${n.name}`);
    return found;
  }

  /** postmaster + all its descendants (postmaster first) */
  private serverPids(node: Node): number[] {
    return node.pmPid ? [node.pmPid, ...descendants(node.pmPid)] : [];
  }

  private async waitGone(node: Node, pids: number[], timeoutMs = 15_000): Promise<void> {
    const ok = await within(node.exited, timeoutMs);
    if (!ok) throw new Error(`${node.name}: server process did not exit within ${timeoutMs} ms`);
    const deadline = Date.now() + timeoutMs;
    while (pids.some(isAlive)) {
      if (Date.now() > deadline) throw new Error(`${node.name}: processes ${pids.filter(isAlive).join(',')} still alive`);
      await sleep(20);
    }
    await waitPortFree(node.port, timeoutMs);
  }

  /**
   * Remove the SysV shared memory segment a crashed (SIGKILLed) postmaster leaves
   * behind (its id is on line 7 of postmaster.pid). IPC_RMID on a still attached
   * segment only takes effect once the last process detached, so this is safe
   * to call right after sending SIGKILL. A later start() simply creates a new one.
   */
  private releaseShm(node: Node): void {
    let shmid: string | undefined;
    try {
      shmid = fs.readFileSync(path.join(node.dataDir, 'postmaster.pid'), 'utf8').split('\n')[6]?.trim().split(/\s+/)[1];
    } catch {
      return;
    }
    if (!shmid || !/^\d+$/.test(shmid)) return;
    const [cmd, args] = this.perl ? [this.perl, ['-e', `shmctl(${shmid}, 0, 0)`]] : ['ipcrm', ['-m', shmid]];
    try {
      execFileSync(cmd, args, { stdio: 'ignore' });
    } catch {
      // already gone / no ipcrm
    }
  }

  private async killNode(node: Node): Promise<void> {
    if (!node.proc) return;
    const pids = this.serverPids(node);
    for (const p of pids) signal(p, 'SIGKILL');
    // a child forked in between: one more sweep
    for (const p of pids.length ? descendants(pids[0]!) : []) signal(p, 'SIGKILL');
    if (!pids.length && node.proc.pid) signal(node.proc.pid, 'SIGKILL');
    node.paused = false;
    await this.waitGone(node, pids);
    this.releaseShm(node);
  }

  private async shutdownNode(node: Node, mode: 'fast' | 'immediate', graceMs: number): Promise<void> {
    if (!node.proc) return;
    const pm = node.pmPid;
    if (pm === undefined) return this.killNode(node);
    const pids = this.serverPids(node);
    signal(pm, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    if (node.paused) this.resumeNode(node);
    if (!(await within(node.exited, graceMs))) return this.killNode(node);
    await this.waitGone(node, pids);
  }

  async shutdownAll(mode: 'fast' | 'immediate', graceMs: number): Promise<void> {
    // replicas and primary in parallel; the postmaster escalates to SIGKILL after graceMs
    await Promise.all(this.servers.map((n) => this.shutdownNode(n, mode, graceMs).catch(() => this.killNode(n))));
  }

  private resumeNode(node: Node): void {
    for (const p of this.serverPids(node)) signal(p, 'SIGCONT');
    node.paused = false;
  }

  /** synchronous last-resort cleanup for process 'exit' */
  killSync(): void {
    for (const h of this.helpers) if (h.pid) signal(h.pid, 'SIGKILL');
    for (const n of this.servers) {
      const pids = this.serverPids(n);
      for (const p of pids) signal(p, 'SIGKILL');
      if (pids.length || fs.existsSync(path.join(n.dataDir, 'postmaster.pid'))) this.releaseShm(n);
    }
    try {
      if (this.ownsDir) fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
      else fs.rmSync(this.pidFile, { force: true });
    } catch {
      // the watchdog retries after we are gone
    }
  }

  // ----- public API -----

  query(sql: string, node?: PgNode): Promise<string> {
    const n = node ? this.node(node) : this.primary;
    return hold(
      new Promise<string>((resolve, reject) => {
        execFile(
          path.join(this.bin, 'psql'),
          ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', HOST, '-p', String(n.port), '-U', this.superuser, '-d', 'postgres', '-c', sql],
          {
            env: cleanEnv({ PGPASSWORD: this.superuserPassword, PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'switchyard-harness' }),
            maxBuffer: 64 << 20,
          },
          (err, stdout, stderr) => {
            if (err) reject(new Error(String(stderr).trim() || err.message));
            else resolve(String(stdout).trim());
          },
        );
      }),
    );
  }

  stop(node: PgNode, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    return hold(this.shutdownNode(this.node(node), mode, 30_000));
  }

  kill(node: PgNode): Promise<void> {
    return hold(this.killNode(this.node(node)));
  }

  pause(node: PgNode): void {
    const n = this.node(node);
    if (!n.pmPid) throw new Error(`${n.name} is not running`);
    signal(n.pmPid, 'SIGSTOP'); // first, so it cannot fork while we stop the children
    for (const p of descendants(n.pmPid)) signal(p, 'SIGSTOP');
    n.paused = true;
  }

  resume(node: PgNode): void {
    const n = this.node(node);
    if (!n.pmPid) throw new Error(`${n.name} is not running`);
    this.resumeNode(n);
  }

  start(node: PgNode): Promise<void> {
    const n = this.node(node);
    return hold(
      (async () => {
        if (!n.proc) {
          this.writeNodeConfig(n); // primary port is stable, but keep node conf authoritative
          await this.spawnServer(n);
        }
        await this.waitReady(n);
        // a replica left following a former primary is only waited for to accept connections
        if (this.followsPrimary(n)) await this.waitStreamingOf(this.primary, [n], 30_000);
      })(),
    );
  }

  waitStreaming(timeoutMs = 30_000): Promise<void> {
    return hold(this.waitStreamingOf(this.primary, this.replicas.filter((r) => r.proc && this.followsPrimary(r)), timeoutMs));
  }

  /** Is n a replica expected to stream from the current primary? */
  private followsPrimary(n: Node): boolean {
    return n.role === 'replica' && n.upstream === this.primary;
  }

  /** Until upstream's pg_stat_replication and each replica's wal receiver report streaming. */
  private async waitStreamingOf(upstream: Node, replicas: Node[], timeoutMs: number): Promise<void> {
    if (!replicas.length) return;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (!upstream.proc) throw new Error(`waitStreaming: ${upstream === this.primary ? 'the primary' : upstream.name} is not running`);
      try {
        const rows = await this.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'", upstream);
        const streaming = new Set(rows.split('\n').filter(Boolean));
        last = [...streaming].join(',') || '(none)';
        const missing = replicas.filter((r) => !streaming.has(r.name));
        if (!missing.length) {
          // and the replica side agrees (guards against a stale walsender of a killed replica)
          const states = await Promise.all(
            replicas.map((r) => this.query('SELECT status FROM pg_stat_wal_receiver', r).catch(() => '')),
          );
          if (states.every((s) => s === 'streaming')) return;
          last += `; receivers: ${states.join(',')}`;
        }
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`replicas ${replicas.map((r) => r.name).join(',')} not streaming after ${timeoutMs} ms (${upstream.name} sees: ${last})`);
      }
      await sleep(100);
    }
  }

  /** fast shutdown, SIGKILL after 5 s; the signal handlers use ('immediate', 2000) */
  destroy(mode: 'fast' | 'immediate' = 'fast', graceMs = 5000): Promise<void> {
    this.destroying ??= hold(this.doDestroy(mode, graceMs));
    return this.destroying;
  }

  private async doDestroy(mode: 'fast' | 'immediate', graceMs: number): Promise<void> {
    this.destroyed = true;
    for (const h of this.helpers) if (h.pid) signal(h.pid, 'SIGKILL');
    await this.shutdownAll(mode, graceMs);
    // nodes killed earlier and never restarted still own a SysV segment
    for (const n of this.servers) if (fs.existsSync(path.join(n.dataDir, 'postmaster.pid'))) this.releaseShm(n);
    if (this.watchdog?.pid) {
      signal(this.watchdog.pid, 'SIGTERM');
      if (!(await within(this.watchdogExited, 3000))) {
        signal(-this.watchdog.pid, 'SIGKILL');
        await within(this.watchdogExited, 3000);
      }
    }
    if (this.ownsDir) fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
    else fs.rmSync(this.pidFile, { force: true });
    live.delete(this);
    updateHooks();
  }
}

/** Start a primary (+ opts.replicas streaming replicas) and wait until all replicas stream. */
export async function startCluster(opts: PgClusterOptions = {}): Promise<PgCluster> {
  const bin = findPgBin();
  if (!bin) throw new Error(`PostgreSQL ${PG_MAJOR} binaries not found (looked in /usr/lib/postgresql/${PG_MAJOR}/bin and pg_config --bindir)`);
  const cluster = new Cluster(bin, opts);
  live.add(cluster);
  updateHooks();
  try {
    await hold(cluster.init());
  } catch (e) {
    await cluster.destroy().catch(() => {});
    throw e;
  }
  return cluster;
}
