// Unit tests for PostgreSQL's MD5 password hash and challenge response.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { isMd5Hash, md5PasswordHash, md5Response, verifyMd5Response } from '../../src/auth/md5.js';

const md5hex = (...parts: Array<string | Buffer>) => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

test('md5PasswordHash is md5 + md5(password || user), as pg_authid stores it', () => {
  // The widely published pg_authid value for user postgres with password postgres.
  assert.equal(md5PasswordHash('postgres', 'postgres'), 'md53175bce1d3201d16594cebf9d7eb3f9d');
  // The PostgreSQL docs' formula, computed independently: concat('md5', md5(password || user)).
  assert.equal(md5PasswordHash('alice', 'secret'), 'md5' + md5hex('secretalice'));
  // Argument order matters: user first, password second.
  assert.notEqual(md5PasswordHash('secret', 'alice'), md5PasswordHash('alice', 'secret'));
  // Non-ASCII is hashed as UTF-8.
  assert.equal(md5PasswordHash('jöe', 'pässword'), 'md5' + md5hex(Buffer.from('pässwordjöe', 'utf8')));
  assert.ok(isMd5Hash(md5PasswordHash('a', 'b')));
});

test('md5Response is md5 + md5(hex-part-of-hash || salt), from a password or a stored hash', () => {
  const salt = Buffer.from([0x01, 0x02, 0xfe, 0xff]);
  const hash = md5PasswordHash('postgres', 'postgres');
  const expected = 'md5' + md5hex(Buffer.from('3175bce1d3201d16594cebf9d7eb3f9d'), salt);
  assert.equal(md5Response({ hash }, 'postgres', salt), expected);
  assert.equal(md5Response({ password: 'postgres' }, 'postgres', salt), expected);
  // Different salt, different answer.
  assert.notEqual(md5Response({ hash }, 'postgres', Buffer.from([1, 2, 3, 4])), expected);
  assert.throws(() => md5Response({ hash: 'not a hash' }, 'postgres', salt), TypeError);
});

test('md5Response agrees with node-postgres, an independent client implementation', async () => {
  const require = createRequire(import.meta.url);
  const utils = require('pg/lib/crypto/utils') as {
    postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
  };
  for (const [user, password] of [['postgres', 'postgres'], ['app', 'pä$$:w0rd'], ['', '']]) {
    const salt = Buffer.from([9, 8, 7, 6]);
    assert.equal(md5Response({ password: password! }, user!, salt), await utils.postgresMd5PasswordHash(user!, password!, salt));
  }
});

test('verifyMd5Response accepts the right answer only', () => {
  const salt = Buffer.from('abcd');
  const hash = md5PasswordHash('bob', 'builder');
  const good = md5Response({ password: 'builder' }, 'bob', salt);
  assert.equal(verifyMd5Response(hash, salt, good), true);
  assert.equal(verifyMd5Response(hash, salt, md5Response({ password: 'wrong' }, 'bob', salt)), false);
  assert.equal(verifyMd5Response(hash, Buffer.from('abce'), good), false, 'replay with another salt');
  assert.equal(verifyMd5Response(hash, salt, good.toUpperCase()), false);
  assert.equal(verifyMd5Response(hash, salt, good.slice(0, -1)), false);
  assert.equal(verifyMd5Response(hash, salt, good + 'x'), false);
  assert.equal(verifyMd5Response(hash, salt, ''), false);
  assert.equal(verifyMd5Response(hash, salt, hash), false, 'the stored hash itself is not an answer');
  // A non-ASCII character whose low byte matches must not slip through a lossy encoding.
  const last = good.charCodeAt(good.length - 1);
  assert.equal(verifyMd5Response(hash, salt, good.slice(0, -1) + String.fromCharCode(0x100 + last)), false);
  assert.equal(verifyMd5Response('SCRAM-SHA-256$...', salt, good), false, 'not an md5 secret');
});

test('isMd5Hash checks the pg_authid shape', () => {
  assert.equal(isMd5Hash('md5' + 'a'.repeat(32)), true);
  assert.equal(isMd5Hash('md5' + 'A'.repeat(32)), false);
  assert.equal(isMd5Hash('md5' + 'a'.repeat(31)), false);
  assert.equal(isMd5Hash('a'.repeat(35)), false);
});
