/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The pooldiag background worker's shared state.  See worker.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_WORKER_H
#define POOLDIAG_WORKER_H

#include "storage/spin.h"
#include "utils/timestamp.h"

typedef enum PgdWorkerState
{
	PGD_WORKER_STOPPED = 0,
	PGD_WORKER_STARTING,
	PGD_WORKER_RUNNING,
	PGD_WORKER_WAITING_FOR_EXTENSION,
	PGD_WORKER_WRITE_FAILED,
	PGD_WORKER_STANDBY,
	PGD_WORKER_NEEDS_UPDATE,	/* SQL of an older version: ALTER EXTENSION */
	PGD_WORKER_UNTRUSTED_TABLE	/* writing could run another role's code */
} PgdWorkerState;

/*
 * Shared worker state.  'mutex' protects every field; the worker is the only
 * writer.  (Its latch is published through the event ring.)
 */
typedef struct PgdWorkerShared
{
	slock_t		mutex;
	int			pid;
	PgdWorkerState state;
	TimestampTz last_flush;		/* last successful write of events */
	uint64		events_written; /* counted once their transaction committed */
	/* enforcement statistics */
	uint64		scans;
	uint64		scan_slots;		/* slots looked at, summed over scans */
	uint64		scan_cpu_ns;	/* CPU time spent scanning, summed */
	TimestampTz last_scan;
	uint64		terminations;
	uint64		would_terminations;
	uint64		leak_suspects;
} PgdWorkerShared;

extern PgdWorkerShared *pgd_worker_shared;

extern const char *pgd_worker_state_name(PgdWorkerState state);
extern void pgd_worker_wake(void);

/* flush.c */
typedef enum PgdFlushResult
{
	PGD_FLUSH_OK,
	PGD_FLUSH_NO_EXTENSION,
	PGD_FLUSH_FAILED
} PgdFlushResult;

extern PgdFlushResult pgd_flush_events(int *nwritten);
extern void pgd_flush_reset(void);
extern void pgd_expire_events(void);

#endif							/* POOLDIAG_WORKER_H */
