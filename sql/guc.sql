--
-- Settings: defaults, contexts, units, reserved prefix, refused values.
--
SELECT name, setting, unit, context, vartype, min_val, max_val
FROM pg_settings WHERE name LIKE 'pooldiag.%' ORDER BY name;

SELECT name, enumvals FROM pg_settings WHERE name = 'pooldiag.log_checkouts';

-- The prefix is reserved: a misspelt setting is an error, not a placeholder.
SET pooldiag.idle_timeot = '1s';

-- Units are accepted.
SET pooldiag.idle_timeout = '30min';
SHOW pooldiag.idle_timeout;
SET pooldiag.leak_threshold = '90s';
SHOW pooldiag.leak_threshold;

-- A session's own value is the one it is enforced with.
SELECT idle_timeout, leak_threshold FROM pooldiag.sessions
WHERE pid = pg_backend_pid();
RESET pooldiag.idle_timeout;
RESET pooldiag.leak_threshold;
SELECT idle_timeout, leak_threshold FROM pooldiag.sessions
WHERE pid = pg_backend_pid();

-- Out of range or malformed values are refused with the usual GUC errors,
-- and the old value stays.  (The range error of a setting with a unit is
-- shown by its SQLSTATE only: from 17 on, its message prints the unit with
-- the bounds.)
SET pooldiag.idle_timeout = '5min';
\set VERBOSITY sqlstate
SET pooldiag.idle_timeout = '-1';
\set VERBOSITY default
SHOW pooldiag.idle_timeout;
RESET pooldiag.idle_timeout;
SET pooldiag.log_checkouts = 'some';
ALTER SYSTEM SET pooldiag.lifetime_jitter = 0.7;
ALTER SYSTEM SET pooldiag.lifetime_jitter = -0.1;
ALTER SYSTEM SET pooldiag.saturation_warning = 1.5;
ALTER SYSTEM SET pooldiag.saturation_warning = -0.1;
ALTER SYSTEM SET pooldiag.exempt_applications = 'ok-*, ';
ALTER SYSTEM SET pooldiag.exempt_applications = '"unterminated';
ALTER SYSTEM SET pooldiag.exempt_applications = E'"tab\there"';
ALTER SYSTEM SET pooldiag.exempt_applications = 'ok, this-pattern-is-far-too-long-to-ever-match-an-application-name-at-all';
ALTER SYSTEM SET pooldiag.exempt_roles = '"unterminated';
ALTER SYSTEM SET pooldiag.max_terminations_per_second = -1;

-- Worker-wide settings change only in postgresql.conf, with a reload.
SET pooldiag.naptime = '2s';
SET pooldiag.dry_run = on;
SET pooldiag.event_buffer_size = 100;

-- Per-role and per-database values use PostgreSQL's own mechanism.
CREATE ROLE regress_pooldiag_app;
ALTER ROLE regress_pooldiag_app SET pooldiag.idle_timeout = '2s';
ALTER ROLE regress_pooldiag_app IN DATABASE contrib_regression
  SET pooldiag.max_lifetime = '1h';
SELECT setrole::regrole, setdatabase <> 0 AS per_database, setconfig
FROM pg_db_role_setting WHERE setrole = 'regress_pooldiag_app'::regrole
ORDER BY 2;
DROP ROLE regress_pooldiag_app;

--
-- Declared client pools: any role may set them; they are shown and never
-- enforced.  Ranges: sizes 0 .. 262143, times 0 .. INT_MAX ms.
--
CREATE ROLE regress_pooldiag_client;
SET ROLE regress_pooldiag_client;
SET pooldiag.client_pool = 'orders-api';
SET pooldiag.client_pool_size = 5;
SET pooldiag.client_max_overflow = 10;
SET pooldiag.client_pool_timeout = '30s';
SET pooldiag.client_recycle = '30min';
SET pooldiag.client_instance = 'web-3:4711';
-- (The session's row is the superuser's, which this role may not see.)
RESET ROLE;
SELECT client_pool, client_pool_size, client_max_overflow,
       client_pool_timeout, client_recycle, client_instance,
       recycle_at, idle_timeout, max_lifetime
FROM pooldiag.sessions WHERE pid = pg_backend_pid();
-- Hostile values: refused with the usual GUC errors.
SET pooldiag.client_pool_size = -1;
SET pooldiag.client_pool_size = 262144;
SET pooldiag.client_max_overflow = 99999999999;
-- (a setting with a unit: its range error by SQLSTATE, as above)
\set VERBOSITY sqlstate
SET pooldiag.client_pool_timeout = '-5s';
\set VERBOSITY default
SET pooldiag.client_recycle = '100d';
SET pooldiag.client_pool_size = 'five';
-- A name longer than 63 bytes is cut at a character: here after the 62
-- ASCII bytes, since the two-byte "é" that follows does not fit whole.
SET pooldiag.client_instance = 'host-with-a-very-long-name.example.com:4711/worker-0123456789-é';
SELECT client_instance, octet_length(client_instance)
FROM pooldiag.sessions WHERE pid = pg_backend_pid();
-- RESET returns to "not declared".
RESET pooldiag.client_pool_size;
RESET pooldiag.client_pool;
SELECT client_pool, client_pool_size, client_max_overflow
FROM pooldiag.sessions WHERE pid = pg_backend_pid();
-- A rolled-back SET is undone in the view as well.
SET pooldiag.client_pool = 'before';
BEGIN;
SET pooldiag.client_pool = 'in-a-rolled-back-transaction';
SELECT client_pool FROM pooldiag.sessions WHERE pid = pg_backend_pid();
ROLLBACK;
SELECT client_pool FROM pooldiag.sessions WHERE pid = pg_backend_pid();
RESET ALL;
DROP ROLE regress_pooldiag_client;
