/*-------------------------------------------------------------------------
 *
 * event_ring.c
 *		The event ring: a bounded, lock-free queue of fixed-size events in
 *		shared memory, with many producers and one consumer.
 *
 * Producers are backends (connect, checkin, disconnect, ...), processes that
 * are being refused a connection, and the worker itself (terminate,
 * leak_suspect).  A refused process may fail before InitProcess(), so it has
 * no PGPROC and cannot take an LWLock; the ring therefore uses nothing but
 * atomics.  It is the bounded MPMC queue of D. Vyukov: every cell carries a
 * sequence number that says whose turn the cell is.
 *
 *	 cell.sequence == pos		   free for the producer that claims pos
 *	 cell.sequence == pos + 1	   holds the event at pos, ready to consume
 *	 cell.sequence == pos + cap	   consumed; free for position pos + cap
 *
 * A producer claims position 'head' with a compare-and-swap, copies its event
 * into the cell (outside any lock) and then publishes it by storing pos + 1.
 * If the cell at head still holds an unconsumed event, the ring is full: the
 * new event is dropped and 'dropped' goes up.  Nothing waits, nothing fails.
 *
 * The consumer is the worker alone.  It peeks at ready events without taking
 * them, writes them to the table, and releases them only after its
 * transaction committed, so a worker that dies mid-flush loses nothing: the
 * next one finds the same events at the same positions.  Positions are
 * 64-bit and never wrap in practice; they also order the events.
 *
 * Readers (pooldiag.recent_events()) copy ready cells between tail and head,
 * a chunk at a time through a cursor, and re-check the cell's sequence
 * afterwards, discarding a copy that a producer or the consumer overwrote
 * meanwhile.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/shmem.h"

#include "event_ring.h"
#include "pooldiag.h"

typedef struct PgdRingCell
{
	pg_atomic_uint64 sequence;
	PgdEvent	event;
} PgdRingCell;

/*
 * Producers hammer 'head'; the consumer writes 'tail'.  They live on cache
 * lines of their own so that the two sides do not slow each other down.
 */
typedef struct PgdRing
{
	uint32		capacity;
	Latch	   *consumer_latch; /* the worker's, or NULL */
	pg_atomic_uint64 dropped;	/* lost because the ring was full */
	pg_atomic_uint64 discarded; /* retired unwritten on a standby */
	pg_atomic_uint32 wakeup_sent;	/* consumer already woken for this fill */

	char		pad1[PG_CACHE_LINE_SIZE];
	pg_atomic_uint64 head;		/* next position a producer claims */
	char		pad2[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];
	pg_atomic_uint64 tail;		/* next position the consumer takes */
	char		pad3[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];

	PgdRingCell cells[FLEXIBLE_ARRAY_MEMBER];
} PgdRing;

static PgdRing *pgd_ring = NULL;

const char *
pgd_event_name(uint8 type)
{
	switch ((PgdEventType) type)
	{
		case PGD_EV_CONNECT:
			return "connect";
		case PGD_EV_DISCONNECT:
			return "disconnect";
		case PGD_EV_CHECKOUT:
			return "checkout";
		case PGD_EV_CHECKIN:
			return "checkin";
		case PGD_EV_REJECTED:
			return "rejected";
		case PGD_EV_TERMINATE:
			return "terminate";
		case PGD_EV_WOULD_TERMINATE:
			return "would_terminate";
		case PGD_EV_LEAK_SUSPECT:
			return "leak_suspect";
		case PGD_EV_SATURATION:
			return "saturation";
	}
	return "unknown";
}

const char *
pgd_reason_name(uint8 reason)
{
	switch ((PgdReason) reason)
	{
		case PGD_R_NONE:
			return NULL;
		case PGD_R_NORMAL:
			return "normal";
		case PGD_R_CLIENT_EOF:
			return "client_eof";
		case PGD_R_FATAL:
			return "fatal";
		case PGD_R_KILLED:
			return "killed";
		case PGD_R_TOO_MANY_CONNECTIONS:
			return "too_many_connections";
		case PGD_R_ROLE_CONNECTION_LIMIT:
			return "role_connection_limit";
		case PGD_R_DATABASE_CONNECTION_LIMIT:
			return "database_connection_limit";
		case PGD_R_AUTHENTICATION_FAILED:
			return "authentication_failed";
		case PGD_R_DATABASE_DOES_NOT_EXIST:
			return "database_does_not_exist";
		case PGD_R_CANNOT_CONNECT_NOW:
			return "cannot_connect_now";
		case PGD_R_IDLE_TIMEOUT:
			return "idle_timeout";
		case PGD_R_MAX_LIFETIME:
			return "max_lifetime";
		case PGD_R_IDLE_IN_TRANSACTION_TIMEOUT:
			return "idle_in_transaction_timeout";
		case PGD_R_DRAIN:
			return "drain";
		case PGD_R_IDLE_WHILE_POOL_BUSY:
			return "idle_while_pool_busy";
	}
	return NULL;
}

Size
pgd_ring_shmem_size(void)
{
	return add_size(offsetof(PgdRing, cells),
					mul_size(sizeof(PgdRingCell), pgd_event_buffer_size));
}

void
pgd_ring_shmem_init(void)
{
	bool		found;

	pgd_ring = ShmemInitStruct("pooldiag event ring",
							   pgd_ring_shmem_size(), &found);
	if (found)
		return;

	pgd_ring->capacity = pgd_event_buffer_size;
	pg_atomic_init_u64(&pgd_ring->head, 0);
	pg_atomic_init_u64(&pgd_ring->tail, 0);
	pg_atomic_init_u64(&pgd_ring->dropped, 0);
	pg_atomic_init_u64(&pgd_ring->discarded, 0);
	pg_atomic_init_u32(&pgd_ring->wakeup_sent, 0);
	pgd_ring->consumer_latch = NULL;
	for (uint32 i = 0; i < pgd_ring->capacity; i++)
		pg_atomic_init_u64(&pgd_ring->cells[i].sequence, i);
}

void
pgd_ring_set_consumer_latch(Latch *latch)
{
	if (pgd_ring)
		pgd_ring->consumer_latch = latch;
}

/* Wake the consumer, if there is one.  Safe without a PGPROC. */
void
pgd_ring_wake_consumer(void)
{
	Latch	   *latch = pgd_ring ? pgd_ring->consumer_latch : NULL;

	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Append one event.  Returns false, and counts the loss, if the ring is full.
 * Safe in any process attached to shared memory, with or without a PGPROC,
 * and in a signal-free context only (it is never called from a handler).
 */
bool
pgd_ring_append(PgdEvent *event)
{
	PgdRing    *ring = pgd_ring;
	uint64		pos;
	PgdRingCell *cell;
	uint64		depth;

	if (ring == NULL)
		return false;

	pos = pg_atomic_read_u64(&ring->head);
	for (;;)
	{
		uint64		seq;

		cell = &ring->cells[pos % ring->capacity];
		seq = pg_atomic_read_u64(&cell->sequence);
		pg_read_barrier();
		if (seq == pos)
		{
			/* On failure the CAS reloads pos with the current head. */
			if (pg_atomic_compare_exchange_u64(&ring->head, &pos, pos + 1))
				break;
		}
		else if (seq < pos)
		{
			/* The cell still holds the event of pos - capacity: full. */
			pg_atomic_fetch_add_u64(&ring->dropped, 1);
			return false;
		}
		else
			pos = pg_atomic_read_u64(&ring->head);
	}

	event->position = pos;
	memcpy(&cell->event, event, sizeof(PgdEvent));
	pg_write_barrier();
	pg_atomic_write_u64(&cell->sequence, pos + 1);

	/*
	 * Wake the worker early once the ring is more than half full, but only
	 * once per fill: the worker clears wakeup_sent after it drained.
	 */
	depth = pos + 1 - pg_atomic_read_u64(&ring->tail);
	if (depth > ring->capacity / 2 &&
		pg_atomic_read_u32(&ring->wakeup_sent) == 0 &&
		pg_atomic_exchange_u32(&ring->wakeup_sent, 1) == 0)
		pgd_ring_wake_consumer();
	return true;
}

/*
 * Consumer: copy up to max_events ready events from the tail, without
 * taking them.  Stops at the first cell that is not ready yet, so the copy
 * is always a contiguous run of positions.
 */
int
pgd_ring_peek(PgdEvent *events, int max_events)
{
	PgdRing    *ring = pgd_ring;
	uint64		pos = pg_atomic_read_u64(&ring->tail);
	int			n = 0;

	while (n < max_events)
	{
		PgdRingCell *cell = &ring->cells[(pos + n) % ring->capacity];

		if (pg_atomic_read_u64(&cell->sequence) != pos + n + 1)
			break;
		pg_read_barrier();
		memcpy(&events[n], &cell->event, sizeof(PgdEvent));
		n++;
	}
	return n;
}

/* Consumer: hand the first nevents ready cells back to the producers. */
void
pgd_ring_release(int nevents)
{
	PgdRing    *ring = pgd_ring;
	uint64		pos = pg_atomic_read_u64(&ring->tail);

	for (int i = 0; i < nevents; i++, pos++)
	{
		PgdRingCell *cell = &ring->cells[pos % ring->capacity];

		pg_memory_barrier();
		pg_atomic_write_u64(&cell->sequence, pos + ring->capacity);
	}
	pg_atomic_write_u64(&ring->tail, pos);
	pg_atomic_write_u32(&ring->wakeup_sent, 0);
}

/*
 * Consumer on a standby, where nothing is written: retire the oldest ready
 * events so that at most 'keep' stay queued, counting them as discarded.
 * The newest events stay readable through pooldiag.recent_events().
 */
void
pgd_ring_discard_oldest(uint64 keep)
{
	PgdRing    *ring = pgd_ring;
	uint64		tail = pg_atomic_read_u64(&ring->tail);
	uint64		head = pg_atomic_read_u64(&ring->head);
	int			n = 0;

	while (head - (tail + n) > keep)
	{
		PgdRingCell *cell = &ring->cells[(tail + n) % ring->capacity];

		if (pg_atomic_read_u64(&cell->sequence) != tail + n + 1)
			break;
		n++;
	}
	if (n > 0)
	{
		pgd_ring_release(n);
		pg_atomic_fetch_add_u64(&ring->discarded, n);
	}
}

/*
 * Readers: start a cursor over the events queued now, from the oldest to
 * the newest appended so far.  Events appended later are not part of it.
 */
void
pgd_ring_cursor_init(PgdRingCursor *cursor)
{
	PgdRing    *ring = pgd_ring;

	cursor->next = pg_atomic_read_u64(&ring->tail);
	cursor->end = pg_atomic_read_u64(&ring->head);
}

/*
 * Reader: copy up to max_events more events of the cursor, oldest first,
 * without disturbing anyone, so that a reader can go through a ring of any
 * size in chunks of its choosing.  Sets *nevents to the number copied and
 * returns false once the cursor has nothing left to look at.
 *
 * Events the consumer released since the last call (they are in the table
 * now) and cells that producers have reused are skipped; so is a cell that
 * changes while it is copied.
 */
bool
pgd_ring_read(PgdRingCursor *cursor, PgdEvent *events, int max_events,
			  int *nevents)
{
	PgdRing    *ring = pgd_ring;
	uint64		tail = pg_atomic_read_u64(&ring->tail);
	uint64		head = pg_atomic_read_u64(&ring->head);
	int			n = 0;

	if (cursor->next < tail)
		cursor->next = tail;
	if (head - cursor->next > ring->capacity)
		cursor->next = head - ring->capacity;
	if (cursor->next >= cursor->end)
	{
		*nevents = 0;
		return false;
	}

	for (; cursor->next < cursor->end && n < max_events; cursor->next++)
	{
		uint64		pos = cursor->next;
		PgdRingCell *cell = &ring->cells[pos % ring->capacity];

		if (pg_atomic_read_u64(&cell->sequence) != pos + 1)
			continue;
		pg_read_barrier();
		memcpy(&events[n], &cell->event, sizeof(PgdEvent));
		pg_read_barrier();
		if (pg_atomic_read_u64(&cell->sequence) != pos + 1 ||
			events[n].position != pos)
			continue;
		n++;
	}
	*nevents = n;
	return true;
}

void
pgd_ring_counters(PgdRingCounters *counters)
{
	PgdRing    *ring = pgd_ring;
	uint64		tail = pg_atomic_read_u64(&ring->tail);
	uint64		head = pg_atomic_read_u64(&ring->head);

	counters->queued = head > tail ? head - tail : 0;
	counters->appended = head;
	counters->dropped = pg_atomic_read_u64(&ring->dropped);
	counters->discarded = pg_atomic_read_u64(&ring->discarded);
	counters->capacity = ring->capacity;
}
