/*-------------------------------------------------------------------------
 *
 * fold.c
 *		Folding repeated rejections: how a flood of refused connection
 *		attempts becomes a bounded number of rows in pooldiag.events.
 *
 * Every refused attempt queues a "rejected" event, and one client can be
 * refused hundreds of times a second (a wrong password in a retry loop, a
 * scanner, a pool pointed at a dropped database), without authenticating.
 * Written one row each, that is gigabytes a day, faster than retention
 * deletes.  So the writer folds them at flush time, before a batch is
 * inserted:
 *
 *	 key		reason, SQLSTATE, user name, database name and client
 *				address of the attempt (what the client asked for)
 *	 window		pooldiag.rejection_fold_window, from the event_time of the
 *				attempt that opened it
 *
 * The first attempt of a key is written as usual and opens a window.
 * Further attempts of that key within the window are only counted.  When
 * the window ends, one row is written for them: the key; the pid,
 * backend_start and application_name of the last of them; event_time the
 * time of the last; and in detail "repeats" (how many attempts the row
 * stands for), "first_time" and "last_time".  A window ends when an attempt
 * of its key comes after it (that attempt is written and opens the next
 * window), when its time is up and the ring has been drained, when the
 * setting is 0 or shortened, when a new key needs its slot, and when the
 * writer is asked to end them all (pgd_fold_end_windows(), for a final
 * flush).  While every slot holds an open window, attempts of new keys are
 * written one by one: nothing is dropped, and nothing is held unbounded.
 *
 * State and exactness
 * -------------------
 * The fold table lives in shared memory, so that a writer that exits (on
 * an error or SIGTERM; the postmaster starts another) leaves its open
 * windows to the next one.  Only the writer reads or writes the table, and
 * there is one writer at a time, so it takes no lock; the counter that
 * pooldiag.health shows is an atomic.
 *
 * flush.c calls pgd_fold_batch() with the events it peeked at, which works
 * on a private copy of the table and returns the rows to insert.  The copy
 * is published by pgd_fold_publish() only after the batch's transaction
 * committed, right before the events are released from the ring.  If the
 * transaction fails, the copy is thrown away and the events stay queued:
 * the retry starts from the same table with the same events and produces
 * the same rows, so no attempt is counted twice or lost.  Nothing between
 * the commit and pgd_fold_publish() and pgd_ring_release() may call
 * CHECK_FOR_INTERRUPTS(), the one point where a writer could otherwise exit
 * with rows committed but neither the table nor the ring advanced.  A crash
 * resets shared memory, the ring and this table alike.
 *
 * A folded row carries the ring position of the last attempt it stands
 * for, a position no other row uses (a counted attempt is not written), so
 * the event_id flush.c derives from it is unique.
 *
 * On a standby nothing is written and nothing is folded:
 * pooldiag.recent_events() shows every attempt still queued.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "event_ring.h"
#include "fold.h"
#include "pooldiag.h"

/* Keys with an open window at a time. */
#define PGD_FOLD_KEYS	256

/* Zero-filled before it is set, so that it can be hashed and compared. */
typedef struct PgdFoldKey
{
	int32		sqlstate;
	uint8		reason;
	uint8		client_family;
	uint8		client_addr[16];
	NameData	datname;
	NameData	usename;
} PgdFoldKey;

typedef struct PgdFoldEntry
{
	bool		in_use;
	uint32		hash;
	PgdFoldKey	key;
	TimestampTz window_start;	/* event_time of the attempt that opened it */
	int64		repeats;		/* attempts counted since, not written */
	TimestampTz first_time;		/* event_time range of the counted ones */
	TimestampTz last_time;
	PgdEvent	last;			/* the last counted attempt */
} PgdFoldEntry;

typedef struct PgdFoldShared
{
	pg_atomic_uint64 folded;	/* attempts counted instead of written */
	PgdFoldEntry entries[PGD_FOLD_KEYS];
} PgdFoldShared;

static PgdFoldShared *pgd_fold = NULL;

/* The writer's private state between pgd_fold_batch() and publishing. */
static PgdFoldEntry *work = NULL;	/* the next table, PGD_FOLD_KEYS entries */
static bool work_ready = false;		/* work is to be published */
static uint64 work_folded = 0;		/* attempts counted in this batch */
static bool end_windows_requested = false;
static bool work_ends_all = false;	/* work ended every window as requested */
static PgdEvent *rows = NULL;
static int	rows_capacity = 0;

Size
pgd_fold_shmem_size(void)
{
	return sizeof(PgdFoldShared);
}

void
pgd_fold_shmem_init(void)
{
	bool		found;

	pgd_fold = ShmemInitStruct("pooldiag rejection folding",
							   sizeof(PgdFoldShared), &found);
	if (found)
		return;
	memset(pgd_fold, 0, sizeof(PgdFoldShared));
	pg_atomic_init_u64(&pgd_fold->folded, 0);
}

/* Attempts counted into folded rows since the server started. */
uint64
pgd_fold_count(void)
{
	return pgd_fold ? pg_atomic_read_u64(&pgd_fold->folded) : 0;
}

/*
 * Make the next flush end every open window, e.g. before the writer exits
 * at shutdown, when the shared table is about to go away.
 */
void
pgd_fold_end_windows(void)
{
	end_windows_requested = true;
}

static void
pgd_fold_key(const PgdEvent *ev, PgdFoldKey *key)
{
	memset(key, 0, sizeof(PgdFoldKey));
	key->sqlstate = (int32) ev->detail[PGD_D_REJECTED_SQLSTATE];
	key->reason = ev->reason;
	key->client_family = ev->client_family;
	memcpy(key->client_addr, ev->client_addr, sizeof(key->client_addr));
	strlcpy(NameStr(key->datname), NameStr(ev->datname), NAMEDATALEN);
	strlcpy(NameStr(key->usename), NameStr(ev->usename), NAMEDATALEN);
}

static PgdFoldEntry *
pgd_fold_find(const PgdFoldKey *key, uint32 hash)
{
	for (int i = 0; i < PGD_FOLD_KEYS; i++)
	{
		PgdFoldEntry *e = &work[i];

		if (e->in_use && e->hash == hash &&
			memcmp(&e->key, key, sizeof(PgdFoldKey)) == 0)
			return e;
	}
	return NULL;
}

/*
 * End the window of e and free its slot.  If it counted attempts, the row
 * that stands for them goes to *row and 1 is returned; otherwise 0.
 */
static int
pgd_fold_end(PgdFoldEntry *e, PgdEvent *row)
{
	int			nrows = 0;

	if (e->repeats > 0)
	{
		*row = e->last;
		row->event_time = e->last_time;
		row->detail[PGD_D_REJECTED_REPEATS] = e->repeats;
		row->detail[PGD_D_REJECTED_FIRST_TIME] = e->first_time;
		row->detail[PGD_D_REJECTED_LAST_TIME] = e->last_time;
		nrows = 1;
	}
	e->in_use = false;
	return nrows;
}

/*
 * Fold the peeked events[0..nevents) into the rows to insert, returned in
 * *result (the input itself when there is nothing to fold).  'drained' says
 * that the ring held no more than these, so windows whose time is up can
 * end.  Works on a private copy of the table; see pgd_fold_publish().  Does
 * not need a transaction, and raises no error but out-of-memory.
 */
int
pgd_fold_batch(const PgdEvent *events, int nevents, bool drained,
			   const PgdEvent **result)
{
	int64		window_us = (int64) pgd_rejection_fold_window_ms * 1000;
	bool		any_rejected = false;
	bool		any_open = false;
	int			nrows = 0;

	if (work == NULL)
		work = MemoryContextAlloc(TopMemoryContext,
								  sizeof(PgdFoldEntry) * PGD_FOLD_KEYS);
	work_ready = false;
	work_folded = 0;
	work_ends_all = false;

	for (int i = 0; i < nevents && !any_rejected; i++)
		any_rejected = events[i].type == PGD_EV_REJECTED;
	for (int i = 0; i < PGD_FOLD_KEYS && !any_open; i++)
		any_open = pgd_fold->entries[i].in_use;
	if (!any_rejected && !(drained && any_open))
	{
		if (drained && !any_open)
			end_windows_requested = false;
		*result = events;
		return nevents;
	}

	/* Each counted attempt yields no row, each window at most one. */
	if (rows_capacity < nevents + PGD_FOLD_KEYS)
	{
		if (rows)
			pfree(rows);
		rows_capacity = nevents + PGD_FOLD_KEYS;
		rows = MemoryContextAlloc(TopMemoryContext,
								  sizeof(PgdEvent) * rows_capacity);
	}
	memcpy(work, pgd_fold->entries, sizeof(PgdFoldEntry) * PGD_FOLD_KEYS);
	work_ready = true;

	for (int i = 0; i < nevents; i++)
	{
		const PgdEvent *ev = &events[i];
		PgdFoldKey	key;
		uint32		hash;
		PgdFoldEntry *e;

		if (ev->type != PGD_EV_REJECTED)
		{
			rows[nrows++] = *ev;
			continue;
		}

		pgd_fold_key(ev, &key);
		hash = hash_bytes((const unsigned char *) &key, sizeof(key));
		e = pgd_fold_find(&key, hash);

		if (e != NULL && window_us > 0 &&
			ev->event_time < e->window_start + window_us)
		{
			/* A repeat within the window: count it. */
			if (e->repeats == 0 || ev->event_time < e->first_time)
				e->first_time = ev->event_time;
			if (e->repeats == 0 || ev->event_time > e->last_time)
				e->last_time = ev->event_time;
			e->repeats++;
			e->last = *ev;
			work_folded++;
			continue;
		}

		/* Written as usual; it ends the key's window and opens the next. */
		if (e != NULL)
			nrows += pgd_fold_end(e, &rows[nrows]);
		if (window_us > 0 && e == NULL)
		{
			/* A free slot, or one whose window ended by this attempt. */
			for (int s = 0; s < PGD_FOLD_KEYS && e == NULL; s++)
				if (!work[s].in_use)
					e = &work[s];
			for (int s = 0; s < PGD_FOLD_KEYS && e == NULL; s++)
				if (ev->event_time >= work[s].window_start + window_us)
				{
					e = &work[s];
					nrows += pgd_fold_end(e, &rows[nrows]);
				}
		}
		if (window_us > 0 && e != NULL)
		{
			memset(e, 0, sizeof(PgdFoldEntry));
			e->in_use = true;
			e->hash = hash;
			e->key = key;
			e->window_start = ev->event_time;
		}
		rows[nrows++] = *ev;
	}

	/*
	 * Windows whose time is up.  Only once the ring is drained: attempts
	 * still queued behind this batch may belong to them.
	 */
	if (drained)
	{
		TimestampTz now = GetCurrentTimestamp();

		work_ends_all = end_windows_requested;
		for (int s = 0; s < PGD_FOLD_KEYS; s++)
		{
			PgdFoldEntry *e = &work[s];

			if (e->in_use &&
				(window_us == 0 || end_windows_requested ||
				 now >= e->window_start + window_us))
				nrows += pgd_fold_end(e, &rows[nrows]);
		}
	}

	Assert(nrows <= rows_capacity);
	*result = rows;
	return nrows;
}

/*
 * The rows of the last pgd_fold_batch() are committed: make its table the
 * shared one.  Called right before the events are released from the ring,
 * with no interrupt check in between (see the file header).
 */
void
pgd_fold_publish(void)
{
	if (!work_ready)
		return;
	memcpy(pgd_fold->entries, work, sizeof(PgdFoldEntry) * PGD_FOLD_KEYS);
	if (work_folded > 0)
		pg_atomic_fetch_add_u64(&pgd_fold->folded, work_folded);
	work_ready = false;
	work_folded = 0;
	if (work_ends_all)
		end_windows_requested = false;
}
