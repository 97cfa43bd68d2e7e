// Turns a client's startup parameters into the session settings the gateway must carry to the server.

import { PgError, SQLSTATE } from '../protocol/errors.js';

/** Parameters the gateway consumes itself instead of carrying them to the server. */
const CONSUMED = new Set(['user', 'database', 'options', 'replication']);

/** Split an `options` value the way PostgreSQL does: whitespace separates, a backslash escapes the next character. */
export function splitOptions(options: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

function setting(arg: string, into: Map<string, string>): void {
  const eq = arg.indexOf('=');
  if (eq <= 0) {
    throw new PgError(SQLSTATE.INVALID_PARAMETER_VALUE, `invalid setting "${arg}" in the options startup parameter`, {
      hint: 'write settings as -c name=value',
    });
  }
  // PostgreSQL accepts '-' in place of '_' in names given on the command line.
  into.set(arg.slice(0, eq).replace(/-/g, '_'), arg.slice(eq + 1));
}

/** Settings named in `options` (-c name=value, --name=value). Other server switches are refused. */
export function parseOptions(options: string): Map<string, string> {
  const out = new Map<string, string>();
  const args = splitOptions(options);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-c') {
      const next = args[++i];
      if (next === undefined) throw new PgError(SQLSTATE.INVALID_PARAMETER_VALUE, '-c without a setting in the options startup parameter');
      setting(next, out);
    } else if (a.startsWith('-c')) setting(a.slice(2), out);
    else if (a.startsWith('--')) setting(a.slice(2), out);
    else {
      throw new PgError(SQLSTATE.FEATURE_NOT_SUPPORTED, `the options startup parameter "${a}" is not supported through switchyard`, {
        hint: 'only -c name=value and --name=value settings can be carried to the server',
      });
    }
  }
  return out;
}

/**
 * The settings a session starts with, keyed by lower-cased name (GUC names are case-insensitive):
 * first the ones from `options`, then every plain startup parameter the gateway does not consume, which
 * win over `options` as they do in PostgreSQL (process_startup_options applies them last).
 * Protocol options (`_pq_.*`) are returned separately: the gateway answers them with NegotiateProtocolVersion.
 */
export function startupSettings(params: Map<string, string>): { settings: Map<string, string>; protocolOptions: string[] } {
  const settings = new Map<string, string>();
  const protocolOptions: string[] = [];
  const options = params.get('options');
  if (options) for (const [k, v] of parseOptions(options)) settings.set(k.toLowerCase(), v);
  for (const [k, v] of params) {
    if (k.startsWith('_pq_.')) protocolOptions.push(k);
    else if (!CONSUMED.has(k)) settings.set(k.toLowerCase(), v);
  }
  return { settings, protocolOptions };
}

/** True when the startup packet asks for a replication connection. */
export function wantsReplication(params: Map<string, string>): boolean {
  const r = params.get('replication');
  if (r === undefined) return false;
  return !['false', 'off', 'no', '0', 'f', 'n'].includes(r.toLowerCase());
}
