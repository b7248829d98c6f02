/* pooldiag--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pooldiag UPDATE TO '1.1'" to load this file. \quit


-- pooldiag.health: rejections_folded, attempts counted into folded
-- "rejected" rows (pooldiag.rejection_fold_window).  A view's columns
-- cannot be added to through its function, so both are made again.
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
    OUT rejections_folded bigint
)
RETURNS record
AS 'MODULE_PATHNAME', 'pooldiag_health'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pooldiag.health AS
    SELECT * FROM pooldiag.get_health();

GRANT SELECT ON pooldiag.health TO PUBLIC;
