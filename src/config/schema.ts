// The zod schema for the configuration file: field types, ranges and defaults (cross-field rules live in load.ts).
import * as z from 'zod';

/** Node's timers overflow above this (the timer then fires at once), so every *_ms value is capped here. */
export const MAX_TIMER_MS = 2_147_483_647;

export const DEFAULT_AUTH_QUERY_SQL = 'SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1';

export const SCRAM_VERIFIER_FORMAT = "'SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>'";

export const AUTH_METHODS = ['scram-sha-256', 'md5', 'cleartext', 'trust'] as const;
export const SERVER_TLS_MODES = ['disable', 'prefer', 'require', 'verify-full'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const B64 = '[A-Za-z0-9+/]+={0,2}';
const SCRAM_VERIFIER_RE = new RegExp(`^SCRAM-SHA-256\\$(\\d+):(${B64})\\$(${B64}):(${B64})$`);

const nonEmpty = () => z.string().min(1);
const int = () => z.number().int();
const ms = () => int().min(0).max(MAX_TIMER_MS);
const port = (min: number) => int().min(min).max(65535);

/** Checks the shape pg_authid uses, and that both keys are SHA-256 sized so a typo is caught here, not at login. */
const scramVerifier = z.string().superRefine((v, ctx) => {
  const m = SCRAM_VERIFIER_RE.exec(v);
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `must look like ${SCRAM_VERIFIER_FORMAT}` });
    return;
  }
  if (Number(m[1]) < 1) ctx.addIssue({ code: 'custom', message: 'iteration count must be at least 1' });
  if (Buffer.from(m[3]!, 'base64').length !== 32 || Buffer.from(m[4]!, 'base64').length !== 32) {
    ctx.addIssue({ code: 'custom', message: 'StoredKey and ServerKey must each be 32 bytes of base64' });
  }
});

// Lower-cased because the auth code hashes the stored text itself; upper-case hex would never match a client.
const md5Hash = z
  .string()
  .regex(/^md5[0-9a-fA-F]{32}$/, { message: "must be 'md5' followed by 32 hex digits" })
  .transform((v) => v.toLowerCase());

const tlsFiles = z.strictObject({
  cert: nonEmpty(),
  key: nonEmpty(),
  ca: nonEmpty().optional(),
});

const listen = z.strictObject({
  host: nonEmpty().default('0.0.0.0'),
  port: port(0).default(6432),
  tls: tlsFiles.optional(),
  max_message_bytes: int()
    .min(1024)
    .max(1024 * 1024 * 1024)
    .default(64 * 1024 * 1024),
  login_timeout_ms: ms().min(1).default(60_000),
});

const admin = z.strictObject({
  host: nonEmpty().default('127.0.0.1'),
  port: port(0).default(9432),
  token: z.string().min(16).optional(),
  users: z.array(nonEmpty()).default([]),
});

const poolMode = z.enum(['session', 'transaction']);

const pool = z.strictObject({
  mode: poolMode.default('transaction'),
  /** Per-database and per-user pool modes; a user's mode wins over its database's. */
  databases: z.record(nonEmpty(), z.strictObject({ mode: poolMode })).default({}),
  users: z.record(nonEmpty(), z.strictObject({ mode: poolMode })).default({}),
  size: int().min(1).default(20),
  max_db_connections: int().min(1).default(100),
  queue_timeout_ms: ms().default(5000),
  idle_timeout_ms: ms().default(600_000),
  lifetime_ms: ms().default(3_600_000),
  connect_timeout_ms: ms().min(1).default(5000),
  idle_transaction_timeout_ms: ms().default(0),
  prepared_statements_cache_size: int().min(1).max(100_000).default(100),
});

/** name is optional here: replicas get 'replica<N>' from their position, which only load.ts knows. */
export const nodeSchema = z.strictObject({
  name: nonEmpty().optional(),
  host: nonEmpty(),
  port: port(1).default(5432),
  weight: z.number().min(0).default(1),
});

const serverTls = z.strictObject({
  mode: z.enum(SERVER_TLS_MODES).default('prefer'),
  ca: nonEmpty().optional(),
});

const user = z.strictObject({
  name: nonEmpty(),
  // Postgres refuses empty passwords, so an empty one here is always a mistake.
  password: nonEmpty().optional(),
  scram_verifier: scramVerifier.optional(),
  md5: md5Hash.optional(),
  method: z.enum(AUTH_METHODS).optional(),
});

const authQuery = z.strictObject({
  user: nonEmpty(),
  password: nonEmpty().optional(),
  database: nonEmpty().default('postgres'),
  sql: nonEmpty()
    .refine((s) => s.includes('$1'), { message: 'must take the user name as $1' })
    .default(DEFAULT_AUTH_QUERY_SQL),
  cache_ttl_ms: ms().default(60_000),
});

const auth = z.strictObject({
  method: z.enum(AUTH_METHODS).default('scram-sha-256'),
  users: z.array(user).default([]),
  query: authQuery.optional(),
  failed_login_threshold: int().min(1).default(5),
  failed_login_window_ms: ms().min(1).default(60_000),
  failed_login_max_delay_ms: ms().default(5000),
});

const routing = z.strictObject({
  /** Send safe reads to the replicas; false sends everything to the primary. */
  read_write_split: z.boolean().default(true),
  consistency: z.enum(['read-your-writes', 'eventual']).default('read-your-writes'),
  /** Functions (lower-case, optionally schema-qualified) the operator declares safe to run on a replica. */
  replica_safe_functions: z.array(nonEmpty().transform((s) => s.toLowerCase())).default([]),
  /** Routing decisions cached by normalised statement text. */
  cache_size: int().min(1).max(1_000_000).default(10_000),
});

export const BALANCER_STRATEGIES = ['round-robin', 'least-connections', 'weighted', 'random', 'ip-hash'] as const;

const balancer = z.strictObject({
  strategy: z.enum(BALANCER_STRATEGIES).default('round-robin'),
  include_primary: z.enum(['never', 'always', 'when_no_replica']).default('when_no_replica'),
  ban_ms: ms().min(1).default(10_000),
  max_replica_lag_ms: ms().default(0),
  max_replica_lag_bytes: int().min(0).default(0),
});

/** The gateway's own login for background checks of every node (WAL positions, health). */
const monitor = z.strictObject({
  user: nonEmpty().optional(),
  password: nonEmpty().optional(),
  database: nonEmpty().default('postgres'),
  interval_ms: ms().min(10).default(100),
});

/** A mirror server given by address. */
const mirrorServer = z.strictObject({
  name: nonEmpty().default('mirror'),
  host: nonEmpty(),
  port: port(1).default(5432),
});

export const mirrorSchema = z.strictObject({
  enabled: z.boolean().default(false),
  target: z.union([z.literal('replicas'), mirrorServer]).default('replicas'),
  statements: z.enum(['reads', 'all']).default('reads'),
  sample_rate: z.number().min(0).max(1).default(1),
  databases: z.array(nonEmpty()).default([]),
  users: z.array(nonEmpty()).default([]),
  pool_size: int().min(1).max(1000).default(4),
  queue_size: int().min(1).max(1_000_000).default(1000),
  timeout_ms: ms().min(1).default(10_000),
  max_events_per_second: int().min(0).default(20),
});

const log = z.strictObject({
  level: z.enum(LOG_LEVELS).default('info'),
});

// prefault (not default) so an absent section is parsed from {} and gets every field default.
export const configSchema = z.strictObject({
  listen: listen.prefault({}),
  admin: admin.prefault({}),
  pool: pool.prefault({}),
  primary: nodeSchema,
  replicas: z.array(nodeSchema).default([]),
  server_tls: serverTls.prefault({}),
  auth: auth.prefault({}),
  routing: routing.prefault({}),
  balancer: balancer.prefault({}),
  monitor: monitor.prefault({}),
  mirror: mirrorSchema.prefault({}),
  log: log.prefault({}),
});

export type ParsedConfig = z.output<typeof configSchema>;

/** Strips optional/default/prefault/pipe wrappers to reach the schema that judges the value itself. */
export function unwrapSchema(s: z.ZodType): z.ZodType {
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault) s = s.unwrap() as z.ZodType;
    else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else return s;
  }
}

/** Keys of the mapping the schema expects at path, or undefined when it does not expect a mapping there. */
export function keysAt(path: readonly (string | number)[]): string[] | undefined {
  const s = schemaAt(path);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : undefined;
}

/** The (unwrapped) schema for a value at path, or undefined when the path leaves the schema. */
export function schemaAt(path: readonly (string | number)[]): z.ZodType | undefined {
  let s: z.ZodType = configSchema;
  for (const seg of path) {
    s = unwrapSchema(s);
    if (s instanceof z.ZodObject && typeof seg === 'string' && Object.hasOwn(s.shape, seg)) {
      s = s.shape[seg] as z.ZodType;
    } else if (s instanceof z.ZodArray && typeof seg === 'number') {
      s = s.element as z.ZodType;
    } else {
      return undefined;
    }
  }
  return unwrapSchema(s);
}

/** Every mapping path in the schema with its keys; used to suggest where a misplaced key belongs. */
export function allKeyPaths(): { path: (string | number)[]; key: string }[] {
  const out: { path: (string | number)[]; key: string }[] = [];
  const walk = (s: z.ZodType, path: (string | number)[]): void => {
    s = unwrapSchema(s);
    if (s instanceof z.ZodObject) {
      for (const [k, child] of Object.entries(s.shape)) {
        out.push({ path, key: k });
        walk(child as z.ZodType, [...path, k]);
      }
    } else if (s instanceof z.ZodArray) {
      walk(s.element as z.ZodType, [...path, 0]);
    }
  };
  walk(configSchema, []);
  return out;
}
