/*-------------------------------------------------------------------------
 *
 * pooldiag.c
 *		Loading, settings and shared-memory set-up of pooldiag.
 *
 * pooldiag works only from shared_preload_libraries: its registry, event
 * ring and worker live in shared memory sized at postmaster start.  Loaded
 * any other way, _PG_init() does nothing and every SQL function reports how
 * to load it (pgd_require_loaded()).
 *
 * Shared memory is requested in shmem_request_hook and carved out in
 * shmem_startup_hook under AddinShmemInitLock, one named struct per module;
 * each module's header comment states its own locking rules.
 *
 * Two background workers are registered here: the enforcer (worker.c) and
 * the event writer (writer.c).
 *
 * Events lost to a crash.  When a process dies abnormally (SIGKILL from the
 * OOM killer, a crash), the postmaster kills every other process and
 * re-creates shared memory: PostgreSQL's rule for any process attached to
 * it, pooldiag's workers included.  What was still queued in the event ring
 * is then lost.  The postmaster counts it: pgd_shmem_startup() registers,
 * in the postmaster only, an on_shmem_exit callback (pgd_count_lost_events)
 * that reads the ring's head and tail and adds what was queued to a
 * postmaster-local total; the next pgd_shmem_startup() publishes that total
 * in the new shared memory, as pooldiag.health.events_lost_in_crash.  This
 * relies on the order in PostgreSQL's postmaster.c (checked in 15):
 * PostmasterStateMachine() calls shmem_exit(1) and then reset_shared() once
 * all children of a crashed server are gone; shmem_exit() runs on_shmem_exit
 * callbacks last-registered first, and the callbacks that detach and delete
 * the segment were registered by PGSharedMemoryCreate() before
 * CreateSharedMemoryAndSemaphores() called shmem_startup_hook, so ours runs
 * while the old segment is still mapped.  shmem_exit() empties the callback
 * list, so each startup registers again.  The same callback runs when the
 * postmaster exits (proc_exit()), and then logs what a stopping server lost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "capacity.h"
#include "declared.h"
#include "event_ring.h"
#include "fold.h"
#include "policy.h"
#include "pooldiag.h"
#include "pools.h"
#include "registry.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

bool		pgd_loaded = false;

/* Settings: see README.md for what each one does. */
int			pgd_event_buffer_size = 32768;
char	   *pgd_database = NULL;
int			pgd_flush_interval_ms = 1000;
int			pgd_log_checkouts = PGD_LOG_CHECKOUTS_SLOW;
int			pgd_log_min_hold_ms = 1000;
int			pgd_events_retention_s = 7 * 24 * 3600;
int			pgd_rejection_fold_window_ms = 60 * 1000;
int			pgd_naptime_ms = 1000;
int			pgd_idle_timeout_ms = 0;
int			pgd_max_lifetime_ms = 0;
double		pgd_lifetime_jitter = 0.1;
int			pgd_recycle_min_idle_ms = 1000;
int			pgd_idle_in_transaction_timeout_ms = 0;
int			pgd_leak_threshold_ms = 60 * 1000;
int			pgd_max_terminations_per_second = 10;
bool		pgd_dry_run = false;
bool		pgd_exempt_superusers = true;
char	   *pgd_exempt_roles = NULL;
char	   *pgd_exempt_applications = NULL;

static const struct config_enum_entry log_checkouts_options[] = {
	{"none", PGD_LOG_CHECKOUTS_NONE, false},
	{"slow", PGD_LOG_CHECKOUTS_SLOW, false},
	{"all", PGD_LOG_CHECKOUTS_ALL, false},
	{NULL, 0, false}
};

/*
 * Postmaster only: events lost in crash restarts since the postmaster
 * started (it outlives shared memory).
 */
static uint64 pgd_events_lost_in_crash = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void pgd_shmem_request(void);
static void pgd_shmem_startup(void);
static void pgd_count_lost_events(int code, Datum arg);
static void pgd_define_settings(void);

void
_PG_init(void)
{
	/*
	 * Without shared_preload_libraries there is no shared memory to track
	 * anything in; stay inert and let the SQL functions explain.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	pgd_define_settings();
	pgd_pools_init_buckets();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pgd_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pgd_shmem_startup;

	pgd_install_hooks();
	pgd_register_workers();

	pgd_loaded = true;
}

/*
 * Raise a clear error unless the library was preloaded.  Every SQL-callable
 * function calls this first.
 */
void
pgd_require_loaded(void)
{
	if (!pgd_loaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pooldiag must be loaded via \"shared_preload_libraries\""),
				 errhint("Add pooldiag to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}

static void
pgd_shmem_request(void)
{
	Size		size;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	size = pgd_registry_shmem_size();
	size = add_size(size, pgd_ring_shmem_size());
	size = add_size(size, pgd_worker_shmem_size());
	size = add_size(size, pgd_policy_shmem_size());
	size = add_size(size, pgd_fold_shmem_size());
	size = add_size(size, pgd_capacity_shmem_size());
	size = add_size(size, pgd_pools_shmem_size());
	RequestAddinShmemSpace(size);
	pgd_pools_request_locks();
}

static void
pgd_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pgd_registry_shmem_init();
	pgd_ring_shmem_init();
	pgd_worker_shmem_init();
	pgd_policy_shmem_init();
	pgd_fold_shmem_init();
	pgd_capacity_shmem_init();
	pgd_pools_shmem_init();
	LWLockRelease(AddinShmemInitLock);

	/*
	 * In the postmaster (and a single-user backend), which creates shared
	 * memory: see the header comment.  Processes under the postmaster that
	 * run this hook (EXEC_BACKEND) only attach.
	 */
	if (!IsUnderPostmaster)
	{
		pgd_worker_shared->events_lost_in_crash = pgd_events_lost_in_crash;
		on_shmem_exit(pgd_count_lost_events, (Datum) 0);
	}
}

/*
 * on_shmem_exit callback of the postmaster: count the events still queued
 * in the ring, which are lost with the shared memory.  After a crash the
 * postmaster calls shmem_exit() directly before re-creating shared memory;
 * at its own exit it goes through proc_exit().  Only atomics are read, and
 * the result is clamped to the ring's size, so a ring that the crashed
 * process scribbled over cannot make the postmaster misbehave.
 */
static void
pgd_count_lost_events(int code, Datum arg)
{
	PgdRingCounters ring;
	uint64		lost;

	pgd_ring_counters(&ring);
	lost = Min(ring.queued, (uint64) pgd_event_buffer_size);
	if (lost == 0)
		return;

	if (proc_exit_inprogress)
		ereport(LOG,
				(errmsg("pooldiag lost %llu events that were still queued when the server stopped",
						(unsigned long long) lost)));
	else
	{
		pgd_events_lost_in_crash += lost;
		ereport(LOG,
				(errmsg("pooldiag lost %llu events that were still queued when the server reinitialized shared memory after a crash",
						(unsigned long long) lost),
				 errdetail("pooldiag.health shows %llu events lost this way since the server started.",
						   (unsigned long long) pgd_events_lost_in_crash)));
	}
}

static void
pgd_define_settings(void)
{
	/* The event pipeline. */
	DefineCustomIntVariable("pooldiag.event_buffer_size",
							"Number of events the shared-memory ring holds before new ones are dropped.",
							NULL,
							&pgd_event_buffer_size,
							32768, 64, 16 * 1024 * 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pooldiag.database",
							   "Database the pooldiag writer connects to and writes pooldiag.events in.",
							   NULL,
							   &pgd_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.flush_interval",
							"Longest time queued events wait before the writer writes them.",
							NULL,
							&pgd_flush_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("pooldiag.log_checkouts",
							 "Which checkouts are recorded as events: none, slow ones, or all.",
							 NULL,
							 &pgd_log_checkouts,
							 PGD_LOG_CHECKOUTS_SLOW,
							 log_checkouts_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.log_min_hold",
							"Hold time from which a checkin is recorded when log_checkouts is \"slow\".",
							NULL,
							&pgd_log_min_hold_ms,
							1000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.events_retention",
							"Age after which the writer deletes rows of pooldiag.events; 0 keeps them.",
							NULL,
							&pgd_events_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.rejection_fold_window",
							"Time within which repeats of a rejected connection attempt are counted in one row instead of written one by one; 0 writes each.",
							NULL,
							&pgd_rejection_fold_window_ms,
							60 * 1000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pooldiag.max_pools",
							"Number of pools whose totals pooldiag.pools keeps; sessions of further pools are counted in one row.",
							NULL,
							&pgd_max_pools,
							1000, 1, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	/* Enforcement. */
	DefineCustomIntVariable("pooldiag.naptime",
							"Longest time the enforcer sleeps between two scans of the sessions.",
							NULL,
							&pgd_naptime_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.idle_timeout",
							"Closes sessions idle outside a transaction for longer than this; 0 disables.",
							NULL,
							&pgd_idle_timeout_ms,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							pgd_check_policy_setting, pgd_assign_idle_timeout, NULL);
	DefineCustomIntVariable("pooldiag.max_lifetime",
							"Closes idle sessions older than this (their recycle age); 0 disables.",
							NULL,
							&pgd_max_lifetime_ms,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							pgd_check_policy_setting, pgd_assign_max_lifetime, NULL);
	DefineCustomRealVariable("pooldiag.lifetime_jitter",
							 "Largest fraction by which a session's lifetime is randomly shortened.",
							 NULL,
							 &pgd_lifetime_jitter,
							 0.1, 0.0, 0.5,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.recycle_min_idle",
							"How long a session past its lifetime must have been idle before it is closed.",
							NULL,
							&pgd_recycle_min_idle_ms,
							1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pooldiag.idle_in_transaction_timeout",
							"Closes sessions idle inside a transaction for longer than this; 0 disables.",
							NULL,
							&pgd_idle_in_transaction_timeout_ms,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							pgd_check_policy_setting, pgd_assign_idle_in_transaction_timeout, NULL);
	DefineCustomIntVariable("pooldiag.leak_threshold",
							"Hold time from which a checkout is recorded as a leak suspect; 0 disables.",
							NULL,
							&pgd_leak_threshold_ms,
							60 * 1000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							pgd_check_policy_setting, pgd_assign_leak_threshold, NULL);
	DefineCustomIntVariable("pooldiag.max_terminations_per_second",
							"Most sessions the enforcer closes per second; 0 means no limit.",
							NULL,
							&pgd_max_terminations_per_second,
							10, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomRealVariable("pooldiag.saturation_warning",
							 "Fraction of the connection slots in use from which a saturation event is recorded; 0 disables.",
							 NULL,
							 &pgd_saturation_warning,
							 0.9, 0.0, 1.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("pooldiag.dry_run",
							 "Records would_terminate events instead of closing sessions.",
							 NULL,
							 &pgd_dry_run,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("pooldiag.exempt_superusers",
							 "Never closes sessions of superusers.",
							 NULL,
							 &pgd_exempt_superusers,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("pooldiag.exempt_roles",
							   "Comma-separated role names whose sessions are never closed.",
							   NULL,
							   &pgd_exempt_roles,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   pgd_check_name_list, pgd_assign_exempt_roles, NULL);
	DefineCustomStringVariable("pooldiag.exempt_applications",
							   "Comma-separated application_name patterns (* matches anything) never closed.",
							   NULL,
							   &pgd_exempt_applications,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   pgd_check_pattern_list, pgd_assign_exempt_applications, NULL);

	/* What clients declare about their pools (any role may set these). */
	pgd_define_declared_settings();

	MarkGUCPrefixReserved("pooldiag");
}
