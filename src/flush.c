/*-------------------------------------------------------------------------
 *
 * flush.c
 *		Turning queued events into rows: the writer's writes to
 *		pooldiag.events, retention, and the row format that
 *		pooldiag.recent_events() shares with the table.
 *
 * Writing
 * -------
 * The worker peeks at up to PGD_FLUSH_BATCH events, inserts them with one
 * multi-row INSERT ... SELECT FROM unnest(arrays) in one transaction, and
 * releases them from the ring only after the commit.  Nothing between the
 * commit and the release checks for interrupts (no CHECK_FOR_INTERRUPTS,
 * and no ereport, whose errfinish() checks too), so a SIGTERM cannot end
 * the worker in between: a worker that dies before the commit leaves the
 * batch queued for the next one, and none can die after it with the batch
 * still queued.  Nothing is lost, nothing is written twice, and
 * events_written counts committed rows only.
 *
 * Before a batch is inserted, repeated rejections in it are folded
 * (fold.c): fewer rows may be written than events are released, and a
 * window that ends can add a row that stands for attempts released before.
 *
 * event_id is an identity column: the database assigns it, so rows brought
 * in from elsewhere (restored history) get ids of their own and never
 * collide with the worker's.  Rows inserted with explicit ids ahead of the
 * sequence (OVERRIDING SYSTEM VALUE, or COPY with event_id) make the
 * worker's INSERT fail on the key; the worker then moves the sequence past
 * the highest id in the table and writes the same batch again, once, in a
 * new transaction.
 *
 * Whose table
 * -----------
 * The worker writes as a superuser, so whatever runs when it writes
 * (triggers, rules) would run as a superuser.  Before every INSERT and
 * every retention DELETE, in the same transaction, pgd_check_events_table()
 * resolves pooldiag.events, locks it, and checks by OID that it is the
 * member table of extension pooldiag, owned by the extension's owner, a
 * superuser, in a schema a superuser owns, without triggers or rules.  The
 * lock keeps the table from being renamed, dropped or given a trigger or
 * rule until the commit.  The statement then looks the name up again; a
 * schema can be renamed without any lock on the tables in it, so the check
 * of the schema's owner is what keeps another role from renaming schema
 * pooldiag away and putting a table of its own under the old name in
 * between: only a superuser can rename a superuser's schema.
 *
 * Failures never end the writer: a missing extension or a failed write
 * keeps the events queued, logs one WARNING with a hint when the writer
 * enters that state (not once per cycle), and is retried on the next flush.
 * The writer runs with a short lock_timeout (writer.c), so a lock on the
 * table makes a write fail with ERRCODE_LOCK_NOT_AVAILABLE; that is state
 * write-blocked, logged once at LOG level: maintenance such as VACUUM FULL
 * or REINDEX takes that lock, and nothing is lost while it lasts.
 *
 * One call of pgd_flush_events() writes at most what was queued when it
 * started, so that a steady stream of events cannot keep the writer from
 * its other duties (reloads, retention, a shutdown request).
 *
 * Only the writer (writer.c) calls the writing functions and is the only
 * writer of the writer_* fields and event counters of PgdWorkerShared;
 * pgd_event_values() is also used by pooldiag.recent_events() in ordinary
 * backends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/datetime.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "event_ring.h"
#include "flush.h"
#include "fold.h"
#include "pools.h"
#include "pooldiag.h"
#include "sanitize.h"
#include "worker.h"

/* Events written per transaction. */
#define PGD_FLUSH_BATCH		8192

/* Rows deleted per retention transaction, and transactions per pass. */
#define PGD_RETENTION_BATCH		5000
#define PGD_RETENTION_MAX_BATCHES	10
#define PGD_RETENTION_EVERY_US	(5 * USECS_PER_SEC)

static const Oid pgd_column_types[PGD_EVENT_NCOLUMNS] = {
	INT8OID,					/* event_id */
	TIMESTAMPTZOID,				/* event_time */
	TEXTOID,					/* event */
	TEXTOID,					/* reason */
	INT4OID,					/* pid */
	TIMESTAMPTZOID,				/* backend_start */
	NAMEOID,					/* datname */
	NAMEOID,					/* usename */
	TEXTOID,					/* application_name */
	INETOID,					/* client_addr */
	JSONBOID,					/* detail */
	INT4OID						/* client_port, from 1.2 */
};

/*
 * One INSERT per batch: each column arrives as an array.  ROWS FROM with
 * qualified unnest() rather than multi-argument unnest(), which exists only
 * as unqualified syntax.  event_id is left to its identity column.
 *
 * A table of version 1.1 has no client_port: until ALTER EXTENSION UPDATE
 * adds it, the writer goes on writing the other columns (the second form),
 * so a new library never holds events back from a 1.1 table.
 */
#define PGD_INSERT_COLUMNS_1_1 \
"INSERT INTO pooldiag.events (event_time, event, reason, pid," \
" backend_start, datname, usename, application_name, client_addr, detail"
#define PGD_INSERT_UNNEST_1_1 \
" SELECT * FROM ROWS FROM (" \
" pg_catalog.unnest($1::pg_catalog.timestamptz[])," \
" pg_catalog.unnest($2::pg_catalog.text[])," \
" pg_catalog.unnest($3::pg_catalog.text[])," \
" pg_catalog.unnest($4::pg_catalog.int4[])," \
" pg_catalog.unnest($5::pg_catalog.timestamptz[])," \
" pg_catalog.unnest($6::pg_catalog.name[])," \
" pg_catalog.unnest($7::pg_catalog.name[])," \
" pg_catalog.unnest($8::pg_catalog.text[])," \
" pg_catalog.unnest($9::pg_catalog.inet[])," \
" pg_catalog.unnest($10::pg_catalog.jsonb[])"

static const char *pgd_insert_sql =
PGD_INSERT_COLUMNS_1_1 ", client_port)" PGD_INSERT_UNNEST_1_1
", pg_catalog.unnest($11::pg_catalog.int4[]))";
static const char *pgd_insert_sql_1_1 =
PGD_INSERT_COLUMNS_1_1 ")" PGD_INSERT_UNNEST_1_1 ")";

/* The columns the INSERT gives: all but event_id (column 0). */
#define PGD_INSERT_NCOLUMNS		(PGD_EVENT_NCOLUMNS - 1)

/* What pgd_check_events_table() found. */
typedef enum PgdTableCheck
{
	PGD_TABLE_OK,				/* the extension's own table: write */
	PGD_TABLE_NO_EXTENSION,		/* no extension pooldiag in this database */
	PGD_TABLE_UNTRUSTED,		/* writing could run another role's code */
	PGD_TABLE_OUTDATED			/* the SQL of an older version: update it */
} PgdTableCheck;

static SPIPlanPtr insert_plan = NULL;
static bool insert_plan_has_port = false;	/* which of the two it is */
static PgdEvent *batch = NULL;
/* Per event of the batch: a rejected attempt's database and role OIDs. */
static Oid *rejected_db = NULL;
static Oid *rejected_role = NULL;

static TimestampTz last_retention = 0;

/*
 * The state the last write left the writer in (messages are logged when it
 * changes), and the message of the last failed write, for the writer's
 * shutdown report.
 */
static PgdWorkerState reported_state = PGD_WORKER_STARTING;
static char last_error[256] = "";

/* Forget per-process state; called when a worker starts. */
void
pgd_flush_reset(void)
{
	insert_plan = NULL;
	last_retention = 0;
	if (batch == NULL)
	{
		batch = MemoryContextAlloc(TopMemoryContext,
								   sizeof(PgdEvent) * PGD_FLUSH_BATCH);
		rejected_db = MemoryContextAlloc(TopMemoryContext,
										 sizeof(Oid) * PGD_FLUSH_BATCH);
		rejected_role = MemoryContextAlloc(TopMemoryContext,
										   sizeof(Oid) * PGD_FLUSH_BATCH);
	}
}

static void
pgd_append_ms(StringInfo buf, const char *key, int64 us)
{
	/*
	 * Sign and magnitude apart, so that -0.5 ms prints as -0.500 and not as
	 * 0.500 (a wall clock stepping back can make a duration negative).
	 */
	uint64		mag = us < 0 ? -(uint64) us : (uint64) us;

	appendStringInfo(buf, "\"%s\": %s%llu.%03d", key, us < 0 ? "-" : "",
					 (unsigned long long) (mag / 1000), (int) (mag % 1000));
}

static void
pgd_append_time(StringInfo buf, const char *key, TimestampTz ts)
{
	char		out[MAXDATELEN + 1];

	JsonEncodeDateTime(out, TimestampTzGetDatum(ts), TIMESTAMPTZOID, NULL);
	appendStringInfo(buf, "\"%s\": \"%s\"", key, out);
}

/*
 * The jsonb "detail" of an event, or false if it has none.  Keys ending in
 * _ms are milliseconds with microsecond precision.
 */
static bool
pgd_event_detail_json(const PgdEvent *ev, StringInfo buf)
{
	appendStringInfoChar(buf, '{');
	switch ((PgdEventType) ev->type)
	{
		case PGD_EV_DISCONNECT:
			pgd_append_ms(buf, "age_ms", ev->event_time - ev->backend_start);
			appendStringInfo(buf, ", \"checkouts\": %lld, ",
							 (long long) ev->detail[PGD_D_DISCONNECT_CHECKOUTS]);
			pgd_append_ms(buf, "hold_time_ms", ev->detail[PGD_D_DISCONNECT_HOLD_US]);
			appendStringInfoString(buf, ", ");
			pgd_append_ms(buf, "idle_time_ms", ev->detail[PGD_D_DISCONNECT_IDLE_US]);
			break;
		case PGD_EV_CHECKIN:
			pgd_append_time(buf, "checkout_start", ev->detail[PGD_D_CHECKIN_START]);
			appendStringInfoString(buf, ", ");
			pgd_append_ms(buf, "hold_time_ms", ev->detail[PGD_D_CHECKIN_HOLD_US]);
			break;
		case PGD_EV_REJECTED:
			appendStringInfo(buf, "\"sqlstate\": \"%s\"",
							 unpack_sql_state((int) ev->detail[PGD_D_REJECTED_SQLSTATE]));
			/* A row that stands for folded repeats; see fold.c. */
			if (ev->detail[PGD_D_REJECTED_REPEATS] > 0)
			{
				appendStringInfo(buf, ", \"repeats\": %lld, ",
								 (long long) ev->detail[PGD_D_REJECTED_REPEATS]);
				pgd_append_time(buf, "first_time", ev->detail[PGD_D_REJECTED_FIRST_TIME]);
				appendStringInfoString(buf, ", ");
				pgd_append_time(buf, "last_time", ev->detail[PGD_D_REJECTED_LAST_TIME]);
			}
			break;
		case PGD_EV_TERMINATE:
		case PGD_EV_WOULD_TERMINATE:
			pgd_append_ms(buf, "age_ms", ev->event_time - ev->backend_start);
			appendStringInfoString(buf, ", ");
			pgd_append_ms(buf, "idle_ms", ev->detail[PGD_D_TERMINATE_IDLE_US]);
			appendStringInfoString(buf, ", ");
			pgd_append_time(buf, "deadline", ev->detail[PGD_D_TERMINATE_DEADLINE]);
			appendStringInfo(buf, ", \"checkouts\": %lld",
							 (long long) ev->detail[PGD_D_TERMINATE_CHECKOUTS]);
			break;
		case PGD_EV_LEAK_SUSPECT:
			if (ev->reason == PGD_R_IDLE_WHILE_POOL_BUSY)
			{
				pgd_append_time(buf, "idle_since", ev->detail[PGD_D_IDLE_LEAK_SINCE]);
				appendStringInfoString(buf, ", ");
				pgd_append_ms(buf, "idle_ms", ev->detail[PGD_D_IDLE_LEAK_IDLE_US]);
				appendStringInfo(buf, ", \"leak_threshold_ms\": %lld, \"pool_busy\": %lld",
								 (long long) ev->detail[PGD_D_IDLE_LEAK_THRESHOLD_MS],
								 (long long) ev->detail[PGD_D_IDLE_LEAK_POOL_BUSY]);
				break;
			}
			pgd_append_time(buf, "checkout_start", ev->detail[PGD_D_LEAK_START]);
			appendStringInfoString(buf, ", ");
			pgd_append_ms(buf, "hold_time_ms", ev->detail[PGD_D_LEAK_HOLD_US]);
			appendStringInfo(buf, ", \"leak_threshold_ms\": %lld",
							 (long long) ev->detail[PGD_D_LEAK_THRESHOLD_MS]);
			break;
		case PGD_EV_SATURATION:
			appendStringInfo(buf, "\"in_use\": %lld, \"slots\": %lld, \"threshold\": %lld, \"crossings\": %lld",
							 (long long) ev->detail[PGD_D_SATURATION_IN_USE],
							 (long long) ev->detail[PGD_D_SATURATION_SLOTS],
							 (long long) ev->detail[PGD_D_SATURATION_MARK],
							 (long long) ev->detail[PGD_D_SATURATION_CROSSINGS]);
			break;
		case PGD_EV_CONNECT:
		case PGD_EV_CHECKOUT:
			return false;
	}
	appendStringInfoChar(buf, '}');
	return true;
}

/*
 * A name of the event as a name Datum that is valid in the database
 * encoding (see sanitize.c): the producer checked it against another
 * encoding, or none (a rejected attempt), and roles are shared by databases
 * of every encoding.  Cut at NAMEDATALEN - 1 bytes, at a character.
 */
static Datum
pgd_name_datum(const NameData *name)
{
	Name		result = palloc0(NAMEDATALEN);

	pgd_sanitize_string(NameStr(*result), NAMEDATALEN, NameStr(*name),
						GetDatabaseEncoding());
	return NameGetDatum(result);
}

/*
 * One event as the row of pooldiag.events / pooldiag.recent_events().
 * Allocates in the current memory context.  Never fails on the event's
 * strings: whatever is not valid in the database encoding is escaped.
 */
void
pgd_event_values(const PgdEvent *ev, int64 event_id,
				 Datum *values, bool *nulls)
{
	const char *reason = pgd_reason_name(ev->reason);
	StringInfoData detail;
	char		appname[PGD_SANITIZED_MAXLEN];

	memset(nulls, 0, sizeof(bool) * PGD_EVENT_NCOLUMNS);

	values[0] = Int64GetDatum(event_id);
	values[1] = TimestampTzGetDatum(ev->event_time);
	values[2] = CStringGetTextDatum(pgd_event_name(ev->type));
	if (reason)
		values[3] = CStringGetTextDatum(reason);
	else
		nulls[3] = true;
	/* Server-wide events (saturation) belong to no process. */
	values[4] = Int32GetDatum(ev->pid);
	nulls[4] = ev->pid == 0;
	if (ev->backend_start != 0)
		values[5] = TimestampTzGetDatum(ev->backend_start);
	else
		nulls[5] = true;
	values[6] = pgd_name_datum(&ev->datname);
	nulls[6] = NameStr(ev->datname)[0] == '\0';
	values[7] = pgd_name_datum(&ev->usename);
	nulls[7] = NameStr(ev->usename)[0] == '\0';
	/* text, so escapes need not be cut to the ring's field size */
	pgd_sanitize_string(appname, sizeof(appname), ev->application_name,
						GetDatabaseEncoding());
	values[8] = CStringGetTextDatum(appname);

	if (ev->client_family == AF_INET || ev->client_family == AF_INET6)
	{
		char		addr[INET6_ADDRSTRLEN];

		if (inet_ntop(ev->client_family, ev->client_addr, addr, sizeof(addr)))
			values[9] = DirectFunctionCall1(inet_in, CStringGetDatum(addr));
		else
			nulls[9] = true;
	}
	else
		nulls[9] = true;

	initStringInfo(&detail);
	if (pgd_event_detail_json(ev, &detail))
		values[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(detail.data));
	else
		nulls[10] = true;
	pfree(detail.data);

	/* -1 for a Unix-domain socket, as in pg_stat_activity; 0: unknown. */
	values[11] = Int32GetDatum(ev->client_port);
	nulls[11] = ev->client_port == 0;
}

/*
 * Insert events[0..n) in the current transaction, after
 * pgd_check_events_table() said the table may be written.
 */
static void
pgd_insert_events(const PgdEvent *events, int n, bool has_port)
{
	Datum	   *columns[PGD_EVENT_NCOLUMNS];
	bool	   *column_nulls[PGD_EVENT_NCOLUMNS];
	Datum		args[PGD_INSERT_NCOLUMNS];
	char		argnulls[PGD_INSERT_NCOLUMNS];
	int			ncolumns = has_port ? PGD_EVENT_NCOLUMNS : PGD_EVENT_NCOLUMNS_1_1;

	for (int c = 1; c < ncolumns; c++)
	{
		columns[c] = palloc(sizeof(Datum) * n);
		column_nulls[c] = palloc(sizeof(bool) * n);
	}

	for (int i = 0; i < n; i++)
	{
		Datum		values[PGD_EVENT_NCOLUMNS];
		bool		nulls[PGD_EVENT_NCOLUMNS];

		/* The id is the table's to give; column 0 is ignored. */
		pgd_event_values(&events[i], 0, values, nulls);
		for (int c = 1; c < ncolumns; c++)
		{
			columns[c][i] = values[c];
			column_nulls[c][i] = nulls[c];
		}
	}

	for (int c = 1; c < ncolumns; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {n};
		int			lbs[1] = {1};

		get_typlenbyvalalign(pgd_column_types[c], &typlen, &typbyval, &typalign);
		args[c - 1] = PointerGetDatum(construct_md_array(columns[c], column_nulls[c],
														 1, dims, lbs,
														 pgd_column_types[c],
														 typlen, typbyval, typalign));
		argnulls[c - 1] = ' ';
	}

	if (insert_plan != NULL && insert_plan_has_port != has_port)
	{
		/* ALTER EXTENSION UPDATE added the column since. */
		SPI_freeplan(insert_plan);
		insert_plan = NULL;
	}
	if (insert_plan == NULL)
	{
		Oid			argtypes[PGD_INSERT_NCOLUMNS];
		SPIPlanPtr	plan;

		for (int c = 1; c < ncolumns; c++)
			argtypes[c - 1] = get_array_type(pgd_column_types[c]);
		plan = SPI_prepare(has_port ? pgd_insert_sql : pgd_insert_sql_1_1,
						   ncolumns - 1, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		insert_plan = plan;
		insert_plan_has_port = has_port;
	}
	if (SPI_execute_plan(insert_plan, args, argnulls, false, 0) != SPI_OK_INSERT ||
		SPI_processed != (uint64) n)
		elog(ERROR, "could not insert into \"pooldiag.events\"");
}

/* The owner and version of extension extoid; false if it is gone. */
static bool
pgd_extension_owner_version(Oid extoid, Oid *owner, char **version)
{
	Relation	extrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	extrel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(extrel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Datum		datum;
		bool		isnull;

		*owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
		datum = heap_getattr(tuple, Anum_pg_extension_extversion,
							 RelationGetDescr(extrel), &isnull);
		*version = isnull ? pstrdup("?") : TextDatumGetCString(datum);
		found = true;
	}
	systable_endscan(scan);
	table_close(extrel, AccessShareLock);
	return found;
}

static const char *
pgd_role_name(Oid roleid)
{
	char	   *name = GetUserNameFromId(roleid, true);

	return name ? name : "?";
}

/*
 * May the worker, a superuser, write to pooldiag.events?  See "Whose table"
 * at the top of this file.  Takes RowExclusiveLock on the table, kept to the
 * end of the transaction, so that what is checked here stays true for the
 * INSERT or DELETE that follows in the same transaction.  Returns
 * PGD_TABLE_OK, or why not, with *problem set to a sentence that says what
 * is wrong (for PGD_TABLE_OUTDATED, to the extension's version).
 */
static PgdTableCheck
pgd_check_events_table(char **problem, bool *has_port)
{
	Oid			extoid;
	Oid			extowner;
	char	   *extversion;
	Oid			relid;
	Relation	rel;
	HeapTuple	nsptuple;
	Oid			nspowner = InvalidOid;
	AttrNumber	attnum;
	PgdTableCheck result = PGD_TABLE_UNTRUSTED;

	*problem = NULL;
	if (has_port)
		*has_port = false;
	extoid = get_extension_oid("pooldiag", true);
	if (!OidIsValid(extoid) ||
		!pgd_extension_owner_version(extoid, &extowner, &extversion))
		return PGD_TABLE_NO_EXTENSION;

	/*
	 * Lock in the order DROP EXTENSION does: the identity sequence first
	 * (which the INSERT's nextval() locks), then the table.  Taken the other
	 * way round, a DROP EXTENSION that holds the sequence and waits for the
	 * table deadlocks with this write, and the deadlock detector may cancel
	 * the DROP.
	 */
	relid = RangeVarGetRelidExtended(makeRangeVar("pooldiag", "events", -1),
									 NoLock, RVR_MISSING_OK, NULL, NULL);
	if (OidIsValid(relid))
	{
		ListCell   *lc;

		foreach(lc, getOwnedSequences(relid))
			LockRelationOid(lfirst_oid(lc), RowExclusiveLock);
	}
	relid = RangeVarGetRelidExtended(makeRangeVar("pooldiag", "events", -1),
									 RowExclusiveLock, RVR_MISSING_OK,
									 NULL, NULL);
	if (!OidIsValid(relid))
	{
		*problem = pstrdup(_("Table \"pooldiag.events\" does not exist."));
		return PGD_TABLE_UNTRUSTED;
	}

	/* Locked above; the lock is kept until the end of the transaction. */
	rel = table_open(relid, NoLock);
	nsptuple = SearchSysCache1(NAMESPACEOID,
							   ObjectIdGetDatum(RelationGetNamespace(rel)));
	if (HeapTupleIsValid(nsptuple))
	{
		nspowner = ((Form_pg_namespace) GETSTRUCT(nsptuple))->nspowner;
		ReleaseSysCache(nsptuple);
	}

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		*problem = pstrdup(_("\"pooldiag.events\" is not a table."));
	else if (getExtensionOfObject(RelationRelationId, relid) != extoid)
		*problem = pstrdup(_("Table \"pooldiag.events\" is not the table of extension \"pooldiag\"."));
	else if (rel->rd_rel->relowner != extowner)
		*problem = psprintf(_("Table \"pooldiag.events\" is owned by role \"%s\", not by the owner of extension \"pooldiag\", role \"%s\"."),
							pgd_role_name(rel->rd_rel->relowner),
							pgd_role_name(extowner));
	else if (!superuser_arg(extowner))
		*problem = psprintf(_("The owner of extension \"pooldiag\" and of its table, role \"%s\", is not a superuser."),
							pgd_role_name(extowner));
	else if (!OidIsValid(nspowner) || !superuser_arg(nspowner))
		*problem = psprintf(_("Schema \"pooldiag\" is owned by role \"%s\", which is not a superuser."),
							pgd_role_name(nspowner));
	else if (rel->trigdesc != NULL && rel->trigdesc->numtriggers > 0)
		*problem = pstrdup(_("Table \"pooldiag.events\" has triggers."));
	else if (rel->rd_rules != NULL)
		*problem = pstrdup(_("Table \"pooldiag.events\" has rules."));
	else
	{
		/* Trusted.  Is it the table of the version this library writes? */
		attnum = get_attnum(relid, "event_id");
		if (attnum == InvalidAttrNumber ||
			TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attidentity !=
			ATTRIBUTE_IDENTITY_ALWAYS)
		{
			*problem = extversion;
			result = PGD_TABLE_OUTDATED;
		}
		else
		{
			/* client_port, from 1.2: written when the table has it. */
			attnum = get_attnum(relid, "client_port");
			if (has_port && attnum != InvalidAttrNumber)
				*has_port = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid == INT4OID;
			result = PGD_TABLE_OK;
		}
	}
	table_close(rel, NoLock);
	return result;
}

/*
 * Move the identity sequence of event_id to the highest id in the table,
 * after rows were inserted with explicit ids ahead of it.  Called after
 * pgd_check_events_table(), in its transaction.  setval() is not rolled
 * back, so the LOG below is true even if the transaction then fails.
 */
static void
pgd_resync_event_ids(void)
{
	static const char *sql =
		"SELECT pg_catalog.setval("
		"pg_catalog.pg_get_serial_sequence('pooldiag.events', 'event_id'), s.max_id)"
		" FROM (SELECT pg_catalog.max(e.event_id) AS max_id"
		"       FROM ONLY pooldiag.events e) s"
		" WHERE s.max_id >= 1";
	bool		isnull;
	Datum		value;

	if (SPI_execute(sql, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not move the event_id sequence of \"pooldiag.events\"");
	if (SPI_processed != 1)
		return;
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;
	ereport(LOG,
			(errmsg("pooldiag writer moved the event_id sequence of \"pooldiag.events\" past %lld, the highest id in the table",
					(long long) DatumGetInt64(value)),
			 errdetail("Rows had been inserted with explicit ids ahead of the sequence; the events are written again with new ids.")));
}

static void
pgd_report_state(PgdWorkerState state, const char *message)
{
	static char last_problem[256] = "";
	PgdWorkerState previous = reported_state;

	if (message)
		strlcpy(last_error, message, sizeof(last_error));
	reported_state = state;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	/* A writer that is stopping stays "stopping" in pooldiag.health. */
	if (pgd_worker_shared->writer_state != PGD_WORKER_STOPPING)
		pgd_worker_shared->writer_state = state;
	SpinLockRelease(&pgd_worker_shared->mutex);

	/*
	 * One message per change of state, never one per cycle; for a table the
	 * worker will not write, also one per change of what is wrong with it.
	 */
	if (state == PGD_WORKER_UNTRUSTED_TABLE)
	{
		if (previous == state && strcmp(last_problem, message) == 0)
			return;
		strlcpy(last_problem, message, sizeof(last_problem));
	}
	else
	{
		last_problem[0] = '\0';
		if (previous == state)
			return;
	}

	if (state == PGD_WORKER_WAITING_FOR_EXTENSION)
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pooldiag writer cannot store events: extension \"pooldiag\" is not installed in database \"%s\"",
						pgd_database),
				 errdetail("Events stay queued in shared memory until they can be written; when the queue is full, new events are dropped and counted."),
				 errhint("Run CREATE EXTENSION pooldiag in database \"%s\", or set \"pooldiag.database\" to the database where it is installed.",
						 pgd_database)));
	else if (state == PGD_WORKER_NEEDS_UPDATE)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pooldiag writer cannot write events: extension \"pooldiag\" in database \"%s\" is at version %s, older than the library",
						pgd_database, message),
				 errdetail("Events stay queued in shared memory until they can be written; when the queue is full, new events are dropped and counted."),
				 errhint("Run ALTER EXTENSION pooldiag UPDATE in database \"%s\".",
						 pgd_database)));
	else if (state == PGD_WORKER_UNTRUSTED_TABLE)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pooldiag writer refuses to write to \"pooldiag.events\""),
				 errdetail("%s The writer writes as a superuser, so it writes only to the table of the extension, owned by the extension's owner, in a schema owned by a superuser, without triggers or rules.  Events stay queued in shared memory.",
						   message),
				 errhint("Undo the change, or find out who made it: it may be an attempt to run code as a superuser.")));
	else if (state == PGD_WORKER_WRITE_FAILED)
		ereport(WARNING,
				(errmsg("pooldiag writer could not write events to \"pooldiag.events\": %s",
						message),
				 errdetail("Events stay queued in shared memory and the write is retried every \"pooldiag.flush_interval\"."),
				 errhint("Check that table \"pooldiag.events\" exists and can be written, or reinstall the extension.")));
	else if (state == PGD_WORKER_WRITE_BLOCKED)
		ereport(LOG,
				(errmsg("pooldiag writer could not write events: table \"pooldiag.events\" is locked"),
				 errdetail("Events stay queued in shared memory and the write is retried every \"pooldiag.flush_interval\"; enforcement does not wait for it.")));
	else if (previous == PGD_WORKER_WAITING_FOR_EXTENSION ||
			 previous == PGD_WORKER_WRITE_FAILED ||
			 previous == PGD_WORKER_WRITE_BLOCKED ||
			 previous == PGD_WORKER_NEEDS_UPDATE ||
			 previous == PGD_WORKER_UNTRUSTED_TABLE)
		ereport(LOG,
				(errmsg("pooldiag writer resumed writing events to \"pooldiag.events\"")));
}

/* The message of the last failed write ("" if none failed yet). */
const char *
pgd_flush_error(void)
{
	return last_error;
}

/*
 * Run body(arg) in a transaction of its own, connected to SPI with an
 * active snapshot.  Returns true if it committed.  On an ERROR the
 * transaction is rolled back and the message is returned in *message
 * (palloc'd in the caller's context) and its SQLSTATE in *sqlerrcode: a
 * failed write must never end the writer.
 */
static bool
pgd_spi_transaction(void (*body) (void *arg), void *arg, char **message,
					int *sqlerrcode)
{
	MemoryContext caller_context = CurrentMemoryContext;
	volatile bool committed = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		body(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		committed = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		*message = pstrdup(edata->message);
		*sqlerrcode = edata->sqlerrcode;
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller_context);
	return committed;
}

typedef struct PgdBatch
{
	const PgdEvent *events;
	int			n;
	bool		resync_ids;		/* in: move the id sequence first */
	MemoryContext caller_context;	/* for 'problem' */
	PgdTableCheck check;		/* out: may the table be written? */
	char	   *problem;		/* out: why not (see pgd_check_events_table) */
	bool		id_collision;	/* out: the INSERT failed on a unique key */
} PgdBatch;

static void
pgd_write_batch_body(void *arg)
{
	PgdBatch   *b = arg;
	MemoryContext cxt = CurrentMemoryContext;
	char	   *problem;
	bool		has_port;

	b->check = pgd_check_events_table(&problem, &has_port);
	if (b->check != PGD_TABLE_OK)
	{
		if (problem)
			b->problem = MemoryContextStrdup(b->caller_context, problem);
		return;
	}
	if (b->resync_ids)
		pgd_resync_event_ids();

	PG_TRY();
	{
		pgd_insert_events(b->events, b->n, has_port);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* Only note what failed; pgd_spi_transaction() handles the error. */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		b->id_collision = edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION;
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Write one batch in its own transaction.  On PGD_FLUSH_OK the batch is
 * committed, and the caller releases it from the ring (before anything
 * that could check for interrupts; see the top of this file).
 */
static PgdFlushResult
pgd_write_batch(const PgdEvent *events, int n)
{
	PgdBatch	b;
	char	   *message = NULL;
	int			sqlerrcode = 0;
	bool		committed;

	memset(&b, 0, sizeof(b));
	b.events = events;
	b.n = n;
	b.caller_context = CurrentMemoryContext;

	pgstat_report_activity(STATE_RUNNING, "pooldiag: writing events");
	committed = pgd_spi_transaction(pgd_write_batch_body, &b, &message,
									&sqlerrcode);
	if (!committed && b.id_collision)
	{
		/*
		 * Rows with explicit ids ahead of the sequence: move it past them
		 * and write the same batch again, once.
		 */
		pfree(message);
		message = NULL;
		sqlerrcode = 0;
		b.id_collision = false;
		b.resync_ids = true;
		committed = pgd_spi_transaction(pgd_write_batch_body, &b, &message,
										&sqlerrcode);
	}
	pgstat_report_activity(STATE_IDLE, NULL);

	if (!committed)
	{
		bool		blocked = sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;

		/* The plan may point at a table that is gone. */
		if (insert_plan)
		{
			SPI_freeplan(insert_plan);
			insert_plan = NULL;
		}
		pgd_report_state(blocked ? PGD_WORKER_WRITE_BLOCKED : PGD_WORKER_WRITE_FAILED,
						 message);
		pfree(message);
		return blocked ? PGD_FLUSH_BLOCKED : PGD_FLUSH_FAILED;
	}
	switch (b.check)
	{
		case PGD_TABLE_OK:
			break;
		case PGD_TABLE_NO_EXTENSION:
			pgd_report_state(PGD_WORKER_WAITING_FOR_EXTENSION, NULL);
			return PGD_FLUSH_NO_EXTENSION;
		case PGD_TABLE_OUTDATED:
			pgd_report_state(PGD_WORKER_NEEDS_UPDATE, b.problem);
			return PGD_FLUSH_FAILED;
		case PGD_TABLE_UNTRUSTED:
			pgd_report_state(PGD_WORKER_UNTRUSTED_TABLE, b.problem);
			return PGD_FLUSH_FAILED;
	}
	return PGD_FLUSH_OK;
}

/*
 * Rejected attempts count in their pool (pooldiag.pools.rejected), each
 * attempt once, whether fold.c writes it as a row or only counts it in a
 * folded one: so per event of the batch, when the batch leaves the ring.
 * The pool is keyed by OIDs, which the refused process could not look up
 * (it records the event while reporting its FATAL error); the writer looks
 * up the names in a short transaction of its own, only for batches that
 * hold rejected attempts.  A name that names nothing (or was escaped as
 * invalid text) leaves InvalidOid, and the attempt counts in no pool.
 */
typedef struct PgdRejectedLookup
{
	const PgdEvent *events;
	int			n;
} PgdRejectedLookup;

static void
pgd_lookup_rejected_body(void *arg)
{
	PgdRejectedLookup *l = arg;

	for (int i = 0; i < l->n; i++)
	{
		const PgdEvent *ev = &l->events[i];

		if (ev->type != PGD_EV_REJECTED ||
			NameStr(ev->datname)[0] == '\0' || NameStr(ev->usename)[0] == '\0')
			continue;
		rejected_db[i] = get_database_oid(NameStr(ev->datname), true);
		rejected_role[i] = get_role_oid(NameStr(ev->usename), true);
	}
}

static void
pgd_lookup_rejected(const PgdEvent *events, int n)
{
	PgdRejectedLookup l = {events, n};
	bool		any = false;
	char	   *message = NULL;
	int			sqlerrcode = 0;

	memset(rejected_db, 0, sizeof(Oid) * n);
	memset(rejected_role, 0, sizeof(Oid) * n);
	for (int i = 0; i < n && !any; i++)
		any = events[i].type == PGD_EV_REJECTED;
	if (!any)
		return;
	if (!pgd_spi_transaction(pgd_lookup_rejected_body, &l, &message, &sqlerrcode))
	{
		/* Counted in pooldiag.capacity and written to events all the same. */
		ereport(LOG,
				(errmsg("pooldiag could not attribute rejected connection attempts to their pools: %s",
						message)));
		pfree(message);
		memset(rejected_db, 0, sizeof(Oid) * n);
	}
}

/* The batch leaves the ring: count its rejected attempts in their pools. */
static void
pgd_count_rejected(const PgdEvent *events, int n)
{
	for (int i = 0; i < n; i++)
		if (events[i].type == PGD_EV_REJECTED &&
			OidIsValid(rejected_db[i]) && OidIsValid(rejected_role[i]))
			pgd_pool_count_rejected(rejected_db[i], rejected_role[i], &events[i], 1);
}

/*
 * Write what is queued now, batch by batch: at most as many events as were
 * queued when called, so that producers cannot keep one call going forever.
 * Returns the result of the last batch and the number of events written.
 */
PgdFlushResult
pgd_flush_events(uint64 *nwritten)
{
	PgdFlushResult result = PGD_FLUSH_OK;
	PgdRingCounters ring;
	uint64		remaining;
	int			n;

	*nwritten = 0;
	pgd_ring_counters(&ring);
	remaining = ring.queued;
	for (;;)
	{
		const PgdEvent *rows;
		int			nrows;

		int			want = (int) Min(remaining, PGD_FLUSH_BATCH);

		/*
		 * Repeated rejections are counted rather than written: fold.c.  A
		 * batch that takes all that was queued at the start (or finds
		 * nothing) lets fold.c end windows that are over.
		 */
		n = want > 0 ? pgd_ring_peek(batch, want) : 0;
		pgd_lookup_rejected(batch, n);
		nrows = pgd_fold_batch(batch, n, n < want || (uint64) n >= remaining,
							   &rows);
		if (nrows > 0)
		{
			result = pgd_write_batch(rows, nrows);
			if (result != PGD_FLUSH_OK)
				return result;
		}

		/* Committed: no interrupt check until the ring is released. */
		pgd_fold_publish();
		if (n == 0)
			break;
		pgd_count_rejected(batch, n);
		pgd_ring_release(n);
		*nwritten += n;
		remaining -= n;

		SpinLockAcquire(&pgd_worker_shared->mutex);
		pgd_worker_shared->events_written += n;
		pgd_worker_shared->last_flush = GetCurrentTimestamp();
		SpinLockRelease(&pgd_worker_shared->mutex);

		if (n < want || remaining == 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	if (result == PGD_FLUSH_OK)
	{
		PgdWorkerState state = reported_state;

		/*
		 * Out of a problem state only once something was written: with
		 * nothing queued nothing was tried, and going back and forth between
		 * "running" and the problem on a quiet server would repeat the
		 * WARNING at every event.
		 */
		if (*nwritten > 0 ||
			(state != PGD_WORKER_WAITING_FOR_EXTENSION &&
			 state != PGD_WORKER_NEEDS_UPDATE &&
			 state != PGD_WORKER_UNTRUSTED_TABLE &&
			 state != PGD_WORKER_WRITE_BLOCKED &&
			 state != PGD_WORKER_WRITE_FAILED))
			pgd_report_state(PGD_WORKER_RUNNING, NULL);
	}
	return result;
}

/*
 * Delete rows older than pooldiag.events_retention, oldest first,
 * PGD_RETENTION_BATCH rows per transaction and at most
 * PGD_RETENTION_MAX_BATCHES transactions per pass, so no pass holds locks
 * for long.  By event_time, through its index: restored rows get new ids,
 * so ids need not follow time.
 */
typedef struct PgdExpiry
{
	const char *sql;
	uint64		deleted;
	bool		refused;		/* the table may not be written */
} PgdExpiry;

static void
pgd_expire_batch_body(void *arg)
{
	PgdExpiry  *expiry = arg;
	char	   *problem;

	/*
	 * The same check as before a write: a DELETE runs triggers and rules as
	 * much as an INSERT does.  Why not is reported by the next flush.
	 */
	if (pgd_check_events_table(&problem, NULL) != PGD_TABLE_OK)
	{
		expiry->refused = true;
		return;
	}
	if (SPI_execute(expiry->sql, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete expired events");
	expiry->deleted = SPI_processed;
}

void
pgd_expire_events(void)
{
	TimestampTz now = GetCurrentTimestamp();
	char		sql[512];

	if (pgd_events_retention_s <= 0 ||
		now < last_retention + PGD_RETENTION_EVERY_US)
		return;
	last_retention = now;

	snprintf(sql, sizeof(sql),
			 "DELETE FROM ONLY pooldiag.events WHERE event_id IN ("
			 " SELECT event_id FROM ONLY pooldiag.events"
			 " WHERE event_time < pg_catalog.now() - pg_catalog.make_interval(secs => %d)"
			 " ORDER BY event_time LIMIT %d)",
			 pgd_events_retention_s, PGD_RETENTION_BATCH);

	for (int b = 0; b < PGD_RETENTION_MAX_BATCHES; b++)
	{
		PgdExpiry	expiry = {sql, 0, false};
		char	   *message = NULL;
		int			sqlerrcode = 0;

		if (!pgd_spi_transaction(pgd_expire_batch_body, &expiry, &message,
								 &sqlerrcode))
		{
			/* The table is locked (lock_timeout): try again next pass. */
			if (sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			{
				pfree(message);
				return;
			}
			ereport(WARNING,
					(errmsg("pooldiag writer could not delete expired events: %s",
							message)));
			pfree(message);
			return;
		}
		if (expiry.refused || expiry.deleted < PGD_RETENTION_BATCH)
			break;
		CHECK_FOR_INTERRUPTS();
	}
}
