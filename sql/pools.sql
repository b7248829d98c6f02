--
-- pooldiag.pools: this session's own pool, the totals since reset, the row
-- for pools that found the table full, and who sees what.
--
CREATE ROLE regress_pools_plain LOGIN;
CREATE ROLE regress_pools_stats LOGIN IN ROLE pg_read_all_stats;

-- Start the totals over.  The reset's own checkout ends after the reset,
-- so it is the first one counted.
SELECT pooldiag.reset() IS NOT NULL AS reset_done;
SELECT 1 AS one;
SELECT 2 AS two;
SELECT 3 AS three;

-- This session is alone in the implicit pool of its database, role,
-- application_name (pg_regress names it after the test) and address (none:
-- a Unix-domain socket).  It is busy with this very query.
SELECT pool, kind, datname = current_database() AS own_database,
       usename = current_user AS own_role, application_name,
       client_addr, sessions, busy, idle, idle_in_transaction,
       waiting_on_lock, overdue,
       oldest_backend_start = (SELECT backend_start FROM pooldiag.sessions
                               WHERE pid = pg_backend_pid()) AS oldest_is_me,
       longest_checkout IS NOT NULL AS checkout_under_way, longest_idle,
       stats_since <= clock_timestamp() AS since_reset,
       checkouts, peak_busy,
       hold_avg > '0' AS avg_positive,
       hold_p50 <= hold_p95 AND hold_p95 <= hold_p99 AND hold_p99 <= hold_max
         AS quantiles_ordered,
       connects, disconnects_normal + disconnects_client_eof
         + disconnects_fatal + disconnects_killed AS disconnects,
       closes_idle_timeout + closes_max_lifetime
         + closes_idle_in_transaction_timeout + closes_drain AS closes,
       leak_suspects, idle_leaks, rejected, overflow
FROM pooldiag.pools
WHERE application_name = current_setting('application_name');

-- The row of pools that found the table full is always there.
SELECT kind, pool, datname, usename, sessions, overflow
FROM pooldiag.pools WHERE kind = 'other';

-- A role without the privileges of the pool's role sees that the pool
-- exists, with its kind, database and role, and nothing else; it cannot
-- reset the totals.
SET ROLE regress_pools_plain;
SELECT pool, kind, datname IS NOT NULL AS datname_shown,
       usename IS NOT NULL AS usename_shown, application_name, client_addr,
       sessions, busy, checkouts, peak_busy, hold_p50, connects, overflow
FROM pooldiag.pools
WHERE usename = session_user OR kind = 'other'
ORDER BY kind;
SELECT pooldiag.reset();
RESET ROLE;

-- Members of pg_read_all_stats see every row whole.
SET ROLE regress_pools_stats;
SELECT kind, application_name IS NOT NULL AS application_name_shown,
       sessions IS NOT NULL AS sessions_shown,
       checkouts IS NOT NULL AS checkouts_shown
FROM pooldiag.pools
WHERE usename = session_user OR kind = 'other'
ORDER BY kind;
RESET ROLE;

DROP ROLE regress_pools_plain;
DROP ROLE regress_pools_stats;
