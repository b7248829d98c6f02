/* pooldiag--1.1.sql: a fresh install of version 1.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pooldiag" to load this file. \quit

-- Every object lives in schema pooldiag, and every name below is
-- schema-qualified, so no search_path can redirect them.  The script creates
-- the schema itself: CREATE EXTENSION fails if a schema of that name exists
-- already, instead of adopting one that another role owns and controls.
CREATE SCHEMA pooldiag;
GRANT USAGE ON SCHEMA pooldiag TO PUBLIC;

--
-- Sessions
--
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
    OUT leak_threshold interval
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_sessions'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pooldiag.sessions AS
    SELECT * FROM pooldiag.get_sessions();

GRANT SELECT ON pooldiag.sessions TO PUBLIC;

--
-- Events
--
CREATE TABLE pooldiag.events (
    event_id bigint PRIMARY KEY,
    event_time timestamptz NOT NULL,
    event text NOT NULL,
    reason text,
    pid integer,
    backend_start timestamptz,
    datname name,
    usename name,
    application_name text,
    client_addr inet,
    detail jsonb
);

-- Keep the rows in pg_dump output: they are data, not configuration.
SELECT pg_catalog.pg_extension_config_dump('pooldiag.events', '');

-- Like pooldiag.sessions: members of pg_read_all_stats see every row, other
-- roles the rows of roles whose privileges they have.  Only the extension's
-- owner (and the worker, a superuser) may write.
ALTER TABLE pooldiag.events ENABLE ROW LEVEL SECURITY;

CREATE POLICY events_visibility ON pooldiag.events FOR SELECT
    USING (pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                      WHERE r.rolname OPERATOR(pg_catalog.=) events.usename
                        AND pg_catalog.pg_has_role(r.oid, 'USAGE')));

GRANT SELECT ON pooldiag.events TO PUBLIC;

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
    OUT detail jsonb
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_recent_events'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

--
-- Pipeline and worker health.  worker_pid and worker_state are 1.0's names
-- for writer_pid and writer_state; the C function also serves 1.0's
-- thirteen columns, which come first in the same order.
--
CREATE FUNCTION pooldiag.get_health(
    OUT events_queued bigint,
    OUT events_dropped bigint,
    OUT events_written bigint,
    OUT last_flush timestamptz,
    OUT worker_pid integer,
    OUT worker_state text,
    OUT events_discarded bigint,
    OUT event_buffer_size integer,
    OUT terminations bigint,
    OUT would_terminations bigint,
    OUT leak_suspects bigint,
    OUT scans bigint,
    OUT scan_ns_per_slot double precision,
    OUT writer_pid integer,
    OUT writer_state text,
    OUT enforcer_pid integer,
    OUT enforcer_state text,
    OUT last_scan timestamptz,
    OUT lateness interval,
    OUT max_lateness interval,
    OUT events_lost_in_crash bigint,
    OUT rejections_folded bigint,
    OUT untracked_sessions integer
)
RETURNS record
AS 'MODULE_PATHNAME', 'pooldiag_health'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pooldiag.health AS
    SELECT * FROM pooldiag.get_health();

GRANT SELECT ON pooldiag.health TO PUBLIC;

--
-- Drain
--
CREATE FUNCTION pooldiag.drain(
    datname name DEFAULT NULL,
    usename name DEFAULT NULL,
    application_name text DEFAULT NULL
)
RETURNS integer
AS 'MODULE_PATHNAME', 'pooldiag_drain'
LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION pooldiag.drain(name, name, text) FROM PUBLIC;
