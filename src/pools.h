/*-------------------------------------------------------------------------
 *
 * pools.h
 *		Pools: sessions grouped by the client pool they belong to, with
 *		totals since pooldiag.reset().  See pools.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_POOLS_H
#define POOLDIAG_POOLS_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "event_ring.h"

/*
 * Hold-time histogram: bucket 0 holds checkouts shorter than 1 us, bucket i
 * (i >= 1) those in [1.1^(i-1), 1.1^i) us, and the last one everything from
 * 1.1^(PGD_HOLD_BUCKETS - 2) us (about 12 days) on.  A bucket is reported
 * as its geometric midpoint 1.1^(i - 1/2) us, which is within
 * sqrt(1.1) - 1 = 4.88% of every value in it.
 */
#define PGD_HOLD_BUCKETS	293
#define PGD_HOLD_RATIO		1.1

/*
 * A session's checkouts since the last pooldiag.reset() (the reset epoch),
 * kept in its registry slot by the session itself and folded into its pool
 * when it leaves the pool.  Fixed size, so that the per-checkin update is a
 * few stores.
 */
typedef struct PgdHoldStats
{
	uint32		epoch;			/* reset epoch the counts belong to */
	uint64		count;			/* checkouts ended */
	int64		sum_us;
	int64		max_us;
	uint32		buckets[PGD_HOLD_BUCKETS];
} PgdHoldStats;

/* Columns of disconnect causes and close reasons, in this order. */
#define PGD_POOL_CAUSES		4	/* normal, client_eof, fatal, killed */
#define PGD_POOL_CLOSES		4	/* idle_timeout, max_lifetime, iit, drain */

/* What identifies a pool; compared with memcmp, so always zeroed first. */
typedef struct PgdPoolKey
{
	Oid			databaseid;
	Oid			roleid;
	bool		declared;		/* name is pooldiag.client_pool */
	uint8		client_family;	/* undeclared pools only */
	uint8		client_addr[16];
	char		name[NAMEDATALEN];	/* client_pool or application_name */
} PgdPoolKey;

/* A pool's totals since the last reset; what the dump file keeps. */
typedef struct PgdPoolTotals
{
	TimestampTz since;			/* reset, or the pool's first session */
	int64		connects;
	int64		disconnects[PGD_POOL_CAUSES];
	int64		closes[PGD_POOL_CLOSES];
	int64		leak_suspects;	/* of either kind */
	int64		idle_leaks;		/* the idle_while_pool_busy ones */
	int64		rejected;
	int64		overflow;		/* the "other" row: sessions put in it */
	int64		peak_busy;		/* filled from the atomic for dumps only */
	int64		checkouts;		/* ended; what the hold stats count */
	int64		hold_sum_us;
	int64		hold_max_us;
	uint64		hold_buckets[PGD_HOLD_BUCKETS];
} PgdPoolTotals;

typedef struct PgdPoolEntry
{
	bool		in_use;
	uint32		generation;		/* bumped each time the entry is taken */
	uint32		hash;
	PgdPoolKey	key;
	int			nsessions;		/* sessions in the pool now */
	PgdPoolTotals totals;		/* under the lock */
	pg_atomic_uint32 busy;		/* checkouts open now; no lock */
	pg_atomic_uint32 peak_busy; /* most at once since reset; no lock */
} PgdPoolEntry;

/* The current backend's pool: an index into the table, or -1. */
extern int	pgd_my_pool;

/* The table: pgd_max_pools entries, then the "other" row. */
extern PgdPoolEntry *pgd_pool_entries;
#define pgd_pool_entry(index)	(&pgd_pool_entries[(index)])

extern int	pgd_max_pools;

extern void pgd_pools_init_buckets(void);
extern Size pgd_pools_shmem_size(void);
extern void pgd_pools_request_locks(void);
extern void pgd_pools_shmem_init(void);

extern int	pgd_hold_bucket(int64 us);
extern double pgd_hold_bucket_mid_us(int bucket);
extern uint32 pgd_pools_epoch(void);
extern int	pgd_pools_capacity(void);

/* Owner side. */
extern void pgd_pool_join(int *index, uint32 *generation);
extern bool pgd_pool_identity_changed(void);
extern void pgd_pool_rejoin(void);
extern void pgd_pool_leave(PgdReason cause);

/*
 * Per-checkout path: one atomic add, and a compare (rarely a
 * compare-and-swap) for the peak.  No lock.
 */
static inline void
pgd_pool_busy_begin(void)
{
	PgdPoolEntry *e;
	uint32		busy;
	uint32		peak;

	if (pgd_my_pool < 0)
		return;
	e = pgd_pool_entry(pgd_my_pool);
	busy = pg_atomic_add_fetch_u32(&e->busy, 1);
	peak = pg_atomic_read_u32(&e->peak_busy);
	while (busy > peak)
	{
		if (pg_atomic_compare_exchange_u32(&e->peak_busy, &peak, busy))
			break;
	}
}

static inline void
pgd_pool_busy_end(void)
{
	if (pgd_my_pool < 0)
		return;
	pg_atomic_fetch_sub_u32(&pgd_pool_entry(pgd_my_pool)->busy, 1);
}

/* The enforcer. */
extern void pgd_pool_count_leak(int index, uint32 generation, bool idle);
extern void pgd_pool_count_rejected(Oid databaseid, Oid roleid,
									const PgdEvent *event, int64 attempts);

/* Readers. */
typedef struct PgdPoolCopy
{
	int			index;
	uint32		generation;
	bool		other;			/* the row of pools that did not fit */
	PgdPoolKey	key;
	PgdPoolTotals totals;
	uint32		busy;
} PgdPoolCopy;

extern int	pgd_pools_copy(PgdPoolCopy **copies, uint32 *epoch);
extern void pgd_pools_reset(void);

#endif							/* POOLDIAG_POOLS_H */
