--
-- The event surface: table, ring reader, health.  (Producing events takes
-- several sessions and time; see t/020_events.pl.)
--
\d pooldiag.events
\d pooldiag.health

-- recent_events() has exactly the columns of the table, in its order.
SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, NULL) ORDER BY a.attnum)
       = (SELECT array_agg(p.name || ' ' || format_type(p.type, NULL) ORDER BY p.n)
          FROM pg_proc,
               unnest(proargnames, proallargtypes) WITH ORDINALITY AS p(name, type, n)
          WHERE proname = 'recent_events')
       AS same_columns
FROM pg_attribute a
WHERE a.attrelid = 'pooldiag.events'::regclass AND a.attnum > 0;

-- This session's own connect event is queued or written.
SELECT count(*) >= 1 AS connect_seen FROM (
  SELECT pid, event FROM pooldiag.recent_events()
  UNION ALL
  SELECT pid, event FROM pooldiag.events) e
WHERE pid = pg_backend_pid() AND event = 'connect';

SELECT events_dropped, events_discarded, event_buffer_size
FROM pooldiag.health;
