// Where user secrets come from (config or the auth query), which method each user gets, and what the pool may log in with.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { AuthConfig, AuthMethod, UserConfig } from '../config/types.js';
import { isMd5Hash, md5PasswordHash } from './md5.js';
import {
  parseScramVerifier,
  makeScramVerifier,
  saltedPassword,
  type ScramClientCredentials,
  type ScramVerifier,
} from './scram.js';

export type Secret =
  | { kind: 'password'; password: string }
  | { kind: 'scram'; verifier: ScramVerifier }
  | { kind: 'md5'; hash: string };

/**
 * A user the gateway knows how to authenticate. `secret` is a non-enumerable property, so
 * JSON.stringify, util.inspect, pino and object spread never carry it; read it explicitly as
 * cred.secret. (A consequence: `{ ...cred }` has no secret.)
 */
export interface UserCredential {
  name: string;
  method: AuthMethod;
  readonly secret: Secret | null;
  source: 'config' | 'query';
}

/**
 * Runs the auth query against the primary and resolves to the passwd column: a SCRAM verifier, an md5
 * hash, or null when the user does not exist or has no password. May reject (server down).
 */
export type AuthQueryLookup = (user: string) => Promise<string | null>;

// Bounds the query cache: negative entries for made-up user names must not grow memory without limit.
const MAX_CACHED_USERS = 10_000;
// A refresh within this long of the previous fetch reuses it: a burst of failed logins for one user
// must not become a burst of queries against the primary, and data that young is fresh anyway.
const REFRESH_MIN_INTERVAL_MS = 1_000;

function makeCredential(name: string, method: AuthMethod, secret: Secret | null, source: 'config' | 'query'): UserCredential {
  const cred = { name, method, source } as UserCredential;
  Object.defineProperty(cred, 'secret', { value: secret, enumerable: false, writable: false, configurable: false });
  return Object.freeze(cred);
}

/**
 * The method actually used for a user. PostgreSQL answers an "md5" hba line with SCRAM when the stored
 * secret is a SCRAM verifier, and cannot do SCRAM from an md5 hash, so both downgrades are mirrored.
 */
function effectiveMethod(method: AuthMethod, secret: Secret | null): AuthMethod {
  if (method === 'scram-sha-256' && secret?.kind === 'md5') return 'md5';
  if (method === 'md5' && secret?.kind === 'scram') return 'scram-sha-256';
  return method;
}

function secretFromConfig(u: UserConfig): Secret | null {
  // The most capable secret wins: a password serves every method and every server login.
  if (u.password !== undefined) return { kind: 'password', password: u.password };
  if (u.scram_verifier !== undefined) {
    const verifier = parseScramVerifier(u.scram_verifier);
    // The message names the user but never the value.
    if (!verifier) throw new Error(`auth user "${u.name}": scram_verifier is not a valid SCRAM-SHA-256 verifier`);
    return { kind: 'scram', verifier };
  }
  if (u.md5 !== undefined) {
    if (!isMd5Hash(u.md5)) throw new Error(`auth user "${u.name}": md5 is not an MD5 password hash ("md5" + 32 hex digits)`);
    return { kind: 'md5', hash: u.md5 };
  }
  return null;
}

/**
 * Interprets pg_authid.passwd. An unparseable SCRAM secret counts as no password, as PostgreSQL fails
 * such a login. Anything that is neither SCRAM nor md5 is taken as a plain password, which is what a
 * pre-10 server or a custom auth query can return (PgBouncer reads it the same way).
 */
function secretFromPasswd(passwd: string | null): Secret | null {
  if (passwd === null || passwd === '') return null;
  if (passwd.startsWith('SCRAM-SHA-256$')) {
    const verifier = parseScramVerifier(passwd);
    return verifier ? { kind: 'scram', verifier } : null;
  }
  if (isMd5Hash(passwd)) return { kind: 'md5', hash: passwd };
  return { kind: 'password', password: passwd };
}

function sameVerifier(a: ScramVerifier, b: ScramVerifier): boolean {
  return a.storedKey.equals(b.storedKey) && a.serverKey.equals(b.serverKey);
}

interface CacheEntry {
  passwd: string | null;
  cred: UserCredential | null;
  fetchedAt: number;
  /** Order in which the lookup started, so a slow older lookup never overwrites a newer answer. */
  seq: number;
}

export class CredentialStore {
  private readonly auth: AuthConfig;
  private readonly lookup: AuthQueryLookup | undefined;
  private readonly now: () => number;
  private readonly configUsers = new Map<string, UserCredential>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<UserCredential | null>>();
  private readonly clientKeys = new Map<string, { clientKey: Buffer; verifier: ScramVerifier }>();
  private seq = 0;
  // Bumped by invalidate(): a lookup that started before it must not repopulate the cache.
  private generation = 0;

  constructor(auth: AuthConfig, lookup?: AuthQueryLookup, now: () => number = Date.now) {
    this.auth = auth;
    this.lookup = lookup;
    this.now = now;
    for (const u of auth.users) {
      if (this.configUsers.has(u.name)) throw new Error(`auth user "${u.name}" is configured twice`);
      const secret = secretFromConfig(u);
      this.configUsers.set(u.name, makeCredential(u.name, effectiveMethod(u.method ?? auth.method, secret), secret, 'config'));
    }
  }

  private get queryEnabled(): boolean {
    return this.auth.query !== undefined && this.lookup !== undefined;
  }

  private get ttlMs(): number {
    return this.auth.query?.cache_ttl_ms ?? 0;
  }

  /**
   * Config users first; then, when auth.query is configured, the auth query, cached for
   * auth.query.cache_ttl_ms (misses included). refresh: true skips the cache, except that an answer
   * fetched within the last second (or the TTL, if shorter) is reused, and a lookup already under way
   * is joined. Rejects when the lookup does, leaving the cache as it was.
   */
  async get(user: string, opts: { refresh?: boolean } = {}): Promise<UserCredential | null> {
    const fromConfig = this.configUsers.get(user);
    if (fromConfig) return fromConfig;
    if (!this.queryEnabled) return null;

    const now = this.now();
    const entry = this.cache.get(user);
    if (entry) {
      const age = now - entry.fetchedAt;
      const fresh = opts.refresh ? age < Math.min(REFRESH_MIN_INTERVAL_MS, this.ttlMs) : age < this.ttlMs;
      if (fresh) return entry.cred;
    }
    const pending = this.inFlight.get(user);
    if (pending) return pending;
    return this.fetch(user);
  }

  private fetch(user: string): Promise<UserCredential | null> {
    const seq = ++this.seq;
    const generation = this.generation;
    const startedAt = this.now();
    // Started from a resolved promise so even a lookup that throws synchronously settles later,
    // after p is registered as in flight.
    const p: Promise<UserCredential | null> = Promise.resolve()
      .then(() => this.lookup!(user))
      .then((passwd) => {
        const secret = secretFromPasswd(passwd);
        const cred = passwd === null ? null : makeCredential(user, effectiveMethod(this.auth.method, secret), secret, 'query');
        if (generation !== this.generation) return cred;
        return this.store(user, { passwd, cred, fetchedAt: startedAt, seq });
      })
      .finally(() => {
        if (this.inFlight.get(user) === p) this.inFlight.delete(user);
      });
    this.inFlight.set(user, p);
    return p;
  }

  /** Caches an answer and returns the credential to hand out for it. */
  private store(user: string, entry: CacheEntry): UserCredential | null {
    const old = this.cache.get(user);
    if (old && old.seq > entry.seq) return entry.cred;
    if (old && old.passwd === entry.passwd) {
      // Unchanged: keep the existing object, so anything derived from it (e.g. a SCRAM verifier
      // computed from a plain password) stays valid.
      entry = { ...entry, cred: old.cred };
    } else if (old) {
      this.forgetClientKeyUnlessValid(user, entry.cred);
    }
    // Re-insert so Map order is oldest-fetched first, which is what eviction drops.
    this.cache.delete(user);
    this.cache.set(user, entry);
    while (this.cache.size > MAX_CACHED_USERS) {
      const oldest = this.cache.keys().next().value!;
      this.cache.delete(oldest);
      this.clientKeys.delete(oldest);
    }
    return entry.cred;
  }

  /** The credential last known for a user, whether or not its cache time is up (for synchronous callers). */
  private known(user: string): UserCredential | null {
    return this.configUsers.get(user) ?? this.cache.get(user)?.cred ?? null;
  }

  private forgetClientKeyUnlessValid(user: string, cred: UserCredential | null): void {
    const remembered = this.clientKeys.get(user);
    if (!remembered) return;
    const secret = cred?.secret;
    if (secret?.kind !== 'scram' || !sameVerifier(secret.verifier, remembered.verifier)) this.clientKeys.delete(user);
  }

  /**
   * Keeps the ClientKey a client proved in a successful SCRAM login, for users whose only secret is a
   * verifier, so the pool can log in to the server as them. Ignored unless H(clientKey) matches the
   * current verifier's StoredKey; dropped when the verifier changes.
   */
  rememberClientKey(user: string, clientKey: Buffer): void {
    const secret = this.known(user)?.secret;
    if (secret?.kind !== 'scram') return;
    const stored = createHash('sha256').update(clientKey).digest();
    if (stored.length !== secret.verifier.storedKey.length || !timingSafeEqual(stored, secret.verifier.storedKey)) return;
    this.clientKeys.delete(user);
    this.clientKeys.set(user, { clientKey: Buffer.from(clientKey), verifier: secret.verifier });
    while (this.clientKeys.size > MAX_CACHED_USERS) this.clientKeys.delete(this.clientKeys.keys().next().value!);
  }

  /**
   * What the backend can log in with as this user: the password if known; else the md5 hash (only
   * answers an md5 challenge); else ClientKey/ServerKey if a client's SCRAM login taught us the
   * ClientKey; else null. Synchronous, so it uses the last answer known even if its cache time is up.
   */
  serverLogin(user: string): ScramClientCredentials | { md5Hash: string } | { password: string } | null {
    const secret = this.known(user)?.secret;
    if (!secret) return null;
    switch (secret.kind) {
      case 'password':
        return { password: secret.password };
      case 'md5':
        return { md5Hash: secret.hash };
      case 'scram': {
        const remembered = this.clientKeys.get(user);
        if (!remembered) return null;
        if (!sameVerifier(remembered.verifier, secret.verifier)) {
          this.clientKeys.delete(user);
          return null;
        }
        return { clientKey: Buffer.from(remembered.clientKey), serverKey: Buffer.from(secret.verifier.serverKey) };
      }
    }
  }

  /** Forgets cached auth-query answers and learned ClientKeys, for one user or all. Config users stay. */
  invalidate(user?: string): void {
    this.generation++;
    if (user === undefined) {
      this.cache.clear();
      this.inFlight.clear();
      this.clientKeys.clear();
    } else {
      this.cache.delete(user);
      this.inFlight.delete(user);
      this.clientKeys.delete(user);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Helpers the frontend needs to use a credential

// One derived verifier per password secret: PBKDF2 costs milliseconds, so it is not redone per login.
const derivedVerifiers = new WeakMap<Secret, ScramVerifier>();

/**
 * The verifier to run a SCRAM exchange against: the stored one, or one derived once from a configured
 * password (random salt, 4096 iterations). Null for an md5 hash, which cannot serve SCRAM.
 */
export function scramVerifierFor(cred: UserCredential): ScramVerifier | null {
  const secret = cred.secret;
  if (!secret) return null;
  if (secret.kind === 'scram') return secret.verifier;
  if (secret.kind === 'md5') return null;
  let v = derivedVerifiers.get(secret);
  if (!v) {
    v = parseScramVerifier(makeScramVerifier(secret.password))!;
    derivedVerifiers.set(secret, v);
  }
  return v;
}

function equalSecretStrings(a: string, b: string): boolean {
  // Hash first so the comparison is constant-time regardless of the lengths.
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/**
 * Checks a cleartext password (method 'cleartext') against whatever secret is stored, as PostgreSQL's
 * password method does: compared directly, or hashed with md5(password || user), or run through the
 * verifier's salt and iterations and compared on ServerKey (scram_verify_plain_password).
 */
export function verifyCleartextPassword(cred: UserCredential, password: string): boolean {
  const secret = cred.secret;
  if (!secret) return false;
  switch (secret.kind) {
    case 'password':
      return equalSecretStrings(secret.password, password);
    case 'md5':
      return equalSecretStrings(secret.hash, md5PasswordHash(cred.name, password));
    case 'scram': {
      const { salt, iterations, serverKey } = secret.verifier;
      const salted = saltedPassword(password, salt, iterations);
      const computed = createHmac('sha256', salted).update('Server Key').digest();
      return computed.length === serverKey.length && timingSafeEqual(computed, serverKey);
    }
  }
}
