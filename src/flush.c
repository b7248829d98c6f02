/*-------------------------------------------------------------------------
 *
 * flush.c
 *		Turning queued events into rows: the worker's writes to
 *		pooldiag.events, retention, and the row format that
 *		pooldiag.recent_events() shares with the table.
 *
 * Writing
 * -------
 * The worker peeks at up to PGD_FLUSH_BATCH events, inserts them with one
 * multi-row INSERT ... SELECT FROM unnest(arrays) in one transaction, and
 * releases them from the ring only after the commit.  A worker that dies in
 * between leaves them queued, and the next worker writes them again; to
 * keep that from writing a row twice, event ids are derived from ring
 * positions (event_id = event_id_base + position, the base fixed on the
 * first flush of a server run and kept in shared memory), and a freshly
 * started worker skips events whose id the table already holds.
 *
 * Failures never end the worker: a missing extension or a failed write
 * keeps the events queued, logs one WARNING with a hint when the worker
 * enters that state (not once per cycle), and is retried on the next flush.
 *
 * Only the worker calls the writing functions; pgd_event_values() is also
 * used by pooldiag.recent_events() in ordinary backends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/datetime.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "event_ring.h"
#include "flush.h"
#include "pooldiag.h"
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
	JSONBOID					/* detail */
};

/*
 * One INSERT per batch: each column arrives as an array.  ROWS FROM with
 * qualified unnest() rather than multi-argument unnest(), which exists only
 * as unqualified syntax.
 */
static const char *pgd_insert_sql =
"INSERT INTO pooldiag.events (event_id, event_time, event, reason, pid,"
" backend_start, datname, usename, application_name, client_addr, detail)"
" SELECT * FROM ROWS FROM ("
" pg_catalog.unnest($1::pg_catalog.int8[]),"
" pg_catalog.unnest($2::pg_catalog.timestamptz[]),"
" pg_catalog.unnest($3::pg_catalog.text[]),"
" pg_catalog.unnest($4::pg_catalog.text[]),"
" pg_catalog.unnest($5::pg_catalog.int4[]),"
" pg_catalog.unnest($6::pg_catalog.timestamptz[]),"
" pg_catalog.unnest($7::pg_catalog.name[]),"
" pg_catalog.unnest($8::pg_catalog.name[]),"
" pg_catalog.unnest($9::pg_catalog.text[]),"
" pg_catalog.unnest($10::pg_catalog.inet[]),"
" pg_catalog.unnest($11::pg_catalog.jsonb[]))";

static SPIPlanPtr insert_plan = NULL;
static PgdEvent *batch = NULL;

/* Has this worker process checked which events the table holds already? */
static bool duplicates_checked = false;
static int64 table_max_event_id = 0;

static TimestampTz last_retention = 0;

/* Forget per-process state; called when a worker starts. */
void
pgd_flush_reset(void)
{
	insert_plan = NULL;
	duplicates_checked = false;
	last_retention = 0;
	if (batch == NULL)
		batch = MemoryContextAlloc(TopMemoryContext,
								   sizeof(PgdEvent) * PGD_FLUSH_BATCH);
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
			pgd_append_time(buf, "checkout_start", ev->detail[PGD_D_LEAK_START]);
			appendStringInfoString(buf, ", ");
			pgd_append_ms(buf, "hold_time_ms", ev->detail[PGD_D_LEAK_HOLD_US]);
			appendStringInfo(buf, ", \"leak_threshold_ms\": %lld",
							 (long long) ev->detail[PGD_D_LEAK_THRESHOLD_MS]);
			break;
		case PGD_EV_CONNECT:
		case PGD_EV_CHECKOUT:
			return false;
	}
	appendStringInfoChar(buf, '}');
	return true;
}

/*
 * One event as the row of pooldiag.events / pooldiag.recent_events().
 * Allocates in the current memory context.
 */
void
pgd_event_values(const PgdEvent *ev, int64 event_id,
				 Datum *values, bool *nulls)
{
	const char *reason = pgd_reason_name(ev->reason);
	StringInfoData detail;

	memset(nulls, 0, sizeof(bool) * PGD_EVENT_NCOLUMNS);

	values[0] = Int64GetDatum(event_id);
	values[1] = TimestampTzGetDatum(ev->event_time);
	values[2] = CStringGetTextDatum(pgd_event_name(ev->type));
	if (reason)
		values[3] = CStringGetTextDatum(reason);
	else
		nulls[3] = true;
	values[4] = Int32GetDatum(ev->pid);
	if (ev->backend_start != 0)
		values[5] = TimestampTzGetDatum(ev->backend_start);
	else
		nulls[5] = true;
	values[6] = NameGetDatum(&ev->datname);
	nulls[6] = NameStr(ev->datname)[0] == '\0';
	values[7] = NameGetDatum(&ev->usename);
	nulls[7] = NameStr(ev->usename)[0] == '\0';
	values[8] = CStringGetTextDatum(ev->application_name);

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
}

/*
 * event_id = base + ring position.  Before the first flush of this run (and
 * on a standby) the base is 1.
 */
int64
pgd_event_id_base(void)
{
	int64		base;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	base = pgd_worker_shared->event_id_base_known ?
		pgd_worker_shared->event_id_base : 1;
	SpinLockRelease(&pgd_worker_shared->mutex);
	return base;
}

static int64
pgd_query_int8(const char *sql)
{
	bool		isnull;
	Datum		value;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "unexpected result from \"%s\"", sql);
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(value);
}

/* Insert events[0..n) in the current transaction. */
static void
pgd_insert_events(const PgdEvent *events, int n)
{
	Datum	   *columns[PGD_EVENT_NCOLUMNS];
	bool	   *column_nulls[PGD_EVENT_NCOLUMNS];
	Datum		args[PGD_EVENT_NCOLUMNS];
	char		argnulls[PGD_EVENT_NCOLUMNS];
	int			nrows = 0;
	int64		id_base = pgd_event_id_base();

	for (int c = 0; c < PGD_EVENT_NCOLUMNS; c++)
	{
		columns[c] = palloc(sizeof(Datum) * n);
		column_nulls[c] = palloc(sizeof(bool) * n);
	}

	for (int i = 0; i < n; i++)
	{
		Datum		values[PGD_EVENT_NCOLUMNS];
		bool		nulls[PGD_EVENT_NCOLUMNS];
		int64		event_id = id_base + (int64) events[i].position;

		/* Written already by a worker that died before releasing it. */
		if (event_id <= table_max_event_id)
			continue;

		pgd_event_values(&events[i], event_id, values, nulls);
		for (int c = 0; c < PGD_EVENT_NCOLUMNS; c++)
		{
			columns[c][nrows] = values[c];
			column_nulls[c][nrows] = nulls[c];
		}
		nrows++;
	}
	if (nrows == 0)
		return;

	for (int c = 0; c < PGD_EVENT_NCOLUMNS; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {nrows};
		int			lbs[1] = {1};

		get_typlenbyvalalign(pgd_column_types[c], &typlen, &typbyval, &typalign);
		args[c] = PointerGetDatum(construct_md_array(columns[c], column_nulls[c],
													 1, dims, lbs,
													 pgd_column_types[c],
													 typlen, typbyval, typalign));
		argnulls[c] = ' ';
	}

	if (insert_plan == NULL)
	{
		Oid			argtypes[PGD_EVENT_NCOLUMNS];
		SPIPlanPtr	plan;

		for (int c = 0; c < PGD_EVENT_NCOLUMNS; c++)
			argtypes[c] = get_array_type(pgd_column_types[c]);
		plan = SPI_prepare(pgd_insert_sql, PGD_EVENT_NCOLUMNS, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		insert_plan = plan;
	}
	if (SPI_execute_plan(insert_plan, args, argnulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into \"pooldiag.events\"");
}

static void
pgd_report_state(PgdWorkerState state, const char *message)
{
	PgdWorkerState previous;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	previous = pgd_worker_shared->state;
	pgd_worker_shared->state = state;
	SpinLockRelease(&pgd_worker_shared->mutex);

	/* One message per change of state, never one per cycle. */
	if (previous == state)
		return;
	if (state == PGD_WORKER_WAITING_FOR_EXTENSION)
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pooldiag worker cannot store events: extension \"pooldiag\" is not installed in database \"%s\"",
						pgd_database),
				 errdetail("Events stay queued in shared memory until they can be written; when the queue is full, new events are dropped and counted."),
				 errhint("Run CREATE EXTENSION pooldiag in database \"%s\", or set \"pooldiag.database\" to the database where it is installed.",
						 pgd_database)));
	else if (state == PGD_WORKER_WRITE_FAILED)
		ereport(WARNING,
				(errmsg("pooldiag worker could not write events to \"pooldiag.events\": %s",
						message),
				 errdetail("Events stay queued in shared memory and the write is retried every \"pooldiag.flush_interval\"."),
				 errhint("Check that table \"pooldiag.events\" exists and can be written, or reinstall the extension.")));
	else if (previous == PGD_WORKER_WAITING_FOR_EXTENSION ||
			 previous == PGD_WORKER_WRITE_FAILED)
		ereport(LOG,
				(errmsg("pooldiag worker resumed writing events to \"pooldiag.events\"")));
}

/*
 * Run body(arg) in a transaction of its own, connected to SPI with an
 * active snapshot.  Returns true if it committed.  On an ERROR the
 * transaction is rolled back and the message is returned in *message
 * (palloc'd in the caller's context): a failed write must never end the
 * worker.
 */
static bool
pgd_spi_transaction(void (*body) (void *arg), void *arg, char **message)
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
	bool		extension_missing;
} PgdBatch;

static void
pgd_write_batch_body(void *arg)
{
	PgdBatch   *batch_arg = arg;
	bool		base_known;

	if (!OidIsValid(get_extension_oid("pooldiag", true)))
	{
		batch_arg->extension_missing = true;
		return;
	}

	SpinLockAcquire(&pgd_worker_shared->mutex);
	base_known = pgd_worker_shared->event_id_base_known;
	SpinLockRelease(&pgd_worker_shared->mutex);

	if (!base_known || !duplicates_checked)
	{
		table_max_event_id =
			pgd_query_int8("SELECT pg_catalog.max(event_id) FROM pooldiag.events");
		duplicates_checked = true;
	}
	if (!base_known)
	{
		/* Continue the table's ids: the first queued event is next. */
		SpinLockAcquire(&pgd_worker_shared->mutex);
		pgd_worker_shared->event_id_base =
			table_max_event_id + 1 - (int64) batch_arg->events[0].position;
		pgd_worker_shared->event_id_base_known = true;
		SpinLockRelease(&pgd_worker_shared->mutex);
	}
	pgd_insert_events(batch_arg->events, batch_arg->n);
}

/*
 * Write one batch in its own transaction.  On success the caller releases
 * the batch from the ring.
 */
static PgdFlushResult
pgd_write_batch(const PgdEvent *events, int n)
{
	PgdBatch	batch_arg = {events, n, false};
	char	   *message = NULL;
	bool		committed;

	pgstat_report_activity(STATE_RUNNING, "pooldiag: writing events");
	committed = pgd_spi_transaction(pgd_write_batch_body, &batch_arg, &message);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (!committed)
	{
		/* The plan may point at a table that is gone. */
		if (insert_plan)
		{
			SPI_freeplan(insert_plan);
			insert_plan = NULL;
		}
		pgd_report_state(PGD_WORKER_WRITE_FAILED, message);
		pfree(message);
		return PGD_FLUSH_FAILED;
	}
	if (batch_arg.extension_missing)
	{
		pgd_report_state(PGD_WORKER_WAITING_FOR_EXTENSION, NULL);
		return PGD_FLUSH_NO_EXTENSION;
	}
	return PGD_FLUSH_OK;
}

/*
 * Write everything queued now, batch by batch.  Returns the result of the
 * last batch and the number of events written.
 */
PgdFlushResult
pgd_flush_events(int *nwritten)
{
	PgdFlushResult result = PGD_FLUSH_OK;
	int			n;

	*nwritten = 0;
	while ((n = pgd_ring_peek(batch, PGD_FLUSH_BATCH)) > 0)
	{
		result = pgd_write_batch(batch, n);
		if (result != PGD_FLUSH_OK)
			return result;

		pgd_ring_release(n);
		*nwritten += n;

		SpinLockAcquire(&pgd_worker_shared->mutex);
		pgd_worker_shared->events_written += n;
		pgd_worker_shared->last_flush = GetCurrentTimestamp();
		SpinLockRelease(&pgd_worker_shared->mutex);

		if (n < PGD_FLUSH_BATCH)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	if (result == PGD_FLUSH_OK)
		pgd_report_state(PGD_WORKER_RUNNING, NULL);
	return result;
}

/*
 * Delete rows older than pooldiag.events_retention, PGD_RETENTION_BATCH rows
 * per transaction and at most PGD_RETENTION_MAX_BATCHES transactions per
 * pass, so no pass holds locks for long.  Only the oldest ids are looked at,
 * because ids follow time.
 */
typedef struct PgdExpiry
{
	const char *sql;
	uint64		deleted;
} PgdExpiry;

static void
pgd_expire_batch_body(void *arg)
{
	PgdExpiry  *expiry = arg;

	/* Nothing to expire before the extension is created. */
	if (!OidIsValid(get_extension_oid("pooldiag", true)))
		return;
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
			 "DELETE FROM pooldiag.events WHERE event_id IN ("
			 " SELECT event_id FROM ("
			 "  SELECT event_id, event_time FROM pooldiag.events"
			 "  ORDER BY event_id LIMIT %d) oldest"
			 " WHERE event_time < pg_catalog.now() - pg_catalog.make_interval(secs => %d))",
			 PGD_RETENTION_BATCH, pgd_events_retention_s);

	for (int b = 0; b < PGD_RETENTION_MAX_BATCHES; b++)
	{
		PgdExpiry	expiry = {sql, 0};
		char	   *message = NULL;

		if (!pgd_spi_transaction(pgd_expire_batch_body, &expiry, &message))
		{
			ereport(WARNING,
					(errmsg("pooldiag worker could not delete expired events: %s",
							message)));
			pfree(message);
			return;
		}
		if (expiry.deleted < PGD_RETENTION_BATCH)
			break;
		CHECK_FOR_INTERRUPTS();
	}
}
