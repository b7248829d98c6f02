/*-------------------------------------------------------------------------
 *
 * worker.h
 *		Shared state of pooldiag's two background workers: the enforcer
 *		(worker.c) and the event writer (writer.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_WORKER_H
#define POOLDIAG_WORKER_H

#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

/* What a worker is doing; names in pgd_worker_state_name(). */
typedef enum PgdWorkerState
{
	PGD_WORKER_STOPPED = 0,
	PGD_WORKER_STARTING,
	PGD_WORKER_RUNNING,
	PGD_WORKER_WAITING_FOR_EXTENSION,	/* writer */
	PGD_WORKER_WRITE_FAILED,	/* writer */
	PGD_WORKER_STANDBY,			/* writer */
	PGD_WORKER_WRITE_BLOCKED,	/* writer: a lock on the table timed out */
	PGD_WORKER_DATABASE_MISSING,	/* writer: pooldiag.database is absent */
	PGD_WORKER_DATABASE_CLOSED, /* writer: it does not allow connections */
	PGD_WORKER_STOPPING,
	PGD_WORKER_NEEDS_UPDATE,	/* writer: SQL of an older version */
	PGD_WORKER_UNTRUSTED_TABLE	/* writer: writing could run another role's code */
} PgdWorkerState;

/*
 * What the enforcer found out about pooldiag.database for the writer, which
 * cannot look at pg_database before it has connected to some database (and
 * connecting to one that does not exist is FATAL).
 */
typedef enum PgdDatabaseStatus
{
	PGD_DATABASE_UNKNOWN = 0,
	PGD_DATABASE_OK,
	PGD_DATABASE_MISSING,
	PGD_DATABASE_CLOSED			/* datallowconn is false */
} PgdDatabaseStatus;

/*
 * Shared worker state.  'mutex' protects every field.  Each field has one
 * writer: the enforcer writes the enforcer_* fields, the enforcement
 * statistics and database_status/database_check_answered; the writer writes
 * the writer_* fields, the event counters and database_check_requested;
 * events_lost_in_crash is set by the postmaster when it (re)creates shared
 * memory, before any worker runs.  (The writer's latch is published through
 * the event ring, whose consumer it is.)
 */
typedef struct PgdWorkerShared
{
	slock_t		mutex;

	/* The enforcer. */
	int			enforcer_pid;	/* 0 while it is not running */
	PgdWorkerState enforcer_state;
	Latch	   *enforcer_latch; /* set by pooldiag.drain() and the writer */
	TimestampTz last_scan;
	bool		lateness_known; /* has it acted on any deadline yet? */
	int64		last_lateness_us;	/* last close: its decision minus deadline */
	int64		max_lateness_us;	/* largest since the server started */
	uint64		scans;
	uint64		scan_slots;		/* slots looked at, summed over scans */
	uint64		scan_cpu_ns;	/* CPU time spent scanning, summed */
	uint64		terminations;
	uint64		would_terminations;
	uint64		leak_suspects;
	int			untracked_sessions; /* track_activities off, with a policy */

	/* The writer. */
	int			writer_pid;		/* 0 while it is not running */
	PgdWorkerState writer_state;
	TimestampTz last_flush;		/* last successful write of events */
	uint64		events_written; /* counted once their transaction committed */

	/*
	 * The writer asks whether pooldiag.database can be connected to by
	 * bumping database_check_requested and setting the enforcer's latch; the
	 * enforcer looks it up and copies the request number into
	 * database_check_answered.
	 */
	uint32		database_check_requested;
	uint32		database_check_answered;
	PgdDatabaseStatus database_status;

	/* Events still queued when shared memory was reset after a crash. */
	uint64		events_lost_in_crash;
} PgdWorkerShared;

extern PgdWorkerShared *pgd_worker_shared;

extern const char *pgd_worker_state_name(PgdWorkerState state);
extern void pgd_worker_wake(void);

/* flush.c */
typedef enum PgdFlushResult
{
	PGD_FLUSH_OK,
	PGD_FLUSH_NO_EXTENSION,
	PGD_FLUSH_BLOCKED,			/* lock_timeout: the table is locked */
	PGD_FLUSH_FAILED
} PgdFlushResult;

extern PgdFlushResult pgd_flush_events(uint64 *nwritten);
extern const char *pgd_flush_error(void);
extern void pgd_flush_reset(void);
extern void pgd_expire_events(void);

#endif							/* POOLDIAG_WORKER_H */
