// The routing cache's key for a SQL text: the text with its constants replaced, so that queries differing only in constants share one entry.

import { CH, commentAt, dollarEnd, dollarTagEnd, isDigit, isIdentChar, isIdentStart, isSpace, quotedEnd, skipComment, skipEscapeString, skipNumber, skipQuoted, skipWord } from './lex.js';

/*
 * Placeholders start with NUL, which a query text can never hold (the protocol ends strings with it),
 * so a key with a placeholder never equals a text, and the mapping is one-to-one apart from the
 * constants: everything else — words, quoted identifiers, comments, whitespace, $1 parameters — is
 * copied as it is. Constants are numbers, '...' strings (also N'', B'', X'') and dollar-quoted strings.
 *
 * E'...' and U&'...' (with its UESCAPE '.') stay as they are: their escapes can make a text fail to
 * parse (E'\uZZZZ'), and two texts with one key must parse alike. A text with a string that does not end has no key (the text
 * itself is returned): `SELECT 'abc` must not share the key of `SELECT 'abc'`.
 *
 * Parentheses holding only a list of two or more constants, as in `IN (1, 2, 3)`, a row of VALUES or
 * `f(1, 'a')`, become one list placeholder: the length of such a list never changes where a statement
 * goes, and a 5000-element IN list then shares the key of a 3-element one. (A few grammar rules fix a
 * list's length — OVERLAPS takes pairs — so `(1, 2, 3) OVERLAPS (4, 5)`, a syntax error, shares the key
 * of a valid text and is routed as it; the server rejects it wherever it runs.)
 *
 * So two texts with one key have the same statements, function names, clauses and options: only the
 * values of constants and the lengths of constant lists differ. A decision that reads a constant — a SET
 * value, set_config's arguments, a statement's text kept for replay — must therefore never be stored
 * under the key; the router keeps those under the exact text.
 */
const NUMBER = '\0n';
const STRING = '\0s';
const LIST = '\0l';
/** What the scanning helpers below return for a string that does not end. */
const UNTERMINATED = -2;

/** The cache key of sql; sql itself when it holds no constant, or a string that does not end. */
export function cacheKey(sql: string): string {
  let out = '';
  let copied = 0; // sql[0, copied) is in out

  const replace = (from: number, to: number, placeholder: string): void => {
    out += sql.slice(copied, from) + placeholder;
    copied = to;
  };

  /**
   * A word at w; where to go on. A one-letter word glued to a quote is a string prefix: E'' and U&''
   * (and the identifier U&"") are kept whole; after N, B or X the string is a constant like any other.
   */
  const word = (w: number): number => {
    const end = skipWord(sql, w);
    if (end - w === 7 && sql.slice(w, end).toLowerCase() === 'uescape') {
      // U&'...' UESCAPE '!': the escape character decides whether the string before it parses.
      let q = end;
      while (isSpace(sql.charCodeAt(q))) q++;
      return sql.charCodeAt(q) === CH.quote ? skipQuoted(sql, q) : end;
    }
    if (end - w !== 1) return end;
    const letter = sql.charCodeAt(w) | 0x20;
    const next = sql.charCodeAt(end);
    if (letter === 0x65 && next === CH.quote) return kept(skipEscapeString(sql, end));
    if (letter === 0x75 && next === CH.amp) {
      const q = sql.charCodeAt(end + 1);
      if (q === CH.quote || q === CH.dquote) return kept(skipQuoted(sql, end + 1));
    }
    return end;
  };

  /**
   * After a string kept whole: a quoted string continuing it across a line break belongs to it and is
   * read by its rules (an E'' continuation treats \' as a quote), which this key does not follow.
   */
  let noKey = false;
  const kept = (end: number): number => {
    let j = end;
    let newline = false;
    for (;;) {
      const c = sql.charCodeAt(j);
      if (c === 0x0a || c === 0x0d) newline = true;
      else if (!isSpace(c)) break;
      j++;
    }
    if (newline || sql.startsWith('--', j)) noKey = true;
    return end;
  };

  let i = 0;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
    } else if (commentAt(sql, i)) {
      i = skipComment(sql, i);
    } else if (c === CH.quote || c === CH.dollar) {
      const end = constantEnd(sql, i);
      if (end === UNTERMINATED) return sql;
      if (end < 0) {
        for (i++; isDigit(sql.charCodeAt(i)); i++); // $1: a parameter, kept
        continue;
      }
      replace(i, end, STRING);
      i = end;
    } else if (c === CH.dquote) {
      i = skipQuoted(sql, i);
    } else if (c === 0x28 /* ( */) {
      const end = constantListEnd(sql, i + 1);
      if (end === UNTERMINATED) return sql;
      if (end > 0) {
        replace(i + 1, end - 1, LIST);
        i = end;
      } else i++;
    } else if (isDigit(c) || (c === CH.dot && isDigit(sql.charCodeAt(i + 1)))) {
      const end = skipNumber(sql, i);
      replace(i, end, NUMBER);
      i = end;
    } else if (isIdentStart(c)) {
      i = word(i);
    } else {
      i++;
    }
  }
  return copied === 0 || noKey ? sql : out + sql.slice(copied);
}

/** The end of the '...' or $tag$...$tag$ constant at i; -1 when the `$` opens none (a parameter); UNTERMINATED. */
function constantEnd(sql: string, i: number): number {
  if (sql.charCodeAt(i) === CH.quote) {
    const end = quotedEnd(sql, i);
    return end < 0 ? UNTERMINATED : end;
  }
  const body = dollarTagEnd(sql, i);
  if (body < 0) return -1;
  const end = dollarEnd(sql, i, body);
  return end < 0 ? UNTERMINATED : end;
}

/**
 * When sql[from, ...) is a list of two or more constants (numbers, optionally signed, and strings)
 * separated by commas, then `)`: the index after the `)`. Otherwise -1 (or UNTERMINATED).
 */
function constantListEnd(sql: string, from: number): number {
  let n = 0;
  let i = from;
  for (;;) {
    while (isSpace(sql.charCodeAt(i))) i++;
    let c = sql.charCodeAt(i);
    if (c === 0x2b || c === CH.minus) c = sql.charCodeAt(++i);
    if (isDigit(c) || (c === CH.dot && isDigit(sql.charCodeAt(i + 1)))) {
      i = skipNumber(sql, i);
      if (isIdentChar(sql.charCodeAt(i)) || sql.charCodeAt(i) === CH.dot) return -1; // trailing junk: not a list
    } else if (c === CH.quote || c === CH.dollar) {
      const end = constantEnd(sql, i);
      if (end < 0) return end === UNTERMINATED ? UNTERMINATED : -1;
      i = end;
    } else {
      return -1;
    }
    n++;
    while (isSpace(sql.charCodeAt(i))) i++;
    c = sql.charCodeAt(i);
    if (c === 0x29 /* ) */) return n >= 2 ? i + 1 : -1;
    if (c !== CH.comma) return -1;
    i++;
  }
}
