/* pooldiag--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pooldiag UPDATE TO '1.1'" to load this file. \quit


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
