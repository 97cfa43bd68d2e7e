// Unit tests for config loading: defaults, every problem with its path, env overrides, files, redaction.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultConfig,
  formatProblems,
  loadConfigFile,
  parseConfig,
  redactConfig,
  type ConfigProblem,
  type LoadResult,
} from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';

const B32 = Buffer.alloc(32, 7).toString('base64');
const VERIFIER = `SCRAM-SHA-256$4096:c2FsdHNhbHQ=$${B32}:${B32}`;
const MD5 = 'md5' + 'ab'.repeat(16);

function ok(r: LoadResult): { config: Config; warnings: ConfigProblem[] } {
  if (!r.ok) assert.fail(`expected ok, got:\n${formatProblems(r.problems)}`);
  return r;
}

function problems(r: LoadResult): ConfigProblem[] {
  if (r.ok) assert.fail('expected problems, got a valid config');
  return r.problems;
}

/** Problems as "path: message" strings, sorted, so a whole set can be compared at once. */
function lines(r: LoadResult): string[] {
  return problems(r)
    .map((p) => `${p.path}: ${p.message}`)
    .sort();
}

function parse(yaml: string, env: NodeJS.ProcessEnv = {}, baseDir?: string): LoadResult {
  return parseConfig(yaml, { env, ...(baseDir && { baseDir }) });
}

/** Asserts exactly one problem at path and returns its message. */
function only(r: LoadResult, path: string): string {
  const ps = problems(r);
  assert.equal(ps.length, 1, formatProblems(ps));
  assert.equal(ps[0]!.path, path);
  return ps[0]!.message;
}

function withTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('minimal file gets every default', () => {
  const { config, warnings } = ok(parse('primary: {host: db1}\n'));
  assert.deepEqual(warnings, []);
  assert.deepEqual(config, {
    listen: { host: '0.0.0.0', port: 6432, max_message_bytes: 64 * 1024 * 1024, login_timeout_ms: 60_000 },
    admin: { host: '127.0.0.1', port: 9432, users: [] },
    pool: {
      mode: 'transaction',
      databases: {},
      users: {},
      size: 20,
      max_db_connections: 100,
      queue_timeout_ms: 5000,
      idle_timeout_ms: 600000,
      lifetime_ms: 3600000,
      connect_timeout_ms: 5000,
      idle_transaction_timeout_ms: 0,
      prepared_statements_cache_size: 100,
    },
    primary: { name: 'primary', host: 'db1', port: 5432, weight: 1 },
    replicas: [],
    server_tls: { mode: 'prefer' },
    auth: {
      method: 'scram-sha-256',
      users: [],
      failed_login_threshold: 5,
      failed_login_window_ms: 60000,
      failed_login_max_delay_ms: 5000,
    },
    routing: { read_write_split: true, consistency: 'read-your-writes', replica_safe_functions: [], cache_size: 10_000 },
    balancer: { strategy: 'round-robin', include_primary: 'when_no_replica', ban_ms: 10_000, max_replica_lag_ms: 0, max_replica_lag_bytes: 0 },
    monitor: { database: 'postgres', interval_ms: 100 },
    mirror: {
      enabled: false,
      target: 'replicas',
      statements: 'reads',
      sample_rate: 1,
      databases: [],
      users: [],
      pool_size: 4,
      queue_size: 1000,
      timeout_ms: 10_000,
      max_events_per_second: 20,
    },
    log: { level: 'info' },
  } satisfies Config);
});

test('replicas, users and auth.query get their defaults', () => {
  const { config } = ok(
    parse(`
primary: {host: db1, name: main}
replicas: [{host: r1}, {host: r2, port: 6000, weight: 0.5, name: east}, {host: r3}]
auth:
  users: [{name: app, password: secret, method: md5}, {name: ops, md5: ${MD5.toUpperCase().replace('MD5', 'md5')}, method: md5}]
  query: {user: lookup}
`),
  );
  assert.deepEqual(config.replicas, [
    { name: 'replica1', host: 'r1', port: 5432, weight: 1 },
    { name: 'east', host: 'r2', port: 6000, weight: 0.5 },
    { name: 'replica3', host: 'r3', port: 5432, weight: 1 },
  ]);
  assert.equal(config.primary.name, 'main');
  assert.deepEqual(config.auth.users, [
    { name: 'app', password: 'secret', method: 'md5' },
    // Stored hashes are compared as text, so they are normalised to lower case.
    { name: 'ops', md5: MD5, method: 'md5' },
  ]);
  assert.deepEqual(config.auth.query, {
    user: 'lookup',
    database: 'postgres',
    sql: 'SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1',
    cache_ttl_ms: 60000,
  });
});

test('an empty value means "use the default"; an empty file still needs a primary', () => {
  assert.equal(ok(parse('primary: {host: db}\nlisten:\nadmin: {token: ~}\n')).config.listen.port, 6432);
  assert.equal(only(parse(''), 'primary'), 'is required');
  assert.equal(only(parse('# nothing\n'), 'primary'), 'is required');
});

test('unknown keys are reported at their path with a hint', () => {
  assert.equal(only(parse('primary: {host: db}\npool: {sise: 3}'), 'pool.sise'), "unknown key 'sise'; did you mean 'size'?");
  assert.equal(only(parse('primary: {host: db}\nreplicas: [{host: a, prot: 1}]'), 'replicas[0].prot'), "unknown key 'prot'; did you mean 'port'?");
  assert.equal(only(parse('primary: {host: db}\nsize: 3'), 'size'), "unknown key 'size'; did you mean 'pool.size'?");
  assert.equal(only(parse('primary: {host: db}\nzzzzzz: 1'), 'zzzzzz'), "unknown key 'zzzzzz'");
});

test('wrong types say what was expected and what was found', () => {
  assert.equal(only(parse('primary: {host: db}\npool: {size: "30"}'), 'pool.size'), "expected number, got string '30'");
  assert.equal(only(parse('primary: {host: db}\npool: {size: 2.5}'), 'pool.size'), 'expected an integer, got number 2.5');
  assert.equal(only(parse('primary: {host: db}\nlisten: 5'), 'listen'), 'expected object, got number 5');
  assert.equal(only(parse('primary: {host: db}\nreplicas: {host: a}'), 'replicas'), 'expected array, got object');
  assert.equal(only(parse('primary: {host: 5}'), 'primary.host'), 'expected string, got number 5');
  assert.equal(only(parse('- a\n- b\n'), ''), 'expected object, got array');
});

test('enums, ranges and required fields', () => {
  assert.equal(only(parse('primary: {host: db}\npool: {mode: statement}'), 'pool.mode'), "expected one of 'session', 'transaction'; got string 'statement'");
  assert.equal(
    only(parse('primary: {host: db}\npool: {users: {app: {mode: statement}}}'), 'pool.users.app.mode'),
    "expected one of 'session', 'transaction'; got string 'statement'",
  );
  assert.equal(
    only(parse('primary: {host: db}\nserver_tls: {mode: full}'), 'server_tls.mode'),
    "expected one of 'disable', 'prefer', 'require', 'verify-full'; got string 'full'",
  );
  assert.equal(only(parse('primary: {host: db}\nlisten: {port: 65536}'), 'listen.port'), 'must be <= 65535');
  assert.equal(only(parse('primary: {host: db, port: 0}'), 'primary.port'), 'must be >= 1');
  assert.equal(only(parse('primary: {host: db}\nlisten: {max_message_bytes: 100}'), 'listen.max_message_bytes'), 'must be >= 1024');
  assert.equal(only(parse('primary: {host: db}\nadmin: {token: short}'), 'admin.token'), 'must be at least 16 characters');
  assert.equal(only(parse('primary: {port: 5432}'), 'primary.host'), 'is required');
  assert.equal(only(parse('primary: {host: ""}'), 'primary.host'), 'must not be empty');
  // 0 is allowed for both ports: ephemeral for listen, "disabled" for admin.
  const { config } = ok(parse('primary: {host: db}\nlisten: {port: 0}\nadmin: {port: 0}'));
  assert.equal(config.listen.port, 0);
  assert.equal(config.admin.port, 0);
});

test('node names must be unique, defaults included', () => {
  assert.deepEqual(lines(parse('primary: {host: db, name: replica1}\nreplicas: [{host: a}, {host: b, name: replica1}]')), [
    "replicas[0].name: duplicate node name 'replica1' (already used by primary)",
    "replicas[1].name: duplicate node name 'replica1' (already used by primary)",
  ]);
  assert.equal(
    only(parse('primary: {host: db}\nreplicas: [{host: a, name: x}, {host: b, name: x}]'), 'replicas[1].name'),
    "duplicate node name 'x' (already used by replicas[0])",
  );
});

test('user credential rules', () => {
  const p = (users: string, extra = ''): LoadResult => parse(`primary: {host: db}\nauth:\n  users: ${users}\n${extra}`);
  assert.equal(only(p('[{name: a, password: x}, {name: a, password: y}]'), 'auth.users[1].name'), "duplicate user name 'a' (already used by auth.users[0])");
  assert.equal(only(p('[{password: x}]'), 'auth.users[0].name'), 'is required');
  assert.equal(only(p('[{name: a}]'), 'auth.users[0]'), "user 'a' has no password, scram_verifier or md5; give one, or set auth.query");
  assert.equal(only(p(`[{name: a, md5: ${MD5}}]`), 'auth.users[0]'), 'an md5 hash cannot answer scram-sha-256; give a password or scram_verifier');
  assert.equal(only(p(`[{name: a, scram_verifier: "${VERIFIER}", method: md5}]`), 'auth.users[0]'), 'a scram_verifier cannot answer md5; give a password or md5 hash');
  assert.match(only(p('[{name: a, scram_verifier: "SCRAM-SHA-256$4096:abc"}]'), 'auth.users[0].scram_verifier'), /must look like 'SCRAM-SHA-256\$<iterations>/);
  assert.match(only(p(`[{name: a, scram_verifier: "SCRAM-SHA-256$4096:c2FsdA==$${B32}:c2hvcnQ="}]`), 'auth.users[0].scram_verifier'), /32 bytes/);
  assert.equal(only(p('[{name: a, md5: md5abc, method: md5}]'), 'auth.users[0].md5'), "must be 'md5' followed by 32 hex digits");
  assert.equal(only(p('[{name: a, password: x, method: kerberos}]'), 'auth.users[0].method'), "expected one of 'scram-sha-256', 'md5', 'cleartext', 'trust'; got string 'kerberos'");
  // Each accepted combination.
  ok(p(`[{name: a, md5: ${MD5}, method: md5}, {name: b, scram_verifier: "${VERIFIER}"}, {name: c, method: trust}, {name: d, password: x, method: md5}]`));
  ok(p('[{name: a}]', '  method: trust'));
  ok(p('[{name: a}]', '  query: {user: lookup}'));
  assert.equal(only(p('[]', '  query: {user: lookup, sql: "select 1"}'), 'auth.query.sql'), 'must take the user name as $1');
  assert.equal(only(p('[]', '  query: {password: x}'), 'auth.query.user'), 'is required');
  // Secrets are not echoed back in messages.
  assert.equal(only(p('[{name: a, password: 314159}]'), 'auth.users[0].password'), 'expected string, got number');
});

test('cleartext without listen.tls is refused at each path that asks for it', () => {
  const msg = 'cleartext passwords are only accepted over TLS; configure listen.tls';
  assert.deepEqual(lines(parse('primary: {host: db}\nauth: {method: cleartext, users: [{name: a, password: x, method: cleartext}, {name: b, password: y}]}')), [
    `auth.method: ${msg}`,
    `auth.users[0].method: ${msg}`,
  ]);
  withTmp((dir) => {
    writeFileSync(join(dir, 'c.pem'), 'cert');
    writeFileSync(join(dir, 'k.pem'), 'key');
    const { config } = ok(
      parse('primary: {host: db}\nlisten: {tls: {cert: c.pem, key: k.pem}}\nauth: {method: cleartext, users: [{name: a, password: x}]}', {}, dir),
    );
    assert.equal(config.auth.method, 'cleartext');
  });
});

test('TLS files must exist; relative paths resolve against baseDir', () => {
  withTmp((dir) => {
    writeFileSync(join(dir, 'cert.pem'), 'cert');
    writeFileSync(join(dir, 'key.pem'), 'key');
    mkdirSync(join(dir, 'sub'));
    const good = ok(parse('primary: {host: db}\nlisten: {tls: {cert: cert.pem, key: key.pem}}\nserver_tls: {mode: verify-full, ca: ./cert.pem}', {}, dir));
    assert.deepEqual(good.config.listen.tls, { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') });
    assert.equal(good.config.server_tls.ca, join(dir, 'cert.pem'));
    assert.deepEqual(good.warnings, []);

    assert.deepEqual(
      lines(parse(`primary: {host: db}\nlisten: {tls: {cert: nope.pem, key: ${join(dir, 'key.pem')}, ca: sub}}\nserver_tls: {ca: missing/ca.pem}`, {}, dir)),
      [
        `listen.tls.ca: not a file: ${join(dir, 'sub')}`,
        `listen.tls.cert: file not found: ${join(dir, 'nope.pem')}`,
        `server_tls.ca: file not found: ${join(dir, 'missing/ca.pem')}`,
      ],
    );
    assert.equal(only(parse('primary: {host: db}\nlisten: {tls: {cert: cert.pem}}', {}, dir), 'listen.tls.key'), 'is required');
  });
});

test('warnings do not fail the load', () => {
  const { warnings } = ok(parse('primary: {host: db}\npool: {size: 50, max_db_connections: 10}\nserver_tls: {mode: verify-full}'));
  assert.deepEqual(
    warnings.map((w) => w.path),
    ['pool.size', 'server_tls.ca'],
  );
  assert.match(warnings[0]!.message, /larger than pool\.max_db_connections/);
  assert.match(warnings[1]!.message, /system root CAs/);
});

test('several problems in one file are all reported at once', () => {
  withTmp((dir) => {
    const r = parse(
      `
listen: {port: "6432", tls: {cert: missing.pem, key: missing.key}}
admin: {token: tooshort}
pool: {mode: transactions, sise: 3, size: 0}
primary: {host: db}
replicas: [{host: a, name: primary}, {prot: 5433}]
server_tls: {mode: full}
auth:
  method: md5
  users:
    - {name: a}
    - {name: a, md5: bad}
    - {name: b, md5: ${MD5}, method: scram-sha-256}
log: {level: loud}
`,
      {},
      dir,
    );
    assert.deepEqual(lines(r), [
      "admin.token: must be at least 16 characters",
      "auth.users[0]: user 'a' has no password, scram_verifier or md5; give one, or set auth.query",
      "auth.users[1].md5: must be 'md5' followed by 32 hex digits",
      "auth.users[1].name: duplicate user name 'a' (already used by auth.users[0])",
      'auth.users[2]: an md5 hash cannot answer scram-sha-256; give a password or scram_verifier',
      `listen.port: expected number, got string '6432'`,
      `listen.tls.cert: file not found: ${join(dir, 'missing.pem')}`,
      `listen.tls.key: file not found: ${join(dir, 'missing.key')}`,
      "log.level: expected one of 'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'; got string 'loud'",
      "pool.mode: expected one of 'session', 'transaction'; got string 'transactions'",
      'pool.sise: unknown key \'sise\'; did you mean \'size\'?',
      'pool.size: must be >= 1',
      "replicas[0].name: duplicate node name 'primary' (already used by primary)",
      'replicas[1].host: is required',
      "replicas[1].prot: unknown key 'prot'; did you mean 'port'?",
      "server_tls.mode: expected one of 'disable', 'prefer', 'require', 'verify-full'; got string 'full'",
    ]);
  });
});

test('YAML syntax errors carry line and column', () => {
  const ps = problems(parse('primary: {host: db}\npool:\n  size: [1,\n bad'));
  assert.ok(ps.length >= 1);
  assert.equal(ps[0]!.path, '');
  assert.match(ps[0]!.message, /^YAML syntax error at line \d+, column \d+: /);
  assert.match(only(parse('primary: {host: db}\nprimary: {host: db2}\n'), ''), /^YAML syntax error at line 2, column 1: Map keys must be unique/);
});

test('environment overrides: scalars, nesting, arrays, indexes, case', () => {
  const { config } = ok(
    parse('primary: {host: db}\npool: {size: 10}\nauth: {users: [{name: a, password: "x"}]}', {
      SWITCHYARD_POOL__SIZE: '30',
      SWITCHYARD_LISTEN__PORT: '7000',
      SWITCHYARD_PRIMARY__HOST: 'db1',
      SWITCHYARD_AUTH__QUERY__USER: 'lookup',
      // A string setting keeps the text, so a numeric-looking password stays a string.
      SWITCHYARD_AUTH__QUERY__PASSWORD: '12345',
      SWITCHYARD_REPLICAS: '[{host: a}, {host: b}]',
      SWITCHYARD_REPLICAS__1__PORT: '6000',
      SWITCHYARD_REPLICAS__2__HOST: 'c',
      SWITCHYARD_listen__Max_Message_Bytes: '2048',
      SWITCHYARD_AUTH__USERS__0__PASSWORD: 'a: b',
      SWITCHYARD_CONFIG: '/etc/switchyard.yaml',
      SWITCHYARD_LOG__LEVEL: '',
      PATH: '/usr/bin',
    }),
  );
  assert.equal(config.pool.size, 30);
  assert.equal(config.listen.port, 7000);
  assert.equal(config.listen.max_message_bytes, 2048);
  assert.equal(config.primary.host, 'db1');
  assert.equal(config.auth.query?.password, '12345');
  assert.equal(config.auth.users[0]!.password, 'a: b');
  assert.equal(config.log.level, 'info');
  assert.deepEqual(
    config.replicas.map((r) => `${r.name}=${r.host}:${r.port}`),
    ['replica1=a:5432', 'replica2=b:6000', 'replica3=c:5432'],
  );
});

test('environment overrides: mappings replace a section, ~ unsets a section or number', () => {
  const { config } = ok(
    parse('primary: {host: db}\nlisten: {port: 1234}\nserver_tls: {mode: disable, ca: x.pem}\npool: {size: 9}', {
      SWITCHYARD_SERVER_TLS: '{mode: require}',
      SWITCHYARD_LISTEN: '~',
      SWITCHYARD_POOL__SIZE: '~',
    }),
  );
  assert.deepEqual(config.server_tls, { mode: 'require' });
  assert.equal(config.listen.port, 6432);
  assert.equal(config.pool.size, 20);
});

test('environment overrides: bad names and bad values name the variable', () => {
  assert.deepEqual(
    lines(
      parse('primary: {host: db}\nreplicas: [{host: a}]', {
        SWITCHYARD_POOL__SISE: '30',
        SWITCHYARD_POOL__SIZE: 'lots',
        SWITCHYARD_NOPE: '1',
        SWITCHYARD_POOL__SIZE__X: '1',
        SWITCHYARD_REPLICAS__HOST: 'x',
        SWITCHYARD_REPLICAS__5__HOST: 'x',
        SWITCHYARD_REPLICAS__0__PORT: '70000',
      }),
    ),
    [
      "env SWITCHYARD_NOPE: unknown key 'nope'",
      "env SWITCHYARD_POOL__SISE: unknown key 'sise' in pool; did you mean 'size'?",
      'env SWITCHYARD_POOL__SIZE__X: pool.size has no keys below it',
      'env SWITCHYARD_REPLICAS__5__HOST: cannot set replicas[5].host: replicas has 1 entries; indexes must be consecutive from 0',
      'env SWITCHYARD_REPLICAS__HOST: replicas is a list; address an entry by index, e.g. SWITCHYARD_REPLICAS__0__...',
      "pool.size: expected number, got string 'lots' (set by env SWITCHYARD_POOL__SIZE)",
      'replicas[0].port: must be <= 65535 (set by env SWITCHYARD_REPLICAS__0__PORT)',
    ],
  );
  assert.equal(
    only(parse('primary: {host: db}', { SWITCHYARD_REPLICAS: '[{host: a, sise: 1}]' }), 'replicas[0].sise'),
    "unknown key 'sise' (set by env SWITCHYARD_REPLICAS)",
  );
  assert.deepEqual(lines(parse('primary: {host: db}\npool: 5', { SWITCHYARD_POOL__SIZE: '3' })), [
    'env SWITCHYARD_POOL__SIZE: cannot set pool.size: pool in the file is not a mapping',
    'pool: expected object, got number 5',
  ]);
});

test('loadConfigFile reads the file, resolves paths next to it, and reports a missing file at the root', () => {
  withTmp((dir) => {
    const file = join(dir, 'switchyard.yaml');
    writeFileSync(join(dir, 'ca.pem'), 'ca');
    writeFileSync(file, 'primary: {host: db}\nserver_tls: {mode: verify-full, ca: ca.pem}\n');
    const { config } = ok(loadConfigFile(file, { SWITCHYARD_POOL__SIZE: '7' }));
    assert.equal(config.server_tls.ca, join(dir, 'ca.pem'));
    assert.equal(config.pool.size, 7);

    const missing = problems(loadConfigFile(join(dir, 'nope.yaml'), {}));
    assert.equal(missing.length, 1);
    assert.equal(missing[0]!.path, '');
    assert.match(missing[0]!.message, /cannot read config file .*nope\.yaml: ENOENT/);
  });
});

test('formatProblems prints one line per problem', () => {
  const out = formatProblems(
    [
      { path: 'pool.size', message: 'must be >= 1' },
      { path: '', message: 'YAML syntax error at line 1, column 2: x\nmore' },
    ],
    'sy.yaml',
  );
  assert.equal(out, 'sy.yaml: pool.size: must be >= 1\nsy.yaml: YAML syntax error at line 1, column 2: x more');
  assert.equal(formatProblems([{ path: 'a', message: 'b' }]), 'a: b');
});

test('defaultConfig builds valid configs in code and validates overrides', () => {
  const base = defaultConfig();
  assert.deepEqual(base.primary, { name: 'primary', host: '127.0.0.1', port: 5432, weight: 1 });
  assert.equal(base.pool.size, 20);
  const c = defaultConfig({ listen: { port: 0 }, pool: { size: 3 }, replicas: [{ host: 'r1' }], auth: { users: [{ name: 'u', password: 'p' }] } });
  assert.equal(c.listen.port, 0);
  assert.equal(c.listen.host, '0.0.0.0');
  assert.equal(c.pool.size, 3);
  assert.equal(c.pool.max_db_connections, 100);
  assert.equal(c.replicas[0]!.name, 'replica1');
  // A full config round-trips.
  assert.deepEqual(defaultConfig(c), c);

  assert.throws(() => defaultConfig({ pool: { size: 0 } }), /pool\.size: must be >= 1/);
  assert.throws(
    () => defaultConfig({ auth: { method: 'cleartext' }, primary: { port: 99999 } }),
    (e: Error) => /auth\.method: cleartext/.test(e.message) && /primary\.port: must be <= 65535/.test(e.message),
  );
  assert.throws(() => defaultConfig({ pool: { sise: 1 } } as never), /unknown key 'sise'/);
});

test('redactConfig hides every secret', () => {
  const secrets = ['pw-user-secret', VERIFIER, MD5, 'admin-token-0123456789', 'query-pw-secret', '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----'];
  const c = defaultConfig({
    admin: { token: 'admin-token-0123456789' },
    auth: {
      users: [
        { name: 'a', password: 'pw-user-secret' },
        { name: 'b', scram_verifier: VERIFIER },
        { name: 'c', md5: MD5, method: 'md5' },
      ],
      query: { user: 'lookup', password: 'query-pw-secret' },
    },
  });
  // Key contents never belong in a Config, but if someone pastes them in they must not leak either.
  const withKey = { ...c, listen: { ...c.listen, tls: { cert: '/c.pem', key: secrets[5]! } } };
  const before = JSON.stringify(withKey);
  const out = JSON.stringify(redactConfig(withKey));
  for (const s of secrets) assert.ok(!out.includes(JSON.stringify(s).slice(1, -1)), `leaked ${s}`);
  assert.equal(JSON.stringify(withKey), before, 'input untouched');
  const r = redactConfig(c) as Config;
  assert.equal(r.admin.token, '[redacted]');
  assert.equal(r.auth.users[0]!.password, '[redacted]');
  assert.equal(r.auth.users[0]!.name, 'a');
  assert.equal(r.auth.users[1]!.scram_verifier, '[redacted]');
  assert.equal(r.auth.users[2]!.md5, '[redacted]');
  assert.equal(r.auth.query!.password, '[redacted]');
  assert.equal(r.auth.query!.user, 'lookup');
  assert.equal(r.pool.size, c.pool.size);
});

test('monitor login: given, from auth.query, from the first user with a password, or a warning', () => {
  const base = 'primary: {host: db1}\nreplicas: [{host: db2}]\n';
  const given = ok(parse(base + 'monitor: {user: mon, password: secret1}\nauth: {users: [{name: app, password: pw}]}\n'));
  assert.equal(given.config.monitor.user, 'mon');
  assert.equal(given.config.monitor.password, 'secret1');
  const fromQuery = ok(parse(base + 'auth: {users: [{name: app, password: pw}, {name: q, password: qpw}], query: {user: q}}\n'));
  assert.deepEqual([fromQuery.config.monitor.user, fromQuery.config.monitor.password], ['q', 'qpw']);
  const fromUser = ok(parse(base + 'auth: {users: [{name: v, scram_verifier: "SCRAM-SHA-256$4096:c2FsdA==$' + 'A'.repeat(43) + '=:' + 'A'.repeat(43) + '="}, {name: app, password: pw}]}\n'));
  assert.deepEqual([fromUser.config.monitor.user, fromUser.config.monitor.password], ['app', 'pw']);
  const none = ok(parse(base));
  assert.equal(none.config.monitor.user, undefined);
  assert.deepEqual(
    none.warnings.map((w) => w.path),
    ['monitor.user'],
  );
  // No replicas, or no split: nothing to check, no warning.
  assert.deepEqual(ok(parse('primary: {host: db1}\n')).warnings, []);
  assert.deepEqual(ok(parse(base + 'routing: {read_write_split: false}\n')).warnings, []);
});

test('routing: consistency is one of two modes; safe functions are lower-cased', () => {
  const bad = parse('primary: {host: db1}\nrouting: {consistency: strong, replica_safe_functions: [My_Fn]}\n');
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.ok(bad.problems.some((p) => p.path === 'routing.consistency'), JSON.stringify(bad.problems));
  const good = ok(parse('primary: {host: db1}\nrouting: {replica_safe_functions: [My_Fn, app.Score]}\n'));
  assert.deepEqual(good.config.routing.replica_safe_functions, ['my_fn', 'app.score']);
});

test('admin.users: a list of names; a name that cannot log in and a pool entry for a console database are warnings', () => {
  const base = 'primary: {host: db}\nauth: {users: [{name: ops, password: pw}]}\n';
  const { config, warnings } = ok(parse(base + 'admin: {users: [ops]}\n'));
  assert.deepEqual(config.admin.users, ['ops']);
  assert.deepEqual(warnings, []);
  assert.deepEqual(ok(parse(base + 'admin: {users: [ops]}\n', { SWITCHYARD_ADMIN__USERS: '[ops, app]' })).config.admin.users, ['ops', 'app']);

  assert.equal(only(parse(base + 'admin: {users: ops}\n'), 'admin.users'), "expected array, got string 'ops'");
  assert.equal(only(parse(base + 'admin: {users: [""]}\n'), 'admin.users[0]'), 'must not be empty');

  const ghost = ok(parse(base + 'admin: {users: [ops, ghost]}\npool: {databases: {pgbouncer: {mode: session}}}\n')).warnings;
  assert.deepEqual(
    ghost.map((w) => w.path),
    ['admin.users[1]', 'pool.databases.pgbouncer'],
  );
  assert.match(ghost[0]!.message, /'ghost' is not in auth\.users and there is no auth\.query/);
  assert.match(ghost[1]!.message, /admin console's/);
  // With auth.query any name may exist in the database.
  assert.deepEqual(ok(parse('primary: {host: db}\nauth: {query: {user: ops, password: pw}}\nadmin: {users: [ghost]}\n')).warnings, []);
});
