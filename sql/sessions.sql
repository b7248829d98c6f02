--
-- pooldiag.sessions: columns, the current session's row, and exact
-- checkout accounting for each way a transaction can end.
--
\d pooldiag.sessions

-- The current session is tracked and checked out while it asks.
SELECT datname = current_database() AS datname_ok,
       usename = current_user AS usename_ok,
       application_name, state, idle_for IS NULL AS idle_for_null,
       checkout_start IS NOT NULL AS checked_out,
       checkouts >= 1 AS counted,
       age >= '0'::interval AS age_ok,
       hold_time >= '0'::interval AS hold_ok,
       idle_time >= '0'::interval AS idle_ok,
       backend_start = (SELECT backend_start FROM pg_stat_activity
                        WHERE pid = pg_backend_pid()) AS backend_start_ok
FROM pooldiag.sessions WHERE pid = pg_backend_pid();

-- Who is who: a Unix-domain socket has port -1, as in pg_stat_activity;
-- nothing declared; not waiting, so blocked by nobody.
SELECT s.client_port, s.client_port = a.client_port AS port_as_pg_stat_activity,
       s.client_pool, s.client_pool_size, s.client_max_overflow,
       s.client_pool_timeout, s.client_recycle, s.client_instance,
       s.wait_event_type, s.wait_event, s.blocked_by
FROM pooldiag.sessions s JOIN pg_stat_activity a USING (pid)
WHERE pid = pg_backend_pid();

-- blocked_by is computed only when selected (pg_blocking_pids() is called
-- only through pooldiag.blocked_by(), and only for lock waiters).
EXPLAIN (VERBOSE, COSTS OFF) SELECT pid, wait_event FROM pooldiag.sessions;
EXPLAIN (VERBOSE, COSTS OFF) SELECT pid, blocked_by FROM pooldiag.sessions;

-- One row per client backend, and nothing else.
SELECT (SELECT count(*) FROM pooldiag.sessions) =
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend') AS one_row_per_client_backend;

-- A helper that reports how many checkouts this session started since the
-- last call (the SELECT that calls it counts as one).
CREATE TEMP TABLE last_count AS
  SELECT checkouts FROM pooldiag.sessions WHERE pid = pg_backend_pid();
CREATE FUNCTION pg_temp.checkouts_since_last() RETURNS bigint
LANGUAGE sql AS $$
  WITH now_count AS (
    SELECT checkouts FROM pooldiag.sessions WHERE pid = pg_backend_pid()),
  upd AS (UPDATE last_count SET checkouts = (SELECT checkouts FROM now_count))
  SELECT (SELECT checkouts FROM now_count) - (SELECT checkouts FROM last_count)
$$;
SELECT pg_temp.checkouts_since_last() >= 0 AS reset;

-- Five autocommit transactions: five checkouts (plus the one asking).
SELECT 1;
SELECT 2;
SELECT 3;
SELECT 4;
SELECT 5;
SELECT pg_temp.checkouts_since_last() AS "5 + 1";

-- A transaction block with three statements: one checkout.
BEGIN;
SELECT 1;
SELECT 2;
SELECT 3;
COMMIT;
SELECT pg_temp.checkouts_since_last() AS "1 + 1";

-- Rolled back, and an error inside a block followed by ROLLBACK: one each.
BEGIN;
SELECT 1;
ROLLBACK;
BEGIN;
SELECT 1/0;
SELECT 1;
ROLLBACK;
SELECT pg_temp.checkouts_since_last() AS "2 + 1";

-- While the failed block is open, the session stays checked out.
BEGIN;
SELECT 1/0;
COMMIT;
SELECT pg_temp.checkouts_since_last() AS "1 + 1";

-- Statements that fail before the executor (here in planning) still count.
SELECT 1/0;
SELECT pg_temp.checkouts_since_last() AS "1 + 1";

-- Savepoints do not end the checkout; AND CHAIN keeps the block going.
BEGIN;
SAVEPOINT a;
SELECT 1/0;
ROLLBACK TO a;
SELECT 1;
COMMIT AND CHAIN;
SELECT 2;
COMMIT;
SELECT pg_temp.checkouts_since_last() AS "1 + 1";

-- A procedure that commits and rolls back inside one CALL: one checkout.
CREATE TABLE proc_log (x int);
CREATE PROCEDURE commit_inside() LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO proc_log VALUES (1);
  COMMIT;
  INSERT INTO proc_log VALUES (2);
  ROLLBACK;
  INSERT INTO proc_log VALUES (3);
END $$;
SELECT pg_temp.checkouts_since_last() AS "2 + 1";
CALL commit_inside();
SELECT pg_temp.checkouts_since_last() AS "1 + 1";
SELECT x FROM proc_log ORDER BY x;
SELECT pg_temp.checkouts_since_last() AS "1 + 1";

-- Several statements in one query message run as one implicit block: one
-- checkout, also when it fails part way.
SELECT 1 \; SELECT 2 \; SELECT 3;
SELECT 1 \; SELECT 1/0 \; SELECT 3;
SELECT pg_temp.checkouts_since_last() AS "2 + 1";

-- Utility statements are checkouts too.
CREATE TEMP TABLE utility_check (x int);
DROP TABLE utility_check;
SELECT pg_temp.checkouts_since_last() AS "2 + 1";

-- SET and RESET on their own outside a block configure the session (as
-- PgBouncer's SET application_name does before each transaction): none.
SET work_mem = '8MB';
RESET work_mem;
SELECT pg_temp.checkouts_since_last() AS "0 + 1";

DROP PROCEDURE commit_inside();
DROP TABLE proc_log;
