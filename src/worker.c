/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The "pooldiag enforcer" background worker: it enforces the session
 *		policy, and nothing else.
 *
 * Every wake-up runs one enforcement scan: read every registry slot without
 * locks, work out each session's deadline (policy.c), record leak suspects
 * (long checkouts, and idle leaks: see "Idle leaks" below), and close due
 * sessions, oldest deadline first, within the rate limit.
 * Right before signalling it re-reads the slot and signals only the same
 * session (its serial), still in the state that justified
 * closing it, and without a checkout started since the decision.  Then it
 * sleeps until the next deadline it knows of, bounded by naptime; SIGHUP,
 * pooldiag.drain() and the writer's database question set its latch.
 *
 * Why a process of its own: deadlines must be met within naptime whatever
 * the event table is doing.  Writing events can take long (a big backlog) or
 * block (a lock on pooldiag.events, a missing pooldiag.database); all of
 * that is the writer's (writer.c), which runs in another process, so the
 * enforcer never waits for it.  Its own events (terminate, leak_suspect) go
 * into the lock-free ring like everybody else's.
 *
 * It connects to no database (as the autovacuum launcher does): role names
 * and database names are in the shared catalogs pg_authid and pg_database,
 * which is all the scan and the events need, so it runs whether or not
 * pooldiag.database exists.  Catalog look-ups run in a transaction of their
 * own after the lock-free part of the scan.  Without a database, only the
 * shared catalogs' heaps are sure to be open-able (their indexes only once
 * the shared relcache init file is loaded): the syscaches used here
 * (AUTHOID, DATABASEOID) fall back to heap scans by themselves (catcache.c,
 * IndexScanOK()), and the one direct scan, of pg_database by name, asks for
 * its index only when it is there.  It also answers the writer's
 * question whether pooldiag.database exists (pgd_answer_database_check()),
 * because the writer cannot ask pg_database before it is connected.
 *
 * What it owns: the enforcer fields and enforcement statistics of the shared
 * PgdWorkerShared (under its spinlock), and a private memo per slot of what
 * it already did to that session (leak reported, would_terminate reported,
 * signalled), keyed by session serial and checkout number so that it never
 * repeats itself and never confuses two sessions that used the same slot.
 *
 * On a hot standby it enforces as usual.
 *
 * Idle leaks
 * ----------
 * A connection that the application checked out and forgot looks idle to
 * the server.  Under pressure a healthy pool hands out its idle connections
 * within milliseconds, so a session that stays idle while the rest of its
 * pool is stuck busy is very likely held by the application.  The rule,
 * evaluated per pool (pools.c) and declared client_instance (one
 * application process's pool) from the same lock-free pass over the slots,
 * with T = each session's own pooldiag.leak_threshold (0 turns it off):
 *
 *	 a session S is an idle leak suspect when
 *	   1. S has been idle outside a transaction for at least T, and
 *	   2. no session of its pool has been idle for less than its T: every
 *		  other session is checked out, or is itself idle for at least T
 *		  (nothing was handed back and left unused recently), and
 *	   3. at least one session of its pool has been checked out for at
 *		  least its T (the pool has had work waiting all that time).
 *
 * S is recorded once per idle period, as leak_suspect with reason
 * idle_while_pool_busy, after core's state confirms that it is idle.  The
 * "other" pool row mixes unrelated pools, so its sessions are never
 * suspects.  README, "Idle leaks", lists the false positives.
 *
 * Signals: SIGHUP sets ConfigReloadPending and the latch; SIGTERM sets
 * ShutdownRequestPending and the latch, and the loop ends at its next turn
 * with exit code 1: the postmaster restarts a worker after a lone SIGTERM
 * (pg_terminate_backend) only for code 1, and restarts nothing while the
 * server shuts down, so code 1 is right in both cases.  (A scan that waits
 * for a catalog lock finishes that wait first.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <time.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
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
#include "utils/fmgroids.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "port/pg_bitutils.h"

#include "capacity.h"
#include "compat.h"
#include "event_ring.h"
#include "hooks.h"
#include "policy.h"
#include "pooldiag.h"
#include "pools.h"
#include "registry.h"
#include "worker.h"

PGDLLEXPORT void pgd_enforcer_main(Datum main_arg);

PgdWorkerShared *pgd_worker_shared = NULL;

/* What the worker already did to the session in one slot. */
typedef struct PgdSlotMemo
{
	uint64		serial;			/* the session this memo is about */
	int64		leak_reported_checkout; /* checkout number, 0 = none */
	int64		idle_leak_reported_period;	/* checkouts + 1 when idle, 0 = none */
	int64		dry_run_reported_checkout;	/* checkouts when reported */
	uint8		dry_run_reported_reason;
	bool		signalled;
} PgdSlotMemo;

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
	uint64		serial;			/* the session, not just its pid */
	int64		checkouts;		/* a new checkout ends the idle period */
	TimestampTz state_change;	/* a new statement in the transaction, too */
} PgdCandidate;

static PgdSlotMemo *memo = NULL;
static PgdCandidate *candidates = NULL;

/*
 * One pool instance as the idle-leak rule sees it in one scan; see "Idle
 * leaks".  Sessions group by their pool and their declared client_instance
 * (one application process's pool): an idle connection of one process
 * cannot serve another's requests.  An open-addressing table of twice the
 * registry size, keyed by (pool index, instance hash); 'scan' says which
 * scan filled an entry, so the table needs no clearing.
 */
typedef struct PgdPoolScan
{
	uint64		scan;
	int			pool_index;
	uint32		instance_hash;
	int			sessions;
	int			busy;
	int			long_busy;		/* checked out for at least their T */
	int			recent_idle;	/* idle for less than their T */
} PgdPoolScan;

static PgdPoolScan *pool_scan = NULL;
static uint32 pool_scan_mask = 0;
static uint64 scan_number = 0;

/* Sessions idle for at least their T in this scan: slot numbers. */
static int *idle_long = NULL;
static int	nidle_long = 0;

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
		case PGD_WORKER_WRITE_BLOCKED:
			return "write-blocked";
		case PGD_WORKER_DATABASE_MISSING:
			return "database-missing";
		case PGD_WORKER_DATABASE_CLOSED:
			return "database-not-accepting-connections";
		case PGD_WORKER_STOPPING:
			return "stopping";
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

/* Register one of the two workers; both run in this library. */
static void
pgd_register_bgworker(const char *function_name, const char *name)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	/* Each picks its database itself: the enforcer none, the writer one. */
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/*
	 * ConsistentState: also on hot standbys, where sessions need enforcing
	 * as much, and where the writer retires queued events it cannot write.
	 */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "pooldiag", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function_name, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, name, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* The enforcer (this file) and the event writer (writer.c). */
void
pgd_register_workers(void)
{
	pgd_register_bgworker("pgd_enforcer_main", "pooldiag enforcer");
	pgd_register_bgworker("pgd_writer_main", "pooldiag writer");
}

/* Wake the enforcer now, e.g. after pooldiag.drain() marked sessions. */
void
pgd_worker_wake(void)
{
	Latch	   *latch;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	latch = pgd_worker_shared->enforcer_latch;
	SpinLockRelease(&pgd_worker_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
pgd_enforcer_set_state(PgdWorkerState state)
{
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->enforcer_state = state;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

static void
pgd_enforcer_exit(int code, Datum arg)
{
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->enforcer_latch = NULL;
	pgd_worker_shared->enforcer_pid = 0;
	pgd_worker_shared->enforcer_state = PGD_WORKER_STOPPED;
	SpinLockRelease(&pgd_worker_shared->mutex);
}

/*
 * How late the enforcer acted on a deadline: from the deadline to the
 * moment it signalled the session (or recorded would_terminate).  This is
 * what pooldiag.health shows as lateness; it includes any wait for the rate
 * limit.
 */
static void
pgd_record_lateness(TimestampTz deadline, TimestampTz acted_at)
{
	int64		late = acted_at > deadline ? acted_at - deadline : 0;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->lateness_known = true;
	pgd_worker_shared->last_lateness_us = late;
	if (late > pgd_worker_shared->max_lateness_us)
		pgd_worker_shared->max_lateness_us = late;
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

	if (m->serial != snap->slot.serial)
	{
		memset(m, 0, sizeof(PgdSlotMemo));
		m->serial = snap->slot.serial;
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
	pgd_pool_count_leak(snap->slot.pool_index, snap->slot.pool_generation, false);
}

/* The pool instance of the idle-leak rule for a session, or NULL. */
static PgdPoolScan *
pgd_pool_scan_of(const PgdSessionSnapshot *snap)
{
	int			index = snap->slot.pool_index;
	uint32		h;

	/* Not in a pool, or in the "other" row, which mixes pools. */
	if (index < 0 || index >= pgd_pools_capacity())
		return NULL;
	h = ((uint32) index * 0x9E3779B1) ^ snap->slot.instance_hash;
	for (;;)
	{
		PgdPoolScan *ps = &pool_scan[h & pool_scan_mask];

		if (ps->scan != scan_number)
		{
			memset(ps, 0, sizeof(PgdPoolScan));
			ps->scan = scan_number;
			ps->pool_index = index;
			ps->instance_hash = snap->slot.instance_hash;
			return ps;
		}
		if (ps->pool_index == index && ps->instance_hash == snap->slot.instance_hash)
			return ps;
		h++;
	}
}

/* Count one session of this scan for the idle-leak rule. */
static void
pgd_idle_leak_note(int index, const PgdSessionSnapshot *snap,
				   const PgdVerdict *verdict, TimestampTz now)
{
	PgdPoolScan *ps = pgd_pool_scan_of(snap);
	int64		threshold_us = (int64) verdict->effective_ms[PGD_LEAK_THRESHOLD] * 1000;

	if (ps == NULL)
		return;
	ps->sessions++;
	if (snap->slot.checkout_start != 0)
	{
		ps->busy++;
		if (threshold_us > 0 && now - snap->slot.checkout_start >= threshold_us)
			ps->long_busy++;
	}
	else if (threshold_us > 0 && now - snap->slot.last_checkin >= threshold_us)
		idle_long[nidle_long++] = index;
	else
		ps->recent_idle++;
}

/* Does the idle-leak rule hold for this session's pool in this scan? */
static bool
pgd_idle_leak_pool_busy(const PgdSessionSnapshot *snap, int *busy)
{
	PgdPoolScan *ps = pgd_pool_scan_of(snap);

	if (ps == NULL)
		return false;
	*busy = ps->busy;
	return ps->sessions >= 2 && ps->recent_idle == 0 && ps->long_busy >= 1;
}

static void
pgd_record_idle_leak(const PgdSessionSnapshot *snap, int pool_busy,
					 TimestampTz now)
{
	PgdEvent	event;

	pgd_event_from_snapshot(&event, snap, PGD_EV_LEAK_SUSPECT,
							PGD_R_IDLE_WHILE_POOL_BUSY, now);
	event.detail[PGD_D_IDLE_LEAK_SINCE] = snap->slot.last_checkin;
	event.detail[PGD_D_IDLE_LEAK_IDLE_US] = now - snap->slot.last_checkin;
	event.detail[PGD_D_IDLE_LEAK_THRESHOLD_MS] =
		pgd_effective_ms(&snap->slot, PGD_LEAK_THRESHOLD);
	event.detail[PGD_D_IDLE_LEAK_POOL_BUSY] = pool_busy;
	pgd_ring_append(&event);

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->leak_suspects++;
	SpinLockRelease(&pgd_worker_shared->mutex);
	pgd_pool_count_leak(snap->slot.pool_index, snap->slot.pool_generation, true);
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
 * Does the session in 'current' still match what the scan decided on?  The
 * decision was taken in the scan, possibly a while ago (the rate limit, a
 * catalog look-up waiting for a lock), so before closing, the slot is read
 * again and the session is closed only if it is the same session (its
 * serial), it has not started a checkout since (checkouts), for the
 * idle-in-transaction timeout it has not run a statement since
 * (state_change), and it is still due in its current state.
 */
static bool
pgd_still_as_decided(const PgdCandidate *cand, const PgdSessionSnapshot *current)
{
	return current->slot.serial == cand->serial &&
		current->slot.checkouts == cand->checkouts &&
		(cand->reason != PGD_R_IDLE_IN_TRANSACTION_TIMEOUT ||
		 current->state_change == cand->state_change) &&
		pgd_state_fits_reason(current, cand->reason);
}

/*
 * Close one due session, or record would_terminate in a dry run.  Returns
 * true if it used up a termination (so the rate limit applies).
 */
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
		PgdCloseRequest request;
		PgdCloseText text;

		if (!pgd_registry_read(cand->index, &current) ||
			!pgd_still_as_decided(cand, &current))
			return false;
		now = GetCurrentTimestamp();

		/*
		 * Tell the session why before it is signalled: its FATAL carries the
		 * reason to the client (pgd_explain_close() in hooks.c).
		 */
		request.reason = cand->reason;
		request.idle_us = cand->reason == PGD_R_IDLE_IN_TRANSACTION_TIMEOUT ?
			now - current.state_change : now - current.slot.last_checkin;
		request.age_us = now - current.slot.backend_start;
		request.limit_ms = pgd_reason_limit_ms(&verdict, cand->reason);
		request.lifetime_cut = current.slot.lifetime_cut;
		pgd_registry_post_close_request(cand->index, current.slot.serial,
										request.reason, request.idle_us,
										request.age_us, request.limit_ms,
										request.lifetime_cut);

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

		/* One line per close, with the numbers that justified it. */
		if (pgd_close_explanation(&request, &text))
			ereport(LOG,
					(errmsg("pooldiag closed the session of process %d for %s",
							current.slot.pid, pgd_reason_name(cand->reason)),
					 errdetail("Role \"%s\", database \"%s\", application \"%s\".  %s",
							   NameStr(event.usename), NameStr(event.datname),
							   event.application_name, text.detail)));
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
	pgd_record_lateness(verdict.terminate_at, now);
	return true;
}

/*
 * One enforcement scan.  Returns the next time something becomes due
 * (0 if nothing is known), for the sleep.
 */
/*
 * Would the session be due if only pooldiag's own accounting counted?  For a
 * session whose core state is "disabled" (track_activities = off), which
 * is never closed, this says whether a deadline has passed all the same.
 */
static bool
pgd_due_by_own_accounting(const PgdSessionSnapshot *snap, TimestampTz now)
{
	PgdSessionSnapshot own = *snap;
	PgdVerdict	verdict;

	own.has_status = false;
	pgd_policy_evaluate(&own, NULL, now, &verdict);
	return verdict.due;
}

/*
 * Could this session, checked in by its slot, be in a checkout that only
 * core's state shows (a statement in parse analysis or planning) and that
 * is already held for leak_threshold?  Such a checkout started after the
 * session's last checkin, so not if that was less than leak_threshold ago:
 * sessions of a busy pool check in all the time and are not read.
 */
static bool
pgd_may_hide_leak(const PgdSlot *slot, TimestampTz now)
{
	int			leak_ms = pgd_effective_ms(slot, PGD_LEAK_THRESHOLD);

	return leak_ms > 0 && slot->last_checkin + (int64) leak_ms * 1000 <= now;
}

static TimestampTz pgd_act_on_due_sessions(int ncandidates, bool need_leak_pass,
											TimestampTz now, TimestampTz next_wake);

/*
 * Sessions with track_activities = off that are past a deadline by our own
 * accounting are never closed (core cannot tell busy from idle for them);
 * say so in the log at most once a minute, and in pooldiag.health.
 */
static void
pgd_report_untracked(int nuntracked, TimestampTz now)
{
	static TimestampTz reported_at = 0;

	if (nuntracked == 0 || now < reported_at + 60 * USECS_PER_SEC)
		return;
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg_plural("pooldiag cannot enforce its policy for %d session because \"track_activities\" is off for it",
						   "pooldiag cannot enforce its policy for %d sessions because \"track_activities\" is off for them",
						   nuntracked, nuntracked),
			 errdetail("Without \"track_activities\" the server cannot tell a session that waits in a statement from an idle one, so pooldiag never closes such sessions."),
			 errhint("Turn \"track_activities\" on for the roles and databases pooldiag should enforce.")));
	reported_at = now;
}

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
	int			nuntracked = 0;
	volatile TimestampTz wake;

#define WAKE_AT(t) \
	do { if ((t) > now && (next_wake == 0 || (t) < next_wake)) next_wake = (t); } while (0)

	scan_number++;
	nidle_long = 0;
	for (int i = 0; i < nslots; i++)
	{
		PgdVerdict	verdict;

		/*
		 * Most sessions need only our own slot.  Core's status is read for
		 * a checked-out session that may be idle in a transaction, for one
		 * watched for leaks, and for one that is due, to see its state and
		 * application_name.
		 */
		if (!pgd_registry_read_slot(i, &snap))
			continue;
		pgd_forget_if_new_session(i, &snap);
		if (memo[i].signalled)
			continue;
		/*
		 * A checked-out session may be idle in a transaction, or idle
		 * altogether if core says so (registry.c reconciles the two), so
		 * its deadline needs core's state.  So does any session watched for
		 * leaks: a statement waiting in parse analysis or planning is a
		 * checkout that only core's state shows (registry.c), and it can
		 * be held past leak_threshold before it reaches our hooks, or end
		 * in an error without ever reaching them.
		 */
		if ((snap.slot.checkout_start != 0 ||
			 pgd_may_hide_leak(&snap.slot, now)) &&
			!pgd_registry_read_status(&snap))
			continue;

		pgd_policy_evaluate(&snap, NULL, now, &verdict);
		if (verdict.due && !snap.has_status)
		{
			if (!pgd_registry_read_status(&snap))
				continue;
			pgd_policy_evaluate(&snap, NULL, now, &verdict);
		}
		/* Due by our accounting, but core cannot confirm it is idle. */
		if (verdict.exemption == PGD_EXEMPT_UNTRACKED &&
			pgd_due_by_own_accounting(&snap, now))
			nuntracked++;

		if (verdict.leak_at != 0)
		{
			if (verdict.leak_at <= now &&
				memo[i].leak_reported_checkout != snap.slot.checkouts)
				need_transaction = true;
			else
				WAKE_AT(verdict.leak_at);
		}
		pgd_idle_leak_note(i, &snap, &verdict, now);
		/*
		 * Exemptions by role and by superuser need the catalogs; they are
		 * decided in pgd_close_session().
		 */
		if (verdict.due && verdict.exemption == PGD_NOT_EXEMPT)
		{
			PgdCandidate *cand = &candidates[ncandidates++];

			cand->index = i;
			cand->deadline = verdict.terminate_at;
			cand->reason = verdict.terminate_reason;
			cand->serial = snap.slot.serial;
			cand->checkouts = snap.slot.checkouts;
			cand->state_change = snap.state_change;
		}
		else if (verdict.terminate_at != 0)
			WAKE_AT(verdict.terminate_at);
	}

	/* Idle leaks: only now are the pools' counts complete. */
	for (int n = 0; n < nidle_long; n++)
	{
		int			i = idle_long[n];
		int			busy;

		if (!pgd_registry_read_slot(i, &snap) ||
			memo[i].idle_leak_reported_period == snap.slot.checkouts + 1 ||
			!pgd_idle_leak_pool_busy(&snap, &busy))
			idle_long[n] = -1;
		else
			need_transaction = true;
	}

	cpu_ns = pgd_thread_cpu_ns() - cpu_start;
	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->scans++;
	pgd_worker_shared->scan_slots += nslots;
	pgd_worker_shared->scan_cpu_ns += cpu_ns;
	pgd_worker_shared->last_scan = now;
	pgd_worker_shared->untracked_sessions = nuntracked;
	SpinLockRelease(&pgd_worker_shared->mutex);
	pgd_report_untracked(nuntracked, now);

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

		/* Idle leaks, once core confirms the session is still idle. */
		for (int n = 0; n < nidle_long; n++)
		{
			int			i = idle_long[n];
			int			busy;

			if (i < 0 || !pgd_registry_read(i, &snap) ||
				snap.slot.checkout_start != 0 || snap.state != STATE_IDLE ||
				!pgd_idle_leak_pool_busy(&snap, &busy))
				continue;
			pgd_forget_if_new_session(i, &snap);
			if (memo[i].idle_leak_reported_period == snap.slot.checkouts + 1)
				continue;
			memo[i].idle_leak_reported_period = snap.slot.checkouts + 1;
			pgd_record_idle_leak(&snap, busy, now);
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
 * Answer the writer's question whether pooldiag.database can be connected
 * to, if it asked one since the last answer.  The look-up needs pg_database,
 * a shared catalog; the writer cannot read it before it is connected, and
 * connecting to a database that does not exist is FATAL.
 */
static void
pgd_answer_database_check(void)
{
	uint32		requested;
	volatile PgdDatabaseStatus status = PGD_DATABASE_UNKNOWN;

	SpinLockAcquire(&pgd_worker_shared->mutex);
	requested = pgd_worker_shared->database_check_requested;
	if (requested == pgd_worker_shared->database_check_answered)
		requested = 0;
	SpinLockRelease(&pgd_worker_shared->mutex);
	if (requested == 0)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		Relation	rel;
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tuple;

		/*
		 * As GetDatabaseTuple() in postinit.c: in a process connected to no
		 * database, the indexes of shared catalogs can be opened only once
		 * the shared relcache init file was loaded (get_database_oid()
		 * would fail with "cannot read pg_class without having selected a
		 * database" when it was not); a heap scan of the small pg_database
		 * always works.  The syscaches the scan uses, AUTHOID and
		 * DATABASEOID, fall back to heap scans by themselves.
		 */
		ScanKeyInit(&key, Anum_pg_database_datname,
					BTEqualStrategyNumber, F_NAMEEQ,
					CStringGetDatum(pgd_database));
		rel = table_open(DatabaseRelationId, AccessShareLock);
		scan = systable_beginscan(rel, DatabaseNameIndexId,
								  criticalSharedRelcachesBuilt, NULL, 1, &key);
		tuple = systable_getnext(scan);
		if (!HeapTupleIsValid(tuple))
			status = PGD_DATABASE_MISSING;
		else if (((Form_pg_database) GETSTRUCT(tuple))->datallowconn)
			status = PGD_DATABASE_OK;
		else
			status = PGD_DATABASE_CLOSED;
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* The writer then tries to connect, and learns it from that. */
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		status = PGD_DATABASE_UNKNOWN;
	}
	PG_END_TRY();

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->database_status = status;
	pgd_worker_shared->database_check_answered = requested;
	SpinLockRelease(&pgd_worker_shared->mutex);
	pgd_ring_wake_consumer();
}

static void
pgd_enforcer_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

void
pgd_enforcer_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&pgd_worker_shared->mutex);
	pgd_worker_shared->enforcer_pid = MyProcPid;
	pgd_worker_shared->enforcer_state = PGD_WORKER_STARTING;
	pgd_worker_shared->enforcer_latch = MyLatch;
	SpinLockRelease(&pgd_worker_shared->mutex);
	before_shmem_exit(pgd_enforcer_exit, (Datum) 0);

	/*
	 * No database: the shared catalogs (pg_authid, pg_database) are all the
	 * look-ups need, and enforcement must not depend on pooldiag.database.
	 */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_activity(STATE_IDLE, NULL);

	memo = MemoryContextAllocZero(TopMemoryContext,
								  sizeof(PgdSlotMemo) * pgd_registry_size());
	candidates = MemoryContextAlloc(TopMemoryContext,
									sizeof(PgdCandidate) * pgd_registry_size());
	idle_long = MemoryContextAlloc(TopMemoryContext,
								   sizeof(int) * pgd_registry_size());
	/* At most one entry per session: never more than half full. */
	pool_scan_mask = pg_nextpower2_32(Max(2 * pgd_registry_size(), 16)) - 1;
	pool_scan = MemoryContextAllocZero(TopMemoryContext,
									   sizeof(PgdPoolScan) * (pool_scan_mask + 1));
	pgd_enforcer_set_state(PGD_WORKER_RUNNING);

	while (!ShutdownRequestPending)
	{
		TimestampTz now;
		TimestampTz next_wake;
		long		timeout_ms;

		pgd_enforcer_process_interrupts();

		next_wake = pgd_enforce();
		pgd_capacity_check_saturation(GetCurrentTimestamp());
		pgd_answer_database_check();

		now = GetCurrentTimestamp();
		timeout_ms = pgd_naptime_ms;
		if (next_wake > now)
			timeout_ms = Min(timeout_ms, (next_wake - now + 999) / 1000);
		else if (next_wake != 0)
			timeout_ms = 1;

		pgstat_report_stat(true);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/* Code 1: see the header comment. */
	pgd_enforcer_set_state(PGD_WORKER_STOPPING);
	proc_exit(1);
}
