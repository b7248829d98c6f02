--
-- Enforcement surface: drain's arguments and permissions, exemptions and
-- deadlines as pooldiag.sessions shows them.  (Closing sessions takes time
-- and several sessions; see t/040_enforcement.pl.)
--
\df pooldiag.drain

-- Names that do not exist match nothing.
SELECT pooldiag.drain(datname => 'no_such_database');
SELECT pooldiag.drain(usename => 'no_such_role');
SELECT pooldiag.drain(application_name => 'no such application');

-- The caller's own session is never drained.
SELECT pooldiag.drain(datname => current_database(),
                      application_name => current_setting('application_name'));
SELECT draining FROM pooldiag.sessions WHERE pid = pg_backend_pid();

-- Superuser sessions are exempt by default.
SELECT exempt, exempt_reason FROM pooldiag.sessions WHERE pid = pg_backend_pid();

-- A lifetime gives a recycle_at within [1 - jitter, 1] of it.
SET pooldiag.max_lifetime = '1h';
SELECT recycle_at - backend_start BETWEEN interval '54 min' AND interval '1 hour'
       AS recycle_at_within_jitter,
       max_lifetime
FROM pooldiag.sessions WHERE pid = pg_backend_pid();
RESET pooldiag.max_lifetime;
SELECT recycle_at, max_lifetime FROM pooldiag.sessions WHERE pid = pg_backend_pid();

-- While checked out (as now), no idle deadline is pending.
SET pooldiag.idle_timeout = '1s';
SELECT terminate_at, terminate_reason FROM pooldiag.sessions
WHERE pid = pg_backend_pid();
RESET pooldiag.idle_timeout;
