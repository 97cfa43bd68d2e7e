// The validated, fully defaulted configuration every part of switchyard reads.

export type PoolMode = 'session' | 'transaction';
export type ServerTlsMode = 'disable' | 'prefer' | 'require' | 'verify-full';
export type AuthMethod = 'scram-sha-256' | 'md5' | 'cleartext' | 'trust';

export interface TlsFiles {
  /** PEM file paths, checked to exist at validation time. */
  cert: string;
  key: string;
  /** Optional CA bundle (for verifying client certificates later). */
  ca?: string;
}

export interface ListenConfig {
  host: string;
  port: number;
  tls?: TlsFiles;
  /** Largest frontend message accepted, in bytes (length word included). */
  max_message_bytes: number;
  /** A client must finish TLS, startup and authentication within this time. */
  login_timeout_ms: number;
}

export interface AdminConfig {
  host: string;
  /** 0 disables the admin listener. */
  port: number;
  /** Bearer token for the API (health endpoints stay open). */
  token?: string;
  /**
   * Users allowed into the admin console (database `switchyard` or `pgbouncer` over the PostgreSQL
   * protocol); they log in like any other user (auth.users or auth.query).
   */
  users: string[];
}

export interface PoolConfig {
  mode: PoolMode;
  /** Server connections per (database, user). */
  size: number;
  /** Cap on server connections per database across all users. */
  max_db_connections: number;
  queue_timeout_ms: number;
  /** Close a server connection idle for this long; 0 = never. */
  idle_timeout_ms: number;
  /** Close a server connection older than this when it is released; 0 = never. */
  lifetime_ms: number;
  connect_timeout_ms: number;
  /** Disconnect a client that holds a server connection inside a transaction and sends nothing for this long; 0 = never. */
  idle_transaction_timeout_ms: number;
  /** Protocol-level prepared statements kept per server connection (least recently used are closed first). */
  prepared_statements_cache_size: number;
  /** Pool mode per database name and per user name; a user's mode wins. */
  databases: Record<string, { mode: PoolMode }>;
  users: Record<string, { mode: PoolMode }>;
}

export interface ServerTlsConfig {
  mode: ServerTlsMode;
  /** CA bundle used for verify-full. */
  ca?: string;
}

export interface NodeConfig {
  name: string;
  host: string;
  port: number;
  weight: number;
}

export interface UserConfig {
  name: string;
  /** Plain password: lets the gateway verify any method and log in to the server. */
  password?: string;
  /** A SCRAM-SHA-256 verifier as stored in pg_authid (SCRAM-SHA-256$iter:salt$StoredKey:ServerKey). */
  scram_verifier?: string;
  /** An MD5 hash as stored in pg_authid ("md5" + md5(password + user)). */
  md5?: string;
  /** Method demanded of this user; defaults to auth.method. */
  method?: AuthMethod;
}

export interface AuthQueryConfig {
  /** The user the gateway logs in as to run the query. */
  user: string;
  password?: string;
  /** Database the query runs in. */
  database: string;
  /** Must take the user name as $1 and return (usename, passwd). */
  sql: string;
  cache_ttl_ms: number;
}

export interface AuthConfig {
  /** Method for users that do not name one, and for auth_query users. */
  method: AuthMethod;
  users: UserConfig[];
  query?: AuthQueryConfig;
  /** After this many failed logins from one address within the window, answers are delayed. */
  failed_login_threshold: number;
  failed_login_window_ms: number;
  failed_login_max_delay_ms: number;
}

export interface RoutingConfig {
  /** Send safe reads to the replicas (transaction pooling only); false sends everything to the primary. */
  read_write_split: boolean;
  /** read-your-writes: after a client's write commits, its reads use only replicas that have replayed it. */
  consistency: 'read-your-writes' | 'eventual';
  /** Functions (lower-case, optionally schema-qualified) declared safe to run on a replica. */
  replica_safe_functions: string[];
  /** Routing decisions kept, by statement text with literals normalised. */
  cache_size: number;
}

export type BalancerStrategy = 'round-robin' | 'least-connections' | 'weighted' | 'random' | 'ip-hash';

export interface BalancerConfig {
  strategy: BalancerStrategy;
  /** never: reads only on replicas; always: the primary is one more read target; when_no_replica: the primary serves reads while no replica can. */
  include_primary: 'never' | 'always' | 'when_no_replica';
  /** A replica whose connection or probe failed takes no reads for this long (and until a probe succeeds). */
  ban_ms: number;
  /** A replica this far behind the primary takes no reads until it catches up; 0 = no limit. */
  max_replica_lag_ms: number;
  max_replica_lag_bytes: number;
}

export interface MonitorConfig {
  /** Login for the gateway's background checks; defaults to auth.query's user, else the first auth.users entry with a password. */
  user?: string;
  password?: string;
  database: string;
  /** How often every node's WAL position (and health) is read. */
  interval_ms: number;
}

/** Another server to mirror to, given by address (a server of a new PostgreSQL version, another cluster). */
export interface MirrorServer {
  name: string;
  host: string;
  port: number;
}

export interface MirrorConfig {
  enabled: boolean;
  /** replicas: the configured replicas (each copy to one of those up, in turn); or one other server by address. */
  target: 'replicas' | MirrorServer;
  /** reads: statements the router finds safe for a replica; all: autocommit writes too (a target that accepts writes). */
  statements: 'reads' | 'all';
  /** Share of eligible statements copied, 0 to 1. */
  sample_rate: number;
  /** Only these databases / users (empty: all). */
  databases: string[];
  users: string[];
  /** Server connections per (database, user) on each mirror node: the mirror's own cap. */
  pool_size: number;
  /** Copies waiting to run; when full, new copies are dropped (and counted). */
  queue_size: number;
  /** A copy not answered within this is abandoned and counted as an error. */
  timeout_ms: number;
  /** Mismatch events per second at most (further mismatches are counted, not sent). */
  max_events_per_second: number;
}

export interface LogConfig {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
}

export interface Config {
  listen: ListenConfig;
  admin: AdminConfig;
  pool: PoolConfig;
  primary: NodeConfig;
  replicas: NodeConfig[];
  server_tls: ServerTlsConfig;
  auth: AuthConfig;
  routing: RoutingConfig;
  balancer: BalancerConfig;
  monitor: MonitorConfig;
  mirror: MirrorConfig;
  log: LogConfig;
}
