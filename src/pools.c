/*-------------------------------------------------------------------------
 *
 * pools.c
 *		The pool table: one entry per client pool, holding its totals since
 *		pooldiag.reset(), kept across clean restarts in a file.
 *
 * What a pool is
 * --------------
 * A session belongs to the pool it declares with pooldiag.client_pool, in
 * its database and under its role; a session that declares none belongs to
 * the pool of its (database, role, application_name, client address).  The
 * declared name is keyed together with the database and the role because
 * any role may set it: a role must not be able to pour its sessions into
 * another role's pool.  A session that changes its application_name (or its
 * declared pool) moves to the new pool before its next checkout starts.
 *
 * The table
 * ---------
 * A fixed array of pooldiag.max_pools entries, plus one "other" entry for
 * the sessions of pools that found the table full: nothing is lost
 * silently, the other row counts them (overflow).  An entry is found by a
 * linear scan of the key hashes (max_pools compares of a uint32 and a rare
 * memcmp), which happens only when a session connects, changes its pool, or
 * leaves.
 *
 * Locking
 * -------
 * One LWLock (tranche "pooldiag pools") protects every field of every entry
 * except two atomics: exclusive to take or change entries and to add to
 * totals (connect, pool change, disconnect, a leak suspect, reset), shared
 * to copy them (the pools view, the enforcer's scan does not need it).
 * Nothing on the per-statement path takes it:
 *
 *	 - busy and peak_busy are atomics: a checkout's start adds one to busy
 *	   and raises peak_busy to it with a compare-and-swap if it is higher; its
 *	   end subtracts one.  The session's entry is found once, at connect or
 *	   pool change, and kept in pgd_my_pool, so the per-statement path is
 *	   one atomic add and one read.  An entry cannot be freed while a session
 *	   is in it (reset frees only entries without sessions).
 *	 - a checkout's hold time goes into the session's own registry slot
 *	   (PgdHoldStats: count, sum, max and a log-scale histogram), under the
 *	   slot's change count like every other slot field.  The session folds
 *	   those into its pool's totals when it leaves the pool.  Readers add the
 *	   live sessions' slot counts to the totals.  A read that overlaps a
 *	   session's fold can see that one session's counts twice or not at all.
 *
 * Reset
 * -----
 * pooldiag.reset() zeroes every entry's totals, sets peak_busy to the
 * current busy, frees the entries no session is in, and bumps the reset
 * epoch.  Slot counts of an older epoch are ignored by readers and folds,
 * and their owner starts them over at its next checkin, so a reset needs
 * no write to any other backend's slot.
 *
 * Persistence
 * -----------
 * As pg_stat_statements does: the postmaster writes the table to
 * pg_stat/pooldiag_pools.stat when it exits cleanly (every session has left
 * and folded by then), and loads and deletes the file when it creates shared
 * memory.  A crash (or an immediate shutdown) loses the totals since the
 * last clean start; the file is deleted on load so that a crash can never
 * bring back older totals.  The file starts with a magic number, a format
 * version and the histogram size; a file that does not match is ignored
 * with a LOG message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "common/hashfn.h"

#include "declared.h"
#include "hooks.h"
#include "pooldiag.h"
#include "pools.h"
#include "registry.h"

#define PGD_POOLS_DUMP_FILE		"pg_stat/pooldiag_pools.stat"
#define PGD_POOLS_FILE_MAGIC	0x50474450	/* "PGDP" */
#define PGD_POOLS_FILE_VERSION	1

int			pgd_max_pools = 1000;

typedef struct PgdPoolsShared
{
	LWLock	   *lock;
	pg_atomic_uint32 epoch;		/* reset epoch, never 0 */
	int			capacity;		/* pgd_max_pools at start */
} PgdPoolsShared;

static PgdPoolsShared *pgd_pools = NULL;
PgdPoolEntry *pgd_pool_entries = NULL;

int			pgd_my_pool = -1;
static PgdPoolKey pgd_my_key;

/* Lower bounds of the histogram buckets, in us; see pools.h. */
static double pgd_hold_lower[PGD_HOLD_BUCKETS];
/* The last bucket whose lower bound is at most 2^k us. */
static int	pgd_hold_start[64];

static void pgd_pools_dump(int code, Datum arg);
static void pgd_pools_load(void);

/* The pool name the session declares (pooldiag.client_pool), or "". */
#define pgd_pool_declared_name()	pgd_declared_pool_name()

void
pgd_pools_init_buckets(void)
{
	int			k = 0;

	pgd_hold_lower[0] = 0.0;
	for (int i = 1; i < PGD_HOLD_BUCKETS; i++)
		pgd_hold_lower[i] = pow(PGD_HOLD_RATIO, i - 1);
	for (int i = 0; i < PGD_HOLD_BUCKETS && k < 64; i++)
	{
		/* Bucket i is the last to start at or below 2^k if i + 1 starts above. */
		while (k < 64 &&
			   (i + 1 == PGD_HOLD_BUCKETS || pgd_hold_lower[i + 1] > ldexp(1.0, k)))
			pgd_hold_start[k++] = i;
	}
}

/*
 * The bucket of a hold time: from the bucket where its power of two
 * starts, at most eight steps up (a power of two spans 7.3 buckets).
 */
int
pgd_hold_bucket(int64 us)
{
	int			i;
	double		v;

	if (us < 1)
		return 0;
	i = pgd_hold_start[pg_leftmost_one_pos64((uint64) us)];
	v = (double) us;
	while (i + 1 < PGD_HOLD_BUCKETS && pgd_hold_lower[i + 1] <= v)
		i++;
	return i;
}

double
pgd_hold_bucket_mid_us(int bucket)
{
	if (bucket <= 0)
		return 0.0;
	return pgd_hold_lower[bucket] * sqrt(PGD_HOLD_RATIO);
}

int
pgd_pools_capacity(void)
{
	return pgd_pools ? pgd_pools->capacity : 0;
}

uint32
pgd_pools_epoch(void)
{
	return pg_atomic_read_u32(&pgd_pools->epoch);
}

Size
pgd_pools_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(PgdPoolsShared)),
					mul_size(sizeof(PgdPoolEntry), pgd_max_pools + 1));
}

void
pgd_pools_request_locks(void)
{
	RequestNamedLWLockTranche("pooldiag pools", 1);
}

static void
pgd_pool_clear(PgdPoolEntry *e, TimestampTz now)
{
	memset(&e->totals, 0, sizeof(PgdPoolTotals));
	e->totals.since = now;
}

void
pgd_pools_shmem_init(void)
{
	bool		found;
	bool		found_entries;

	pgd_pools = ShmemInitStruct("pooldiag pools", sizeof(PgdPoolsShared), &found);
	pgd_pool_entries = ShmemInitStruct("pooldiag pool entries",
									   mul_size(sizeof(PgdPoolEntry), pgd_max_pools + 1),
									   &found_entries);
	if (!found)
	{
		TimestampTz now = GetCurrentTimestamp();
		PgdPoolEntry *other;

		pgd_pools->lock = &(GetNamedLWLockTranche("pooldiag pools"))->lock;
		pg_atomic_init_u32(&pgd_pools->epoch, 1);
		pgd_pools->capacity = pgd_max_pools;
		memset(pgd_pool_entries, 0, mul_size(sizeof(PgdPoolEntry), pgd_max_pools + 1));
		for (int i = 0; i <= pgd_max_pools; i++)
		{
			pg_atomic_init_u32(&pgd_pool_entries[i].busy, 0);
			pg_atomic_init_u32(&pgd_pool_entries[i].peak_busy, 0);
		}
		other = pgd_pool_entry(pgd_max_pools);
		other->in_use = true;
		pgd_pool_clear(other, now);

		/* The postmaster: totals of the last clean run, then dump at exit. */
		if (!IsUnderPostmaster)
		{
			pgd_pools_load();
			on_shmem_exit(pgd_pools_dump, (Datum) 0);
		}
	}
}

/* Index of the "other" entry. */
#define PGD_OTHER	(pgd_pools->capacity)

/* The pool the current backend belongs to by its identity now. */
static void
pgd_pool_current_key(PgdPoolKey *key)
{
	const char *declared = pgd_pool_declared_name();

	memset(key, 0, sizeof(PgdPoolKey));
	key->databaseid = MyDatabaseId;
	key->roleid = GetSessionUserId();
	if (declared != NULL && declared[0] != '\0')
	{
		key->declared = true;
		strlcpy(key->name, declared, NAMEDATALEN);
	}
	else
	{
		PgdEvent	ev;

		if (application_name)
			strlcpy(key->name, application_name, NAMEDATALEN);
		if (MyProcPort != NULL)
		{
			memset(&ev, 0, sizeof(ev));
			pgd_event_set_client_addr(&ev, (const struct sockaddr *) &MyProcPort->raddr.addr);
			key->client_family = ev.client_family;
			memcpy(key->client_addr, ev.client_addr, sizeof(key->client_addr));
		}
	}
}

/*
 * Has this session's pool changed since it joined (a SET application_name,
 * or of pooldiag.client_pool)?  Called as a checkout starts: a string
 * compare, no lock.
 */
bool
pgd_pool_identity_changed(void)
{
	const char *declared = pgd_pool_declared_name();

	if (pgd_my_pool < 0)
		return false;
	if (declared != NULL && declared[0] != '\0')
		return !pgd_my_key.declared ||
			strncmp(declared, pgd_my_key.name, NAMEDATALEN - 1) != 0;
	if (pgd_my_key.declared)
		return true;
	return strncmp(application_name ? application_name : "", pgd_my_key.name,
				   NAMEDATALEN - 1) != 0;
}

/* Find the entry of 'key', or take a free one; the lock is held exclusive. */
static int
pgd_pool_find_or_add(const PgdPoolKey *key, uint32 hash, TimestampTz now)
{
	int			free_index = -1;
	PgdPoolEntry *e;

	for (int i = 0; i < PGD_OTHER; i++)
	{
		e = pgd_pool_entry(i);
		if (e->in_use)
		{
			if (e->hash == hash && memcmp(&e->key, key, sizeof(PgdPoolKey)) == 0)
				return i;
		}
		else if (free_index < 0)
			free_index = i;
	}
	if (free_index < 0)
		return PGD_OTHER;

	e = pgd_pool_entry(free_index);
	e->in_use = true;
	e->generation++;
	e->hash = hash;
	memcpy(&e->key, key, sizeof(PgdPoolKey));
	e->nsessions = 0;
	pgd_pool_clear(e, now);
	pg_atomic_write_u32(&e->busy, 0);
	pg_atomic_write_u32(&e->peak_busy, 0);
	return free_index;
}

/* Enter the pool of 'key'; the lock is held exclusive. */
static int
pgd_pool_enter(const PgdPoolKey *key, uint32 *generation)
{
	int			index;
	PgdPoolEntry *e;

	index = pgd_pool_find_or_add(key, hash_bytes((const unsigned char *) key,
												 sizeof(PgdPoolKey)),
								 GetCurrentTimestamp());
	e = pgd_pool_entry(index);
	e->nsessions++;
	if (index == PGD_OTHER)
		e->totals.overflow++;
	*generation = e->generation;
	return index;
}

/*
 * Add the session's own hold-time counts to its pool's totals, unless they
 * belong to an epoch before the last reset.  The lock is held exclusive.
 */
static void
pgd_pool_fold(PgdPoolEntry *e)
{
	const PgdHoldStats *h = &pgd_my_slot->hold;

	if (h->epoch != pgd_pools_epoch() || h->count == 0)
		return;
	e->totals.checkouts += h->count;
	e->totals.hold_sum_us += h->sum_us;
	e->totals.hold_max_us = Max(e->totals.hold_max_us, h->max_us);
	for (int i = 0; i < PGD_HOLD_BUCKETS; i++)
		e->totals.hold_buckets[i] += h->buckets[i];
}

/*
 * A session is established: join its pool and count the connect.  Called by
 * pgd_registry_attach() before it opens its write section.
 */
void
pgd_pool_join(int *index, uint32 *generation)
{
	PgdPoolKey	key;

	*index = -1;
	*generation = 0;
	if (pgd_pools == NULL)
		return;
	pgd_pool_current_key(&key);
	LWLockAcquire(pgd_pools->lock, LW_EXCLUSIVE);
	*index = pgd_pool_enter(&key, generation);
	pgd_pool_entry(*index)->totals.connects++;
	LWLockRelease(pgd_pools->lock);
	pgd_my_key = key;
	pgd_my_pool = *index;
}

/*
 * The session's pool changed while it was not checked out: fold its counts
 * into the old pool and move to the new one.  Not a disconnect nor a
 * connect of either pool.
 */
void
pgd_pool_rejoin(void)
{
	PgdPoolKey	key;
	int			index;
	uint32		generation;

	pgd_pool_current_key(&key);
	LWLockAcquire(pgd_pools->lock, LW_EXCLUSIVE);
	pgd_pool_fold(pgd_pool_entry(pgd_my_pool));
	pgd_pool_entry(pgd_my_pool)->nsessions--;
	index = pgd_pool_enter(&key, &generation);
	pgd_registry_set_pool(index, generation);
	LWLockRelease(pgd_pools->lock);
	pgd_my_key = key;
	pgd_my_pool = index;
}

static int
pgd_cause_column(PgdReason cause)
{
	switch (cause)
	{
		case PGD_R_CLIENT_EOF:
			return 1;
		case PGD_R_FATAL:
			return 2;
		case PGD_R_KILLED:
			return 3;
		default:
			return 0;
	}
}

static int
pgd_close_column(PgdReason reason)
{
	switch (reason)
	{
		case PGD_R_IDLE_TIMEOUT:
			return 0;
		case PGD_R_MAX_LIFETIME:
			return 1;
		case PGD_R_IDLE_IN_TRANSACTION_TIMEOUT:
			return 2;
		case PGD_R_DRAIN:
			return 3;
		default:
			return -1;
	}
}

/*
 * The session ends: fold its counts, count the disconnect by cause, and the
 * close by reason when the enforcer closed it.  Runs in a before_shmem_exit
 * callback, before the slot is freed.
 */
void
pgd_pool_leave(PgdReason cause)
{
	PgdPoolEntry *e;
	PgdCloseRequest request;
	int			close_column = -1;

	if (pgd_my_pool < 0 || pgd_pools == NULL)
		return;
	if (pgd_registry_my_close_request(&request))
		close_column = pgd_close_column((PgdReason) request.reason);

	LWLockAcquire(pgd_pools->lock, LW_EXCLUSIVE);
	e = pgd_pool_entry(pgd_my_pool);
	pgd_pool_fold(e);
	e->nsessions--;
	e->totals.disconnects[pgd_cause_column(cause)]++;
	if (close_column >= 0)
		e->totals.closes[close_column]++;
	/* Readers now find the counts in the totals only. */
	pgd_registry_set_pool(-1, 0);
	LWLockRelease(pgd_pools->lock);
	pgd_my_pool = -1;
}

/* The enforcer recorded a leak suspect in a session of this pool. */
void
pgd_pool_count_leak(int index, uint32 generation, bool idle)
{
	PgdPoolEntry *e;

	if (index < 0 || pgd_pools == NULL)
		return;
	LWLockAcquire(pgd_pools->lock, LW_EXCLUSIVE);
	e = pgd_pool_entry(index);
	if (e->in_use && e->generation == generation)
	{
		e->totals.leak_suspects++;
		if (idle)
			e->totals.idle_leaks++;
	}
	LWLockRelease(pgd_pools->lock);
}

/*
 * Count rejected connection attempts in the implicit pool of the database,
 * role, application_name and client address that they asked for, if that
 * pool has an entry now; called by the writer once their event row is
 * committed (flush.c), with 'attempts' the number the row stands for.  A
 * refused process has not applied its startup options, so its declared
 * pool (pooldiag.client_pool) is unknown: attempts of clients that declare
 * a pool count only in pooldiag.capacity and in pooldiag.events.  No entry
 * is made for a pool that has no sessions and no entry: a flood of
 * attempts with made-up application names must not fill the table.
 */
void
pgd_pool_count_rejected(Oid databaseid, Oid roleid, const PgdEvent *event,
						int64 attempts)
{
	PgdPoolKey	key;
	uint32		hash;

	if (pgd_pools == NULL || attempts <= 0)
		return;
	memset(&key, 0, sizeof(PgdPoolKey));
	key.databaseid = databaseid;
	key.roleid = roleid;
	strlcpy(key.name, event->application_name, NAMEDATALEN);
	key.client_family = event->client_family;
	memcpy(key.client_addr, event->client_addr, sizeof(key.client_addr));
	hash = hash_bytes((const unsigned char *) &key, sizeof(PgdPoolKey));

	LWLockAcquire(pgd_pools->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PGD_OTHER; i++)
	{
		PgdPoolEntry *e = pgd_pool_entry(i);

		if (e->in_use && e->hash == hash &&
			memcmp(&e->key, &key, sizeof(PgdPoolKey)) == 0)
		{
			e->totals.rejected += attempts;
			break;
		}
	}
	LWLockRelease(pgd_pools->lock);
}

/*
 * Copy every entry in use (the other row last) for a reader.  Returns the
 * number of copies, palloc'd in the current context.
 */
int
pgd_pools_copy(PgdPoolCopy **copies, uint32 *epoch)
{
	int			n = 0;
	PgdPoolCopy *c;

	*copies = c = palloc(sizeof(PgdPoolCopy) * (pgd_pools->capacity + 1));
	LWLockAcquire(pgd_pools->lock, LW_SHARED);
	*epoch = pgd_pools_epoch();
	for (int i = 0; i <= PGD_OTHER; i++)
	{
		PgdPoolEntry *e = pgd_pool_entry(i);

		if (!e->in_use)
			continue;
		c[n].index = i;
		c[n].generation = e->generation;
		c[n].other = i == PGD_OTHER;
		memcpy(&c[n].key, &e->key, sizeof(PgdPoolKey));
		memcpy(&c[n].totals, &e->totals, sizeof(PgdPoolTotals));
		c[n].busy = pg_atomic_read_u32(&e->busy);
		c[n].totals.peak_busy = pg_atomic_read_u32(&e->peak_busy);
		n++;
	}
	LWLockRelease(pgd_pools->lock);
	return n;
}

/* pooldiag.reset(); see the header comment. */
void
pgd_pools_reset(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		epoch;

	LWLockAcquire(pgd_pools->lock, LW_EXCLUSIVE);
	for (int i = 0; i <= PGD_OTHER; i++)
	{
		PgdPoolEntry *e = pgd_pool_entry(i);

		if (!e->in_use)
			continue;
		if (e->nsessions == 0 && i != PGD_OTHER)
		{
			e->in_use = false;
			continue;
		}
		pgd_pool_clear(e, now);
		pg_atomic_write_u32(&e->peak_busy, pg_atomic_read_u32(&e->busy));
	}
	epoch = pgd_pools_epoch() + 1;
	pg_atomic_write_u32(&pgd_pools->epoch, epoch == 0 ? 1 : epoch);
	LWLockRelease(pgd_pools->lock);
}

/*
 * The dump file: header, then one record per entry in use.  Written by the
 * postmaster at a clean exit, when no other process is left.
 */
typedef struct PgdPoolsFileHeader
{
	uint32		magic;
	uint32		version;
	uint32		nbuckets;
	uint32		count;
} PgdPoolsFileHeader;

typedef struct PgdPoolsFileRecord
{
	bool		other;
	PgdPoolKey	key;
	PgdPoolTotals totals;
} PgdPoolsFileRecord;

static void
pgd_pools_dump(int code, Datum arg)
{
	PgdPoolsFileHeader header;
	PgdPoolsFileRecord rec;
	FILE	   *file;

	/* After a crash the totals may be inconsistent: keep nothing. */
	if (code != 0 || pgd_pools == NULL)
		return;

	file = AllocateFile(PGD_POOLS_DUMP_FILE ".tmp", PG_BINARY_W);
	if (file == NULL)
		goto error;
	header.magic = PGD_POOLS_FILE_MAGIC;
	header.version = PGD_POOLS_FILE_VERSION;
	header.nbuckets = PGD_HOLD_BUCKETS;
	header.count = 0;
	for (int i = 0; i <= PGD_OTHER; i++)
		if (pgd_pool_entry(i)->in_use)
			header.count++;
	if (fwrite(&header, sizeof(header), 1, file) != 1)
		goto error;
	for (int i = 0; i <= PGD_OTHER; i++)
	{
		PgdPoolEntry *e = pgd_pool_entry(i);

		if (!e->in_use)
			continue;
		memset(&rec, 0, sizeof(rec));
		rec.other = i == PGD_OTHER;
		rec.key = e->key;
		rec.totals = e->totals;
		rec.totals.peak_busy = pg_atomic_read_u32(&e->peak_busy);
		if (fwrite(&rec, sizeof(rec), 1, file) != 1)
			goto error;
	}
	if (FreeFile(file))
	{
		file = NULL;
		goto error;
	}
	(void) durable_rename(PGD_POOLS_DUMP_FILE ".tmp", PGD_POOLS_DUMP_FILE, LOG);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write file \"%s\": %m", PGD_POOLS_DUMP_FILE ".tmp")));
	if (file)
		FreeFile(file);
	unlink(PGD_POOLS_DUMP_FILE ".tmp");
}

static void
pgd_pools_load(void)
{
	PgdPoolsFileHeader header;
	PgdPoolsFileRecord rec;
	FILE	   *file;
	PgdPoolEntry *other = pgd_pool_entry(pgd_max_pools);

	file = AllocateFile(PGD_POOLS_DUMP_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", PGD_POOLS_DUMP_FILE)));
		return;
	}
	if (fread(&header, sizeof(header), 1, file) != 1 ||
		header.magic != PGD_POOLS_FILE_MAGIC ||
		header.version != PGD_POOLS_FILE_VERSION ||
		header.nbuckets != PGD_HOLD_BUCKETS)
	{
		ereport(LOG,
				(errmsg("ignoring file \"%s\": it was not written by this version of pooldiag",
						PGD_POOLS_DUMP_FILE)));
		goto done;
	}
	for (uint32 n = 0; n < header.count; n++)
	{
		PgdPoolEntry *e;
		int			index;

		if (fread(&rec, sizeof(rec), 1, file) != 1)
		{
			ereport(LOG,
					(errmsg("ignoring the rest of file \"%s\": it is truncated",
							PGD_POOLS_DUMP_FILE)));
			break;
		}
		index = rec.other ? pgd_max_pools :
			pgd_pool_find_or_add(&rec.key,
								 hash_bytes((const unsigned char *) &rec.key,
											sizeof(PgdPoolKey)),
								 rec.totals.since);
		e = pgd_pool_entry(index);
		if (index == pgd_max_pools)
		{
			/* The other row, or a pool that no longer fits (a smaller max_pools). */
			other->totals.connects += rec.totals.connects;
			for (int i = 0; i < PGD_POOL_CAUSES; i++)
				other->totals.disconnects[i] += rec.totals.disconnects[i];
			for (int i = 0; i < PGD_POOL_CLOSES; i++)
				other->totals.closes[i] += rec.totals.closes[i];
			other->totals.leak_suspects += rec.totals.leak_suspects;
			other->totals.idle_leaks += rec.totals.idle_leaks;
			other->totals.rejected += rec.totals.rejected;
			other->totals.overflow += rec.other ? rec.totals.overflow : 1;
			other->totals.checkouts += rec.totals.checkouts;
			other->totals.hold_sum_us += rec.totals.hold_sum_us;
			other->totals.hold_max_us = Max(other->totals.hold_max_us,
											rec.totals.hold_max_us);
			for (int i = 0; i < PGD_HOLD_BUCKETS; i++)
				other->totals.hold_buckets[i] += rec.totals.hold_buckets[i];
			if (rec.other)
				other->totals.since = rec.totals.since;
			pg_atomic_write_u32(&other->peak_busy,
								Max(pg_atomic_read_u32(&other->peak_busy),
									(uint32) rec.totals.peak_busy));
		}
		else
		{
			e->totals = rec.totals;
			pg_atomic_write_u32(&e->peak_busy, (uint32) rec.totals.peak_busy);
		}
	}

done:
	FreeFile(file);
	/* A crash must not bring these totals back: they are in memory now. */
	unlink(PGD_POOLS_DUMP_FILE);
}
