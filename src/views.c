/*-------------------------------------------------------------------------
 *
 * views.c
 *		SQL-callable functions: the set-returning functions behind
 *		pooldiag.sessions, pooldiag.pools, pooldiag.health,
 *		pooldiag.recent_events(), pooldiag.capacity and pooldiag.metrics(),
 *		and pooldiag.drain() and pooldiag.reset().
 *
 * Privacy follows pg_stat_activity: every role sees that a session exists,
 * with its pid, database and role; the rest of the row (application_name,
 * client address and port, state and timings, the declared client pool,
 * wait events) is shown only to roles that have the privileges of the
 * session's role, and to members of pg_read_all_stats.  The view's
 * blocked_by, computed in SQL from wait_event_type, follows.
 * Events follow the same rule, by the event's role, and so do pools, by
 * the pool's role: every role sees that a pool exists, with its kind,
 * database and role; the rest of its row (its name, application_name,
 * client address and every count) only with the privileges of the pool's
 * role or of pg_read_all_stats.  The "other" row, which mixes roles, is
 * shown whole to members of pg_read_all_stats only.
 *
 * These functions only read shared state (see registry.c and event_ring.c
 * for how), except pooldiag.drain(), which sets the atomic drain_serial of
 * the slots it is allowed to mark and wakes the enforcer.
 *
 * The set-returning functions check that their SQL definition declares
 * exactly the columns they fill (pgd_check_result_columns), so that the
 * SQL of another version of the extension gets an error, never misplaced
 * or unset columns.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "capacity.h"
#include "compat.h"
#include "event_ring.h"
#include "flush.h"
#include "fold.h"
#include "hooks.h"
#include "policy.h"
#include "pooldiag.h"
#include "pools.h"
#include "registry.h"
#include "sanitize.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(pooldiag_sessions);
PG_FUNCTION_INFO_V1(pooldiag_health);
PG_FUNCTION_INFO_V1(pooldiag_recent_events);
PG_FUNCTION_INFO_V1(pooldiag_drain);
PG_FUNCTION_INFO_V1(pooldiag_pools);
PG_FUNCTION_INFO_V1(pooldiag_reset);
PG_FUNCTION_INFO_V1(pooldiag_capacity);
PG_FUNCTION_INFO_V1(pooldiag_rejection_counts);
PG_FUNCTION_INFO_V1(pooldiag_pool_hold_histogram);

/*
 * pooldiag.get_sessions(): version 1.2 has PGD_SESSIONS_COLS columns;
 * version 1.1 declared the first PGD_SESSIONS_COLS_1_1 of them, in the same
 * order.  pooldiag.recent_events() likewise (PGD_EVENT_NCOLUMNS, flush.h).
 */
#define PGD_SESSIONS_COLS	33
#define PGD_SESSIONS_COLS_1_1	24
/*
 * pooldiag.get_health(): version 1.1 has PGD_HEALTH_COLS columns; version
 * 1.0 declared the first PGD_HEALTH_COLS_1_0 of them, in the same order, so
 * a 1.0 installation keeps working with this library until it is updated.
 */
#define PGD_HEALTH_COLS		23
#define PGD_HEALTH_COLS_1_0	13
#define PGD_POOLS_COLS		38

static Datum
pgd_interval_datum(int64 us)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = us;
	return IntervalPGetDatum(result);
}

/*
 * A function's SQL definition must declare exactly the result columns the
 * library fills: a definition of another version of the extension (the
 * library is newer or older than the installed SQL) would otherwise get
 * columns it did not ask for or leave them unset.  As pg_stat_statements
 * does, refuse it, and say how to bring the two in step.
 */
static void
pgd_check_result_columns(FunctionCallInfo fcinfo, TupleDesc tupdesc,
						 int expected, int older)
{
	/* 'older': the columns of the previous version, which are served too. */
	if (tupdesc->natts != expected && tupdesc->natts != older)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function %s returns %d columns, but the pooldiag library provides %d",
						format_procedure_qualified(fcinfo->flinfo->fn_oid),
						tupdesc->natts, expected),
				 errdetail("The SQL definitions of extension \"pooldiag\" do not match the version of its library."),
				 errhint("Run ALTER EXTENSION pooldiag UPDATE in this database.")));
}

/* May the current user see the private detail of role's sessions? */
static bool
pgd_can_see_role(Oid roleid)
{
	Oid			me = GetUserId();

	return has_privs_of_role(me, roleid) ||
		has_privs_of_role(me, ROLE_PG_READ_ALL_STATS);
}

/* Returns false for a session without an IP address (Unix socket). */
static bool
pgd_client_addr_datum(const SockAddr *addr, Datum *result)
{
	PgdEvent	ev;
	char		text[INET6_ADDRSTRLEN];

	memset(&ev, 0, sizeof(ev));
	pgd_event_set_client_addr(&ev, (const struct sockaddr *) &addr->addr);
	if (ev.client_family == 0 ||
		inet_ntop(ev.client_family, ev.client_addr, text, sizeof(text)) == NULL)
		return false;
	*result = DirectFunctionCall1(inet_in, CStringGetDatum(text));
	return true;
}

static void
pgd_set_ms_interval(Datum *values, bool *nulls, int col, int ms)
{
	if (ms > 0)
		values[col] = pgd_interval_datum((int64) ms * 1000);
	else
		nulls[col] = true;
}

static void
pgd_set_timestamp(Datum *values, bool *nulls, int col, TimestampTz ts)
{
	if (ts != 0)
		values[col] = TimestampTzGetDatum(ts);
	else
		nulls[col] = true;
}

/* A string of the reader's choosing in the caller's database encoding. */
static void
pgd_set_client_string(Datum *values, bool *nulls, int col, const char *value)
{
	char		clean[PGD_SANITIZED_MAXLEN];

	/* Valid in the session's database encoding, maybe not in ours. */
	if (pgd_sanitize_string(clean, sizeof(clean), value,
							GetDatabaseEncoding()) > 0)
		values[col] = CStringGetTextDatum(clean);
	else
		nulls[col] = true;
}

/*
 * Columns added in 1.2, from client_port on: who is who (the client's
 * port, the pool it declares) and what the session waits for.
 */
static void
pgd_sessions_1_2_columns(const PgdSessionSnapshot *snap, Datum *values,
						 bool *nulls)
{
	PgdEvent	ev;
	PgdDeclaredPool declared;
	uint32		wait_info;
	const char *wait_type;
	const char *wait_name;

	memset(&ev, 0, sizeof(ev));
	pgd_event_set_client_addr(&ev, (const struct sockaddr *) &snap->client_addr.addr);
	if (ev.client_port != 0)
		values[24] = Int32GetDatum(ev.client_port);
	else
		nulls[24] = true;

	if (pgd_registry_read_declared(snap, &declared))
	{
		pgd_set_client_string(values, nulls, 25, declared.pool);
		for (int i = 0; i < PGD_NUM_DECLARED_INTS; i++)
		{
			int			col = 26 + i;
			int32		v = declared.value[i];

			if ((declared.declared & ((uint32) 1 << i)) == 0)
				nulls[col] = true;
			else if (i == PGD_DECL_POOL_TIMEOUT || i == PGD_DECL_RECYCLE)
				values[col] = pgd_interval_datum((int64) v * 1000);
			else
				values[col] = Int32GetDatum(v);
		}
		pgd_set_client_string(values, nulls, 30, declared.instance);
	}
	else
		memset(nulls + 25, true, sizeof(bool) * 6);

	/* As pg_stat_activity reads them, from the PGPROC. */
	wait_info = pgd_registry_wait_event_info(snap);
	wait_type = pgstat_get_wait_event_type(wait_info);
	wait_name = pgstat_get_wait_event(wait_info);
	if (wait_type)
		values[31] = CStringGetTextDatum(wait_type);
	else
		nulls[31] = true;
	if (wait_name)
		values[32] = CStringGetTextDatum(wait_name);
	else
		nulls[32] = true;
}

Datum
pooldiag_sessions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	PgdSessionSnapshot snap;

	pgd_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	pgd_check_result_columns(fcinfo, rsinfo->setDesc, PGD_SESSIONS_COLS,
							 PGD_SESSIONS_COLS_1_1);

	for (int i = 0; i < pgd_registry_size(); i++)
	{
		Datum		values[PGD_SESSIONS_COLS];
		bool		nulls[PGD_SESSIONS_COLS];
		const PgdSlot *slot = &snap.slot;
		char	   *datname;
		char	   *usename;
		const char *state;
		PgdVerdict	verdict;
		bool		checked_out;

		if (!pgd_registry_read(i, &snap))
			continue;

		memset(nulls, true, sizeof(nulls));
		values[0] = Int32GetDatum(slot->pid);
		nulls[0] = false;
		datname = get_database_name(slot->databaseid);
		if (datname)
		{
			values[1] = DirectFunctionCall1(namein, CStringGetDatum(datname));
			nulls[1] = false;
		}
		usename = GetUserNameFromId(slot->roleid, true);
		if (usename)
		{
			values[2] = DirectFunctionCall1(namein, CStringGetDatum(usename));
			nulls[2] = false;
		}

		if (pgd_can_see_role(slot->roleid))
		{
			checked_out = slot->checkout_start != 0;
			pgd_policy_evaluate(&snap, usename, now, &verdict);
			memset(nulls + 3, false, sizeof(bool) * (PGD_SESSIONS_COLS - 3));

			values[3] = CStringGetTextDatum(snap.application_name);
			nulls[4] = !pgd_client_addr_datum(&snap.client_addr, &values[4]);
			values[5] = TimestampTzGetDatum(slot->backend_start);
			state = pgd_backend_state_name(snap.state);
			if (state)
				values[6] = CStringGetTextDatum(state);
			else
				nulls[6] = true;
			pgd_set_timestamp(values, nulls, 7, snap.state_change);
			values[8] = pgd_interval_datum(now - slot->backend_start);
			if (checked_out)
				nulls[9] = true;
			else
				values[9] = pgd_interval_datum(Max(now - slot->last_checkin, 0));
			values[10] = Int64GetDatum(slot->checkouts);
			pgd_set_timestamp(values, nulls, 11, slot->checkout_start);
			/* Totals include the checkout or idle period under way. */
			values[12] = pgd_interval_datum(slot->hold_time_us +
											(checked_out ? Max(now - slot->checkout_start, 0) : 0));
			values[13] = pgd_interval_datum(slot->idle_time_us +
											(checked_out ? 0 : Max(now - slot->last_checkin, 0)));
			pgd_set_timestamp(values, nulls, 14, verdict.recycle_at);
			pgd_set_timestamp(values, nulls, 15, verdict.terminate_at);
			if (verdict.terminate_at != 0)
				values[16] = CStringGetTextDatum(pgd_reason_name(verdict.terminate_reason));
			else
				nulls[16] = true;
			values[17] = BoolGetDatum(verdict.exemption != PGD_NOT_EXEMPT);
			if (verdict.exemption != PGD_NOT_EXEMPT)
				values[18] = CStringGetTextDatum(pgd_exemption_name(verdict.exemption));
			else
				nulls[18] = true;
			values[19] = BoolGetDatum(snap.draining);
			pgd_set_ms_interval(values, nulls, 20, verdict.effective_ms[PGD_IDLE_TIMEOUT]);
			pgd_set_ms_interval(values, nulls, 21, verdict.effective_ms[PGD_MAX_LIFETIME]);
			pgd_set_ms_interval(values, nulls, 22,
								verdict.effective_ms[PGD_IDLE_IN_TRANSACTION_TIMEOUT]);
			pgd_set_ms_interval(values, nulls, 23, verdict.effective_ms[PGD_LEAK_THRESHOLD]);
			if (rsinfo->setDesc->natts == PGD_SESSIONS_COLS)
				pgd_sessions_1_2_columns(&snap, values, nulls);
		}

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static void
pgd_set_pid(Datum *values, bool *nulls, int col, int pid)
{
	if (pid != 0)
		values[col] = Int32GetDatum(pid);
	else
		nulls[col] = true;
}

Datum
pooldiag_health(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[PGD_HEALTH_COLS];
	bool		nulls[PGD_HEALTH_COLS];
	PgdRingCounters ring;
	PgdWorkerShared worker;

	pgd_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/*
	 * The SQL declaration decides how many columns heap_form_tuple() reads
	 * from values[]: never let it read past what is filled here.
	 */
	if (tupdesc->natts != PGD_HEALTH_COLS &&
		tupdesc->natts != PGD_HEALTH_COLS_1_0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pooldiag.get_health() is declared with %d result columns, but the pooldiag library returns %d",
						tupdesc->natts, PGD_HEALTH_COLS),
				 errhint("Update the extension with ALTER EXTENSION pooldiag UPDATE.")));

	pgd_ring_counters(&ring);
	SpinLockAcquire(&pgd_worker_shared->mutex);
	memcpy(&worker, pgd_worker_shared, sizeof(worker));
	SpinLockRelease(&pgd_worker_shared->mutex);

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum((int64) ring.queued);
	values[1] = Int64GetDatum((int64) ring.dropped);
	values[2] = Int64GetDatum((int64) worker.events_written);
	pgd_set_timestamp(values, nulls, 3, worker.last_flush);
	/* worker_pid, worker_state: 1.0's names, now the writer's. */
	pgd_set_pid(values, nulls, 4, worker.writer_pid);
	values[5] = CStringGetTextDatum(pgd_worker_state_name(worker.writer_state));
	values[6] = Int64GetDatum((int64) ring.discarded);
	values[7] = Int32GetDatum((int32) ring.capacity);
	values[8] = Int64GetDatum((int64) worker.terminations);
	values[9] = Int64GetDatum((int64) worker.would_terminations);
	values[10] = Int64GetDatum((int64) worker.leak_suspects);
	values[11] = Int64GetDatum((int64) worker.scans);
	if (worker.scan_slots > 0)
		values[12] = Float8GetDatum((double) worker.scan_cpu_ns / worker.scan_slots);
	else
		nulls[12] = true;
	/* Added in 1.1. */
	pgd_set_pid(values, nulls, 13, worker.writer_pid);
	values[14] = CStringGetTextDatum(pgd_worker_state_name(worker.writer_state));
	pgd_set_pid(values, nulls, 15, worker.enforcer_pid);
	values[16] = CStringGetTextDatum(pgd_worker_state_name(worker.enforcer_state));
	pgd_set_timestamp(values, nulls, 17, worker.last_scan);
	if (worker.lateness_known)
	{
		values[18] = pgd_interval_datum(worker.last_lateness_us);
		values[19] = pgd_interval_datum(worker.max_lateness_us);
	}
	else
		nulls[18] = nulls[19] = true;
	values[20] = Int64GetDatum((int64) worker.events_lost_in_crash);
	values[21] = Int64GetDatum((int64) pgd_fold_count());
	values[22] = Int32GetDatum(worker.untracked_sessions);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * pooldiag.recent_events(): the events queued in the ring now.  The ring
 * may hold millions of events, so it is copied PGD_RECENT_CHUNK events at a
 * time, and the rows of each chunk are built in a context that is reset
 * after it; what the call keeps is the tuplestore, which spills to a
 * temporary file past work_mem.  Memory does not grow with
 * event_buffer_size or with the number of events queued.
 */
#define PGD_RECENT_CHUNK	1024

Datum
pooldiag_recent_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgdRingCursor cursor;
	PgdEvent   *events;
	MemoryContext rows_context;
	int			n;
	bool		see_all;

	pgd_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	pgd_check_result_columns(fcinfo, rsinfo->setDesc, PGD_EVENT_NCOLUMNS,
							 PGD_EVENT_NCOLUMNS_1_1);

	see_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	events = palloc(sizeof(PgdEvent) * PGD_RECENT_CHUNK);
	rows_context = AllocSetContextCreate(CurrentMemoryContext,
										 "pooldiag recent_events rows",
										 ALLOCSET_DEFAULT_SIZES);

	pgd_ring_cursor_init(&cursor);
	while (pgd_ring_read(&cursor, events, PGD_RECENT_CHUNK, &n))
	{
		MemoryContext old_context = MemoryContextSwitchTo(rows_context);

		for (int i = 0; i < n; i++)
		{
			Datum		values[PGD_EVENT_NCOLUMNS];
			bool		nulls[PGD_EVENT_NCOLUMNS];

			if (!see_all)
			{
				Oid			roleid = get_role_oid(NameStr(events[i].usename), true);

				if (!OidIsValid(roleid) || !has_privs_of_role(GetUserId(), roleid))
					continue;
			}
			/* Queued events have no id yet: the table gives it on writing. */
			pgd_event_values(&events[i], 0, values, nulls);
			nulls[0] = true;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		MemoryContextSwitchTo(old_context);
		MemoryContextReset(rows_context);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(rows_context);
	pfree(events);
	return (Datum) 0;
}

/*
 * pooldiag.drain(datname, usename, application_name): mark every matching
 * session to be closed the next time it is idle outside a transaction.
 * NULL arguments match anything.  The caller's own session is never marked.
 * Permission per session is pg_terminate_backend()'s.
 */
Datum
pooldiag_drain(PG_FUNCTION_ARGS)
{
	Oid			dbid = InvalidOid;
	Oid			roleid = InvalidOid;
	char	   *appname = NULL;
	int			marked = 0;
	int			denied = 0;
	PgdSessionSnapshot snap;

	pgd_require_loaded();

	if (!PG_ARGISNULL(0))
	{
		dbid = get_database_oid(NameStr(*PG_GETARG_NAME(0)), true);
		if (!OidIsValid(dbid))
			PG_RETURN_INT32(0);
	}
	if (!PG_ARGISNULL(1))
	{
		roleid = get_role_oid(NameStr(*PG_GETARG_NAME(1)), true);
		if (!OidIsValid(roleid))
			PG_RETURN_INT32(0);
	}
	if (!PG_ARGISNULL(2))
		appname = text_to_cstring(PG_GETARG_TEXT_PP(2));

	for (int i = 0; i < pgd_registry_size(); i++)
	{
		const PgdSlot *slot = &snap.slot;

		if (!pgd_registry_read(i, &snap) || slot->pid == MyProcPid)
			continue;
		if ((OidIsValid(dbid) && slot->databaseid != dbid) ||
			(OidIsValid(roleid) && slot->roleid != roleid) ||
			(appname && strcmp(snap.application_name, appname) != 0))
			continue;

		/*
		 * The rules of pg_terminate_backend(), with the target's role as it
		 * is now, not as it was when the session connected.
		 */
		if ((superuser_arg(slot->roleid) && !superuser()) ||
			(!has_privs_of_role(GetUserId(), slot->roleid) &&
			 !has_privs_of_role(GetUserId(), ROLE_PG_SIGNAL_BACKEND)))
		{
			denied++;
			continue;
		}

		if (pgd_registry_request_drain(i, slot->serial))
			marked++;
	}

	if (denied > 0)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg_plural("permission denied to drain %d matching session",
							   "permission denied to drain %d matching sessions",
							   denied, denied),
				 errdetail("Only roles with the privileges of the role of the session or of pg_signal_backend may drain it, and only superusers may drain sessions of superusers.")));

	if (marked > 0)
		pgd_worker_wake();
	PG_RETURN_INT32(marked);
}

/*
 * pooldiag.pools: the pool table's totals plus what the live sessions of
 * each pool show now.  One copy of the table under its lock (shared), then
 * one lock-free pass over the registry.
 */
typedef struct PgdPoolRow
{
	PgdPoolCopy *copy;
	int			sessions;
	int			busy;
	int			idle;
	int			idle_in_transaction;
	int			waiting_on_lock;
	int			overdue;
	TimestampTz oldest_backend_start;
	int64		longest_checkout;	/* -1: none checked out */
	int64		longest_idle;	/* -1: none idle */
	/* Declared instances: each one's size + overflow, the largest seen. */
	int			ninstances;
	int			instances_allocated;
	struct PgdPoolInstance *instances;
} PgdPoolRow;

typedef struct PgdPoolInstance
{
	char		name[NAMEDATALEN];
	int64		max;
} PgdPoolInstance;

/*
 * A session that declares its pool size counts its instance (its
 * client_instance, "" being one instance too) with size + overflow; an
 * instance whose sessions declare different sizes counts with the largest.
 */
static void
pgd_pool_row_add_declared(PgdPoolRow *row, const PgdDeclaredPool *decl)
{
	int64		max;
	int			i;

	if (!(decl->declared & (1 << PGD_DECL_POOL_SIZE)))
		return;
	max = decl->value[PGD_DECL_POOL_SIZE];
	if (decl->declared & (1 << PGD_DECL_MAX_OVERFLOW))
		max += decl->value[PGD_DECL_MAX_OVERFLOW];
	for (i = 0; i < row->ninstances; i++)
	{
		if (strcmp(row->instances[i].name, decl->instance) == 0)
		{
			row->instances[i].max = Max(row->instances[i].max, max);
			return;
		}
	}
	if (row->ninstances == row->instances_allocated)
	{
		row->instances_allocated = Max(4, row->instances_allocated * 2);
		row->instances = row->instances == NULL ?
			palloc(sizeof(PgdPoolInstance) * row->instances_allocated) :
			repalloc(row->instances, sizeof(PgdPoolInstance) * row->instances_allocated);
	}
	strlcpy(row->instances[row->ninstances].name, decl->instance, NAMEDATALEN);
	row->instances[row->ninstances].max = max;
	row->ninstances++;
}

/* The hold time at quantile q, as the geometric midpoint of its bucket. */
static bool
pgd_hold_quantile(const PgdPoolTotals *t, double q, Datum *result)
{
	uint64		rank;
	uint64		seen = 0;

	if (t->checkouts <= 0)
		return false;
	rank = (uint64) ceil(q * (double) t->checkouts);
	if (rank < 1)
		rank = 1;
	for (int i = 0; i < PGD_HOLD_BUCKETS; i++)
	{
		seen += t->hold_buckets[i];
		if (seen >= rank)
		{
			double		us = pgd_hold_bucket_mid_us(i);

			/* The midpoint of the top bucket may lie above the largest value. */
			if (us > (double) t->hold_max_us)
				us = (double) t->hold_max_us;
			*result = pgd_interval_datum((int64) (us + 0.5));
			return true;
		}
	}
	return false;
}

static void
pgd_add_hold(PgdPoolTotals *t, const PgdHoldStats *h)
{
	t->checkouts += h->count;
	t->hold_sum_us += h->sum_us;
	t->hold_max_us = Max(t->hold_max_us, h->max_us);
	for (int i = 0; i < PGD_HOLD_BUCKETS; i++)
		t->hold_buckets[i] += h->buckets[i];
}

static void
pgd_pool_row_add_session(PgdPoolRow *row, const PgdSessionSnapshot *snap,
						 TimestampTz now)
{
	const PgdSlot *slot = &snap->slot;
	PgdVerdict	verdict;

	row->sessions++;
	if (row->oldest_backend_start == 0 ||
		slot->backend_start < row->oldest_backend_start)
		row->oldest_backend_start = slot->backend_start;
	if (slot->checkout_start != 0)
	{
		row->busy++;
		if (snap->state == STATE_IDLEINTRANSACTION ||
			snap->state == STATE_IDLEINTRANSACTION_ABORTED)
			row->idle_in_transaction++;
		if ((pgd_registry_wait_event_info(snap) & 0xFF000000) == PG_WAIT_LOCK)
			row->waiting_on_lock++;
		row->longest_checkout = Max(row->longest_checkout,
									Max(now - slot->checkout_start, 0));
	}
	else
	{
		row->idle++;
		row->longest_idle = Max(row->longest_idle,
								Max(now - slot->last_checkin, 0));
	}

	/* Past its recycle age, yet not (yet) idle long enough to be closed. */
	pgd_policy_evaluate(snap, NULL, now, &verdict);
	if (verdict.recycle_at != 0 && verdict.recycle_at <= now &&
		!(verdict.due && verdict.terminate_reason == PGD_R_MAX_LIFETIME))
		row->overdue++;
}

static void
pgd_set_name(Datum *values, bool *nulls, int col, const char *name)
{
	if (name)
	{
		values[col] = DirectFunctionCall1(namein, CStringGetDatum(name));
		nulls[col] = false;
	}
}

Datum
pooldiag_pools(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	PgdPoolCopy *copies;
	PgdPoolRow *rows;
	int		   *rowmap;
	int			ncopies;
	uint32		epoch;
	PgdSessionSnapshot snap;
	PgdHoldStats hold;
	PgdDeclaredPool decl;
	bool		see_all;

	pgd_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	pgd_check_result_columns(fcinfo, rsinfo->setDesc, PGD_POOLS_COLS,
							 PGD_POOLS_COLS);

	ncopies = pgd_pools_copy(&copies, &epoch);
	rows = palloc0(sizeof(PgdPoolRow) * Max(ncopies, 1));
	rowmap = palloc(sizeof(int) * (pgd_pools_capacity() + 1));
	for (int i = 0; i <= pgd_pools_capacity(); i++)
		rowmap[i] = -1;
	for (int r = 0; r < ncopies; r++)
	{
		rows[r].copy = &copies[r];
		rows[r].longest_checkout = -1;
		rows[r].longest_idle = -1;
		rowmap[copies[r].index] = r;
	}

	for (int i = 0; i < pgd_registry_size(); i++)
	{
		PgdPoolRow *row;
		int			index;

		if (!pgd_registry_read(i, &snap))
			continue;
		index = snap.slot.pool_index;
		/* A pool taken after the copy, or a session moving: next read. */
		if (index < 0 || index > pgd_pools_capacity() || rowmap[index] < 0)
			continue;
		row = &rows[rowmap[index]];
		if (row->copy->generation != snap.slot.pool_generation)
			continue;
		pgd_pool_row_add_session(row, &snap, now);
		if (pgd_registry_read_declared(&snap, &decl))
			pgd_pool_row_add_declared(row, &decl);
		if (pgd_registry_read_hold(i, snap.slot.serial, &hold) &&
			hold.epoch == epoch)
			pgd_add_hold(&row->copy->totals, &hold);
	}

	see_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	for (int r = 0; r < ncopies; r++)
	{
		Datum		values[PGD_POOLS_COLS];
		bool		nulls[PGD_POOLS_COLS];
		PgdPoolRow *row = &rows[r];
		const PgdPoolKey *key = &row->copy->key;
		const PgdPoolTotals *t = &row->copy->totals;
		bool		visible;
		int			c;

		memset(nulls, true, sizeof(nulls));
		if (row->copy->other)
		{
			values[1] = CStringGetTextDatum("other");
			visible = see_all;
		}
		else
		{
			values[1] = CStringGetTextDatum(key->declared ? "declared" : "implicit");
			pgd_set_name(values, nulls, 2, get_database_name(key->databaseid));
			pgd_set_name(values, nulls, 3, GetUserNameFromId(key->roleid, true));
			visible = see_all || pgd_can_see_role(key->roleid);
		}
		nulls[1] = false;

		if (visible)
		{
			memset(nulls + 6, false, sizeof(bool) * (PGD_POOLS_COLS - 6));
			if (!row->copy->other)
			{
				if (key->declared)
				{
					values[0] = CStringGetTextDatum(key->name);
					nulls[0] = false;
				}
				else
				{
					SockAddr	addr;

					values[4] = CStringGetTextDatum(key->name);
					nulls[4] = false;
					/* Back to a sockaddr for the shared formatter. */
					memset(&addr, 0, sizeof(addr));
					if (key->client_family == AF_INET)
					{
						struct sockaddr_in *sin = (struct sockaddr_in *) &addr.addr;

						sin->sin_family = AF_INET;
						memcpy(&sin->sin_addr, key->client_addr, 4);
					}
					else if (key->client_family == AF_INET6)
					{
						struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &addr.addr;

						sin6->sin6_family = AF_INET6;
						memcpy(&sin6->sin6_addr, key->client_addr, 16);
					}
					nulls[5] = !pgd_client_addr_datum(&addr, &values[5]);
				}
			}

			c = 6;
			values[c++] = Int32GetDatum(row->sessions);
			values[c++] = Int32GetDatum(row->busy);
			values[c++] = Int32GetDatum(row->idle);
			values[c++] = Int32GetDatum(row->idle_in_transaction);
			values[c++] = Int32GetDatum(row->waiting_on_lock);
			values[c++] = Int32GetDatum(row->overdue);
			pgd_set_timestamp(values, nulls, c++, row->oldest_backend_start);
			if (row->longest_checkout >= 0)
				values[c] = pgd_interval_datum(row->longest_checkout);
			else
				nulls[c] = true;
			c++;
			if (row->longest_idle >= 0)
				values[c] = pgd_interval_datum(row->longest_idle);
			else
				nulls[c] = true;
			c++;
			values[c++] = TimestampTzGetDatum(t->since);
			values[c++] = Int64GetDatum(t->checkouts);
			values[c++] = Int32GetDatum((int32) t->peak_busy);
			if (t->checkouts > 0)
				values[c] = pgd_interval_datum(t->hold_sum_us / t->checkouts);
			else
				nulls[c] = true;
			c++;
			nulls[c] = !pgd_hold_quantile(t, 0.50, &values[c]);
			c++;
			nulls[c] = !pgd_hold_quantile(t, 0.95, &values[c]);
			c++;
			nulls[c] = !pgd_hold_quantile(t, 0.99, &values[c]);
			c++;
			if (t->checkouts > 0)
				values[c] = pgd_interval_datum(t->hold_max_us);
			else
				nulls[c] = true;
			c++;
			values[c++] = Int64GetDatum(t->connects);
			for (int i = 0; i < PGD_POOL_CAUSES; i++)
				values[c++] = Int64GetDatum(t->disconnects[i]);
			for (int i = 0; i < PGD_POOL_CLOSES; i++)
				values[c++] = Int64GetDatum(t->closes[i]);
			values[c++] = Int64GetDatum(t->leak_suspects);
			values[c++] = Int64GetDatum(t->idle_leaks);
			values[c++] = Int64GetDatum(t->rejected);
			if (row->ninstances > 0)
			{
				int64		sum = 0;

				for (int i = 0; i < row->ninstances; i++)
					sum += row->instances[i].max;
				values[c++] = Int32GetDatum(row->ninstances);
				values[c++] = Int32GetDatum((int32) Min(sum, PG_INT32_MAX));
			}
			else
			{
				nulls[c++] = true;
				nulls[c++] = true;
			}
			if (row->copy->other)
				values[c] = Int64GetDatum(t->overflow);
			else
				nulls[c] = true;
			c++;
			Assert(c == PGD_POOLS_COLS);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* pooldiag.reset(): start the totals of pooldiag.pools and the capacity peak over. */
Datum
pooldiag_reset(PG_FUNCTION_ARGS)
{
	TimestampTz now = GetCurrentTimestamp();

	pgd_require_loaded();
	pgd_pools_reset();
	pgd_capacity_reset_peak(now);
	PG_RETURN_TIMESTAMPTZ(now);
}

/*
 * pooldiag.get_capacity(): one row of server-wide connection numbers (see
 * capacity.c), the part of view pooldiag.capacity that only shared memory
 * knows.  No per-session detail: nothing private to hide.
 */
#define PGD_CAPACITY_COLS	10

Datum
pooldiag_capacity(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[PGD_CAPACITY_COLS];
	bool		nulls[PGD_CAPACITY_COLS];
	PgdCapacity cap;

	pgd_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	pgd_check_result_columns(fcinfo, tupdesc, PGD_CAPACITY_COLS,
							 PGD_CAPACITY_COLS);

	pgd_capacity_read(&cap);
	memset(nulls, false, sizeof(nulls));
	values[0] = Int32GetDatum(cap.max_connections);
	values[1] = Int32GetDatum(cap.reserved_connections);
	values[2] = Int32GetDatum(cap.slots);
	values[3] = Int32GetDatum(cap.in_use);
	values[4] = Int32GetDatum(cap.peak_in_use);
	pgd_set_timestamp(values, nulls, 5, cap.peak_at);
	pgd_set_timestamp(values, nulls, 6, cap.peak_since);
	values[7] = Float8GetDatum(pgd_saturation_warning);
	values[8] = Int64GetDatum((int64) cap.saturation_events);
	pgd_set_timestamp(values, nulls, 9, cap.last_saturation);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * pooldiag.get_rejection_counts(): refused connection attempts since the
 * server started, one row per reason (zeros included, so that a monitoring
 * system sees every series from the start).
 */
Datum
pooldiag_rejection_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	pgd_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	pgd_check_result_columns(fcinfo, rsinfo->setDesc, 2, 2);

	for (int r = PGD_R_TOO_MANY_CONNECTIONS;
		 r < PGD_R_TOO_MANY_CONNECTIONS + PGD_NUM_REJECTION_REASONS; r++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(pgd_reason_name((uint8) r));
		values[1] = Int64GetDatum((int64) pgd_capacity_rejections((uint8) r));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * pooldiag.get_pool_hold_histogram(): each pool's hold times as a
 * Prometheus histogram, for pooldiag.metrics() and the exporter's queries
 * file.  The pools' log-scale buckets (pools.h) are summed into a few
 * cumulative ones whose bounds are bucket edges, so every count is exact:
 * the bound for each target below is the largest whole number of
 * microseconds in the log bucket that holds the target, so it lies up to
 * 10% above it (1 ms becomes 1051 us, shown as le 0.001051).  Only pools whose detail the caller may
 * see (pooldiag.pools' rule) are returned.
 */
static const double pgd_prom_hold_targets_s[] = {
	0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 300, 1800
};
#define PGD_PROM_HOLD_BOUNDS lengthof(pgd_prom_hold_targets_s)
#define PGD_POOL_HOLD_COLS	10

/*
 * The bound for a target: the end of the bucket that holds it, as the
 * largest whole microsecond inside; *last is that bucket's number.
 */
static int64
pgd_prom_hold_bound_us(double target_s, int *last)
{
	int			bucket = pgd_hold_bucket((int64) (target_s * 1e6 + 0.5));
	int64		le = (int64) ceil(pow(PGD_HOLD_RATIO, bucket)) - 1;

	/* pow() and the table may round differently: settle on the table's. */
	while (pgd_hold_bucket(le + 1) <= bucket)
		le++;
	while (le > 0 && pgd_hold_bucket(le) > bucket)
		le--;
	*last = bucket;
	return le;
}

Datum
pooldiag_pool_hold_histogram(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PgdPoolCopy *copies;
	int		   *rowmap;
	int			ncopies;
	uint32		epoch;
	PgdSessionSnapshot snap;
	PgdHoldStats hold;
	bool		see_all;
	Datum		bounds[PGD_PROM_HOLD_BOUNDS];
	int			last_bucket[PGD_PROM_HOLD_BOUNDS];
	ArrayType  *le_array;

	pgd_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	pgd_check_result_columns(fcinfo, rsinfo->setDesc, PGD_POOL_HOLD_COLS,
							 PGD_POOL_HOLD_COLS);

	for (int b = 0; b < PGD_PROM_HOLD_BOUNDS; b++)
		bounds[b] = Float8GetDatum((double)
								   pgd_prom_hold_bound_us(pgd_prom_hold_targets_s[b],
														  &last_bucket[b]) / 1e6);
	le_array = construct_array(bounds, PGD_PROM_HOLD_BOUNDS, FLOAT8OID,
							   sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);

	/* The pools' totals plus the live sessions' counts, as pooldiag.pools. */
	ncopies = pgd_pools_copy(&copies, &epoch);
	rowmap = palloc(sizeof(int) * (pgd_pools_capacity() + 1));
	for (int i = 0; i <= pgd_pools_capacity(); i++)
		rowmap[i] = -1;
	for (int r = 0; r < ncopies; r++)
		rowmap[copies[r].index] = r;
	for (int i = 0; i < pgd_registry_size(); i++)
	{
		int			index;

		if (!pgd_registry_read_slot(i, &snap))
			continue;
		index = snap.slot.pool_index;
		if (index < 0 || index > pgd_pools_capacity() || rowmap[index] < 0 ||
			copies[rowmap[index]].generation != snap.slot.pool_generation)
			continue;
		if (pgd_registry_read_hold(i, snap.slot.serial, &hold) &&
			hold.epoch == epoch)
			pgd_add_hold(&copies[rowmap[index]].totals, &hold);
	}

	see_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	for (int r = 0; r < ncopies; r++)
	{
		const PgdPoolCopy *copy = &copies[r];
		const PgdPoolKey *key = &copy->key;
		Datum		values[PGD_POOL_HOLD_COLS];
		bool		nulls[PGD_POOL_HOLD_COLS];
		Datum		counts[PGD_PROM_HOLD_BOUNDS];
		uint64		cumulative = 0;
		int			next = 0;

		if (copy->other ? !see_all :
			!(see_all || pgd_can_see_role(key->roleid)))
			continue;

		memset(nulls, true, sizeof(nulls));
		values[0] = CStringGetTextDatum(copy->other ? "other" :
										key->declared ? "declared" : "implicit");
		nulls[0] = false;
		if (!copy->other)
		{
			pgd_set_name(values, nulls, 2, get_database_name(key->databaseid));
			pgd_set_name(values, nulls, 3, GetUserNameFromId(key->roleid, true));
			values[key->declared ? 1 : 4] = CStringGetTextDatum(key->name);
			nulls[key->declared ? 1 : 4] = false;
			if (!key->declared &&
				(key->client_family == AF_INET || key->client_family == AF_INET6))
			{
				char		text[INET6_ADDRSTRLEN];

				if (inet_ntop(key->client_family, key->client_addr, text, sizeof(text)))
				{
					values[5] = DirectFunctionCall1(inet_in, CStringGetDatum(text));
					nulls[5] = false;
				}
			}
		}

		for (int i = 0; i < PGD_HOLD_BUCKETS && next < PGD_PROM_HOLD_BOUNDS; i++)
		{
			cumulative += copy->totals.hold_buckets[i];
			while (next < PGD_PROM_HOLD_BOUNDS && last_bucket[next] == i)
				counts[next++] = Int64GetDatum((int64) cumulative);
		}
		values[6] = PointerGetDatum(le_array);
		values[7] = PointerGetDatum(construct_array(counts, PGD_PROM_HOLD_BOUNDS,
													INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[8] = Float8GetDatum((double) copy->totals.hold_sum_us / 1e6);
		values[9] = Int64GetDatum(copy->totals.checkouts);
		memset(nulls + 6, false, sizeof(bool) * 4);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
