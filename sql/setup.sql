--
-- Installation: what CREATE EXTENSION creates, and who may use it.
--
CREATE EXTENSION pooldiag;

SELECT extversion, extnamespace::regnamespace AS schema, extrelocatable
FROM pg_extension WHERE extname = 'pooldiag';

-- The install script creates schema pooldiag itself, so the schema belongs
-- to the extension and to its owner, and no schema that existed before is
-- ever adopted.  Events are not part of logical dumps (extconfig is empty).
SELECT n.nspowner = e.extowner AS schema_owned_by_extension_owner,
       e.extconfig IS NULL AS no_dumped_tables
FROM pg_extension e, pg_namespace n
WHERE e.extname = 'pooldiag' AND n.nspname = 'pooldiag';

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

-- The enforcer and the writer run, show in pg_stat_activity with their own
-- backend_type, and are not tracked sessions.
SELECT backend_type, count(*) FROM pg_stat_activity
 WHERE backend_type LIKE 'pooldiag%' GROUP BY 1 ORDER BY 1;
SELECT count(*) FROM pooldiag.sessions s
  JOIN pg_stat_activity a USING (pid)
 WHERE a.backend_type <> 'client backend';
