--
-- Installation: what CREATE EXTENSION creates, and who may use it.
--
CREATE EXTENSION pooldiag;

SELECT extversion, extnamespace::regnamespace AS schema, extrelocatable
FROM pg_extension WHERE extname = 'pooldiag';

-- Every object the extension owns.  (From 17 on, the row types of its
-- table and views, and their array types, are members too; they are left
-- out, so that every version lists the objects the script creates.)
SELECT pg_describe_object(classid, objid, objsubid) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pooldiag')
  AND deptype = 'e'
  AND NOT (classid = 'pg_type'::regclass
           AND objid IN (SELECT t.oid FROM pg_type t
                         LEFT JOIN pg_type e ON e.oid = t.typelem
                         WHERE t.typrelid <> 0 OR e.typrelid <> 0))
ORDER BY 1;

-- Every function states its volatility, strictness and parallel safety.
SELECT proname, provolatile, proisstrict, proparallel, prosecdef
FROM pg_proc WHERE pronamespace = 'pooldiag'::regnamespace
ORDER BY proname;

-- The worker runs, shows in pg_stat_activity with its own backend_type,
-- and is not a tracked session.
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pooldiag worker';
SELECT count(*) FROM pooldiag.sessions s
  JOIN pg_stat_activity a USING (pid)
 WHERE a.backend_type <> 'client backend';
