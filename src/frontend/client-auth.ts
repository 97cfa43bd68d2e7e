// Client authentication as a state machine over protocol messages: bytes in, bytes out, no sockets.

import crypto from 'node:crypto';
import * as m from '../protocol/messages.js';
import { PgError, SQLSTATE, authFailed } from '../protocol/errors.js';
import { ScramServerSession, ScramError, mockVerifier, makeScramVerifier, parseScramVerifier, saltedPassword, type ScramVerifier } from '../auth/scram.js';
import { md5PasswordHash, verifyMd5Response } from '../auth/md5.js';
import type { UserCredential } from '../auth/credentials.js';
import type { AuthMethod } from '../config/types.js';

export type AuthStep =
  | { send: Buffer[]; done?: undefined }
  | { send: Buffer[]; done: 'ok'; clientKey?: Buffer }
  | { send: Buffer[]; done: 'fail'; error: PgError; reason: string };

export interface ClientAuthOptions {
  tls: boolean;
  defaultMethod: AuthMethod;
  /** Secret that makes the fake exchange for unknown users look the same every time. */
  mockSecret: Buffer;
}

// Verifiers derived from configured plain passwords: PBKDF2 is deliberately slow, so do it once per password.
const derived = new Map<string, ScramVerifier>();
function verifierForPassword(user: string, password: string): ScramVerifier {
  const key = crypto.createHash('sha256').update(user).update('\0').update(password).digest('base64');
  let v = derived.get(key);
  if (!v) {
    v = parseScramVerifier(makeScramVerifier(password))!;
    if (derived.size > 10_000) derived.clear();
    derived.set(key, v);
  }
  return v;
}

function timingSafeStringEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}

export class ClientAuthenticator {
  private readonly method: AuthMethod;
  private scram: ScramServerSession | undefined;
  private salt: Buffer | undefined;
  private stage: 'start' | 'sasl-initial' | 'sasl-final' | 'md5' | 'cleartext' | 'done' = 'start';

  constructor(
    private readonly user: string,
    private readonly cred: UserCredential | null,
    private readonly opts: ClientAuthOptions,
  ) {
    // An unknown user goes through the same exchange as a known one, then fails, so nothing reveals whether it exists.
    const method = cred?.method ?? opts.defaultMethod;
    this.method = !cred && method === 'trust' ? 'scram-sha-256' : method;
  }

  private fail(reason: string): AuthStep {
    this.stage = 'done';
    return { send: [], done: 'fail', error: authFailed(this.user), reason };
  }

  start(): AuthStep {
    switch (this.method) {
      case 'trust':
        this.stage = 'done';
        return { send: [], done: 'ok' };
      case 'cleartext':
        if (!this.opts.tls) {
          this.stage = 'done';
          const error = new PgError(SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, 'cleartext password authentication is only allowed over TLS', {
            hint: 'connect with sslmode=require',
          });
          return { send: [], done: 'fail', error, reason: 'cleartext without TLS' };
        }
        this.stage = 'cleartext';
        return { send: [m.authenticationCleartextPassword()] };
      case 'md5':
        this.salt = crypto.randomBytes(4);
        this.stage = 'md5';
        return { send: [m.authenticationMD5Password(this.salt)] };
      case 'scram-sha-256':
        this.stage = 'sasl-initial';
        return { send: [m.authenticationSASL(['SCRAM-SHA-256'])] };
    }
  }

  /** Feed the client's next PasswordMessage-family message ('p'). */
  next(msg: Buffer): AuthStep {
    if (msg[0] !== 0x70 /* p */ || this.stage === 'done' || this.stage === 'start') {
      this.stage = 'done';
      const error = new PgError(SQLSTATE.PROTOCOL_VIOLATION, `expected a password message, got message type '${String.fromCharCode(msg[0] ?? 0)}'`);
      return { send: [], done: 'fail', error, reason: 'protocol violation' };
    }
    try {
      switch (this.stage) {
        case 'cleartext':
          return this.checkCleartext(m.readPasswordString(msg));
        case 'md5':
          return this.checkMd5(m.readPasswordString(msg));
        case 'sasl-initial':
          return this.saslInitial(msg);
        case 'sasl-final':
          return this.saslFinal(msg);
      }
    } catch (e) {
      if (e instanceof ScramError || e instanceof RangeError) {
        this.stage = 'done';
        const error = new PgError(SQLSTATE.PROTOCOL_VIOLATION, `malformed authentication message: ${e.message}`);
        return { send: [], done: 'fail', error, reason: 'malformed authentication message' };
      }
      throw e;
    }
  }

  private ok(send: Buffer[] = [], clientKey?: Buffer): AuthStep {
    this.stage = 'done';
    return { send, done: 'ok', clientKey };
  }

  private checkCleartext(password: string): AuthStep {
    const secret = this.cred?.secret;
    if (!secret) return this.fail(this.cred ? 'user has no password' : 'unknown user');
    if (secret.kind === 'password') return timingSafeStringEqual(password, secret.password) ? this.ok() : this.fail('wrong password');
    if (secret.kind === 'md5') return timingSafeStringEqual(md5PasswordHash(this.user, password), secret.hash) ? this.ok() : this.fail('wrong password');
    const v = secret.verifier;
    const salted = saltedPassword(password, v.salt, v.iterations);
    const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
    const stored = crypto.createHash('sha256').update(clientKey).digest();
    return crypto.timingSafeEqual(stored, v.storedKey) ? this.ok([], clientKey) : this.fail('wrong password');
  }

  private checkMd5(response: string): AuthStep {
    const secret = this.cred?.secret;
    if (!secret) return this.fail(this.cred ? 'user has no password' : 'unknown user');
    const hash = secret.kind === 'password' ? md5PasswordHash(this.user, secret.password) : secret.kind === 'md5' ? secret.hash : undefined;
    if (!hash) return this.fail('md5 cannot be checked against a SCRAM verifier');
    return verifyMd5Response(hash, this.salt!, response) ? this.ok() : this.fail('wrong password');
  }

  private saslInitial(msg: Buffer): AuthStep {
    const { mechanism, data } = m.readSASLInitialResponse(msg);
    if (mechanism !== 'SCRAM-SHA-256') {
      this.stage = 'done';
      const error = new PgError(SQLSTATE.PROTOCOL_VIOLATION, `client selected an invalid SASL authentication mechanism "${mechanism}"`);
      return { send: [], done: 'fail', error, reason: 'bad SASL mechanism' };
    }
    const secret = this.cred?.secret;
    let verifier: ScramVerifier;
    if (secret?.kind === 'scram') verifier = secret.verifier;
    else if (secret?.kind === 'password') verifier = verifierForPassword(this.user, secret.password);
    else verifier = mockVerifier(this.user, this.opts.mockSecret); // unknown user, or no usable secret: fails at the end
    this.scram = new ScramServerSession(verifier);
    const serverFirst = this.scram.handleClientFirst(data);
    this.stage = 'sasl-final';
    return { send: [m.authenticationSASLContinue(serverFirst)] };
  }

  private saslFinal(msg: Buffer): AuthStep {
    const result = this.scram!.handleClientFinal(Buffer.from(msg.subarray(5)));
    const secret = this.cred?.secret;
    if (!secret || secret.kind === 'md5') return this.fail(this.cred ? 'user has no usable secret' : 'unknown user');
    if (!result.ok) return this.fail('wrong password');
    return this.ok([m.authenticationSASLFinal(result.serverFinal)], result.clientKey);
  }
}
