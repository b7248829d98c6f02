--
-- Every object a user sees explains itself in \dv+, \df+ and \d+: each
-- member of the extension (schema, tables, views, functions, sequences)
-- and each column of its tables and views has a comment.  (From 17 on, the
-- row types of its table and views, and their array types, are members too;
-- they are the relations' own types, described by the relations' comments.)
--
WITH members AS (
  SELECT d.classid, d.objid, d.objsubid
  FROM pg_depend d
  WHERE d.refclassid = 'pg_extension'::regclass
    AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pooldiag')
    AND d.deptype = 'e'
    AND NOT (d.classid = 'pg_type'::regclass
             AND d.objid IN (SELECT t.oid FROM pg_type t
                             LEFT JOIN pg_type e ON e.oid = t.typelem
                             WHERE t.typrelid <> 0 OR e.typrelid <> 0)))
SELECT pg_describe_object(classid, objid, objsubid) AS without_comment
FROM members
WHERE obj_description(objid, classid::regclass::text) IS NULL
UNION ALL
SELECT c.oid::regclass || '.' || a.attname
FROM members m
JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p')
  AND col_description(c.oid, a.attnum) IS NULL
ORDER BY 1;

