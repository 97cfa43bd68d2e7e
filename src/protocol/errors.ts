// SQLSTATE codes the gateway itself raises, and PgError: an error that knows how to become an ErrorResponse.

import { errorResponse, type ErrorFields } from './messages.js';

/** SQLSTATE codes used by switchyard, named as in PostgreSQL's errcodes.txt. */
export const SQLSTATE = {
  CONNECTION_EXCEPTION: '08000',
  CONNECTION_FAILURE: '08006',
  SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: '08001',
  PROTOCOL_VIOLATION: '08P01',
  INVALID_AUTHORIZATION_SPECIFICATION: '28000',
  INVALID_PASSWORD: '28P01',
  FEATURE_NOT_SUPPORTED: '0A000',
  PROGRAM_LIMIT_EXCEEDED: '54000',
  TOO_MANY_CONNECTIONS: '53300',
  QUERY_CANCELED: '57014',
  IDLE_IN_TRANSACTION_TIMEOUT: '25P03',
  ADMIN_SHUTDOWN: '57P01',
  CANNOT_CONNECT_NOW: '57P03',
  INVALID_PARAMETER_VALUE: '22023',
  INTERNAL_ERROR: 'XX000',
} as const;

export type Severity = 'ERROR' | 'FATAL';

/** An error destined for a client: carries a real SQLSTATE and renders as an ErrorResponse. */
export class PgError extends Error {
  readonly code: string;
  readonly severity: Severity;
  readonly detail?: string;
  readonly hint?: string;

  constructor(code: string, message: string, opts: { severity?: Severity; detail?: string; hint?: string } = {}) {
    super(message);
    this.name = 'PgError';
    this.code = code;
    this.severity = opts.severity ?? 'FATAL';
    this.detail = opts.detail;
    this.hint = opts.hint;
  }

  toFields(): ErrorFields {
    return { severity: this.severity, code: this.code, message: this.message, detail: this.detail, hint: this.hint };
  }

  toMessage(): Buffer {
    return errorResponse(this.toFields());
  }
}

/** A failed login, worded exactly as PostgreSQL words it, whether or not the user exists. */
export function authFailed(user: string): PgError {
  return new PgError(SQLSTATE.INVALID_PASSWORD, `password authentication failed for user "${user}"`);
}

export function protocolViolation(message: string): PgError {
  return new PgError(SQLSTATE.PROTOCOL_VIOLATION, message);
}
