--
-- pooldiag.recommend(): its definition (SECURITY INVOKER, a fixed
-- search_path, its columns), who may call it, and that an unprivileged
-- caller gets rows for its own pools only.
--
CREATE ROLE regress_recommend_plain LOGIN;

SELECT p.prosecdef, p.proconfig, p.provolatile, p.proparallel, p.proisstrict,
       p.proretset, p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql') AS is_sql,
       p.prosqlbody IS NOT NULL AS bound_at_creation,
       p.proargnames, pg_get_function_result(p.oid) AS result,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment,
       has_function_privilege('regress_recommend_plain', p.oid, 'EXECUTE') AS public_may_call
FROM pg_proc p
WHERE p.oid = 'pooldiag.recommend()'::regprocedure;

-- This session's own pool has rows; a plain role, which owns no session,
-- gets no pool rows at all (a server row would need declared pools).
SELECT count(*) > 0 AS superuser_sees_own_pool
FROM pooldiag.recommend() WHERE usename = current_user;
SET ROLE regress_recommend_plain;
SELECT count(*) AS plain_rows FROM pooldiag.recommend();
RESET ROLE;

-- The five settings of this session's pool, in order.  Nothing is
-- declared; the session is a superuser's, exempt from pooldiag's closes,
-- and idle_session_timeout is off: nothing to recycle below, no need to
-- validate.
SELECT setting, current,
       CASE WHEN setting IN ('pool_recycle', 'pre_ping') THEN recommended
            ELSE (recommended IS NOT NULL)::text END AS recommended,
       reason LIKE '%declare your pool with options=''-c pooldiag.client_%' AS says_declare
FROM pooldiag.recommend()
WHERE pool = '[' || current_setting('application_name') || '@local]';

DROP ROLE regress_recommend_plain;
