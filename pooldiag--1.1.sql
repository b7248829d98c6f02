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
-- event_id comes from the database when the row is written, never from the
-- writer, so rows brought in from elsewhere (restored history) can never
-- collide with the worker's; see README, "Dump and restore".
CREATE TABLE pooldiag.events (
    event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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

-- Retention deletes by event_time (restored rows get new ids, so ids need
-- not follow time), and incident queries select by it.
CREATE INDEX events_event_time_idx ON pooldiag.events (event_time);

-- The table is not registered with pg_extension_config_dump(): like
-- pg_stat_statements' data, events are not part of logical dumps.  A dump
-- must work for every role that can dump the database, and pg_dump can
-- neither read a table under row-level security without bypassing it nor
-- read one it has no SELECT on.  README shows how to archive and restore
-- events with COPY.

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

--
-- Comments, so that \dn+, \dv+, \df+ and \d+ explain every object a user
-- sees.  (The same block is in pooldiag--1.1.sql and pooldiag--1.0--1.1.sql;
-- t/090_upgrade.pl checks that both give the same result.)
--
COMMENT ON SCHEMA pooldiag IS
'pooldiag: server-side connection hygiene for applications behind connection pools';

COMMENT ON FUNCTION pooldiag.get_sessions() IS
'One row per client session; the function behind view pooldiag.sessions';
COMMENT ON VIEW pooldiag.sessions IS
'One row per client session: identity, state, checkouts and the policy in effect.  Columns after usename are NULL unless the caller has the privileges of the session''s role or of pg_read_all_stats';
COMMENT ON COLUMN pooldiag.sessions.pid IS 'Backend process id';
COMMENT ON COLUMN pooldiag.sessions.datname IS 'Database of the session';
COMMENT ON COLUMN pooldiag.sessions.usename IS 'Role of the session';
COMMENT ON COLUMN pooldiag.sessions.application_name IS 'application_name, as in pg_stat_activity';
COMMENT ON COLUMN pooldiag.sessions.client_addr IS 'Client address; NULL for Unix-domain sockets';
COMMENT ON COLUMN pooldiag.sessions.backend_start IS 'When the backend started';
COMMENT ON COLUMN pooldiag.sessions.state IS
'State in pg_stat_activity''s words: idle, active, idle in transaction, idle in transaction (aborted), fastpath function call, or disabled (track_activities = off)';
COMMENT ON COLUMN pooldiag.sessions.state_change IS 'When state last changed';
COMMENT ON COLUMN pooldiag.sessions.age IS 'Time since backend_start';
COMMENT ON COLUMN pooldiag.sessions.idle_for IS
'Time since the last checkin (or since the session became ready); NULL while checked out';
COMMENT ON COLUMN pooldiag.sessions.checkouts IS
'Checkouts so far, the current one included; a checkout is a busy period, from leaving idle to being idle again outside a transaction block';
COMMENT ON COLUMN pooldiag.sessions.checkout_start IS 'Start of the current checkout; NULL when not checked out';
COMMENT ON COLUMN pooldiag.sessions.hold_time IS 'Total time checked out, the current checkout included';
COMMENT ON COLUMN pooldiag.sessions.idle_time IS
'Total time idle outside a transaction, the current idle period included';
COMMENT ON COLUMN pooldiag.sessions.recycle_at IS
'Lifetime deadline with this session''s jitter applied; NULL without pooldiag.max_lifetime';
COMMENT ON COLUMN pooldiag.sessions.terminate_at IS
'Earliest pending deadline to close the session; NULL when none applies in the current state';
COMMENT ON COLUMN pooldiag.sessions.terminate_reason IS
'Reason of terminate_at: idle_timeout, max_lifetime, idle_in_transaction_timeout or drain';
COMMENT ON COLUMN pooldiag.sessions.exempt IS 'True if pooldiag never closes this session';
COMMENT ON COLUMN pooldiag.sessions.exempt_reason IS
'Why the session is exempt: superuser (the role is one now), exempt_roles, exempt_applications, or track_activities_off (the server cannot tell whether it is idle)';
COMMENT ON COLUMN pooldiag.sessions.draining IS
'Marked by pooldiag.drain(): closed, with reason drain, when next idle outside a transaction';
COMMENT ON COLUMN pooldiag.sessions.idle_timeout IS
'pooldiag.idle_timeout in effect for this session; NULL when off';
COMMENT ON COLUMN pooldiag.sessions.max_lifetime IS
'pooldiag.max_lifetime in effect for this session; NULL when off';
COMMENT ON COLUMN pooldiag.sessions.idle_in_transaction_timeout IS
'pooldiag.idle_in_transaction_timeout in effect for this session; NULL when off';
COMMENT ON COLUMN pooldiag.sessions.leak_threshold IS
'pooldiag.leak_threshold in effect for this session; NULL when off';

COMMENT ON TABLE pooldiag.events IS
'Events written by the pooldiag worker: connects, disconnects, checkouts, rejected connection attempts, terminations, leak suspects.  Rows are visible to members of pg_read_all_stats and to roles with the privileges of the event''s role; older than pooldiag.events_retention are deleted; not part of pg_dump output';
COMMENT ON COLUMN pooldiag.events.event_id IS
'Assigned by the database when the row is written; increasing in the order the worker writes';
COMMENT ON COLUMN pooldiag.events.event_time IS 'When it happened';
COMMENT ON COLUMN pooldiag.events.event IS
'connect, disconnect, checkout, checkin, rejected, terminate, would_terminate or leak_suspect';
COMMENT ON COLUMN pooldiag.events.reason IS
'The disconnect cause (normal, client_eof, fatal, killed), the rejection reason, or the termination reason; NULL for other events';
COMMENT ON COLUMN pooldiag.events.pid IS 'Process id of the session (or of the refused process)';
COMMENT ON COLUMN pooldiag.events.backend_start IS 'When the session''s backend started';
COMMENT ON COLUMN pooldiag.events.datname IS 'Database at the time (for rejected: the one the client asked for)';
COMMENT ON COLUMN pooldiag.events.usename IS 'Role at the time (for rejected: the one the client asked for)';
COMMENT ON COLUMN pooldiag.events.application_name IS 'application_name at the time';
COMMENT ON COLUMN pooldiag.events.client_addr IS 'Client address; NULL for Unix-domain sockets';
COMMENT ON COLUMN pooldiag.events.detail IS
'Event-specific detail; keys ending in _ms are milliseconds';
COMMENT ON SEQUENCE pooldiag.events_event_id_seq IS
'Identity sequence of pooldiag.events.event_id';

COMMENT ON FUNCTION pooldiag.recent_events() IS
'Events still queued in shared memory, in queue order, with the columns of pooldiag.events; event_id is NULL until an event is written.  On a hot standby, where nothing is written, this is how events are read';

COMMENT ON FUNCTION pooldiag.get_health() IS
'Event pipeline and workers'' state; the function behind view pooldiag.health';
COMMENT ON VIEW pooldiag.health IS
'One row of event pipeline and worker state; counters start over when the server restarts';
COMMENT ON COLUMN pooldiag.health.events_queued IS 'Events in the shared-memory queue now';
COMMENT ON COLUMN pooldiag.health.events_dropped IS
'Events lost because the queue was full; raise pooldiag.event_buffer_size if this grows';
COMMENT ON COLUMN pooldiag.health.events_written IS
'Events written to pooldiag.events since the server started, counted once their transaction committed';
COMMENT ON COLUMN pooldiag.health.last_flush IS 'Last successful write of events';
COMMENT ON COLUMN pooldiag.health.worker_pid IS 'Name kept from version 1.0: the same as writer_pid';
COMMENT ON COLUMN pooldiag.health.worker_state IS 'Name kept from version 1.0: the same as writer_state';
COMMENT ON COLUMN pooldiag.health.events_discarded IS 'Events retired unwritten on a hot standby';
COMMENT ON COLUMN pooldiag.health.event_buffer_size IS 'Capacity of the queue, in events';
COMMENT ON COLUMN pooldiag.health.terminations IS 'Sessions the enforcer closed since the server started';
COMMENT ON COLUMN pooldiag.health.would_terminations IS
'would_terminate events recorded under pooldiag.dry_run since the server started';
COMMENT ON COLUMN pooldiag.health.leak_suspects IS 'leak_suspect events since the server started';
COMMENT ON COLUMN pooldiag.health.scans IS 'Enforcement scans since the server started';
COMMENT ON COLUMN pooldiag.health.scan_ns_per_slot IS
'Average CPU time of an enforcement scan per registry slot, in nanoseconds';
COMMENT ON COLUMN pooldiag.health.writer_pid IS 'Process id of the pooldiag writer, which writes events; NULL while it is not running';
COMMENT ON COLUMN pooldiag.health.writer_state IS
'starting, running, database-missing, database-not-accepting-connections, waiting-for-extension, needs-update, untrusted-table, write-blocked, write-failed, standby, stopping or stopped';
COMMENT ON COLUMN pooldiag.health.enforcer_pid IS 'Process id of the pooldiag enforcer, which closes sessions; NULL while it is not running';
COMMENT ON COLUMN pooldiag.health.enforcer_state IS 'starting, running, stopping or stopped';
COMMENT ON COLUMN pooldiag.health.last_scan IS 'Start of the enforcer''s last scan';
COMMENT ON COLUMN pooldiag.health.lateness IS 'How long after its deadline the enforcer closed the last session it closed';
COMMENT ON COLUMN pooldiag.health.max_lateness IS 'The largest lateness since the server started';
COMMENT ON COLUMN pooldiag.health.events_lost_in_crash IS 'Events still queued when shared memory was re-created after a crash';
COMMENT ON COLUMN pooldiag.health.rejections_folded IS 'Rejected connection attempts counted into folded rows instead of written one by one';
COMMENT ON COLUMN pooldiag.health.untracked_sessions IS
'Sessions with track_activities off that were past a deadline at the last scan and were left open, since the server cannot tell whether they are idle';

COMMENT ON FUNCTION pooldiag.drain(name, name, text) IS
'Mark the matching sessions (NULL matches any) to be closed, with reason drain, when next idle outside a transaction; returns how many were marked.  Follows pg_terminate_backend''s permission rules per session';
