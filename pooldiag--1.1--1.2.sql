/* pooldiag--1.1--1.2.sql: update from 1.1 to 1.2 (also the last step of a fresh install) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pooldiag UPDATE TO '1.2'" to load this file. \quit

-- Who is who: the client's port, the client pool a session declares
-- (settings pooldiag.client_*), and what a session waits for and on whom.

--
-- Sessions.  The C function serves both 1.1's 24 columns and 1.2's 33, the
-- new ones last.  The view is replaced, not dropped, so that its grants,
-- its comments and the objects of users that depend on it stay; its new
-- columns come after the old ones.
--
ALTER FUNCTION pooldiag.get_sessions() RENAME TO get_sessions_1_1;

CREATE FUNCTION pooldiag.get_sessions(
    OUT pid integer,
    OUT datname name,
    OUT usename name,
    OUT application_name text,
    OUT client_addr inet,
    OUT backend_start timestamptz,
    OUT state text,
    OUT state_change timestamptz,
    OUT age interval,
    OUT idle_for interval,
    OUT checkouts bigint,
    OUT checkout_start timestamptz,
    OUT hold_time interval,
    OUT idle_time interval,
    OUT recycle_at timestamptz,
    OUT terminate_at timestamptz,
    OUT terminate_reason text,
    OUT exempt boolean,
    OUT exempt_reason text,
    OUT draining boolean,
    OUT idle_timeout interval,
    OUT max_lifetime interval,
    OUT idle_in_transaction_timeout interval,
    OUT leak_threshold interval,
    OUT client_port integer,
    OUT client_pool text,
    OUT client_pool_size integer,
    OUT client_max_overflow integer,
    OUT client_pool_timeout interval,
    OUT client_recycle interval,
    OUT client_instance text,
    OUT wait_event_type text,
    OUT wait_event text
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_sessions'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- pg_blocking_pids() is volatile, and a volatile expression in a view's
-- select list is computed for every row even when the query does not ask
-- for its column (the planner neither flattens the view nor drops the
-- column).  Behind this STABLE wrapper, which the planner cannot inline, it
-- is computed only when blocked_by is selected, and then only for sessions
-- waiting on a lock.
CREATE FUNCTION pooldiag.blocked_by(pid integer)
RETURNS integer[]
LANGUAGE sql STABLE STRICT PARALLEL RESTRICTED
AS 'SELECT pg_catalog.pg_blocking_pids(pid)';

CREATE OR REPLACE VIEW pooldiag.sessions AS
    SELECT s.pid, s.datname, s.usename, s.application_name, s.client_addr,
           s.backend_start, s.state, s.state_change, s.age, s.idle_for,
           s.checkouts, s.checkout_start, s.hold_time, s.idle_time,
           s.recycle_at, s.terminate_at, s.terminate_reason, s.exempt,
           s.exempt_reason, s.draining, s.idle_timeout, s.max_lifetime,
           s.idle_in_transaction_timeout, s.leak_threshold,
           s.client_port, s.client_pool, s.client_pool_size,
           s.client_max_overflow, s.client_pool_timeout, s.client_recycle,
           s.client_instance, s.wait_event_type, s.wait_event,
           CASE
               WHEN s.wait_event_type OPERATOR(pg_catalog.=) 'Lock'
                   THEN pooldiag.blocked_by(s.pid)
               -- visible (backend_start is NULL only when hidden), not waiting on a lock
               WHEN s.backend_start IS NOT NULL THEN '{}'::integer[]
           END AS blocked_by
    FROM pooldiag.get_sessions() s;

DROP FUNCTION pooldiag.get_sessions_1_1();

--
-- Events: the client's port.  Rows written before the update keep NULL.
--
ALTER TABLE pooldiag.events ADD COLUMN client_port integer;

DROP FUNCTION pooldiag.recent_events();

CREATE FUNCTION pooldiag.recent_events(
    OUT event_id bigint,
    OUT event_time timestamptz,
    OUT event text,
    OUT reason text,
    OUT pid integer,
    OUT backend_start timestamptz,
    OUT datname name,
    OUT usename name,
    OUT application_name text,
    OUT client_addr inet,
    OUT detail jsonb,
    OUT client_port integer
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_recent_events'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

--
-- Comments on what is new or was made anew.
--
COMMENT ON FUNCTION pooldiag.get_sessions() IS
'One row per client session; the function behind view pooldiag.sessions';
COMMENT ON FUNCTION pooldiag.blocked_by(integer) IS
'pg_blocking_pids() for view pooldiag.sessions: the pids of the sessions that block the given one from a lock, computed only when asked for';
COMMENT ON COLUMN pooldiag.sessions.client_port IS
'Client TCP port, as in pg_stat_activity; -1 for Unix-domain sockets';
COMMENT ON COLUMN pooldiag.sessions.client_pool IS
'pooldiag.client_pool of the session: the name of the client pool it declares it belongs to; NULL when not declared';
COMMENT ON COLUMN pooldiag.sessions.client_pool_size IS
'pooldiag.client_pool_size of the session, as declared by the client; NULL when not declared.  Never used for enforcement';
COMMENT ON COLUMN pooldiag.sessions.client_max_overflow IS
'pooldiag.client_max_overflow of the session, as declared by the client; NULL when not declared.  Never used for enforcement';
COMMENT ON COLUMN pooldiag.sessions.client_pool_timeout IS
'pooldiag.client_pool_timeout of the session, as declared by the client; NULL when not declared.  Never used for enforcement';
COMMENT ON COLUMN pooldiag.sessions.client_recycle IS
'pooldiag.client_recycle of the session, as declared by the client; NULL when not declared.  Never used for enforcement (recycle_at comes from pooldiag.max_lifetime)';
COMMENT ON COLUMN pooldiag.sessions.client_instance IS
'pooldiag.client_instance of the session: the client process or instance it declares, e.g. host:pid; NULL when not declared';
COMMENT ON COLUMN pooldiag.sessions.wait_event_type IS
'Type of the event the session waits for, as in pg_stat_activity (Lock: a heavyweight lock); NULL when not waiting';
COMMENT ON COLUMN pooldiag.sessions.wait_event IS
'Name of the event the session waits for, as in pg_stat_activity; NULL when not waiting';
COMMENT ON COLUMN pooldiag.sessions.blocked_by IS
'Pids of the sessions that block this one from the lock it waits for, as pg_blocking_pids() gives them, when wait_event_type is Lock; empty otherwise.  Computed only when selected';
COMMENT ON COLUMN pooldiag.events.client_port IS
'Client TCP port; -1 for Unix-domain sockets; NULL for rows written before version 1.2';
COMMENT ON FUNCTION pooldiag.recent_events() IS
'Events still queued in shared memory, in queue order, with the columns of pooldiag.events; event_id is NULL until an event is written.  On a hot standby, where nothing is written, this is how events are read';
