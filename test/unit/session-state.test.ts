// Unit tests for transaction pooling's pure parts: shared statement names, settings differences, the probe row, message renaming.

import test from 'node:test';
import assert from 'node:assert/strict';
import { StatementRegistry, ServerState, settingsDelta, setConfigSql, readProbe, textArray, quoteIdent } from '../../src/session/state.js';
import * as m from '../../src/protocol/messages.js';

test('StatementRegistry: the same text and types share a name; different ones never do, even after eviction', () => {
  const r = new StatementRegistry(3);
  const a = r.nameFor('SELECT 1', []);
  assert.equal(r.nameFor('SELECT 1', []), a);
  const b = r.nameFor('SELECT 1', [23]);
  assert.notEqual(b, a, 'parameter types are part of the key');
  const c = r.nameFor('SELECT $1', [23]);
  const d = r.nameFor('SELECT 2', []); // evicts 'SELECT 1'
  assert.equal(r.size, 3);
  const again = r.nameFor('SELECT 1', []);
  assert.equal(new Set([a, b, c, d, again]).size, 5, 'an evicted key gets a fresh name; names are never reused');
});

test('ServerState.touch keeps least recently used first', () => {
  const s = new ServerState();
  for (const n of ['a', 'b', 'c']) s.prepared.set(n, true);
  assert.equal(s.touch('a'), true);
  assert.equal(s.touch('zz'), false);
  assert.deepEqual([...s.prepared.keys()], ['b', 'c', 'a']);
  s.clear();
  assert.equal(s.prepared.size + s.settings.size + s.sqlPrepared.size, 0);
});

test('settingsDelta sends only the difference', () => {
  const client = new Map([
    ['search_path', 'a'],
    ['timezone', 'UTC'],
  ]);
  assert.equal(settingsDelta(client, new Map(client)), undefined);
  assert.deepEqual(
    settingsDelta(
      client,
      new Map([
        ['search_path', 'b'],
        ['timezone', 'UTC'],
        ['myapp.tenant', 'x'],
      ]),
    ),
    { resets: ['myapp.tenant'], sets: [['search_path', 'a']] },
  );
  assert.deepEqual(settingsDelta(new Map(), new Map([['a', '1']])), { resets: ['a'], sets: [] });
  assert.deepEqual(settingsDelta(new Map([['a', '1']]), new Map()), { resets: [], sets: [['a', '1']] });
  assert.equal(setConfigSql(2), 'SELECT pg_catalog.set_config($1, $2, false), pg_catalog.set_config($3, $4, false)');
});

test('readProbe turns the probe row into settings, statements and pins', () => {
  const p = readProbe(['{"search_path": "a, b", "myapp.x": null}', '{"p1": "PREPARE p1 AS SELECT 1"}', '1', '0', '2', 't', 'f', '["sy_1","sy_2"]', '["chan"]']);
  assert.deepEqual(p.listening, ['chan']);
  assert.deepEqual([...p.settings], [
    ['search_path', 'a, b'],
    ['myapp.x', null],
  ]);
  assert.deepEqual([...p.sqlPrepared], [['p1', 'PREPARE p1 AS SELECT 1']]);
  assert.deepEqual(p.protocolPrepared, ['sy_1', 'sy_2']);
  assert.deepEqual(p.pins, ['advisory_lock', 'cursor_with_hold', 'set_role']);
  const empty = readProbe([null, null, '0', '0', '0', 'f', 'f', null, null]);
  assert.equal(empty.settings.size + empty.sqlPrepared.size + empty.protocolPrepared.length + empty.listening.length + empty.pins.length, 0);
});

test('textArray and quoteIdent escape what needs escaping', () => {
  assert.equal(textArray(['a', 'b"c', 'd\\e']), '{"a","b\\"c","d\\\\e"}');
  assert.equal(textArray([]), '{}');
  assert.equal(quoteIdent('My "chan"'), '"My ""chan"""');
});

test('extended-protocol readers and renaming keep every other byte', () => {
  const parse = m.parse('stmt1', 'SELECT $1::int', [23]);
  assert.deepEqual(m.readParse(parse), { name: 'stmt1', sql: 'SELECT $1::int', paramTypes: [23] });

  // Bind: portal, statement, then formats/params/result formats that must survive the rename untouched.
  const rest = Buffer.from([0, 1, 0, 1, 0, 1, 0, 0, 0, 2, 0x34, 0x32, 0, 0]);
  const bind = m.frame('B', Buffer.concat([Buffer.from('portal\0stmt1\0'), rest]));
  assert.equal(m.readBindStatement(bind), 'stmt1');
  const renamed = m.renameBind(bind, 'sy_77');
  assert.equal(m.readBindStatement(renamed), 'sy_77');
  assert.equal(renamed.readInt32BE(1), renamed.length - 1, 'length word rewritten');
  assert.deepEqual(renamed.subarray(renamed.length - rest.length), rest);
  assert.deepEqual(renamed.subarray(5, 12), Buffer.from('portal\0'));

  const describe = m.frame('D', Buffer.from('Sstmt1\0'));
  assert.deepEqual(m.readTarget(describe), { kind: 0x53, name: 'stmt1' });
  const d2 = m.renameTarget(describe, 'sy_1');
  assert.deepEqual(m.readTarget(d2), { kind: 0x53, name: 'sy_1' });
  assert.deepEqual(m.readTarget(m.close('P', 'p')), { kind: 0x50, name: 'p' });

  assert.equal(m.readQuery(m.query('SELECT 1')), 'SELECT 1');
  const notification = m.frame('A', Buffer.concat([Buffer.from([0, 0, 0, 42]), Buffer.from('chan\0payload ✓\0')]));
  assert.deepEqual(m.readNotification(notification), { pid: 42, channel: 'chan', payload: 'payload ✓' });

  assert.throws(() => m.readParse(m.frame('P', Buffer.from('noterminator'))), RangeError);
  assert.throws(() => m.readBindStatement(m.frame('B', Buffer.from('portal\0'))), RangeError);
});
