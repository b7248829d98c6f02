--
-- Settings: defaults, contexts, units, reserved prefix, refused values.
--
SELECT name, setting, unit, context, vartype, min_val, max_val
FROM pg_settings WHERE name LIKE 'pooldiag.%' ORDER BY name;

SELECT name, enumvals FROM pg_settings WHERE name = 'pooldiag.log_checkouts';

-- The prefix is reserved: a misspelt setting is an error, not a placeholder.
SET pooldiag.idle_timeot = '1s';

-- Units are accepted.
SET pooldiag.idle_timeout = '30min';
SHOW pooldiag.idle_timeout;
SET pooldiag.leak_threshold = '90s';
SHOW pooldiag.leak_threshold;

-- A session's own value is the one it is enforced with.
SELECT idle_timeout, leak_threshold FROM pooldiag.sessions
WHERE pid = pg_backend_pid();
RESET pooldiag.idle_timeout;
RESET pooldiag.leak_threshold;
SELECT idle_timeout, leak_threshold FROM pooldiag.sessions
WHERE pid = pg_backend_pid();

-- Out of range or malformed values are refused with the usual GUC errors.
SET pooldiag.idle_timeout = '-1';
SET pooldiag.log_checkouts = 'some';
ALTER SYSTEM SET pooldiag.lifetime_jitter = 0.7;
ALTER SYSTEM SET pooldiag.lifetime_jitter = -0.1;
ALTER SYSTEM SET pooldiag.saturation_warning = 1.5;
ALTER SYSTEM SET pooldiag.saturation_warning = -0.1;
ALTER SYSTEM SET pooldiag.exempt_applications = 'ok-*, ';
ALTER SYSTEM SET pooldiag.exempt_applications = '"unterminated';
ALTER SYSTEM SET pooldiag.exempt_applications = E'"tab\there"';
ALTER SYSTEM SET pooldiag.exempt_applications = 'ok, this-pattern-is-far-too-long-to-ever-match-an-application-name-at-all';
ALTER SYSTEM SET pooldiag.exempt_roles = '"unterminated';
ALTER SYSTEM SET pooldiag.max_terminations_per_second = -1;

-- Worker-wide settings change only in postgresql.conf, with a reload.
SET pooldiag.naptime = '2s';
SET pooldiag.dry_run = on;
SET pooldiag.event_buffer_size = 100;

-- Per-role and per-database values use PostgreSQL's own mechanism.
CREATE ROLE regress_pooldiag_app;
ALTER ROLE regress_pooldiag_app SET pooldiag.idle_timeout = '2s';
ALTER ROLE regress_pooldiag_app IN DATABASE contrib_regression
  SET pooldiag.max_lifetime = '1h';
SELECT setrole::regrole, setdatabase <> 0 AS per_database, setconfig
FROM pg_db_role_setting WHERE setrole = 'regress_pooldiag_app'::regrole
ORDER BY 2;
DROP ROLE regress_pooldiag_app;
