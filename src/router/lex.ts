// Where SQL's quoted things end — strings, quoted identifiers, dollar quotes, comments — for code that must not parse: the cache key, statement trimming, the gateway's own SET.

/*
 * These follow PostgreSQL's scanner (scan.l) with standard_conforming_strings on, as libpg-query does:
 * in '...' a backslash is an ordinary character and '' is a quote; E'...' also takes \' and \\. Every
 * skip function is given the index of the construct's first character and returns the index just after
 * it, or the text's length when it is not terminated (the parser then rejects the text anyway).
 */

export const CH = {
  tab: 0x09,
  nl: 0x0a,
  cr: 0x0d,
  space: 0x20,
  dquote: 0x22,
  dollar: 0x24,
  amp: 0x26,
  quote: 0x27,
  star: 0x2a,
  comma: 0x2c,
  minus: 0x2d,
  dot: 0x2e,
  slash: 0x2f,
  semi: 0x3b,
  backslash: 0x5c,
} as const;

/** PostgreSQL's whitespace: space, \t, \n, \v, \f, \r. */
export function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** A letter, `_` or any non-ASCII character: what an unquoted identifier may start with. */
export function isIdentStart(c: number): boolean {
  const l = c | 0x20;
  return (l >= 0x61 && l <= 0x7a) || c === 0x5f || c >= 0x80;
}

/** What an unquoted identifier continues with: also digits and `$`. False for NaN (past the end). */
export function isIdentChar(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === CH.dollar;
}

/** `--` to the end of the line (the line break stays outside). */
export function skipLineComment(s: string, i: number): number {
  for (i += 2; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === CH.nl || c === CH.cr) return i;
  }
  return i;
}

/** `/* ... *\/`, which nests in SQL. */
export function skipBlockComment(s: string, i: number): number {
  let depth = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === CH.slash && s.charCodeAt(i + 1) === CH.star) {
      depth++;
      i += 2;
    } else if (c === CH.star && s.charCodeAt(i + 1) === CH.slash) {
      i += 2;
      if (--depth === 0) return i;
    } else i++;
  }
  return i;
}

/** Whether a comment starts at i. */
export function commentAt(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  const d = s.charCodeAt(i + 1);
  return (c === CH.minus && d === CH.minus) || (c === CH.slash && d === CH.star);
}

/** A comment starting at i (see commentAt). */
export function skipComment(s: string, i: number): number {
  return s.charCodeAt(i) === CH.minus ? skipLineComment(s, i) : skipBlockComment(s, i);
}

/** The end of '...' or "..." (the quote character is the one at i), a doubled quote standing for itself; -1 when not terminated. */
export function quotedEnd(s: string, i: number): number {
  const q = s.charCodeAt(i);
  for (i++; i < s.length; i++) {
    if (s.charCodeAt(i) !== q) continue;
    if (s.charCodeAt(i + 1) !== q) return i + 1;
    i++;
  }
  return -1;
}

/** '...' or "..." (see quotedEnd). */
export function skipQuoted(s: string, i: number): number {
  const end = quotedEnd(s, i);
  return end < 0 ? s.length : end;
}

/** E'...': like '...', and a backslash escapes the next character. */
export function skipEscapeString(s: string, i: number): number {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === CH.backslash) i++;
    else if (c === CH.quote) {
      if (s.charCodeAt(i + 1) !== CH.quote) return i + 1;
      i++;
    }
  }
  return i;
}

/**
 * The end of the opening `$tag$` of a dollar-quoted string at i, or -1 when the `$` at i does not open
 * one (a `$1` parameter, or a lone `$`). A tag is empty or an identifier without `$`.
 */
export function dollarTagEnd(s: string, i: number): number {
  let j = i + 1;
  const first = s.charCodeAt(j);
  if (first === CH.dollar) return j + 1;
  if (!isIdentStart(first)) return -1;
  for (j++; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === CH.dollar) return j + 1;
    if (!isIdentStart(c) && !isDigit(c)) return -1;
  }
  return -1;
}

/** The end of a dollar-quoted string whose opening tag s[i, bodyStart) has been read; -1 when not terminated. */
export function dollarEnd(s: string, i: number, bodyStart: number): number {
  const end = s.indexOf(s.slice(i, bodyStart), bodyStart);
  return end < 0 ? -1 : end + (bodyStart - i);
}

/** The rest of a dollar-quoted string (see dollarEnd). */
export function skipDollarBody(s: string, i: number, bodyStart: number): number {
  const end = dollarEnd(s, i, bodyStart);
  return end < 0 ? s.length : end;
}

/** Digits of a base from j, with single underscores between them (1_000); where they end. */
function digitsEnd(s: string, j: number, isDigitOf: (c: number) => boolean): number {
  while (j < s.length) {
    const c = s.charCodeAt(j);
    if (isDigitOf(c)) j++;
    else if (c === 0x5f && isDigitOf(s.charCodeAt(j - 1)) && isDigitOf(s.charCodeAt(j + 1))) j++;
    else break;
  }
  return j;
}

const isHex = (c: number): boolean => isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
const isOct = (c: number): boolean => c >= 0x30 && c <= 0x37;
const isBin = (c: number): boolean => c === 0x30 || c === 0x31;

/**
 * A numeric constant at i (a digit, or `.` before a digit) as PostgreSQL's scanner reads one: decimal
 * with fraction and exponent, or 0x/0o/0b, `_` between digits. What follows it unread (as in `1e`,
 * `0x`, `1_`) makes PostgreSQL reject the text ("trailing junk").
 */
export function skipNumber(s: string, i: number): number {
  const base = s.charCodeAt(i + 1) | 0x20;
  if (s.charCodeAt(i) === 0x30 && (base === 0x78 || base === 0x6f || base === 0x62)) {
    const isDigitOf = base === 0x78 ? isHex : base === 0x6f ? isOct : isBin;
    if (isDigitOf(s.charCodeAt(i + 2))) return digitsEnd(s, i + 2, isDigitOf);
    return i + 1;
  }
  let j = digitsEnd(s, i, isDigit);
  // `1..5` is the integer 1 followed by `..` (PL/pgSQL ranges), as in PostgreSQL's scanner.
  if (s.charCodeAt(j) === CH.dot && s.charCodeAt(j + 1) !== CH.dot) j = digitsEnd(s, j + 1, isDigit);
  if ((s.charCodeAt(j) | 0x20) === 0x65) {
    const sign = s.charCodeAt(j + 1);
    const at = sign === 0x2b || sign === CH.minus ? j + 2 : j + 1;
    if (isDigit(s.charCodeAt(at))) j = digitsEnd(s, at, isDigit);
  }
  return j;
}

/** The end of the unquoted identifier or keyword starting at i. */
export function skipWord(s: string, i: number): number {
  for (i++; i < s.length && isIdentChar(s.charCodeAt(i)); i++);
  return i;
}

/**
 * Where the next token after i ends: a string with its prefix (E'', B'', X'', N'', U&''), a quoted
 * identifier (also U&""), a dollar-quoted string, a number, a parameter, a word, or one other character.
 * i must be at a token's first character (not whitespace, not a comment).
 */
export function skipToken(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === CH.quote || c === CH.dquote) return skipQuoted(s, i);
  if (c === CH.dollar) {
    const body = dollarTagEnd(s, i);
    if (body > 0) return skipDollarBody(s, i, body);
    let j = i + 1;
    while (isDigit(s.charCodeAt(j))) j++;
    return j;
  }
  if (isDigit(c) || (c === CH.dot && isDigit(s.charCodeAt(i + 1)))) return skipNumber(s, i);
  if (isIdentStart(c)) {
    const end = skipWord(s, i);
    const next = s.charCodeAt(end);
    if (end === i + 1) {
      const l = c | 0x20;
      if (next === CH.quote && l === 0x65) return skipEscapeString(s, end);
      if (next === CH.quote && (l === 0x62 || l === 0x78 || l === 0x6e)) return skipQuoted(s, end);
      if (l === 0x75 && next === CH.amp) {
        const q = s.charCodeAt(end + 1);
        if (q === CH.quote || q === CH.dquote) return skipQuoted(s, end + 1);
      }
    }
    return end;
  }
  return i + 1;
}

/** Whether s holds only ASCII, so that UTF-8 byte offsets are string indexes. */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * A statement's text without the whitespace and comments around it and without trailing `;`s: what
 * is kept to run it again elsewhere. A trailing `--` comment must go, or it would swallow whatever is
 * joined after it.
 */
export function trimStatement(s: string): string {
  let from = -1;
  let to = 0;
  for (let i = 0; i < s.length; ) {
    const c = s.charCodeAt(i);
    if (isSpace(c)) i++;
    else if (commentAt(s, i)) i = skipComment(s, i);
    else if (c === CH.semi) i++;
    else {
      if (from < 0) from = i;
      i = skipToken(s, i);
      to = i;
    }
  }
  return from < 0 ? '' : s.slice(from, to);
}
