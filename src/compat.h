/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every difference between the PostgreSQL major versions pooldiag
 *		builds against lives here, so that the logic in the other files
 *		reads the same on each version.
 *
 * pooldiag is written for PostgreSQL 15.  The branches for 16-18 name the
 * upstream changes that are known to affect us; they are kept next to the
 * 15 code so that a port only has to fill them in and run the tests.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_COMPAT_H
#define POOLDIAG_COMPAT_H

#include "postgres.h"

#include "miscadmin.h"
#include "executor/executor.h"
#if PG_VERSION_NUM < 170000
#include "storage/backendid.h"
#endif
#include "utils/backend_status.h"

#if PG_VERSION_NUM < 150000
#error "pooldiag requires PostgreSQL 15 or later"
#endif

/*
 * Registry slot of the current backend.  Slots are keyed by backend id
 * (1-based in 15 and 16); 17 replaced backend ids with 0-based proc numbers.
 */
#if PG_VERSION_NUM >= 170000
#define PGD_MY_SLOT_INDEX()		(MyProcNumber)
#define PGD_SLOT_INDEX_VALID(i)	((i) >= 0 && (i) < MaxBackends)
#else
#define PGD_MY_SLOT_INDEX()		(MyBackendId - 1)
#define PGD_SLOT_INDEX_VALID(i)	((i) >= 0 && (i) < MaxBackends)
#endif

/*
 * ExecutorStart_hook returns bool from 18 on (the plan may have been
 * invalidated while it was being locked).
 */
#if PG_VERSION_NUM >= 180000
#define PGD_EXECUTOR_START_RETURN	bool
#define PGD_EXECUTOR_START_RESULT(x)	return (x)
#else
#define PGD_EXECUTOR_START_RETURN	void
#define PGD_EXECUTOR_START_RESULT(x)	(x)
#endif

/*
 * 18 added STATE_STARTING before the other states, which shifts their
 * numbers.  pooldiag never stores BackendState values; it maps them to the
 * pg_stat_activity words through this switch-friendly helper.
 */
static inline const char *
pgd_backend_state_name(BackendState state)
{
	switch (state)
	{
		case STATE_IDLE:
			return "idle";
		case STATE_RUNNING:
			return "active";
		case STATE_IDLEINTRANSACTION:
			return "idle in transaction";
		case STATE_FASTPATH:
			return "fastpath function call";
		case STATE_IDLEINTRANSACTION_ABORTED:
			return "idle in transaction (aborted)";
		case STATE_DISABLED:
			return "disabled";
#if PG_VERSION_NUM >= 180000
		case STATE_STARTING:
			return "starting";
#endif
		case STATE_UNDEFINED:
			break;
	}
	return NULL;
}

/*
 * GUC "extra" values: malloc'd in 15, guc_malloc'd from 16 on (GUC memory
 * moved into its own memory context).
 */
#if PG_VERSION_NUM >= 160000
#define pgd_guc_malloc(size)	guc_malloc(LOG, (size))
#else
#define pgd_guc_malloc(size)	malloc(size)
#endif

#endif							/* POOLDIAG_COMPAT_H */
