/* pooldiag--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pooldiag UPDATE TO '1.1'" to load this file. \quit

--
-- The extension owns its schema.
--
-- 1.0's control file said "schema = pooldiag": CREATE EXTENSION created that
-- schema outside the extension, or adopted one that existed already, owned
-- by whichever role had created it.  Such a role could rename the schema
-- away and plant a pooldiag.events of its own, which the worker (a
-- superuser) would then write into, and which this script would then
-- change.  So, before anything else touches pooldiag.*:
--
--  1. the schema goes to the extension's owner, which takes it from any
--     other role (and, as that updates the schema's catalog row, makes a
--     rename by that role racing with this script fail);
--  2. the update refuses to run unless schema "pooldiag" is the one that
--     holds the extension's table;
--  3. the extension is recorded in pg_catalog, as pooldiag.control says
--     since 1.1, and owns schema pooldiag, exactly as a fresh install of 1.1
--     does.  ALTER EXTENSION cannot move a non-relocatable extension, so the
--     catalogs are updated directly.  Without this, pg_dump would write
--     "CREATE SCHEMA pooldiag" and "CREATE EXTENSION pooldiag WITH SCHEMA
--     pooldiag", which 1.1 refuses;
--  4. pooldiag.events leaves extconfig: like pg_stat_statements' data, events
--     are no longer part of logical dumps (see pooldiag--1.1.sql).  Done
--     here rather than with ALTER EXTENSION DROP/ADD TABLE, which would also
--     turn any privilege granted on the table since 1.0 into an "initial"
--     one that pg_dump no longer writes out.
--
-- Every operator is schema-qualified: objects another role may have created
-- in schema pooldiag are on this script's search_path.
--
DO LANGUAGE plpgsql $pooldiag$
DECLARE
    ext_oid oid;
    ext_owner oid;
    old_owner oid;
    events_schema oid;
BEGIN
    SELECT e.oid, e.extowner INTO ext_oid, ext_owner
      FROM pg_catalog.pg_extension e
     WHERE e.extname OPERATOR(pg_catalog.=) 'pooldiag';

    SELECT n.nspowner INTO old_owner
      FROM pg_catalog.pg_namespace n
     WHERE n.nspname OPERATOR(pg_catalog.=) 'pooldiag';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schema "pooldiag" does not exist'
            USING ERRCODE = 'invalid_schema_name',
                  HINT = 'Rename the schema that holds the objects of extension "pooldiag" back to "pooldiag".';
    END IF;
    EXECUTE pg_catalog.format('ALTER SCHEMA pooldiag OWNER TO %I',
                              pg_catalog.pg_get_userbyid(ext_owner));

    SELECT c.relnamespace INTO events_schema
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) ext_oid
       AND d.deptype OPERATOR(pg_catalog.=) 'e'
       AND c.relname OPERATOR(pg_catalog.=) 'events';
    IF events_schema IS NULL OR
       events_schema OPERATOR(pg_catalog.<>) 'pooldiag'::pg_catalog.regnamespace THEN
        RAISE EXCEPTION 'schema "pooldiag" does not hold the objects of extension "pooldiag"'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('The table "events" of the extension is in schema %I.',
                                             COALESCE((SELECT n.nspname::pg_catalog.text
                                                         FROM pg_catalog.pg_namespace n
                                                        WHERE n.oid OPERATOR(pg_catalog.=) events_schema),
                                                      '?')),
                  HINT = 'Another role may have renamed the schema and created one of its own named "pooldiag".  Move that one out of the way, rename the extension''s schema back to "pooldiag", and run the update again.';
    END IF;

    IF old_owner OPERATOR(pg_catalog.<>) ext_owner THEN
        RAISE WARNING 'schema "pooldiag" was owned by role "%"; it now belongs to role "%", the owner of extension "pooldiag"',
            pg_catalog.pg_get_userbyid(old_owner), pg_catalog.pg_get_userbyid(ext_owner)
            USING DETAIL = 'Objects that role created in the schema are left in place; check them.';
    END IF;

    UPDATE pg_catalog.pg_extension
       SET extnamespace = 'pg_catalog'::pg_catalog.regnamespace,
           extconfig = NULL,
           extcondition = NULL
     WHERE oid OPERATOR(pg_catalog.=) ext_oid;
    DELETE FROM pg_catalog.pg_depend
     WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND objid OPERATOR(pg_catalog.=) ext_oid
       AND refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND refobjid OPERATOR(pg_catalog.=) events_schema;
END
$pooldiag$;

ALTER EXTENSION pooldiag ADD SCHEMA pooldiag;

--
-- Event ids from the database.
--
-- The worker no longer gives ids (1.0 derived them from queue positions,
-- which collided with restored rows); the column becomes an identity
-- column, continuing after the highest id written so far.  Retention
-- deletes by event_time, through a new index, since restored rows get new
-- (higher) ids.
--
ALTER TABLE pooldiag.events ALTER COLUMN event_id ADD GENERATED ALWAYS AS IDENTITY;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('pooldiag.events', 'event_id'), s.max_id)
  FROM (SELECT pg_catalog.max(e.event_id) AS max_id FROM ONLY pooldiag.events e) s
 WHERE s.max_id OPERATOR(pg_catalog.>=) 1;
CREATE INDEX events_event_time_idx ON pooldiag.events (event_time);

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

--
-- pooldiag.health: the enforcer and the writer are two workers now; new
-- columns for each, the enforcer's lateness, events lost in crashes,
-- rejections folded (pooldiag.rejection_fold_window) and sessions that
-- cannot be enforced (track_activities = off).  The view depends on the
-- function, so both are dropped and created again.
--
DROP VIEW pooldiag.health;
DROP FUNCTION pooldiag.get_health();

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
