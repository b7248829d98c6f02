--
-- The library against SQL definitions of other versions: a function
-- declared with more or fewer result columns than the library fills (an
-- older or newer extension script than the library) is refused with an
-- error that says what to do, never answered with misplaced or unset
-- columns.
--
CREATE SCHEMA regress_versions;

-- Fewer columns than the library fills.
CREATE FUNCTION regress_versions.sessions_short(OUT pid integer, OUT datname name)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_sessions'
LANGUAGE C STRICT VOLATILE;
SELECT * FROM regress_versions.sessions_short();

CREATE FUNCTION regress_versions.recent_events_short(OUT event_id bigint,
    OUT event_time timestamptz)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_recent_events'
LANGUAGE C STRICT VOLATILE;
SELECT * FROM regress_versions.recent_events_short();

-- More columns than the library fills.
CREATE FUNCTION regress_versions.sessions_long(
    OUT pid integer, OUT datname name, OUT usename name,
    OUT application_name text, OUT client_addr inet,
    OUT backend_start timestamptz, OUT state text, OUT state_change timestamptz,
    OUT age interval, OUT idle_for interval, OUT checkouts bigint,
    OUT checkout_start timestamptz, OUT hold_time interval,
    OUT idle_time interval, OUT recycle_at timestamptz,
    OUT terminate_at timestamptz, OUT terminate_reason text,
    OUT exempt boolean, OUT exempt_reason text, OUT draining boolean,
    OUT idle_timeout interval, OUT max_lifetime interval,
    OUT idle_in_transaction_timeout interval, OUT leak_threshold interval,
    OUT client_port integer, OUT client_pool text,
    OUT client_pool_size integer, OUT client_max_overflow integer,
    OUT client_pool_timeout interval, OUT client_recycle interval,
    OUT client_instance text, OUT wait_event_type text, OUT wait_event text,
    OUT from_the_future text)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_sessions'
LANGUAGE C STRICT VOLATILE;
SELECT count(*) FROM regress_versions.sessions_long();

CREATE FUNCTION regress_versions.recent_events_long(
    OUT event_id bigint, OUT event_time timestamptz, OUT event text,
    OUT reason text, OUT pid integer, OUT backend_start timestamptz,
    OUT datname name, OUT usename name, OUT application_name text,
    OUT client_addr inet, OUT detail jsonb, OUT client_port integer,
    OUT from_the_future text)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_recent_events'
LANGUAGE C STRICT VOLATILE;
SELECT count(*) FROM regress_versions.recent_events_long();

-- The definitions of version 1.1 (before ALTER EXTENSION UPDATE) still
-- work: the library serves their columns, the first ones of 1.2's.
CREATE FUNCTION regress_versions.sessions_1_1(
    OUT pid integer, OUT datname name, OUT usename name,
    OUT application_name text, OUT client_addr inet,
    OUT backend_start timestamptz, OUT state text, OUT state_change timestamptz,
    OUT age interval, OUT idle_for interval, OUT checkouts bigint,
    OUT checkout_start timestamptz, OUT hold_time interval,
    OUT idle_time interval, OUT recycle_at timestamptz,
    OUT terminate_at timestamptz, OUT terminate_reason text,
    OUT exempt boolean, OUT exempt_reason text, OUT draining boolean,
    OUT idle_timeout interval, OUT max_lifetime interval,
    OUT idle_in_transaction_timeout interval, OUT leak_threshold interval)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_sessions'
LANGUAGE C STRICT VOLATILE;
SELECT application_name, checkouts >= 1 AS counted, leak_threshold
FROM regress_versions.sessions_1_1() WHERE pid = pg_backend_pid();

CREATE FUNCTION regress_versions.recent_events_1_1(
    OUT event_id bigint, OUT event_time timestamptz, OUT event text,
    OUT reason text, OUT pid integer, OUT backend_start timestamptz,
    OUT datname name, OUT usename name, OUT application_name text,
    OUT client_addr inet, OUT detail jsonb)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_recent_events'
LANGUAGE C STRICT VOLATILE;
SELECT count(*) >= 0 AS recent_events_1_1_answers
FROM regress_versions.recent_events_1_1();

CREATE FUNCTION regress_versions.pools_short(OUT pool text, OUT kind text)
RETURNS SETOF record AS '$libdir/pooldiag', 'pooldiag_pools'
LANGUAGE C STRICT VOLATILE;
SELECT * FROM regress_versions.pools_short();

-- The extension's own definitions match.
SELECT count(*) > 0 AS sessions_answer FROM pooldiag.get_sessions();
SELECT count(*) >= 0 AS recent_events_answer FROM pooldiag.recent_events();
SELECT count(*) > 0 AS pools_answer FROM pooldiag.get_pools();

DROP SCHEMA regress_versions CASCADE;
