--
-- Capacity and metrics: the server row's numbers, who may read them, and
-- the escaping of Prometheus label values.
--
CREATE ROLE regress_capacity_plain LOGIN;
CREATE ROLE regress_capacity_monitor LOGIN IN ROLE pg_monitor;

-- Slots are max_connections less the reserved connections; this session
-- is in use, and the peak is never below what is in use.
SELECT c.scope, c.name,
       c.slots = current_setting('max_connections')::int
                 - current_setting('superuser_reserved_connections')::int
                 - coalesce(current_setting('reserved_connections', true)::int, 0)
         AS slots_as_configured,
       c.in_use >= 1 AS in_use_counts_me,
       c.peak_in_use >= c.in_use AS peak_at_least_in_use,
       c.peak_at IS NOT NULL AS peak_at_known,
       c.usage = c.in_use::float8 / c.slots AS usage_is_ratio,
       c.declared_instances, c.declared_max, c.oversubscribed, c.detail
FROM pooldiag.capacity c WHERE scope = 'server';

-- Connection limits show as rows of their own; superuser roles do not,
-- since PostgreSQL does not apply role limits to them.
CREATE ROLE regress_capacity_limited LOGIN CONNECTION LIMIT 4;
CREATE ROLE regress_capacity_super SUPERUSER CONNECTION LIMIT 1;
CREATE DATABASE regress_capacity_db CONNECTION LIMIT 2;
SELECT scope, name, slots, in_use, peak_in_use, usage, near_exhaustion,
       declared_max, oversubscribed
FROM pooldiag.capacity
WHERE name::text LIKE 'regress_capacity%' ORDER BY scope, name;
DROP DATABASE regress_capacity_db;
DROP ROLE regress_capacity_limited, regress_capacity_super;

-- Only pg_monitor (and superusers) may read capacity and metrics.
SET ROLE regress_capacity_plain;
SELECT count(*) FROM pooldiag.capacity;
SELECT pooldiag.metrics();
SELECT * FROM pooldiag.get_capacity();
RESET ROLE;
SET ROLE regress_capacity_monitor;
SELECT count(*) >= 1 AS monitor_reads_capacity FROM pooldiag.capacity;
SELECT length(pooldiag.metrics()) > 0 AS monitor_reads_metrics;
RESET ROLE;

-- Every family has HELP and TYPE, counters end in _total, and every sample
-- line belongs to the family announced before it.
WITH lines AS (
  SELECT l, n FROM regexp_split_to_table(pooldiag.metrics(), E'\n')
                   WITH ORDINALITY AS t(l, n)
)
SELECT
  count(*) FILTER (WHERE l LIKE '# TYPE %') AS families,
  count(*) FILTER (WHERE l LIKE '# HELP %') AS help_lines,
  count(*) FILTER (WHERE l ~ '^# TYPE \S+ counter$' AND l !~ '_total counter$')
    AS counters_without_total,
  count(*) FILTER (WHERE l <> '' AND l !~ '^#' AND l !~ '^pooldiag_[a-z_]+(\{.*\})? \S+$')
    AS malformed_samples
FROM lines;

-- Rejected attempts are counted by reason, every reason shown from the start.
SELECT reason FROM pooldiag.get_rejection_counts() ORDER BY reason;

-- Label values are quoted, and backslash, double quote and newline escaped.
SELECT pooldiag.prometheus_label(E'a\\b"c\nd') AS escaped,
       pooldiag.prometheus_label('plain') AS plain,
       pooldiag.prometheus_label('') AS empty;

DROP ROLE regress_capacity_plain, regress_capacity_monitor;
