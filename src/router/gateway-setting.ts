// The gateway's own setting, SET / RESET / SHOW switchyard.route, recognised from the tokens of a text without the parser.

import { CH, commentAt, isSpace, skipComment, skipToken } from './lex.js';

/*
 * Not the parser: `SET switchyard.route = primary` is a syntax error to PostgreSQL (PRIMARY is a
 * reserved word), yet it is the form users write. Every statement of the text is looked at, so that a
 * gateway statement hidden among others is refused rather than sent to a server, which would accept
 * any switchyard.* name as a placeholder setting and do nothing.
 */

export type GatewaySetting = { set: 'primary' | 'replica' | 'auto' } | { show: true };
export type GatewayMatch = { gateway: GatewaySetting } | { gatewayError: string };

const NAME = 'switchyard.route';
const VALUES: ReadonlySet<string> = new Set(['primary', 'replica', 'auto']);

/** One token: its text, and for words and quoted identifiers the identifier it stands for (case-folded). */
interface Token {
  text: string;
  ident?: string;
}

/** The text's statements as token lists, without comments, whitespace and empty statements. */
function statements(sql: string): Token[][] {
  const out: Token[][] = [];
  let cur: Token[] = [];
  for (let i = 0; i < sql.length; ) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (commentAt(sql, i)) {
      i = skipComment(sql, i);
      continue;
    }
    if (c === CH.semi) {
      if (cur.length > 0) out.push(cur);
      cur = [];
      i++;
      continue;
    }
    const end = skipToken(sql, i);
    const text = sql.slice(i, end);
    if (c === CH.dquote) cur.push({ text, ident: text.slice(1, -1).replaceAll('""', '"').toLowerCase() });
    else if (/^[A-Za-z_][A-Za-z0-9_$]*$/.test(text)) cur.push({ text, ident: text.toLowerCase() });
    else cur.push({ text });
    i = end;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** A dotted name starting at tokens[i]: the name (lower-case) and the index after it. */
function dottedName(tokens: Token[], i: number): { name: string; next: number } | undefined {
  const parts: string[] = [];
  for (;;) {
    const t = tokens[i];
    if (t?.ident === undefined) return undefined;
    parts.push(t.ident);
    i++;
    if (tokens[i]?.text !== '.') return { name: parts.join('.'), next: i };
    i++;
  }
}

/** A string constant's value, or a word's or quoted identifier's (as SET takes them); undefined for anything else. */
function value(t: Token): string | undefined {
  if (t.ident !== undefined) return t.ident;
  if (t.text.length >= 2 && t.text.charCodeAt(0) === CH.quote && t.text.endsWith("'")) return t.text.slice(1, -1).replaceAll("''", "'").toLowerCase();
  return undefined;
}

/** The gateway's reading of one statement; undefined when it is not about a switchyard.* setting. */
function statement(tokens: Token[]): GatewayMatch | undefined {
  const verb = tokens[0]!.ident;
  if (verb !== 'set' && verb !== 'reset' && verb !== 'show') return undefined;
  let i = 1;
  if (verb === 'set' && (tokens[1]?.ident === 'session' || tokens[1]?.ident === 'local') && tokens[1].text.charCodeAt(0) !== CH.dquote) i = 2;
  const n = dottedName(tokens, i);
  if (n === undefined || !n.name.startsWith('switchyard.')) return undefined;
  if (n.name !== NAME) return { gatewayError: `unrecognized gateway setting "${n.name}": the only one is ${NAME}` };
  const rest = tokens.slice(n.next);
  const usage = `use SET ${NAME} = primary | replica | auto, RESET ${NAME} or SHOW ${NAME}`;
  if (verb === 'show') return rest.length === 0 ? { gateway: { show: true } } : { gatewayError: `invalid SHOW ${NAME}: ${usage}` };
  if (verb === 'reset') return rest.length === 0 ? { gateway: { set: 'auto' } } : { gatewayError: `invalid RESET ${NAME}: ${usage}` };
  const to = rest[0];
  if (to === undefined || (to.text !== '=' && to.ident !== 'to') || rest.length !== 2) {
    return { gatewayError: `invalid SET ${NAME}: ${usage}` };
  }
  const v = value(rest[1]!);
  if (v === 'default' && rest[1]!.text.toLowerCase() === 'default') return { gateway: { set: 'auto' } }; // the word DEFAULT, not 'default'
  if (v !== undefined && VALUES.has(v)) return { gateway: { set: v as 'primary' | 'replica' | 'auto' } };
  return { gatewayError: `invalid value for ${NAME}: ${rest[1]!.text} (use primary, replica or auto)` };
}

/**
 * The gateway statement in sql, if any: the setting when sql is exactly one such statement; an error
 * when one is mixed with other statements or malformed; undefined when sql has none (route it as usual).
 */
export function gatewaySetting(sql: string): GatewayMatch | undefined {
  if (!/switchyard/i.test(sql)) return undefined;
  const stmts = statements(sql);
  let found: GatewayMatch | undefined;
  for (const s of stmts) {
    const m = statement(s);
    if (m === undefined) continue;
    if (stmts.length > 1) {
      return { gatewayError: `${NAME} must be set or shown in a query of its own: send it without other statements` };
    }
    found = m;
  }
  return found;
}
