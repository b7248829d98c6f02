/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The "pooldiag worker" background worker: it enforces the session
 *		policy and writes queued events to pooldiag.events.
 *
 * One loop, three duties, in this order on every wake-up:
 *
 *	 1. Enforcement scan.  Read every registry slot without locks, work out
 *		each session's deadline (policy.c), record leak suspects, and close
 *		due sessions, oldest deadline first, within the rate limit.  Right
 *		before signalling it re-reads the slot and signals only the same
 *		session (pid and backend_start), still in the state that justified
 *		closing it, and without a checkout started since the decision.
 *	 2. Flush (flush.c).  Every flush_interval, or sooner when a producer
 *		found the ring more than half full and set our latch.
 *	 3. Retention (flush.c), in bounded batches.
 *
 * Then it sleeps until the earliest thing it knows it must do: the next
 * deadline, the next flush, the next token of the rate limit, bounded by
 * naptime.  Anything else (SIGHUP, a drain, a full ring) sets the latch.
 *
 * What it owns: the shared PgdWorkerShared (under its spinlock), and a
 * private memo per slot of what it already did to that session (leak
 * reported, would_terminate reported, signalled), keyed by pid and checkout
 * number so that it never repeats itself and never confuses two sessions
 * that used the same slot.
 *
 * On a hot standby it enforces as usual but writes nothing: events stay in
 * the ring, readable through pooldiag.recent_events(); the oldest are
 * retired once the ring is half full, and counted.
 *
 * Signals: SIGHUP sets ConfigReloadPending and the latch; SIGTERM is die(),
 * which ends the worker at the next CHECK_FOR_INTERRUPTS() with exit code 1,
 * so the postmaster restarts it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <time.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_ring.h"
#include "hooks.h"
#include "policy.h"
#include "pooldiag.h"
#include "registry.h"
#include "worker.h"

PGDLLEXPORT void pgd_worker_main(Datum main_arg);

PgdWorkerShared *pgd_worker_shared = NULL;

/* What the worker already did to the session in one slot. */
typedef struct PgdSlotMemo
{
	int			pid;
	TimestampTz backend_start;
	int64		leak_reported_checkout; /* checkout number, 0 = none */
	int64		dry_run_reported_checkout;	/* checkouts when reported */
	uint8		dry_run_reported_reason;
	bool		signalled;
} PgdSlotMemo;

/* A session that is due, waiting for its turn under the rate limit. */
/*
 * A session that is due, waiting for its turn under the rate limit, with
 * what the decision was based on: closing it is right only while all of
 * this still holds.
 */
typedef struct PgdCandidate
{
	int			index;
	TimestampTz deadline;
	PgdReason	reason;
	int			pid;
	TimestampTz backend_start;
	int64		checkouts;		/* a new checkout ends the idle period */
	TimestampTz state_change;	/* a new statement in the transaction, too */
} PgdCandidate;

static PgdSlotMemo *memo = NULL;
static PgdCandidate *candidates = NULL;

/* Rate limit: a token bucket holding at most one termination. */
static double termination_tokens = 1.0;
static TimestampTz tokens_updated_at = 0;

const char *
pgd_worker_state_name(PgdWorkerState state)
{
	switch (state)
	{
		case PGD_WORKER_STOPPED:
			return "stopped";
		case PGD_WORKER_STARTING:
			return "starting";
		case PGD_WORKER_RUNNING:
			return "running";
		case PGD_WORKER_WAITING_FOR_EXTENSION:
			return "waiting-for-extension";
		case PGD_WORKER_WRITE_FAILED:
			return "write-failed";
		case PGD_WORKER_STANDBY:
			return "standby";
		case PGD_WORKER_NEEDS_UPDATE:
			return "needs-update";
		case PGD_WORKER_UNTRUSTED_TABLE:
			return "untrusted-table";
	}
	return "unknown";
}

Size
pgd_worker_shmem_size(void)
{
	return sizeof(PgdWorkerShared);
}

void
pgd_worker_shmem_init(void)
{
	bool		found;

	pgd_worker_shared = ShmemInitStruct("pooldiag worker",
										sizeof(PgdWorkerShared), &found);
	if (!found)
	{
		memset(pgd_worker_shared, 0, sizeof(PgdWorkerShared));
		SpinLockInit(&pgd_worker_shared->mutex);
	}
}

void
pgd_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* ConsistentState: also on hot standbys. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "pooldiag", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "pgd_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pooldiag worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pooldiag worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Wake the worker now, e.g. after pooldiag.drain() marked sessions. */
void
pgd_worker_wake(void)
{
	pgd_ring_wake_consumer();
}

static void
pgd_worker_set_state(PgdWorkerState state)
{
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->state = state;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

static void
pgd_worker_exit(int code, Datum arg)
{
	pgd_ring_set_consumer_latch(NULL);
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->pid = 0;
	pgd_worker_shared->state = PGD_WORKER_STOPPED;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

static int64
pgd_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
pgd_forget_if_new_session(int index, const PgdSessionSnapshot *snap)
{
	PgdSlotMemo *m = &memo[index];

	if (m->pid != snap->slot.pid || m->backend_start != snap->slot.backend_start)
	{
		memset(m, 0, sizeof(PgdSlotMemo));
		m->pid = snap->slot.pid;
		m->backend_start = snap->slot.backend_start;
	}
}

/*
 * Fill an event with the identity of another session.  Needs a transaction
 * for the catalog look-ups of the names.
 */
static void
pgd_event_from_snapshot(PgdEvent *event, const PgdSessionSnapshot *snap,
						PgdEventType type, PgdReason reason, TimestampTz now)
{
	char	   *name;

	memset(event, 0, sizeof(PgdEvent));
	event->type = type;
	event->reason = reason;
	event->event_time = now;
	event->pid = snap->slot.pid;
	event->backend_start = snap->slot.backend_start;
	name = get_database_name(snap->slot.databaseid);
	if (name)
		namestrcpy(&event->datname, name);
	name = GetUserNameFromId(snap->slot.roleid, true);
	if (name)
		namestrcpy(&event->usename, name);
	strlcpy(event->application_name, snap->application_name, NAMEDATALEN);
	pgd_event_set_client_addr(event, (const struct sockaddr *) &snap->client_addr.addr);
}

static void
pgd_record_leak_suspect(const PgdSessionSnapshot *snap, const PgdVerdict *verdict,
						TimestampTz now)
{
	PgdEvent	event;

	pgd_event_from_snapshot(&event, snap, PGD_EV_LEAK_SUSPECT, PGD_R_NONE, now);
	event.detail[PGD_D_LEAK_START] = snap->slot.checkout_start;
	event.detail[PGD_D_LEAK_HOLD_US] = now - snap->slot.checkout_start;
	event.detail[PGD_D_LEAK_THRESHOLD_MS] = verdict->effective_ms[PGD_LEAK_THRESHOLD];
	pgd_ring_append(&event);

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->leak_suspects++;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

static int
pgd_candidate_cmp(const void *a, const void *b)
{
	const PgdCandidate *ca = a;
	const PgdCandidate *cb = b;

	if (ca->deadline != cb->deadline)
		return ca->deadline < cb->deadline ? -1 : 1;
	return ca->index - cb->index;
}

static void
pgd_refill_tokens(TimestampTz now)
{
	if (pgd_max_terminations_per_second <= 0)
	{
		termination_tokens = 1.0;
		return;
	}
	if (tokens_updated_at != 0 && now > tokens_updated_at)
		termination_tokens += (now - tokens_updated_at) / 1e6 *
			pgd_max_terminations_per_second;
	termination_tokens = Min(termination_tokens, 1.0);
	tokens_updated_at = now;
}

/*
 * Close one due session, or record would_terminate in a dry run.  Returns
 * true if it used up a termination (so the rate limit applies).
 *
 * The decision was taken in the scan, possibly a while ago (the rate limit,
 * a catalog look-up waiting for a lock).  So the slot is read again here and
 * the session is closed only if it is the same session (pid and
 * backend_start), it has not started a checkout since (checkouts), for the
 * idle-in-transaction timeout it has not run a statement since
 * (state_change), and it is still due in its current state.
 */
/* Does the session in 'current' still match what the scan decided on? */
static bool
pgd_still_as_decided(const PgdCandidate *cand, const PgdSessionSnapshot *current)
{
	return current->slot.pid == cand->pid &&
		current->slot.backend_start == cand->backend_start &&
		current->slot.checkouts == cand->checkouts &&
		(cand->reason != PGD_R_IDLE_IN_TRANSACTION_TIMEOUT ||
		 current->state_change == cand->state_change) &&
		pgd_state_fits_reason(current, cand->reason);
}

static bool
pgd_close_session(const PgdCandidate *cand)
{
	PgdSessionSnapshot current;
	PgdVerdict	verdict;
	PgdEvent	event;
	PgdSlotMemo *m = &memo[cand->index];
	TimestampTz now;

	if (!pgd_registry_read(cand->index, &current) ||
		!pgd_still_as_decided(cand, &current))
		return false;

	/*
	 * Catalog look-ups (exempt_roles, the names in the event) may wait for
	 * locks, so they all come before the final check below.
	 */
	pgd_policy_evaluate(&current, GetUserNameFromId(current.slot.roleid, true),
						GetCurrentTimestamp(), &verdict);
	if (!verdict.due || verdict.terminate_reason != cand->reason ||
		verdict.exemption != PGD_NOT_EXEMPT)
		return false;
	pgd_event_from_snapshot(&event, &current,
							pgd_dry_run ? PGD_EV_WOULD_TERMINATE : PGD_EV_TERMINATE,
							cand->reason, 0);

	if (pgd_dry_run)
	{
		/* Once per idle period and reason, not once per scan. */
		if (m->dry_run_reported_checkout == current.slot.checkouts + 1 &&
			m->dry_run_reported_reason == cand->reason)
			return false;
		m->dry_run_reported_checkout = current.slot.checkouts + 1;
		m->dry_run_reported_reason = cand->reason;
		now = GetCurrentTimestamp();
	}
	else
	{
		/*
		 * The identity check, right before the signal.  What remains is the
		 * window between this read and kill(); see README, "Guarantees and
		 * limits".
		 */
		if (!pgd_registry_read(cand->index, &current) ||
			!pgd_still_as_decided(cand, &current))
			return false;
		now = GetCurrentTimestamp();

		/* As pg_terminate_backend() does: the whole process group. */
#ifdef HAVE_SETSID
		if (kill(-current.slot.pid, SIGTERM) != 0)
#else
		if (kill(current.slot.pid, SIGTERM) != 0)
#endif
		{
			/* ESRCH: it exited on its own after our check; nothing to do. */
			if (errno != ESRCH)
				ereport(WARNING,
						(errmsg("could not send signal to process %d: %m",
								current.slot.pid)));
			return false;
		}
		m->signalled = true;
	}

	event.event_time = now;
	event.detail[PGD_D_TERMINATE_IDLE_US] =
		cand->reason == PGD_R_IDLE_IN_TRANSACTION_TIMEOUT ?
		now - current.state_change : now - current.slot.last_checkin;
	event.detail[PGD_D_TERMINATE_DEADLINE] = verdict.terminate_at;
	event.detail[PGD_D_TERMINATE_CHECKOUTS] = current.slot.checkouts;
	pgd_ring_append(&event);

	SpinLockAcquire(&pgd_worker_shared->mutex);
	if (pgd_dry_run)
		pgd_worker_shared->would_terminations++;
	else
		pgd_worker_shared->terminations++;
	SpinLockRelease(&pgd_worker_shared->mutex);
	return true;
}

/*
 * One enforcement scan.  Returns the next time something becomes due
 * (0 if nothing is known), for the sleep.
 */
static TimestampTz pgd_act_on_due_sessions(int ncandidates, bool need_leak_pass,
											TimestampTz now, TimestampTz next_wake);

static TimestampTz
pgd_enforce(void)
{
	int			nslots = pgd_registry_size();
	int			ncandidates = 0;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next_wake = 0;
	int64		cpu_start = pgd_thread_cpu_ns();
	int64		cpu_ns;
	PgdSessionSnapshot snap;
	bool		need_transaction = false;
	volatile TimestampTz wake;

#define WAKE_AT(t) \
	do { if ((t) > now && (next_wake == 0 || (t) < next_wake)) next_wake = (t); } while (0)

	for (int i = 0; i < nslots; i++)
	{
		PgdVerdict	verdict;

		/*
		 * Most sessions need only our own slot.  Core's status is read for
		 * a checked-out session that may be idle in a transaction, and for
		 * one that is due, to see its state and application_name.
		 */
		if (!pgd_registry_read_slot(i, &snap))
			continue;
		pgd_forget_if_new_session(i, &snap);
		if (memo[i].signalled)
			continue;
		if (snap.slot.checkout_start != 0 &&
			pgd_effective_ms(&snap.slot, PGD_IDLE_IN_TRANSACTION_TIMEOUT) > 0 &&
			!pgd_registry_read_status(&snap))
			continue;

		pgd_policy_evaluate(&snap, NULL, now, &verdict);
		if (verdict.due && !snap.has_status)
		{
			if (!pgd_registry_read_status(&snap))
				continue;
			pgd_policy_evaluate(&snap, NULL, now, &verdict);
		}

		if (verdict.leak_at != 0)
		{
			if (verdict.leak_at <= now &&
				memo[i].leak_reported_checkout != snap.slot.checkouts)
				need_transaction = true;
			else
				WAKE_AT(verdict.leak_at);
		}
		/* Role exemptions need the catalogs; they are checked later. */
		if (verdict.due && verdict.exemption == PGD_NOT_EXEMPT)
		{
			PgdCandidate *cand = &candidates[ncandidates++];

			cand->index = i;
			cand->deadline = verdict.terminate_at;
			cand->reason = verdict.terminate_reason;
			cand->pid = snap.slot.pid;
			cand->backend_start = snap.slot.backend_start;
			cand->checkouts = snap.slot.checkouts;
			cand->state_change = snap.state_change;
		}
		else if (verdict.terminate_at != 0)
			WAKE_AT(verdict.terminate_at);
	}

	cpu_ns = pgd_thread_cpu_ns() - cpu_start;
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->scans++;
	pgd_worker_shared->scan_slots += nslots;
	pgd_worker_shared->scan_cpu_ns += cpu_ns;
	pgd_worker_shared->last_scan = now;
	SpinLockRelease(&pgd_worker_shared->mutex);

	if (ncandidates == 0 && !need_transaction)
		return next_wake;
	wake = next_wake;

	/* Names for the events and exempt_roles need the catalogs. */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		wake = pgd_act_on_due_sessions(ncandidates, need_transaction,
									   now, next_wake);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/*
		 * Never let one bad scan end the worker: report, clean up, and try
		 * again at the next one.
		 */
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
	}
	PG_END_TRY();
	return wake;
#undef WAKE_AT
}

/*
 * The part of a scan that needs a transaction: record leak suspects, then
 * close due sessions oldest deadline first, within the rate limit.
 */
static TimestampTz
pgd_act_on_due_sessions(int ncandidates, bool need_leak_pass,
						TimestampTz now, TimestampTz next_wake)
{
	int			nslots = pgd_registry_size();
	PgdSessionSnapshot snap;

#define WAKE_AT(t) \
	do { if ((t) > now && (next_wake == 0 || (t) < next_wake)) next_wake = (t); } while (0)

	if (need_leak_pass)
	{
		for (int i = 0; i < nslots; i++)
		{
			PgdVerdict	verdict;

			if (!pgd_registry_read(i, &snap))
				continue;
			pgd_policy_evaluate(&snap, NULL, now, &verdict);
			if (verdict.leak_at != 0 && verdict.leak_at <= now &&
				memo[i].leak_reported_checkout != snap.slot.checkouts)
			{
				pgd_forget_if_new_session(i, &snap);
				memo[i].leak_reported_checkout = snap.slot.checkouts;
				pgd_record_leak_suspect(&snap, &verdict, now);
			}
		}
	}

	qsort(candidates, ncandidates, sizeof(PgdCandidate), pgd_candidate_cmp);
	pgd_refill_tokens(now);
	for (int c = 0; c < ncandidates; c++)
	{
		if (!pgd_dry_run && pgd_max_terminations_per_second > 0 &&
			termination_tokens < 1.0)
		{
			/* Out of turns: come back when the next token is there. */
			TimestampTz next_token = now +
				(TimestampTz) ((1.0 - termination_tokens) * 1e6 /
							   pgd_max_terminations_per_second);

			WAKE_AT(Max(next_token, now + 1000));
			break;
		}
		if (pgd_close_session(&candidates[c]) && !pgd_dry_run)
			termination_tokens -= 1.0;
	}
	return next_wake;
#undef WAKE_AT
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

static void
pgd_worker_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

void
pgd_worker_main(Datum main_arg)
{
	TimestampTz last_flush_attempt = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->pid = MyProcPid;
	pgd_worker_shared->state = PGD_WORKER_STARTING;
	SpinLockRelease(&pgd_worker_shared->mutex);
	before_shmem_exit(pgd_worker_exit, (Datum) 0);
	pgd_ring_set_consumer_latch(MyLatch);

	BackgroundWorkerInitializeConnection(pgd_database, NULL, 0);

	/*
	 * The worker runs SQL as a superuser.  With only pg_catalog on the
	 * search_path, no role that can create objects in some schema can
	 * shadow a function or operator the worker's queries use.
	 */
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_activity(STATE_IDLE, NULL);

	memo = MemoryContextAllocZero(TopMemoryContext,
								  sizeof(PgdSlotMemo) * pgd_registry_size());
	candidates = MemoryContextAlloc(TopMemoryContext,
									sizeof(PgdCandidate) * pgd_registry_size());
	pgd_flush_reset();

	for (;;)
	{
		TimestampTz now;
		TimestampTz next_wake;
		TimestampTz next_flush;
		PgdRingCounters ring;
		long		timeout_ms;

		pgd_worker_process_interrupts();

		next_wake = pgd_enforce();

		now = GetCurrentTimestamp();
		pgd_ring_counters(&ring);
		pgd_report_dropped_events(&ring, now);
		if (RecoveryInProgress())
		{
			/* Never write on a standby; keep the newest events readable. */
			pgd_worker_set_state(PGD_WORKER_STANDBY);
			pgd_ring_discard_oldest(ring.capacity / 2);
			last_flush_attempt = now;
		}
		else if (ring.queued > ring.capacity / 2 ||
				 now >= last_flush_attempt + (int64) pgd_flush_interval_ms * 1000)
		{
			int			nwritten;

			last_flush_attempt = now;
			if (pgd_flush_events(&nwritten) == PGD_FLUSH_OK)
				pgd_expire_events();
		}

		next_flush = last_flush_attempt + (int64) pgd_flush_interval_ms * 1000;
		if (next_wake == 0 || next_flush < next_wake)
			next_wake = next_flush;

		now = GetCurrentTimestamp();
		timeout_ms = pgd_naptime_ms;
		if (next_wake > now)
			timeout_ms = Min(timeout_ms, (next_wake - now + 999) / 1000);
		else
			timeout_ms = Min(timeout_ms, 1);

		pgstat_report_stat(true);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
