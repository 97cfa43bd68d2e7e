// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: verifiers, the server side and the client side, on SASL payload bytes only.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

const KEY_LEN = 32; // SHA-256 output
// PostgreSQL's SCRAM_RAW_NONCE_LEN: 18 random bytes, base64-encoded to 24 printable characters.
const RAW_NONCE_LEN = 18;
// PostgreSQL's SCRAM_DEFAULT_SALT_LEN and SCRAM_SHA_256_DEFAULT_ITERATIONS.
const DEFAULT_SALT_LEN = 16;
const DEFAULT_ITERATIONS = 4096;
// A server can name any iteration count; past this, PBKDF2 would stall the event loop for seconds, so a
// count that large is treated as hostile rather than honoured.
const MAX_CLIENT_ITERATIONS = 10_000_000;
// What a stored verifier may name: PostgreSQL keeps the count in an int.
const MAX_VERIFIER_ITERATIONS = 0x7fffffff;

const SQLSTATE_PROTOCOL_VIOLATION = '08P01';
const SQLSTATE_FEATURE_NOT_SUPPORTED = '0A000';

/** StoredKey/ServerKey as kept in pg_authid, plus what is needed to re-derive them. */
export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/**
 * A malformed or unacceptable SCRAM message. The message is safe to log (it never quotes secrets);
 * sqlstate is the code PostgreSQL reports for the same condition, so the wire layer can answer the
 * same way (08P01 protocol_violation unless stated otherwise).
 */
export class ScramError extends Error {
  readonly sqlstate: string;
  constructor(message: string, sqlstate: string = SQLSTATE_PROTOCOL_VIOLATION) {
    super(message);
    this.name = 'ScramError';
    this.sqlstate = sqlstate;
  }
}

// ---------------------------------------------------------------------------------------------------
// Primitives

function hmac(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

// Buffer.from(s, 'base64') silently skips junk, so validate the alphabet and padding first: a message
// that is not canonical base64 is malformed, as PostgreSQL's pg_b64_decode treats it.
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(s: string): Buffer | null {
  if (!BASE64_RE.test(s)) return null;
  return Buffer.from(s, 'base64');
}

// RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
const PRINTABLE_RE = /^[\x21-\x2b\x2d-\x7e]+$/;

function randomNonce(): string {
  return randomBytes(RAW_NONCE_LEN).toString('base64');
}

// ---------------------------------------------------------------------------------------------------
// SASLprep

// RFC 3454 table C.1.2, mapped to U+0020 by SASLprep (RFC 4013 section 2.1).
const NON_ASCII_SPACE_RE = /[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/gu;
// RFC 3454 table B.1, "commonly mapped to nothing". U+200B is also in C.1.2 and PostgreSQL maps it
// to a space first, so it is left out here to give the same result.
const MAPPED_TO_NOTHING_RE = /[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/gu;
// PostgreSQL's prohibited_output_ranges (RFC 3454 C.1.2, C.2.1, C.2.2, C.3-C.9). Lone surrogates
// land here too, which matches PostgreSQL refusing invalid UTF-8.
const PROHIBITED_RE = new RegExp(
  '[' +
    '\\u0000-\\u001f\\u007f-\\u00a0\\u0340\\u0341\\u06dd\\u070f\\u1680\\u180e\\u2000-\\u200f' +
    '\\u2028-\\u202f\\u205f-\\u2063\\u206a-\\u206f\\u2ff0-\\u2ffb\\u3000\\ud800-\\uf8ff\\ufdd0-\\ufdef' +
    '\\ufeff\\ufff9-\\uffff\\u{1d173}-\\u{1d17a}\\u{1fffe}\\u{1ffff}\\u{2fffe}\\u{2ffff}\\u{3fffe}' +
    '\\u{3ffff}\\u{4fffe}\\u{4ffff}\\u{5fffe}\\u{5ffff}\\u{6fffe}\\u{6ffff}\\u{7fffe}\\u{7ffff}' +
    '\\u{8fffe}\\u{8ffff}\\u{9fffe}\\u{9ffff}\\u{afffe}\\u{affff}\\u{bfffe}\\u{bffff}\\u{cfffe}' +
    '\\u{cffff}\\u{dfffe}\\u{dffff}\\u{e0001}\\u{e0020}-\\u{e007f}\\u{efffe}\\u{effff}' +
    '\\u{f0000}-\\u{10ffff}' +
    ']',
  'u',
);

/**
 * An approximation of SASLprep (RFC 4013) following PostgreSQL's pg_saslprep: pure-ASCII passwords
 * pass through untouched; otherwise non-ASCII spaces become ' ', "mapped to nothing" characters are
 * dropped, and the result is normalised with String.prototype.normalize('NFKC'). Like PostgreSQL, a
 * password that SASLprep rejects is used as given rather than refused.
 *
 * Not reproduced: the "unassigned in Unicode 3.2" check and the bidirectional-text rule. A password
 * that PostgreSQL rejects for one of those (and therefore hashes raw) is normalised here instead, so
 * such a password can derive a different key than PostgreSQL does. JavaScript's NFKC also follows the
 * current Unicode version, not PostgreSQL's tables, which can differ for very new characters.
 */
export function saslprep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const mapped = password.replace(NON_ASCII_SPACE_RE, ' ').replace(MAPPED_TO_NOTHING_RE, '');
  // PostgreSQL refuses to prepare a password that maps to nothing, and then uses the original.
  if (mapped.length === 0) return password;
  // PostgreSQL checks the mapped (not yet normalised) characters; doing the same keeps the outcome equal.
  if (PROHIBITED_RE.test(mapped)) return password;
  return mapped.normalize('NFKC');
}

/**
 * Hi(password, salt, i) of RFC 5802, which is PBKDF2-HMAC-SHA-256 with a 32-byte output. The password
 * is first passed through saslprep() (NFKC-based approximation of SASLprep, see there).
 */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new ScramError('invalid SCRAM iteration count');
  return pbkdf2Sync(Buffer.from(saslprep(password), 'utf8'), salt, iterations, KEY_LEN, 'sha256');
}

function keysFromSalted(salted: Buffer): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

// ---------------------------------------------------------------------------------------------------
// Verifiers

const VERIFIER_RE = /^SCRAM-SHA-256\$([0-9]{1,10}):([^$:]+)\$([^$:]+):([^$:]+)$/;

/** Parses 'SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>'; null if it is not one. */
export function parseScramVerifier(s: string): ScramVerifier | null {
  const m = VERIFIER_RE.exec(s);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (iterations < 1 || iterations > MAX_VERIFIER_ITERATIONS) return null;
  const salt = decodeBase64(m[2]!);
  const storedKey = decodeBase64(m[3]!);
  const serverKey = decodeBase64(m[4]!);
  if (!salt || salt.length === 0) return null;
  if (!storedKey || storedKey.length !== KEY_LEN || !serverKey || serverKey.length !== KEY_LEN) return null;
  return { iterations, salt, storedKey, serverKey };
}

export function formatScramVerifier(v: ScramVerifier): string {
  return `SCRAM-SHA-256$${v.iterations}:${v.salt.toString('base64')}$${v.storedKey.toString('base64')}:${v.serverKey.toString('base64')}`;
}

/** Builds a verifier the way PostgreSQL's scram_build_secret does (4096 iterations, 16-byte salt by default). */
export function makeScramVerifier(password: string, opts: { salt?: Buffer; iterations?: number } = {}): string {
  const salt = opts.salt ?? randomBytes(DEFAULT_SALT_LEN);
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  if (salt.length === 0) throw new ScramError('SCRAM salt must not be empty');
  const { storedKey, serverKey } = keysFromSalted(saltedPassword(password, salt, iterations));
  return formatScramVerifier({ iterations, salt, storedKey, serverKey });
}

/**
 * A stand-in verifier for a user that does not exist (or has no usable secret), so the exchange looks
 * like a real one and does not reveal which user names exist. Like PostgreSQL's scram_mock_salt the salt
 * is a deterministic function of the user name and a process secret, so repeated probes see a stable
 * salt; keyed HMAC is used instead of PostgreSQL's plain SHA-256 over (name || nonce). No password can
 * satisfy it short of a SHA-256 preimage, so the exchange simply fails at the proof.
 */
export function mockVerifier(user: string, secret: Buffer): ScramVerifier {
  const derive = (label: string) => hmac(secret, `switchyard scram mock ${label}\0${user}`);
  return {
    iterations: DEFAULT_ITERATIONS,
    salt: derive('salt').subarray(0, DEFAULT_SALT_LEN),
    storedKey: derive('stored key'),
    serverKey: derive('server key'),
  };
}

// ---------------------------------------------------------------------------------------------------
// Message parsing shared by both sides

// Messages are handled as latin1 strings: every byte maps to one char and back, so the AuthMessage that
// gets signed is byte-for-byte what was received even if a client puts non-UTF-8 in the ignored n=.
function messageText(data: Buffer, what: string): string {
  if (data.length === 0) throw new ScramError(`malformed SCRAM message (empty ${what})`);
  if (data.includes(0)) throw new ScramError(`malformed SCRAM message (NUL byte in ${what})`);
  return data.toString('latin1');
}

function describeChar(c: string | undefined): string {
  if (c === undefined || c === '') return 'end of message';
  const code = c.charCodeAt(0);
  return code >= 0x21 && code <= 0x7e ? `'${c}'` : `0x${code.toString(16).padStart(2, '0')}`;
}

/** Splits "a=x,b=y" into attributes, checking each is ALPHA '=' value. */
function parseAttributes(s: string, what: string): Array<{ name: string; value: string }> {
  return s.split(',').map((part) => {
    const name = part.charAt(0);
    if (!/^[A-Za-z]$/.test(name)) {
      throw new ScramError(`malformed SCRAM message (attribute expected in ${what}, found ${describeChar(name)})`);
    }
    if (part.charAt(1) !== '=') throw new ScramError(`malformed SCRAM message (expected '=' after attribute '${name}' in ${what})`);
    return { name, value: part.slice(2) };
  });
}

function expectAttr(attrs: Array<{ name: string; value: string }>, i: number, name: string, what: string): string {
  const a = attrs[i];
  if (!a || a.name !== name) {
    throw new ScramError(`malformed SCRAM message (attribute '${name}' expected in ${what}, found ${describeChar(a?.name)})`);
  }
  return a.value;
}

function authMessage(clientFirstBare: string, serverFirst: string, clientFinalWithoutProof: string): Buffer {
  return Buffer.from(`${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`, 'latin1');
}

// ---------------------------------------------------------------------------------------------------
// Server side: the gateway authenticating a client

type ServerState =
  | { step: 'initial' }
  | { step: 'first-done'; cbindFlag: 'n' | 'y'; clientFirstBare: string; serverFirst: string; nonce: string }
  | { step: 'finished' };

export type ScramServerResult = { ok: true; serverFinal: Buffer; clientKey: Buffer } | { ok: false };

/**
 * One SCRAM-SHA-256 exchange as the server. The gateway never offers SCRAM-SHA-256-PLUS, so a client
 * that asks for channel binding ('p=') is refused and 'y' (client could bind but thinks we cannot) is
 * fine. The user name in n= is ignored: PostgreSQL takes it from the startup packet.
 */
export class ScramServerSession {
  private readonly verifier: ScramVerifier;
  private readonly serverNonce: string;
  private state: ServerState = { step: 'initial' };

  constructor(verifier: ScramVerifier, opts: { serverNonce?: string } = {}) {
    if (verifier.storedKey.length !== KEY_LEN || verifier.serverKey.length !== KEY_LEN || verifier.salt.length === 0) {
      throw new ScramError('invalid SCRAM verifier');
    }
    if (!Number.isSafeInteger(verifier.iterations) || verifier.iterations < 1) throw new ScramError('invalid SCRAM verifier');
    if (opts.serverNonce !== undefined && !PRINTABLE_RE.test(opts.serverNonce)) {
      throw new ScramError('server nonce must be printable ASCII without commas');
    }
    this.verifier = verifier;
    this.serverNonce = opts.serverNonce ?? randomNonce();
  }

  /** Takes the client-first-message, returns the server-first-message. */
  handleClientFirst(data: Buffer): Buffer {
    if (this.state.step !== 'initial') throw new ScramError('unexpected SCRAM client-first-message');
    // Whatever happens below, this exchange cannot be restarted.
    this.state = { step: 'finished' };
    const msg = messageText(data, 'client-first-message');

    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    const flag = msg.charAt(0);
    if (flag === 'p') {
      throw new ScramError('client requires SCRAM channel binding, but it is not supported', SQLSTATE_FEATURE_NOT_SUPPORTED);
    }
    if (flag !== 'n' && flag !== 'y') {
      throw new ScramError(`malformed SCRAM message (unexpected channel-binding flag ${describeChar(flag)})`);
    }
    if (msg.charAt(1) !== ',') throw new ScramError(`malformed SCRAM message (comma expected, got ${describeChar(msg.charAt(1))})`);
    if (msg.charAt(2) === 'a') {
      throw new ScramError('client uses authorization identity, but it is not supported', SQLSTATE_FEATURE_NOT_SUPPORTED);
    }
    if (msg.charAt(2) !== ',') {
      throw new ScramError(`malformed SCRAM message (unexpected attribute ${describeChar(msg.charAt(2))} in client-first-message)`);
    }
    const clientFirstBare = msg.slice(3);
    if (clientFirstBare.charAt(0) === 'm') {
      throw new ScramError('client requires an unsupported SCRAM extension', SQLSTATE_FEATURE_NOT_SUPPORTED);
    }

    const attrs = parseAttributes(clientFirstBare, 'client-first-message');
    expectAttr(attrs, 0, 'n', 'client-first-message'); // ignored, as in PostgreSQL
    const clientNonce = expectAttr(attrs, 1, 'r', 'client-first-message');
    if (!PRINTABLE_RE.test(clientNonce)) throw new ScramError('non-printable characters in SCRAM nonce');
    // Any further attributes are optional extensions, which PostgreSQL ignores; parseAttributes has
    // already checked they are well formed.

    const nonce = clientNonce + this.serverNonce;
    const serverFirst = `r=${nonce},s=${this.verifier.salt.toString('base64')},i=${this.verifier.iterations}`;
    this.state = { step: 'first-done', cbindFlag: flag, clientFirstBare, serverFirst, nonce };
    return Buffer.from(serverFirst, 'latin1');
  }

  /**
   * Takes the client-final-message. A wrong proof gives ok:false (an ordinary failed login); a message
   * that breaks the protocol throws ScramError. On success, clientKey is the ClientKey the client
   * proved knowledge of, which lets the gateway log in to the server as this user.
   */
  handleClientFinal(data: Buffer): ScramServerResult {
    const st = this.state;
    if (st.step !== 'first-done') throw new ScramError('unexpected SCRAM client-final-message');
    this.state = { step: 'finished' };
    const msg = messageText(data, 'client-final-message');

    const attrs = parseAttributes(msg, 'client-final-message');
    const cbind = expectAttr(attrs, 0, 'c', 'client-final-message');
    // Without channel binding the value is just the base64 gs2 header, and it must repeat the flag the
    // client sent first (RFC 5802 section 6, and PostgreSQL's check against downgrade games).
    const expectedCbind = st.cbindFlag === 'n' ? 'biws' : 'eSws';
    if (cbind !== expectedCbind) throw new ScramError('unexpected SCRAM channel-binding attribute in client-final-message');
    const nonce = expectAttr(attrs, 1, 'r', 'client-final-message');

    // Extensions may sit between r= and p=; the proof comes last.
    const proofIndex = attrs.findIndex((a, i) => i >= 2 && a.name === 'p');
    const last = attrs[attrs.length - 1]!;
    if (proofIndex !== attrs.length - 1) {
      throw new ScramError('malformed SCRAM message (proof expected at end of client-final-message)');
    }
    const proof = decodeBase64(last.value);
    if (!proof || proof.length !== KEY_LEN) throw new ScramError('malformed SCRAM message (malformed proof in client-final-message)');

    const nonceBuf = Buffer.from(nonce, 'latin1');
    const expectedNonce = Buffer.from(st.nonce, 'latin1');
    if (nonceBuf.length !== expectedNonce.length || !timingSafeEqual(nonceBuf, expectedNonce)) {
      throw new ScramError('invalid SCRAM response (nonce mismatch)');
    }

    // client-final-message-without-proof is everything before ",p=".
    const withoutProof = msg.slice(0, msg.length - last.value.length - 3);
    const am = authMessage(st.clientFirstBare, st.serverFirst, withoutProof);
    const clientSignature = hmac(this.verifier.storedKey, am);
    const clientKey = xor(proof, clientSignature);
    if (!timingSafeEqual(sha256(clientKey), this.verifier.storedKey)) return { ok: false };

    const serverSignature = hmac(this.verifier.serverKey, am);
    return { ok: true, serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`, 'latin1'), clientKey };
  }
}

// ---------------------------------------------------------------------------------------------------
// Client side: the gateway logging in to a PostgreSQL server

/**
 * What the gateway can prove to a server: the password, or the ClientKey recovered from a client's
 * earlier successful exchange (with the ServerKey to check the server's signature). The latter works
 * because the server only ever checks H(ClientProof XOR ClientSignature) == StoredKey.
 */
export type ScramClientCredentials = { password: string } | { clientKey: Buffer; serverKey: Buffer };

// PBKDF2 at 4096 rounds costs milliseconds, and a pool logs in the same user again and again with the
// same salt, so derived keys are kept. Keyed by a hash of the inputs; the password itself is already
// held in memory by whoever passed it in, so this exposes nothing new.
const SALTED_CACHE_MAX = 256;
const saltedCache = new Map<string, { clientKey: Buffer; serverKey: Buffer }>();

function clientKeysForPassword(password: string, salt: Buffer, iterations: number): { clientKey: Buffer; serverKey: Buffer } {
  const key = createHash('sha256')
    .update(`${iterations}\0${salt.toString('base64')}\0`)
    .update(password, 'utf8')
    .digest('base64');
  const hit = saltedCache.get(key);
  if (hit) {
    saltedCache.delete(key);
    saltedCache.set(key, hit);
    return hit;
  }
  const { clientKey, serverKey } = keysFromSalted(saltedPassword(password, salt, iterations));
  const entry = { clientKey, serverKey };
  saltedCache.set(key, entry);
  if (saltedCache.size > SALTED_CACHE_MAX) saltedCache.delete(saltedCache.keys().next().value!);
  return entry;
}

type ClientState =
  | { step: 'initial' }
  | { step: 'first-sent'; clientFirstBare: string }
  | { step: 'final-sent'; serverSignature: Buffer }
  | { step: 'finished' };

// RFC 5802 saslname: ',' and '=' are escaped.
function encodeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** One SCRAM-SHA-256 exchange as the client, without channel binding (gs2 header 'n,,'), like libpq without TLS binding. */
export class ScramClientSession {
  private readonly creds: ScramClientCredentials;
  private readonly clientNonce: string;
  private readonly username: string;
  private state: ClientState = { step: 'initial' };

  /**
   * opts.username is only for reproducing RFC test vectors: PostgreSQL ignores n= and libpq sends it
   * empty, which is the default here.
   */
  constructor(creds: ScramClientCredentials, opts: { clientNonce?: string; username?: string } = {}) {
    if ('clientKey' in creds && (creds.clientKey.length !== KEY_LEN || creds.serverKey.length !== KEY_LEN)) {
      throw new ScramError('SCRAM ClientKey and ServerKey must be 32 bytes');
    }
    if (opts.clientNonce !== undefined && !PRINTABLE_RE.test(opts.clientNonce)) {
      throw new ScramError('client nonce must be printable ASCII without commas');
    }
    this.creds = creds;
    this.clientNonce = opts.clientNonce ?? randomNonce();
    // Kept as latin1 text of the UTF-8 bytes, like every other message string here.
    this.username = Buffer.from(encodeSaslName(opts.username ?? ''), 'utf8').toString('latin1');
  }

  /** The client-first-message: 'n,,n=,r=<nonce>', exactly what libpq sends. */
  clientFirst(): Buffer {
    if (this.state.step !== 'initial') throw new ScramError('SCRAM client-first-message already sent');
    const clientFirstBare = `n=${this.username},r=${this.clientNonce}`;
    this.state = { step: 'first-sent', clientFirstBare };
    return Buffer.from(`n,,${clientFirstBare}`, 'latin1');
  }

  /** Takes the server-first-message, returns the client-final-message. */
  handleServerFirst(data: Buffer): Buffer {
    const st = this.state;
    if (st.step !== 'first-sent') throw new ScramError('unexpected SCRAM server-first-message');
    this.state = { step: 'finished' };
    const serverFirst = messageText(data, 'server-first-message');

    if (serverFirst.charAt(0) === 'm') throw new ScramError('server requires an unsupported SCRAM extension');
    const attrs = parseAttributes(serverFirst, 'server-first-message');
    const nonce = expectAttr(attrs, 0, 'r', 'server-first-message');
    // The server must extend our nonce, not replace it (libpq's "nonce mismatch").
    if (!PRINTABLE_RE.test(nonce) || nonce.length <= this.clientNonce.length || !nonce.startsWith(this.clientNonce)) {
      throw new ScramError('invalid SCRAM response (nonce mismatch)');
    }
    const salt = decodeBase64(expectAttr(attrs, 1, 's', 'server-first-message'));
    if (!salt || salt.length === 0) throw new ScramError('malformed SCRAM message (invalid salt)');
    const iterText = expectAttr(attrs, 2, 'i', 'server-first-message');
    const iterations = /^[1-9][0-9]{0,7}$/.test(iterText) ? Number(iterText) : NaN;
    if (!(iterations >= 1 && iterations <= MAX_CLIENT_ITERATIONS)) {
      throw new ScramError('malformed SCRAM message (invalid iteration count)');
    }
    // libpq refuses anything after i=; extensions are never sent by PostgreSQL.
    if (attrs.length !== 3) throw new ScramError('malformed SCRAM message (garbage at end of server-first-message)');

    const keys = 'password' in this.creds ? clientKeysForPassword(this.creds.password, salt, iterations) : this.creds;
    const withoutProof = `c=biws,r=${nonce}`;
    const am = authMessage(st.clientFirstBare, serverFirst, withoutProof);
    const proof = xor(keys.clientKey, hmac(sha256(keys.clientKey), am));
    this.state = { step: 'final-sent', serverSignature: hmac(keys.serverKey, am) };
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
  }

  /** Checks the server-final-message; throws ScramError on 'e=' or a wrong server signature. */
  verifyServerFinal(data: Buffer): void {
    const st = this.state;
    if (st.step !== 'final-sent') throw new ScramError('unexpected SCRAM server-final-message');
    this.state = { step: 'finished' };
    const msg = messageText(data, 'server-final-message');
    const attrs = parseAttributes(msg, 'server-final-message');
    if (attrs[0]!.name === 'e') {
      // The error value is a short token from a fixed vocabulary (RFC 5802 server-error-value), but it
      // comes from the network, so keep only safe characters before it reaches a log line.
      const reason = attrs[0]!.value.replace(/[^\x21-\x7e]/g, '?').slice(0, 100);
      throw new ScramError(`SCRAM authentication failed by server (e=${reason})`);
    }
    const sig = decodeBase64(expectAttr(attrs, 0, 'v', 'server-final-message'));
    if (!sig || sig.length !== KEY_LEN) throw new ScramError('malformed SCRAM message (malformed server signature)');
    if (attrs.length !== 1) throw new ScramError('malformed SCRAM message (garbage at end of server-final-message)');
    if (!timingSafeEqual(sig, st.serverSignature)) throw new ScramError('incorrect SCRAM server signature');
  }
}
