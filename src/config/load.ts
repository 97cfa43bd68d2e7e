// Turns YAML text plus SWITCHYARD_* environment overrides into a validated Config, collecting every problem at once.
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import * as z from 'zod';
import type { AuthMethod, Config, NodeConfig } from './types.js';
import { AUTH_METHODS, allKeyPaths, configSchema, keysAt, schemaAt, type ParsedConfig } from './schema.js';

export interface ConfigProblem {
  /** Dotted path such as 'pool.size', 'replicas[1].port', 'auth.users[0]'; '' for the root; 'env NAME' for a bad variable. */
  path: string;
  message: string;
}

export type LoadResult =
  | { ok: true; config: Config; warnings: ConfigProblem[] }
  | { ok: false; problems: ConfigProblem[] };

export type DeepPartial<T> = T extends readonly (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

export interface ParseOptions {
  /** Source of SWITCHYARD_* overrides; defaults to process.env. Pass {} to ignore the environment. */
  env?: NodeJS.ProcessEnv;
  /** Directory relative file paths resolve against; defaults to the directory of fileName, else the cwd. */
  baseDir?: string;
  fileName?: string;
}

export const ENV_PREFIX = 'SWITCHYARD_';
/** SWITCHYARD_* variables that are not overrides (the CLI reads SWITCHYARD_CONFIG as the config file path). */
/** SWITCHYARD_* variables with other meanings: the config file path, where the harness finds PostgreSQL and keeps its data, test logging. */
export const ENV_NOT_OVERRIDES: ReadonlySet<string> = new Set(['SWITCHYARD_CONFIG', 'SWITCHYARD_PG_BIN', 'SWITCHYARD_PG_TMPDIR', 'SWITCHYARD_TEST_LOG']);

export const REDACTED = '[redacted]';

/** Database names that reach the admin console instead of a server (PgBouncer's name too, for existing tooling). */
export const CONSOLE_DATABASES: readonly string[] = ['switchyard', 'pgbouncer'];

const CLEARTEXT_NEEDS_TLS = 'cleartext passwords are only accepted over TLS; configure listen.tls';

type Seg = string | number;
type Origin = { path: Seg[]; variable: string };

export function parseConfig(yamlText: string, opts: ParseOptions = {}): LoadResult {
  const baseDir = opts.baseDir ?? (opts.fileName ? dirname(resolve(opts.fileName)) : process.cwd());
  const doc = YAML.parseDocument(yamlText);
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.map((e) => ({ path: '', message: yamlErrorMessage(e) })) };
  }
  let data: unknown = doc.toJS();
  // An empty file is an empty mapping, so the report is "primary: is required" rather than a type error.
  if (data === null || data === undefined) data = {};
  const problems: ConfigProblem[] = [];
  const origins: Origin[] = [];
  if (isPlainObject(data)) applyEnv(data, opts.env ?? process.env, problems, origins);
  return validate(data, baseDir, problems, origins);
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadResult {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    return { ok: false, problems: [{ path: '', message: `cannot read config file ${abs}: ${errText(err)}` }] };
  }
  return parseConfig(text, { env, baseDir: dirname(abs), fileName: file });
}

export function formatProblems(problems: ConfigProblem[], fileName?: string): string {
  return problems
    .map((p) => [fileName, p.path, p.message.replace(/\s*\n\s*/g, ' ')].filter((s) => s).join(': '))
    .join('\n');
}

/**
 * A valid config for local use: primary 127.0.0.1:5432 and every default, with overrides merged in
 * (mappings merge, arrays and scalars replace). Runs the same validation as a file, minus the environment.
 */
export function defaultConfig(overrides: DeepPartial<Config> = {}): Config {
  const data = deepMerge({ primary: { host: '127.0.0.1' } }, overrides);
  const r = validate(data, process.cwd(), [], []);
  if (!r.ok) throw new Error(`invalid config:\n${formatProblems(r.problems, 'defaultConfig')}`);
  return r.config;
}

const SECRET_KEYS = new Set(['password', 'scram_verifier', 'md5', 'token']);
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** Deep copy safe to log or serve: secrets by key name, and anything holding a PEM private key, become '[redacted]'. */
export function redactConfig(c: Config): unknown {
  const walk = (v: unknown, key: string | undefined): unknown => {
    if (key !== undefined && SECRET_KEYS.has(key) && v !== undefined) return REDACTED;
    if (typeof v === 'string') return PEM_PRIVATE_KEY.test(v) ? REDACTED : v;
    if (Array.isArray(v)) return v.map((x) => walk(x, undefined));
    if (isPlainObject(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k);
      return out;
    }
    return v;
  };
  return walk(c, undefined);
}

// ---------------------------------------------------------------------------------------------
// Validation

function validate(data: unknown, baseDir: string, problems: ConfigProblem[], origins: Origin[]): LoadResult {
  if (isPlainObject(data)) stripNulls(data);
  const parsed = configSchema.safeParse(data, { error: issueMessage });
  if (!parsed.success) {
    for (const iss of parsed.error.issues) {
      const path = iss.path.filter((s): s is Seg => typeof s !== 'symbol');
      if (iss.code === 'unrecognized_keys') {
        for (const k of iss.keys) problems.push({ path: fmtPath([...path, k]), message: unknownKeyMessage(path, k) });
      } else {
        problems.push({ path: fmtPath(path), message: iss.message });
      }
    }
  }
  // Run even when the schema failed, on the raw data, so cross-field problems are reported in the same pass.
  if (isPlainObject(data)) crossFieldChecks(data, baseDir, problems);

  const seen = new Set<string>();
  const unique = problems.filter((p) => {
    const k = `${p.path}\0${p.message}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
  if (unique.length > 0 || !parsed.success) return { ok: false, problems: unique.map((p) => withOrigin(p, origins)) };

  const config = toConfig(parsed.data, baseDir);
  return { ok: true, config, warnings: warningsFor(config).map((p) => withOrigin(p, origins)) };
}

function toConfig(p: ParsedConfig, baseDir: string): Config {
  const node = (n: ParsedConfig['primary'], defName: string): NodeConfig => ({
    name: n.name ?? defName,
    host: n.host,
    port: n.port,
    weight: n.weight,
  });
  const { tls, ...listen } = p.listen;
  return {
    listen: {
      ...listen,
      // Resolved once here so later readers do not depend on the process's cwd.
      ...(tls && {
        tls: {
          cert: resolve(baseDir, tls.cert),
          key: resolve(baseDir, tls.key),
          ...(tls.ca !== undefined && { ca: resolve(baseDir, tls.ca) }),
        },
      }),
    },
    admin: p.admin,
    pool: p.pool,
    primary: node(p.primary, 'primary'),
    replicas: p.replicas.map((r, i) => node(r, `replica${i + 1}`)),
    server_tls: {
      mode: p.server_tls.mode,
      ...(p.server_tls.ca !== undefined && { ca: resolve(baseDir, p.server_tls.ca) }),
    },
    auth: p.auth,
    routing: p.routing,
    balancer: p.balancer,
    monitor: monitorLogin(p),
    mirror: p.mirror,
    log: p.log,
  };
}

/** The monitor login, filled in from auth.query or the first configured user with a password when not given. */
function monitorLogin(p: ParsedConfig): Config['monitor'] {
  const m = p.monitor;
  if (m.user !== undefined) {
    const password = m.password ?? p.auth.users.find((u) => u.name === m.user)?.password;
    return { ...m, ...(password !== undefined && { password }) };
  }
  const q = p.auth.query;
  if (q) {
    const password = q.password ?? p.auth.users.find((u) => u.name === q.user)?.password;
    return { ...m, user: q.user, ...(password !== undefined && { password }) };
  }
  const u = p.auth.users.find((x) => x.password !== undefined);
  return u ? { ...m, user: u.name, password: u.password! } : m;
}

function warningsFor(c: Config): ConfigProblem[] {
  const w: ConfigProblem[] = [];
  if (c.pool.size > c.pool.max_db_connections) {
    w.push({
      path: 'pool.size',
      message: `pool.size (${c.pool.size}) is larger than pool.max_db_connections (${c.pool.max_db_connections}); a database never gets more than ${c.pool.max_db_connections} server connections`,
    });
  }
  if (c.replicas.length > 0 && c.routing.read_write_split && c.monitor.user === undefined) {
    w.push({
      path: 'monitor.user',
      message:
        'no login for the background checks of the nodes (monitor.user, auth.query or a user with a password): replicas are never known to be caught up, so read-your-writes sends reads after a write to the primary, and dead replicas are found only when a lease fails',
    });
  }
  if ((c.balancer.max_replica_lag_ms > 0 || c.balancer.max_replica_lag_bytes > 0) && c.monitor.user === undefined) {
    w.push({
      path: c.balancer.max_replica_lag_ms > 0 ? 'balancer.max_replica_lag_ms' : 'balancer.max_replica_lag_bytes',
      message: 'replica lag is measured by the background checks, which have no login (monitor.user, auth.query or a user with a password): the lag limit is not applied',
    });
  }
  c.admin.users.forEach((u, i) => {
    if (!c.auth.query && !c.auth.users.some((x) => x.name === u)) {
      w.push({ path: `admin.users[${i}]`, message: `user '${u}' is not in auth.users and there is no auth.query: it cannot log in to the admin console` });
    }
  });
  for (const db of CONSOLE_DATABASES) {
    if (Object.hasOwn(c.pool.databases, db)) {
      w.push({ path: `pool.databases.${db}`, message: `database '${db}' is the admin console's: no pool is made for it, so this entry has no effect` });
    }
  }
  if (c.mirror.enabled && c.pool.mode === 'session') {
    w.push({ path: 'mirror.enabled', message: "mirroring copies statements of transaction-pooled clients only; with pool.mode 'session' nothing is copied" });
  }
  if (c.mirror.enabled && c.mirror.target === 'replicas' && c.replicas.length === 0) {
    w.push({ path: 'mirror.target', message: "mirroring to 'replicas' with no replicas configured: every copy is dropped (no_target) until one is added" });
  }
  if (c.mirror.enabled && c.mirror.target === 'replicas' && c.monitor.user === undefined) {
    w.push({ path: 'mirror.target', message: 'without a monitor login (monitor.user, auth.query or a user with a password) differences caused by replication lag cannot be told apart and count as mismatches' });
  }
  if (c.server_tls.mode === 'verify-full' && c.server_tls.ca === undefined) {
    w.push({
      path: 'server_tls.ca',
      message: "server_tls.mode is 'verify-full' without ca; server certificates are checked against the system root CAs",
    });
  }
  return w;
}

/** Rules that span fields or touch the file system; written defensively because the schema may have failed. */
function crossFieldChecks(data: Record<string, unknown>, baseDir: string, problems: ConfigProblem[]): void {
  const add = (path: Seg[], message: string): void => void problems.push({ path: fmtPath(path), message });

  // Node names: the primary comes first, so a clash is always reported at the replica.
  const names = new Map<string, string>();
  const primary = data.primary;
  if (isPlainObject(primary)) {
    names.set(typeof primary.name === 'string' ? primary.name : 'primary', 'primary');
  }
  if (Array.isArray(data.replicas)) {
    data.replicas.forEach((r, i) => {
      if (!isPlainObject(r) || (r.name !== undefined && typeof r.name !== 'string')) return;
      const name = typeof r.name === 'string' ? r.name : `replica${i + 1}`;
      const prev = names.get(name);
      if (prev !== undefined) add(['replicas', i, 'name'], `duplicate node name '${name}' (already used by ${prev})`);
      else names.set(name, fmtPath(['replicas', i]));
    });
  }

  const listen = data.listen;
  const hasTls = isPlainObject(listen) && listen.tls !== undefined;
  const auth = isPlainObject(data.auth) ? data.auth : {};
  const defaultMethod = auth.method === undefined ? 'scram-sha-256' : asMethod(auth.method);
  const hasQuery = auth.query !== undefined;
  if (!hasTls && defaultMethod === 'cleartext') add(['auth', 'method'], CLEARTEXT_NEEDS_TLS);

  if (Array.isArray(auth.users)) {
    const userNames = new Map<string, number>();
    auth.users.forEach((u, i) => {
      if (!isPlainObject(u)) return;
      const at: Seg[] = ['auth', 'users', i];
      if (typeof u.name === 'string' && u.name !== '') {
        const prev = userNames.get(u.name);
        if (prev !== undefined) add([...at, 'name'], `duplicate user name '${u.name}' (already used by auth.users[${prev}])`);
        else userNames.set(u.name, i);
      }
      const method = u.method === undefined ? defaultMethod : asMethod(u.method);
      if (method === undefined) return; // the schema already reported the bad method
      if (u.method !== undefined && method === 'cleartext' && !hasTls) add([...at, 'method'], CLEARTEXT_NEEDS_TLS);
      const pw = u.password !== undefined;
      const scram = u.scram_verifier !== undefined;
      const md5 = u.md5 !== undefined;
      const who = typeof u.name === 'string' ? `user '${u.name}'` : 'user';
      if (method !== 'trust' && !pw && !scram && !md5) {
        if (!hasQuery) add(at, `${who} has no password, scram_verifier or md5; give one, or set auth.query`);
      } else if (method === 'scram-sha-256' && md5 && !pw && !scram) {
        add(at, 'an md5 hash cannot answer scram-sha-256; give a password or scram_verifier');
      } else if (method === 'md5' && scram && !pw && !md5) {
        // The reverse holds too: a SCRAM verifier cannot produce the md5 hash the client's answer is checked against.
        add(at, 'a scram_verifier cannot answer md5; give a password or md5 hash');
      }
    });
  }

  mirrorChecks(data, add);

  const fileChecks: Seg[][] = [
    ['listen', 'tls', 'cert'],
    ['listen', 'tls', 'key'],
    ['listen', 'tls', 'ca'],
    ['server_tls', 'ca'],
  ];
  for (const path of fileChecks) {
    const v = getPath(data, path);
    if (typeof v !== 'string' || v === '') continue;
    const msg = fileProblem(resolve(baseDir, v));
    if (msg) add(path, msg);
  }
}

/** A mirror must never take the primary's writes twice, nor send writes to a standby. */
function mirrorChecks(data: Record<string, unknown>, add: (path: Seg[], message: string) => void): void {
  const mirror = data.mirror;
  if (!isPlainObject(mirror)) return;
  const target = mirror.target ?? 'replicas';
  if (mirror.statements === 'all' && target === 'replicas') {
    add(['mirror', 'statements'], "'all' copies writes, which replicas refuse: use 'reads' with target 'replicas', or give the target server's host and port");
  }
  // Reads may be copied to the primary itself (to measure the cost of mirroring); writes never.
  if (mirror.statements !== 'all' || !isPlainObject(target) || !isPlainObject(data.primary)) return;
  const port = (v: unknown) => (v === undefined ? 5432 : v);
  if (target.host === data.primary.host && port(target.port) === port(data.primary.port)) {
    add(['mirror', 'target'], "is the primary itself: with statements 'all' every copied write would run there twice; give another server, or copy only reads");
  }
}

function fileProblem(abs: string): string | undefined {
  try {
    if (!statSync(abs).isFile()) return `not a file: ${abs}`;
    accessSync(abs, fsConstants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return `file not found: ${abs}`;
    return `cannot read ${abs}: ${errText(err)}`;
  }
}

function asMethod(v: unknown): AuthMethod | undefined {
  return (AUTH_METHODS as readonly unknown[]).includes(v) ? (v as AuthMethod) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Messages

/** Per-parse error map: short messages in the "expected number, got string" style. */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  // Never echo what was written under a secret's key: the message ends up in logs.
  const last = iss.path?.[iss.path.length - 1];
  const secret = typeof last === 'string' && SECRET_KEYS.has(last);
  const got = (v: unknown): string => (secret ? describe(v).split(' ')[0]! : describe(v));
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return 'is required';
      if (iss.expected === 'int') return `expected an integer, got ${got(iss.input)}`;
      return `expected ${iss.expected}, got ${got(iss.input)}`;
    }
    case 'invalid_value':
      return `expected one of ${iss.values.map((v) => `'${String(v)}'`).join(', ')}; got ${got(iss.input)}`;
    case 'too_small': {
      if (iss.origin === 'string') {
        return Number(iss.minimum) <= 1 ? 'must not be empty' : `must be at least ${iss.minimum} characters`;
      }
      return `must be ${iss.inclusive === false ? '>' : '>='} ${iss.minimum}`;
    }
    case 'too_big':
      return `must be ${iss.inclusive === false ? '<' : '<='} ${iss.maximum}`;
    default:
      return undefined;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (typeof v === 'string') return `string '${v.length > 40 ? `${v.slice(0, 40)}…` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v;
}

function unknownKeyMessage(parent: Seg[], key: string): string {
  return `unknown key '${key}'${suggest(parent, key)}`;
}

/** "; did you mean 'size'?" for a near miss among the siblings, else the key's proper place if it exists elsewhere. */
function suggest(parent: Seg[], key: string): string {
  const siblings = keysAt(parent) ?? [];
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const s of siblings) {
    const d = s === lower ? 0 : editDistance(lower, s);
    if (d < bestD) [best, bestD] = [s, d];
  }
  if (best !== undefined && bestD <= (lower.length <= 4 ? 1 : 2)) return `; did you mean '${best}'?`;
  const elsewhere = allKeyPaths()
    .filter((k) => k.key === lower)
    .map((k) => fmtPath([...k.path, k.key]));
  if (elsewhere.length === 1) return `; did you mean '${elsewhere[0]}'?`;
  if (elsewhere.length > 1 && elsewhere.length <= 4) return `; it belongs under one of ${elsewhere.map((p) => `'${p}'`).join(', ')}`;
  return '';
}

/** Optimal-string-alignment distance: a swapped pair of letters ('prot' for 'port') counts as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

function yamlErrorMessage(e: YAML.YAMLError): string {
  // The library appends " at line L, column C:" plus a source excerpt; keep one line and our own position text.
  const text = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?\s*$/, '');
  const pos = e.linePos?.[0];
  return pos ? `YAML syntax error at line ${pos.line}, column ${pos.col}: ${text}` : `YAML syntax error: ${text}`;
}

/** Tags a problem caused by an environment variable with that variable, since the file will not show it. */
function withOrigin(p: ConfigProblem, origins: Origin[]): ConfigProblem {
  if (p.path.startsWith('env ')) return p;
  let best: Origin | undefined;
  for (const o of origins) {
    const op = fmtPath(o.path);
    const covers = op === '' || p.path === op || p.path.startsWith(`${op}.`) || p.path.startsWith(`${op}[`);
    if (covers && (!best || o.path.length > best.path.length)) best = o;
  }
  return best ? { path: p.path, message: `${p.message} (set by env ${best.variable})` } : p;
}

// ---------------------------------------------------------------------------------------------
// Environment overrides

function applyEnv(data: Record<string, unknown>, env: NodeJS.ProcessEnv, problems: ConfigProblem[], origins: Origin[]): void {
  const vars = Object.entries(env)
    .filter((e): e is [string, string] => e[0].startsWith(ENV_PREFIX) && !ENV_NOT_OVERRIDES.has(e[0]))
    // Empty values are skipped: deploy tools often define variables they leave blank.
    .filter(([, v]) => typeof v === 'string' && v !== '')
    .map(([name, raw]) => ({ name, raw, segs: name.slice(ENV_PREFIX.length).split('__') }))
    // Shallow first, so SWITCHYARD_REPLICAS sets the list before SWITCHYARD_REPLICAS__0__HOST edits it.
    .sort((a, b) => a.segs.length - b.segs.length || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  for (const { name, raw, segs } of vars) {
    const at = `env ${name}`;
    const path: Seg[] = [];
    let bad: string | undefined;
    for (const seg of segs) {
      const keys = keysAt(path);
      const here = schemaAt(path);
      if (keys) {
        const key = seg.toLowerCase();
        if (!keys.includes(key)) {
          const where = path.length ? ` in ${fmtPath(path)}` : '';
          bad = `unknown key '${key}'${where}${suggest(path, key)}`;
          break;
        }
        path.push(key);
      } else if (here instanceof z.ZodArray) {
        if (!/^\d+$/.test(seg)) {
          bad = `${fmtPath(path)} is a list; address an entry by index, e.g. ${ENV_PREFIX}${segs.slice(0, path.length).join('__')}__0__...`;
          break;
        }
        path.push(Number(seg));
      } else {
        bad = `${fmtPath(path)} has no keys below it`;
        break;
      }
    }
    if (bad === undefined && path.length === 0) bad = 'names no setting';
    if (bad !== undefined) {
      problems.push({ path: at, message: bad });
      continue;
    }
    // String settings take the text as is, so a password like "123" or "a: b" is not turned into a number or mapping.
    const leaf = schemaAt(path);
    const stringy = leaf instanceof z.ZodString || leaf instanceof z.ZodEnum;
    const value = stringy ? raw : parseEnvValue(raw);
    const err = setPath(data, path, value);
    if (err) problems.push({ path: at, message: err });
    else origins.push({ path, variable: name });
  }
}

function parseEnvValue(raw: string): unknown {
  const doc = YAML.parseDocument(raw);
  return doc.errors.length > 0 ? raw : doc.toJS();
}

function setPath(data: Record<string, unknown>, path: Seg[], value: unknown): string | undefined {
  let cur: unknown = data;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    const where = fmtPath(path.slice(0, i)) || 'the root';
    if (typeof seg === 'number') {
      if (!Array.isArray(cur)) return `cannot set ${fmtPath(path)}: ${where} in the file is not a list`;
      if (seg > cur.length) {
        return `cannot set ${fmtPath(path)}: ${where} has ${cur.length} entries; indexes must be consecutive from 0`;
      }
      if (last) cur[seg] = value;
      else cur = cur[seg] ??= typeof path[i + 1] === 'number' ? [] : {};
    } else {
      if (!isPlainObject(cur)) return `cannot set ${fmtPath(path)}: ${where} in the file is not a mapping`;
      if (last) cur[seg] = value;
      else cur = cur[seg] ??= typeof path[i + 1] === 'number' ? [] : {};
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function fmtPath(path: readonly Seg[]): string {
  let s = '';
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s === '' ? seg : `.${seg}`;
  return s;
}

function getPath(data: unknown, path: Seg[]): unknown {
  let cur = data;
  for (const seg of path) {
    if (typeof seg === 'number' ? !Array.isArray(cur) : !isPlainObject(cur)) return undefined;
    cur = (cur as Record<Seg, unknown>)[seg];
  }
  return cur;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A key written with no value (`tls:`) or set to ~ means "not set": drop it so the default applies. */
function stripNulls(o: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(o)) {
    if (v === null) delete o[k];
    else if (isPlainObject(v)) stripNulls(v);
    else if (Array.isArray(v)) for (const x of v) if (isPlainObject(x)) stripNulls(x);
  }
}

function deepMerge(base: Record<string, unknown>, over: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(base);
  if (!isPlainObject(over)) return out;
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k] as Record<string, unknown>, v) : structuredClone(v);
  }
  return out;
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code} ${e.message.replace(/^\w+: /, '')}` : String(e?.message ?? err);
}
