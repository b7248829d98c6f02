--
-- Who may read what, and who may write or drain.
--
CREATE ROLE regress_pooldiag_plain LOGIN;
CREATE ROLE regress_pooldiag_stats LOGIN IN ROLE pg_read_all_stats;

-- Object privileges: reading is public, writing and draining are not.
-- (The bootstrap superuser's name depends on who ran initdb.)
SELECT relname, replace(relacl::text, current_user, 'SUPERUSER') AS relacl
FROM pg_class
WHERE relnamespace = 'pooldiag'::regnamespace AND relkind IN ('r', 'v')
ORDER BY relname;
SELECT proname, replace(proacl::text, current_user, 'SUPERUSER') AS proacl
FROM pg_proc
WHERE pronamespace = 'pooldiag'::regnamespace ORDER BY proname;

-- This backend's session belongs to the superuser that opened it.  A plain
-- role sees that the row exists, but none of its private detail.
SET ROLE regress_pooldiag_plain;
SELECT pid = pg_backend_pid() AS pid_shown, datname IS NOT NULL AS datname_shown,
       usename IS NOT NULL AS usename_shown,
       application_name, client_addr, backend_start, state, state_change,
       age, idle_for, checkouts, checkout_start, hold_time, idle_time,
       recycle_at, terminate_at, terminate_reason, exempt, exempt_reason,
       draining, idle_timeout, client_port, client_pool, client_pool_size,
       client_max_overflow, client_pool_timeout, client_recycle,
       client_instance, wait_event_type, wait_event, blocked_by
FROM pooldiag.sessions WHERE pid = pg_backend_pid();

-- It cannot write events, nor take ids from their sequence, nor drain
-- sessions.
INSERT INTO pooldiag.events (event_time, event) VALUES (now(), 'connect');
DELETE FROM pooldiag.events;
SELECT nextval('pooldiag.events_event_id_seq');
SELECT pooldiag.drain();
-- Nor can it take the schema over (the worker writes as a superuser into
-- whatever pooldiag.events names).
ALTER SCHEMA pooldiag RENAME TO pooldiag_taken;
CREATE TABLE pooldiag.events_planted (x int);
RESET ROLE;

-- Members of pg_read_all_stats see everything.
SET ROLE regress_pooldiag_stats;
SELECT application_name IS NOT NULL AS application_name_shown,
       state IS NOT NULL AS state_shown, checkouts IS NOT NULL AS checkouts_shown,
       client_port IS NOT NULL AS client_port_shown,
       wait_event_type IS NULL AND wait_event IS NULL AS not_waiting,
       blocked_by = '{}' AS blocked_by_nobody
FROM pooldiag.sessions WHERE pid = pg_backend_pid();
RESET ROLE;

-- Events are filtered by row-level security on their role.
INSERT INTO pooldiag.events (event_id, event_time, event, usename)
OVERRIDING SYSTEM VALUE VALUES (-3, now(), 'connect', 'regress_pooldiag_plain'),
       (-2, now(), 'connect', 'regress_pooldiag_stats'),
       (-1, now(), 'rejected', 'no_such_role');
SET ROLE regress_pooldiag_plain;
SELECT event_id, usename FROM pooldiag.events WHERE event_id < 0 ORDER BY event_id;
RESET ROLE;
SET ROLE regress_pooldiag_stats;
SELECT event_id, usename FROM pooldiag.events WHERE event_id < 0 ORDER BY event_id;
RESET ROLE;
DELETE FROM pooldiag.events WHERE event_id < 0;

-- A plain role cannot hijack pooldiag's objects through search_path: every
-- reference inside the extension is schema-qualified, and the schema is
-- not writable by PUBLIC.
SET ROLE regress_pooldiag_plain;
CREATE TABLE pooldiag.events_shadow (x int);
CREATE FUNCTION pooldiag.get_sessions() RETURNS int LANGUAGE sql AS 'SELECT 1';
RESET ROLE;
SELECT pg_get_viewdef('pooldiag.sessions'::regclass) LIKE '%FROM pooldiag.get_sessions()%'
       AS sessions_qualified,
       pg_get_viewdef('pooldiag.health'::regclass) LIKE '%FROM pooldiag.get_health()%'
       AS health_qualified;

DROP ROLE regress_pooldiag_plain;
DROP ROLE regress_pooldiag_stats;
