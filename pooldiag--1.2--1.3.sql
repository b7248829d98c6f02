/* pooldiag--1.2--1.3.sql: update from 1.2 to 1.3 (also the last step of a fresh install) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pooldiag UPDATE TO '1.3'" to load this file. \quit

-- Pool health: pooldiag.pools and pooldiag.reset(), capacity and the
-- saturation counts, pooldiag.metrics() for Prometheus, pooldiag.recommend().
-- Only new objects: a 1.2 database keeps working unchanged with this library.
-- ====================================================================
-- Pools: pooldiag.pools and pooldiag.reset()
-- ====================================================================

CREATE FUNCTION pooldiag.get_pools(
    OUT pool text,
    OUT kind text,
    OUT datname name,
    OUT usename name,
    OUT application_name text,
    OUT client_addr inet,
    OUT sessions integer,
    OUT busy integer,
    OUT idle integer,
    OUT idle_in_transaction integer,
    OUT waiting_on_lock integer,
    OUT overdue integer,
    OUT oldest_backend_start timestamptz,
    OUT longest_checkout interval,
    OUT longest_idle interval,
    OUT stats_since timestamptz,
    OUT checkouts bigint,
    OUT peak_busy integer,
    OUT hold_avg interval,
    OUT hold_p50 interval,
    OUT hold_p95 interval,
    OUT hold_p99 interval,
    OUT hold_max interval,
    OUT connects bigint,
    OUT disconnects_normal bigint,
    OUT disconnects_client_eof bigint,
    OUT disconnects_fatal bigint,
    OUT disconnects_killed bigint,
    OUT closes_idle_timeout bigint,
    OUT closes_max_lifetime bigint,
    OUT closes_idle_in_transaction_timeout bigint,
    OUT closes_drain bigint,
    OUT leak_suspects bigint,
    OUT idle_leaks bigint,
    OUT rejected bigint,
    OUT declared_instances integer,
    OUT declared_max integer,
    OUT overflow bigint
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_pools'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pooldiag.pools AS
    SELECT * FROM pooldiag.get_pools();

GRANT SELECT ON pooldiag.pools TO PUBLIC;

-- Like pg_stat_statements_reset(): superusers only, unless granted, e.g.
--   GRANT EXECUTE ON FUNCTION pooldiag.reset() TO monitoring;
CREATE FUNCTION pooldiag.reset()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'pooldiag_reset'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION pooldiag.reset() FROM PUBLIC;

COMMENT ON FUNCTION pooldiag.get_pools() IS
'One row per client pool; the function behind view pooldiag.pools';
COMMENT ON VIEW pooldiag.pools IS
'One row per client pool: a declared pool (pooldiag.client_pool, per database and role) or else the sessions of one database, role, application_name and client address.  Live counts now, and totals since pooldiag.reset() that survive a clean restart.  Columns after usename are NULL unless the caller has the privileges of the pool''s role or of pg_read_all_stats';
COMMENT ON COLUMN pooldiag.pools.pool IS 'Declared pool name (pooldiag.client_pool); NULL for implicit pools';
COMMENT ON COLUMN pooldiag.pools.kind IS
'declared, implicit, or other: the row that counts the sessions of pools that found the table full (pooldiag.max_pools)';
COMMENT ON COLUMN pooldiag.pools.datname IS 'Database of the pool''s sessions';
COMMENT ON COLUMN pooldiag.pools.usename IS 'Role of the pool''s sessions';
COMMENT ON COLUMN pooldiag.pools.application_name IS 'application_name of an implicit pool; NULL for declared pools';
COMMENT ON COLUMN pooldiag.pools.client_addr IS
'Client address of an implicit pool; NULL for declared pools and Unix-domain sockets';
COMMENT ON COLUMN pooldiag.pools.sessions IS 'Sessions in the pool now';
COMMENT ON COLUMN pooldiag.pools.busy IS
'Sessions checked out now (running, waiting, or idle in a transaction)';
COMMENT ON COLUMN pooldiag.pools.idle IS 'Sessions idle outside a transaction now';
COMMENT ON COLUMN pooldiag.pools.idle_in_transaction IS
'Checked-out sessions idle in a transaction (or an aborted one) now';
COMMENT ON COLUMN pooldiag.pools.waiting_on_lock IS
'Checked-out sessions waiting for a heavyweight lock now (wait_event_type Lock)';
COMMENT ON COLUMN pooldiag.pools.overdue IS
'Sessions past their recycle age (recycle_at) that have not been idle long enough (pooldiag.recycle_min_idle) to be closed';
COMMENT ON COLUMN pooldiag.pools.oldest_backend_start IS 'backend_start of the pool''s oldest session';
COMMENT ON COLUMN pooldiag.pools.longest_checkout IS 'Longest checkout under way; NULL when none is';
COMMENT ON COLUMN pooldiag.pools.longest_idle IS 'Longest idle period under way; NULL when no session is idle';
COMMENT ON COLUMN pooldiag.pools.stats_since IS
'Start of the totals: the last pooldiag.reset(), or when the pool first appeared';
COMMENT ON COLUMN pooldiag.pools.checkouts IS 'Checkouts ended since stats_since; what the hold_ columns describe';
COMMENT ON COLUMN pooldiag.pools.peak_busy IS 'Most checkouts of the pool open at one moment since stats_since';
COMMENT ON COLUMN pooldiag.pools.hold_avg IS 'Mean hold time of those checkouts (exact)';
COMMENT ON COLUMN pooldiag.pools.hold_p50 IS
'Median hold time, from a log-scale histogram: within 5% (buckets of ratio 1.1, reported at their geometric midpoint)';
COMMENT ON COLUMN pooldiag.pools.hold_p95 IS '95th percentile of the hold time, within 5%';
COMMENT ON COLUMN pooldiag.pools.hold_p99 IS '99th percentile of the hold time, within 5%';
COMMENT ON COLUMN pooldiag.pools.hold_max IS 'Longest hold time (exact)';
COMMENT ON COLUMN pooldiag.pools.connects IS 'Sessions that connected into the pool';
COMMENT ON COLUMN pooldiag.pools.disconnects_normal IS 'Sessions that ended with a Terminate message';
COMMENT ON COLUMN pooldiag.pools.disconnects_client_eof IS 'Sessions whose client went away without Terminate';
COMMENT ON COLUMN pooldiag.pools.disconnects_fatal IS 'Sessions that ended with a FATAL error';
COMMENT ON COLUMN pooldiag.pools.disconnects_killed IS
'Sessions ended by SIGTERM: pooldiag''s closes (see closes_) and pg_terminate_backend() alike';
COMMENT ON COLUMN pooldiag.pools.closes_idle_timeout IS 'Sessions pooldiag closed for pooldiag.idle_timeout';
COMMENT ON COLUMN pooldiag.pools.closes_max_lifetime IS 'Sessions pooldiag closed for pooldiag.max_lifetime';
COMMENT ON COLUMN pooldiag.pools.closes_idle_in_transaction_timeout IS
'Sessions pooldiag closed for pooldiag.idle_in_transaction_timeout';
COMMENT ON COLUMN pooldiag.pools.closes_drain IS 'Sessions pooldiag closed for pooldiag.drain()';
COMMENT ON COLUMN pooldiag.pools.leak_suspects IS 'leak_suspect events of either kind';
COMMENT ON COLUMN pooldiag.pools.idle_leaks IS
'leak_suspect events with reason idle_while_pool_busy: idle sessions the application very likely holds';
COMMENT ON COLUMN pooldiag.pools.rejected IS 'Rejected connection attempts attributed to the pool';
COMMENT ON COLUMN pooldiag.pools.declared_instances IS
'Distinct pooldiag.client_instance values declared by the pool''s sessions now';
COMMENT ON COLUMN pooldiag.pools.declared_max IS
'Sum over those instances of client_pool_size + client_max_overflow: the most connections the pool may open';
COMMENT ON COLUMN pooldiag.pools.overflow IS
'The other row only: sessions counted into it since stats_since because the table was full';
COMMENT ON FUNCTION pooldiag.reset() IS
'Start the totals of pooldiag.pools and the peak of pooldiag.capacity over; returns the time of the reset.  Superusers only, unless granted';

-- ====================================================================
-- Capacity and metrics: pooldiag.capacity and pooldiag.metrics()
--
-- Operators and functions in the view and in the BEGIN ATOMIC body are
-- bound when this script runs, with search_path set to pg_catalog, so no
-- caller's search_path can redirect them.
-- ====================================================================

--
-- Server-wide connection numbers from shared memory: slots, sessions in use,
-- their exact peak, and the saturation events.  No per-session detail.
--
CREATE FUNCTION pooldiag.get_capacity(
    OUT max_connections integer,
    OUT reserved_connections integer,
    OUT slots integer,
    OUT in_use integer,
    OUT peak_in_use integer,
    OUT peak_at timestamptz,
    OUT peak_since timestamptz,
    OUT saturation_warning double precision,
    OUT saturation_events bigint,
    OUT last_saturation timestamptz
)
RETURNS record
AS 'MODULE_PATHNAME', 'pooldiag_capacity'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- Refused connection attempts since the server started, by reason.
CREATE FUNCTION pooldiag.get_rejection_counts(
    OUT reason text,
    OUT attempts bigint
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_rejection_counts'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

--
-- pooldiag.capacity: one "server" row, then a row per database and per role
-- that has a connection limit (superuser roles, to which role limits do not
-- apply, are left out).  The declared sizes of client pools are summed per
-- scope in the CTE "declared", with the terms of the sum for "detail", from
-- the sessions' pooldiag.client_* settings and by pooldiag.pools' rule, so
-- that they add up to its declared_max.
--
CREATE VIEW pooldiag.capacity AS
WITH cap AS (
    SELECT * FROM pooldiag.get_capacity()
), sessions AS (
    SELECT s.datname, s.usename FROM pooldiag.get_sessions() s
), instances AS (
    -- Declared client pool instances, counted as pooldiag.pools counts them
    -- (declared_instances, declared_max): one per pool and client_instance
    -- ("" being one too), with the largest pool_size + max_overflow its
    -- sessions declare.  A pool is named by pooldiag.client_pool, else by
    -- its application_name (and told apart by its client address).
    SELECT s.datname, s.usename,
           coalesce(s.client_pool, s.application_name, '') AS pool,
           max(s.client_pool_size + coalesce(s.client_max_overflow, 0)) AS max,
           max(s.client_pool_size) AS size,
           max(coalesce(s.client_max_overflow, 0)) AS overflow
    FROM pooldiag.get_sessions() s
    WHERE s.client_pool_size IS NOT NULL
    GROUP BY s.datname, s.usename, coalesce(s.client_pool, s.application_name, ''),
             CASE WHEN s.client_pool IS NULL THEN s.client_addr END,
             coalesce(s.client_instance, '')
), pools AS (
    -- One term of the sum per pool and size: "web: 4 instances x (5 + 10)";
    -- instances whose sessions declare different sizes count with their
    -- largest sum, shown alone: "web: 1 instance x 17".
    SELECT i.datname, i.usename, count(*)::integer AS declared_instances,
           sum(i.max)::bigint AS declared_max,
           i.pool || ': ' || count(*) ||
           CASE WHEN count(*) = 1 THEN ' instance x ' ELSE ' instances x ' END ||
           CASE WHEN i.size + i.overflow = i.max
                THEN '(' || i.size || ' + ' || i.overflow || ')'
                ELSE i.max::text END AS term
    FROM instances i
    GROUP BY i.datname, i.usename, i.pool, i.size, i.overflow, i.max
), declared(scope, name, declared_instances, declared_max, terms) AS (
    SELECT 'server'::text, NULL::name, sum(declared_instances)::integer,
           sum(declared_max)::bigint, string_agg(term, ' + ' ORDER BY term)
    FROM pools HAVING count(*) > 0
    UNION ALL
    SELECT 'database', datname, sum(declared_instances)::integer,
           sum(declared_max)::bigint, string_agg(term, ' + ' ORDER BY term)
    FROM pools GROUP BY datname
    UNION ALL
    SELECT 'role', usename, sum(declared_instances)::integer,
           sum(declared_max)::bigint, string_agg(term, ' + ' ORDER BY term)
    FROM pools GROUP BY usename
), scopes AS (
    SELECT 'server'::text AS scope, NULL::name AS name,
           cap.slots, cap.in_use, cap.peak_in_use, cap.peak_at
    FROM cap
    UNION ALL
    SELECT 'database', d.datname, d.datconnlimit,
           (SELECT count(*)::integer FROM sessions s
            WHERE s.datname = d.datname),
           NULL, NULL
    FROM pg_catalog.pg_database d
    WHERE d.datconnlimit >= 0
    UNION ALL
    SELECT 'role', r.rolname, r.rolconnlimit,
           (SELECT count(*)::integer FROM sessions s
            WHERE s.usename = r.rolname),
           NULL, NULL
    FROM pg_catalog.pg_roles r
    WHERE r.rolconnlimit >= 0 AND NOT r.rolsuper
)
SELECT s.scope, s.name, s.slots, s.in_use, s.peak_in_use, s.peak_at,
       CASE WHEN s.slots > 0
            THEN s.in_use::double precision / s.slots
       END AS usage,
       -- The enforcer's rule (capacity.c): at least ceil(warning × slots)
       -- sessions, the epsilon keeping 0.7 × 10 at 7.
       CASE WHEN cap.saturation_warning > 0
            THEN s.in_use >= greatest(ceil(cap.saturation_warning * s.slots - 1e-9), 1)
            ELSE false
       END AS near_exhaustion,
       coalesce(d.declared_instances, 0) AS declared_instances,
       coalesce(d.declared_max, 0) AS declared_max,
       coalesce(d.declared_max > s.slots, false) AS oversubscribed,
       d.terms || ' = ' || d.declared_max
           ||
           CASE WHEN d.declared_max > s.slots
                THEN ' > ' ELSE ' <= ' END
           || s.slots || ' slots'
       AS detail
FROM scopes s
CROSS JOIN cap
LEFT JOIN declared d
  ON d.scope = s.scope
 AND d.name IS NOT DISTINCT FROM s.name
ORDER BY s.scope <> 'server', s.scope, s.name;

REVOKE ALL ON FUNCTION pooldiag.get_capacity() FROM PUBLIC;
REVOKE ALL ON FUNCTION pooldiag.get_rejection_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pooldiag.get_capacity() TO pg_monitor;
GRANT EXECUTE ON FUNCTION pooldiag.get_rejection_counts() TO pg_monitor;
GRANT SELECT ON pooldiag.capacity TO pg_monitor;

--
-- Each pool's hold times as a Prometheus histogram: cumulative counts of
-- checkouts held at most le seconds (bounds are edges of pooldiag's own
-- log-scale buckets, so the counts are exact), their sum and count.  Rows of
-- the pools the caller may see, as in pooldiag.pools.
--
CREATE FUNCTION pooldiag.get_pool_hold_histogram(
    OUT kind text,
    OUT pool text,
    OUT datname name,
    OUT usename name,
    OUT application_name text,
    OUT client_addr inet,
    OUT le double precision[],
    OUT buckets bigint[],
    OUT sum double precision,
    OUT count bigint
)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pooldiag_pool_hold_histogram'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

REVOKE ALL ON FUNCTION pooldiag.get_pool_hold_histogram() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pooldiag.get_pool_hold_histogram() TO pg_monitor;

--
-- pooldiag.metrics(): everything above and in pooldiag.health as one text in
-- the Prometheus text exposition format (version 0.0.4), for a scraper that
-- runs SQL (see contrib/prometheus-postgres-exporter/ for one that maps
-- columns instead).  Label values are escaped as the format requires:
-- backslash, double quote and newline become \\, \" and \n.
--
CREATE FUNCTION pooldiag.prometheus_label(value text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN '"' || replace(replace(replace(value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n') || '"';

CREATE FUNCTION pooldiag.metrics()
RETURNS text
LANGUAGE sql VOLATILE STRICT PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
WITH cap AS (
    SELECT * FROM pooldiag.get_capacity()
), server AS (
    SELECT * FROM pooldiag.capacity WHERE scope = 'server'
), health AS (
    SELECT * FROM pooldiag.get_health()
), pools AS (
    -- The pools whose detail the caller may see, with their labels.
    SELECT p.*,
           'kind=' || pooldiag.prometheus_label(p.kind) ||
           ',pool=' || pooldiag.prometheus_label(coalesce(p.pool, '')) ||
           ',datname=' || pooldiag.prometheus_label(coalesce(p.datname::text, '')) ||
           ',usename=' || pooldiag.prometheus_label(coalesce(p.usename::text, '')) ||
           ',application_name=' || pooldiag.prometheus_label(coalesce(p.application_name, '')) ||
           ',client_addr=' || pooldiag.prometheus_label(coalesce(host(p.client_addr), ''))
           AS labels
    FROM pooldiag.get_pools() p
    WHERE p.sessions IS NOT NULL
), hold AS (
    SELECT h.*,
           'kind=' || pooldiag.prometheus_label(h.kind) ||
           ',pool=' || pooldiag.prometheus_label(coalesce(h.pool, '')) ||
           ',datname=' || pooldiag.prometheus_label(coalesce(h.datname::text, '')) ||
           ',usename=' || pooldiag.prometheus_label(coalesce(h.usename::text, '')) ||
           ',application_name=' || pooldiag.prometheus_label(coalesce(h.application_name, '')) ||
           ',client_addr=' || pooldiag.prometheus_label(coalesce(host(h.client_addr), ''))
           AS labels
    FROM pooldiag.get_pool_hold_histogram() h
), families(ord, family, type, help) AS (VALUES
    (100, 'pooldiag_connection_slots', 'gauge',
     'Connection slots available to clients: max_connections minus the connections reserved for superusers (and reserved_connections from PostgreSQL 16 on).'),
    (110, 'pooldiag_connections_in_use', 'gauge',
     'Client sessions now, superusers'' included.'),
    (120, 'pooldiag_connections_peak', 'gauge',
     'Most client sessions at one moment since the server started or pooldiag.reset().'),
    (130, 'pooldiag_saturation_warning_ratio', 'gauge',
     'pooldiag.saturation_warning: the fraction of the slots in use from which a saturation event is recorded (0: off).'),
    (140, 'pooldiag_saturation_events_total', 'counter',
     'saturation events recorded since the server started.'),
    (150, 'pooldiag_declared_instances', 'gauge',
     'Client pool instances that declared their size (pooldiag.client_pool_size) in connected sessions.'),
    (160, 'pooldiag_declared_max_connections', 'gauge',
     'Sum of pool_size + max_overflow over the declared client pool instances.'),
    (170, 'pooldiag_oversubscribed', 'gauge',
     '1 when the declared client pools together may open more connections than there are slots.'),
    (180, 'pooldiag_database_connection_limit', 'gauge',
     'Connection limit of a database that has one.'),
    (190, 'pooldiag_database_connections', 'gauge',
     'Client sessions of a database that has a connection limit.'),
    (200, 'pooldiag_role_connection_limit', 'gauge',
     'Connection limit of a role that has one (superusers excepted).'),
    (210, 'pooldiag_role_connections', 'gauge',
     'Client sessions of a role that has a connection limit.'),
    (220, 'pooldiag_pool_sessions', 'gauge',
     'Sessions of a pool now, by state: idle, active, idle_in_transaction, waiting_on_lock (they add up to the pool''s sessions).'),
    (225, 'pooldiag_pool_overdue_sessions', 'gauge',
     'Sessions of a pool past their recycle age that were never idle long enough to be recycled.'),
    (230, 'pooldiag_pool_peak_busy', 'gauge',
     'Most checkouts of a pool open at one moment since pooldiag.reset().'),
    (235, 'pooldiag_pool_longest_checkout_seconds', 'gauge',
     'Longest checkout of a pool under way (0 when none is).'),
    (240, 'pooldiag_pool_checkouts_total', 'counter',
     'Checkouts of a pool ended since pooldiag.reset().'),
    (245, 'pooldiag_pool_hold_seconds', 'histogram',
     'Hold times of a pool''s checkouts since pooldiag.reset().'),
    (250, 'pooldiag_pool_connects_total', 'counter',
     'Sessions that connected into a pool since pooldiag.reset().'),
    (255, 'pooldiag_pool_disconnects_total', 'counter',
     'Sessions of a pool that ended since pooldiag.reset(), by cause: normal, client_eof, fatal, killed.'),
    (260, 'pooldiag_pool_closes_total', 'counter',
     'Sessions of a pool that pooldiag closed since pooldiag.reset(), by reason.'),
    (265, 'pooldiag_pool_leak_suspects_total', 'counter',
     'leak_suspect events of a pool since pooldiag.reset(), by reason: long_checkout or idle_while_pool_busy.'),
    (270, 'pooldiag_pool_rejected_total', 'counter',
     'Refused connection attempts attributed to a pool since pooldiag.reset().'),
    (275, 'pooldiag_pool_declared_instances', 'gauge',
     'Instances of a pool that declared their size now.'),
    (280, 'pooldiag_pool_declared_max_connections', 'gauge',
     'Sum of pool_size + max_overflow over the declared instances of a pool.'),
    (300, 'pooldiag_rejected_connections_total', 'counter',
     'Refused connection attempts since the server started, by reason.'),
    (400, 'pooldiag_events_queued', 'gauge',
     'Events in the shared-memory queue, not yet written.'),
    (410, 'pooldiag_events_written_total', 'counter',
     'Events written to pooldiag.events since the server started.'),
    (420, 'pooldiag_events_dropped_total', 'counter',
     'Events lost because the queue was full; raise pooldiag.event_buffer_size if this grows.'),
    (430, 'pooldiag_events_discarded_total', 'counter',
     'Events retired unwritten on a hot standby.'),
    (440, 'pooldiag_events_lost_in_crash_total', 'counter',
     'Events still queued when shared memory was re-created after a crash.'),
    (450, 'pooldiag_terminations_total', 'counter',
     'Sessions the enforcer closed since the server started.'),
    (460, 'pooldiag_would_terminations_total', 'counter',
     'would_terminate events recorded under pooldiag.dry_run since the server started.'),
    (470, 'pooldiag_leak_suspects_total', 'counter',
     'leak_suspect events recorded since the server started.'),
    (480, 'pooldiag_enforcer_scans_total', 'counter',
     'Enforcement scans since the server started.'),
    (490, 'pooldiag_enforcer_max_lateness_seconds', 'gauge',
     'Largest delay between a deadline and the close it caused since the server started.'),
    (500, 'pooldiag_worker_running', 'gauge',
     '1 while the background worker is running.')
), pool_samples(family, suffix, labels, value) AS (
    SELECT 'pooldiag_pool_sessions', '', p.labels || ',state="' || st.state || '"', st.n::text
    FROM pools p,
         LATERAL (VALUES ('idle', p.idle),
                         ('active', p.busy - p.idle_in_transaction - p.waiting_on_lock),
                         ('idle_in_transaction', p.idle_in_transaction),
                         ('waiting_on_lock', p.waiting_on_lock)) st(state, n)
    UNION ALL SELECT 'pooldiag_pool_overdue_sessions', '', labels, overdue::text FROM pools
    UNION ALL SELECT 'pooldiag_pool_peak_busy', '', labels, peak_busy::text FROM pools
    UNION ALL
    SELECT 'pooldiag_pool_longest_checkout_seconds', '', labels,
           coalesce(extract(epoch FROM longest_checkout), 0)::double precision::text
    FROM pools
    UNION ALL SELECT 'pooldiag_pool_checkouts_total', '', labels, checkouts::text FROM pools
    UNION ALL SELECT 'pooldiag_pool_connects_total', '', labels, connects::text FROM pools
    UNION ALL
    SELECT 'pooldiag_pool_disconnects_total', '', p.labels || ',cause="' || c.cause || '"', c.n::text
    FROM pools p,
         LATERAL (VALUES ('normal', p.disconnects_normal), ('client_eof', p.disconnects_client_eof),
                         ('fatal', p.disconnects_fatal), ('killed', p.disconnects_killed)) c(cause, n)
    UNION ALL
    SELECT 'pooldiag_pool_closes_total', '', p.labels || ',reason="' || c.reason || '"', c.n::text
    FROM pools p,
         LATERAL (VALUES ('idle_timeout', p.closes_idle_timeout), ('max_lifetime', p.closes_max_lifetime),
                         ('idle_in_transaction_timeout', p.closes_idle_in_transaction_timeout),
                         ('drain', p.closes_drain)) c(reason, n)
    UNION ALL
    SELECT 'pooldiag_pool_leak_suspects_total', '', p.labels || ',reason="' || c.reason || '"', c.n::text
    FROM pools p,
         LATERAL (VALUES ('long_checkout', p.leak_suspects - p.idle_leaks),
                         ('idle_while_pool_busy', p.idle_leaks)) c(reason, n)
    UNION ALL SELECT 'pooldiag_pool_rejected_total', '', labels, rejected::text FROM pools
    UNION ALL
    SELECT 'pooldiag_pool_declared_instances', '', labels, coalesce(declared_instances, 0)::text
    FROM pools
    UNION ALL
    SELECT 'pooldiag_pool_declared_max_connections', '', labels, coalesce(declared_max, 0)::text
    FROM pools
), samples(family, grp, sub, suffix, labels, value) AS (
    SELECT family, labels, 0::double precision, suffix, labels, value FROM pool_samples
    UNION ALL
    -- Histograms: each pool's buckets in le order, then +Inf, _sum, _count.
    SELECT 'pooldiag_pool_hold_seconds', h.labels, b.le, '_bucket',
           h.labels || ',le="' || b.le::text || '"', b.n::text
    FROM hold h, unnest(h.le, h.buckets) b(le, n)
    UNION ALL
    SELECT 'pooldiag_pool_hold_seconds', labels, 'Infinity', '_bucket',
           labels || ',le="+Inf"', count::text FROM hold
    UNION ALL
    SELECT 'pooldiag_pool_hold_seconds', labels, 'Infinity', '_sum', labels, sum::text FROM hold
    UNION ALL
    SELECT 'pooldiag_pool_hold_seconds', labels, 'Infinity', '_count', labels, count::text FROM hold
    UNION ALL
    SELECT family, coalesce(labels, ''), 0, suffix, labels, value FROM (
    SELECT 'pooldiag_connection_slots' AS family, '' AS suffix, NULL AS labels, slots::text AS value FROM cap
    UNION ALL SELECT 'pooldiag_connections_in_use', '', NULL, in_use::text FROM cap
    UNION ALL SELECT 'pooldiag_connections_peak', '', NULL, peak_in_use::text FROM cap
    UNION ALL SELECT 'pooldiag_saturation_warning_ratio', '', NULL, saturation_warning::text FROM cap
    UNION ALL SELECT 'pooldiag_saturation_events_total', '', NULL, saturation_events::text FROM cap
    UNION ALL SELECT 'pooldiag_declared_instances', '', NULL, declared_instances::text FROM server
    UNION ALL SELECT 'pooldiag_declared_max_connections', '', NULL, declared_max::text FROM server
    UNION ALL SELECT 'pooldiag_oversubscribed', '', NULL, oversubscribed::integer::text FROM server
    UNION ALL
    SELECT CASE c.scope WHEN 'database' THEN 'pooldiag_database_connection_limit'
                        ELSE 'pooldiag_role_connection_limit' END,
           '', CASE c.scope WHEN 'database' THEN 'datname' ELSE 'usename' END
               || '=' || pooldiag.prometheus_label(c.name), c.slots::text
    FROM pooldiag.capacity c WHERE c.scope <> 'server'
    UNION ALL
    SELECT CASE c.scope WHEN 'database' THEN 'pooldiag_database_connections'
                        ELSE 'pooldiag_role_connections' END,
           '', CASE c.scope WHEN 'database' THEN 'datname' ELSE 'usename' END
               || '=' || pooldiag.prometheus_label(c.name), c.in_use::text
    FROM pooldiag.capacity c WHERE c.scope <> 'server'
    UNION ALL
    SELECT 'pooldiag_rejected_connections_total', '',
           'reason=' || pooldiag.prometheus_label(r.reason), r.attempts::text
    FROM pooldiag.get_rejection_counts() r
    UNION ALL SELECT 'pooldiag_events_queued', '', NULL, events_queued::text FROM health
    UNION ALL SELECT 'pooldiag_events_written_total', '', NULL, events_written::text FROM health
    UNION ALL SELECT 'pooldiag_events_dropped_total', '', NULL, events_dropped::text FROM health
    UNION ALL SELECT 'pooldiag_events_discarded_total', '', NULL, events_discarded::text FROM health
    UNION ALL SELECT 'pooldiag_events_lost_in_crash_total', '', NULL, events_lost_in_crash::text FROM health
    UNION ALL SELECT 'pooldiag_terminations_total', '', NULL, terminations::text FROM health
    UNION ALL SELECT 'pooldiag_would_terminations_total', '', NULL, would_terminations::text FROM health
    UNION ALL SELECT 'pooldiag_leak_suspects_total', '', NULL, leak_suspects::text FROM health
    UNION ALL SELECT 'pooldiag_enforcer_scans_total', '', NULL, scans::text FROM health
    UNION ALL
    SELECT 'pooldiag_enforcer_max_lateness_seconds', '', NULL,
           coalesce(extract(epoch FROM max_lateness), 0)::double precision::text
    FROM health
    UNION ALL
    SELECT 'pooldiag_worker_running', '', 'worker="enforcer"',
           (enforcer_state = 'running')::integer::text FROM health
    UNION ALL
    SELECT 'pooldiag_worker_running', '', 'worker="writer"',
           (writer_state = 'running')::integer::text FROM health
    ) server_samples
)
SELECT string_agg(block, '' ORDER BY ord)
FROM (
    SELECT f.ord,
           '# HELP ' || f.family || ' ' || f.help || E'\n' ||
           '# TYPE ' || f.family || ' ' || f.type || E'\n' ||
           coalesce((SELECT string_agg(f.family || s.suffix ||
                                       coalesce('{' || s.labels || '}', '') ||
                                       ' ' || s.value || E'\n', ''
                                       ORDER BY s.grp, s.sub, s.suffix)
                     FROM samples s WHERE s.family = f.family), '') AS block
    FROM families f
) blocks;
END;

REVOKE ALL ON FUNCTION pooldiag.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pooldiag.metrics() TO pg_monitor;

COMMENT ON FUNCTION pooldiag.get_capacity() IS
'Server-wide connection numbers from shared memory; the function behind the server row of view pooldiag.capacity';
COMMENT ON FUNCTION pooldiag.get_rejection_counts() IS
'Refused connection attempts since the server started, one row per reason (too_many_connections, role_connection_limit, database_connection_limit, authentication_failed, database_does_not_exist, cannot_connect_now)';
COMMENT ON VIEW pooldiag.capacity IS
'Connection capacity: a server row (slots for clients, sessions in use, peak, declared client pool sizes, oversubscription), and a row per database and per non-superuser role that has a connection limit.  Readable by pg_monitor';
COMMENT ON COLUMN pooldiag.capacity.scope IS 'server, database or role';
COMMENT ON COLUMN pooldiag.capacity.name IS 'The database or role; NULL for the server row';
COMMENT ON COLUMN pooldiag.capacity.slots IS
'Connections available: for the server max_connections minus superuser_reserved_connections (and reserved_connections from 16 on); for a database or role its connection limit';
COMMENT ON COLUMN pooldiag.capacity.in_use IS 'Client sessions now (superusers'' included in the server row)';
COMMENT ON COLUMN pooldiag.capacity.peak_in_use IS
'Server row: the most client sessions at one moment since the server started or pooldiag.reset(), counted at connect; NULL for other rows';
COMMENT ON COLUMN pooldiag.capacity.peak_at IS 'When peak_in_use was reached; NULL for other rows';
COMMENT ON COLUMN pooldiag.capacity.usage IS 'in_use / slots';
COMMENT ON COLUMN pooldiag.capacity.near_exhaustion IS
'True when usage is at or above pooldiag.saturation_warning (never when it is 0)';
COMMENT ON COLUMN pooldiag.capacity.declared_instances IS
'Client pool instances in this scope that declared their size with pooldiag.client_pool_size';
COMMENT ON COLUMN pooldiag.capacity.declared_max IS
'Sum of pool_size + max_overflow over those instances: the connections they may open';
COMMENT ON COLUMN pooldiag.capacity.oversubscribed IS 'True when declared_max exceeds slots';
COMMENT ON COLUMN pooldiag.capacity.detail IS
'The numbers behind oversubscribed, e.g. "web: 4 instances x (5 + 10) = 60 > 47 slots"; NULL without declared pools';
COMMENT ON FUNCTION pooldiag.prometheus_label(text) IS
'A label value quoted and escaped for the Prometheus text format (backslash, double quote, newline); used by pooldiag.metrics()';
COMMENT ON FUNCTION pooldiag.metrics() IS
'pooldiag''s numbers in the Prometheus text exposition format: per-pool sessions by state, checkouts, hold-time histogram, closes and rejections, capacity, rejections by reason, event pipeline and enforcer counters.  Pools follow pooldiag.pools'' visibility.  Executable by pg_monitor';
COMMENT ON FUNCTION pooldiag.get_pool_hold_histogram() IS
'Each visible pool''s hold times as a Prometheus histogram: bounds le (seconds, edges of pooldiag''s log-scale buckets, so counts are exact), cumulative counts, sum in seconds and count; for pooldiag.metrics() and the exporter''s queries file.  Executable by pg_monitor';

-- ====================================================================
-- Recommendations: pooldiag.recommend()
--
-- A SQL function over pooldiag.pools, pooldiag.sessions, pg_settings and
-- pg_db_role_setting, all readable by PUBLIC, so that any role may call it
-- and gets rows for the pools pooldiag.pools shows it (its own, or all
-- for pg_read_all_stats).  It does not read pooldiag.capacity (pg_monitor
-- only): the slots are computed from pg_settings as capacity computes
-- them, and the declared maxima are pooldiag.pools.declared_max, which
-- capacity's declared_max adds up.  SECURITY INVOKER, and the BEGIN ATOMIC
-- body is bound when this script runs (search_path pg_catalog first), so
-- neither objects planted in public or pg_temp nor the caller's
-- search_path change what it reads.  The rules are in README.md,
-- "pooldiag.recommend()".
-- ====================================================================

CREATE FUNCTION pooldiag.recommend(
    OUT pool text,
    OUT datname name,
    OUT usename name,
    OUT setting text,
    OUT current text,
    OUT recommended text,
    OUT reason text
)
RETURNS SETOF record
LANGUAGE sql VOLATILE STRICT PARALLEL RESTRICTED SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
WITH server AS (
    -- Slots as pooldiag.capacity counts them; the jitter now in effect
    -- (sighup: every session reads the same).
    SELECT m.v AS max_connections,
           m.v - r.v - coalesce(rc.v, 0) AS slots,
           r.v + coalesce(rc.v, 0) AS reserved,
           current_setting('pooldiag.lifetime_jitter')::numeric AS jitter
    FROM (SELECT setting::integer AS v FROM pg_settings WHERE name = 'max_connections') m,
         (SELECT setting::integer AS v FROM pg_settings
          WHERE name = 'superuser_reserved_connections') r
         LEFT JOIN (SELECT setting::integer AS v FROM pg_settings
                    WHERE name = 'reserved_connections') rc ON true
), p AS (
    -- The pools whose detail the caller may see.
    SELECT p.*,
           coalesce(p.pool, '[' || coalesce(p.application_name, '') || '@'
                            || coalesce(host(p.client_addr), 'local') || ']') AS label,
           coalesce(p.declared_instances, 1) AS inst
    FROM pooldiag.pools p
    WHERE p.kind <> 'other' AND p.sessions IS NOT NULL
), live AS (
    -- Each pool's live sessions: what they declare, and the pooldiag limits
    -- in effect for those pooldiag may close.
    SELECT p.label, p.datname, p.usename,
           count(s.pid) AS n,
           max(s.client_pool_size) AS size,
           max(s.client_max_overflow) AS overflow,
           max(s.client_pool_timeout) AS timeout,
           max(s.client_recycle) AS recycle,
           count(s.pid) FILTER (WHERE NOT s.exempt) AS closable,
           min(s.max_lifetime) FILTER (WHERE NOT s.exempt) AS max_lifetime,
           min(s.idle_timeout) FILTER (WHERE NOT s.exempt) AS idle_timeout
    FROM p
    LEFT JOIN pooldiag.sessions s
      ON s.datname = p.datname AND s.usename = p.usename
     AND CASE WHEN p.kind = 'declared' THEN s.client_pool = p.pool
              ELSE s.client_pool IS NULL
                   AND s.application_name IS NOT DISTINCT FROM p.application_name
                   AND s.client_addr IS NOT DISTINCT FROM p.client_addr END
    GROUP BY p.label, p.datname, p.usename
), configured AS (
    -- A setting as PostgreSQL resolves it for a new session of the pool's
    -- role and database: ALTER ROLE … IN DATABASE, ALTER ROLE, ALTER
    -- DATABASE, then the server's value (as this session read it at start).
    -- A bare number is in the setting's unit (ms for all three).
    SELECT p.label, p.datname, p.usename, n.name,
           nullif(CASE WHEN v.value ~ '^\s*[0-9.]+\s*$'
                       THEN (v.value || ' ' || g.unit)::interval
                       ELSE v.value::interval END, '0') AS value
    FROM p
    CROSS JOIN (VALUES ('idle_session_timeout'), ('pooldiag.max_lifetime'),
                       ('pooldiag.idle_timeout')) n(name)
    JOIN pg_settings g ON g.name = n.name
    CROSS JOIN LATERAL (
        SELECT coalesce(
            (SELECT substr(c, length(n.name) + 2)
             FROM pg_db_role_setting d
             CROSS JOIN unnest(d.setconfig) c
             WHERE starts_with(c, n.name || '=')
               AND d.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = p.usename))
               AND d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = p.datname))
               AND NOT (d.setrole = 0 AND d.setdatabase = 0)
             ORDER BY d.setrole = 0, d.setdatabase = 0
             LIMIT 1),
            g.reset_val) AS value) v
), limits AS (
    -- What closes the pool's idle sessions on the server.  pooldiag's limits
    -- are the live sessions' own (none when all are exempt), else what a
    -- new session would get.
    SELECT l.label, l.datname, l.usename,
           CASE WHEN l.n > 0 THEN l.max_lifetime ELSE ml.value END AS max_lifetime,
           CASE WHEN l.n > 0 THEN l.idle_timeout ELSE it.value END AS idle_timeout,
           ist.value AS idle_session_timeout
    FROM live l
    JOIN configured ml ON ml.label = l.label AND ml.datname = l.datname
     AND ml.usename = l.usename AND ml.name = 'pooldiag.max_lifetime'
    JOIN configured it ON it.label = l.label AND it.datname = l.datname
     AND it.usename = l.usename AND it.name = 'pooldiag.idle_timeout'
    JOIN configured ist ON ist.label = l.label AND ist.datname = l.datname
     AND ist.usename = l.usename AND ist.name = 'idle_session_timeout'
), sizing AS (
    -- Per instance: the peak's share, pool_size with 20% headroom, and room
    -- for bursts up to twice the peak.
    SELECT p.label, p.datname, p.usename, p.inst, p.peak_busy,
           p.declared_instances IS NOT NULL AND p.kind = 'declared' AS competes,
           ceil(p.peak_busy::numeric / p.inst)::integer AS per_inst,
           greatest(ceil(ceil(p.peak_busy::numeric / p.inst) * 1.2), 1)::integer AS size_u,
           greatest(greatest(ceil(ceil(p.peak_busy::numeric / p.inst) * 1.2), 1),
                    2 * ceil(p.peak_busy::numeric / p.inst))::integer AS max_u
    FROM p
    WHERE p.peak_busy > 0
), budget AS (
    -- The slots are shared among the declared pools in proportion to what
    -- they need; a pool that declares no size is checked against the slots
    -- alone.
    SELECT z.*, z.inst * z.max_u AS need,
           CASE WHEN NOT z.competes OR t.total <= srv.slots THEN least(z.inst * z.max_u, srv.slots)
                ELSE floor(srv.slots::numeric * z.inst * z.max_u / t.total)::integer
           END / z.inst AS per_inst_budget,
           t.total, srv.slots
    FROM sizing z
    CROSS JOIN server srv
    CROSS JOIN (SELECT coalesce(sum(inst * max_u) FILTER (WHERE competes), 0) AS total
                FROM sizing) t
), fitted AS (
    SELECT b.*,
           least(b.size_u, b.per_inst_budget) AS size_r,
           greatest(least(b.max_u, b.per_inst_budget) - least(b.size_u, b.per_inst_budget), 0)
               AS overflow_r
    FROM budget b
), recs AS (
    -- pool_size
    SELECT p.label, p.datname, p.usename, 1 AS ord, 'pool_size' AS setting,
           l.size::text AS current, f.size_r::text AS recommended,
           CASE WHEN f.label IS NULL
                THEN 'no checkout since ' || p.stats_since || ': nothing to size from yet'
                ELSE 'peak_busy ' || p.peak_busy || ' over ' || p.inst
                     || CASE WHEN p.inst = 1 THEN ' instance' ELSE ' instances' END
                     || ' = ' || f.per_inst || ' per instance; x 1.2 headroom = ' || f.size_u
                     || CASE WHEN f.size_r < f.size_u
                             THEN '; cut to ' || f.size_r || ' to fit the slots (see max_overflow)'
                             ELSE '' END
           END
           || CASE WHEN l.size IS NULL
                   THEN '; declare your pool with options=''-c pooldiag.client_pool_size=…'''
                        || ' (and -c pooldiag.client_instance=…)'
                   ELSE '' END AS reason
    FROM p
    JOIN live l USING (label, datname, usename)
    LEFT JOIN fitted f USING (label, datname, usename)
    UNION ALL
    -- max_overflow
    SELECT p.label, p.datname, p.usename, 2, 'max_overflow',
           l.overflow::text, f.overflow_r::text,
           CASE WHEN f.label IS NULL
                THEN 'no checkout since ' || p.stats_since || ': nothing to size from yet'
                ELSE 'bursts up to 2 x ' || f.per_inst || ' = ' || f.max_u
                     || ' per instance, less pool_size ' || f.size_u || ' = ' || (f.max_u - f.size_u)
                     || CASE WHEN f.max_u > f.per_inst_budget
                             THEN CASE WHEN f.competes AND f.total > f.need
                                       THEN '; the declared pools need ' || f.total || ' > '
                                            || f.slots || ' slots, and this pool''s share is '
                                            || f.per_inst_budget * f.inst
                                       ELSE '; ' || f.inst || ' x ' || f.max_u || ' = ' || f.need
                                            || ' > ' || f.slots || ' slots'
                                  END
                                  || ': cut to ' || f.inst || ' x (' || f.size_r || ' + '
                                  || f.overflow_r || ') = ' || f.inst * (f.size_r + f.overflow_r)
                                  || '; to allow the bursts: fewer instances, a larger max_connections, or PgBouncer'
                             ELSE '; ' || f.inst || ' x (' || f.size_r || ' + ' || f.overflow_r
                                  || ') = ' || f.inst * (f.size_r + f.overflow_r) || ' fits in '
                                  || f.slots || ' slots'
                        END
           END
           || CASE WHEN l.overflow IS NULL
                   THEN '; declare your pool with options=''-c pooldiag.client_max_overflow=…'''
                   ELSE '' END
    FROM p
    JOIN live l USING (label, datname, usename)
    LEFT JOIN fitted f USING (label, datname, usename)
    UNION ALL
    -- pool_timeout, in seconds
    SELECT p.label, p.datname, p.usename, 3, 'pool_timeout',
           trim_scale(round(extract(epoch FROM l.timeout), 3))::text,
           CASE WHEN p.hold_p99 IS NULL THEN trim_scale(round(extract(epoch FROM l.timeout), 3))::text
                ELSE trim_scale(greatest(ceil(2 * extract(epoch FROM p.hold_p99)),
                                         round(extract(epoch FROM l.timeout), 3)))::text
           END,
           CASE WHEN p.hold_p99 IS NULL
                THEN 'no checkout since ' || p.stats_since || ': nothing to time yet'
                ELSE 'hold p99 ' || trim_scale(round(extract(epoch FROM p.hold_p99), 3))
                     || ' s: a caller waiting at a full pool gets the next connection returned; '
                     || 'a timeout below 2 x p99, in whole seconds, = '
                     || trim_scale(ceil(2 * extract(epoch FROM p.hold_p99))) || ' s fails requests that would have been served'
                     || CASE WHEN l.timeout >= make_interval(secs => ceil(2 * extract(epoch FROM p.hold_p99)))
                             THEN '; the current timeout is long enough' ELSE '' END
                     || CASE WHEN p.waiting_on_lock > 0 OR p.hold_max > 10 * p.hold_p99
                             THEN '; hold max ' || trim_scale(round(extract(epoch FROM p.hold_max), 3))
                                  || ' s, ' || p.waiting_on_lock || ' waiting on a lock now: fix long holds (blockers, leaks), do not wait them out'
                             ELSE '' END
           END
           || CASE WHEN l.timeout IS NULL
                   THEN '; declare your pool with options=''-c pooldiag.client_pool_timeout=…'''
                   ELSE '' END
    FROM p
    JOIN live l USING (label, datname, usename)
    UNION ALL
    -- pool_recycle, in seconds
    SELECT p.label, p.datname, p.usename, 4, 'pool_recycle',
           trim_scale(round(extract(epoch FROM l.recycle), 3))::text,
           CASE WHEN x.lim IS NULL THEN trim_scale(round(extract(epoch FROM l.recycle), 3))::text
                WHEN l.recycle > '0' AND extract(epoch FROM l.recycle) <= floor(0.9 * x.lim)
                THEN trim_scale(round(extract(epoch FROM l.recycle), 3))::text
                ELSE greatest(floor(0.9 * x.lim), 1)::text
           END,
           CASE WHEN x.lim IS NULL
                THEN 'the server closes no idle session of this pool'
                     || CASE WHEN l.closable = 0 AND l.n > 0 THEN ' (its sessions are exempt)' ELSE '' END
                     || ': pool_recycle need only sit below limits outside PostgreSQL (firewalls, load balancers)'
                ELSE 'the server closes idle sessions after '
                     || concat_ws(', ',
                          'pooldiag.max_lifetime ' || trim_scale(round(extract(epoch FROM m.max_lifetime), 3))
                              || ' s less up to ' || trim_scale(srv.jitter * 100) || '% jitter = '
                              || trim_scale(round(extract(epoch FROM m.max_lifetime) * (1 - srv.jitter), 3)) || ' s',
                          'pooldiag.idle_timeout ' || trim_scale(round(extract(epoch FROM m.idle_timeout), 3)) || ' s',
                          'idle_session_timeout ' || trim_scale(round(extract(epoch FROM m.idle_session_timeout), 3)) || ' s')
                     || '; pool_recycle must sit strictly below the least, '
                     || trim_scale(round(x.lim, 3)) || ' s: 90% of it is '
                     || greatest(floor(0.9 * x.lim), 1)
                     || CASE WHEN l.recycle > '0' AND extract(epoch FROM l.recycle) <= floor(0.9 * x.lim)
                             THEN '; the current value is below it'
                             WHEN l.recycle IS NOT NULL THEN '; the current value is not'
                             ELSE '' END
           END
           || CASE WHEN l.recycle IS NULL
                   THEN '; declare your pool with options=''-c pooldiag.client_recycle=…'''
                   ELSE '' END
    FROM p
    JOIN live l USING (label, datname, usename)
    JOIN limits m USING (label, datname, usename)
    CROSS JOIN server srv
    CROSS JOIN LATERAL (
        SELECT least(extract(epoch FROM m.max_lifetime) * (1 - srv.jitter),
                     extract(epoch FROM m.idle_timeout),
                     extract(epoch FROM m.idle_session_timeout)) AS lim) x
    UNION ALL
    -- pre_ping
    SELECT p.label, p.datname, p.usename, 5, 'pre_ping', NULL,
           (c.closes > 0)::text,
           CASE WHEN c.closes > 0
                THEN 'the server closes this pool''s sessions ('
                     || concat_ws(', ',
                          CASE WHEN m.max_lifetime IS NOT NULL THEN 'pooldiag.max_lifetime' END,
                          CASE WHEN m.idle_timeout IS NOT NULL THEN 'pooldiag.idle_timeout' END,
                          CASE WHEN m.idle_session_timeout IS NOT NULL THEN 'idle_session_timeout' END,
                          CASE WHEN k.n > 0 THEN k.n || ' closed since ' || p.stats_since END)
                     || '): a client learns of a close only at its next use, so validate at checkout '
                     || '(SQLAlchemy pool_pre_ping=True; HikariCP does by default; node-postgres pool.on(''error''))'
                ELSE 'the server closes none of this pool''s sessions: validation is optional'
           END
           || '; pooldiag cannot see whether the client validates'
    FROM p
    JOIN limits m USING (label, datname, usename)
    CROSS JOIN LATERAL (
        -- pooldiag's closes are counted in disconnects_killed too
        SELECT greatest(p.disconnects_killed,
                        p.closes_idle_timeout + p.closes_max_lifetime
                        + p.closes_idle_in_transaction_timeout + p.closes_drain) AS n) k
    CROSS JOIN LATERAL (
        SELECT (m.max_lifetime IS NOT NULL)::integer + (m.idle_timeout IS NOT NULL)::integer
               + (m.idle_session_timeout IS NOT NULL)::integer + k.n AS closes) c
    UNION ALL
    -- The server: the declared pools may open more connections than there
    -- are slots.
    SELECT '(server)', NULL, NULL, 0, 'max_connections',
           srv.max_connections::text,
           (srv.max_connections + d.total - srv.slots)::text,
           'declared pools may open ' || d.total || ' connections (' || d.terms || ') > '
           || srv.slots || ' slots (max_connections ' || srv.max_connections || ' - '
           || srv.reserved || ' reserved): lower pool_size + max_overflow per instance '
           || '(see the pools'' rows), or raise max_connections to '
           || (srv.max_connections + d.total - srv.slots)
           || ', or put PgBouncer in front of the server'
    FROM server srv
    CROSS JOIN (SELECT sum(declared_max) AS total,
                       string_agg(label || ' ' || declared_instances || ' x '
                                  || (declared_max / declared_instances)
                                  || CASE WHEN declared_max % declared_instances <> 0
                                          THEN '~' ELSE '' END, ', ' ORDER BY label) AS terms
                FROM p WHERE declared_max IS NOT NULL) d
    WHERE d.total > srv.slots
)
SELECT label, datname, usename, setting, current, recommended, reason
FROM recs
ORDER BY label = '(server)' DESC, label, datname, usename, ord;
END;

COMMENT ON FUNCTION pooldiag.recommend() IS
'Recommended client pool settings (pool_size, max_overflow, pool_timeout and pool_recycle in seconds, pre_ping) per visible pool from its measured peak, hold times and the server''s limits, and a (server) row when declared pools may open more connections than there are slots; values are text.  Rows follow pooldiag.pools'' visibility';
