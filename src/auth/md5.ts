// PostgreSQL's MD5 password scheme: the stored hash, the salted challenge response, and its timing-safe check.

import { createHash, timingSafeEqual } from 'node:crypto';

// What pg_authid holds for an MD5 password: 'md5' followed by 32 lowercase hex digits.
const MD5_HASH_RE = /^md5[0-9a-f]{32}$/;

function md5Hex(...parts: Array<string | Buffer>): string {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** True when s has the shape of a stored MD5 password ('md5' + 32 lowercase hex digits). */
export function isMd5Hash(s: string): boolean {
  return MD5_HASH_RE.test(s);
}

/** 'md5' + hex(md5(password || user)), as pg_authid stores it (strings taken as UTF-8). */
export function md5PasswordHash(user: string, password: string): string {
  return 'md5' + md5Hex(Buffer.from(password, 'utf8'), Buffer.from(user, 'utf8'));
}

/**
 * The answer to an AuthenticationMD5Password challenge: 'md5' + hex(md5(hex-part-of-hash || salt)).
 * Knowing the stored hash is enough to answer, which is what lets the gateway log in with a hash only.
 */
export function md5Response(stored: { password: string } | { hash: string }, user: string, salt: Buffer): string {
  const hash = 'password' in stored ? md5PasswordHash(user, stored.password) : stored.hash;
  if (!isMd5Hash(hash)) throw new TypeError('not an MD5 password hash');
  return 'md5' + md5Hex(hash.slice(3), salt);
}

/** Checks a client's MD5 response against the stored hash in constant time; false for malformed input. */
export function verifyMd5Response(storedHash: string, salt: Buffer, response: string): boolean {
  if (!isMd5Hash(storedHash)) return false;
  const expected = Buffer.from(md5Response({ hash: storedHash }, '', salt), 'latin1');
  const got = Buffer.from(response, 'utf8');
  // Lengths are public (always 35 for a well-formed answer), so bailing out early leaks nothing.
  if (got.length !== expected.length) return false;
  return timingSafeEqual(got, expected);
}
