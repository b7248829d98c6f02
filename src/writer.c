/*-------------------------------------------------------------------------
 *
 * writer.c
 *		The "pooldiag writer" background worker: it writes queued events to
 *		pooldiag.events (flush.c), deletes expired rows, and finishes its
 *		work at shutdown.
 *
 * It is the event ring's only consumer (its latch is the ring's consumer
 * latch) and it never enforces anything: the enforcer (worker.c) is another
 * process, so nothing the writer waits for can delay a close.
 *
 * Life cycle
 * ----------
 *	 1. Find out whether pooldiag.database can be connected to.  Connecting
 *		to a database that does not exist is FATAL, and a process that has
 *		not connected cannot read pg_database, so the writer asks the
 *		enforcer, which is connected to no database and can.  While the
 *		database is missing (or does not allow connections) the writer stays
 *		up unconnected in state database-missing, logs one WARNING a minute
 *		and asks again every PGD_DATABASE_RECHECK_MS; when it appears, the
 *		writer connects.  Without an answer within PGD_DATABASE_ANSWER_MS
 *		(no enforcer running) it just tries to connect.
 *	 2. Loop: every flush_interval, or sooner when a producer found the ring
 *		more than half full and set our latch, write what is queued, then
 *		delete expired rows in bounded batches.  Every transaction runs with
 *		lock_timeout = PGD_WRITER_LOCK_TIMEOUT, so a lock on pooldiag.events
 *		(LOCK TABLE, VACUUM FULL, REINDEX, ALTER TABLE) makes the write fail
 *		in state write-blocked and be retried at the next flush, instead of
 *		the writer waiting behind it.  On a hot standby nothing is written:
 *		the oldest events are retired once the ring is half full, and
 *		counted, so that pooldiag.recent_events() shows the newest.
 *	 3. Shutdown (SIGTERM: a smart or fast shutdown, or pg_terminate_backend)
 *		sets ShutdownRequestPending and the latch; the writer leaves its
 *		loop, waits up to PGD_SHUTDOWN_SESSIONS_MS for client sessions to
 *		leave the registry (in a fast shutdown they get SIGTERM at the same
 *		moment, and each queues its disconnect event as it exits), writes
 *		what is queued, retrying a failed write until PGD_SHUTDOWN_MS after
 *		the request, and logs how many events it wrote and how many it could
 *		not, and why.  Events it could not write stay in the ring: a writer
 *		restarted after a lone SIGTERM writes them, and when the server stops
 *		the postmaster counts them as lost in the log (pooldiag.c).  It exits
 *		with code 1, so the postmaster restarts it after a lone SIGTERM and,
 *		during a server shutdown, starts nothing anyway.
 *
 * What it owns: the writer fields and event counters of the shared
 * PgdWorkerShared (under its spinlock), and the ring's consumer side.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "event_ring.h"
#include "fold.h"
#include "pooldiag.h"
#include "registry.h"
#include "worker.h"

/* The writer gives up a write that waits longer than this for a lock. */
#define PGD_WRITER_LOCK_TIMEOUT		"1s"

/* How long the writer waits for the enforcer to answer about the database. */
#define PGD_DATABASE_ANSWER_MS		10000
/* How often it asks again while pooldiag.database is unavailable. */
#define PGD_DATABASE_RECHECK_MS		1000
/* The WARNING about an unavailable database repeats at most this often. */
#define PGD_DATABASE_WARN_EVERY_US	(60 * USECS_PER_SEC)

/* Shutdown: wait for sessions to end, and the bound on all of it. */
#define PGD_SHUTDOWN_SESSIONS_MS	2000
#define PGD_SHUTDOWN_MS				5000
#define PGD_SHUTDOWN_RETRY_MS		100

PGDLLEXPORT void pgd_writer_main(Datum main_arg);

static void
pgd_writer_set_state(PgdWorkerState state)
{
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->writer_state = state;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

static void
pgd_writer_exit(int code, Datum arg)
{
	pgd_ring_set_consumer_latch(NULL);
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->writer_pid = 0;
	pgd_worker_shared->writer_state = PGD_WORKER_STOPPED;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

static void
pgd_writer_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Sleep on our latch for at most timeout_ms, then handle what woke us. */
static void
pgd_writer_sleep(long timeout_ms)
{
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Max(timeout_ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	pgd_writer_process_interrupts();
}

/*
 * Tell the log when events were dropped because the ring was full, at most
 * once a minute: the counter in pooldiag.health is exact, but an operator
 * should not have to poll it to learn that events are being lost.
 */
static void
pgd_report_dropped_events(const PgdRingCounters *ring, TimestampTz now)
{
	static uint64 reported = 0;
	static TimestampTz reported_at = 0;

	if (ring->dropped <= reported ||
		now < reported_at + 60 * USECS_PER_SEC)
		return;

	ereport(WARNING,
			(errmsg("pooldiag dropped %llu events because its event ring was full",
					(unsigned long long) (ring->dropped - reported)),
			 errdetail("%llu events have been dropped since the server started.",
					   (unsigned long long) ring->dropped),
			 errhint("Raise \"pooldiag.event_buffer_size\", or record fewer checkouts with \"pooldiag.log_checkouts\".")));
	reported = ring->dropped;
	reported_at = now;
}

/*
 * The duties that need no connection: warn about dropped events and, on a
 * hot standby, retire the oldest events so the newest stay readable.
 * Returns true on a standby.
 */
static bool
pgd_writer_ring_upkeep(void)
{
	PgdRingCounters ring;

	pgd_ring_counters(&ring);
	pgd_report_dropped_events(&ring, GetCurrentTimestamp());
	if (!RecoveryInProgress())
		return false;
	pgd_ring_discard_oldest(ring.capacity / 2);
	return true;
}

/*
 * Ask the enforcer whether pooldiag.database can be connected to, and wait
 * for the answer.  PGD_DATABASE_UNKNOWN if none came in time (no enforcer,
 * or it failed to look) or if shutdown was requested.
 */
static PgdDatabaseStatus
pgd_ask_database_status(void)
{
	uint32		request;
	Latch	   *enforcer;
	TimestampTz give_up = GetCurrentTimestamp() +
		(int64) PGD_DATABASE_ANSWER_MS * 1000;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	request = ++pgd_worker_shared->database_check_requested;
	if (request == 0)			/* 0 means "no question" to the enforcer */
		request = ++pgd_worker_shared->database_check_requested;
	enforcer = pgd_worker_shared->enforcer_latch;
	SpinLockRelease(&pgd_worker_shared->mutex);
	if (enforcer != NULL)
		SetLatch(enforcer);

	while (!ShutdownRequestPending && GetCurrentTimestamp() < give_up)
	{
		PgdDatabaseStatus status = PGD_DATABASE_UNKNOWN;
		bool		answered;

		SpinLockAcquire(&pgd_worker_shared->mutex);
		answered = pgd_worker_shared->database_check_answered == request;
		if (answered)
			status = pgd_worker_shared->database_status;
		else
			enforcer = pgd_worker_shared->enforcer_latch;
		SpinLockRelease(&pgd_worker_shared->mutex);
		if (answered)
			return status;

		/* An enforcer that started after we asked has not seen our latch. */
		if (enforcer != NULL)
			SetLatch(enforcer);
		pgd_writer_sleep(100);
	}
	return PGD_DATABASE_UNKNOWN;
}

/*
 * Wait until pooldiag.database can be connected to.  Returns false if
 * shutdown was requested first.
 */
static bool
pgd_writer_wait_for_database(void)
{
	TimestampTz warned_at = 0;
	bool		waited = false;

	for (;;)
	{
		PgdDatabaseStatus status = pgd_ask_database_status();
		TimestampTz now;

		if (ShutdownRequestPending)
			return false;
		if (status == PGD_DATABASE_OK || status == PGD_DATABASE_UNKNOWN)
		{
			if (waited)
				ereport(LOG,
						(errmsg("pooldiag writer is connecting to database \"%s\"",
								pgd_database)));
			pgd_writer_set_state(PGD_WORKER_STARTING);
			return true;
		}

		waited = true;
		pgd_writer_set_state(status == PGD_DATABASE_MISSING ?
							 PGD_WORKER_DATABASE_MISSING :
							 PGD_WORKER_DATABASE_CLOSED);
		now = GetCurrentTimestamp();
		if (warned_at == 0 || now >= warned_at + PGD_DATABASE_WARN_EVERY_US)
		{
			if (status == PGD_DATABASE_MISSING)
				ereport(WARNING,
						(errcode(ERRCODE_UNDEFINED_DATABASE),
						 errmsg("pooldiag writer cannot store events: database \"%s\" does not exist",
								pgd_database),
						 errdetail("Events stay queued in shared memory until the database exists; when the queue is full, new events are dropped and counted.  Sessions are still closed as the policy says."),
						 errhint("Create database \"%s\" and the extension pooldiag in it, or set \"pooldiag.database\" to the database where the extension is installed.",
								 pgd_database)));
			else
				ereport(WARNING,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("pooldiag writer cannot store events: database \"%s\" is not accepting connections",
								pgd_database),
						 errdetail("Events stay queued in shared memory until the database accepts connections; when the queue is full, new events are dropped and counted.  Sessions are still closed as the policy says."),
						 errhint("Allow connections with ALTER DATABASE ... WITH ALLOW_CONNECTIONS true, or set \"pooldiag.database\" to another database.")));
			warned_at = now;
		}

		(void) pgd_writer_ring_upkeep();
		pgd_writer_sleep(PGD_DATABASE_RECHECK_MS);
	}
}

/* Number of client sessions in the registry now. */
static int
pgd_count_sessions(void)
{
	PgdSessionSnapshot snap;
	int			n = 0;

	for (int i = 0; i < pgd_registry_size(); i++)
		if (pgd_registry_read_slot(i, &snap))
			n++;
	return n;
}

/*
 * The end of the writer: write what is queued, within a time bound, say
 * what could not be written and why, and exit.  'connected' is false when
 * the writer never got a connection to pooldiag.database.
 */
static void
pgd_writer_shut_down(bool connected)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz sessions_deadline = start + (int64) PGD_SHUTDOWN_SESSIONS_MS * 1000;
	TimestampTz deadline = start + (int64) PGD_SHUTDOWN_MS * 1000;
	uint64		written = 0;
	PgdRingCounters ring;
	const char *why = NULL;

	pgd_writer_set_state(PGD_WORKER_STOPPING);

	if (!connected)
		why = psprintf("Database \"%s\" was not available.", pgd_database);
	else if (RecoveryInProgress())
		why = pstrdup("The server is a hot standby, where events are not written.");
	else
	{
		PgdFlushResult result = PGD_FLUSH_OK;

		/*
		 * In a fast shutdown the sessions got SIGTERM when we did; each
		 * queues its disconnect event as it exits.  (In a smart shutdown
		 * they are gone already.)
		 */
		while (pgd_count_sessions() > 0 &&
			   GetCurrentTimestamp() < sessions_deadline)
			pgd_writer_sleep(10);

		/* Fold windows still open are written now, not lost (fold.c). */
		pgd_fold_end_windows();
		for (;;)
		{
			uint64		n;

			result = pgd_flush_events(&n);
			written += n;
			pgd_ring_counters(&ring);
			if ((result == PGD_FLUSH_OK && ring.queued == 0) ||
				result == PGD_FLUSH_NO_EXTENSION ||
				GetCurrentTimestamp() >= deadline)
				break;
			/* A failed write: the lock holder may be on its way out too. */
			if (result != PGD_FLUSH_OK)
				pgd_writer_sleep(PGD_SHUTDOWN_RETRY_MS);
		}
		if (result == PGD_FLUSH_NO_EXTENSION)
			why = psprintf("Extension \"pooldiag\" is not installed in database \"%s\".",
						   pgd_database);
		else if (result != PGD_FLUSH_OK)
			why = psprintf("The last write failed: %s.", pgd_flush_error());
		else
			why = psprintf("The writer stops writing %d ms after the shutdown request.",
						   PGD_SHUTDOWN_MS);
	}

	pgd_ring_counters(&ring);
	if (ring.queued == 0)
		ereport(LOG,
				(errmsg("pooldiag writer wrote %llu queued events before exiting",
						(unsigned long long) written)));
	else
		/* A standby never writes: that is no reason for a WARNING. */
		ereport(connected && RecoveryInProgress() ? LOG : WARNING,
				(errmsg("pooldiag writer wrote %llu queued events before exiting and could not write %llu",
						(unsigned long long) written,
						(unsigned long long) ring.queued),
				 errdetail("%s  Unwritten events stay queued for the next writer while the server runs, and are lost when it stops.",
						   why)));

	/* Code 1, so that the postmaster restarts us after a lone SIGTERM. */
	proc_exit(1);
}

void
pgd_writer_main(Datum main_arg)
{
	TimestampTz last_flush_attempt = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->writer_pid = MyProcPid;
	pgd_worker_shared->writer_state = PGD_WORKER_STARTING;
	SpinLockRelease(&pgd_worker_shared->mutex);
	before_shmem_exit(pgd_writer_exit, (Datum) 0);
	pgd_ring_set_consumer_latch(MyLatch);

	if (!pgd_writer_wait_for_database())
		pgd_writer_shut_down(false);

	BackgroundWorkerInitializeConnection(pgd_database, NULL, 0);

	/*
	 * The writer runs SQL as a superuser.  With only pg_catalog on the
	 * search_path, no role that can create objects in some schema can
	 * shadow a function or operator the writer's queries use.  The lock
	 * timeout keeps it from queueing behind a lock on pooldiag.events.
	 */
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", PGD_WRITER_LOCK_TIMEOUT, PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_activity(STATE_IDLE, NULL);
	pgd_flush_reset();

	while (!ShutdownRequestPending)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz next_flush;
		PgdRingCounters ring;

		if (pgd_writer_ring_upkeep())
		{
			/* Never write on a standby. */
			pgd_writer_set_state(PGD_WORKER_STANDBY);
			last_flush_attempt = now;
		}
		else
		{
			pgd_ring_counters(&ring);
			if (ring.queued > ring.capacity / 2 ||
				now >= last_flush_attempt + (int64) pgd_flush_interval_ms * 1000)
			{
				uint64		nwritten;

				last_flush_attempt = now;
				if (pgd_flush_events(&nwritten) == PGD_FLUSH_OK)
					pgd_expire_events();
			}
		}

		next_flush = last_flush_attempt + (int64) pgd_flush_interval_ms * 1000;
		now = GetCurrentTimestamp();
		pgstat_report_stat(true);
		pgd_writer_sleep(next_flush > now ? (next_flush - now + 999) / 1000 : 1);
	}

	pgd_writer_shut_down(true);
}
