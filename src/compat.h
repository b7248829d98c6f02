/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every difference between the PostgreSQL major versions pooldiag
 *		builds against lives here, so that the logic in the other files
 *		reads the same on each version.
 *
 * Supported: 15, 16, 17 and 18.  Each branch below says which real headers
 * it was checked against: Debian's 15.20 (bookworm), 17.12 (trixie) and
 * 18.6 (sid), the versions scripts/test.sh builds and tests on.  No Debian
 * archive has 16, so its side of each branch was checked by reading the
 * upstream change that introduced the difference, and is untested.
 *
 * What was checked and needs no branch, because it is the same in 15.20,
 * 17.12 and 18.6: ExecutorStart_hook returns void (a bool return was
 * committed during 18's development and reverted before 18.0, so released
 * 18 is void like the others); ProcessUtility_hook, ClientAuthentication_hook
 * and emit_log_hook; InitMaterializedSRF(); pg_prng_double() and
 * pg_global_prng_state; BackgroundWorkerInitializeConnection(dbname,
 * username, flags); MyBEEntry with pgstat_begin_read_activity() and its
 * companions; pgStatSessionEndCause; JsonEncodeDateTime().  pooldiag calls
 * none of the pgstat_fetch_stat_* accessors that 16 and 17 renamed, and no
 * longer uses the Abs() macro, which 17 removed from c.h.
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
#include "postmaster/postmaster.h"
#include "utils/backend_status.h"

#if PG_VERSION_NUM < 150000
#error "pooldiag requires PostgreSQL 15 or later"
#endif

/*
 * Registry slot of the current backend.  Slots are keyed by backend id,
 * 1-based, in 15 and 16 (storage/backendid.h); 17 replaced backend ids with
 * 0-based proc numbers (MyProcNumber, storage/procnumber.h).  Checked
 * against 15.20 (MyBackendId), 17.12 and 18.6 (MyProcNumber).
 */
#if PG_VERSION_NUM >= 170000
#define PGD_MY_SLOT_INDEX()		(MyProcNumber)
#else
#define PGD_MY_SLOT_INDEX()		(MyBackendId - 1)
#endif
#define PGD_SLOT_INDEX_VALID(i)	((i) >= 0 && (i) < MaxBackends)

/*
 * 18 added STATE_STARTING before the other states, which shifts their
 * numbers.  pooldiag never stores BackendState values; it maps them to the
 * pg_stat_activity words through this switch-friendly helper.  Checked
 * against 15.20 and 17.12 (no STATE_STARTING) and 18.6 (STATE_STARTING,
 * shown as "starting" by pg_stat_activity).
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
 * moved into its own memory context, and guc.h exports guc_malloc()).
 * Checked against 15.20 (no guc_malloc) and 17.12 and 18.6
 * (void *guc_malloc(int elevel, size_t size)).
 */
#if PG_VERSION_NUM >= 160000
#define pgd_guc_malloc(size)	guc_malloc(LOG, (size))
#else
#define pgd_guc_malloc(size)	malloc(size)
#endif

/*
 * Connection slots that max_connections keeps from ordinary clients.  15
 * has only superuser_reserved_connections, as ReservedBackends; 16 renamed
 * it SuperuserReservedConnections and added reserved_connections
 * (ReservedConnections), kept for roles with pg_use_reserved_connections.
 * Checked against 15.20 (ReservedBackends) and 17.12 and 18.6 (both new
 * names, postmaster/postmaster.h).
 */
#if PG_VERSION_NUM >= 160000
#define PGD_RESERVED_CONNECTIONS()	(SuperuserReservedConnections + ReservedConnections)
#else
#define PGD_RESERVED_CONNECTIONS()	(ReservedBackends)
#endif

#endif							/* POOLDIAG_COMPAT_H */
