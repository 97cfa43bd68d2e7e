// Unit tests for the read/write router (src/router): a table of statements and where they go, the decision cache and its key, classifyPrepared, splitStatements.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Router, loadParser, splitStatements, type Decision, type RouteTarget } from '../../src/router/router.js';
import { cacheKey } from '../../src/router/cache-key.js';

before(async () => {
  await loadParser();
});

/** What a case expects. Fields not given must be absent (replay: empty); replay 'self' is the statement itself without its ';'. */
type Expect = {
  target: RouteTarget;
  /** A substring of the reason. */
  reason?: string;
  txn?: Decision['txn'];
  snapshot?: true;
  readOnly?: true;
  replay?: string[] | 'self';
  inexact?: string;
  execute?: string[];
  hint?: 'primary' | 'replica';
  gateway?: Decision['gateway'];
  /** A substring of the message. */
  gatewayError?: string;
};

const P = 'primary';
const R = 'replica';
const A = 'any';

const IN_5000 = `SELECT * FROM t WHERE id IN (${Array.from({ length: 5000 }, (_, i) => i + 1).join(',')})`;

const cases: Array<[string, RouteTarget | Expect]> = [
  // ---------------------------------------------------------------- plain reads
  ['SELECT 1', { target: R, reason: 'read' }],
  ['select * from t', R],
  ['sElEcT a FrOm t WhErE b = 1', R],
  ['SELECT a, b FROM t JOIN u USING (id) LEFT JOIN v ON v.id = t.id WHERE t.x > 5', R],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE u.flag)', R],
  ['SELECT count(*), sum(x), avg(x), min(x), max(x), bool_and(f), array_agg(x) FROM t GROUP BY y HAVING count(*) > 1', R],
  ['SELECT row_number() OVER (PARTITION BY a ORDER BY b), rank() OVER w, dense_rank() OVER w, lag(x, 1) OVER w, lead(x) OVER w FROM t WINDOW w AS (ORDER BY b)', R],
  ['SELECT first_value(a) OVER (), last_value(a) OVER (), ntile(4) OVER (ORDER BY a), percent_rank() OVER (ORDER BY a) FROM t', R],
  ['SELECT array_agg(DISTINCT a ORDER BY a) FILTER (WHERE a > 0), string_agg(b, \',\'), jsonb_agg(t) FROM t', R],
  ['SELECT a FROM t UNION SELECT a FROM u', R],
  ['SELECT a FROM t INTERSECT SELECT a FROM u EXCEPT ALL SELECT 1', R],
  ["VALUES (1, 'a'), (2, 'b')", R],
  ['TABLE t', R],
  ['WITH x AS (SELECT * FROM t) SELECT * FROM x', R],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r', R],
  ['WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT * FROM a) SELECT * FROM b', R],
  ['SELECT x FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id) ORDER BY a DESC LIMIT 10 OFFSET 5', R],
  ['SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END, COALESCE(b, 0), NULLIF(a, b), GREATEST(a, b), LEAST(a, b) FROM t', R],
  ['SELECT CURRENT_DATE, CURRENT_TIMESTAMP, CURRENT_USER, SESSION_USER, SYSTEM_USER, LOCALTIMESTAMP', R],
  ['SELECT now(), clock_timestamp(), statement_timestamp(), random(), gen_random_uuid(), version()', R],
  ["SELECT current_setting('work_mem'), current_database(), pg_backend_pid(), pg_last_wal_replay_lsn()", R],
  ["SELECT has_table_privilege('t', 'SELECT'), pg_get_viewdef('v'::regclass), format_type(23, -1), to_regclass('t'), pg_get_indexdef(1)", R],
  ['SELECT * FROM generate_series(1, 10) g, unnest(ARRAY[1, 2]) u', R],
  ["SELECT jsonb_build_object('a', 1), to_json(t), json_agg(t), jsonb_path_query(j, '$.a') FROM t", R],
  ["SELECT lower(a), upper(a), substring(a FROM 2), trim(a), regexp_replace(a, 'x', 'y'), extract(year FROM d), a || 'x' FROM t", R],
  ["SELECT d::date, age(d), date_trunc('day', d), d AT TIME ZONE 'UTC', to_char(d, 'YYYY') FROM t", R],
  ["SELECT * FROM json_to_record('{\"a\": 1}') AS x(a int)", R],
  ["SELECT pg_size_pretty(pg_total_relation_size('t')), pg_relation_size('t')", R],
  ['SELECT pg_catalog.count(*) FROM t', R],
  ['SELECT pg_catalog.now(), pg_catalog.lower(a) FROM t', R],
  ['SELECT pg_sleep(0.1)', R],
  ['SELECT * FROM t TABLESAMPLE SYSTEM (10)', R],
  ['SELECT a FROM t WHERE b = $1 AND c = $2', R],
  ["SELECT 'it''s', E'\\'x\\\\', B'0101', X'ff', U&'d\\0061t', $$dollar$$", R],
  [IN_5000, { target: R, reason: 'read' }],
  // ---------------------------------------------------------------- look-alikes: keywords in strings, identifiers, comments
  ["SELECT 'INSERT INTO t VALUES (1)' AS s", R],
  ["SELECT 'DELETE FROM t; DROP TABLE t' FROM t", R],
  ["SELECT * FROM t WHERE note = 'SELECT nextval(''s'') FOR UPDATE'", R],
  ['SELECT "delete" FROM "update"', R],
  ['SELECT "insert"."nextval", "for update" FROM "insert"', R],
  ['SELECT 1 AS "INSERT", 2 AS "DROP TABLE t"', R],
  ['SELECT $$ DELETE FROM t $$', R],
  ['SELECT $tag$ UPDATE t SET a = 1; $$ nested $$ $tag$ AS body', R],
  ['SELECT 1 -- DELETE FROM t', R],
  ['SELECT /* INSERT INTO t */ 1', R],
  ['/* UPDATE t SET a = 1 */ SELECT 1', R],
  ['/* outer /* DROP TABLE t */ still comment */ SELECT 1', R],
  ["SELECT 'SET switchyard.route = primary'", R],
  ["SELECT current_setting('switchyard.route', true)", R],
  // ---------------------------------------------------------------- SHOW
  ['SHOW search_path', { target: R, reason: 'SHOW' }],
  ['show ALL', R],
  // ---------------------------------------------------------------- EXPLAIN
  ['EXPLAIN SELECT * FROM t', R],
  ['EXPLAIN ANALYZE SELECT * FROM t', R],
  ['EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT 1', R],
  ['EXPLAIN (ANALYZE true) SELECT 1', R],
  ['EXPLAIN INSERT INTO t VALUES (1)', { target: P, reason: 'write: INSERT' }],
  ['EXPLAIN ANALYZE INSERT INTO t VALUES (1)', { target: P, reason: 'write: INSERT' }],
  ['EXPLAIN (ANALYZE) DELETE FROM t', { target: P, reason: 'write: DELETE' }],
  ['EXPLAIN (ANALYZE true, VERBOSE) UPDATE t SET a = 1', { target: P, reason: 'write: UPDATE' }],
  ['EXPLAIN (ANALYZE false) DELETE FROM t', { target: P, reason: 'write: DELETE' }],
  ["EXPLAIN SELECT nextval('s')", { target: P, reason: 'function nextval: sequence' }],
  ['EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE', { target: P, reason: 'locking read' }],
  ['EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1', { target: P, reason: 'ddl: CREATE TABLE AS' }],
  ['EXPLAIN EXECUTE p', { target: A, reason: 'execute', execute: ['p'] }],
  ['EXPLAIN ANALYZE EXECUTE p(1)', { target: A, execute: ['p'] }],
  // ---------------------------------------------------------------- COPY
  ['COPY t TO STDOUT', R],
  ['COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)', R],
  ['COPY (SELECT a FROM t WHERE b > 1) TO STDOUT', R],
  ['COPY t FROM STDIN', { target: P, reason: 'write: COPY FROM' }],
  ["COPY t FROM '/tmp/data.csv' WITH (FORMAT csv)", { target: P, reason: 'COPY FROM' }],
  ["COPY t TO '/tmp/out.csv'", { target: P, reason: 'server file' }],
  ["COPY t TO PROGRAM 'gzip > /tmp/t.gz'", { target: P, reason: 'PROGRAM' }],
  ["COPY (SELECT nextval('s')) TO STDOUT", { target: P, reason: 'nextval' }],
  ['COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT', { target: P, reason: 'write: INSERT' }],
  // ---------------------------------------------------------------- cursors
  ['DECLARE c CURSOR FOR SELECT * FROM t', { target: R, inexact: 'cursor' }],
  ['DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1', { target: R, inexact: 'cursor' }],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', { target: P, reason: 'WITH HOLD', inexact: 'cursor' }],
  ['DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE', { target: P, reason: 'locking read', inexact: 'cursor' }],
  ["DECLARE c CURSOR FOR SELECT nextval('s')", { target: P, reason: 'sequence', inexact: 'cursor' }],
  ['FETCH 10 FROM c', { target: A, reason: 'cursor: FETCH' }],
  ['FETCH NEXT IN c', A],
  ['MOVE 5 IN c', { target: A, reason: 'cursor: MOVE' }],
  ['CLOSE c', { target: A, reason: 'cursor: CLOSE' }],
  ['CLOSE ALL', A],
  // ---------------------------------------------------------------- writes
  ['INSERT INTO t VALUES (1)', { target: P, reason: 'write: INSERT' }],
  ["InSeRt InTo t (a) VaLuEs ('x')", { target: P, reason: 'write: INSERT' }],
  ['INSERT INTO t SELECT * FROM u', P],
  ['INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = excluded.a', P],
  ['UPDATE t SET a = 1 WHERE id = 2', { target: P, reason: 'write: UPDATE' }],
  ['update t set a = a + 1 returning *', P],
  ['DELETE FROM t WHERE id = 1', { target: P, reason: 'write: DELETE' }],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.a)', { target: P, reason: 'write: MERGE' }],
  ['TRUNCATE t', { target: P, reason: 'write: TRUNCATE' }],
  ['TRUNCATE TABLE a, b RESTART IDENTITY CASCADE', P],
  ['SELECT a INTO newtable FROM t', { target: P, reason: 'select into' }],
  ['SELECT * INTO TEMP tt FROM t', { target: P, reason: 'select into' }],
  // ---------------------------------------------------------------- data-modifying CTEs
  ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', { target: P, reason: 'data-modifying CTE' }],
  ['WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i', { target: P, reason: 'data-modifying CTE' }],
  ['WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM u', { target: P, reason: 'data-modifying CTE' }],
  ['WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM m', { target: P, reason: 'data-modifying CTE' }],
  ['WITH a AS (SELECT 1), b AS (SELECT * FROM (WITH c AS (DELETE FROM t RETURNING 1) SELECT * FROM c) x) SELECT * FROM b', { target: P, reason: 'data-modifying CTE' }],
  // ---------------------------------------------------------------- locking reads
  ['SELECT * FROM t FOR UPDATE', { target: P, reason: 'locking read: FOR UPDATE' }],
  ['SELECT * FROM t FOR NO KEY UPDATE', { target: P, reason: 'locking read: FOR NO KEY UPDATE' }],
  ['SELECT * FROM t FOR SHARE', { target: P, reason: 'locking read: FOR SHARE' }],
  ['SELECT * FROM t FOR KEY SHARE', { target: P, reason: 'locking read: FOR KEY SHARE' }],
  ['SELECT * FROM t FOR UPDATE OF t SKIP LOCKED', { target: P, reason: 'FOR UPDATE' }],
  ['select * from t for share nowait', P],
  ['SELECT * FROM (SELECT * FROM t FOR UPDATE) s', { target: P, reason: 'locking read' }],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)', { target: P, reason: 'locking read: FOR SHARE' }],
  ['WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x', { target: P, reason: 'locking read' }],
  // ---------------------------------------------------------------- sequences, anywhere in the tree
  ["SELECT nextval('s')", { target: P, reason: 'function nextval: sequence' }],
  ["SELECT setval('s', 10)", { target: P, reason: 'function setval: sequence' }],
  ["SELECT currval('s')", { target: P, reason: 'function currval: sequence' }],
  ['SELECT lastval()', { target: P, reason: 'function lastval: sequence' }],
  ["SELECT pg_catalog.nextval('s')", { target: P, reason: 'function nextval: sequence' }],
  ["SELECT * FROM t WHERE id = (SELECT nextval('s'))", { target: P, reason: 'nextval' }],
  ["WITH x AS (SELECT nextval('s') AS n) SELECT n FROM x", { target: P, reason: 'nextval' }],
  ["SELECT coalesce(abs(nextval('s')), 0)", { target: P, reason: 'nextval' }],
  ["SELECT a FROM t WHERE b = upper(currval('s')::text) ORDER BY 1", { target: P, reason: 'currval' }],
  ["SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = (SELECT setval('s', 1)))", { target: P, reason: 'setval' }],
  ['SELECT U&"nextva\\006c"(\'s\')', { target: P, reason: 'nextval' }],
  // ---------------------------------------------------------------- advisory locks
  ['SELECT pg_advisory_lock(1)', { target: P, reason: 'advisory lock' }],
  ['SELECT pg_advisory_lock_shared(1)', { target: P, reason: 'advisory lock' }],
  ['SELECT pg_advisory_xact_lock(1, 2)', { target: P, reason: 'advisory lock' }],
  ['SELECT pg_try_advisory_lock(1)', { target: P, reason: 'advisory lock' }],
  ['SELECT pg_try_advisory_xact_lock_shared(1)', { target: P, reason: 'advisory lock' }],
  ['SELECT pg_advisory_unlock(1)', { target: P, reason: 'advisory lock' }],
  ['SELECT pg_advisory_unlock_all()', { target: P, reason: 'advisory lock' }],
  ['SELECT CASE WHEN pg_try_advisory_lock(42) THEN 1 ELSE 0 END FROM t', { target: P, reason: 'pg_try_advisory_lock' }],
  // ---------------------------------------------------------------- notify
  ['LISTEN ch', { target: P, reason: 'LISTEN' }],
  ['UNLISTEN ch', { target: P, reason: 'UNLISTEN' }],
  ['UNLISTEN *', P],
  ["NOTIFY ch, 'payload'", { target: P, reason: 'NOTIFY' }],
  ["SELECT pg_notify('ch', 'x')", { target: P, reason: 'function pg_notify' }],
  // ---------------------------------------------------------------- functions that write WAL, assign an xid, or administer
  ['SELECT txid_current()', { target: P, reason: 'transaction id' }],
  ['SELECT pg_current_xact_id()', { target: P, reason: 'transaction id' }],
  ['SELECT pg_current_wal_lsn()', { target: P, reason: 'WAL' }],
  ['SELECT pg_switch_wal()', { target: P, reason: 'WAL' }],
  ["SELECT pg_create_restore_point('x')", { target: P, reason: 'WAL' }],
  ['SELECT pg_terminate_backend(123)', { target: P, reason: 'administration' }],
  ['SELECT pg_cancel_backend(123)', P],
  ['SELECT pg_reload_conf()', P],
  ["SELECT lo_import('/tmp/x')", { target: P, reason: 'large object' }],
  ["SELECT pg_create_logical_replication_slot('s', 'pgoutput')", { target: P, reason: 'replication' }],
  ["SELECT pg_replication_origin_create('o')", { target: P, reason: 'replication' }],
  ['SELECT pg_stat_reset()', P],
  // ---------------------------------------------------------------- user functions
  ['SELECT my_fn()', { target: P, reason: 'function my_fn: not known to be replica-safe' }],
  ['SELECT * FROM my_srf(1)', { target: P, reason: 'my_srf' }],
  ['SELECT a FROM t WHERE my_check(a) ORDER BY a', { target: P, reason: 'my_check' }],
  ['SELECT myschema.f(1)', { target: P, reason: 'function myschema.f: not known' }],
  ['SELECT "Count"(*) FROM t', { target: P, reason: 'Count' }],
  ['SELECT public.count(*) FROM t', { target: P, reason: 'public.count' }],
  ['SELECT count(*), my_fn(a) FROM t GROUP BY a', { target: P, reason: 'my_fn' }],
  // ---------------------------------------------------------------- set_config
  ["SELECT set_config('app.user', '42', true)", { target: R, replay: 'self' }],
  ["select pg_catalog.set_config('app.user', '42', 'on');", { target: R, replay: 'self' }],
  ["SELECT set_config('app.user', v, true) FROM t", { target: R, replay: 'self' }],
  ["SELECT 1, (SELECT set_config('a.b', '1', true))", { target: R, replay: 'self' }],
  ["SELECT set_config('app.user', '42', false)", { target: P, reason: 'set_config: session', replay: 'self' }],
  ["SELECT set_config('app.user', '42', 'off'::boolean)", { target: P, reason: 'set_config', replay: 'self' }],
  ["SELECT set_config('app.user', '42', NULL)", { target: P, reason: 'set_config', replay: 'self' }],
  ["SELECT set_config(name, '1', true) FROM t", { target: P, reason: 'set_config', inexact: 'dynamic set_config', replay: 'self' }],
  ["SELECT set_config('a.b', '1', $1)", { target: P, inexact: 'dynamic set_config', replay: 'self' }],
  ["EXPLAIN ANALYZE SELECT set_config('a.b', '1', true)", { target: R, replay: 'self' }],
  ["EXPLAIN SELECT set_config('a.b', '1', true)", R],
  // ---------------------------------------------------------------- CALL, DO
  ['CALL p(1)', { target: P, reason: 'CALL' }],
  ["DO $$ BEGIN PERFORM 1; END $$", { target: P, reason: 'DO' }],
  ['DO LANGUAGE plpgsql $x$ BEGIN NULL; END $x$', P],
  // ---------------------------------------------------------------- DDL
  ['CREATE TABLE t (id int PRIMARY KEY)', { target: P, reason: 'ddl: CREATE TABLE' }],
  ['CREATE TEMP TABLE tt (id int)', { target: P, reason: 'ddl: CREATE TABLE' }],
  ['CREATE TABLE t2 AS SELECT * FROM t', { target: P, reason: 'ddl: CREATE TABLE AS' }],
  ['CREATE TABLE t2 AS EXECUTE p(1)', { target: P, reason: 'ddl: CREATE TABLE AS', execute: ['p'] }],
  ['CREATE MATERIALIZED VIEW mv AS SELECT 1', { target: P, reason: 'ddl: CREATE MATERIALIZED VIEW' }],
  ['ALTER TABLE t ADD COLUMN b int', { target: P, reason: 'ddl: ALTER TABLE' }],
  ['DROP TABLE t', { target: P, reason: 'ddl: DROP TABLE' }],
  ['DROP INDEX CONCURRENTLY i', { target: P, reason: 'ddl: DROP INDEX' }],
  ['CREATE INDEX CONCURRENTLY i ON t (a)', { target: P, reason: 'ddl: CREATE INDEX' }],
  ['CREATE VIEW v AS SELECT 1', { target: P, reason: 'ddl: CREATE VIEW' }],
  ['CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql', { target: P, reason: 'ddl: CREATE FUNCTION' }],
  ["CREATE PROCEDURE pr() LANGUAGE sql AS 'SELECT 1'", { target: P, reason: 'ddl: CREATE PROCEDURE' }],
  ['CREATE SCHEMA s', { target: P, reason: 'ddl: CREATE SCHEMA' }],
  ['CREATE SEQUENCE s', { target: P, reason: 'ddl: CREATE SEQUENCE' }],
  ['CREATE EXTENSION IF NOT EXISTS pgcrypto', { target: P, reason: 'ddl: CREATE EXTENSION' }],
  ['CREATE ROLE r LOGIN', { target: P, reason: 'ddl: CREATE ROLE' }],
  ["ALTER ROLE r SET work_mem = '1MB'", { target: P, reason: 'ddl: ALTER ROLE' }],
  ["COMMENT ON TABLE t IS 'x'", { target: P, reason: 'ddl: COMMENT' }],
  ["SECURITY LABEL ON TABLE t IS 'x'", { target: P, reason: 'ddl: SECURITY LABEL' }],
  ["ALTER SYSTEM SET work_mem = '1MB'", { target: P, reason: 'ddl: ALTER SYSTEM' }],
  ['CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', { target: P, reason: 'ddl: CREATE TRIGGER' }],
  ['ALTER MATERIALIZED VIEW v RENAME TO w', { target: P, reason: 'ddl: ALTER MATERIALIZED VIEW' }],
  ["CREATE TYPE mood AS ENUM ('sad', 'ok')", { target: P, reason: 'ddl: CREATE TYPE' }],
  ['CREATE DATABASE d', { target: P, reason: 'ddl: CREATE DATABASE' }],
  ['DROP DATABASE d', { target: P, reason: 'ddl: DROP DATABASE' }],
  // ---------------------------------------------------------------- maintenance, privileges, locks
  ['VACUUM t', { target: P, reason: 'maintenance: VACUUM' }],
  ['VACUUM (ANALYZE, VERBOSE) t', { target: P, reason: 'maintenance: VACUUM' }],
  ['ANALYZE t', { target: P, reason: 'maintenance: ANALYZE' }],
  ['CLUSTER t USING i', { target: P, reason: 'maintenance: CLUSTER' }],
  ['REINDEX TABLE t', { target: P, reason: 'maintenance: REINDEX' }],
  ['CHECKPOINT', { target: P, reason: 'maintenance: CHECKPOINT' }],
  ['REFRESH MATERIALIZED VIEW CONCURRENTLY mv', { target: P, reason: 'maintenance: REFRESH MATERIALIZED VIEW' }],
  ["LOAD 'auto_explain'", { target: P, reason: 'maintenance: LOAD' }],
  ['GRANT SELECT ON t TO r', { target: P, reason: 'privileges: GRANT' }],
  ['REVOKE ALL ON t FROM r', { target: P, reason: 'privileges: REVOKE' }],
  ['GRANT r TO u', { target: P, reason: 'privileges: GRANT' }],
  ['ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r', P],
  ['LOCK TABLE t IN ACCESS SHARE MODE', { target: P, reason: 'lock: LOCK' }],
  // ---------------------------------------------------------------- session settings
  ['SET search_path TO a, b', { target: A, reason: 'session: SET', replay: 'self' }],
  ["SET SESSION work_mem = '64MB';", { target: A, reason: 'session: SET', replay: 'self' }],
  ['SET LOCAL statement_timeout = 100', { target: A, reason: 'session: SET LOCAL', replay: 'self' }],
  ["SET TIME ZONE 'UTC'", { target: A, replay: 'self' }],
  ['RESET work_mem', { target: A, reason: 'session: RESET', replay: 'self' }],
  ['RESET ALL', { target: A, replay: 'self' }],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE', { target: A, reason: 'SESSION CHARACTERISTICS', replay: 'self' }],
  ['SET ROLE app', { target: P, reason: 'session: SET ROLE', replay: 'self' }],
  ["SET SESSION AUTHORIZATION 'u'", { target: P, reason: 'SESSION AUTHORIZATION', replay: 'self' }],
  ['SET LOCAL ROLE app', { target: A, replay: 'self' }],
  ['SET ROLE NONE', { target: A, replay: 'self' }],
  ['RESET ROLE', { target: A, replay: 'self' }],
  ['SET CONSTRAINTS ALL DEFERRED', { target: A, replay: 'self' }],
  ['DISCARD ALL', { target: A, reason: 'session: DISCARD' }],
  ['DISCARD PLANS', A],
  ['PREPARE p AS INSERT INTO t VALUES ($1)', { target: A, reason: 'session: PREPARE', replay: 'self' }],
  ['PREPARE q (int) AS SELECT * FROM t WHERE id = $1', { target: A, replay: 'self' }],
  ['EXECUTE p(1)', { target: A, reason: 'execute', execute: ['p'] }],
  ["EXECUTE q(nextval('s'))", { target: P, reason: 'nextval', execute: ['q'] }],
  ['DEALLOCATE p', { target: A, reason: 'session: DEALLOCATE', replay: 'self' }],
  ['DEALLOCATE ALL', { target: A, replay: 'self' }],
  // ---------------------------------------------------------------- transactions
  ['BEGIN', { target: A, reason: 'transaction: BEGIN', txn: 'begin', replay: 'self' }],
  ['begin;', { target: A, txn: 'begin', replay: ['begin'] }],
  ['BEGIN READ ONLY', { target: A, txn: 'begin', readOnly: true, replay: 'self' }],
  ['START TRANSACTION READ WRITE', { target: A, txn: 'begin', replay: 'self' }],
  ['START TRANSACTION ISOLATION LEVEL READ COMMITTED', { target: A, txn: 'begin', replay: 'self' }],
  ['BEGIN TRANSACTION ISOLATION LEVEL READ UNCOMMITTED', { target: A, txn: 'begin', replay: 'self' }],
  ['BEGIN ISOLATION LEVEL REPEATABLE READ', { target: P, reason: 'snapshot isolation: REPEATABLE READ', txn: 'begin', snapshot: true, replay: 'self' }],
  ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE', { target: P, reason: 'snapshot isolation: SERIALIZABLE', txn: 'begin', snapshot: true, readOnly: true, replay: 'self' }],
  ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', { target: P, txn: 'set_transaction', snapshot: true, replay: 'self' }],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', { target: P, reason: 'snapshot isolation: SERIALIZABLE', txn: 'set_transaction', snapshot: true, replay: 'self' }],
  ['SET TRANSACTION READ ONLY', { target: A, txn: 'set_transaction', readOnly: true, replay: 'self' }],
  ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", { target: P, reason: 'SNAPSHOT', txn: 'set_transaction', replay: 'self' }],
  ['COMMIT', { target: A, reason: 'transaction: COMMIT', txn: 'commit' }],
  ['END', { target: A, txn: 'commit' }],
  ['COMMIT AND CHAIN', { target: A, txn: 'commit' }],
  ['ROLLBACK', { target: A, reason: 'transaction: ROLLBACK', txn: 'rollback' }],
  ['ABORT', { target: A, txn: 'rollback' }],
  ['SAVEPOINT s1', { target: A, txn: 'savepoint', replay: 'self' }],
  ['RELEASE SAVEPOINT s1', { target: A, txn: 'release', replay: 'self' }],
  ['RELEASE s1', { target: A, txn: 'release', replay: 'self' }],
  ['ROLLBACK TO SAVEPOINT s1', { target: A, txn: 'rollback_to', replay: 'self' }],
  ['ROLLBACK TO s1', { target: A, txn: 'rollback_to', replay: 'self' }],
  ["PREPARE TRANSACTION 'x'", { target: P, reason: 'PREPARE TRANSACTION', txn: 'prepared_xact' }],
  ["COMMIT PREPARED 'x'", { target: P, reason: 'COMMIT PREPARED', txn: 'prepared_xact' }],
  ["ROLLBACK PREPARED 'x'", { target: P, txn: 'prepared_xact' }],
  // ---------------------------------------------------------------- empty queries
  ['', { target: A, reason: 'empty query' }],
  ['   \n\t', { target: A, reason: 'empty query' }],
  [';', { target: A, reason: 'empty query' }],
  ['-- nothing here', { target: A, reason: 'empty query' }],
  ['/* nothing */ ;', { target: A, reason: 'empty query' }],
  // ---------------------------------------------------------------- parse errors
  ['SELEC 1', { target: P, reason: 'parse error' }],
  ['SELECT FROM WHERE', { target: P, reason: 'parse error' }],
  ["SELECT 'unterminated", { target: P, reason: 'parse error' }],
  ['SELECT (1', { target: P, reason: 'parse error' }],
  ['SELECT 1; DELET FROM t', { target: P, reason: 'parse error' }],
  // ---------------------------------------------------------------- several statements in one text
  ['SELECT 1; SELECT 2', R],
  ['SELECT 1; INSERT INTO t VALUES (1)', { target: P, reason: 'write: INSERT' }],
  ["SELECT 1; SELECT nextval('s'); SELECT 2", { target: P, reason: 'nextval' }],
  ['BEGIN; SELECT 1; COMMIT', { target: R, reason: 'read', replay: ['BEGIN'] }],
  ['BEGIN; INSERT INTO t VALUES (1); COMMIT', { target: P, replay: ['BEGIN'] }],
  ["SET work_mem = '1MB'; SELECT 1", { target: R, replay: ["SET work_mem = '1MB'"] }],
  ['SET a.b = 1; RESET c.d', { target: A, replay: ['SET a.b = 1', 'RESET c.d'] }],
  ['BEGIN; SAVEPOINT a; RELEASE a; ROLLBACK TO a', { target: A, replay: ['BEGIN', 'SAVEPOINT a', 'RELEASE a', 'ROLLBACK TO a'] }],
  ["SET x.y = 1; /* c */ SAVEPOINT s -- trailing\n; SELECT set_config('a.b', 'c', true)", { target: R, replay: ['SET x.y = 1', 'SAVEPOINT s', "SELECT set_config('a.b', 'c', true)"] }],
  ["SELECT 'a;b'; SELECT $$;$$", R],
  ['DECLARE c CURSOR FOR SELECT 1; FETCH 1 FROM c; CLOSE c', { target: R, inexact: 'cursor' }],
  ['EXECUTE a; EXECUTE b; EXECUTE a', { target: A, execute: ['a', 'b'] }],
  ['PREPARE p AS INSERT INTO t VALUES (1); EXECUTE p', { target: P, reason: 'write: INSERT', replay: ['PREPARE p AS INSERT INTO t VALUES (1)'] }],
  ['PREPARE p AS SELECT 1; EXECUTE p; EXECUTE q', { target: R, replay: ['PREPARE p AS SELECT 1'], execute: ['q'] }],
  ['SELECT 1; LISTEN ch', { target: P, reason: 'LISTEN' }],
  ["SELECT 'é'; SET application_name = 'ünï'", { target: R, replay: ["SET application_name = 'ünï'"] }],
  // ---------------------------------------------------------------- hints
  ['/* switchyard:primary */ SELECT 1', { target: P, reason: 'hint', hint: 'primary' }],
  ["/*switchyard:replica*/ SELECT nextval('s')", { target: R, reason: 'hint', hint: 'replica' }],
  ['  /* SwitchYard : Primary */ select 1', { target: P, reason: 'hint', hint: 'primary' }],
  ['\n/* switchyard:replica */\nINSERT INTO t VALUES (1)', { target: R, reason: 'hint', hint: 'replica' }],
  ['/* switchyard:primary */ BEGIN', { target: P, reason: 'hint', hint: 'primary', txn: 'begin', replay: ['BEGIN'] }],
  ['SELECT 1 /* switchyard:primary */', { target: R, reason: 'read' }],
  ['-- x\n/* switchyard:primary */ SELECT 1', { target: R, reason: 'read' }],
  ['/* switchyard:secondary */ SELECT 1', { target: R, reason: 'read' }],
  ['/* not a hint */ /* switchyard:primary */ SELECT 1', { target: R, reason: 'read' }],
  // ---------------------------------------------------------------- the gateway's own setting
  ['SET switchyard.route = primary', { target: A, gateway: { set: 'primary' } }],
  ['set SWITCHYARD.ROUTE to replica', { target: A, gateway: { set: 'replica' } }],
  ["SET switchyard.route TO 'auto';", { target: A, gateway: { set: 'auto' } }],
  ['SET SESSION switchyard.route = replica', { target: A, gateway: { set: 'replica' } }],
  ["SET LOCAL switchyard.route = 'Primary'", { target: A, gateway: { set: 'primary' } }],
  ['SET switchyard.route TO DEFAULT', { target: A, gateway: { set: 'auto' } }],
  ['RESET switchyard.route', { target: A, gateway: { set: 'auto' } }],
  ['SHOW switchyard.route', { target: A, gateway: { show: true } }],
  ['/* c */ show Switchyard.Route ;', { target: A, gateway: { show: true } }],
  ['SET switchyard.route = sideways', { target: P, gatewayError: 'invalid value for switchyard.route' }],
  ['SET switchyard.route = primary, replica', { target: P, gatewayError: 'switchyard.route' }],
  ['SET switchyard.route = 1', { target: P, gatewayError: 'invalid value' }],
  ['SET switchyard.rout = primary', { target: P, gatewayError: 'unrecognized gateway setting "switchyard.rout"' }],
  ['SELECT 1; SET switchyard.route = replica', { target: P, gatewayError: 'of its own' }],
  ['SET switchyard.route = replica; SELECT 1', { target: P, gatewayError: 'of its own' }],
  ['SHOW switchyard.route; SHOW switchyard.route', { target: P, gatewayError: 'of its own' }],
];

/** The decision a case expects, in full. */
function expected(sql: string, e: RouteTarget | Expect): Expect {
  const x = typeof e === 'string' ? { target: e } : e;
  return { ...x, replay: x.replay === 'self' ? [sql.trim().replace(/;$/, '')] : (x.replay ?? []) };
}

function check(router: Router, sql: string, e: RouteTarget | Expect): void {
  const d = router.route(sql);
  const x = expected(sql, e);
  const label = `${sql.slice(0, 100)} → ${JSON.stringify(d).slice(0, 300)}`;
  assert.equal(d.target, x.target, label);
  if (x.reason !== undefined) assert.ok(d.reason.includes(x.reason), `reason: ${label}`);
  for (const k of ['txn', 'snapshot', 'readOnly', 'inexact', 'hint'] as const) assert.equal(d[k], x[k], `${k}: ${label}`);
  assert.deepEqual(d.replay, x.replay, `replay: ${label}`);
  assert.deepEqual(d.execute, x.execute, `execute: ${label}`);
  assert.deepEqual(d.gateway, x.gateway, `gateway: ${label}`);
  if (x.gatewayError === undefined) assert.equal(d.gatewayError, undefined, label);
  else assert.ok(d.gatewayError?.includes(x.gatewayError), `gatewayError: ${label}`);
}

describe('routing table', () => {
  const router = new Router();
  test('has at least 150 statements', () => {
    assert.ok(cases.length >= 150, `${cases.length} cases`);
  });
  for (const [sql, e] of cases) {
    test(sql.replace(/\s+/g, ' ').slice(0, 90) || '(empty)', () => check(router, sql, e));
  }
  test('every case again, from the cache, equals an uncached decision', () => {
    const uncached = new Router({ cacheSize: 0 });
    for (const [sql, e] of cases) {
      check(router, sql, e);
      assert.deepEqual(router.route(sql), uncached.route(sql), sql);
    }
    assert.ok(router.stats.hits >= cases.length, `hits ${router.stats.hits}`);
    assert.equal(uncached.stats.size, 0);
  });
});

test('review findings: server role questions, standard_conforming_strings, isolation by set_config, newer SQL/JSON syntax', () => {
  const r = new Router();
  const cases: [string, RouteTarget, string?][] = [
    ['SHOW transaction_read_only', 'primary', 'server role'],
    ['SHOW in_hot_standby', 'primary', 'server role'],
    ['SHOW work_mem', 'replica'],
    ['SELECT pg_is_in_recovery()', 'primary', 'server role'],
    ['SET standard_conforming_strings = off', 'primary', 'standard_conforming_strings'],
    ["SELECT set_config('standard_conforming_strings', 'off', true)", 'primary', 'standard_conforming_strings'],
    ["SELECT set_config('transaction_isolation', 'serializable', true)", 'primary', 'snapshot'],
    ["SELECT set_config('transaction_isolation', 'repeatable read', true)", 'primary', 'snapshot'],
    ["SELECT set_config('transaction_isolation', 'read committed', true)", 'replica'],
    ["SELECT json_query('{}', '$.a')", 'primary', 'SQL/JSON'],
    ["SELECT * FROM json_table('[]', '$[*]' COLUMNS (a int PATH '$'))", 'primary', 'SQL/JSON'],
    ["SELECT json_serialize('{}')", 'primary', 'SQL/JSON'],
    ["SELECT json_build_object('a', 1)", 'replica'],
    ['SELECT 1 OPERATOR(myschema.+) 2', 'primary', 'operator myschema'],
    ['SELECT 1 OPERATOR(pg_catalog.+) 2', 'replica'],
    ['SELECT a + b FROM t WHERE a > 1', 'replica'],
  ];
  for (const [sql, target, reason] of cases) {
    const d = r.route(sql);
    assert.equal(d.target, target, `${sql}: ${d.reason}`);
    if (reason) assert.match(d.reason, new RegExp(reason.replace(/[/]/g, '\\/')), sql);
  }
});

test('cache: a string continued across a line break after E\'\' is not normalised (its continuation follows E-string rules)', () => {
  const r = new Router();
  const safe = "SELECT E'a'\n'x' || $$y$$";
  const lock = "SELECT E'a'\n'\\' || $$', pg_advisory_lock(1) -- $$";
  assert.equal(r.route(safe).target, 'replica');
  assert.equal(r.route(lock).target, 'primary', 'not the cached decision of the first text');
  assert.equal(cacheKey(lock), lock);
});

test('safeFunctions: declared functions are replica-safe; qualified names must match; sequences stay on the primary', () => {
  const r = new Router({ safeFunctions: ['my_fn', 'app.score', 'pg_catalog.my_builtin', 'nextval', 'set_config'] });
  assert.equal(r.route('SELECT my_fn(a) FROM t').target, 'replica');
  assert.equal(r.route('SELECT app.score(1)').target, 'replica');
  assert.equal(r.route('SELECT my_builtin(), pg_catalog.my_builtin()').target, 'replica');
  assert.equal(r.route('SELECT score(1)').reason, 'function score: not known to be replica-safe');
  assert.equal(r.route('SELECT other.my_fn()').reason, 'function other.my_fn: not known to be replica-safe');
  assert.equal(r.route("SELECT nextval('s')").target, 'primary');
  assert.equal(r.route("SELECT set_config('a.b', 'c', false)").target, 'primary');
  // Without the option the same function needs the primary.
  assert.equal(new Router().route('SELECT my_fn(a) FROM t').target, 'primary');
});

describe('decision cache', () => {
  test('hits and misses are counted; texts differing only in constants share one entry', () => {
    const r = new Router();
    const a = r.route("SELECT * FROM t WHERE id = 1 AND name = 'x'");
    assert.deepEqual(r.stats, { hits: 0, misses: 1, size: 1 });
    const b = r.route("SELECT * FROM t WHERE id = 22 AND name = 'yy'");
    assert.equal(b, a, 'the same frozen decision');
    r.route("SELECT * FROM t WHERE id = 1.5e3 AND name = 'z''z'");
    r.route('SELECT * FROM t WHERE id = 0x1F AND name = $$q$$');
    assert.deepEqual(r.stats, { hits: 3, misses: 1, size: 1 });
    r.route("SELECT * FROM t WHERE id = 1 AND name = 'x'");
    assert.deepEqual(r.stats, { hits: 4, misses: 1, size: 1 });
    // Escape strings are kept as they are (their escapes can make a text fail to parse).
    r.route("SELECT * FROM t WHERE id = 1 AND name = E'x'");
    assert.deepEqual(r.stats, { hits: 4, misses: 2, size: 2 });
  });

  test('long IN lists share an entry whatever their length', () => {
    const r = new Router();
    assert.equal(r.route(IN_5000).target, 'replica');
    assert.equal(r.route(IN_5000).target, 'replica');
    const in4000 = `SELECT * FROM t WHERE id IN (${Array.from({ length: 4000 }, (_, i) => i * 7).join(', ')})`;
    assert.equal(r.route(in4000).target, 'replica');
    assert.deepEqual(r.stats, { hits: 2, misses: 1, size: 1 });
  });

  test('identifiers, quoted identifiers, parameters and comments are not constants', () => {
    const r = new Router();
    r.route('SELECT a FROM t1');
    r.route('SELECT a FROM t2');
    r.route('SELECT "1" FROM t');
    r.route('SELECT "2" FROM t');
    r.route('SELECT a FROM t WHERE b = $1');
    r.route('SELECT a FROM t WHERE b = $2');
    r.route('SELECT 1 -- 1');
    r.route('SELECT 1 -- 2');
    assert.deepEqual(r.stats, { hits: 0, misses: 8, size: 8 });
  });

  test('literal-sensitive decisions are kept by exact text only', () => {
    const r = new Router();
    // set_config: its arguments decide.
    assert.equal(r.route("SELECT set_config('a.b', 'x', true)").target, 'replica');
    assert.equal(r.route("SELECT set_config('a.b', 'x', 'false')").target, 'primary');
    assert.equal(r.route("SELECT set_config('a.b', 'x', 'true')").target, 'replica');
    // SET: the replay text holds the value.
    assert.deepEqual(r.route("SET work_mem = '1MB'").replay, ["SET work_mem = '1MB'"]);
    assert.deepEqual(r.route("SET work_mem = '2MB'").replay, ["SET work_mem = '2MB'"]);
    // The gateway's setting.
    assert.deepEqual(r.route("SET switchyard.route = 'replica'").gateway, { set: 'replica' });
    assert.deepEqual(r.route("SET switchyard.route = 'primary'").gateway, { set: 'primary' });
    assert.ok(r.route("SET switchyard.route = 'nowhere'").gatewayError);
    // An unterminated string is a parse error, which must not stand for texts that parse.
    assert.equal(r.route("SET work_mem = 'x").reason, 'parse error');
    assert.deepEqual(r.route("SET work_mem = 'y'").replay, ["SET work_mem = 'y'"]);
    // A hint.
    assert.equal(r.route('/* switchyard:primary */ SELECT 1').target, 'primary');
    assert.equal(r.route('/* switchyard:primary */ SELECT 2').target, 'primary');
    assert.equal(r.stats.hits, 0);
    assert.equal(r.stats.size, r.stats.misses);
    // The exact text again is a hit.
    assert.deepEqual(r.route("SET work_mem = '1MB'").replay, ["SET work_mem = '1MB'"]);
    assert.equal(r.stats.hits, 1);
  });

  test('LRU: the bound holds and the least recently used entry goes first', () => {
    const r = new Router({ cacheSize: 3 });
    r.route('SELECT a FROM t1');
    r.route('SELECT a FROM t2');
    r.route('SELECT a FROM t3');
    r.route('SELECT a FROM t1'); // t1 is now the most recent
    r.route('SELECT a FROM t4'); // evicts t2
    assert.equal(r.stats.size, 3);
    const hits = r.stats.hits;
    r.route('SELECT a FROM t1');
    r.route('SELECT a FROM t3');
    assert.equal(r.stats.hits, hits + 2);
    r.route('SELECT a FROM t2');
    assert.equal(r.stats.hits, hits + 2, 't2 was evicted');
    for (let i = 0; i < 50; i++) r.route(`SELECT a FROM u${i}`);
    assert.equal(r.stats.size, 3);
  });

  test('cacheSize 0 keeps nothing', () => {
    const r = new Router({ cacheSize: 0 });
    r.route('SELECT 1');
    r.route('SELECT 1');
    assert.deepEqual(r.stats, { hits: 0, misses: 2, size: 0 });
  });

  test('a cached lookup is much cheaper than a parse', () => {
    const r = new Router();
    const sql = (n: number) => `SELECT a, b, c FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = ${n} AND c.name = 'name ${n}' AND o.created_at > '2024-01-01' ORDER BY o.created_at DESC LIMIT 20`;
    const uncached = new Router({ cacheSize: 0 });
    const N = 2000;
    for (let i = 0; i < 200; i++) {
      r.route(sql(i));
      uncached.route(sql(i));
    }
    let t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) uncached.route(sql(i));
    const parse = Number(process.hrtime.bigint() - t);
    t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) r.route(sql(i));
    const cached = Number(process.hrtime.bigint() - t);
    assert.ok(cached * 3 < parse, `cached ${cached / N} ns, parsed ${parse / N} ns per route`);
  });
});

describe('cacheKey', () => {
  const key = (s: string) => cacheKey(s).replaceAll('\0n', '<n>').replaceAll('\0s', '<s>').replaceAll('\0l', '<l>');
  test('numbers and strings become placeholders', () => {
    assert.equal(key("SELECT 1, 'a'"), 'SELECT <n>, <s>');
    assert.equal(key("SELECT a FROM t WHERE b = 'it''s' AND d = -1.5e10 AND e = N'n'"), 'SELECT a FROM t WHERE b = <s> AND d = -<n> AND e = N<s>');
    assert.equal(key("SELECT B'01', X'ff', date '2024-01-01'"), 'SELECT B<s>, X<s>, date <s>');
    assert.equal(key('SELECT $$ x $$ || $tag$ $$ y $tag$, 0x1F + .5 + 1_000 + 2. + 1.e5'), 'SELECT <s> || <s>, <n> + <n> + <n> + <n> + <n>');
  });
  test('identifiers, quoted identifiers, parameters, comments and escape strings are kept', () => {
    for (const s of [
      'SELECT t1.a2 FROM t1',
      'SELECT "it\'s 1" FROM "t""2"',
      'SELECT $1, $23',
      'SELECT a$1 FROM b',
      'SELECT U&"d\\0061t"',
      "SELECT E'x\\'y', e'\\u0041', U&'d\\0061t', U&'d!0061t' UESCAPE '!', U&'x' uescape\n'#'",
      'SELECT x',
      '',
    ]) {
      assert.equal(cacheKey(s), s);
    }
    assert.equal(key("SELECT 1 -- it's 2\n/* 3 /* '4' */ 5 */ , 'x'"), "SELECT <n> -- it's 2\n/* 3 /* '4' */ 5 */ , <s>");
  });
  test('parentheses holding only constants become one list', () => {
    assert.equal(key('SELECT * FROM t WHERE id IN (1, 2,3 ,  -4)'), 'SELECT * FROM t WHERE id IN (<l>)');
    assert.equal(key("VALUES (1, 'a'), (2, $$b$$)"), 'VALUES (<l>), (<l>)');
    assert.equal(key('SELECT f(1), g(1, a, 2), h((1, 2))'), 'SELECT f(<n>), g(<n>, a, <n>), h((<l>))');
    assert.equal(key('SELECT 1, 2 LIMIT 1, 2'), 'SELECT <n>, <n> LIMIT <n>, <n>');
    assert.equal(key('SELECT (1e, 2)'), 'SELECT (<n>e, <n>)');
  });
  test('a string that does not end: no key', () => {
    assert.equal(cacheKey("SELECT 1, 'abc"), "SELECT 1, 'abc");
    assert.equal(cacheKey('SELECT 1, $$abc'), 'SELECT 1, $$abc');
    assert.equal(cacheKey("SELECT * FROM t WHERE a IN (1, 'x"), "SELECT * FROM t WHERE a IN (1, 'x");
    assert.equal(key('SELECT 1, "abc'), 'SELECT <n>, "abc');
    assert.equal(key('SELECT 1 /* 2'), 'SELECT <n> /* 2');
  });
  test('trailing junk stays outside the number, so it never shares a valid text\'s key', () => {
    assert.equal(key('SELECT 0x, 1_, 1__0, 0b12, 1e'), 'SELECT <n>x, <n>_, <n>__0, <n><n>, <n>e');
  });
});

describe('classifyPrepared', () => {
  const r = new Router({ safeFunctions: ['ok_fn'] });
  test('the statement inside a PREPARE', () => {
    assert.deepEqual(r.classifyPrepared('PREPARE p AS SELECT * FROM t WHERE id = $1'), { target: 'replica', reason: 'read', replay: [] });
    assert.equal(r.classifyPrepared('PREPARE p (int, text) AS INSERT INTO t VALUES ($1, $2)').reason, 'write: INSERT');
    assert.equal(r.classifyPrepared('prepare p as update t set a = $1').target, 'primary');
    assert.equal(r.classifyPrepared('PREPARE p AS SELECT nextval($1)').reason, 'function nextval: sequence');
    assert.equal(r.classifyPrepared('PREPARE p AS SELECT * FROM t FOR UPDATE').reason, 'locking read: FOR UPDATE');
    assert.equal(r.classifyPrepared('PREPARE p AS WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d').reason, 'data-modifying CTE');
    assert.equal(r.classifyPrepared('PREPARE p AS SELECT ok_fn($1)').target, 'replica');
    assert.equal(r.classifyPrepared('PREPARE p AS VALUES (1)').target, 'replica');
  });
  test('hints, set_config, texts that are not one PREPARE', () => {
    assert.deepEqual(r.classifyPrepared('/* switchyard:primary */ PREPARE p AS SELECT 1'), { target: 'primary', reason: 'hint', replay: [], hint: 'primary' });
    const sc = r.classifyPrepared("PREPARE p AS SELECT set_config('a.b', $1, true)");
    assert.equal(sc.target, 'replica');
    assert.equal(sc.inexact, 'set_config in a prepared statement');
    assert.equal(r.classifyPrepared('SELECT 1').target, 'replica');
    assert.equal(r.classifyPrepared('PREPARE p AS SELEC 1').reason, 'parse error');
  });
  test('cached by exact text', () => {
    const before = r.stats.hits;
    const a = r.classifyPrepared('PREPARE z AS SELECT 1');
    assert.equal(r.classifyPrepared('PREPARE z AS SELECT 1'), a);
    assert.equal(r.stats.hits, before + 1);
  });
});

describe('splitStatements', () => {
  test('statements by location: semicolons in strings, dollar quotes, identifiers and comments stay inside', () => {
    const text = "SELECT 'a;b';\nSELECT $$;$$; select \"x;y\" from t -- c;\n;\n/* ; */ INSERT INTO t VALUES ($t$;$t$);\n\n  SELECT 3  ";
    assert.deepEqual(splitStatements(text), ["SELECT 'a;b'", 'SELECT $$;$$', 'select "x;y" from t', 'INSERT INTO t VALUES ($t$;$t$)', 'SELECT 3']);
  });
  test('non-ASCII text is cut by character, not by byte', () => {
    assert.deepEqual(splitStatements("SELECT 'ünïcödé';SELECT '€';SELECT 1"), ["SELECT 'ünïcödé'", "SELECT '€'", 'SELECT 1']);
  });
  test('one statement per non-empty line when the whole does not parse', () => {
    assert.deepEqual(splitStatements('SELECT 1;\nSELEC 2\n\n   INSERT INTO t VALUES (1);  \r\nDELETE FROM t'), ['SELECT 1', 'SELEC 2', 'INSERT INTO t VALUES (1)', 'DELETE FROM t']);
  });
  test('nothing in, nothing out', () => {
    assert.deepEqual(splitStatements(''), []);
    assert.deepEqual(splitStatements(' -- only a comment\n'), []);
  });
});

test('decisions are frozen, and so are their lists', () => {
  const r = new Router();
  for (const sql of ['SELECT 1', 'BEGIN; SET a.b = 1', 'EXECUTE p', 'SET switchyard.route = replica', 'SELEC', '/* switchyard:primary */ SELECT 1']) {
    const d = r.route(sql);
    assert.ok(Object.isFrozen(d), sql);
    assert.ok(Object.isFrozen(d.replay), sql);
    if (d.execute) assert.ok(Object.isFrozen(d.execute), sql);
    if (d.gateway) assert.ok(Object.isFrozen(d.gateway), sql);
    assert.throws(() => {
      (d as { target: string }).target = 'replica';
    }, TypeError);
    assert.throws(() => (d.replay as string[]).push('x'), TypeError);
  }
});
