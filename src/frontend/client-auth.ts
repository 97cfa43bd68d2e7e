// Client authentication as a state machine over protocol messages: bytes in, bytes out, no sockets.

import crypto from 'node:crypto';
import * as m from '../protocol/messages.js';
import { PgError, SQLSTATE, authFailed } from '../protocol/errors.js';
import { ScramServerSession, ScramError, mockVerifier, saltedPassword } from '../auth/scram.js';
import { md5PasswordHash, verifyMd5Response } from '../auth/md5.js';
import { scramVerifierFor, verifyCleartextPassword, type UserCredential } from '../auth/credentials.js';
import type { AuthMethod } from '../config/types.js';

export type AuthStep =
  | { send: Buffer[]; done?: undefined }
  | { send: Buffer[]; done: 'ok'; clientKey?: Buffer }
  | { send: Buffer[]; done: 'fail'; error: PgError; reason: string };

export interface ClientAuthOptions {
  tls: boolean;
  defaultMethod: AuthMethod;
  /** Users are also looked up on the primary (so most of them are likely stored as SCRAM verifiers). */
  authQuery: boolean;
  /** Secret that makes the fake exchange for unknown users look the same every time. */
  mockSecret: Buffer;
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
    this.method = cred?.method ?? ClientAuthenticator.unknownUserMethod(opts);
  }

  /**
   * An unknown user goes through the exchange a real one would get, then fails, so nothing reveals whether
   * it exists. With an auth query and method md5, roles stored as SCRAM verifiers are answered with SCRAM,
   * as PostgreSQL does; so, like PostgreSQL (password_encryption = scram-sha-256), unknown users get SCRAM.
   */
  static unknownUserMethod(opts: ClientAuthOptions): AuthMethod {
    if (opts.defaultMethod === 'trust') return 'scram-sha-256';
    if (opts.defaultMethod === 'md5' && opts.authQuery) return 'scram-sha-256';
    return opts.defaultMethod;
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
        const code = e instanceof ScramError ? e.sqlstate : SQLSTATE.PROTOCOL_VIOLATION;
        const error = new PgError(code, `malformed authentication message: ${e.message}`);
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
    const cred = this.cred;
    if (!cred?.secret) return this.fail(cred ? 'user has no password' : 'unknown user');
    if (!verifyCleartextPassword(cred, password)) return this.fail('wrong password');
    if (cred.secret.kind !== 'scram') return this.ok();
    // Only a verifier is stored: keep the ClientKey so the gateway can log in to the server as this user.
    const v = cred.secret.verifier;
    return this.ok([], crypto.createHmac('sha256', saltedPassword(password, v.salt, v.iterations)).update('Client Key').digest());
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
    // An unknown user, or one without a usable secret, runs against a mock verifier and fails at the end.
    const verifier = (this.cred && scramVerifierFor(this.cred)) ?? mockVerifier(this.user, this.opts.mockSecret);
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
